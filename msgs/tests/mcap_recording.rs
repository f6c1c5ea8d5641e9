//! MCAP recording: round trip, crash safety (truncation at many offsets, a writer that never finishes, a writer
//! process killed with SIGKILL), damaged bytes, and an independent reader (PyPI `mcap` + `mcap-ros2-support`,
//! `check_mcap.py`) decoding the Rust-written files from their `ros2msg` schemas.
#![cfg(feature = "mcap")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use riptide_msgs::mcap::{
    canonical_type_name, recover, schema_for_type_name, McapEpisode, McapError, McapRecorder, RecordedMessage,
    RecorderOptions,
};
use riptide_msgs::ros::*;
use riptide_msgs::RosMessage;
use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------------
// Sample episode

/// One message of the sample episode, of any of the recorded types.
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Image(Image),
    Joints(JointState),
    Array(Float32MultiArray),
    Traj(JointTrajectory),
    Clock(Clock),
    Meta(ChunkMeta),
}

macro_rules! each_msg {
    ($m:expr, $v:ident => $body:expr) => {
        match $m {
            Msg::Image($v) => $body,
            Msg::Joints($v) => $body,
            Msg::Array($v) => $body,
            Msg::Traj($v) => $body,
            Msg::Clock($v) => $body,
            Msg::Meta($v) => $body,
        }
    };
}

fn type_name_of<T: RosMessage>(_: &T) -> &'static str {
    T::TYPE_NAME
}

fn schema_of<T: RosMessage>(_: &T) -> &'static str {
    T::SCHEMA
}

impl Msg {
    fn type_name(&self) -> &'static str {
        each_msg!(self, m => type_name_of(m))
    }

    fn schema(&self) -> &'static str {
        each_msg!(self, m => schema_of(m))
    }

    fn fields(&self) -> Value {
        each_msg!(self, m => serde_json::to_value(m).expect("message to JSON"))
    }

    fn write(&self, rec: &mut McapRecorder, topic: &str, t: u64) -> Result<(), McapError> {
        each_msg!(self, m => rec.write(topic, t, m))
    }

    /// Decode `r` as this message's type (checked through the typed helper) and compare.
    fn assert_matches(&self, r: &RecordedMessage<'_>, what: &str) {
        let same = match self {
            Msg::Image(m) => r.decode::<Image>().map(|d| d == *m),
            Msg::Joints(m) => r.decode::<JointState>().map(|d| d == *m),
            Msg::Array(m) => r.decode::<Float32MultiArray>().map(|d| d == *m),
            Msg::Traj(m) => r.decode::<JointTrajectory>().map(|d| d == *m),
            Msg::Clock(m) => r.decode::<Clock>().map(|d| d == *m),
            Msg::Meta(m) => r.decode::<ChunkMeta>().map(|d| d == *m),
        };
        match same {
            Ok(true) => {}
            Ok(false) => panic!(
                "{what}: decoded {} on {} differs from what was written",
                r.type_name, r.topic
            ),
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Sent {
    topic: &'static str,
    t: u64,
    msg: Msg,
}

fn stamp(t: u64) -> Time {
    Time {
        sec: (t / 1_000_000_000) as i32,
        nanosec: (t % 1_000_000_000) as u32,
    }
}

/// Deterministic pseudo-random numbers (no rand dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn f64(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64 * 2.0 - 1.0
    }
}

/// Message `i` of a 10 Hz-ish episode on six topics, log time strictly increasing with `i` (1 ms apart). Every
/// 17th message is a camera image bigger than the small chunk sizes used below, so some chunks hold one image.
fn sample(i: usize) -> Sent {
    let t = 1_700_000_000_000_000_000 + i as u64 * 1_000_000;
    let mut r = Lcg(i as u64 * 7919 + 13);
    let header = |frame: &str| Header {
        stamp: stamp(t),
        frame_id: frame.to_string(),
    };
    let (topic, msg) = match i % 6 {
        _ if i % 17 == 5 => {
            let (w, h) = (24 + (i % 3) as u32, 16);
            let data = (0..w * h * 3).map(|_| r.below(256) as u8).collect();
            (
                "riptide/observation/images/front",
                Msg::Image(Image {
                    header: header("camera_front"),
                    height: h,
                    width: w,
                    encoding: "rgb8".into(),
                    is_bigendian: 0,
                    step: w * 3,
                    data,
                }),
            )
        }
        0 => {
            let n = 1 + (i % 7);
            (
                "joint_states",
                Msg::Joints(JointState {
                    header: header("base_link"),
                    name: (0..n).map(|j| format!("joint_{j}")).collect(),
                    position: (0..n).map(|_| r.f64()).collect(),
                    velocity: (0..n).map(|_| r.f64() * 3.0).collect(),
                    effort: if i.is_multiple_of(4) {
                        vec![]
                    } else {
                        (0..n).map(|_| r.f64()).collect()
                    },
                }),
            )
        }
        1 => (
            "riptide/observation/state",
            Msg::Array(Float32MultiArray {
                layout: MultiArrayLayout {
                    dim: vec![MultiArrayDimension {
                        label: "state".into(),
                        size: 6,
                        stride: 6,
                    }],
                    data_offset: 0,
                },
                data: (0..6).map(|_| r.f64() as f32 * 0.37).collect(),
            }),
        ),
        2 => {
            let points = (0..1 + i % 5)
                .map(|k| JointTrajectoryPoint {
                    positions: (0..3).map(|_| r.f64()).collect(),
                    velocities: if k.is_multiple_of(2) { vec![r.f64()] } else { vec![] },
                    accelerations: vec![],
                    effort: vec![],
                    time_from_start: Duration::from_secs_f64(k as f64 * 0.1),
                })
                .collect();
            (
                "riptide/action/chunk",
                Msg::Traj(JointTrajectory {
                    header: header(""),
                    joint_names: vec!["a".into(), "b".into(), "c".into()],
                    points,
                }),
            )
        }
        3 => ("/clock", Msg::Clock(Clock { clock: stamp(t) })),
        4 => (
            ChunkMeta::TOPIC,
            Msg::Meta(ChunkMeta {
                inference_id: i as u64,
                policy_kind: "diffusion".into(),
                nfe: 10,
                warm_started: i.is_multiple_of(3),
                seed: r.next(),
                obs_stamp: stamp(t),
                decode_s: r.f64().abs() * 1e-3,
                window_s: 1e-4,
                inference_s: 0.0215,
                publish_s: 3e-5,
                total_s: 0.025,
            }),
        ),
        _ => {
            let (w, h) = (8, 6);
            (
                "riptide/observation/images/wrist",
                Msg::Image(Image {
                    header: header("wrist"),
                    height: h,
                    width: w,
                    encoding: "mono8".into(),
                    is_bigendian: 0,
                    step: w + 2, // padded rows
                    data: (0..(w + 2) * h).map(|_| r.below(256) as u8).collect(),
                }),
            )
        }
    };
    Sent { topic, t, msg }
}

fn episode_metadata() -> Vec<(String, BTreeMap<String, String>)> {
    vec![
        (
            "episode".to_string(),
            BTreeMap::from([
                ("seed".to_string(), "1234".to_string()),
                ("policy".to_string(), "lerobot/diffusion_pusht".to_string()),
            ]),
        ),
        (
            "env_config".to_string(),
            BTreeMap::from([(
                "json".to_string(),
                r#"{"name":"pusht","fps":10,"obs":["state","image"],"quoted":"a \"b\" ü"}"#.to_string(),
            )]),
        ),
    ]
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcap_recording").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Check that `episode` holds exactly `expected` (already in log-time order), decoded through the typed helper.
fn assert_messages(episode: &McapEpisode, expected: &[Sent], what: &str) {
    assert_eq!(episode.message_count(), expected.len(), "{what}: message count");
    for (i, (got, want)) in episode.messages().zip(expected).enumerate() {
        let at = format!("{what}: message {i}");
        assert_eq!(
            (got.topic, got.type_name, got.log_time_ns),
            (want.topic, want.msg.type_name(), want.t),
            "{at}"
        );
        want.msg.assert_matches(&got, &at);
    }
}

fn sort_by_time(sent: &[Sent]) -> Vec<Sent> {
    let mut sorted = sent.to_vec();
    sorted.sort_by_key(|s| s.t); // stable: file order among equal times, like the reader
    sorted
}

// ------------------------------------------------------------------------------------------------
// 1. Round trip

#[test]
fn round_trip_all_types_across_topics_in_log_time_order() {
    let dir = scratch_dir("round_trip");
    let mut sent: Vec<Sent> = (0..240).map(sample).collect();
    // Late arrivals: a camera frame stamped before messages already written, and two messages at equal times.
    let mut late = sample(5);
    late.t = sent[40].t - 1;
    sent.push(late);
    let mut tie = sample(3);
    tie.t = sent[100].t;
    sent.push(tie);

    for (name, options) in [
        ("default.mcap", RecorderOptions::default()),
        (
            "small_chunks.mcap",
            RecorderOptions {
                chunk_size: 1024,
                max_chunk_age: None,
                sync: true,
            },
        ),
    ] {
        let path = dir.join(name);
        let mut rec = McapRecorder::create_with(&path, options).expect("create");
        for (name, entries) in episode_metadata() {
            rec.write_metadata(&name, &entries).expect("metadata");
        }
        for s in &sent {
            s.msg.write(&mut rec, s.topic, s.t).expect("write");
        }
        assert_eq!(rec.message_count(), sent.len() as u64);
        rec.finish().expect("finish");

        let ep = McapEpisode::open(&path).expect("open");
        assert!(ep.is_complete(), "{name}: {:?}", ep.truncation());
        ep.check_complete().expect("complete");
        assert_messages(&ep, &sort_by_time(&sent), name);

        let meta: Vec<_> = ep
            .metadata()
            .iter()
            .map(|m| (m.name.clone(), m.entries.clone()))
            .collect();
        assert_eq!(meta, episode_metadata());
        assert_eq!(ep.metadata_named("episode").map(|m| m["seed"].as_str()), Some("1234"));

        // One channel per topic, with the type's schema.
        let topics: BTreeSet<&str> = sent.iter().map(|s| s.topic).collect();
        assert_eq!(ep.channels().len(), topics.len());
        for s in &sent {
            let c = ep.channel(s.topic).expect("channel");
            assert_eq!(c.type_name, s.msg.type_name());
            assert_eq!(c.schema_encoding, "ros2msg");
            assert_eq!(c.message_encoding, "cdr");
            assert_eq!(c.schema, s.msg.schema().as_bytes());
            assert_eq!(
                c.message_count,
                sent.iter().filter(|x| x.topic == s.topic).count() as u64
            );
        }
        let clocks: Vec<(u64, Clock)> = ep.decode_topic("/clock").expect("decode /clock");
        assert_eq!(clocks.len(), sent.iter().filter(|s| s.topic == "/clock").count());

        // The `mcap` crate's own reader agrees (summary, message count, channel schemas).
        let bytes = std::fs::read(&path).expect("read");
        let summary = mcap::Summary::read(&bytes).expect("summary").expect("has summary");
        let stats = summary.stats.expect("statistics");
        assert_eq!(stats.message_count, sent.len() as u64);
        assert_eq!(stats.metadata_count, 2);
        assert!(
            name == "default.mcap" || stats.chunk_count > 10,
            "{name}: {} chunks",
            stats.chunk_count
        );
        let via_crate = mcap::MessageStream::new(&bytes)
            .expect("stream")
            .collect::<Result<Vec<_>, _>>()
            .expect("mcap crate reads every message")
            .len();
        assert_eq!(via_crate, sent.len());
    }
}

#[test]
fn write_raw_records_live_topics_by_type_name() {
    let dir = scratch_dir("raw");
    let path = dir.join("raw.mcap");
    let js = match sample(0).msg {
        Msg::Joints(js) => js,
        other => panic!("sample 0 is {other:?}"),
    };
    let payload = riptide_msgs::encode(&js).expect("encode");
    let mut rec = McapRecorder::create(&path).expect("create");
    // A live topic announced in rmw's spelling, looked up by name.
    let dds_name = "sensor_msgs::msg::dds_::JointState_";
    let type_name = canonical_type_name(dds_name).expect("known type");
    let schema = schema_for_type_name(dds_name).expect("known schema");
    assert_eq!(type_name, JointState::TYPE_NAME);
    // Given in rmw's spelling, stored as `pkg/msg/Type` (what Foxglove expects), so the typed write matches.
    rec.write_raw("robot/joint_states", dds_name, schema, 10, &payload)
        .expect("raw");
    rec.write("robot/joint_states", 20, &js)
        .expect("typed on the same channel");
    rec.finish().expect("finish");

    let ep = McapEpisode::open(&path).expect("open");
    assert_eq!(ep.channels().len(), 1);
    assert_eq!(ep.channels()[0].type_name, "sensor_msgs/msg/JointState");
    let msgs: Vec<_> = ep.messages().collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].data, &payload[..]);
    assert_eq!(msgs[1].data, &payload[..]);
    assert_eq!(msgs[0].decode::<JointState>().expect("decode"), js);
}

#[test]
fn a_topic_with_two_types_is_an_error_and_decode_checks_the_type() {
    let dir = scratch_dir("conflict");
    let path = dir.join("conflict.mcap");
    let mut rec = McapRecorder::create(&path).expect("create");
    rec.write("x", 1, &Clock::default()).expect("first");
    let err = rec
        .write("x", 2, &StringMsg { data: "no".into() })
        .expect_err("second type");
    let text = err.to_string();
    assert!(matches!(err, McapError::TopicConflict { .. }), "{text}");
    assert!(
        text.contains("conflict.mcap")
            && text.contains("rosgraph_msgs/msg/Clock")
            && text.contains("std_msgs/msg/String"),
        "{text}"
    );
    // Same type name, different schema text: also refused.
    let err = rec
        .write_raw(
            "x",
            Clock::TYPE_NAME,
            "int64 clock\n",
            3,
            &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .expect_err("different schema");
    assert!(err.to_string().contains("different schema"), "{err}");
    // A failed write leaves the recording usable.
    rec.write("x", 4, &Clock::default()).expect("still writable");
    rec.finish().expect("finish");

    let ep = McapEpisode::open(&path).expect("open");
    assert_eq!(ep.message_count(), 2);
    let m = ep.messages().next().expect("message");
    let err = m.decode::<JointState>().expect_err("wrong type");
    assert!(matches!(err, McapError::TypeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("rosgraph_msgs/msg/Clock"), "{err}");
}

/// Every type in `ros.rs` has its schema available by name, and it is the schema rosbags writes.
#[test]
fn schema_for_type_name_covers_every_ros_type() {
    let source = include_str!("../src/ros.rs");
    let mut names = BTreeSet::new();
    for part in source.split("ros_message!(").skip(1) {
        // `ros_message!($ty:ident, $type_name:literal, ...)`: the macro definition itself has `$ty` here.
        let Some(name) = part.split('"').nth(1) else { continue };
        if !part.trim_start().starts_with('$') {
            names.insert(name.to_string());
        }
    }
    assert!(names.len() >= 20, "found {names:?}");
    let fixtures: Value = serde_json::from_str(include_str!("fixtures/cdr_fixtures.json")).expect("cdr fixtures parse");
    let mut checked = 0;
    for name in &names {
        let schema = schema_for_type_name(name).unwrap_or_else(|| panic!("no schema for {name}"));
        assert_eq!(canonical_type_name(name), Some(name.as_str()));
        if let Some(rosbags) = fixtures["schemas"][name].as_str() {
            assert_eq!(schema, rosbags, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} schemas compared with rosbags");
    assert_eq!(schema_for_type_name(ChunkMeta::TYPE_NAME), Some(ChunkMeta::SCHEMA));
    assert_eq!(schema_for_type_name("sensor_msgs/msg/PointCloud2"), None);
}

// ------------------------------------------------------------------------------------------------
// 2. Crash safety

/// Records the sample episode with small chunks; returns the finished file's bytes and what was sent.
fn crash_fixture(dir: &Path, n: usize) -> (Vec<u8>, Vec<Sent>) {
    let path = dir.join("full.mcap");
    let mut rec = McapRecorder::create_with(
        &path,
        RecorderOptions {
            chunk_size: 2048,
            max_chunk_age: None,
            sync: false,
        },
    )
    .expect("create");
    let meta = episode_metadata();
    rec.write_metadata(&meta[0].0, &meta[0].1).expect("metadata");
    let sent: Vec<Sent> = (0..n).map(sample).collect();
    for (i, s) in sent.iter().enumerate() {
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
        if i == n / 2 {
            rec.write_metadata(&meta[1].0, &meta[1].1).expect("metadata");
        }
    }
    rec.finish().expect("finish");
    (std::fs::read(&path).expect("read"), sent)
}

#[test]
fn truncation_at_any_offset_keeps_exactly_the_completed_chunks() {
    let dir = scratch_dir("truncate");
    let (bytes, sent) = crash_fixture(&dir, 400);

    // Chunk and metadata extents from the `mcap` crate's summary: an independent account of the layout.
    let summary = mcap::Summary::read(&bytes).expect("summary").expect("has summary");
    let chunks: Vec<(u64, u64)> = summary
        .chunk_indexes
        .iter()
        .map(|c| (c.chunk_start_offset + c.chunk_length, c.message_end_time))
        .collect();
    let metadata: Vec<u64> = summary.metadata_indexes.iter().map(|m| m.offset + m.length).collect();
    assert!(chunks.len() > 30, "{} chunks", chunks.len());
    assert_eq!(metadata.len(), 2);

    let mut cuts: BTreeSet<usize> = (0..bytes.len()).step_by(53).collect();
    for &(end, _) in &chunks {
        for d in [-1i64, 0, 1, 9] {
            cuts.insert((end as i64 + d).clamp(0, bytes.len() as i64) as usize);
        }
    }
    cuts.extend(metadata.iter().map(|&e| e as usize));
    cuts.insert(bytes.len() - 1);
    cuts.insert(bytes.len());

    let header_end = 8 + 9 + u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes")) as usize;
    let mut truncated_reads = 0;
    let mut recovered_checked = 0;
    for &cut in &cuts {
        let name = format!("cut at {cut} of {}", bytes.len());
        let ep = match McapEpisode::from_bytes(dir.join("cut.mcap"), bytes[..cut].to_vec()) {
            Ok(ep) => ep,
            Err(e) => {
                // Only a file without even its Header is refused.
                assert!(cut < header_end, "{name}: {e}");
                assert!(
                    e.to_string().contains("cut.mcap") && e.to_string().contains("not an MCAP file"),
                    "{e}"
                );
                continue;
            }
        };
        // Messages of every chunk that ends before the cut, nothing else (log times increase with i).
        let last_time = chunks
            .iter()
            .filter(|(end, _)| *end as usize <= cut)
            .map(|&(_, t)| t)
            .max();
        let expected: Vec<Sent> = sent
            .iter()
            .filter(|s| last_time.is_some_and(|t| s.t <= t))
            .cloned()
            .collect();
        assert_messages(&ep, &expected, &name);
        let meta_expected = metadata.iter().filter(|&&end| end as usize <= cut).count();
        assert_eq!(ep.metadata().len(), meta_expected, "{name}: metadata");
        if cut == bytes.len() {
            assert!(ep.is_complete());
        } else {
            let t = ep
                .truncation()
                .unwrap_or_else(|| panic!("{name}: not reported as truncated"));
            assert!(t.offset as usize <= cut, "{name}: {t}");
            let err = ep.check_complete().expect_err("incomplete");
            assert!(
                err.to_string().contains("cut.mcap") && err.to_string().contains("record"),
                "{err}"
            );
            truncated_reads += 1;
        }
        // `recover` turns a sample of them into finished files holding the same messages.
        if cut.is_multiple_of(5) || cut == bytes.len() - 1 {
            let cut_path = dir.join("cut.mcap");
            let out = dir.join("cut.recovered.mcap");
            std::fs::write(&cut_path, &bytes[..cut]).expect("write cut");
            let report = recover(&cut_path, &out).expect("recover");
            assert_eq!(report.messages, expected.len(), "{name}");
            let again = McapEpisode::open(&out).expect("open recovered");
            assert!(
                again.is_complete(),
                "{name}: recovered file incomplete: {:?}",
                again.truncation()
            );
            assert_messages(&again, &expected, &format!("{name}, recovered"));
            assert_eq!(again.metadata(), ep.metadata());
            let recovered = std::fs::read(&out).expect("read recovered");
            let count = mcap::MessageStream::new(&recovered)
                .expect("mcap crate opens it")
                .collect::<Result<Vec<_>, _>>()
                .expect("mcap crate reads every recovered message")
                .len();
            assert_eq!(count, expected.len(), "{name}: mcap crate on the recovered file");
            recovered_checked += 1;
        }
    }
    assert!(truncated_reads > 500, "{truncated_reads}");
    assert!(recovered_checked > 50, "{recovered_checked}");
}

#[test]
fn a_writer_that_never_finishes_loses_only_its_open_chunk() {
    let dir = scratch_dir("forget");
    let path = dir.join("crashed.mcap");
    let mut rec = McapRecorder::create_with(
        &path,
        RecorderOptions {
            chunk_size: 4096,
            max_chunk_age: None,
            sync: false,
        },
    )
    .expect("create");
    let meta = episode_metadata();
    rec.write_metadata(&meta[0].0, &meta[0].1).expect("metadata");
    let sent: Vec<Sent> = (0..300).map(sample).collect();
    for s in &sent {
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
    }
    let durable = rec.durable_message_count() as usize;
    assert!(
        durable > 200 && durable < sent.len(),
        "{durable} of {} durable",
        sent.len()
    );
    // The process "dies": no finish, no Drop.
    std::mem::forget(rec);

    let ep = McapEpisode::open(&path).expect("open crashed file");
    assert_messages(&ep, &sent[..durable], "crashed");
    assert_eq!(ep.metadata().len(), 1);
    let t = ep.truncation().expect("unfinished");
    assert!(t.reason.contains("without a Footer"), "{t}");

    let out = dir.join("recovered.mcap");
    let report = recover(&path, &out).expect("recover");
    assert_eq!((report.messages, report.metadata), (durable, 1));
    let again = McapEpisode::open(&out).expect("open recovered");
    again.check_complete().expect("recovered file is finished");
    assert_messages(&again, &sent[..durable], "recovered");
    assert!(matches!(recover(&out, &out), Err(McapError::SamePath { .. })));
}

#[test]
fn max_chunk_age_writes_out_a_slow_stream() {
    let dir = scratch_dir("age");
    let path = dir.join("slow.mcap");
    let mut rec = McapRecorder::create_with(
        &path,
        RecorderOptions {
            chunk_size: 1 << 30,
            max_chunk_age: Some(StdDuration::from_millis(30)),
            sync: false,
        },
    )
    .expect("create");
    rec.write("/clock", 1, &Clock::default()).expect("write");
    assert_eq!(rec.durable_message_count(), 0, "one small message must stay buffered");
    std::thread::sleep(StdDuration::from_millis(40));
    rec.write("/clock", 2, &Clock::default()).expect("write");
    assert_eq!(
        rec.durable_message_count(),
        2,
        "an old chunk is written at the next write"
    );
    rec.write("/clock", 3, &Clock::default()).expect("write");
    assert!(!rec.flush_if_due().expect("flush_if_due"), "not due yet");
    std::thread::sleep(StdDuration::from_millis(40));
    assert!(
        rec.flush_if_due().expect("flush_if_due"),
        "a quiet stream is written out by the timer call"
    );
    assert_eq!(rec.durable_message_count(), 3);
    rec.write("/clock", 4, &Clock::default()).expect("write");
    std::mem::forget(rec);
    let ep = McapEpisode::open(&path).expect("open");
    assert_eq!(ep.message_count(), 3);
    assert!(format!("{ep:?}").len() < 300, "Debug must not dump the file");
}

#[test]
fn damaged_bytes_never_panic() {
    let dir = scratch_dir("damage");
    let (bytes, sent) = crash_fixture(&dir, 120);
    let mut r = Lcg(99);
    let mut reads = 0;
    for round in 0..3000u64 {
        let mut bad = bytes.clone();
        let flips = 1 + r.below(4);
        for _ in 0..flips {
            let at = r.below(bad.len() as u64) as usize;
            bad[at] = match round % 3 {
                0 => bad[at] ^ (1 << r.below(8)),
                1 => r.below(256) as u8,
                _ => 0xff,
            };
        }
        if round.is_multiple_of(7) {
            let cut = r.below(bad.len() as u64) as usize;
            bad.truncate(cut);
        }
        if let Ok(ep) = McapEpisode::from_bytes("damaged.mcap", bad) {
            // Whatever was kept can be walked and decoded (or refused) without panicking.
            for m in ep.messages() {
                let _ = m.decode::<Image>();
                let _ = m.decode::<JointState>();
            }
            // Flipped opcodes can at most turn a few index records into bogus messages.
            assert!(ep.message_count() <= sent.len() + 4);
            reads += 1;
        }
    }
    assert!(reads > 2500, "{reads}");
    // Not MCAP at all.
    for junk in [&b""[..], b"\x89MCAP0\r", b"hello world, this is no mcap file"] {
        let err = McapEpisode::from_bytes("junk.mcap", junk.to_vec()).expect_err("junk");
        assert!(err.to_string().starts_with("junk.mcap: not an MCAP file"), "{err}");
    }
    let err = McapEpisode::open(dir.join("missing.mcap")).expect_err("missing file");
    assert!(err.to_string().contains("missing.mcap"), "{err}");
}

/// Child side of `sigkill_keeps_every_chunk_written_before_the_kill`: records the sample episode forever,
/// printing how many messages are durable after each chunk. Does nothing unless the parent started it.
#[test]
fn sigkill_child_writer() {
    let Ok(path) = std::env::var("RIPTIDE_MCAP_SIGKILL_CHILD") else {
        return;
    };
    let mut rec = McapRecorder::create_with(
        &path,
        RecorderOptions {
            chunk_size: 4096,
            max_chunk_age: None,
            sync: false,
        },
    )
    .expect("create");
    let mut reported = 0;
    // Bounded, so that an orphaned child cannot run forever.
    let deadline = Instant::now() + StdDuration::from_secs(120);
    for i in 0.. {
        if Instant::now() > deadline {
            return;
        }
        let s = sample(i);
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
        if rec.durable_message_count() != reported {
            reported = rec.durable_message_count();
            println!("durable {reported}");
        }
        if i.is_multiple_of(50) {
            std::thread::sleep(StdDuration::from_millis(1));
        }
    }
}

#[test]
fn sigkill_keeps_every_chunk_written_before_the_kill() {
    let dir = scratch_dir("sigkill");
    let path = dir.join("killed.mcap");
    // The child is this binary's own test, named by its path below the binary's root module.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let child_test = if module.is_empty() {
        "sigkill_child_writer".to_string()
    } else {
        format!("{module}::sigkill_child_writer")
    };
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([child_test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("RIPTIDE_MCAP_SIGKILL_CHILD", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().expect("child stdout");
    // Lines arrive on a channel so that a silent child cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut durable = 0u64;
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while durable < 1500 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(n) = line.strip_prefix("durable ") {
                    durable = n.trim().parse().expect("count");
                }
            }
            Err(_) => break,
        }
    }
    // Kill it mid-write: `Child::kill` is SIGKILL on Unix.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    assert!(durable >= 1500, "child stopped early ({durable} durable)");

    let ep = McapEpisode::open(&path).expect("open killed file");
    let n = ep.message_count();
    assert!(
        n as u64 >= durable,
        "{n} messages read, {durable} were durable before the kill"
    );
    let sent: Vec<Sent> = (0..n).map(sample).collect();
    assert_messages(&ep, &sent, "killed");
    assert!(!ep.is_complete());
    let out = dir.join("recovered.mcap");
    assert_eq!(recover(&path, &out).expect("recover").messages, n);
    McapEpisode::open(&out)
        .expect("open")
        .check_complete()
        .expect("finished");
}

// ------------------------------------------------------------------------------------------------
// 3. Independent reader (Python)

fn expectation(sent: &[Sent], metadata: &[(String, BTreeMap<String, String>)]) -> Value {
    let mut channels = BTreeMap::new();
    for s in sent {
        channels.insert(
            s.topic,
            json!({"topic": s.topic, "type": s.msg.type_name(), "schema": s.msg.schema()}),
        );
    }
    json!({
        "channels": channels.into_values().collect::<Vec<_>>(),
        "metadata": metadata.iter().map(|(n, e)| json!({"name": n, "entries": e})).collect::<Vec<_>>(),
        "messages": sort_by_time(sent).iter().map(|s| json!({
            "topic": s.topic, "type": s.msg.type_name(), "log_time": s.t, "fields": s.msg.fields(),
        })).collect::<Vec<_>>(),
    })
}

fn run_check(python: &Path, mcap: &Path, expect: &Value, extra: &[&str]) -> String {
    let expect_path = mcap.with_extension("expect.json");
    std::fs::write(&expect_path, serde_json::to_string_pretty(expect).expect("json")).expect("write expectation");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_mcap.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(mcap)
        .arg(&expect_path)
        .args(extra)
        .output()
        .expect("run check_mcap.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "check_mcap.py failed on {}:\n{text}",
        mcap.display()
    );
    text
}

#[test]
fn python_mcap_ros2_decodes_rust_recordings() {
    let Some(python) = crate::py::python_with("mcap, mcap_ros2.decoder") else {
        return;
    };
    let dir = scratch_dir("python");

    // A finished recording with every sample type, metadata and out-of-order log times.
    let path = dir.join("episode.mcap");
    let mut sent: Vec<Sent> = (0..180).map(sample).collect();
    let mut late = sample(22);
    late.t = sent[7].t - 5;
    sent.push(late);
    let mut rec = McapRecorder::create(&path).expect("create");
    for (name, entries) in episode_metadata() {
        rec.write_metadata(&name, &entries).expect("metadata");
    }
    for s in &sent {
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
    }
    rec.finish().expect("finish");
    let text = run_check(&python, &path, &expectation(&sent, &episode_metadata()), &[]);
    assert!(text.contains("OK: 181 messages"), "{text}");
    // Not vacuous: a wrong expectation fails.
    let mut wrong = expectation(&sent, &episode_metadata());
    let joints = sort_by_time(&sent)
        .iter()
        .position(|s| matches!(&s.msg, Msg::Joints(js) if !js.position.is_empty()))
        .expect("a JointState");
    wrong["messages"][joints]["fields"]["position"][0] = json!(0.5);
    let expect_path = path.with_extension("expect.json");
    std::fs::write(&expect_path, wrong.to_string()).expect("write");
    let status = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_mcap.py"))
        .arg(&path)
        .arg(&expect_path)
        .stdout(Stdio::null())
        .status()
        .expect("run");
    assert!(!status.success(), "check_mcap.py accepted a wrong value");

    // A crashed recording: Python's stream reader gets exactly the durable prefix from the raw file, and its
    // seeking reader opens the recovered copy.
    let crashed = dir.join("crashed.mcap");
    let mut rec = McapRecorder::create_with(
        &crashed,
        RecorderOptions {
            chunk_size: 3000,
            max_chunk_age: None,
            sync: false,
        },
    )
    .expect("create");
    let meta = episode_metadata();
    rec.write_metadata(&meta[0].0, &meta[0].1).expect("metadata");
    let sent: Vec<Sent> = (0..200).map(sample).collect();
    for s in &sent {
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
    }
    let durable = rec.durable_message_count() as usize;
    assert!(durable > 100 && durable < sent.len());
    std::mem::forget(rec);
    // Tear it inside a chunk as well, as an interrupted write would.
    let bytes = std::fs::read(&crashed).expect("read");
    std::fs::write(&crashed, &bytes[..bytes.len() * 3 / 4]).expect("tear");
    let kept = McapEpisode::open(&crashed).expect("open").message_count();
    assert!(kept < durable && kept > 100, "{kept} of {durable}");
    let expect = expectation(&sent[..kept], &meta[..1]);
    run_check(&python, &crashed, &expect, &["--stream"]);
    let recovered = dir.join("crashed.recovered.mcap");
    recover(&crashed, &recovered).expect("recover");
    run_check(&python, &recovered, &expect, &[]);
}

/// A recording cut mid-file (as a crash leaves it) is refused by the Python `mcap` reader, which Foxglove and the
/// `mcap` CLI resemble in needing the summary and footer; `recover` turns it into a finished file that reader
/// opens, holding every message of the chunks completed before the cut, and the Rust reader agrees.
#[test]
fn recover_makes_a_cut_file_readable_by_the_python_mcap_reader() {
    let Some(python) = crate::py::python_with("mcap, mcap_ros2.decoder") else {
        return;
    };
    let dir = scratch_dir("python_recover");
    let path = dir.join("full.mcap");
    let mut rec = McapRecorder::create_with(
        &path,
        RecorderOptions {
            chunk_size: 3000,
            max_chunk_age: None,
            sync: false,
        },
    )
    .expect("create");
    let meta = episode_metadata();
    rec.write_metadata(&meta[0].0, &meta[0].1).expect("metadata");
    let sent: Vec<Sent> = (0..240).map(sample).collect();
    for s in &sent {
        s.msg.write(&mut rec, s.topic, s.t).expect("write");
    }
    rec.finish().expect("finish");
    let bytes = std::fs::read(&path).expect("read");

    // Cut in the middle of the data section; the durable messages are those of the chunks that end before it.
    let summary = mcap::Summary::read(&bytes).expect("summary").expect("has summary");
    let cut = bytes.len() / 2;
    let last_time = summary
        .chunk_indexes
        .iter()
        .filter(|c| c.chunk_start_offset + c.chunk_length <= cut as u64)
        .map(|c| c.message_end_time)
        .max()
        .expect("a chunk before the cut");
    let durable: Vec<Sent> = sent.iter().filter(|s| s.t <= last_time).cloned().collect();
    assert!(
        durable.len() > 50 && durable.len() < sent.len(),
        "{} durable",
        durable.len()
    );
    let cut_path = dir.join("cut.mcap");
    std::fs::write(&cut_path, &bytes[..cut]).expect("write cut file");
    let expect = expectation(&durable, &meta[..1]);

    // The Python reader refuses the cut file.
    let expect_path = cut_path.with_extension("expect.json");
    std::fs::write(&expect_path, expect.to_string()).expect("write expectation");
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_mcap.py"))
        .arg(&cut_path)
        .arg(&expect_path)
        .output()
        .expect("run check_mcap.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("cut file:\n{text}");
    assert!(!out.status.success(), "the Python reader opened the cut file:\n{text}");
    assert!(!text.contains("OK:") && !text.contains("MISMATCH"), "{text}");

    // The Rust reader keeps the durable prefix of the cut file.
    let ep = McapEpisode::open(&cut_path).expect("open cut file");
    assert!(!ep.is_complete());
    assert_messages(&ep, &durable, "cut");

    // Recovered, the Python reader decodes every durable message, and so does the Rust reader.
    let recovered = dir.join("cut.recovered.mcap");
    let report = recover(&cut_path, &recovered).expect("recover");
    assert_eq!((report.messages, report.metadata), (durable.len(), 1));
    assert!(report.truncation.is_some());
    let text = run_check(&python, &recovered, &expect, &[]);
    assert!(text.contains(&format!("OK: {} messages", durable.len())), "{text}");
    let again = McapEpisode::open(&recovered).expect("open recovered");
    again.check_complete().expect("recovered file is finished");
    assert_messages(&again, &durable, "recovered");
    assert_eq!(again.metadata(), ep.metadata());
}
