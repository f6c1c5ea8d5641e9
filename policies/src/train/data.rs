//! Training data: recorded episodes in memory, the LeRobot windowing that turns them into samples, and
//! normalisation stats computed from the frames.
//!
//! A sample is the window for "current step" t of an episode: observations at t−n_obs+1 ..= t and
//! actions at t−n_obs+1 .. t−n_obs+horizon (the chunk starts with the first observed frame, as
//! LeRobot's `delta_timestamps` for diffusion do). Indices outside the episode repeat the edge frame;
//! such actions are flagged in `action_is_pad` so the loss can ignore them.

use std::collections::BTreeMap;

use crate::error::PolicyError;
use crate::normalize::{FeatureNorm, NormMode, StatsLayout};
use crate::policy::{FeatureKind, InputFeature};
use crate::tensor::HostTensor;

/// How episodes are cut into samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub n_obs_steps: usize,
    pub horizon: usize,
    /// Windows whose current step lies in an episode's last N frames are skipped (LeRobot's
    /// `drop_n_last_frames`: their chunks would be mostly padding).
    pub drop_n_last_frames: usize,
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Per input feature (in the set's feature order): `n_obs_steps` frames, row-major
    /// [n_obs_steps, ...frame shape].
    pub obs: Vec<Vec<f32>>,
    /// [horizon, action_dim], row-major.
    pub action: Vec<f32>,
    /// One flag per horizon step: true where the action was copied from the episode edge.
    pub action_is_pad: Vec<bool>,
}

/// One recorded episode, stored per feature as contiguous frames.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Per feature: steps × frame_len values.
    obs: Vec<Vec<f32>>,
    /// steps × action_dim values.
    actions: Vec<f32>,
    len: usize,
}

impl Episode {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Per-element (vectors) or per-channel (images) statistics of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    /// Shape the stats are stored with in LeRobot's processor files: [d] for vectors, [3, 1, 1] for images.
    pub shape: Vec<usize>,
}

impl FeatureStats {
    /// The stats as LeRobot's processor files name them, "<feature>.<stat>".
    pub fn tensors(&self, feature: &str) -> BTreeMap<String, HostTensor> {
        [
            ("mean", &self.mean),
            ("std", &self.std),
            ("min", &self.min),
            ("max", &self.max),
        ]
        .into_iter()
        .map(|(k, v)| {
            (
                format!("{feature}.{k}"),
                HostTensor {
                    shape: self.shape.clone(),
                    data: v.clone(),
                },
            )
        })
        .collect()
    }

    /// The normaliser inference builds from these stats (same f32 values, same formulas).
    pub fn norm(&self, feature: &str, mode: NormMode) -> Result<FeatureNorm, PolicyError> {
        let stats: BTreeMap<String, HostTensor> = self
            .tensors("")
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches('.').to_string(), v))
            .collect();
        FeatureNorm::from_stats(feature, mode, &stats, StatsLayout::Processor, self.mean.len())
    }
}

/// Recorded episodes with their feature layout: what a recorder fills and the trainer reads.
#[derive(Debug, Clone)]
pub struct TrainingSet {
    features: Vec<InputFeature>,
    action_dim: usize,
    episodes: Vec<Episode>,
    /// (action dim, `observation.state` index) pairs trained relative to the state, and the position of
    /// `observation.state` among the features: see [`TrainingSet::set_relative_actions`].
    relative: Vec<(usize, usize)>,
    state_feature: usize,
}

fn frame_len(f: &InputFeature) -> usize {
    f.shape.iter().product()
}

impl TrainingSet {
    /// An empty set. LeRobot's diffusion policy needs `observation.state` (STATE) and an image or
    /// `observation.environment_state` (ENV); names follow LeRobot so the checkpoint loads there too.
    pub fn new(features: Vec<InputFeature>, action_dim: usize) -> Result<Self, PolicyError> {
        let err = |m: String| Err(PolicyError::Input(format!("training set: {m}")));
        if action_dim == 0 {
            return err("action_dim must be > 0".into());
        }
        for f in &features {
            match f.kind {
                FeatureKind::State if f.name != "observation.state" => {
                    return err(format!(
                        "the STATE feature is called {:?}; LeRobot reads it as \"observation.state\"",
                        f.name
                    ))
                }
                FeatureKind::Env if f.name != "observation.environment_state" => {
                    return err(format!(
                        "the ENV feature is called {:?}; LeRobot reads it as \"observation.environment_state\"",
                        f.name
                    ))
                }
                FeatureKind::Visual if f.shape.len() != 3 || f.shape[0] != 3 => {
                    return err(format!(
                        "camera {:?} must have shape [3, H, W], got {:?}",
                        f.name, f.shape
                    ))
                }
                FeatureKind::State | FeatureKind::Env if f.shape.len() != 1 || f.shape[0] == 0 => {
                    return err(format!(
                        "vector feature {:?} must have shape [d], got {:?}",
                        f.name, f.shape
                    ))
                }
                _ => {}
            }
        }
        if !features.iter().any(|f| f.kind == FeatureKind::State) {
            return err("LeRobot's diffusion policy needs an \"observation.state\" (STATE) input".into());
        }
        if !features.iter().any(|f| f.kind != FeatureKind::State) {
            return err(
                "LeRobot's diffusion policy needs an image or \"observation.environment_state\" input besides the state"
                    .into(),
            );
        }
        let mut names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return err("feature names must be unique".into());
        }
        Ok(Self {
            features,
            action_dim,
            episodes: Vec::new(),
            relative: Vec::new(),
            state_feature: 0,
        })
    }

    /// Train action dim `a` as its offset from `observation.state[s]` of the window's current (newest
    /// observed) frame, for each `[a, s]`. A position target far from the origin then becomes a small
    /// offset the min–max normalisation resolves finely; inference adds the state back
    /// (`DiffusionPolicy::with_relative_actions`).
    pub fn set_relative_actions(&mut self, dims: &[[usize; 2]]) -> Result<(), PolicyError> {
        let err = |m: String| Err(PolicyError::Config(format!("data.relative_actions: {m}")));
        let Some(state_feature) = self.features.iter().position(|f| f.name == "observation.state") else {
            return err("needs an \"observation.state\" input".into());
        };
        let state_dim = frame_len(&self.features[state_feature]);
        for (i, &[a, s]) in dims.iter().enumerate() {
            if a >= self.action_dim {
                return err(format!(
                    "[{a}, {s}]: action index {a} is out of range (actions have {} values)",
                    self.action_dim
                ));
            }
            if s >= state_dim {
                return err(format!(
                    "[{a}, {s}]: state index {s} is out of range (observation.state has {state_dim} values)"
                ));
            }
            if dims[..i].iter().any(|p| p[0] == a) {
                return err(format!("action index {a} is listed twice"));
            }
        }
        self.relative = dims.iter().map(|&[a, s]| (a, s)).collect();
        self.state_feature = state_feature;
        Ok(())
    }

    pub fn features(&self) -> &[InputFeature] {
        &self.features
    }

    pub fn action_dim(&self) -> usize {
        self.action_dim
    }

    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    pub fn num_frames(&self) -> usize {
        self.episodes.iter().map(|e| e.len).sum()
    }

    /// Add an episode: `obs[feature][step]` is one frame (vectors: d values; images: [3, H, W] in
    /// [0, 1], row-major), `actions[step]` the action taken at that step.
    pub fn push_episode(&mut self, obs: &[Vec<Vec<f32>>], actions: &[Vec<f32>]) -> Result<(), PolicyError> {
        let ep = self.episode_from_steps(obs, actions)?;
        self.episodes.push(ep);
        Ok(())
    }

    fn episode_from_steps(&self, obs: &[Vec<Vec<f32>>], actions: &[Vec<f32>]) -> Result<Episode, PolicyError> {
        let err = |m: String| Err(PolicyError::Input(format!("episode: {m}")));
        let len = actions.len();
        if len == 0 {
            return err("no steps".into());
        }
        if obs.len() != self.features.len() {
            return err(format!(
                "{} observation features given, the set has {}",
                obs.len(),
                self.features.len()
            ));
        }
        let mut flat_obs = Vec::with_capacity(obs.len());
        for (f, frames) in self.features.iter().zip(obs) {
            if frames.len() != len {
                return err(format!(
                    "feature {:?} has {} frames for {len} actions",
                    f.name,
                    frames.len()
                ));
            }
            let n = frame_len(f);
            let mut flat = Vec::with_capacity(n * len);
            for (t, fr) in frames.iter().enumerate() {
                if fr.len() != n {
                    return err(format!(
                        "feature {:?} frame {t} has {} values, expected {n} (shape {:?})",
                        f.name,
                        fr.len(),
                        f.shape
                    ));
                }
                if let Some(i) = fr.iter().position(|v| !v.is_finite()) {
                    return err(format!("feature {:?} frame {t} has a non-finite value at {i}", f.name));
                }
                flat.extend_from_slice(fr);
            }
            flat_obs.push(flat);
        }
        let mut flat_act = Vec::with_capacity(len * self.action_dim);
        for (t, a) in actions.iter().enumerate() {
            if a.len() != self.action_dim {
                return err(format!(
                    "action {t} has {} values, expected {}",
                    a.len(),
                    self.action_dim
                ));
            }
            if a.iter().any(|v| !v.is_finite()) {
                return err(format!("action {t} has a non-finite value"));
            }
            flat_act.extend_from_slice(a);
        }
        Ok(Episode {
            obs: flat_obs,
            actions: flat_act,
            len,
        })
    }

    /// (episode, current step) of every window, episode by episode.
    pub fn windows(&self, spec: &WindowSpec) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (e, ep) in self.episodes.iter().enumerate() {
            for t in 0..ep.len.saturating_sub(spec.drop_n_last_frames) {
                out.push((e, t));
            }
        }
        out
    }

    /// The sample whose current step is `t` of episode `episode`.
    pub fn sample(&self, episode: usize, t: usize, spec: &WindowSpec) -> Sample {
        let ep = &self.episodes[episode];
        let clamp = |i: isize| i.clamp(0, ep.len as isize - 1) as usize;
        let first = t as isize - spec.n_obs_steps as isize + 1;
        let obs = self
            .features
            .iter()
            .zip(&ep.obs)
            .map(|(f, data)| {
                let n = frame_len(f);
                let mut v = Vec::with_capacity(n * spec.n_obs_steps);
                for k in 0..spec.n_obs_steps as isize {
                    let s = clamp(first + k);
                    v.extend_from_slice(&data[s * n..(s + 1) * n]);
                }
                v
            })
            .collect();
        let d = self.action_dim;
        let mut action = Vec::with_capacity(spec.horizon * d);
        let mut action_is_pad = Vec::with_capacity(spec.horizon);
        for k in 0..spec.horizon as isize {
            let i = first + k;
            let s = clamp(i);
            action.extend_from_slice(&ep.actions[s * d..(s + 1) * d]);
            action_is_pad.push(i < 0 || i >= ep.len as isize);
        }
        if !self.relative.is_empty() {
            let si = self.state_feature;
            let n = frame_len(&self.features[si]);
            let cur = clamp(t as isize);
            let state = &ep.obs[si][cur * n..(cur + 1) * n];
            for row in action.chunks_exact_mut(d) {
                for &(a, s) in &self.relative {
                    row[a] -= state[s];
                }
            }
        }
        Sample {
            obs,
            action,
            action_is_pad,
        }
    }

    /// [`Self::stats`], with the "action" stats taken over the chunks training sees when actions are
    /// relative (every window of `spec`, padding included): offsets from the current state, not positions.
    pub fn stats_for(&self, spec: &WindowSpec) -> Result<BTreeMap<String, FeatureStats>, PolicyError> {
        let mut out = self.stats()?;
        if !self.relative.is_empty() {
            let chunks: Vec<Vec<f32>> = self
                .windows(spec)
                .into_iter()
                .map(|(e, t)| self.sample(e, t, spec).action)
                .collect();
            let st = channel_stats(
                chunks.iter().map(Vec::as_slice),
                self.action_dim,
                1,
                vec![self.action_dim],
            );
            out.insert("action".into(), st);
        }
        Ok(out)
    }

    /// Stats over every frame of every episode, per feature and for "action" (f64 accumulation,
    /// population std as numpy's default).
    pub fn stats(&self) -> Result<BTreeMap<String, FeatureStats>, PolicyError> {
        if self.episodes.is_empty() {
            return Err(PolicyError::Input("training set: no episodes".into()));
        }
        let mut out = BTreeMap::new();
        for (fi, f) in self.features.iter().enumerate() {
            let (channels, inner, shape) = match f.kind {
                FeatureKind::Visual => (3, f.shape[1] * f.shape[2], vec![3, 1, 1]),
                _ => (f.shape[0], 1, vec![f.shape[0]]),
            };
            let st = channel_stats(
                self.episodes.iter().map(|e| e.obs[fi].as_slice()),
                channels,
                inner,
                shape,
            );
            out.insert(f.name.clone(), st);
        }
        let st = channel_stats(
            self.episodes.iter().map(|e| e.actions.as_slice()),
            self.action_dim,
            1,
            vec![self.action_dim],
        );
        out.insert("action".into(), st);
        Ok(out)
    }

    /// Sum and count of every stored value: a cheap identity check for resuming on the same data.
    pub fn fingerprint(&self) -> (usize, usize, f64) {
        let mut sum = 0.0f64;
        for e in &self.episodes {
            for o in &e.obs {
                sum += o.iter().map(|v| *v as f64).sum::<f64>();
            }
            sum += e.actions.iter().map(|v| *v as f64).sum::<f64>();
        }
        (self.episodes.len(), self.num_frames(), sum)
    }
}

fn channel_stats<'a>(
    chunks: impl Iterator<Item = &'a [f32]>,
    channels: usize,
    inner: usize,
    shape: Vec<usize>,
) -> FeatureStats {
    let mut sum = vec![0.0f64; channels];
    let mut sq = vec![0.0f64; channels];
    let mut min = vec![f32::INFINITY; channels];
    let mut max = vec![f32::NEG_INFINITY; channels];
    let mut count = 0usize;
    for data in chunks {
        for (i, &v) in data.iter().enumerate() {
            let c = (i / inner) % channels;
            sum[c] += v as f64;
            sq[c] += (v as f64) * (v as f64);
            min[c] = min[c].min(v);
            max[c] = max[c].max(v);
        }
        count += data.len() / channels;
    }
    let n = count.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq
        .iter()
        .zip(&mean)
        .map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32)
        .collect();
    FeatureStats {
        mean: mean.iter().map(|m| *m as f32).collect(),
        std,
        min,
        max,
        shape,
    }
}

/// Every window of one episode as owned samples (`obs[feature][step]`, `actions[step]`), for callers
/// that want the samples themselves; the trainer slices [`TrainingSet`] episodes lazily instead.
pub fn samples_from_episode(
    features: &[InputFeature],
    obs: &[Vec<Vec<f32>>],
    actions: &[Vec<f32>],
    spec: &WindowSpec,
) -> Result<Vec<Sample>, PolicyError> {
    let action_dim = actions.first().map(Vec::len).unwrap_or(0);
    let set = TrainingSet {
        features: features.to_vec(),
        action_dim,
        episodes: Vec::new(),
        relative: Vec::new(),
        state_feature: 0,
    };
    let ep = set.episode_from_steps(obs, actions)?;
    let set = TrainingSet {
        episodes: vec![ep],
        ..set
    };
    Ok(set
        .windows(spec)
        .into_iter()
        .map(|(e, t)| set.sample(e, t, spec))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats() -> Vec<InputFeature> {
        vec![
            InputFeature {
                name: "observation.state".into(),
                kind: FeatureKind::State,
                shape: vec![1],
            },
            InputFeature {
                name: "observation.environment_state".into(),
                kind: FeatureKind::Env,
                shape: vec![1],
            },
        ]
    }

    #[test]
    fn windows_pad_by_repeating_edges_and_flag_padded_actions() {
        let n = 5;
        let obs = vec![
            (0..n).map(|t| vec![t as f32]).collect::<Vec<_>>(),
            (0..n).map(|t| vec![10.0 + t as f32]).collect(),
        ];
        let actions: Vec<Vec<f32>> = (0..n).map(|t| vec![100.0 + t as f32]).collect();
        let spec = WindowSpec {
            n_obs_steps: 2,
            horizon: 4,
            drop_n_last_frames: 0,
        };
        let s = samples_from_episode(&feats(), &obs, &actions, &spec).unwrap();
        assert_eq!(s.len(), 5);
        // t = 0: previous frame repeats frame 0; actions start one step before t.
        assert_eq!(s[0].obs[0], vec![0.0, 0.0]);
        assert_eq!(s[0].obs[1], vec![10.0, 10.0]);
        assert_eq!(s[0].action, vec![100.0, 100.0, 101.0, 102.0]);
        assert_eq!(s[0].action_is_pad, vec![true, false, false, false]);
        // t = 2: a window fully inside.
        assert_eq!(s[2].obs[0], vec![1.0, 2.0]);
        assert_eq!(s[2].action, vec![101.0, 102.0, 103.0, 104.0]);
        assert!(s[2].action_is_pad.iter().all(|p| !p));
        // t = 4 (last): the tail repeats the last action.
        assert_eq!(s[4].action, vec![103.0, 104.0, 104.0, 104.0]);
        assert_eq!(s[4].action_is_pad, vec![false, false, true, true]);
        let dropped = WindowSpec {
            drop_n_last_frames: 2,
            ..spec
        };
        assert_eq!(
            samples_from_episode(&feats(), &obs, &actions, &dropped).unwrap().len(),
            3
        );
    }

    #[test]
    fn stats_are_per_channel_and_bad_episodes_are_rejected() {
        let mut set = TrainingSet::new(feats(), 1).unwrap();
        set.push_episode(
            &[vec![vec![1.0], vec![3.0]], vec![vec![0.0], vec![0.0]]],
            &[vec![2.0], vec![4.0]],
        )
        .unwrap();
        let st = set.stats().unwrap();
        assert_eq!(st["observation.state"].mean, vec![2.0]);
        assert_eq!(st["observation.state"].std, vec![1.0]);
        assert_eq!(st["action"].min, vec![2.0]);
        assert_eq!(st["action"].max, vec![4.0]);
        let e = set
            .push_episode(&[vec![vec![1.0]], vec![vec![0.0]]], &[vec![f32::NAN]])
            .unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let e = TrainingSet::new(feats()[..1].to_vec(), 1).unwrap_err();
        assert!(e.to_string().contains("environment_state"), "{e}");
    }

    #[test]
    fn relative_actions_are_offsets_from_the_current_state() {
        // Two action dims: dim 0 relative to state 0, dim 1 absolute.
        let n = 4;
        let obs = vec![
            (0..n).map(|t| vec![10.0 * t as f32]).collect::<Vec<_>>(),
            (0..n).map(|_| vec![0.0]).collect(),
        ];
        let actions: Vec<Vec<f32>> = (0..n).map(|t| vec![10.0 * t as f32 + 1.0, t as f32]).collect();
        let mut set = TrainingSet::new(feats(), 2).unwrap();
        set.push_episode(&obs, &actions).unwrap();
        let spec = WindowSpec {
            n_obs_steps: 2,
            horizon: 3,
            drop_n_last_frames: 0,
        };
        let absolute = set.sample(0, 2, &spec).action;
        assert_eq!(absolute, vec![11.0, 1.0, 21.0, 2.0, 31.0, 3.0]);
        set.set_relative_actions(&[[0, 0]]).unwrap();
        // t = 2: the current state is 20; actions at t−1..=t+1.
        assert_eq!(set.sample(0, 2, &spec).action, vec![-9.0, 1.0, 1.0, 2.0, 11.0, 3.0]);
        // Action stats follow the offsets the network sees, the state's stats are unchanged.
        let st = set.stats_for(&spec).unwrap();
        let windows: Vec<f32> = (0..n).flat_map(|t| set.sample(0, t, &spec).action).step_by(2).collect();
        let min = windows.iter().cloned().fold(f32::INFINITY, f32::min);
        let max = windows.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((st["action"].min[0], st["action"].max[0]), (min, max));
        assert_eq!((st["action"].min[0], st["action"].max[0]), (-9.0, 11.0));
        assert_eq!(st["action"].max[1], 3.0);
        assert_eq!(st["observation.state"], set.stats().unwrap()["observation.state"]);
        for (dims, want) in [
            (vec![[2, 0]], "action index 2"),
            (vec![[0, 1]], "state index 1"),
            (vec![[0, 0], [0, 0]], "twice"),
        ] {
            let e = set.set_relative_actions(&dims).unwrap_err().to_string();
            assert!(e.contains("data.relative_actions") && e.contains(want), "{e}");
        }
    }
}
