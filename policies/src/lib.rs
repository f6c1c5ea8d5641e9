//! riptide-policies: the `Policy` contract, the shared sampler loop, DDPM/DDIM schedules, feature
//! normalisation, and the policy models (LeRobot's Diffusion Policy first) with their checkpoint
//! loaders. Everything above this crate (daemon, drivers, sim, CLI) talks to policies through
//! [`Policy`] and host tensors, so the backend (CPU or CUDA) is a run-time choice.

// serde_json::json! for the LeRobot config.json the trainer writes nests deeper than the default limit.
#![recursion_limit = "256"]
// `!(x > 0.0)` is how this crate rejects NaN together with out-of-range values.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod backend;
pub mod consensus;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cube_common;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod device_guard;
pub mod error;
pub mod kernel_cache;
pub mod lerobot;
pub mod matmul;
pub mod mode;
pub mod normalize;
pub mod pipeline;
pub mod policy;
pub mod request;
pub mod rti;
pub mod sampler;
pub mod schedule;
pub mod spec;
pub mod tensor;
pub mod train;
pub mod truncated;
pub mod wgpu_device;

pub use backend::{
    load_policy, load_policy_with, DeviceSpec, Kernels, LoadOptions, Precision, CUDA_COMPILED, WGPU_COMPILED,
};
pub use error::PolicyError;
pub use policy::{Policy, SampleRequest, StepHook, StepInfo, WaveRow};
pub use spec::{
    ActionChunk, Capabilities, Capability, ChunkMeta, FeatureKind, InputFeature, ObservationWindow, PolicyKind,
    PolicySpec, StageTimings,
};
pub use tensor::{read_safetensors, write_safetensors, HostTensor};
pub use train::{train, RunMeta, TrainConfig, Trainer, TrainingSet};
