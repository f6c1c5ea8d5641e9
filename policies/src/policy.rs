//! The `Policy` contract every policy kind implements: an observation window in, an action chunk out.
//!
//! The contract speaks host tensors so the daemon, the drivers and the tests never depend on which
//! burn backend a policy runs on; `load_policy` picks the backend at run time.

use crate::error::PolicyError;
pub use crate::request::{SampleRequest, StepHook, StepInfo, WaveRow};
pub use crate::spec::{
    add_reference, ActionChunk, ChunkMeta, FeatureKind, InputFeature, ObservationWindow, PolicyKind, PolicySpec,
    StageTimings,
};

/// An observation-conditioned action generator. Object-safe so the daemon can hold any kind on any backend.
pub trait Policy: Send {
    fn spec(&self) -> &PolicySpec;

    fn predict(
        &mut self,
        obs: &ObservationWindow,
        req: &SampleRequest,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<ActionChunk, PolicyError>;

    /// One chunk per row of a wave (several streams due together), each the chunk [`Policy::predict`]
    /// gives for that row alone. Kinds that can run the rows as one batch (one denoiser pass per step);
    /// this default runs them one by one.
    fn predict_wave(&mut self, rows: &[WaveRow<'_>]) -> Vec<Result<ActionChunk, PolicyError>> {
        rows.iter().map(|r| self.predict(r.obs, r.req, None)).collect()
    }

    /// How actions are normalised (model space ↔ robot units), for hooks that work in robot units
    /// such as controller guidance; None if unknown.
    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        None
    }
}
