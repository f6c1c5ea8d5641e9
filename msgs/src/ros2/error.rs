//! The one error type of the ROS 2 module.

/// What is wrong with a ROS 2 name, type, schema or attachment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ros2Error {
    /// A topic name that ROS 2 would refuse.
    #[error("{name:?} is not a legal ROS 2 topic name: {rule}")]
    Name { name: String, rule: &'static str },
    /// A type name that is not `pkg/Type` or `pkg/msg/Type`.
    #[error("{0:?} is not a ROS 2 message type name (pkg/msg/Type)")]
    TypeName(String),
    /// A schema that cannot be described for hashing.
    #[error("schema of {type_name}: {reason}")]
    Schema { type_name: String, reason: String },
    /// An unknown distro name.
    #[error("unknown ROS 2 distro {0:?}: use humble, jazzy, kilted or rolling")]
    Distro(String),
    /// A malformed per-sample attachment.
    #[error("rmw_zenoh attachment: {0}")]
    Attachment(String),
}
