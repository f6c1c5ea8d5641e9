//! The command-line entry points of the daemon: `riptide run` and `riptide check-config`.

use std::path::PathBuf;

use anyhow::Result;

use crate::daemon::config::DaemonConfig;

/// `riptide run`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct RunCmd {
    /// Daemon config (TOML); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Checkpoint to serve when no config file is given (or to override it).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Zenoh endpoint to listen on (default tcp/127.0.0.1:7450, loopback only).
    #[arg(long)]
    pub listen: Vec<String>,
    /// Zenoh endpoint to connect to (e.g. a zenohd router, tcp/127.0.0.1:7447).
    #[arg(long)]
    pub connect: Vec<String>,
    /// Control rate of the training data (required unless the config sets fps).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Prefix replacing `riptide` in every topic.
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub device: Option<String>,
    /// Inference rate (default fps / n_action_steps).
    #[arg(long)]
    pub rate_hz: Option<f64>,
    /// Print p50/p90/p99 per stage at exit.
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub ros2: crate::node::Ros2Args,
}

impl RunCmd {
    /// The daemon config: the file (or defaults for --checkpoint), then the flags on top.
    pub fn config(&self) -> Result<DaemonConfig> {
        let mut cfg = match (&self.config, &self.checkpoint) {
            (Some(f), _) => DaemonConfig::from_file(f)?,
            (None, Some(c)) => DaemonConfig::for_checkpoint(c.clone()),
            (None, None) => anyhow::bail!("give --config FILE or --checkpoint DIR"),
        };
        if let (Some(_), Some(c)) = (&self.config, &self.checkpoint) {
            cfg.checkpoint = c.clone();
        }
        cfg.ros2 = self.ros2.apply(cfg.ros2);
        if cfg.ros2.settings("daemon")?.is_some() {
            // ROS 2 mode: a client of rmw_zenohd unless the config or the flags say otherwise.
            let explicit = cfg.zenoh_explicit.then(|| cfg.zenoh.clone());
            cfg.zenoh = crate::node::ros2::ros2_zenoh(explicit, &self.listen, &self.connect)?;
        } else {
            if !self.listen.is_empty() {
                cfg.zenoh.listen = self.listen.clone();
            }
            if !self.connect.is_empty() {
                cfg.zenoh.connect = self.connect.clone();
            }
        }
        if self.fps.is_some() {
            cfg.fps = self.fps;
        }
        if let Some(n) = &self.namespace {
            cfg.namespace = n.clone();
        }
        if let Some(d) = &self.device {
            cfg.device = d.clone();
        }
        if self.rate_hz.is_some() {
            cfg.trigger.rate_hz = self.rate_hz;
        }
        Ok(cfg)
    }

    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let cfg = self.config()?;
        // The signal handler is a task: it is made inside the runtime.
        let metrics = rt.block_on(async {
            crate::daemon::run(cfg, crate::node::Shutdown::on_signal(), |r| {
                tracing::info!(
                    "ready: {} inputs, {} on {}",
                    r.spec.inputs.len(),
                    r.spec.kind,
                    r.spec.backend
                )
            })
            .await
        })?;
        if self.stats {
            println!("{}", metrics.table());
        }
        Ok(())
    }
}

/// `riptide check-config`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct CheckConfigCmd {
    /// The daemon config (TOML).
    pub file: PathBuf,
}

impl CheckConfigCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self { file } = self;

        let top = DaemonConfig::from_file(&file)?;
        let _ = top.batch_window()?;
        for cfg in top.robot_configs()? {
            let policy = riptide_policies::load_policy(&cfg.checkpoint, cfg.device()?)?;
            let r = cfg.resolve(policy.spec())?;
            println!(
                "{} [{}]: OK ({} on {})",
                file.display(),
                cfg.namespace,
                policy.spec().kind,
                policy.spec().backend
            );
            // In ROS 2 mode every topic is shown by its ROS name, which must be legal.
            let ros2 = top.ros2.enabled;
            let shown = |t: crate::node::Topic| -> Result<String> { Ok(if ros2 { t.ros_name()? } else { t.key }) };
            for i in &r.inputs {
                println!(
                    "  {:<34} ← {} ({:?}, max age {:.0} ms)",
                    i.feature,
                    shown(i.declared())?,
                    i.msg_type,
                    i.max_age_s * 1e3
                );
            }
            println!(
                "  chunks → {} every {:.3} s ({} actions at {} fps)",
                shown(r.chunk_declared())?,
                1.0 / r.rate_hz,
                policy.spec().n_action_steps,
                r.fps
            );
            shown(r.meta_declared())?;
            if let Some(s) = top.ros2.settings("daemon")? {
                println!("  ROS 2: {} domain {}, node {}", s.distro, s.domain_id, s.node_name);
            }
        }
        Ok(())
    }
}
