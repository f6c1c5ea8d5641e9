//! Drivers: safety properties, guidance, MAVLink against a pymavlink peer.
//!
//! One test binary per crate: the test files are modules of it, so cargo links one binary instead of
//! one per file, and the long tests of one file run beside the short ones of the others.

mod guidance;
mod mavlink_link;
mod mavlink_peer;
mod properties;
