//! riptide-runtime: the `riptide` daemon and command line. The daemon subscribes to observation
//! topics over zenoh, builds observation windows on a time grid, runs the policy on its own thread
//! and publishes time-stamped action chunks; the CLI inspects checkpoints, runs offline inference
//! and benchmarks.

pub mod chunk;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod metrics;
pub mod window;
pub mod worker;
