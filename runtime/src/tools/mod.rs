//! The offline commands: each owns its clap arguments and a `run`.

pub mod bench;
pub mod bench_transport;
pub mod demo;
pub mod devices;
pub mod eval;
pub mod gpu;
pub mod inspect;
pub mod parity;
pub mod record;
pub mod recover;
pub mod replay;
pub mod report;
pub mod train;
