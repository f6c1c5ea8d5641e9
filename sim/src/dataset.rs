//! Recorded episodes (MCAP, as written by [`crate::record`] or `riptide record --topics`) back to
//! per-step arrays: what the trainer turns into observation windows and action horizons, and what
//! open-loop replay feeds through a policy.
//!
//! Step k is the command on `riptide/action` stamped t_k together with the observations stamped t_k
//! (header stamps; a step whose observations are incomplete is an error that names the time and topic).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use riptide_msgs::mcap::{McapEpisode, McapError};
use riptide_msgs::ros::{Image, JointState};

use crate::render::RgbImage;
use riptide_msgs::topics::default_ns as topics;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Mcap(#[from] McapError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{dir}: no .mcap files")]
    Empty { dir: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One recorded episode as per-step arrays (index k = step k).
#[derive(Debug, Clone)]
pub struct EpisodeData {
    pub path: PathBuf,
    /// From the `riptide.episode` metadata when present.
    pub env: Option<String>,
    pub seed: Option<u64>,
    pub fps: f64,
    pub success: Option<bool>,
    /// Step times, seconds.
    pub times_s: Vec<f64>,
    /// `observation.state` per step.
    pub state: Vec<Vec<f32>>,
    /// `observation.environment_state` per step (empty when not recorded).
    pub env_state: Vec<Vec<f32>>,
    /// `observation.image` per step (empty when not recorded).
    pub images: Vec<RgbImage>,
    /// Command per step: the one executed, or in a perturbed recording the expert's (executed plus an
    /// offset, see [`crate::record::Perturbation`]).
    pub actions: Vec<Vec<f32>>,
}

impl EpisodeData {
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Per-step vectors of a LeRobot feature name (`observation.state`, `observation.environment_state`).
    pub fn vectors(&self, feature: &str) -> Option<&[Vec<f32>]> {
        match feature {
            "observation.state" => Some(&self.state),
            "observation.environment_state" if !self.env_state.is_empty() => Some(&self.env_state),
            _ => None,
        }
    }
}

fn key(t_s: f64) -> i64 {
    (t_s * 1e6).round() as i64
}

fn vectors(ep: &McapEpisode, topic: &str) -> Result<BTreeMap<i64, Vec<f32>>, McapError> {
    if ep.channel(topic).is_none() {
        return Ok(BTreeMap::new());
    }
    Ok(ep
        .decode_topic::<JointState>(topic)?
        .into_iter()
        .map(|(_, js)| {
            (
                key(js.header.stamp.as_secs_f64()),
                js.position.iter().map(|v| *v as f32).collect(),
            )
        })
        .collect())
}

/// Read one episode.
pub fn read_episode(path: &Path) -> Result<EpisodeData, DatasetError> {
    let ep = McapEpisode::open(path)?;
    let invalid = |message: String| DatasetError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let meta = ep.metadata_named("riptide.episode");
    let result = ep.metadata_named("riptide.result");
    let actions = vectors(&ep, topics::ACTION)?;
    if actions.is_empty() {
        return Err(invalid(format!("no messages on {}", topics::ACTION)));
    }
    let state = vectors(&ep, topics::OBSERVATION_STATE)?;
    let env_state = vectors(&ep, topics::OBSERVATION_ENVIRONMENT_STATE)?;
    let images: BTreeMap<i64, RgbImage> = if ep.channel(topics::OBSERVATION_IMAGE).is_some() {
        ep.decode_topic::<Image>(topics::OBSERVATION_IMAGE)?
            .into_iter()
            .filter(|(_, im)| im.encoding == "rgb8" && im.data.len() == (3 * im.width * im.height) as usize)
            .map(|(_, im)| {
                (
                    key(im.header.stamp.as_secs_f64()),
                    RgbImage {
                        width: im.width,
                        height: im.height,
                        data: im.data,
                    },
                )
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut d = EpisodeData {
        path: path.to_path_buf(),
        env: meta.and_then(|m| m.get("env").cloned()),
        seed: meta.and_then(|m| m.get("seed")).and_then(|s| s.parse().ok()),
        fps: meta
            .and_then(|m| m.get("fps"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0),
        success: result.and_then(|m| m.get("success")).and_then(|s| s.parse().ok()),
        times_s: vec![],
        state: vec![],
        env_state: vec![],
        images: vec![],
        actions: vec![],
    };
    for (k, a) in &actions {
        let t = *k as f64 / 1e6;
        let s = state.get(k).ok_or_else(|| {
            invalid(format!(
                "no {} at t = {t:.3} s (the action's stamp)",
                topics::OBSERVATION_STATE
            ))
        })?;
        d.state.push(s.clone());
        if !env_state.is_empty() {
            let e = env_state
                .get(k)
                .ok_or_else(|| invalid(format!("no {} at t = {t:.3} s", topics::OBSERVATION_ENVIRONMENT_STATE)))?;
            d.env_state.push(e.clone());
        }
        if !images.is_empty() {
            let im = images
                .get(k)
                .ok_or_else(|| invalid(format!("no {} at t = {t:.3} s", topics::OBSERVATION_IMAGE)))?;
            d.images.push(im.clone());
        }
        d.times_s.push(t);
        d.actions.push(a.clone());
    }
    if d.fps <= 0.0 && d.times_s.len() > 1 {
        d.fps = 1.0 / (d.times_s[1] - d.times_s[0]);
    }
    Ok(d)
}

/// Every `*.mcap` in `dir`, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<EpisodeData>, DatasetError> {
    let io = |source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "mcap"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(DatasetError::Empty { dir: dir.to_path_buf() });
    }
    paths.iter().map(|p| read_episode(p)).collect()
}
