//! How each observation input arrives: its message type on the wire, its topic and its staleness
//! gate, as the daemon config gives them and as resolved against the checkpoint's features.

use riptide_msgs::ros::{Float32MultiArray, Image, JointState, PoseStamped, TwistStamped};
use riptide_policies::FeatureKind;
use serde::Deserialize;

use crate::node::{RosType, Topic};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Image,
    Float32MultiArray,
    JointState,
    PoseStamped,
    TwistStamped,
}

impl InputType {
    /// The ROS 2 message type on the wire.
    pub fn ros_type(self) -> RosType {
        match self {
            Self::Image => RosType::of::<Image>(),
            Self::Float32MultiArray => RosType::of::<Float32MultiArray>(),
            Self::JointState => RosType::of::<JointState>(),
            Self::PoseStamped => RosType::of::<PoseStamped>(),
            Self::TwistStamped => RosType::of::<TwistStamped>(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub topic: Option<String>,
    /// The ROS 2 name in ROS 2 mode (default `/` + topic).
    pub ros2_topic: Option<String>,
    #[serde(rename = "type")]
    pub msg_type: Option<InputType>,
    /// Frames older than this block inference (a frozen camera must not drive the robot).
    pub max_age_ms: Option<f64>,
    /// Images of another size are resized to the checkpoint's input (else rejected).
    #[serde(default = "yes")]
    pub resize: bool,
}

fn yes() -> bool {
    true
}

/// One input feature, fully resolved.
#[derive(Debug, Clone)]
pub struct ResolvedInput {
    pub feature: String,
    pub kind: FeatureKind,
    pub shape: Vec<usize>,
    pub topic: String,
    pub ros2_topic: Option<String>,
    pub msg_type: InputType,
    pub max_age_s: f64,
    pub resize: bool,
}

impl ResolvedInput {
    /// The topic as a node declares it.
    pub fn declared(&self) -> Topic {
        Topic::with_ros_name(self.topic.clone(), self.ros2_topic.clone())
    }
}
