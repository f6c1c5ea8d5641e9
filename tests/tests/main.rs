//! Cross-crate system tests: the daemon, the driver node, lockstep, fleet, remote inference, parity.
//!
//! One test binary per crate: the test files are modules of it, so cargo links one binary instead of
//! one per file, and the long tests of one file run beside the short ones of the others.

mod bad_checkpoints;
mod daemon;
mod drive;
mod fleet;
mod lerobot_parity;
mod lockstep;
mod metrics;
mod remote;
mod ros2;
mod wgpu;
