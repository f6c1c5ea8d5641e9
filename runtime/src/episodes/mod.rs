//! Live recording of zenoh topics to MCAP (`riptide record --topic KEY:TYPE ...`) and playback of a
//! recording onto zenoh at its recorded timing (`riptide play`), so a recorded episode can drive a live
//! daemon. Playback re-stamps header stamps to the wall clock (a live daemon's staleness gate checks
//! them) and maps the recording's `riptide/` prefix onto the target namespace.

pub mod cmd;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use riptide_msgs::mcap::{schema_for_type_name, McapEpisode, McapRecorder};
use riptide_msgs::ros::{Image, JointState, Time};
use riptide_msgs::topics;

use crate::node::now_s;

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

/// Parse `KEY:TYPE` (e.g. `robot/cam:sensor_msgs/msg/Image`).
pub fn parse_topic(spec: &str) -> Result<(String, String)> {
    let (key, ty) = spec.split_once(':').ok_or_else(|| {
        anyhow!("--topic {spec:?}: expected KEY:TYPE, e.g. riptide/observation/image:sensor_msgs/msg/Image")
    })?;
    if schema_for_type_name(ty).is_none() {
        bail!("--topic {spec:?}: unknown message type {ty:?} (riptide records the ROS 2 types it knows: sensor_msgs, geometry_msgs, trajectory_msgs, std_msgs, rosgraph_msgs, riptide_msgs)");
    }
    Ok((key.to_string(), ty.to_string()))
}

/// Record `topics` from `session` into `path` until `stop` is set; returns the message count.
pub async fn record_live(
    session: &zenoh::Session,
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
        subs.push(
            session
                .declare_subscriber(key.clone())
                .callback(move |s| {
                    let t_ns = (now_s() * 1e9) as u64;
                    let bytes = s.payload().to_bytes();
                    let mut r = rec.lock().expect("recorder lock");
                    if r.write_raw(&key2, &ty2, schema, t_ns, &bytes).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await
                .map_err(|e| anyhow!("subscribing to {key}: {e}"))?,
        );
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
pub async fn play(
    session: &zenoh::Session,
    path: &Path,
    namespace: &str,
    rate: f64,
    stop: &crate::node::Shutdown,
) -> Result<u64> {
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let ep = McapEpisode::open(path)?;
    if let Some(t) = ep.truncation() {
        tracing::warn!("{}: {t}; playing what was recorded", path.display());
    }
    let played = |topic: &str| topic.starts_with("riptide/observation/") || topic == "riptide/robot/joint_states";
    let mut pubs = std::collections::HashMap::new();
    for c in ep.channels().iter().filter(|c| played(&c.topic)) {
        let key = format!("{}{}", namespace.trim_end_matches('/'), &c.topic["riptide".len()..]);
        pubs.insert(
            c.topic.clone(),
            session.declare_publisher(key).await.map_err(|e| anyhow!("{e}"))?,
        );
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
        p.put(payload).await.map_err(|e| anyhow!("{e}"))?;
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
