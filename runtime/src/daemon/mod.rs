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

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use riptide_policies::{load_policy, PolicySpec};

use crate::daemon::config::{DaemonConfig, Resolved};
use crate::node::{Metrics, Shutdown};
use crate::pipeline::window::TimedWindow;
use crate::pipeline::Pipeline;

/// A running daemon's handles for tests and the CLI.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub spec: PolicySpec,
}

/// Random observations that fit `spec` (for warm-up).
pub fn warmup_window(spec: &PolicySpec) -> TimedWindow {
    TimedWindow {
        window: crate::pipeline::tensors::random_window_for(spec, 1, 0),
        t_obs_s: 0.0,
    }
}

/// Load the policy (off the async executor) and build the pipeline the config asks for.
pub async fn load_pipeline(cfg: &DaemonConfig) -> Result<(Pipeline, Resolved)> {
    let device = cfg.device()?;
    let checkpoint = cfg.checkpoint.clone();
    let policy = tokio::task::spawn_blocking(move || load_policy(&checkpoint, device))
        .await
        .map_err(|_| anyhow!("the policy loader thread died"))?
        .with_context(|| format!("loading {}", cfg.checkpoint.display()))?;
    let resolved = cfg.resolve(policy.spec())?;
    let pipeline = Pipeline::new(policy, lockstep::sampling_of(cfg), resolved.dt_s)?;
    Ok((pipeline, resolved))
}

/// Load the policy, resolve the config, and serve until `shutdown` is triggered.
pub async fn run(cfg: DaemonConfig, shutdown: Shutdown, on_ready: impl FnOnce(&Running)) -> Result<Arc<Metrics>> {
    match cfg.lockstep.clone() {
        Some(section) => lockstep::run_lockstep(cfg, section, shutdown, on_ready).await,
        None => live::run_live(cfg, shutdown, on_ready).await,
    }
}
