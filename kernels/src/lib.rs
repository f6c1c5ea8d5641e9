//! riptide-kernels: host (CPU) kernels of riptide's policies, free of any tensor library.
//!
//! The CPU backends' inference hot path lives here rather than in `riptide-policies` so that it is
//! optimised in the test build too (the policies crate is compiled at opt-level 0 there: it instantiates
//! burn's backends for every model kind) and so that it can be checked against direct loops on its own.
//! `riptide_policies::lerobot::host_unet` builds these layers from a checkpoint's burn modules.

pub mod unet;

pub use unet::{mish_f32, Unet};
