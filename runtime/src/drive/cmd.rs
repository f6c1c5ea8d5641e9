//! `riptide drive`: its command-line arguments and entry point.

use std::path::PathBuf;

/// `riptide drive`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct DriveCmd {
    /// The driver config (TOML); see examples/arm-driver.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub ros2: crate::node::Ros2Args,
}

impl DriveCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self { config, check, ros2 } = self;

        let mut cfg = crate::drive::DriveConfig::from_file(&config)?;
        cfg.ros2 = ros2.apply(cfg.ros2);
        if cfg.ros2.settings("driver")?.is_some() {
            let explicit = cfg.zenoh_explicit.then(|| cfg.zenoh.clone());
            cfg.zenoh = crate::node::ros2::ros2_zenoh(explicit, &[], &[])?;
        }
        if check {
            println!("{}: OK", config.display());
            return Ok(());
        }
        rt.block_on(async {
            let node = crate::drive::start(cfg).await?;
            crate::node::Shutdown::on_signal().wait().await;
            tracing::info!("shutting down");
            let m = node.stop().await?;
            tracing::info!("{}", m.summary());
            anyhow::Ok(())
        })
    }
}
