//! riptide-runtime: the `riptide` daemon, its nodes and its command line.
//!
//! Rooms, bottom to top (imports point down only; `scripts/check-import-cycles.py` keeps it so):
//! - [`node`]: what every node shares: zenoh session, clock, metrics, rate-limited log, shutdown.
//! - [`pipeline`]: the one inference pipeline: decode → observation window → request (seed rule, RTI
//!   warm start, guidance) → policy → timed chunk → chunk metadata; the inference worker thread.
//! - [`daemon`]: `riptide run`: the live pipeline over zenoh, and lockstep (the same pipeline on the
//!   sim's clock with the driver hosted in-process, over zenoh or an in-process transport).
//! - [`drive`]: `riptide drive`: chunks in, a safe command stream out.
//! - [`simnode`]: `riptide sim`: a simulated robot as a zenoh node.
//! - [`episodes`]: live MCAP recording and playback of zenoh topics.
//! - [`tools`]: offline commands (eval, replay, report, demo, bench, inspect/infer, train, record, recover).
//! - [`checkpoints`]: where shipped policies are found.

pub mod checkpoints;
pub mod daemon;
pub mod drive;
pub mod episodes;
pub mod node;
pub mod pipeline;
pub mod simnode;
pub mod tools;
