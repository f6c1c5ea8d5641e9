//! The `Policy` contract every policy kind implements: an observation window in, an action chunk out.
//!
//! The contract speaks host tensors so the daemon, the drivers and the tests never depend on which
//! burn backend a policy runs on; `load_policy` picks the backend at run time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::PolicyError;
use crate::tensor::HostTensor;

/// What a policy consumes, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FeatureKind {
    /// Robot state vector (`observation.state`).
    State,
    /// Environment state vector (`observation.environment_state`).
    Env,
    /// RGB image, [3, H, W] in [0, 1].
    Visual,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputFeature {
    pub name: String,
    pub kind: FeatureKind,
    /// Shape of one frame, e.g. [2] or [3, 96, 96].
    pub shape: Vec<usize>,
}

/// Static facts about a loaded policy that callers need to build windows and schedule chunks.
#[derive(Debug, Clone, Serialize)]
pub struct PolicySpec {
    /// Policy kind, e.g. "diffusion".
    pub kind: String,
    pub inputs: Vec<InputFeature>,
    pub action_dim: usize,
    pub n_obs_steps: usize,
    pub horizon: usize,
    /// Index of the first executable action in the horizon (n_obs_steps − 1 for LeRobot DP).
    pub exec_start: usize,
    pub n_action_steps: usize,
    /// Denoiser evaluations of a default (cold) inference.
    pub default_nfe: usize,
    /// Chunks sampled per cold-start inference unless a request says otherwise (consensus sampling,
    /// [`crate::consensus`]; riptide.json `"sampling": {"candidates": K}`); 1 = one sample.
    pub default_candidates: usize,
    pub num_parameters: usize,
    pub backend: String,
    /// `(action index, observation.state index)`: that action is predicted as an offset from the newest
    /// observed state value and returned absolute (the state added back); empty = absolute actions.
    pub relative_actions: Vec<(usize, usize)>,
}

impl PolicySpec {
    /// Chunks an inference samples: the request's count (checked), else the checkpoint's default where
    /// consensus sampling applies (`plain`: a cold start without a step hook), else one.
    pub fn candidates_for(&self, requested: Option<usize>, plain: bool) -> Result<usize, PolicyError> {
        match requested {
            Some(_) => crate::consensus::candidates(requested),
            None if plain => Ok(self.default_candidates),
            None => Ok(1),
        }
    }

    /// The newest observed `observation.state[s]` of each batch row, for each relative pair:
    /// `[batch][pair]`. Empty rows when the policy predicts absolute actions.
    pub fn relative_reference(&self, obs: &ObservationWindow) -> Result<Vec<Vec<f32>>, PolicyError> {
        if self.relative_actions.is_empty() {
            return Ok(Vec::new());
        }
        let t = obs.features.get("observation.state").ok_or_else(|| {
            PolicyError::Input("relative actions need \"observation.state\" in the observation window".into())
        })?;
        let (b, n, d) = match t.shape[..] {
            [b, n, d] if n > 0 => (b, n, d),
            _ => {
                return Err(PolicyError::Input(format!(
                    "observation.state has shape {:?}, expected [batch, n_obs_steps, dim]",
                    t.shape
                )))
            }
        };
        Ok((0..b)
            .map(|i| {
                let newest = &t.data[(i * n + n - 1) * d..(i * n + n) * d];
                self.relative_actions.iter().map(|&(_, s)| newest[s]).collect()
            })
            .collect())
    }

    /// Turn offsets into absolute actions: [`add_reference`] with this policy's pairs.
    pub fn add_reference(&self, rows: &mut [f32], reference: &[f32]) {
        add_reference(&self.relative_actions, self.action_dim, rows, reference)
    }
}

/// Add one batch row's reference (see [`PolicySpec::relative_reference`]) to the `relative` dims of every
/// action (`action_dim` values) in `rows`.
pub fn add_reference(relative: &[(usize, usize)], action_dim: usize, rows: &mut [f32], reference: &[f32]) {
    for action in rows.chunks_exact_mut(action_dim) {
        for (&(a, _), r) in relative.iter().zip(reference) {
            action[a] += r;
        }
    }
}

/// `n_obs_steps` frames of named features, batched: each tensor is [batch, n_obs_steps, ...frame].
#[derive(Debug, Clone, Default)]
pub struct ObservationWindow {
    pub features: BTreeMap<String, HostTensor>,
}

impl ObservationWindow {
    /// Check names, shapes, batch agreement and finiteness against the policy's inputs; returns the batch size.
    pub fn validate(&self, spec: &PolicySpec) -> Result<usize, PolicyError> {
        let mut batch = None;
        for f in &spec.inputs {
            let t = self.features.get(&f.name).ok_or_else(|| {
                PolicyError::Input(format!(
                    "observation window lacks feature {:?} (the policy needs: {})",
                    f.name,
                    spec.inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let mut want = vec![t.shape.first().copied().unwrap_or(0), spec.n_obs_steps];
            want.extend(&f.shape);
            if t.shape.len() != want.len() || t.shape[1..] != want[1..] {
                return Err(PolicyError::Input(format!(
                    "feature {:?} has shape {:?}; expected [batch, {}, {}]",
                    f.name,
                    t.shape,
                    spec.n_obs_steps,
                    f.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            if let Some(i) = t.first_non_finite() {
                return Err(PolicyError::Input(format!(
                    "feature {:?} holds a non-finite value ({}) at flat index {i}",
                    f.name, t.data[i]
                )));
            }
            match batch {
                None => batch = Some(t.shape[0]),
                Some(b) if b != t.shape[0] => {
                    return Err(PolicyError::Input(format!(
                        "feature {:?} has batch {} but other features have batch {b}",
                        f.name, t.shape[0]
                    )))
                }
                _ => {}
            }
        }
        match batch {
            Some(0) | None => Err(PolicyError::Input("empty observation batch".into())),
            Some(b) => Ok(b),
        }
    }
}

/// Where the sampler's randomness comes from. Anything not supplied is drawn from a seeded RNG in the
/// stream order initial noise, then per-step noise after each denoiser evaluation that needs it.
#[derive(Debug, Clone, Default)]
pub struct SampleRequest {
    /// Seed for noise not supplied below; None = a fresh seed (reported in the chunk metadata).
    pub seed: Option<u64>,
    /// Initial sample x_T, [batch, horizon, action_dim].
    pub initial_noise: Option<HostTensor>,
    /// Variance noise for the K-th denoising step in execution order (0-based), [batch, horizon, action_dim].
    pub step_noise: BTreeMap<usize, HostTensor>,
    /// Override of the checkpoint's number of inference steps.
    pub num_inference_steps: Option<usize>,
    /// RTI warm start from the previous chunk (see [`crate::rti`]); None = cold start. On a warm start
    /// `initial_noise` is the forward noise ε (used only with `RtiConfig::noise`) and `step_noise` is
    /// keyed by the schedule step index.
    pub warm_start: Option<crate::rti::WarmStart>,
    /// Sample this many chunks per observation and return their medoid (see [`crate::consensus`]);
    /// None or 1 = one sample. Supplied noise then has `batch × candidates` rows.
    pub candidates: Option<usize>,
}

/// Passed to a [`StepHook`] after every denoising step.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// 0-based step index in execution order.
    pub index: usize,
    /// Diffusion timestep the denoiser was evaluated at.
    pub t: usize,
    pub n_steps: usize,
    /// Signal level ᾱ of the sample after this step (1 = clean): EADP scales its guidance by it.
    pub alpha_bar: f64,
}

/// Inspects and may modify the (normalised) sample between denoising steps: guidance, inpainting of
/// committed actions, policy composition.
pub trait StepHook {
    fn after_step(&mut self, info: StepInfo, sample: &mut HostTensor);
}

/// Wall time of each stage of one inference, seconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageTimings {
    pub preprocess_s: f64,
    pub encode_s: f64,
    pub denoise_s: f64,
    pub postprocess_s: f64,
}

impl StageTimings {
    pub fn total_s(&self) -> f64 {
        self.preprocess_s + self.encode_s + self.denoise_s + self.postprocess_s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkMeta {
    pub kind: String,
    /// Denoiser evaluations used.
    pub nfe: usize,
    pub seed: u64,
    pub warm_started: bool,
    pub timings: StageTimings,
}

/// A predicted action chunk.
#[derive(Debug, Clone)]
pub struct ActionChunk {
    /// Unnormalised actions, [batch, horizon, action_dim].
    pub actions: HostTensor,
    /// Normalised actions as the sampler produced them (what RTI warm starts reuse).
    pub actions_normalized: HostTensor,
    /// The executable slice is `actions[:, exec_start .. exec_start + n_exec]`.
    pub exec_start: usize,
    pub n_exec: usize,
    pub meta: ChunkMeta,
}

impl ActionChunk {
    /// The actions meant for execution, [batch, n_exec, action_dim].
    pub fn executable(&self) -> HostTensor {
        self.actions.narrow(1, self.exec_start, self.n_exec)
    }
}

/// An observation-conditioned action generator. Object-safe so the daemon can hold any kind on any backend.
pub trait Policy: Send {
    fn spec(&self) -> &PolicySpec;

    fn predict(
        &mut self,
        obs: &ObservationWindow,
        req: &SampleRequest,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<ActionChunk, PolicyError>;

    /// How actions are normalised (model space ↔ robot units), for hooks that work in robot units
    /// such as controller guidance; None if unknown.
    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        None
    }
}
