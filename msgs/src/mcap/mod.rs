//! MCAP recording of riptide's ROS 2 messages: one channel per topic, `ros2msg` schemas (the types' `SCHEMA`
//! text), CDR payloads, so that recordings open in Foxglove and the standard MCAP tools.
//!
//! Recordings must survive the process dying (a `kill -9`, a crash, a power cut with [`RecorderOptions::sync`]).
//! [`McapRecorder`] therefore builds each chunk in memory and hands it to the OS in one piece once it reaches
//! [`RecorderOptions::chunk_size`] bytes or [`RecorderOptions::max_chunk_age`], so a crash loses at most the chunk
//! being built. Such a file lacks its summary and footer, so Foxglove and the `mcap` tools refuse it;
//! [`McapEpisode`] does not need them: it reads the file record by record from the start (the `mcap` crate's
//! sans-io `LinearReader` frames and parses the records and checks chunk CRCs), stops at the first truncated or
//! invalid record and keeps everything before it (chunks are all-or-nothing). [`recover`] rewrites such a file
//! as a finished one that those tools open.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use riptide_msgs::mcap::{McapEpisode, McapRecorder};
//! use riptide_msgs::ros::{Clock, Time};
//!
//! let mut rec = McapRecorder::create("episode.mcap")?;
//! rec.write_metadata("episode", &BTreeMap::from([("seed".to_string(), "7".to_string())]))?;
//! rec.write("/clock", 1_000, &Clock { clock: Time { sec: 0, nanosec: 1_000 } })?;
//! rec.finish()?;
//!
//! let ep = McapEpisode::open("episode.mcap")?;
//! for m in ep.messages() {
//!     let clock: Clock = m.decode()?;
//!     println!("{} {} {} {:?}", m.topic, m.type_name, m.log_time_ns, clock);
//! }
//! # Ok::<(), riptide_msgs::mcap::McapError>(())
//! ```
//!
//! The reader holds the whole file in memory (message payloads are slices of it) and reads uncompressed chunks
//! only, which is what the recorder writes; compressed chunks from other tools end the read with a clear reason.

mod reader;
mod writer;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use reader::{ChannelInfo, McapEpisode, MetadataRecord, RecordedMessage};
pub use writer::{McapRecorder, RecorderOptions};

use crate::{ros, MsgError};

/// Everything that can go wrong recording or reading an MCAP file. Messages name the file and, for file
/// contents, the record and byte offset.
#[derive(Debug, thiserror::Error)]
pub enum McapError {
    /// Opening, reading or creating a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file does not start like an MCAP file (magic and Header record); nothing in it can be trusted.
    #[error("{}: not an MCAP file: {reason}", path.display())]
    NotMcap { path: PathBuf, reason: String },
    /// The file is damaged or unfinished (returned by [`McapEpisode::check_complete`]).
    #[error("{}: {damage}", path.display())]
    Damaged { path: PathBuf, damage: Truncation },
    /// The `mcap` writer failed (usually an I/O error underneath).
    #[error("{}: writing MCAP: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: ::mcap::McapError,
    },
    /// A topic was given a second message type (or a different schema for the same type).
    #[error("{}: topic {topic:?} is recorded as {existing}, cannot also record {requested} on it", path.display())]
    TopicConflict {
        path: PathBuf,
        topic: String,
        existing: String,
        requested: String,
    },
    /// A message could not be CDR-encoded.
    #[error("{}: encoding {type_name} for topic {topic:?}: {source}", path.display())]
    Encode {
        path: PathBuf,
        topic: String,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`RecordedMessage::decode`] was asked for a type other than the channel's.
    #[error("message on {topic:?} at {log_time_ns} ns is {actual:?}, not {expected}")]
    TypeMismatch {
        topic: String,
        log_time_ns: u64,
        actual: String,
        expected: &'static str,
    },
    /// A recorded payload is not valid CDR for its type.
    #[error("message on {topic:?} at {log_time_ns} ns does not decode as {type_name}: {source}")]
    Decode {
        topic: String,
        log_time_ns: u64,
        type_name: &'static str,
        #[source]
        source: MsgError,
    },
    /// [`recover`] was asked to overwrite its input.
    #[error("{}: recover would overwrite its own input", path.display())]
    SamePath { path: PathBuf },
}

/// Where and why a linear read stopped before a finished file's end. Everything before `offset` was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Byte offset of the record that could not be used (the file's length if it simply ended).
    pub offset: u64,
    /// Index of that record among the file's top-level records (0 is the Header).
    pub record: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} at byte {}: {} (everything before it was kept)",
            self.record, self.offset, self.reason
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Type names and schemas

macro_rules! known_types {
    ($($ty:ident),* $(,)?) => { &[$((ros::$ty::TYPE_NAME, ros::$ty::SCHEMA)),*] };
}

/// `(TYPE_NAME, SCHEMA)` of every message type in [`crate::ros`].
const KNOWN_TYPES: &[(&str, &str)] = known_types![
    Time,
    Duration,
    Header,
    StringMsg,
    Clock,
    MultiArrayDimension,
    MultiArrayLayout,
    Float32MultiArray,
    Image,
    JointState,
    Point,
    Vector3,
    Quaternion,
    Pose,
    PoseStamped,
    Twist,
    TwistStamped,
    Transform,
    JointTrajectoryPoint,
    JointTrajectory,
    MultiDOFJointTrajectoryPoint,
    MultiDOFJointTrajectory,
    ChunkMeta,
];

/// The canonical `pkg/msg/Type` name of a type in [`crate::ros`], given in any of the spellings live ROS 2
/// graphs use: `sensor_msgs/msg/Image`, `sensor_msgs/Image` or rmw's `sensor_msgs::msg::dds_::Image_`.
pub fn canonical_type_name(type_name: &str) -> Option<&'static str> {
    let (pkg, name) = split_type_name(type_name)?;
    KNOWN_TYPES
        .iter()
        .map(|(known, _)| *known)
        .find(|known| split_type_name(known) == Some((pkg, name)))
}

/// The `ros2msg` schema text of a type in [`crate::ros`] (any spelling [`canonical_type_name`] accepts), so
/// that live topics whose type is only known by name can be recorded with [`McapRecorder::write_raw`].
pub fn schema_for_type_name(type_name: &str) -> Option<&'static str> {
    let canonical = canonical_type_name(type_name)?;
    KNOWN_TYPES
        .iter()
        .find(|(known, _)| *known == canonical)
        .map(|(_, schema)| *schema)
}

/// `(package, Type)` of `pkg/msg/Type`, `pkg/Type` or `pkg::msg::dds_::Type_`.
fn split_type_name(type_name: &str) -> Option<(&str, &str)> {
    if let Some((pkg, rest)) = type_name.split_once("::msg::dds_::") {
        return Some((pkg, rest.strip_suffix('_').unwrap_or(rest)));
    }
    let mut parts = type_name.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(pkg), Some("msg"), Some(name), None) | (Some(pkg), Some(name), None, None)
            if !pkg.is_empty() && !name.is_empty() =>
        {
            Some((pkg, name))
        }
        _ => None,
    }
}

/// Whether a recorded type name denotes `T` (spellings may differ between recorders).
fn same_type(recorded: &str, wanted: &str) -> bool {
    recorded == wanted || matches!((split_type_name(recorded), split_type_name(wanted)), (Some(a), Some(b)) if a == b)
}

// ------------------------------------------------------------------------------------------------
// Recovery

/// What [`recover`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub messages: usize,
    pub channels: usize,
    pub metadata: usize,
    /// Where the input's read stopped (`None`: the input was complete).
    pub truncation: Option<Truncation>,
}

/// Read `path` as far as it is intact and write everything found — channels with their schemas, metadata,
/// messages in log-time order with their times — to `out_path` as a finished MCAP file.
pub fn recover(path: impl AsRef<Path>, out_path: impl AsRef<Path>) -> Result<RecoveryReport, McapError> {
    let (path, out_path) = (path.as_ref(), out_path.as_ref());
    let same = match (std::fs::canonicalize(path), std::fs::canonicalize(out_path)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(McapError::SamePath {
            path: path.to_path_buf(),
        });
    }
    let episode = McapEpisode::open(path)?;
    let mut out = McapRecorder::create(out_path)?;
    for m in episode.metadata() {
        out.write_metadata(&m.name, &m.entries)?;
    }
    for (m, c) in episode.messages_with_channels() {
        out.write_record(
            &writer::Channel {
                topic: &c.topic,
                schema_name: &c.type_name,
                schema_encoding: &c.schema_encoding,
                schema: &c.schema,
                message_encoding: &c.message_encoding,
            },
            m.log_time_ns,
            m.publish_time_ns,
            m.data,
        )?;
    }
    out.finish()?;
    Ok(RecoveryReport {
        messages: episode.message_count(),
        channels: episode.channels().iter().filter(|c| c.message_count > 0).count(),
        metadata: episode.metadata().len(),
        truncation: episode.truncation().cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers put these errors in `anyhow` and across threads.
    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<McapError>();
    }

    #[test]
    fn type_name_spellings() {
        for name in [
            "sensor_msgs/msg/Image",
            "sensor_msgs/Image",
            "sensor_msgs::msg::dds_::Image_",
        ] {
            assert_eq!(canonical_type_name(name), Some("sensor_msgs/msg/Image"), "{name}");
            assert_eq!(schema_for_type_name(name), Some(ros::Image::SCHEMA));
        }
        assert_eq!(canonical_type_name("sensor_msgs/msg/PointCloud2"), None);
        assert_eq!(canonical_type_name("Image"), None);
        assert_eq!(canonical_type_name("a/b/c/d"), None);
        assert!(same_type("sensor_msgs/Image", "sensor_msgs/msg/Image"));
        assert!(!same_type("sensor_msgs/msg/Image", "sensor_msgs/msg/JointState"));
    }
}
