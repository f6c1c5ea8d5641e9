//! A node's zenoh network: the `[zenoh]` table every riptide node takes, the zenoh config built from
//! it (loopback-only peer by default, no multicast scouting), and waiting for peers by liveliness.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde::Deserialize;

/// Default listen endpoint: loopback only; 7447 stays free for a zenohd router.
pub const DEFAULT_ENDPOINT: &str = "tcp/127.0.0.1:7450";

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ZenohMode {
    Peer,
    Client,
    Router,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZenohConfig {
    pub mode: ZenohMode,
    pub listen: Vec<String>,
    pub connect: Vec<String>,
    pub multicast_scouting: bool,
    /// Zero-copy shared memory with peers on the same host (large camera frames); zenoh falls back to
    /// the network path for peers that do not support it.
    pub shared_memory: bool,
    /// A zenoh JSON5 config file for everything else (TLS, ACL, …); the fields above override it.
    pub config_file: Option<PathBuf>,
}

impl Default for ZenohConfig {
    fn default() -> Self {
        Self {
            mode: ZenohMode::Peer,
            listen: vec![DEFAULT_ENDPOINT.into()],
            connect: vec![],
            multicast_scouting: false,
            shared_memory: true,
            config_file: None,
        }
    }
}

/// Wait until `session` sees the liveliness token `key` (a node is up and, since nodes declare their
/// subscribers first, ready to receive); an error after `timeout`.
pub async fn wait_alive(session: &zenoh::Session, key: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let replies = session.liveliness().get(key).await.map_err(|e| anyhow!("{e}"))?;
        if matches!(replies.recv_async().await, Ok(r) if r.result().is_ok()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{key} never became visible within {:.0} s", timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The zenoh config of any riptide node from its `[zenoh]` table.
pub fn zenoh_config_from(z: &ZenohConfig) -> Result<zenoh::Config> {
    let mut c = match &z.config_file {
        Some(p) => zenoh::Config::from_file(p).map_err(|e| anyhow!("zenoh.config_file {}: {e}", p.display()))?,
        None => zenoh::Config::default(),
    };
    let mode = match z.mode {
        ZenohMode::Peer => "peer",
        ZenohMode::Client => "client",
        ZenohMode::Router => "router",
    };
    let set = |c: &mut zenoh::Config, k: &str, v: String| {
        c.insert_json5(k, &v)
            .map_err(|e| anyhow!("zenoh config {k} = {v}: {e}"))
    };
    set(&mut c, "mode", format!("{mode:?}"))?;
    set(&mut c, "listen/endpoints", serde_json::to_string(&z.listen)?)?;
    set(&mut c, "connect/endpoints", serde_json::to_string(&z.connect)?)?;
    set(&mut c, "scouting/multicast/enabled", z.multicast_scouting.to_string())?;
    set(&mut c, "transport/shared_memory/enabled", z.shared_memory.to_string())?;
    Ok(c)
}

/// Open a zenoh session for a node.
pub async fn open(z: &ZenohConfig) -> Result<zenoh::Session> {
    zenoh::open(zenoh_config_from(z)?)
        .await
        .map_err(|e| anyhow!("cannot open the zenoh session: {e}"))
}

/// The zenoh settings of a node that joins the daemon (sim, recorder, player, driver): a peer that
/// connects to the daemon's default endpoint, or to `connect` when given.
pub fn node_zenoh(connect: Vec<String>) -> ZenohConfig {
    ZenohConfig {
        mode: ZenohMode::Peer,
        listen: vec![],
        connect: if connect.is_empty() {
            vec![DEFAULT_ENDPOINT.into()]
        } else {
            connect
        },
        ..ZenohConfig::default()
    }
}
