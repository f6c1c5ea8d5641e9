//! The `Policy` contract every policy kind implements: an observation window in, an action chunk out.
//!
//! The contract speaks host tensors so the daemon, the drivers and the tests never depend on which
//! burn backend a policy runs on; `load_policy` picks the backend at run time.

use crate::error::PolicyError;
pub use crate::request::{SampleRequest, StepHook, StepInfo};
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

    /// How actions are normalised (model space ↔ robot units), for hooks that work in robot units
    /// such as controller guidance; None if unknown.
    fn action_norm(&self) -> Option<&crate::normalize::FeatureNorm> {
        None
    }
}
