//! What one inference is asked to do: the noise it starts from and the seed for the rest, the step
//! count, consensus candidates, an RTI warm start from the previous chunk, and a step hook that may
//! steer the sample between denoising steps. Plain data, shared by the policy contract, the sampler
//! and RTI (whose algorithms live in [`crate::rti`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::ObservationWindow;
use crate::tensor::HostTensor;

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
    pub warm_start: Option<WarmStart>,
    /// Sample this many chunks per observation and return their medoid (see [`crate::consensus`]);
    /// None or 1 = one sample. Supplied noise then has `batch × candidates` rows.
    pub candidates: Option<usize>,
}

/// One row of a wave ([`crate::Policy::predict_wave`]): one stream's observations and request
/// (a robot of a fleet, a remote query).
pub struct WaveRow<'a> {
    pub obs: &'a crate::spec::ObservationWindow,
    pub req: &'a SampleRequest,
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

/// How the observation jump is measured (over the newest frame's normalised vector features).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JumpMetric {
    /// Largest absolute difference of any element.
    #[default]
    MaxAbs,
    /// Euclidean norm of the difference.
    L2,
}

/// A discrete action dimension (e.g. a gripper) handled by RTI-DP's scaling method (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreteDim {
    /// Index into the action vector.
    pub dim: usize,
    /// The model represents this dimension at `±1/scale` in normalised space (1 = unscaled).
    #[serde(default = "one")]
    pub scale: f32,
}

fn one() -> f32 {
    1.0
}

pub(crate) fn default_max_refine_passes() -> usize {
    8
}

/// RTI warm-start settings (e.g. a `[rti]` table of the daemon's TOML).
///
/// ```toml
/// start_step = 8            # of N = 10 steps: 2 denoiser evaluations
/// noise = false             # true: forward-noise the shifted chunk to level k
/// jump_threshold = 0.25     # cold start if the normalised state moved more (omit: never)
/// jump_metric = "max_abs"   # or "l2"
/// discrete = [{ dim = 6, scale = 10.0 }]
/// deadline_ms = 20.0        # refine until this much of the inference budget is spent (omit: no refinement)
/// max_refine_passes = 8
/// cold_steps = 2            # a cold start (first chunk, fallback) runs a 2-step schedule (omit: all N)
/// warm_steps = 1            # a warm start runs 1 DDIM step from level k straight to the clean chunk (omit: N − k)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtiConfig {
    /// Schedule step index where the warm sample enters, `0..=N`: steps `start_step..N` run, so a warm
    /// start costs `N − start_step` denoiser evaluations (`N` = the schedule's step count).
    pub start_step: usize,
    /// Forward-noise the shifted chunk to level `timesteps[start_step]` (q(x_k | x_0)); default off.
    #[serde(default)]
    pub noise: bool,
    /// Cold start when the observation moved further than this (normalised units); None = never.
    #[serde(default)]
    pub jump_threshold: Option<f32>,
    #[serde(default)]
    pub jump_metric: JumpMetric,
    /// Discrete action dimensions (scaling method).
    #[serde(default)]
    pub discrete: Vec<DiscreteDim>,
    /// Refine until this much time (ms, from the start of `predict`) is spent; None = one pass only.
    #[serde(default)]
    pub deadline_ms: Option<f64>,
    /// Upper bound on refinement passes under a deadline.
    #[serde(default = "default_max_refine_passes")]
    pub max_refine_passes: usize,
    /// Denoising steps of a cold start (no previous chunk, or a fallback): the policy's schedule
    /// re-spaced to this many steps. The warm chunks that follow keep refining the first one, so it
    /// need not be a full-quality sample; None = the full schedule.
    #[serde(default)]
    pub cold_steps: Option<usize>,
    /// Denoiser evaluations of a warm start (and of each refinement pass): the schedule's timesteps
    /// `start_step..N` re-spaced to this many deterministic DDIM steps, the last one straight to the
    /// clean chunk. `start_step = N − 1` alone enters at the schedule's last, nearly clean timestep,
    /// where the denoiser barely re-plans; `start_step = N − 2, warm_steps = 1` costs the same one
    /// evaluation from a noisier level. None = all `N − start_step` steps of the schedule.
    #[serde(default)]
    pub warm_steps: Option<usize>,
}

/// The previous chunk a warm start continues from.
#[derive(Debug, Clone)]
pub struct PreviousChunk {
    /// Its normalised actions, [batch, horizon, action_dim] (`ActionChunk::actions_normalized`).
    pub actions_normalized: HostTensor,
    /// The window it was computed from; only the vector (state / environment) features are read, for
    /// the jump check. None: a jump check (if configured) falls back to a cold start.
    pub observation: Option<ObservationWindow>,
    /// Control periods between that window's newest frame and the new one's (= actions executed since
    /// it was made when one action runs per period): new action `i` continues old action `i + shift`.
    pub shift: usize,
}

impl PreviousChunk {
    /// Keep what a warm start needs from a chunk and its window: the normalised actions and the
    /// window's vector features (images, 5-D tensors, are dropped). `shift` starts at 0.
    pub fn new(actions_normalized: HostTensor, observation: &ObservationWindow) -> Self {
        let features = observation
            .features
            .iter()
            .filter(|(_, t)| t.shape.len() == 3)
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        Self {
            actions_normalized,
            observation: Some(ObservationWindow { features }),
            shift: 0,
        }
    }
}

/// `SampleRequest::warm_start`: the settings and the previous chunk (None = cold start).
#[derive(Debug, Clone)]
pub struct WarmStart {
    pub config: RtiConfig,
    pub previous: Option<PreviousChunk>,
}
