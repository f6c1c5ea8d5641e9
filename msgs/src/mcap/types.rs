//! Type names and schemas: the message types of [`crate::ros`] by name, in any of the spellings ROS 2 uses.

use crate::ros;

macro_rules! known_types {
    ($($ty:ident),* $(,)?) => { &[$((ros::$ty::TYPE_NAME, ros::$ty::SCHEMA)),*] };
}

/// `(TYPE_NAME, SCHEMA)` of every message type in [`crate::ros`].
const KNOWN_TYPES: &[(&str, &str)] = known_types![
    Time,
    Duration,
    Header,
    StringMsg,
    Empty,
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
/// that live topics whose type is only known by name can be recorded with [`McapRecorder::write_raw`](super::McapRecorder::write_raw).
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
pub(super) fn same_type(recorded: &str, wanted: &str) -> bool {
    recorded == wanted || matches!((split_type_name(recorded), split_type_name(wanted)), (Some(a), Some(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

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
