//! The `Policy` contract every policy kind implements: an observation window in, an action chunk out.
//!
//! The contract speaks host tensors so the daemon, the drivers and the tests never depend on which
//! burn backend a policy runs on; `load_policy` picks the backend at run time.

use std::collections::BTreeMap;

use crate::error::PolicyError;
pub use crate::spec::{
    add_reference, ActionChunk, ChunkMeta, FeatureKind, InputFeature, ObservationWindow, PolicyKind, PolicySpec,
    StageTimings,
};
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
