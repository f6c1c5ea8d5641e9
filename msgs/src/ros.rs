//! ROS 2 message types with their exact ROS 2 field layouts (field order is the wire order).
//!
//! Every type has inherent consts `TYPE_NAME` (e.g. `"sensor_msgs/msg/Image"`), `MSG_DEFINITION` (its own
//! `.msg` text) and `SCHEMA` (the `ros2msg` schema text for MCAP channels: its definition followed by every
//! dependency as `================================================================================\nMSG: pkg/Type\n...`,
//! in the order rosbag2/rosbags write them), and implements [`RosMessage`] with the same
//! values. `std_msgs/msg/String` is [`StringMsg`] so that a glob import does not shadow `String`.

use serde::{Deserialize, Serialize};

use crate::{MsgError, RosMessage};

/// The `.msg` text of each type, comment-free, one field per line (what `ros2msg` schemas carry).
macro_rules! msg_def {
    (Time) => {
        "int32 sec\nuint32 nanosec\n"
    };
    (Duration) => {
        "int32 sec\nuint32 nanosec\n"
    };
    (Header) => {
        "builtin_interfaces/Time stamp\nstring frame_id\n"
    };
    (StringMsg) => {
        "string data\n"
    };
    (Empty) => {
        ""
    };
    (Clock) => {
        "builtin_interfaces/Time clock\n"
    };
    (MultiArrayDimension) => {
        "string label\nuint32 size\nuint32 stride\n"
    };
    (MultiArrayLayout) => {
        "std_msgs/MultiArrayDimension[] dim\nuint32 data_offset\n"
    };
    (Float32MultiArray) => {
        "std_msgs/MultiArrayLayout layout\nfloat32[] data\n"
    };
    (Image) => {
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n\
         uint8[] data\n"
    };
    (JointState) => {
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort\n"
    };
    (Point) => {
        "float64 x\nfloat64 y\nfloat64 z\n"
    };
    (Vector3) => {
        "float64 x\nfloat64 y\nfloat64 z\n"
    };
    (Quaternion) => {
        "float64 x\nfloat64 y\nfloat64 z\nfloat64 w\n"
    };
    (Pose) => {
        "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation\n"
    };
    (PoseStamped) => {
        "std_msgs/Header header\ngeometry_msgs/Pose pose\n"
    };
    (Twist) => {
        "geometry_msgs/Vector3 linear\ngeometry_msgs/Vector3 angular\n"
    };
    (TwistStamped) => {
        "std_msgs/Header header\ngeometry_msgs/Twist twist\n"
    };
    (Transform) => {
        "geometry_msgs/Vector3 translation\ngeometry_msgs/Quaternion rotation\n"
    };
    (JointTrajectoryPoint) => {
        "float64[] positions\nfloat64[] velocities\nfloat64[] accelerations\nfloat64[] effort\n\
         builtin_interfaces/Duration time_from_start\n"
    };
    (JointTrajectory) => {
        "std_msgs/Header header\nstring[] joint_names\ntrajectory_msgs/JointTrajectoryPoint[] points\n"
    };
    (MultiDOFJointTrajectoryPoint) => {
        "geometry_msgs/Transform[] transforms\ngeometry_msgs/Twist[] velocities\ngeometry_msgs/Twist[] accelerations\n\
         builtin_interfaces/Duration time_from_start\n"
    };
    (MultiDOFJointTrajectory) => {
        "std_msgs/Header header\nstring[] joint_names\ntrajectory_msgs/MultiDOFJointTrajectoryPoint[] points\n"
    };
    (ChunkMeta) => {
        "uint64 inference_id\nstring policy_kind\nuint32 nfe\nbool warm_started\nuint64 seed\n\
         builtin_interfaces/Time obs_stamp\nfloat64 decode_s\nfloat64 window_s\nfloat64 inference_s\n\
         float64 publish_s\nfloat64 total_s\n"
    };
}

/// The `pkg/Type` name used in `.msg` field lines and `MSG:` separators.
macro_rules! msg_ref {
    (Time) => {
        "builtin_interfaces/Time"
    };
    (Duration) => {
        "builtin_interfaces/Duration"
    };
    (Header) => {
        "std_msgs/Header"
    };
    (MultiArrayDimension) => {
        "std_msgs/MultiArrayDimension"
    };
    (MultiArrayLayout) => {
        "std_msgs/MultiArrayLayout"
    };
    (Point) => {
        "geometry_msgs/Point"
    };
    (Vector3) => {
        "geometry_msgs/Vector3"
    };
    (Quaternion) => {
        "geometry_msgs/Quaternion"
    };
    (Pose) => {
        "geometry_msgs/Pose"
    };
    (Twist) => {
        "geometry_msgs/Twist"
    };
    (Transform) => {
        "geometry_msgs/Transform"
    };
    (JointTrajectoryPoint) => {
        "trajectory_msgs/JointTrajectoryPoint"
    };
    (MultiDOFJointTrajectoryPoint) => {
        "trajectory_msgs/MultiDOFJointTrajectoryPoint"
    };
}

/// Attach `TYPE_NAME`, `MSG_DEFINITION` and `SCHEMA` to a type. Dependencies are listed depth-first in field
/// order, each once (the order rosbag2 and rosbags use); `tests/cdr_roundtrip.rs` checks them against rosbags.
macro_rules! ros_message {
    ($ty:ident, $type_name:literal, [$($dep:ident),*]) => {
        impl $ty {
            /// ROS 2 type name, as used by rmw and in MCAP schema names.
            pub const TYPE_NAME: &'static str = $type_name;
            /// This type's own `.msg` definition.
            pub const MSG_DEFINITION: &'static str = msg_def!($ty);
            /// Full `ros2msg` schema text (definition plus dependencies) for MCAP channels.
            pub const SCHEMA: &'static str = concat!(
                msg_def!($ty),
                $(
                    "================================================================================\nMSG: ",
                    msg_ref!($dep),
                    "\n",
                    msg_def!($dep),
                )*
            );
        }

        impl RosMessage for $ty {
            const TYPE_NAME: &'static str = $ty::TYPE_NAME;
            const MSG_DEFINITION: &'static str = $ty::MSG_DEFINITION;
            const SCHEMA: &'static str = $ty::SCHEMA;
        }
    };
}

// ------------------------------------------------------------------------------------------------
// builtin_interfaces

/// `builtin_interfaces/msg/Time`: a point in time (seconds since the clock's epoch plus nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

/// `builtin_interfaces/msg/Duration`: a signed span, `sec + nanosec·1e-9` seconds with `nanosec < 1e9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Duration {
    pub sec: i32,
    pub nanosec: u32,
}

ros_message!(Time, "builtin_interfaces/msg/Time", []);
ros_message!(Duration, "builtin_interfaces/msg/Duration", []);

/// Split seconds into ROS `(sec, nanosec)` with `0 <= nanosec < 1e9` (so -0.25 s is `(-1, 750_000_000)`),
/// rounding to the nearest nanosecond. Saturates outside the `i32` range; NaN gives zero.
fn split_secs(secs: f64) -> (i32, u32) {
    if secs.is_nan() {
        return (0, 0);
    }
    let mut whole = secs.floor();
    let mut nanos = ((secs - whole) * 1e9).round();
    if nanos >= 1e9 {
        whole += 1.0;
        nanos = 0.0;
    }
    if whole < f64::from(i32::MIN) {
        (i32::MIN, 0)
    } else if whole > f64::from(i32::MAX) {
        (i32::MAX, 999_999_999)
    } else {
        (whole as i32, nanos as u32)
    }
}

fn join_secs(sec: i32, nanosec: u32) -> f64 {
    f64::from(sec) + f64::from(nanosec) * 1e-9
}

impl Time {
    /// From seconds since the epoch, rounded to the nearest nanosecond (saturating; NaN gives zero).
    pub fn from_secs_f64(secs: f64) -> Self {
        let (sec, nanosec) = split_secs(secs);
        Self { sec, nanosec }
    }

    /// Seconds since the epoch (about 0.2 µs resolution at current Unix times).
    pub fn as_secs_f64(&self) -> f64 {
        join_secs(self.sec, self.nanosec)
    }
}

impl Duration {
    /// From seconds (may be negative), rounded to the nearest nanosecond (saturating; NaN gives zero).
    pub fn from_secs_f64(secs: f64) -> Self {
        let (sec, nanosec) = split_secs(secs);
        Self { sec, nanosec }
    }

    /// The span in seconds.
    pub fn as_secs_f64(&self) -> f64 {
        join_secs(self.sec, self.nanosec)
    }
}

// ------------------------------------------------------------------------------------------------
// std_msgs, rosgraph_msgs

/// `std_msgs/msg/Header`: timestamp and coordinate frame of stamped data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `std_msgs/msg/String`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}

/// `std_msgs/msg/Empty`: what riptide publishes on its any-payload topics (engage, disengage, e-stop) in
/// ROS 2 mode. rosidl gives an empty message one `uint8` placeholder, so it is one byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Empty {
    pub structure_needs_at_least_one_member: u8,
}

/// `rosgraph_msgs/msg/Clock`: the simulated time published on `/clock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Clock {
    pub clock: Time,
}

/// `std_msgs/msg/MultiArrayDimension`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct MultiArrayDimension {
    pub label: String,
    pub size: u32,
    pub stride: u32,
}

/// `std_msgs/msg/MultiArrayLayout`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct MultiArrayLayout {
    pub dim: Vec<MultiArrayDimension>,
    pub data_offset: u32,
}

/// `std_msgs/msg/Float32MultiArray`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Float32MultiArray {
    pub layout: MultiArrayLayout,
    pub data: Vec<f32>,
}

ros_message!(Header, "std_msgs/msg/Header", [Time]);
ros_message!(StringMsg, "std_msgs/msg/String", []);
ros_message!(Empty, "std_msgs/msg/Empty", []);
ros_message!(Clock, "rosgraph_msgs/msg/Clock", [Time]);
ros_message!(MultiArrayDimension, "std_msgs/msg/MultiArrayDimension", []);
ros_message!(MultiArrayLayout, "std_msgs/msg/MultiArrayLayout", [MultiArrayDimension]);
ros_message!(
    Float32MultiArray,
    "std_msgs/msg/Float32MultiArray",
    [MultiArrayLayout, MultiArrayDimension]
);

// ------------------------------------------------------------------------------------------------
// sensor_msgs

/// `sensor_msgs/msg/Image`: an uncompressed image. `data` is (de)serialized as one byte block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    /// Pixel encoding; riptide uses `rgb8`, `bgr8` or `mono8` (see [`Image::validate`]).
    pub encoding: String,
    pub is_bigendian: u8,
    /// Row length in bytes (at least `width * bytes_per_pixel`; larger when rows are padded).
    pub step: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

ros_message!(Image, "sensor_msgs/msg/Image", [Header, Time]);

impl Image {
    /// The encodings [`Image::validate`] accepts.
    pub const SUPPORTED_ENCODINGS: [&'static str; 3] = ["rgb8", "bgr8", "mono8"];

    /// Bytes per pixel of a supported encoding (`rgb8`/`bgr8`: 3, `mono8`: 1).
    pub fn bytes_per_pixel(encoding: &str) -> Option<u32> {
        match encoding {
            "rgb8" | "bgr8" => Some(3),
            "mono8" => Some(1),
            _ => None,
        }
    }

    /// Check that the encoding is one of `rgb8`, `bgr8`, `mono8`, that `step` holds a full row
    /// (`step >= width * bytes_per_pixel`) and that `data.len() == step * height`.
    pub fn validate(&self) -> Result<(), MsgError> {
        let bpp = Self::bytes_per_pixel(&self.encoding).ok_or_else(|| {
            MsgError::InvalidImage(format!(
                "unsupported encoding {:?} (expected one of rgb8, bgr8, mono8)",
                self.encoding
            ))
        })?;
        let row = u64::from(self.width) * u64::from(bpp);
        if u64::from(self.step) < row {
            return Err(MsgError::InvalidImage(format!(
                "step {} is smaller than a {} row of width {} ({} bytes)",
                self.step, self.encoding, self.width, row
            )));
        }
        let expected = u64::from(self.step) * u64::from(self.height);
        if self.data.len() as u64 != expected {
            return Err(MsgError::InvalidImage(format!(
                "data is {} bytes but step {} x height {} = {} bytes",
                self.data.len(),
                self.step,
                self.height,
                expected
            )));
        }
        Ok(())
    }
}

/// `sensor_msgs/msg/JointState`: joint positions \[rad or m\], velocities and efforts, by name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JointState {
    pub header: Header,
    pub name: Vec<String>,
    pub position: Vec<f64>,
    pub velocity: Vec<f64>,
    pub effort: Vec<f64>,
}

ros_message!(JointState, "sensor_msgs/msg/JointState", [Header, Time]);

// ------------------------------------------------------------------------------------------------
// geometry_msgs

/// `geometry_msgs/msg/Point`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// `geometry_msgs/msg/Vector3`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Vector3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// `geometry_msgs/msg/Quaternion`. `Default` is the identity rotation (`w = 1`), as in ROS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Default for Quaternion {
    fn default() -> Self {
        Self {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}

/// `geometry_msgs/msg/Pose`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pose {
    pub position: Point,
    pub orientation: Quaternion,
}

/// `geometry_msgs/msg/PoseStamped`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PoseStamped {
    pub header: Header,
    pub pose: Pose,
}

/// `geometry_msgs/msg/Twist`: linear \[m/s\] and angular \[rad/s\] velocity.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Twist {
    pub linear: Vector3,
    pub angular: Vector3,
}

/// `geometry_msgs/msg/TwistStamped`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TwistStamped {
    pub header: Header,
    pub twist: Twist,
}

/// `geometry_msgs/msg/Transform`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Transform {
    pub translation: Vector3,
    pub rotation: Quaternion,
}

ros_message!(Point, "geometry_msgs/msg/Point", []);
ros_message!(Vector3, "geometry_msgs/msg/Vector3", []);
ros_message!(Quaternion, "geometry_msgs/msg/Quaternion", []);
ros_message!(Pose, "geometry_msgs/msg/Pose", [Point, Quaternion]);
ros_message!(
    PoseStamped,
    "geometry_msgs/msg/PoseStamped",
    [Header, Time, Pose, Point, Quaternion]
);
ros_message!(Twist, "geometry_msgs/msg/Twist", [Vector3]);
ros_message!(
    TwistStamped,
    "geometry_msgs/msg/TwistStamped",
    [Header, Time, Twist, Vector3]
);
ros_message!(Transform, "geometry_msgs/msg/Transform", [Vector3, Quaternion]);

// ------------------------------------------------------------------------------------------------
// trajectory_msgs

/// `trajectory_msgs/msg/JointTrajectoryPoint`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JointTrajectoryPoint {
    pub positions: Vec<f64>,
    pub velocities: Vec<f64>,
    pub accelerations: Vec<f64>,
    pub effort: Vec<f64>,
    pub time_from_start: Duration,
}

/// `trajectory_msgs/msg/JointTrajectory`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JointTrajectory {
    pub header: Header,
    pub joint_names: Vec<String>,
    pub points: Vec<JointTrajectoryPoint>,
}

/// `trajectory_msgs/msg/MultiDOFJointTrajectoryPoint`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MultiDOFJointTrajectoryPoint {
    pub transforms: Vec<Transform>,
    pub velocities: Vec<Twist>,
    pub accelerations: Vec<Twist>,
    pub time_from_start: Duration,
}

/// `trajectory_msgs/msg/MultiDOFJointTrajectory`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MultiDOFJointTrajectory {
    pub header: Header,
    pub joint_names: Vec<String>,
    pub points: Vec<MultiDOFJointTrajectoryPoint>,
}

ros_message!(
    JointTrajectoryPoint,
    "trajectory_msgs/msg/JointTrajectoryPoint",
    [Duration]
);
ros_message!(
    JointTrajectory,
    "trajectory_msgs/msg/JointTrajectory",
    [Header, Time, JointTrajectoryPoint, Duration]
);
ros_message!(
    MultiDOFJointTrajectoryPoint,
    "trajectory_msgs/msg/MultiDOFJointTrajectoryPoint",
    [Transform, Vector3, Quaternion, Twist, Duration]
);
ros_message!(
    MultiDOFJointTrajectory,
    "trajectory_msgs/msg/MultiDOFJointTrajectory",
    [
        Header,
        Time,
        MultiDOFJointTrajectoryPoint,
        Transform,
        Vector3,
        Quaternion,
        Twist,
        Duration
    ]
);

// ------------------------------------------------------------------------------------------------
// riptide_msgs

/// `riptide_msgs/msg/ChunkMeta`: metadata of one action chunk, published on [`ChunkMeta::TOPIC`]
/// (`riptide/action/chunk/meta`) alongside the chunk itself.
///
/// Non-Rust nodes can decode it with this definition (`riptide_msgs/msg/ChunkMeta.msg`):
///
/// ```text
/// uint64 inference_id                 # monotonically increasing id of the inference that made the chunk
/// string policy_kind                  # policy family, e.g. "diffusion", "flow_matching"
/// uint32 nfe                          # number of network function evaluations (denoising steps)
/// bool warm_started                   # sampler was warm-started from the previous chunk
/// uint64 seed                         # RNG seed of the sampler noise
/// builtin_interfaces/Time obs_stamp   # stamp of the newest observation the chunk was computed from
/// float64 decode_s                    # stage latencies, seconds: observation decoding
/// float64 window_s                    #   observation window assembly
/// float64 inference_s                 #   policy inference
/// float64 publish_s                   #   chunk encoding and publishing
/// float64 total_s                     #   end to end
/// ```
///
/// [`ChunkMeta::SCHEMA`] carries the same definition without comments, followed by `builtin_interfaces/Time`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChunkMeta {
    pub inference_id: u64,
    pub policy_kind: String,
    pub nfe: u32,
    pub warm_started: bool,
    pub seed: u64,
    pub obs_stamp: Time,
    pub decode_s: f64,
    pub window_s: f64,
    pub inference_s: f64,
    pub publish_s: f64,
    pub total_s: f64,
}

ros_message!(ChunkMeta, "riptide_msgs/msg/ChunkMeta", [Time]);

impl ChunkMeta {
    /// The topic riptide publishes chunk metadata on.
    pub const TOPIC: &'static str = crate::topics::default_ns::ACTION_CHUNK_META;
}
