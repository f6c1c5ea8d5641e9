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
    #[command(flatten)]
    pub ros2: crate::node::Ros2Args,
}

impl PlayCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            episode,
            rate,
            namespace,
            connect,
            ros2,
        } = self;

        let ros2 = ros2.config().settings("play")?;
        let z = match ros2 {
            Some(_) => crate::node::ros2::ros2_zenoh(None, &[], &connect)?,
            None => crate::node::network::node_zenoh(connect),
        };
        rt.block_on(async {
            let session = crate::node::Graph::open(&z, ros2.as_ref(), Default::default()).await?;
            let stop = crate::node::Shutdown::on_signal();
            let n = crate::episodes::play(&session, &episode, &namespace, rate, &stop).await?;
            println!("{n} messages played");
            anyhow::Ok(())
        })
    }
}
