//! Policies: every kind trained, sampled, saved and loaded; RTI, consensus, waves.
//!
//! One test binary per crate: the test files are modules of it, so cargo links one binary instead of
//! one per file, and the long tests of one file run beside the short ones of the others.

mod consensus;
mod consistency;
mod mode;
mod relative_actions;
mod rti;
mod schedulers;
mod train;
mod truncated;
mod wave;
