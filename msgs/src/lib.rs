//! riptide-msgs: what riptide's nodes and files agree on — the bottom crate every other riptide crate builds on.
//! It owns the wire: ROS 2 message layouts encoded as CDR (little-endian XCDR1 with the
//! `CDR_LE` encapsulation header, exactly what ROS 2 rmw layers put on the wire), so that any zenoh node or
//! CDR library — rmw_zenoh-ready, no ROS install needed — can produce and read riptide's topics, and so that
//! recordings can be written as MCAP with `ros2msg` schemas.
//!
//! - [`ros`]: the message structs (`sensor_msgs/Image`, `sensor_msgs/JointState`, `geometry_msgs/*`,
//!   `trajectory_msgs/*`, `std_msgs/*`, `rosgraph_msgs/Clock`, `builtin_interfaces/*`) and riptide's own
//!   [`ros::ChunkMeta`]; each carries its ROS type name and `ros2msg` schema text ([`RosMessage`]).
//! - [`ros2`]: the rmw_zenoh contract (type hashes, keys, liveliness tokens, attachments) for ROS 2 graphs.
//! - [`topics`]: every topic key (relative to a node's namespace) and the JSON [`topics::EpisodeEvent`].
//! - `mcap` (feature `mcap`): crash-safe MCAP recording of these messages and a reader that also opens files
//!   cut short by a crash; `recover` finishes such a file.
//! - [`encode`] / [`encode_into`] / [`decode`]: serde-based CDR, implemented in this crate (no external CDR
//!   crate). [`decode`] never panics on malformed input; it returns a [`MsgError`].
//!
//! ```
//! use riptide_msgs::ros::{Header, JointState, Time};
//!
//! let js = JointState {
//!     header: Header { stamp: Time::from_secs_f64(12.5), frame_id: "base_link".into() },
//!     name: vec!["j1".into()],
//!     position: vec![0.25],
//!     ..Default::default()
//! };
//! let bytes = riptide_msgs::encode(&js).unwrap();
//! assert_eq!(&bytes[..4], &[0x00, 0x01, 0x00, 0x00]);
//! assert_eq!(riptide_msgs::decode::<JointState>(&bytes).unwrap(), js);
//! assert_eq!(JointState::TYPE_NAME, "sensor_msgs/msg/JointState");
//! ```

mod cdr;
mod error;
#[cfg(feature = "mcap")]
pub mod mcap;
pub mod ros;
pub mod ros2;
pub mod topics;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use cdr::CDR_LE_HEADER;
pub use error::MsgError;

/// MCAP `message_encoding` of channels carrying these messages.
pub const MESSAGE_ENCODING: &str = "cdr";
/// MCAP schema `encoding` of [`RosMessage::SCHEMA`].
pub const SCHEMA_ENCODING: &str = "ros2msg";

/// A ROS 2 message type: its wire layout (via serde) plus the names and text needed to announce it.
pub trait RosMessage: Serialize + DeserializeOwned {
    /// ROS 2 type name, e.g. `"sensor_msgs/msg/Image"` (also the MCAP schema name).
    const TYPE_NAME: &'static str;
    /// The type's own `.msg` definition (comment-free).
    const MSG_DEFINITION: &'static str;
    /// The `ros2msg` schema: [`Self::MSG_DEFINITION`] followed by each dependency, separated by a line of 80 `=`
    /// and a `MSG: pkg/Type` line.
    const SCHEMA: &'static str;
}

/// Encode `value` as CDR_LE: the 4-byte encapsulation header `00 01 00 00` followed by the payload.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, MsgError> {
    let mut out = Vec::new();
    cdr::to_writer(value, &mut out)?;
    Ok(out)
}

/// Like [`encode`], but append to `out` (reuse one buffer for a stream of large messages such as images).
/// On error `out` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), MsgError> {
    let start = out.len();
    cdr::to_writer(value, out).inspect_err(|_| out.truncate(start))
}

/// Decode a CDR_LE buffer (header included). Errors, never panics, on a wrong or missing encapsulation
/// header, truncated data, length prefixes beyond the buffer, invalid UTF-8 or bool bytes, and trailing bytes
/// other than up to 3 zero padding bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MsgError> {
    cdr::from_bytes(bytes)
}
