//! Wire types: CDR round trips against rosbags, MCAP recording and reading, topic keys.
//!
//! One test binary per crate: the test files are modules of it, so cargo links one binary instead of
//! one per file, and the long tests of one file run beside the short ones of the others.

mod cdr_roundtrip;
mod mcap_recording;
mod py;
mod ros2;
mod topics;
