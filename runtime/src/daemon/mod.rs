//! `riptide run`: observations in over zenoh, time-stamped action chunks out.
//!
//! Two clocks, one pipeline ([`crate::pipeline`]): [`live`] serves in wall time (subscribers →
//! decode → window → inference thread → chunk → publisher) and [`lockstep`] on the sim's clock with
//! the driver hosted in-process. One shutdown path ([`Shutdown`]): it stops the triggers, drops a
//! queued window, lets an in-flight inference finish without publishing it, and closes the session.

pub mod cmd;
pub mod config;
pub mod live;
pub mod lockstep;
pub mod remote;
pub mod setup;

use std::sync::Arc;

use anyhow::Result;

use crate::daemon::config::DaemonConfig;
pub use crate::daemon::setup::{checkpoint_loader, exit_code, FatalFault, PolicyLoader, Running, FATAL_FAULT_EXIT};
use crate::node::{Metrics, Shutdown};

/// Load the policy, resolve the config, and serve until `shutdown` is triggered.
pub async fn run(cfg: DaemonConfig, shutdown: Shutdown, on_ready: impl FnOnce(&Running)) -> Result<Arc<Metrics>> {
    run_with_loader(cfg, shutdown, on_ready, checkpoint_loader()).await
}

/// [`run`] with policies from `loader` (live mode; lockstep loads the checkpoint).
pub async fn run_with_loader(
    cfg: DaemonConfig,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Running),
    loader: PolicyLoader,
) -> Result<Arc<Metrics>> {
    // Before any GPU use: the kernel cache, and the kernels every loader below takes by default.
    cfg.gpu()?.apply()?;
    let configs = cfg.robot_configs()?;
    match configs.iter().filter(|c| c.lockstep.is_some()).count() {
        0 => live::run_live(cfg, shutdown, on_ready, loader).await,
        n if n == configs.len() => lockstep::run_lockstep(cfg, configs, shutdown, on_ready).await,
        _ => anyhow::bail!(
            "some [[robot]] tables have [lockstep] and some do not: one daemon runs every robot on the sim's clock \
             or every robot on the wall clock; run two daemons"
        ),
    }
}
