//! Every topic key riptide publishes or subscribes, in one place, so that nodes, recordings and tests cannot
//! drift apart on a spelling.
//!
//! Keys are relative: a node puts them under its namespace (`riptide` unless configured) with [`key`], e.g.
//! `key("riptide", OBSERVATION_STATE)` is `riptide/observation/state`. [`default_ns`] has the same keys already
//! under the default namespace, for recordings (whose channels are named that way) and tests.
//!
//! What travels on each key (all CDR, see [`crate::ros`], unless said otherwise) is in the const's docs.
//! [`EpisodeEvent`] is the one JSON payload: the sim node's episode start/end announcements on [`SIM_EPISODE`].

use serde::{Deserialize, Serialize};

/// The namespace nodes use unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "riptide";

/// Defines each key as a const, the same key under [`DEFAULT_NAMESPACE`] in [`default_ns`], and [`ALL`].
macro_rules! topic_keys {
    ($( $(#[$doc:meta])* $name:ident = $key:literal; )*) => {
        $( $(#[$doc])* pub const $name: &str = $key; )*

        /// Every key in this module, relative to the namespace.
        pub const ALL: &[&str] = &[$($name),*];

        /// The keys under the default namespace `riptide` (how recordings name their channels).
        pub mod default_ns {
            $(
                #[doc = concat!("`riptide/", $key, "`")]
                pub const $name: &str = concat!("riptide/", $key);
            )*
        }
    };
}

topic_keys! {
    /// Robot/sim state vector for the policy (`sensor_msgs/JointState.position`), from the sim node or a robot
    /// bridge to the daemon.
    OBSERVATION_STATE = "observation/state";
    /// Environment state vector (object poses etc., `sensor_msgs/JointState.position`), for state-based policies.
    OBSERVATION_ENVIRONMENT_STATE = "observation/environment_state";
    /// Camera frame (`sensor_msgs/Image`, rgb8).
    OBSERVATION_IMAGE = "observation/image";
    /// Action-space position of the robot (`sensor_msgs/JointState`): where a driver engages from.
    ROBOT_JOINT_STATES = "robot/joint_states";
    /// The command executed each control step (`sensor_msgs/JointState.position`), from the driver node.
    ACTION = "action";
    /// Each predicted action chunk (`trajectory_msgs/JointTrajectory`), from the daemon to the driver.
    ACTION_CHUNK = "action/chunk";
    /// Timing, seed and kind of each chunk (`riptide_msgs/ChunkMeta`): [`ACTION_CHUNK`] + `/meta`, see
    /// [`chunk_meta_key`].
    ACTION_CHUNK_META = "action/chunk/meta";
    /// The driver's queued actions left (`std_msgs/Float32MultiArray`), which the daemon uses for its trigger.
    DRIVER_QUEUE = "driver/queue";
    /// The driver's state machine (`std_msgs/String`, JSON).
    DRIVER_STATUS = "driver/status";
    /// Ask the driver to engage (any payload).
    DRIVER_ENGAGE = "driver/engage";
    /// Ask the driver to disengage (any payload).
    DRIVER_DISENGAGE = "driver/disengage";
    /// Emergency stop (any payload): the driver holds until [`ESTOP_RESET`].
    ESTOP = "estop";
    /// Clear an emergency stop (any payload).
    ESTOP_RESET = "estop/reset";
    /// Simulated time (`rosgraph_msgs/Clock`); nodes on sim time follow it.
    CLOCK = "clock";
    /// Episode start/end announcements (`std_msgs/String` holding an [`EpisodeEvent`] as JSON).
    SIM_EPISODE = "sim/episode";
    /// Remote inference, a zenoh queryable on the daemon (not a topic): the query's payload is a safetensors
    /// file of observations laid out as `riptide infer --inputs` takes it, the reply a safetensors file with
    /// `action`, `action.executed` and the chunk metadata as JSON under `__metadata__["chunk_meta"]`; a bad
    /// query gets an error reply whose payload is a UTF-8 message.
    INFER = "infer";
    /// Liveliness token of the policy daemon (no messages: present while it runs).
    ALIVE_DAEMON = "alive/daemon";
    /// Liveliness token of the driver node.
    ALIVE_DRIVER = "alive/driver";
    /// Liveliness token of the sim node.
    ALIVE_SIM = "alive/sim";
}

/// The last segment that turns a chunk key into its metadata key (the daemon's output topic can be
/// configured, and its metadata follows it).
pub const META_SUFFIX: &str = "meta";

/// Why a namespace cannot prefix riptide's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "namespace {namespace:?} {reason}: it must be a non-empty key prefix of letters, digits, '_', '-' and \
     single '/' separators, without a leading '/'"
)]
pub struct NamespaceError {
    pub namespace: String,
    pub reason: &'static str,
}

/// Check that `namespace` can prefix keys: non-empty, letters, digits, `_`, `-` and `/` only (no zenoh
/// wildcards or `$`), no leading `/` and no empty segment (zenoh refuses both). A trailing `/` is allowed.
pub fn validate_namespace(namespace: &str) -> Result<(), NamespaceError> {
    let fail = |reason| {
        Err(NamespaceError {
            namespace: namespace.to_string(),
            reason,
        })
    };
    let trimmed = namespace.strip_suffix('/').unwrap_or(namespace);
    if trimmed.is_empty() {
        return fail("is empty");
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-/".contains(*c)))
    {
        return fail(match c {
            '*' | '$' | '?' | '#' => "holds a zenoh wildcard or special character",
            c if c.is_whitespace() => "holds whitespace",
            _ => "holds a character other than letters, digits, '_', '-' and '/'",
        });
    }
    if trimmed.starts_with('/') {
        return fail("starts with '/'");
    }
    if trimmed.split('/').any(str::is_empty) {
        return fail("has an empty segment ('//')");
    }
    Ok(())
}

/// `namespace/key` (a trailing `/` on the namespace is dropped), after [`validate_namespace`].
///
/// ```
/// use riptide_msgs::topics::{key, OBSERVATION_STATE};
/// assert_eq!(key("riptide/", OBSERVATION_STATE).unwrap(), "riptide/observation/state");
/// assert!(key("robot/*", OBSERVATION_STATE).is_err());
/// ```
pub fn key(namespace: &str, key: &str) -> Result<String, NamespaceError> {
    validate_namespace(namespace)?;
    Ok(format!("{}/{key}", namespace.trim_end_matches('/')))
}

/// The metadata key of a chunk key: `<chunk>/meta` (so [`ACTION_CHUNK`] gives [`ACTION_CHUNK_META`]).
pub fn chunk_meta_key(chunk_key: &str) -> String {
    format!("{}/{META_SUFFIX}", chunk_key.trim_end_matches('/'))
}

/// The sim node's episode announcements on [`SIM_EPISODE`], as JSON in a `std_msgs/String`:
/// `{"event":"start","episode":0,"seed":7,"env":"push_t","position":[..],"fps":10.0}` and
/// `{"event":"end","episode":0,"seed":7,"success":true,"score":1.0,"steps":120}`. A lockstep daemon starts and
/// ends its episode on them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EpisodeEvent {
    Start {
        episode: usize,
        seed: u64,
        env: String,
        /// Action-space position at t = 0 (where a driver engages from).
        position: Vec<f64>,
        fps: f64,
    },
    End {
        episode: usize,
        seed: u64,
        success: bool,
        score: f64,
        steps: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_relative_and_joined_under_the_default_namespace() {
        let mut seen = std::collections::BTreeSet::new();
        for k in ALL {
            assert!(seen.insert(*k), "{k} twice");
            assert!(!k.starts_with('/') && !k.ends_with('/') && !k.contains("//"), "{k}");
            validate_namespace(k).expect("keys are valid key expressions too");
        }
        assert_eq!(
            default_ns::OBSERVATION_STATE,
            key(DEFAULT_NAMESPACE, OBSERVATION_STATE).unwrap()
        );
        assert_eq!(default_ns::ALIVE_SIM, "riptide/alive/sim");
        assert_eq!(chunk_meta_key(ACTION_CHUNK), ACTION_CHUNK_META);
        assert_eq!(crate::ros::ChunkMeta::TOPIC, default_ns::ACTION_CHUNK_META);
    }

    #[test]
    fn namespaces() {
        for ok in ["riptide", "riptide/", "fleet/robot_7", "a-b/c"] {
            assert_eq!(validate_namespace(ok), Ok(()), "{ok}");
        }
        assert_eq!(key("fleet/robot_7", CLOCK).unwrap(), "fleet/robot_7/clock");
        for (bad, why) in [
            ("", "empty"),
            ("/", "empty"),
            ("/riptide", "starts with"),
            ("a//b", "empty segment"),
            ("robot/*", "wildcard"),
            ("a b", "whitespace"),
            ("ü", "other than"),
        ] {
            let err = key(bad, CLOCK).expect_err(bad);
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
