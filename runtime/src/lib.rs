//! riptide-runtime: the `riptide` daemon and command line. The daemon subscribes to observation
//! topics over zenoh, builds observation windows on a time grid, runs the policy on its own thread
//! and publishes time-stamped action chunks; the CLI inspects checkpoints, runs offline inference
//! and benchmarks.

pub mod bag;
pub mod bench_transport;
pub mod chunk;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod daemon_lockstep;
pub mod decode;
pub mod demo;
pub mod drive;
pub mod evaluate;
pub mod guidance;
pub mod lockstep;
pub mod metrics;
pub mod replay;
pub mod report;
pub mod simnode;
pub mod train_cmd;
pub mod warm;
pub mod window;
pub mod worker;
