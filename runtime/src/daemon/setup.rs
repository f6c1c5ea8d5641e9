//! What both daemon clocks set up the same way: the pipeline from the config, the warm-up window,
//! and the handles a running daemon gives its caller.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use riptide_policies::{load_policy, DeviceSpec, Policy, PolicyError, PolicySpec};

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

/// Loads a checkpoint's policy for a worker (again after a fault). The daemon's is
/// [`riptide_policies::load_policy`]; the library API takes another (tests inject faults with it).
pub type PolicyLoader =
    Arc<dyn Fn(&Path, DeviceSpec) -> std::result::Result<Box<dyn Policy>, PolicyError> + Send + Sync>;

/// The loader `riptide run` uses.
pub fn checkpoint_loader() -> PolicyLoader {
    Arc::new(|dir: &Path, device: DeviceSpec| riptide_policies::load_policy(dir, device))
}

/// The daemon stopped because a worker gave up on its policy (`[worker] max_consecutive_faults` faults
/// in a row, or a reload that failed). `riptide run` exits with [`FATAL_FAULT_EXIT`] so a supervisor
/// (systemd `Restart=on-failure`) starts it again.
#[derive(Debug, Clone)]
pub struct FatalFault(pub String);

impl std::fmt::Display for FatalFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the policy keeps faulting: {}", self.0)
    }
}

impl std::error::Error for FatalFault {}

/// `riptide run`'s exit status after a [`FatalFault`].
pub const FATAL_FAULT_EXIT: i32 = 3;

/// The exit status for an error of `riptide run`: [`FATAL_FAULT_EXIT`] for a [`FatalFault`], else 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.downcast_ref::<FatalFault>().is_some()) {
        FATAL_FAULT_EXIT
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_fault_exits_with_status_3_anything_else_with_1() {
        let fatal = anyhow::Error::from(FatalFault("3 faults in a row".into())).context("riptide run");
        assert_eq!(exit_code(&fatal), 3);
        assert!(format!("{fatal:#}").contains("3 faults in a row"));
        assert_eq!(exit_code(&anyhow::anyhow!("fps is required")), 1);
    }
}
