//! ROS 2 names and the rmw_zenoh key expressions built from them: data keys, liveliness tokens and the QoS
//! field, so that `ros2 topic list` / `echo` see riptide's topics on an rmw_zenoh graph.

use std::fmt;
use std::str::FromStr;

use super::error::Ros2Error;
use super::type_hash::normalise_type_name;

/// The hash field of keys and tokens on distros without type hashes (Humble).
pub const TYPE_HASH_NOT_SUPPORTED: &str = "TypeHashNotSupported";
/// Admin space of rmw_zenoh's graph tokens.
pub const LIVELINESS_PREFIX: &str = "@ros2_lv";

/// The ROS 2 distribution whose rmw_zenoh contract a node follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distro {
    Humble,
    #[default]
    Jazzy,
    Kilted,
    Rolling,
}

impl Distro {
    /// Whether keys and tokens carry RIHS01 type hashes (Iron and later) or `TypeHashNotSupported`.
    pub fn has_type_hashes(self) -> bool {
        !matches!(self, Self::Humble)
    }
}

impl FromStr for Distro {
    type Err = Ros2Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "humble" => Ok(Self::Humble),
            "jazzy" => Ok(Self::Jazzy),
            "kilted" => Ok(Self::Kilted),
            "rolling" => Ok(Self::Rolling),
            _ => Err(Ros2Error::Distro(s.into())),
        }
    }
}

impl fmt::Display for Distro {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Humble => "humble",
            Self::Jazzy => "jazzy",
            Self::Kilted => "kilted",
            Self::Rolling => "rolling",
        })
    }
}

/// Check a fully qualified ROS 2 topic name (rmw's rules): starts with `/`, tokens of `[A-Za-z0-9_]` that
/// do not start with a digit, no empty token (`//`), no trailing `/`, at most 255 characters.
pub fn validate_topic_name(name: &str) -> Result<(), Ros2Error> {
    let bad = |rule: &'static str| {
        Err(Ros2Error::Name {
            name: name.into(),
            rule,
        })
    };
    let Some(rest) = name.strip_prefix('/') else {
        return bad("a ROS 2 topic name is absolute: it starts with '/'");
    };
    if name.len() > 255 {
        return bad("at most 255 characters");
    }
    if rest.is_empty() || rest.ends_with('/') {
        return bad("it must not end with '/'");
    }
    for token in rest.split('/') {
        if token.is_empty() {
            return bad("no empty token ('//')");
        }
        if !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("only letters, digits, '_' and '/' (no '-', '.' or spaces)");
        }
        if token.starts_with(|c: char| c.is_ascii_digit()) {
            return bad("a token must not start with a digit");
        }
    }
    Ok(())
}

/// The ROS 2 name of a riptide zenoh key (`riptide/action/chunk` → `/riptide/action/chunk`), checked.
pub fn ros_name_for_key(key: &str) -> Result<String, Ros2Error> {
    let name = format!("/{key}");
    validate_topic_name(&name)?;
    Ok(name)
}

/// The zenoh key `zenoh-bridge-ros2dds` uses for a ROS 2 topic: the name without its leading `/`.
pub fn bridge_key(ros_name: &str) -> Result<String, Ros2Error> {
    validate_topic_name(ros_name)?;
    Ok(ros_name[1..].to_string())
}

/// `sensor_msgs/msg/JointState` → `sensor_msgs::msg::dds_::JointState_` (the DDS type name rmw uses).
pub fn dds_type_name(type_name: &str) -> Result<String, Ros2Error> {
    let full = normalise_type_name(type_name)?;
    let mut parts = full.split('/');
    let (pkg, _, ty) = (parts.next(), parts.next(), parts.next());
    match (pkg, ty) {
        (Some(pkg), Some(ty)) => Ok(format!("{pkg}::msg::dds_::{ty}_")),
        _ => Err(Ros2Error::TypeName(type_name.into())),
    }
}

/// The hash field for `distro`: the RIHS01 hash, or `TypeHashNotSupported` on Humble.
pub fn hash_field(distro: Distro, rihs01: &str) -> &str {
    if distro.has_type_hashes() {
        rihs01
    } else {
        TYPE_HASH_NOT_SUPPORTED
    }
}

/// rmw_zenoh's data key: `<domain>/<topic without the leading '/'>/<dds type>/<hash>`.
pub fn data_key(domain: u32, ros_name: &str, type_name: &str, hash: &str) -> Result<String, Ros2Error> {
    validate_topic_name(ros_name)?;
    Ok(format!(
        "{domain}/{}/{}/{hash}",
        &ros_name[1..],
        dds_type_name(type_name)?
    ))
}

/// A data key that accepts any hash of the type (what a subscription uses to count other distros' samples).
pub fn data_key_any_hash(domain: u32, ros_name: &str, type_name: &str) -> Result<String, Ros2Error> {
    data_key(domain, ros_name, type_name, "*")
}

/// A liveliness-token field: every `/` becomes `%`, and an empty field is `%`.
pub fn mangle(field: &str) -> String {
    if field.is_empty() {
        "%".into()
    } else {
        field.replace('/', "%")
    }
}

/// The QoS of an endpoint (what riptide uses: reliable or best effort, volatile or transient-local, keep-last
/// N; deadlines, lifespans and liveliness stay at their defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    pub reliable: bool,
    pub transient_local: bool,
    /// Keep-last depth (0 = keep all).
    pub depth: u32,
}

impl Default for Qos {
    /// Reliable, volatile, keep-last 10 (ROS 2's default profile).
    fn default() -> Self {
        Self {
            reliable: true,
            transient_local: false,
            depth: 10,
        }
    }
}

impl Qos {
    /// rmw_zenoh's token field, each value written only where it differs from rmw_zenoh's defaults
    /// (reliable, volatile, keep-last 42, infinite deadline and lifespan, automatic liveliness).
    pub fn token_field(&self) -> String {
        let reliability = if self.reliable { "" } else { "2" };
        let durability = if self.transient_local { "1" } else { "" };
        let history = match self.depth {
            0 => "2,".to_string(),
            42 => ",".to_string(),
            d => format!(",{d}"),
        };
        format!("{reliability}:{durability}:{history}:,:,:,,")
    }
}

/// An endpoint's kind in its liveliness token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Publisher,
    Subscription,
}

impl EndpointKind {
    fn code(self) -> &'static str {
        match self {
            Self::Publisher => "MP",
            Self::Subscription => "MS",
        }
    }
}

/// A node in the graph: what its tokens say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub domain: u32,
    /// The zenoh session id, lowercase hex.
    pub zid: String,
    /// Node id, unique in the session.
    pub nid: u32,
    /// Security enclave (empty: none).
    pub enclave: String,
    /// Namespace (`/` or `/arm1`).
    pub namespace: String,
    pub name: String,
}

impl NodeIdentity {
    /// `@ros2_lv/<domain>/<zid>/<nid>/<nid>/NN/<enclave>/<namespace>/<node>`.
    pub fn node_token(&self) -> String {
        format!(
            "{LIVELINESS_PREFIX}/{}/{}/{}/{}/NN/{}/{}/{}",
            self.domain,
            self.zid,
            self.nid,
            self.nid,
            mangle(&self.enclave),
            mangle(namespace_field(&self.namespace)),
            mangle(&self.name)
        )
    }

    /// `@ros2_lv/<domain>/<zid>/<nid>/<eid>/<MP|MS>/<enclave>/<namespace>/<node>/<topic>/<type>/<hash>/<qos>`.
    pub fn endpoint_token(
        &self,
        eid: u32,
        kind: EndpointKind,
        ros_name: &str,
        type_name: &str,
        hash: &str,
        qos: &Qos,
    ) -> Result<String, Ros2Error> {
        validate_topic_name(ros_name)?;
        Ok(format!(
            "{LIVELINESS_PREFIX}/{}/{}/{}/{eid}/{}/{}/{}/{}/{}/{}/{hash}/{}",
            self.domain,
            self.zid,
            self.nid,
            kind.code(),
            mangle(&self.enclave),
            mangle(namespace_field(&self.namespace)),
            mangle(&self.name),
            mangle(ros_name),
            dds_type_name(type_name)?,
            qos.token_field()
        ))
    }
}

/// The root namespace is written as an empty field (`%`), others with their leading `/` (`%arm1`).
fn namespace_field(ns: &str) -> &str {
    if ns == "/" {
        ""
    } else {
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rmws_rules() {
        for ok in ["/riptide/action/chunk", "/arm1/joint_states", "/a_b/c2"] {
            validate_topic_name(ok).unwrap();
        }
        for (bad, rule) in [
            ("riptide/x", "absolute"),
            ("/a//b", "empty token"),
            ("/a/", "end with"),
            ("/arm-1/x", "'-'"),
            ("/1arm/x", "digit"),
        ] {
            let e = validate_topic_name(bad).unwrap_err().to_string();
            assert!(e.contains(rule), "{bad}: {e}");
        }
        assert_eq!(
            ros_name_for_key("riptide/action/chunk").unwrap(),
            "/riptide/action/chunk"
        );
        assert_eq!(bridge_key("/arm1/joint_states").unwrap(), "arm1/joint_states");
    }

    #[test]
    fn keys_and_tokens_have_rmw_zenohs_layout() {
        // The design note's example data key.
        let hash = "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e";
        assert_eq!(
            data_key(0, "/arm/joint_states", "sensor_msgs/msg/JointState", hash).unwrap(),
            format!("0/arm/joint_states/sensor_msgs::msg::dds_::JointState_/{hash}")
        );
        assert_eq!(hash_field(Distro::Humble, hash), "TypeHashNotSupported");
        assert_eq!(Qos::default().token_field(), "::,10:,:,:,,");
        let best_effort = Qos {
            reliable: false,
            transient_local: false,
            depth: 5,
        };
        assert_eq!(best_effort.token_field(), "2::,5:,:,:,,");
        let node = NodeIdentity {
            domain: 0,
            zid: "aac3178e146ba6f1fc6e6a4085e77f21".into(),
            nid: 0,
            enclave: String::new(),
            namespace: "/".into(),
            name: "talker".into(),
        };
        assert_eq!(
            node.node_token(),
            "@ros2_lv/0/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/talker"
        );
        let string_hash = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18";
        assert_eq!(
            node.endpoint_token(
                10,
                EndpointKind::Publisher,
                "/chatter",
                "std_msgs/msg/String",
                string_hash,
                &Qos::default()
            )
            .unwrap(),
            format!(
                "@ros2_lv/0/aac3178e146ba6f1fc6e6a4085e77f21/0/10/MP/%/%/talker/%chatter/std_msgs::msg::dds_::String_/\
                 {string_hash}/::,10:,:,:,,"
            )
        );
        assert_eq!("Humble".parse::<Distro>().unwrap(), Distro::Humble);
        assert!("iron2".parse::<Distro>().is_err());
    }
}
