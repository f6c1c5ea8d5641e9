//! A node's presence on a ROS 2 graph that runs over zenoh (rmw_zenoh): the `[ros2]` table, and the
//! [`Graph`] through which every node declares its publishers and subscriptions.
//!
//! In plain mode a graph is the zenoh session with riptide's keys (`riptide/action/chunk`). In ROS 2 mode
//! the same calls follow the rmw_zenoh contract (`riptide_msgs::ros2`): data keys
//! `<domain>/<name>/<pkg>::msg::dds_::<Type>_/<hash>`, the 33-byte attachment on every sample, a node token
//! and one token per endpoint, so `ros2 node list`, `ros2 topic list -t`, `ros2 topic info -v` and
//! `ros2 topic echo` see riptide. What arrives is filtered and counted: another type on the topic
//! (`rejected_total{reason="ros2_type"}`), another distro's hash (decoded as usual,
//! `ros2_hash_mismatch_total{topic}`), a malformed attachment (`rejected_total{reason="ros2_attachment"}`)
//! and lost samples (`ros2_sequence_gaps_total{topic}`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use riptide_msgs::ros2::attachment::gid_for;
use riptide_msgs::ros2::keys::{self, Distro, EndpointKind, NodeIdentity, Qos};
use riptide_msgs::ros2::{Attachment, SequenceGaps};
use riptide_msgs::RosMessage;
use serde::Deserialize;
use zenoh::handlers::{FifoChannel, FifoChannelHandler, IntoHandler};
use zenoh::liveliness::LivelinessToken;
use zenoh::sample::Sample;
use zenoh::Wait;

use crate::node::metrics::Metrics;
use crate::node::network::{ZenohConfig, ZenohMode};

/// Where `rmw_zenohd` listens: a node in ROS 2 mode is its client unless told otherwise.
pub const RMW_ZENOHD_ENDPOINT: &str = "tcp/127.0.0.1:7447";

/// `[ros2]`: follow the rmw_zenoh contract (also `--ros2`); every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ros2Config {
    pub enabled: bool,
    /// `humble` (keys carry `TypeHashNotSupported`), `jazzy`, `kilted` or `rolling`; default `ROS_DISTRO`
    /// when set, else `jazzy`.
    pub distro: Option<String>,
    /// Default `ROS_DOMAIN_ID` when set, else 0.
    pub domain_id: Option<u32>,
    /// The node's namespace (`/` by default). Topic names do not depend on it.
    pub namespace: Option<String>,
    /// Default `riptide_<role>` (`riptide_daemon`, `riptide_driver`, `riptide_sim`, `riptide_record`).
    pub node_name: Option<String>,
    pub qos: QosConfig,
}

/// `[ros2.qos]`: every endpoint's QoS (default reliable, volatile, keep-last 10).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QosConfig {
    pub reliability: Reliability,
    pub durability: Durability,
    /// Keep-last depth (0 = keep all).
    pub depth: u32,
}

impl Default for QosConfig {
    fn default() -> Self {
        Self {
            reliability: Reliability::Reliable,
            durability: Durability::Volatile,
            depth: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reliability {
    Reliable,
    BestEffort,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    Volatile,
    TransientLocal,
}

/// The `--ros2` flags every node takes (they override its `[ros2]` table).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Ros2Args {
    /// Appear on a ROS 2 graph over zenoh (rmw_zenoh): ROS names, type hashes, attachments, tokens.
    /// Without --listen/--connect the node is a zenoh client of rmw_zenohd (tcp/127.0.0.1:7447).
    #[arg(long)]
    pub ros2: bool,
    /// ROS 2 domain id (default ROS_DOMAIN_ID, else 0).
    #[arg(long, requires = "ros2")]
    pub ros2_domain: Option<u32>,
    /// ROS 2 distribution whose rmw_zenoh contract to follow (default ROS_DISTRO, else jazzy).
    #[arg(long, requires = "ros2")]
    pub ros2_distro: Option<String>,
}

impl Ros2Args {
    /// `table` with these flags on top.
    pub fn apply(&self, mut table: Ros2Config) -> Ros2Config {
        table.enabled |= self.ros2;
        if self.ros2_domain.is_some() {
            table.domain_id = self.ros2_domain;
        }
        if self.ros2_distro.is_some() {
            table.distro = self.ros2_distro.clone();
        }
        table
    }

    /// The flags alone (nodes without a config file).
    pub fn config(&self) -> Ros2Config {
        self.apply(Ros2Config::default())
    }
}

/// A node's resolved ROS 2 identity and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Ros2Settings {
    pub distro: Distro,
    pub domain_id: u32,
    pub namespace: String,
    pub node_name: String,
    pub qos: Qos,
}

impl Ros2Config {
    /// The settings of a node of `role` (`daemon`, `driver`, …), or None when ROS 2 mode is off.
    /// Environment: `ROS_DISTRO`, `ROS_DOMAIN_ID`, used where the table is silent.
    pub fn settings(&self, role: &str) -> Result<Option<Ros2Settings>> {
        if !self.enabled {
            return Ok(None);
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let distro = match self.distro.clone().or_else(|| env("ROS_DISTRO")) {
            Some(d) => d.parse::<Distro>().map_err(|e| anyhow!("ros2.distro: {e}"))?,
            None => Distro::default(),
        };
        let domain_id = match self.domain_id {
            Some(d) => d,
            None => match env("ROS_DOMAIN_ID") {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("ROS_DOMAIN_ID = {v:?} is not a domain id (0-232)"))?,
                None => 0,
            },
        };
        if domain_id > 232 {
            bail!("ros2.domain_id = {domain_id}: ROS 2 domain ids are 0-232");
        }
        let namespace = self.namespace.clone().unwrap_or_else(|| "/".into());
        if namespace != "/" {
            keys::validate_topic_name(&namespace).map_err(|e| anyhow!("ros2.namespace: {e}"))?;
        }
        if self.qos.durability == Durability::TransientLocal {
            // rmw_zenoh backs it with a publication cache and querying subscriptions; riptide has neither, and
            // a token that promised it would mislead late joiners.
            bail!(
                "ros2.qos.durability = \"transient_local\" is not supported: riptide's endpoints are volatile \
                 (a late joiner waits for the next sample); use \"volatile\""
            );
        }
        let node_name = self.node_name.clone().unwrap_or_else(|| format!("riptide_{role}"));
        validate_node_name(&node_name)?;
        Ok(Some(Ros2Settings {
            distro,
            domain_id,
            namespace,
            node_name,
            qos: Qos {
                reliable: self.qos.reliability == Reliability::Reliable,
                // Transient-local was refused above.
                transient_local: false,
                depth: self.qos.depth,
            },
        }))
    }
}

/// rcl's node-name rule: letters, digits and `_`, not starting with a digit.
fn validate_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        bail!("ros2.node_name = {name:?}: a ROS 2 node name is letters, digits and '_', not starting with a digit");
    }
    Ok(())
}

/// The zenoh settings of a node in ROS 2 mode. `explicit` is the node's `[zenoh]` table when its config
/// has one; `listen`/`connect` are the command-line flags. With none of them the node is a client of
/// `rmw_zenohd` ([`RMW_ZENOHD_ENDPOINT`]); `--listen` (or `[zenoh] mode = "peer"`) makes it a listening peer.
pub fn ros2_zenoh(explicit: Option<ZenohConfig>, listen: &[String], connect: &[String]) -> Result<ZenohConfig> {
    let table_given = explicit.is_some();
    let mut z = explicit.unwrap_or_else(|| ZenohConfig {
        mode: if listen.is_empty() {
            ZenohMode::Client
        } else {
            ZenohMode::Peer
        },
        listen: vec![],
        connect: vec![],
        ..ZenohConfig::default()
    });
    if z.mode == ZenohMode::Client && !listen.is_empty() {
        bail!(
            "--listen with [zenoh] mode = \"client\": a zenoh client cannot listen. Drop --listen to join \
             rmw_zenohd as its client, or set mode = \"peer\""
        );
    }
    if !listen.is_empty() {
        z.listen = listen.to_vec();
    }
    if !connect.is_empty() {
        z.connect = connect.to_vec();
    }
    if z.mode == ZenohMode::Client {
        z.listen.clear();
        if z.connect.is_empty() && !table_given {
            z.connect = vec![RMW_ZENOHD_ENDPOINT.into()];
        }
        if z.connect.is_empty() {
            bail!("[zenoh] mode = \"client\" needs connect = [\"tcp/…:7447\"] (where rmw_zenohd listens)");
        }
    }
    Ok(z)
}

/// A topic as a node declares it: riptide's zenoh key, and its ROS 2 name where it is not `/` + key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub key: String,
    pub ros_name: Option<String>,
}

impl Topic {
    pub fn with_ros_name(key: impl Into<String>, ros_name: Option<String>) -> Self {
        Self {
            key: key.into(),
            ros_name,
        }
    }

    /// The ROS 2 name: the configured one, else `/` + key; the sim clock of the default namespace is `/clock`.
    pub fn ros_name(&self) -> Result<String> {
        let name = match &self.ros_name {
            Some(n) => n.clone(),
            None if self.key == riptide_msgs::topics::default_ns::CLOCK => "/clock".into(),
            None => format!("/{}", self.key.trim_end_matches('/')),
        };
        keys::validate_topic_name(&name).map_err(|e| {
            anyhow!(
                "topic {:?} has no legal ROS 2 name ({e}); set ros2_topic = \"/…\" for it or pick a namespace of \
                 letters, digits and '_'",
                self.key
            )
        })?;
        Ok(name)
    }
}

impl From<String> for Topic {
    fn from(key: String) -> Self {
        Self { key, ros_name: None }
    }
}

impl From<&str> for Topic {
    fn from(key: &str) -> Self {
        Self {
            key: key.into(),
            ros_name: None,
        }
    }
}

impl From<&String> for Topic {
    fn from(key: &String) -> Self {
        Self {
            key: key.clone(),
            ros_name: None,
        }
    }
}

/// A ROS 2 message type: its name and RIHS01 hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosType {
    pub name: &'static str,
    pub hash: String,
}

impl RosType {
    pub fn of<T: RosMessage>() -> Self {
        Self {
            name: T::TYPE_NAME,
            // riptide-msgs' own schemas always parse (`msgs/tests/ros2.rs` hashes every one).
            hash: riptide_msgs::ros2::type_hash::<T>().unwrap_or_default(),
        }
    }

    /// A type riptide-msgs knows by name (`sensor_msgs/msg/Image`, …).
    pub fn named(type_name: &str) -> Result<Self> {
        let unknown = || anyhow!("unknown message type {type_name:?}");
        let name = riptide_msgs::mcap::canonical_type_name(type_name).ok_or_else(unknown)?;
        let schema = riptide_msgs::mcap::schema_for_type_name(name).ok_or_else(unknown)?;
        let hash = riptide_msgs::ros2::type_hash_of(name, schema).map_err(|e| anyhow!("{type_name}: {e}"))?;
        Ok(Self { name, hash })
    }
}

/// A node's view of the network: its zenoh session, in plain or ROS 2 mode. Derefs to the session for
/// what stays zenoh-only (riptide's liveliness tokens, the remote-inference queryable).
#[derive(Clone)]
pub struct Graph {
    session: zenoh::Session,
    ros: Option<Arc<RosNode>>,
    metrics: Arc<Metrics>,
    /// Subscriptions that live as long as the graph (see [`Graph::keep`]).
    kept: Arc<Mutex<Vec<Subscription>>>,
}

struct RosNode {
    settings: Ros2Settings,
    identity: NodeIdentity,
    next_eid: AtomicU32,
    _token: LivelinessToken,
    /// (topic, peer GID) pairs whose other-distro samples were logged already: once per peer.
    warned: Mutex<HashSet<(String, [u8; 16])>>,
}

impl std::ops::Deref for Graph {
    type Target = zenoh::Session;
    fn deref(&self) -> &zenoh::Session {
        &self.session
    }
}

impl Graph {
    /// A graph on `session`: plain, or in ROS 2 mode with `ros` (declares the node's token).
    pub fn new(session: zenoh::Session, ros: Option<&Ros2Settings>, metrics: Arc<Metrics>) -> Result<Self> {
        let ros = match ros {
            None => None,
            Some(s) => {
                let identity = NodeIdentity {
                    domain: s.domain_id,
                    zid: session.zid().to_string().to_lowercase(),
                    nid: 0,
                    enclave: String::new(),
                    namespace: s.namespace.clone(),
                    name: s.node_name.clone(),
                };
                let token = session
                    .liveliness()
                    .declare_token(identity.node_token())
                    .wait()
                    .map_err(|e| anyhow!("declaring the ROS 2 node token: {e}"))?;
                tracing::info!(
                    "ROS 2 mode ({}, domain {}): node {}/{}",
                    s.distro,
                    s.domain_id,
                    s.namespace.trim_end_matches('/'),
                    s.node_name
                );
                Some(Arc::new(RosNode {
                    settings: s.clone(),
                    identity,
                    next_eid: AtomicU32::new(1),
                    _token: token,
                    warned: Mutex::new(HashSet::new()),
                }))
            }
        };
        Ok(Self {
            session,
            ros,
            metrics,
            kept: Arc::default(),
        })
    }

    /// Open a session for a node and put a graph on it.
    pub async fn open(z: &ZenohConfig, ros: Option<&Ros2Settings>, metrics: Arc<Metrics>) -> Result<Self> {
        let session = crate::node::network::open(z).await.map_err(|e| match (ros, z.mode) {
            (Some(_), ZenohMode::Client) => e.context(format!(
                "ROS 2 mode: no zenoh router at {}; is rmw_zenohd running (`ros2 run rmw_zenoh_cpp rmw_zenohd`)? \
                 Or give --connect ENDPOINT, or --listen to run as a peer",
                z.connect.join(", ")
            )),
            _ => e,
        })?;
        Self::new(session, ros, metrics)
    }

    /// Keep `sub` receiving for as long as this graph (or a clone) lives.
    pub fn keep(&self, sub: Subscription) {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).push(sub);
    }

    pub fn session(&self) -> &zenoh::Session {
        &self.session
    }

    pub fn ros2(&self) -> Option<&Ros2Settings> {
        self.ros.as_ref().map(|n| &n.settings)
    }

    /// Where `topic` travels: riptide's key (plain) or its rmw_zenoh data key, for logs.
    pub fn describe(&self, topic: impl Into<Topic>, ty: &RosType) -> String {
        let topic = topic.into();
        match &self.ros {
            None => topic.key,
            Some(n) => match topic.ros_name() {
                Ok(name) => format!("{name} [{}] (domain {})", ty.name, n.settings.domain_id),
                Err(e) => e.to_string(),
            },
        }
    }

    /// The data key and the endpoint token of `topic` in ROS 2 mode.
    fn endpoint(
        &self,
        node: &RosNode,
        topic: &Topic,
        ty: &RosType,
        kind: EndpointKind,
    ) -> Result<(String, String, String)> {
        let name = topic.ros_name()?;
        let s = &node.settings;
        let hash = keys::hash_field(s.distro, &ty.hash).to_string();
        let key = keys::data_key(s.domain_id, &name, ty.name, &hash)?;
        let eid = node.next_eid.fetch_add(1, Ordering::Relaxed);
        let token = node.identity.endpoint_token(eid, kind, &name, ty.name, &hash, &s.qos)?;
        Ok((name, key, token))
    }

    /// A publisher of `ty` on `topic`.
    pub fn publisher(&self, topic: impl Into<Topic>, ty: &RosType) -> Result<Publisher> {
        let topic = topic.into();
        let Some(node) = &self.ros else {
            let inner = self
                .session
                .declare_publisher(topic.key.clone())
                .wait()
                .map_err(|e| anyhow!("publisher {}: {e}", topic.key))?;
            return Ok(Publisher { inner, ros: None });
        };
        let (name, key, token_key) = self.endpoint(node, &topic, ty, EndpointKind::Publisher)?;
        let inner = self
            .session
            .declare_publisher(key.clone())
            .wait()
            .map_err(|e| anyhow!("publisher {name} ({key}): {e}"))?;
        let token = self
            .session
            .liveliness()
            .declare_token(token_key.clone())
            .wait()
            .map_err(|e| anyhow!("token of {name}: {e}"))?;
        Ok(Publisher {
            inner,
            ros: Some(RosPublisher {
                sequence: AtomicI64::new(0),
                gid: gid_for(&token_key),
                _token: token,
            }),
        })
    }

    /// A subscription to `ty` on `topic` that hands each admitted sample to `f`.
    pub fn subscribe<F>(&self, topic: impl Into<Topic>, ty: &RosType, f: F) -> Result<Subscription>
    where
        F: Fn(Sample) + Send + Sync + 'static,
    {
        let topic = topic.into();
        let Some(node) = &self.ros else {
            let inner = self
                .session
                .declare_subscriber(topic.key.clone())
                .callback(f)
                .wait()
                .map_err(|e| anyhow!("subscribing to {}: {e}", topic.key))?;
            return Ok(Subscription {
                _inner: inner,
                _token: None,
            });
        };
        let (name, key, token_key) = self.endpoint(node, &topic, ty, EndpointKind::Subscription)?;
        // Any type and hash on this name: another distro's hash is counted, another type refused.
        let prefix = format!("{}/{}", node.settings.domain_id, &name[1..]);
        let filter = Admission {
            wildcard_prefix: format!("{prefix}/"),
            dds_type: keys::dds_type_name(ty.name)?,
            hash: keys::hash_field(node.settings.distro, &ty.hash).to_string(),
            topic: name.clone(),
            metrics: self.metrics.clone(),
            gaps: Mutex::new(SequenceGaps::default()),
            node: node.clone(),
        };
        let inner = self
            .session
            .declare_subscriber(format!("{prefix}/*/*"))
            .callback(move |s| {
                if filter.admit(&s) {
                    f(s)
                }
            })
            .wait()
            .map_err(|e| anyhow!("subscribing to {name} ({key}): {e}"))?;
        let token = self
            .session
            .liveliness()
            .declare_token(token_key)
            .wait()
            .map_err(|e| anyhow!("token of {name}: {e}"))?;
        Ok(Subscription {
            _inner: inner,
            _token: Some(token),
        })
    }

    /// [`Graph::subscribe`] into a FIFO channel (zenoh's default depth) read with `recv_async`.
    pub fn subscribe_fifo(
        &self,
        topic: impl Into<Topic>,
        ty: &RosType,
    ) -> Result<(Subscription, FifoChannelHandler<Sample>)> {
        let (callback, handler) = FifoChannel::default().into_handler();
        let sub = self.subscribe(topic, ty, move |s| callback.call(s))?;
        Ok((sub, handler))
    }
}

/// What a ROS 2 subscription lets through, and what it counts.
struct Admission {
    wildcard_prefix: String,
    dds_type: String,
    hash: String,
    topic: String,
    metrics: Arc<Metrics>,
    gaps: Mutex<SequenceGaps>,
    node: Arc<RosNode>,
}

impl Admission {
    fn admit(&self, s: &Sample) -> bool {
        let key = s.key_expr().as_str();
        let (ty, hash) = key
            .strip_prefix(&self.wildcard_prefix)
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or(("", ""));
        if ty != self.dds_type {
            self.metrics.inc("rejected_total", &[("reason", "ros2_type")]);
            tracing::debug!("{}: dropped a sample of another type ({key})", self.topic);
            return false;
        }
        let attachment = match s.attachment().map(|a| Attachment::parse(&a.to_bytes())) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                self.metrics.inc("rejected_total", &[("reason", "ros2_attachment")]);
                tracing::debug!("{}: dropped a sample: {e}", self.topic);
                return false;
            }
        };
        if let Some(a) = &attachment {
            let missed = self.gaps.lock().unwrap_or_else(|p| p.into_inner()).observe(a);
            if missed > 0 {
                self.metrics
                    .inc_by("ros2_sequence_gaps_total", &[("topic", &self.topic)], missed);
            }
        }
        if hash != self.hash {
            self.metrics.inc("ros2_hash_mismatch_total", &[("topic", &self.topic)]);
            let peer = attachment.map(|a| a.source_gid).unwrap_or_default();
            let first = self
                .node
                .warned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((self.topic.clone(), peer));
            if first {
                tracing::warn!(
                    "{}: a publisher sends {} with type hash {hash}, this node expects {} (another ROS 2 distro?); \
                     decoding it as usual",
                    self.topic,
                    self.dds_type,
                    self.hash
                );
            }
        }
        true
    }
}

/// A publisher declared through a [`Graph`].
pub struct Publisher {
    inner: zenoh::pubsub::Publisher<'static>,
    ros: Option<RosPublisher>,
}

struct RosPublisher {
    /// The last sequence number sent (the first sample carries 1).
    sequence: AtomicI64,
    gid: [u8; 16],
    _token: LivelinessToken,
}

impl Publisher {
    /// Publish one CDR payload (with rmw_zenoh's attachment in ROS 2 mode).
    pub fn put(&self, payload: impl Into<zenoh::bytes::ZBytes>) -> Result<()> {
        let put = self.inner.put(payload);
        let result = match &self.ros {
            None => put.wait(),
            Some(r) => {
                let attachment = Attachment {
                    sequence_number: r.sequence.fetch_add(1, Ordering::Relaxed) + 1,
                    source_timestamp_ns: wall_ns(),
                    source_gid: r.gid,
                };
                put.attachment(attachment.encode().to_vec()).wait()
            }
        };
        result.map_err(|e| anyhow!("publishing on {}: {e}", self.inner.key_expr()))
    }
}

/// A subscription declared through a [`Graph`]: samples arrive while it lives.
pub struct Subscription {
    _inner: zenoh::pubsub::Subscriber<()>,
    _token: Option<LivelinessToken>,
}

/// Wall-clock nanoseconds since the Unix epoch (the attachment's timestamp, also under sim time).
fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_jazzy_domain_0_and_riptides_node_names() {
        let cfg = Ros2Config {
            enabled: true,
            distro: Some("jazzy".into()),
            domain_id: Some(0),
            ..Default::default()
        };
        let s = cfg.settings("daemon").unwrap().unwrap();
        assert_eq!((s.distro, s.domain_id, s.namespace.as_str()), (Distro::Jazzy, 0, "/"));
        assert_eq!(s.node_name, "riptide_daemon");
        assert_eq!(s.qos.token_field(), "::,10:,:,:,,");
        assert!(Ros2Config::default().settings("daemon").unwrap().is_none());
        for (bad, why) in [
            (
                Ros2Config {
                    distro: Some("iron2".into()),
                    ..cfg.clone()
                },
                "distro",
            ),
            (
                Ros2Config {
                    domain_id: Some(300),
                    ..cfg.clone()
                },
                "0-232",
            ),
            (
                Ros2Config {
                    node_name: Some("2bad".into()),
                    ..cfg.clone()
                },
                "node name",
            ),
            (
                Ros2Config {
                    namespace: Some("/a-b".into()),
                    ..cfg.clone()
                },
                "namespace",
            ),
            (
                Ros2Config {
                    qos: QosConfig {
                        durability: Durability::TransientLocal,
                        ..QosConfig::default()
                    },
                    ..cfg.clone()
                },
                "transient_local",
            ),
        ] {
            let e = bad.settings("daemon").unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn topology_defaults_to_a_client_of_rmw_zenohd() {
        let z = ros2_zenoh(None, &[], &[]).unwrap();
        assert_eq!(
            (z.mode, z.connect.clone(), z.listen.len()),
            (ZenohMode::Client, vec![RMW_ZENOHD_ENDPOINT.to_string()], 0)
        );
        let listen = vec!["tcp/127.0.0.1:7500".to_string()];
        let z = ros2_zenoh(None, &listen, &[]).unwrap();
        assert_eq!((z.mode, z.listen.clone()), (ZenohMode::Peer, listen.clone()));
        let client = ZenohConfig {
            mode: ZenohMode::Client,
            connect: vec!["tcp/10.0.0.2:7447".into()],
            ..ZenohConfig::default()
        };
        let e = ros2_zenoh(Some(client.clone()), &listen, &[]).unwrap_err().to_string();
        assert!(e.contains("cannot listen"), "{e}");
        let z = ros2_zenoh(Some(client), &[], &[]).unwrap();
        assert_eq!(z.connect, vec!["tcp/10.0.0.2:7447".to_string()]);
    }

    #[test]
    fn ros_names_come_from_keys_or_configuration_and_are_checked() {
        assert_eq!(
            Topic::from("riptide/action/chunk").ros_name().unwrap(),
            "/riptide/action/chunk"
        );
        assert_eq!(
            Topic::from("arm1/action/chunk").ros_name().unwrap(),
            "/arm1/action/chunk"
        );
        assert_eq!(Topic::from("riptide/clock").ros_name().unwrap(), "/clock");
        assert_eq!(Topic::from("arm1/clock").ros_name().unwrap(), "/arm1/clock");
        let t = Topic::with_ros_name("riptide/observation/image", Some("/camera/image_raw".into()));
        assert_eq!(t.ros_name().unwrap(), "/camera/image_raw");
        let e = Topic::from("arm-1/action").ros_name().unwrap_err().to_string();
        assert!(e.contains("'-'") && e.contains("ros2_topic"), "{e}");
    }
}
