//! The rmw_zenoh wire contract, so that riptide's nodes can appear on a ROS 2 graph that runs over zenoh:
//! RIHS01 type hashes from the schemas riptide already holds ([`type_hash`]), topic names, data keys,
//! liveliness tokens and QoS fields ([`keys`]), and the per-sample attachment ([`attachment`]).
//!
//! Plain riptide keys (`riptide/action/chunk`) are also what `zenoh-bridge-ros2dds` maps a DDS topic
//! `/riptide/action/chunk` to ([`keys::bridge_key`]).

pub mod attachment;
mod error;
pub mod keys;
pub mod type_hash;

pub use attachment::{Attachment, SequenceGaps, ATTACHMENT_LEN};
pub use error::Ros2Error;
pub use keys::{data_key, validate_topic_name, Distro, EndpointKind, NodeIdentity, Qos};
pub use type_hash::{type_hash, type_hash_of};
