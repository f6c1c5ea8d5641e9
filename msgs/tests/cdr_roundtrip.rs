//! CDR encode/decode against bytes from an independent encoder.
//!
//! `fixtures/cdr_fixtures.json` is produced by `make_cdr_fixtures.py` with the pure-Python `rosbags` package
//! (rosbags 0.11.9, see `requirements.txt`): for each case it holds the ROS type, the field values and the
//! CDR_LE bytes rosbags serialized, plus rosbags' `ros2msg` schema text for each type. Here the same values are
//! built by hand; `encode` must reproduce the bytes exactly, `decode` must give the values back, and every
//! truncated, mutated or random buffer must come back as `Err` (or a value that re-encodes consistently),
//! never as a panic.

use std::collections::BTreeSet;
use std::fmt::Debug;

use riptide_msgs::ros::*;
use riptide_msgs::{decode, encode, encode_into, MsgError, RosMessage};
use serde_json::Value;

const FIXTURES: &str = include_str!("fixtures/cdr_fixtures.json");

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).expect("fixtures parse")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decode as `T` and, if that succeeds, check that the value re-encodes and decodes to the same bytes.
fn reencode<T: RosMessage>(bytes: &[u8]) -> Result<Vec<u8>, MsgError> {
    let value: T = decode(bytes)?;
    let encoded = encode(&value).expect("a decoded value must re-encode");
    let again: T = decode(&encoded).expect("re-encoded bytes must decode");
    assert_eq!(
        encode(&again).unwrap(),
        encoded,
        "re-encoding is not stable for {}",
        T::TYPE_NAME
    );
    Ok(encoded)
}

type Decoder = fn(&[u8]) -> Result<Vec<u8>, MsgError>;

macro_rules! decoders {
    ($($ty:ty),* $(,)?) => { vec![$((<$ty>::TYPE_NAME, reencode::<$ty> as Decoder)),*] };
}

fn all_decoders() -> Vec<(&'static str, Decoder)> {
    decoders![
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
    ]
}

fn decoder_for(type_name: &str) -> Decoder {
    all_decoders()
        .into_iter()
        .find(|(n, _)| *n == type_name)
        .unwrap_or_else(|| panic!("no decoder for {type_name}"))
        .1
}

/// Deterministic PRNG (splitmix64) so the fuzz cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn check<T: RosMessage + PartialEq + Debug>(fx: &Value, seen: &mut BTreeSet<String>, name: &str, value: T) {
    let case = &fx["cases"][name];
    assert!(case.is_object(), "fixture {name} missing");
    assert_eq!(case["type"], T::TYPE_NAME, "{name}: type");
    let bytes = unhex(case["cdr_hex"].as_str().unwrap());

    let encoded = encode(&value).unwrap_or_else(|e| panic!("{name}: encode failed: {e}"));
    assert_eq!(hex(&encoded), hex(&bytes), "{name}: encode differs from rosbags");
    let decoded: T = decode(&bytes).unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
    assert_eq!(decoded, value, "{name}: decode");
    // The hand-built value is the one recorded next to the bytes.
    assert_eq!(
        serde_json::to_value(&value).unwrap(),
        case["value"],
        "{name}: values differ from the fixture's"
    );
    assert_eq!(
        T::SCHEMA,
        fx["schemas"][T::TYPE_NAME].as_str().unwrap(),
        "{name}: ros2msg schema"
    );

    for n in 0..bytes.len() {
        assert!(
            decode::<T>(&bytes[..n]).is_err(),
            "{name}: truncation to {n} bytes decoded"
        );
    }
    for pad in 1..=3 {
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + pad, 0);
        assert_eq!(
            decode::<T>(&padded).as_ref(),
            Ok(&value),
            "{name}: {pad} zero padding bytes rejected"
        );
    }
    for tail in [&[0u8, 0, 0, 0][..], &[1], &[0, 0, 7]] {
        let mut extra = bytes.clone();
        extra.extend_from_slice(tail);
        assert!(
            matches!(decode::<T>(&extra), Err(MsgError::TrailingBytes { .. })),
            "{name}: trailing {tail:?} accepted"
        );
    }
    assert!(seen.insert(name.to_string()), "{name} checked twice");
}

fn time(sec: i32, nanosec: u32) -> Time {
    Time { sec, nanosec }
}

fn dur(sec: i32, nanosec: u32) -> Duration {
    Duration { sec, nanosec }
}

fn header(sec: i32, nanosec: u32, frame_id: &str) -> Header {
    Header {
        stamp: time(sec, nanosec),
        frame_id: frame_id.into(),
    }
}

fn v3(x: f64, y: f64, z: f64) -> Vector3 {
    Vector3 { x, y, z }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const UNICODE_FRAME: &str = "cámara_ü/🤖";

fn point() -> Point {
    Point {
        x: 1.25,
        y: -2.5,
        z: 3.0,
    }
}

fn quat() -> Quaternion {
    Quaternion {
        x: 0.0,
        y: 0.0,
        z: std::f64::consts::FRAC_1_SQRT_2,
        w: std::f64::consts::FRAC_1_SQRT_2,
    }
}

fn pose() -> Pose {
    Pose {
        position: point(),
        orientation: quat(),
    }
}

fn twist() -> Twist {
    Twist {
        linear: v3(0.1, 0.0, -0.2),
        angular: v3(0.0, 0.5, 1.5),
    }
}

fn transform() -> Transform {
    Transform {
        translation: v3(0.3, -0.1, 0.45),
        rotation: Quaternion {
            x: 1.0,
            y: 0.0,
            z: 0.0,
            w: 0.0,
        },
    }
}

fn dim(label: &str, size: u32, stride: u32) -> MultiArrayDimension {
    MultiArrayDimension {
        label: label.into(),
        size,
        stride,
    }
}

fn image_rgb8() -> Image {
    Image {
        header: header(1_700_000_002, 250_000_000, UNICODE_FRAME),
        height: 2,
        width: 3,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 9,
        data: (0..18u8).map(|i| i * 13).collect(),
    }
}

fn image_mono8_padded() -> Image {
    Image {
        header: header(10, 20, "wrist_cam"),
        height: 2,
        width: 3,
        encoding: "mono8".into(),
        is_bigendian: 0,
        step: 4,
        data: vec![0, 127, 255, 0, 1, 2, 3, 0],
    }
}

fn chunk_meta() -> ChunkMeta {
    ChunkMeta {
        inference_id: (1 << 40) + 3,
        policy_kind: "flow_matching".into(),
        nfe: 10,
        warm_started: true,
        seed: 0xDEAD_BEEF_CAFE_F00D,
        obs_stamp: time(1_700_000_005, 123),
        decode_s: 0.0015,
        window_s: 0.00025,
        inference_s: 0.042,
        publish_s: 0.0001,
        total_s: 0.04385,
    }
}

#[test]
fn matches_rosbags_fixtures() {
    let fx = fixtures();
    let seen = &mut BTreeSet::new();
    check_builtin_std_and_sensor_cases(&fx, seen);
    check_geometry_trajectory_and_riptide_cases(&fx, seen);
    let all: BTreeSet<String> = fx["cases"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(*seen, all, "every fixture case must be checked");
    let types: BTreeSet<&str> = fx["cases"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    let ours: BTreeSet<&str> = all_decoders().iter().map(|(n, _)| *n).collect();
    assert_eq!(types, ours, "every message type must have a fixture");
}

/// The `builtin_interfaces`, `std_msgs`, `rosgraph_msgs` and `sensor_msgs` cases of the fixtures.
fn check_builtin_std_and_sensor_cases(fx: &Value, seen: &mut BTreeSet<String>) {
    check(fx, seen, "time", time(1_700_000_000, 123_456_789));
    check(fx, seen, "time_negative", time(-5, 999_999_999));
    check(fx, seen, "duration", dur(2, 500_000_000));
    check(fx, seen, "header", header(1_700_000_001, 5, UNICODE_FRAME));
    check(fx, seen, "header_empty_frame", header(0, 0, ""));
    check(
        fx,
        seen,
        "string",
        StringMsg {
            data: "hello, riptide ✓".into(),
        },
    );
    check(fx, seen, "string_empty", StringMsg::default());
    check(fx, seen, "clock", Clock { clock: time(42, 7) });
    check(fx, seen, "multi_array_dimension", dim("dof", 7, 7));
    check(
        fx,
        seen,
        "multi_array_layout",
        MultiArrayLayout {
            dim: vec![dim("x", 3, 3)],
            data_offset: 1,
        },
    );
    check(
        fx,
        seen,
        "float32_multi_array",
        Float32MultiArray {
            layout: MultiArrayLayout {
                dim: vec![dim("chunk", 16, 112), dim("dof", 7, 7)],
                data_offset: 3,
            },
            data: vec![1.5, -0.25, 3.140625, 0.0, -1024.0],
        },
    );
    check(fx, seen, "float32_multi_array_empty", Float32MultiArray::default());
    check(fx, seen, "image_rgb8", image_rgb8());
    check(fx, seen, "image_mono8_padded", image_mono8_padded());
    check(
        fx,
        seen,
        "image_odd_encoding",
        Image {
            header: header(0, 1, "a"),
            height: 0,
            width: 0,
            encoding: "bgr".into(),
            is_bigendian: 1,
            step: 0,
            data: vec![],
        },
    );
    check(
        fx,
        seen,
        "joint_state",
        JointState {
            header: header(1_700_000_003, 999_999_999, "base_link"),
            name: strings(&["joint_1", "j2", "gripper"]),
            position: vec![0.1, -std::f64::consts::FRAC_PI_2, 0.04],
            velocity: vec![],
            effort: vec![0.5],
        },
    );
}

/// The `geometry_msgs`, `trajectory_msgs` and riptide cases of the fixtures.
fn check_geometry_trajectory_and_riptide_cases(fx: &Value, seen: &mut BTreeSet<String>) {
    check(fx, seen, "point", point());
    check(fx, seen, "quaternion", quat());
    check(fx, seen, "pose", pose());
    check(
        fx,
        seen,
        "pose_stamped",
        PoseStamped {
            header: header(3, 4, "map"),
            pose: pose(),
        },
    );
    check(fx, seen, "vector3", v3(-0.5, 0.25, 1e-9));
    check(fx, seen, "twist", twist());
    check(
        fx,
        seen,
        "twist_stamped",
        TwistStamped {
            header: header(5, 6, "tool0"),
            twist: twist(),
        },
    );
    check(fx, seen, "transform", transform());
    check(
        fx,
        seen,
        "joint_trajectory_point",
        JointTrajectoryPoint {
            positions: vec![0.0, 1.0, 2.0],
            velocities: vec![0.5],
            accelerations: vec![],
            effort: vec![-0.125, 0.25],
            time_from_start: dur(0, 33_333_333),
        },
    );
    check(
        fx,
        seen,
        "joint_trajectory",
        JointTrajectory {
            header: header(1_700_000_004, 1, "base"),
            joint_names: strings(&["shoulder", "elbow"]),
            points: vec![
                JointTrajectoryPoint {
                    positions: vec![0.1, 0.2],
                    ..Default::default()
                },
                JointTrajectoryPoint {
                    positions: vec![0.15, 0.25],
                    velocities: vec![0.5, 0.5],
                    accelerations: vec![0.0, -0.1],
                    effort: vec![1.0],
                    time_from_start: dur(0, 100_000_000),
                },
            ],
        },
    );
    check(fx, seen, "joint_trajectory_empty", JointTrajectory::default());
    check(
        fx,
        seen,
        "multi_dof_joint_trajectory_point",
        MultiDOFJointTrajectoryPoint {
            transforms: vec![transform()],
            velocities: vec![twist(), twist()],
            accelerations: vec![],
            time_from_start: dur(1, 5),
        },
    );
    check(
        fx,
        seen,
        "multi_dof_joint_trajectory",
        MultiDOFJointTrajectory {
            header: header(7, 8, "odom"),
            joint_names: strings(&["virtual_joint"]),
            points: vec![
                MultiDOFJointTrajectoryPoint {
                    transforms: vec![transform()],
                    velocities: vec![],
                    accelerations: vec![],
                    time_from_start: dur(0, 1),
                },
                MultiDOFJointTrajectoryPoint {
                    transforms: vec![],
                    velocities: vec![twist()],
                    accelerations: vec![twist()],
                    time_from_start: dur(2, 0),
                },
            ],
        },
    );
    check(fx, seen, "chunk_meta", chunk_meta());
    check(
        fx,
        seen,
        "chunk_meta_cold",
        ChunkMeta {
            policy_kind: "ddim".into(),
            nfe: 1,
            seed: u64::MAX,
            ..Default::default()
        },
    );
}

#[test]
fn random_bytes_are_rejected() {
    let decoders = all_decoders();
    let mut rng = Rng(0x5eed_0001);
    for case in 0..2000 {
        let len = rng.below(160);
        let bytes = rng.bytes(len);
        for (type_name, decode) in &decoders {
            assert!(
                decode(&bytes).is_err(),
                "case {case}: random {} decoded as {type_name}",
                hex(&bytes)
            );
        }
    }
}

#[test]
fn random_payloads_never_panic() {
    // A valid header followed by random bytes: decoding may succeed (e.g. a Time is any 8 bytes), but must not
    // panic, and whatever decodes must re-encode consistently (checked inside `reencode`).
    let decoders = all_decoders();
    let mut rng = Rng(0x5eed_0002);
    let mut ok = 0usize;
    for _ in 0..2000 {
        let len = rng.below(120);
        let mut bytes = vec![0x00, 0x01, 0x00, 0x00];
        bytes.extend(rng.bytes(len));
        for (_, decode) in &decoders {
            ok += usize::from(decode(&bytes).is_ok());
        }
    }
    assert!(ok > 0, "some random payloads decode as fixed-size messages");
}

#[test]
fn mutated_fixtures_never_panic() {
    let fx = fixtures();
    let mut rng = Rng(0x5eed_0003);
    for case in fx["cases"].as_object().unwrap().values() {
        let decode = decoder_for(case["type"].as_str().unwrap());
        let bytes = unhex(case["cdr_hex"].as_str().unwrap());
        for _ in 0..300 {
            let mut m = bytes.clone();
            match rng.below(4) {
                0 | 1 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = 4 + rng.below(m.len() - 4);
                        m[i] = rng.next() as u8;
                    }
                }
                2 => {
                    let i = 4 + rng.below(m.len() - 3);
                    m.insert(i, rng.next() as u8);
                }
                _ => {
                    let i = 4 + rng.below(m.len() - 4);
                    m.remove(i);
                }
            }
            // Ok or Err are both fine here; a panic (or an inconsistent re-encode) fails the test.
            let _ = decode(&m);
        }
    }
}

#[test]
fn decode_errors_are_specific() {
    let header_ok = encode(&header(1, 2, "ab")).unwrap();
    assert_eq!(decode::<Header>(&[0x00, 0x01]), Err(MsgError::MissingHeader { len: 2 }));

    // Big-endian CDR and XCDR2 are not accepted; the XCDR1 padding-count options (0..=3) are.
    for bad in [
        [0x00, 0x00, 0x00, 0x00],
        [0x00, 0x07, 0x00, 0x00],
        [0x01, 0x01, 0x00, 0x00],
        [0x00, 0x01, 0x00, 0x04],
    ] {
        let mut b = header_ok.clone();
        b[..4].copy_from_slice(&bad);
        assert_eq!(decode::<Header>(&b), Err(MsgError::BadHeader { found: bad }));
    }
    let mut b = header_ok.clone();
    b[3] = 0x01;
    assert!(decode::<Header>(&b).is_ok());

    // Length prefix of the frame_id string (payload offset 8) far beyond the buffer.
    let mut b = header_ok.clone();
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode::<Header>(&b),
        Err(MsgError::LengthTooLarge {
            offset: 8,
            len: u64::from(u32::MAX),
            remaining: 3
        })
    );

    // A huge sequence count is rejected before allocating.
    let mut b = encode(&JointTrajectoryPoint::default()).unwrap();
    b[4..8].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    assert!(matches!(
        decode::<JointTrajectoryPoint>(&b),
        Err(MsgError::LengthTooLarge { offset: 0, .. })
    ));

    // "ab\0" -> invalid UTF-8 / missing NUL / interior NUL.
    let mut b = header_ok.clone();
    b[16] = 0xff;
    assert_eq!(decode::<Header>(&b), Err(MsgError::InvalidUtf8 { offset: 8 }));
    let mut b = header_ok.clone();
    b[18] = b'c';
    assert!(matches!(
        decode::<Header>(&b),
        Err(MsgError::BadString { offset: 8, .. })
    ));
    let mut b = header_ok.clone();
    b[17] = 0;
    assert!(matches!(
        decode::<Header>(&b),
        Err(MsgError::BadString { offset: 8, .. })
    ));

    // An empty string written as a bare zero length is tolerated.
    let mut b = encode(&StringMsg::default()).unwrap();
    assert_eq!(hex(&b), "000100000100000000");
    b.truncate(4);
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode::<StringMsg>(&b), Ok(StringMsg::default()));

    // bool bytes other than 0/1: find warm_started's byte by encoding both values.
    let on = encode(&chunk_meta()).unwrap();
    let off = encode(&ChunkMeta {
        warm_started: false,
        ..chunk_meta()
    })
    .unwrap();
    let i = (0..on.len()).find(|&i| on[i] != off[i]).unwrap();
    let mut b = on.clone();
    b[i] = 2;
    assert_eq!(
        decode::<ChunkMeta>(&b),
        Err(MsgError::InvalidBool {
            offset: i - 4,
            value: 2
        })
    );

    // Errors read well.
    let msg = decode::<Header>(&[0x00, 0x00, 0x00, 0x00, 0x00])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("encapsulation header") && msg.contains("CDR_LE"), "{msg}");
    let msg = decode::<Time>(&header_ok[..7]).unwrap_err().to_string();
    assert!(msg.contains("truncated at payload offset 0"), "{msg}");
}

#[test]
fn encode_rejects_unrepresentable_strings() {
    let err = encode(&StringMsg { data: "a\0b".into() }).unwrap_err();
    assert_eq!(err, MsgError::NulInString { index: 1 });
    let mut out = vec![9u8];
    assert!(encode_into(&StringMsg { data: "\0".into() }, &mut out).is_err());
    assert_eq!(out, [9], "encode_into must leave the buffer as it was on error");
}

#[test]
fn encode_into_appends() {
    let mut out = Vec::new();
    encode_into(&Clock { clock: time(1, 2) }, &mut out).unwrap();
    let first = out.len();
    encode_into(&Clock { clock: time(3, 4) }, &mut out).unwrap();
    assert_eq!(decode::<Clock>(&out[..first]).unwrap().clock, time(1, 2));
    assert_eq!(decode::<Clock>(&out[first..]).unwrap().clock, time(3, 4));
}

#[test]
fn vga_image_roundtrip() {
    let (w, h) = (640u32, 480u32);
    let img = Image {
        header: header(1_700_000_000, 1, "camera"),
        height: h,
        width: w,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 3 * w,
        data: (0..3 * w * h).map(|i| (i % 251) as u8).collect(),
    };
    img.validate().unwrap();
    let bytes = encode(&img).unwrap();
    // header + stamp 8 + "camera\0" (4+7, padded to 12) + height/width 8 + "rgb8\0" (4+5) + u8 + pad 2 + step 4
    // + data length 4 + data.
    assert_eq!(bytes.len(), 4 + 8 + 12 + 8 + 9 + 1 + 2 + 4 + 4 + (3 * w * h) as usize);
    assert_eq!(&bytes[bytes.len() - img.data.len()..], &img.data[..]);
    assert_eq!(decode::<Image>(&bytes).unwrap(), img);
}

#[test]
fn image_validate() {
    image_rgb8().validate().unwrap();
    image_mono8_padded().validate().unwrap();
    Image {
        encoding: "bgr8".into(),
        ..image_rgb8()
    }
    .validate()
    .unwrap();

    let err = Image {
        encoding: "rgba8".into(),
        ..image_rgb8()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unsupported encoding \"rgba8\"") && err.contains("rgb8, bgr8, mono8"),
        "{err}"
    );
    let err = Image {
        step: 8,
        ..image_rgb8()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("step 8 is smaller than a rgb8 row of width 3 (9 bytes)"),
        "{err}"
    );
    let err = Image {
        data: vec![0; 17],
        ..image_rgb8()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("data is 17 bytes but step 9 x height 2 = 18 bytes"),
        "{err}"
    );
    let huge = Image {
        width: u32::MAX,
        step: u32::MAX,
        height: u32::MAX,
        data: vec![],
        ..image_rgb8()
    };
    assert!(huge.validate().is_err());
}

#[test]
fn time_conversions() {
    assert_eq!(Time::from_secs_f64(1.5), time(1, 500_000_000));
    assert_eq!(Time::from_secs_f64(-0.25), time(-1, 750_000_000));
    assert_eq!(Time::from_secs_f64(0.999_999_999_9), time(1, 0));
    assert_eq!(Time::from_secs_f64(-1e-10), time(0, 0));
    assert_eq!(Time::from_secs_f64(f64::NAN), time(0, 0));
    assert_eq!(Time::from_secs_f64(1e12), time(i32::MAX, 999_999_999));
    assert_eq!(Time::from_secs_f64(f64::NEG_INFINITY), time(i32::MIN, 0));
    let t = Time::from_secs_f64(1_700_000_000.123_456);
    assert_eq!(t.sec, 1_700_000_000);
    assert!((i64::from(t.nanosec) - 123_456_000).abs() < 1_000, "{t:?}");
    assert!((t.as_secs_f64() - 1_700_000_000.123_456).abs() < 1e-6);
    assert_eq!(time(-1, 750_000_000).as_secs_f64(), -0.25);

    assert_eq!(Duration::from_secs_f64(0.033_333_333), dur(0, 33_333_333));
    assert_eq!(Duration::from_secs_f64(-1.5), dur(-2, 500_000_000));
    assert_eq!(dur(2, 500_000_000).as_secs_f64(), 2.5);
    for s in [0.0, 1e-9, 0.1, 12.345_678_9, -3.75, 1_000.000_001] {
        assert!((Duration::from_secs_f64(s).as_secs_f64() - s).abs() < 1e-9, "{s}");
    }
}

#[test]
fn type_names_and_schemas() {
    assert_eq!(Image::TYPE_NAME, "sensor_msgs/msg/Image");
    assert_eq!(StringMsg::TYPE_NAME, "std_msgs/msg/String");
    assert_eq!(Clock::TYPE_NAME, "rosgraph_msgs/msg/Clock");
    assert_eq!(ChunkMeta::TYPE_NAME, "riptide_msgs/msg/ChunkMeta");
    assert_eq!(<Image as RosMessage>::SCHEMA, Image::SCHEMA);
    assert!(Image::SCHEMA.starts_with(Image::MSG_DEFINITION));
    assert!(Image::SCHEMA.contains(
        "\n================================================================================\nMSG: std_msgs/Header\n"
    ));
    assert_eq!(Quaternion::default().w, 1.0);
    assert_eq!(riptide_msgs::SCHEMA_ENCODING, "ros2msg");
    assert_eq!(riptide_msgs::MESSAGE_ENCODING, "cdr");
}
