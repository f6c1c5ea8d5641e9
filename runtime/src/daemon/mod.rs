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

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use riptide_policies::{DeviceSpec, Policy, PolicyError};

use crate::daemon::config::DaemonConfig;
pub use crate::daemon::setup::Running;
use crate::node::{Metrics, Shutdown};

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
    match cfg.lockstep.clone() {
        Some(section) => lockstep::run_lockstep(cfg, section, shutdown, on_ready).await,
        None => live::run_live(cfg, shutdown, on_ready, loader).await,
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
