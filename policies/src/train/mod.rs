//! Training LeRobot-compatible diffusion policies in burn, from recorded episodes.
//!
//! [`TrainingSet`] holds episodes (per step: one frame per input feature and an action); the
//! [`Trainer`] cuts them into LeRobot's windows, computes normalisation stats, and optimises
//! LeRobot's DDPM objective with AdamW. Checkpoints are LeRobot 0.4.4 `pretrained_model/` directories
//! (plus riptide's `riptide.json` and a `training_state/` to resume from), so `load_policy` and
//! LeRobot's `DiffusionPolicy.from_pretrained` both load them.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod trainer;

use std::path::Path;

pub use checkpoint::{lerobot_config_json, lerobot_state_dict, RunMeta};
pub use config::{
    ConsistencyTrainConfig, DataConfig, DiffusionTrainConfig, EmaConfig, LrSchedule, ModelConfig, NormChoice,
    NormalizationConfig, OptimConfig, TrainConfig,
};
pub use data::{samples_from_episode, Episode, FeatureStats, Sample, TrainingSet, WindowSpec};
pub use trainer::{Control, EvalHook, Hooks, StepStats, TrainEvent, TrainSummary, Trainer};

use crate::backend::DeviceSpec;
use crate::error::PolicyError;

/// CPU training backend: burn-flex under autodiff.
pub type CpuTrainBackend = burn::backend::Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda-train")]
pub type CudaTrainBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// Train on `device` (a fresh run, or the one saved in `resume_from`), writing checkpoints under
/// `out_dir/checkpoints/`. The backend is a run-time choice, as for inference.
pub fn train(
    cfg: TrainConfig,
    data: TrainingSet,
    meta: RunMeta,
    device: DeviceSpec,
    out_dir: &Path,
    resume_from: Option<&Path>,
    hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    match device {
        DeviceSpec::Cpu | DeviceSpec::Flex => {
            let mut t = match resume_from {
                Some(dir) => Trainer::<CpuTrainBackend>::resume(dir, data, Default::default())?,
                None => Trainer::<CpuTrainBackend>::new(cfg, data, meta, Default::default())?,
            };
            t.run(Some(out_dir), hooks)
        }
        DeviceSpec::NdArray => Err(PolicyError::Device(
            "training runs on burn-flex (--device cpu) or CUDA; burn-ndarray is inference-only here".into(),
        )),
        DeviceSpec::Cuda(i) => train_cuda(cfg, data, meta, i, out_dir, resume_from, hooks),
    }
}

/// CUDA training is its own feature: monomorphising the autodiff trainer for CUDA is the slowest part of
/// the build, and inference-only deployments (and CI) do not need it.
#[cfg(feature = "cuda-train")]
fn train_cuda(
    cfg: TrainConfig,
    data: TrainingSet,
    meta: RunMeta,
    index: usize,
    out_dir: &Path,
    resume_from: Option<&Path>,
    hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    let device = burn::backend::cuda::CudaDevice::new(index);
    let mut t = match resume_from {
        Some(dir) => Trainer::<CudaTrainBackend>::resume(dir, data, device)?,
        None => Trainer::<CudaTrainBackend>::new(cfg, data, meta, device)?,
    };
    t.run(Some(out_dir), hooks)
}

#[cfg(not(feature = "cuda-train"))]
fn train_cuda(
    _cfg: TrainConfig,
    _data: TrainingSet,
    _meta: RunMeta,
    _index: usize,
    _out_dir: &Path,
    _resume_from: Option<&Path>,
    _hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    Err(PolicyError::Device(
        "this riptide was built without CUDA training; rebuild with `cargo build --release --features cuda-train` \
         or train with --device cpu"
            .into(),
    ))
}
