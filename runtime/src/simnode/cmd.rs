//! `riptide sim`: its command-line arguments and entry point.

use std::path::PathBuf;

/// `riptide sim`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct SimCmd {
    #[arg(long)]
    pub env: String,
    /// Simulated time: publish <ns>/clock and advance one control step per command.
    #[arg(long)]
    pub lockstep: bool,
    #[arg(long, default_value_t = 1)]
    pub episodes: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Publish camera frames.
    #[arg(long)]
    pub render: bool,
    #[arg(long, default_value = "riptide")]
    pub namespace: String,
    /// Zenoh endpoint to connect to (default: the daemon's tcp/127.0.0.1:7450).
    #[arg(long)]
    pub connect: Vec<String>,
    /// Record each episode (MCAP) into this folder.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// observation.environment_state layout (its width, e.g. 5 or 12 for arm-reach: the original or
    /// with tool-relative features appended); default: the one the shipped policy for --env takes.
    #[arg(long)]
    pub env_state_width: Option<usize>,
    /// Wall time only: publish the newest observation this often (Hz; a sensor faster than the
    /// control rate), stamped when sent. Default: once per control step.
    #[arg(long)]
    pub publish_hz: Option<f64>,
    #[command(flatten)]
    pub ros2: crate::node::Ros2Args,
}

impl SimCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            env,
            lockstep,
            episodes,
            seed,
            render,
            namespace,
            connect,
            record,
            env_state_width,
            publish_hz,
            ros2,
        } = self;

        let ros2 = ros2.config().settings("sim")?;
        let z = match ros2 {
            Some(_) => crate::node::ros2::ros2_zenoh(None, &[], &connect)?,
            None => crate::node::network::node_zenoh(connect),
        };
        let env_name = env.clone();
        let cfg = crate::simnode::SimNodeConfig {
            env,
            namespace,
            lockstep,
            episodes,
            seed,
            render,
            command_timeout_s: 60.0,
            zenoh: z,
            record_dir: record,
            env_state_width: env_state_width.or_else(|| crate::checkpoints::default_env_state_width(&env_name)),
            publish_hz,
            ros2,
        };
        rt.block_on(async {
            let session = zenoh::open(crate::node::network::zenoh_config_from(&cfg.zenoh)?)
                .await
                .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
            let stop = crate::node::Shutdown::on_signal();
            let results = tokio::task::spawn_blocking(move || {
                crate::simnode::run_sim(&cfg, &session, &stop, |r| {
                    println!("{}", serde_json::to_string(r).unwrap_or_default())
                })
            })
            .await??;
            let ok = results.iter().filter(|r| r.success).count();
            println!("{ok}/{} successful", results.len());
            anyhow::Ok(())
        })
    }
}
