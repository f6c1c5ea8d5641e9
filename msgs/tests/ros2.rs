//! The rmw_zenoh contract against independent references: RIHS01 hashes against the values ROS's own
//! generated code carries (the design note's table) and against rosbags' type store for every type riptide
//! publishes or subscribes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use riptide_msgs::ros::*;
use riptide_msgs::ros2::{keys, type_hash};
use riptide_msgs::{topics, RosMessage};

/// Every message type riptide-msgs defines: (type name, own definition, hash).
fn every_type() -> Vec<(&'static str, &'static str, String)> {
    fn row<T: RosMessage>() -> (&'static str, &'static str, String) {
        (
            T::TYPE_NAME,
            T::MSG_DEFINITION,
            type_hash::<T>().expect("riptide's schemas describe themselves"),
        )
    }
    vec![
        row::<Time>(),
        row::<Duration>(),
        row::<Header>(),
        row::<StringMsg>(),
        row::<Empty>(),
        row::<Clock>(),
        row::<MultiArrayDimension>(),
        row::<MultiArrayLayout>(),
        row::<Float32MultiArray>(),
        row::<Image>(),
        row::<JointState>(),
        row::<Point>(),
        row::<Vector3>(),
        row::<Quaternion>(),
        row::<Pose>(),
        row::<PoseStamped>(),
        row::<Twist>(),
        row::<TwistStamped>(),
        row::<Transform>(),
        row::<JointTrajectoryPoint>(),
        row::<JointTrajectory>(),
        row::<MultiDOFJointTrajectoryPoint>(),
        row::<MultiDOFJointTrajectory>(),
        row::<ChunkMeta>(),
    ]
}

#[test]
fn type_hashes_match_the_values_ros_generates() {
    // Published by ROS's generated code (Jazzy), as listed in the ROS 2 design note.
    let published = [
        (
            "sensor_msgs/msg/Image",
            "d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
        ),
        (
            "sensor_msgs/msg/JointState",
            "a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e",
        ),
        (
            "std_msgs/msg/Float32MultiArray",
            "0599f6f85b4bfca379873a0b4375a0aca022156bd2d7021275d116ed1fa8bfe0",
        ),
        (
            "trajectory_msgs/msg/JointTrajectory",
            "179b33eba59d676f6d967ac71fe35e7ca2f64b2f3928f4a018cec115e213796e",
        ),
        (
            "trajectory_msgs/msg/MultiDOFJointTrajectory",
            "3a18fd095292a65cfde8833c72985a30af981f3ec44494655c6267262b443a4a",
        ),
        (
            "std_msgs/msg/String",
            "df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18",
        ),
    ];
    let ours = every_type();
    for (name, hex) in published {
        let (_, _, hash) = ours.iter().find(|(n, _, _)| *n == name).expect("type defined");
        assert_eq!(hash, &format!("RIHS01_{hex}"), "{name}");
    }
}

#[test]
fn type_hashes_match_rosbags_for_every_type() {
    let Some(python) = crate::py::python_with("rosbags.typesys") else {
        return;
    };
    // riptide's own types are registered in rosbags from the colcon package's files (comments and all), so
    // the check covers what `colcon build` would generate too.
    let input: Vec<serde_json::Value> = every_type()
        .into_iter()
        .map(|(n, d, h)| {
            let d = colcon_msg_file(n).unwrap_or_else(|| d.to_string());
            serde_json::json!({"type_name": n, "msg_definition": d, "hash": h})
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_type_hashes.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run check_type_hashes.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rosbags disagrees:\n{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ok ")).count(), input.len());
}

/// What `zenoh-bridge-ros2dds` does with riptide's default topics: each is a legal ROS 2 name whose bridge
/// key is the plain key riptide already uses.
#[test]
fn every_default_topic_is_a_ros_name_the_dds_bridge_maps_to_its_key() {
    for relative in topics::ALL {
        let key = format!("{}/{relative}", topics::DEFAULT_NAMESPACE);
        let ros = keys::ros_name_for_key(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(keys::bridge_key(&ros).unwrap(), key);
    }
}

/// The `.msg` file of a riptide type in the colcon package `msgs/ros/riptide_msgs`, if it is one.
fn colcon_msg_file(type_name: &str) -> Option<String> {
    let ty = type_name.strip_prefix("riptide_msgs/msg/")?;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("ros/riptide_msgs/msg/{ty}.msg"));
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The colcon package ships every riptide-own type, with the fields riptide-msgs encodes.
#[test]
fn the_colcon_package_defines_riptides_own_types_as_the_wire_crate_does() {
    // (type, own definition, full schema) of every riptide_msgs type.
    let own = [(ChunkMeta::TYPE_NAME, ChunkMeta::MSG_DEFINITION, ChunkMeta::SCHEMA)];
    assert_eq!(
        own.len(),
        every_type()
            .iter()
            .filter(|(n, _, _)| n.starts_with("riptide_msgs/"))
            .count(),
        "a riptide_msgs type is missing from this test"
    );
    let cmake = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ros/riptide_msgs/CMakeLists.txt"))
        .expect("CMakeLists.txt");
    for (name, definition, schema) in own {
        let hash = type_hash::type_hash_of(name, schema).unwrap();
        // The file's own text with the dependencies riptide-msgs appends.
        let with_deps = format!(
            "{}{}",
            colcon_msg_file(name).expect("riptide type"),
            &schema[definition.len()..]
        );
        let file = colcon_msg_file(name).expect("riptide type");
        let stripped: String = file
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim_end())
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("{}\n", l.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        assert_eq!(stripped, definition, "{name}: the .msg file and riptide-msgs disagree");
        assert_eq!(type_hash::type_hash_of(name, &with_deps).unwrap(), hash, "{name}");
        let short = name.rsplit('/').next().unwrap();
        assert!(
            cmake.contains(&format!("\"msg/{short}.msg\"")),
            "CMakeLists.txt lacks msg/{short}.msg"
        );
    }
}

/// The examples of rmw_zenoh's `docs/design.md` (Jazzy) as golden vectors: the `talker`/`listener` demo's
/// data key, node token and endpoint tokens (keep-last 7 for the talker, 10 for the listener).
#[test]
fn keys_and_tokens_equal_rmw_zenohs_design_examples() {
    use keys::{EndpointKind, NodeIdentity, Qos};
    let hash = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18";
    assert_eq!(type_hash::<StringMsg>().unwrap(), hash);
    assert_eq!(
        keys::data_key(0, "/chatter", "std_msgs/msg/String", hash).unwrap(),
        format!("0/chatter/std_msgs::msg::dds_::String_/{hash}")
    );
    let node = |zid: &str, name: &str| NodeIdentity {
        domain: 0,
        zid: zid.into(),
        nid: 0,
        enclave: String::new(),
        namespace: "/".into(),
        name: name.into(),
    };
    let listener = node("aac3178e146ba6f1fc6e6a4085e77f21", "listener");
    assert_eq!(
        listener.node_token(),
        "@ros2_lv/0/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener"
    );
    let keep_last = |depth| Qos {
        reliable: true,
        transient_local: false,
        depth,
    };
    assert_eq!(
        listener
            .endpoint_token(
                10,
                EndpointKind::Subscription,
                "/chatter",
                "std_msgs/msg/String",
                hash,
                &keep_last(10)
            )
            .unwrap(),
        format!(
            "@ros2_lv/0/aac3178e146ba6f1fc6e6a4085e77f21/0/10/MS/%/%/listener/%chatter/std_msgs::msg::dds_::String_/\
             {hash}/::,10:,:,:,,"
        )
    );
    let talker = node("8b20917502ee955ac4476e0266340d5c", "talker");
    assert_eq!(
        talker
            .endpoint_token(
                10,
                EndpointKind::Publisher,
                "/chatter",
                "std_msgs/msg/String",
                hash,
                &keep_last(7)
            )
            .unwrap(),
        format!(
            "@ros2_lv/0/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/talker/%chatter/std_msgs::msg::dds_::String_/\
             {hash}/::,7:,:,:,,"
        )
    );
}
