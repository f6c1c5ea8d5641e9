//! What both daemon clocks set up the same way: the pipeline from the config, the warm-up window,
//! and the handles a running daemon gives its caller.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use riptide_policies::{load_policy, PolicySpec};

use crate::daemon::config::{DaemonConfig, Resolved};
use crate::node::Metrics;
use crate::pipeline::window::TimedWindow;
use crate::pipeline::{Pipeline, Sampling};

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
    let pipeline = Pipeline::new(policy, sampling_of(cfg), resolved.dt_s)?;
    Ok((pipeline, resolved))
}

/// The daemon's sampling settings.
pub fn sampling_of(cfg: &DaemonConfig) -> Sampling {
    Sampling {
        inference_steps: cfg.inference_steps,
        rti: cfg.rti.clone(),
        eadp: cfg.eadp.clone(),
        candidates: cfg.candidates,
    }
}
