//! `riptide play`: its command-line arguments and entry point.

use std::path::PathBuf;

/// `riptide play`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct PlayCmd {
    pub episode: PathBuf,
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    #[arg(long, default_value = "riptide")]
    pub namespace: String,
    #[arg(long)]
    pub connect: Vec<String>,
}

impl PlayCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            episode,
            rate,
            namespace,
            connect,
        } = self;

        let z = crate::node::network::node_zenoh(connect);
        rt.block_on(async {
            let session = zenoh::open(crate::node::network::zenoh_config_from(&z)?)
                .await
                .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
            let stop = crate::node::Shutdown::on_signal();
            let n = crate::episodes::play(&session, &episode, &namespace, rate, &stop).await?;
            println!("{n} messages played");
            anyhow::Ok(())
        })
    }
}
