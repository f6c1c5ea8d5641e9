//! riptide-runtime: the `riptide` command line (checkpoint inspection, offline inference, benchmarks)
//! and, as it grows, the on-robot daemon that turns observations into time-stamped action chunks.

pub mod cli;
pub mod window;
