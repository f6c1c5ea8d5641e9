//! Live recording of zenoh topics to MCAP (`riptide record --topic KEY:TYPE ...`) and playback of a
//! recording onto zenoh at its recorded timing (`riptide play`), so a recorded episode can drive a live
//! daemon. Playback re-stamps header stamps to the wall clock (a live daemon's staleness gate checks
//! them) and maps the recording's `riptide/` prefix onto the target namespace.
//!
//! In ROS 2 mode topics are ROS names (`/riptide/action/chunk:trajectory_msgs/msg/JointTrajectory`), received
//! on the rmw_zenoh graph, and the MCAP channels carry those names, as `ros2 bag record` writes them.

pub mod cmd;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use riptide_msgs::mcap::{schema_for_type_name, McapEpisode, McapRecorder};
use riptide_msgs::ros::{Image, JointState, Time};
use riptide_msgs::topics;

use crate::node::{now_s, Graph, RosType, Topic};

/// The topics riptide itself uses, with their types, under namespace `ns`.
pub fn default_topics(ns: &str) -> Vec<(String, String)> {
    [
        (topics::OBSERVATION_STATE, "sensor_msgs/msg/JointState"),
        (topics::OBSERVATION_ENVIRONMENT_STATE, "sensor_msgs/msg/JointState"),
        (topics::OBSERVATION_IMAGE, "sensor_msgs/msg/Image"),
        (topics::ACTION, "sensor_msgs/msg/JointState"),
        (topics::ACTION_CHUNK, "trajectory_msgs/msg/JointTrajectory"),
        (topics::ACTION_CHUNK_META, "riptide_msgs/msg/ChunkMeta"),
        (topics::DRIVER_QUEUE, "std_msgs/msg/Float32MultiArray"),
        (topics::CLOCK, "rosgraph_msgs/msg/Clock"),
    ]
    .iter()
    .map(|(k, t)| (format!("{ns}/{k}"), t.to_string()))
    .collect()
}

/// The same topics by their ROS 2 names (what a ROS 2 recording's channels are called).
pub fn default_ros_topics(ns: &str) -> Result<Vec<(String, String)>> {
    default_topics(ns)
        .into_iter()
        .map(|(k, t)| Ok((Topic::from(k).ros_name()?, t)))
        .collect()
}

/// Parse `KEY:TYPE` (e.g. `robot/cam:sensor_msgs/msg/Image`), or `NAME:TYPE` with a ROS 2 name
/// (`/camera/image_raw:sensor_msgs/msg/Image`).
pub fn parse_topic(spec: &str) -> Result<(String, String)> {
    let (key, ty) = spec.split_once(':').ok_or_else(|| {
        anyhow!("--topic {spec:?}: expected KEY:TYPE, e.g. riptide/observation/image:sensor_msgs/msg/Image")
    })?;
    if schema_for_type_name(ty).is_none() {
        bail!("--topic {spec:?}: unknown message type {ty:?} (riptide records the ROS 2 types it knows: sensor_msgs, geometry_msgs, trajectory_msgs, std_msgs, rosgraph_msgs, riptide_msgs)");
    }
    Ok((key.to_string(), ty.to_string()))
}

/// Record `topics` (zenoh keys; ROS 2 names when `graph` is in ROS 2 mode, which name the channels too)
/// from `graph` into `path` until `stop` is set; returns the message count.
pub async fn record_live(
    graph: &Graph,
    topics: &[(String, String)],
    path: &Path,
    stop: impl std::future::Future<Output = ()>,
) -> Result<u64> {
    let rec = Arc::new(Mutex::new(McapRecorder::create(path)?));
    let errors = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for (key, ty) in topics {
        let schema = schema_for_type_name(ty).ok_or_else(|| anyhow!("unknown type {ty}"))?;
        let (rec, errors, key2, ty2) = (rec.clone(), errors.clone(), key.clone(), ty.clone());
        let topic = match graph.ros2() {
            Some(_) => {
                riptide_msgs::ros2::validate_topic_name(key).map_err(|e| anyhow!("--topic {key}: {e}"))?;
                Topic::with_ros_name(key.trim_start_matches('/'), Some(key.clone()))
            }
            None => Topic::from(key),
        };
        subs.push(graph.subscribe(topic, &RosType::named(ty)?, move |s| {
            let t_ns = (now_s() * 1e9) as u64;
            let bytes = s.payload().to_bytes();
            let mut r = rec.lock().expect("recorder lock");
            if r.write_raw(&key2, &ty2, schema, t_ns, &bytes).is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    stop.await;
    drop(subs);
    let rec = Arc::try_unwrap(rec)
        .map_err(|_| anyhow!("recorder still in use"))?
        .into_inner()
        .map_err(|_| anyhow!("recorder lock poisoned"))?;
    let n = rec.message_count();
    rec.finish()?;
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        tracing::warn!("{e} messages could not be recorded");
    }
    Ok(n)
}

fn restamp(type_name: &str, data: &[u8], stamp_s: f64) -> Option<Vec<u8>> {
    let t = Time::from_secs_f64(stamp_s);
    if type_name.ends_with("JointState") {
        let mut m: JointState = riptide_msgs::decode(data).ok()?;
        m.header.stamp = t;
        riptide_msgs::encode(&m).ok()
    } else if type_name.ends_with("Image") {
        let mut m: Image = riptide_msgs::decode(data).ok()?;
        m.header.stamp = t;
        riptide_msgs::encode(&m).ok()
    } else {
        None
    }
}

/// Publish the observation topics of `path` onto zenoh at their recorded timing (÷ `rate`).
/// Topics under `riptide/observation/` are played (and `riptide/robot/joint_states`); the recording's
/// `riptide` prefix becomes `namespace`. Returns the number of messages published.
pub async fn play(graph: &Graph, path: &Path, namespace: &str, rate: f64, stop: &crate::node::Shutdown) -> Result<u64> {
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let ep = McapEpisode::open(path)?;
    if let Some(t) = ep.truncation() {
        tracing::warn!("{}: {t}; playing what was recorded", path.display());
    }
    // Channels named by key (`riptide/…`) or by ROS 2 name (`/riptide/…`).
    let relative = |topic: &str| {
        topic
            .trim_start_matches('/')
            .strip_prefix("riptide/")
            .map(str::to_string)
    };
    let played =
        |topic: &str| relative(topic).is_some_and(|r| r.starts_with("observation/") || r == topics::ROBOT_JOINT_STATES);
    let mut pubs = std::collections::HashMap::new();
    for c in ep.channels().iter().filter(|c| played(&c.topic)) {
        let rest = relative(&c.topic).unwrap_or_default();
        let key = format!("{}/{rest}", namespace.trim_end_matches('/'));
        let ty = RosType::named(&c.type_name).map_err(|e| anyhow!("channel {}: {e}", c.topic))?;
        pubs.insert(c.topic.clone(), graph.publisher(key, &ty)?);
    }
    if pubs.is_empty() {
        bail!("{}: no riptide/observation/* topics to play", path.display());
    }
    let mut first: Option<u64> = None;
    let t_wall0 = Instant::now();
    let t_stamp0 = now_s();
    let mut n = 0;
    for m in ep.messages() {
        if stop.is_triggered() {
            break;
        }
        let Some(p) = pubs.get(m.topic) else { continue };
        let t0 = *first.get_or_insert(m.log_time_ns);
        let offset_s = (m.log_time_ns - t0) as f64 / 1e9 / rate;
        let due = t_wall0 + Duration::from_secs_f64(offset_s);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(d).await;
        }
        let payload = restamp(m.type_name, m.data, t_stamp0 + offset_s).unwrap_or_else(|| m.data.to_vec());
        p.put(payload)?;
        n += 1;
    }
    Ok(n)
}

/// MCAP files from a list of files and folders (sorted per folder).
pub fn mcap_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "mcap"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        anyhow::bail!("no .mcap episodes in {paths:?}");
    }
    Ok(out)
}
