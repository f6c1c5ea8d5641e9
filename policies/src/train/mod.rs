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
pub mod init;
pub mod trainer;

use std::path::Path;

pub use checkpoint::{lerobot_config_json, lerobot_state_dict, RunMeta};
pub use config::{
    ConsistencyTrainConfig, DataConfig, DiffusionTrainConfig, EmaConfig, LrSchedule, ModeTrainSection, ModelConfig,
    NormChoice, NormalizationConfig, Objective, OptimConfig, TrainConfig, TruncatedTrainSection,
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
    train_with(cfg, data, meta, device, out_dir, resume_from, false, hooks)
}

/// [`train`]; with `resume_steps`, a resumed run takes `cfg.steps` as its new total (the cosine
/// schedule is re-laid over the new length from the resumed step on) instead of the saved one.
#[allow(clippy::too_many_arguments)]
pub fn train_with(
    cfg: TrainConfig,
    data: TrainingSet,
    meta: RunMeta,
    device: DeviceSpec,
    out_dir: &Path,
    resume_from: Option<&Path>,
    resume_steps: bool,
    hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    let kind = cfg.objective.kind();
    if !cfg.data.relative_actions.is_empty() && !kind.supports(crate::spec::Capability::RelativeActions) {
        return Err(PolicyError::Config(format!(
            "data.relative_actions: {kind} runs train absolute actions only; remove the key or train one of: {}",
            crate::spec::PolicyKind::supporting(crate::spec::Capability::RelativeActions)
        )));
    }
    if let Objective::Mode(m) = &cfg.objective {
        if cfg.init_from.is_some() {
            return Err(PolicyError::Config(
                "init_from: MoDE runs cannot start from another checkpoint yet".into(),
            ));
        }
        let m = m.clone();
        return train_mode_run(cfg, m, data, meta, device, out_dir, resume_from);
    }
    match device {
        DeviceSpec::Cpu | DeviceSpec::Flex => {
            let steps = cfg.steps;
            let mut t = match resume_from {
                Some(dir) => Trainer::<CpuTrainBackend>::resume(dir, data, Default::default())?,
                None => Trainer::<CpuTrainBackend>::new(cfg, data, meta, Default::default())?,
            };
            if resume_from.is_some() && resume_steps {
                t.set_total_steps(steps)?;
            }
            t.run(Some(out_dir), hooks)
        }
        DeviceSpec::NdArray => Err(PolicyError::Device(
            "training runs on burn-flex (--device cpu) or CUDA; burn-ndarray is inference-only here".into(),
        )),
        DeviceSpec::Cuda(i) => train_cuda(cfg, data, meta, i, out_dir, resume_from, resume_steps, hooks),
        DeviceSpec::Wgpu(_) => Err(PolicyError::Device(
            "training runs on the CPU (--device cpu) or CUDA (--device cuda); wgpu is inference-only".into(),
        )),
    }
}

/// CUDA training is its own feature: monomorphising the autodiff trainer for CUDA is the slowest part of
/// the build, and inference-only deployments (and CI) do not need it.
#[cfg(feature = "cuda-train")]
#[allow(clippy::too_many_arguments)]
fn train_cuda(
    cfg: TrainConfig,
    data: TrainingSet,
    meta: RunMeta,
    index: usize,
    out_dir: &Path,
    resume_from: Option<&Path>,
    resume_steps: bool,
    hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    let device = burn::backend::cuda::CudaDevice::new(index);
    let steps = cfg.steps;
    let mut t = match resume_from {
        Some(dir) => Trainer::<CudaTrainBackend>::resume(dir, data, device)?,
        None => Trainer::<CudaTrainBackend>::new(cfg, data, meta, device)?,
    };
    if resume_from.is_some() && resume_steps {
        t.set_total_steps(steps)?;
    }
    t.run(Some(out_dir), hooks)
}

#[cfg(not(feature = "cuda-train"))]
#[allow(clippy::too_many_arguments)]
fn train_cuda(
    _cfg: TrainConfig,
    _data: TrainingSet,
    _meta: RunMeta,
    _index: usize,
    _out_dir: &Path,
    _resume_from: Option<&Path>,
    _resume_steps: bool,
    _hooks: &mut Hooks,
) -> Result<TrainSummary, PolicyError> {
    Err(PolicyError::Device(
        "this riptide was built without CUDA training; rebuild with `cargo build --release --features cuda-train` \
         or train with --device cpu"
            .into(),
    ))
}

/// `[mode]` runs: MoDE's own trainer on the CPU, one checkpoint at the end (LeRobot has no MoDE, so
/// the checkpoint is riptide's: `model.safetensors` + `riptide.json` with kind "mode").
fn train_mode_run(
    cfg: TrainConfig,
    m: ModeTrainSection,
    data: TrainingSet,
    meta: RunMeta,
    device: DeviceSpec,
    out_dir: &Path,
    resume_from: Option<&Path>,
) -> Result<TrainSummary, PolicyError> {
    use crate::mode::{train_mode, MoDEConfig, MoDETrainConfig};
    if resume_from.is_some() {
        return Err(PolicyError::Config(
            "MoDE runs cannot be resumed yet; start a new run".into(),
        ));
    }
    if !matches!(device, DeviceSpec::Cpu | DeviceSpec::Flex) {
        return Err(PolicyError::Device(
            "MoDE trains on the CPU (--device cpu) in this version".into(),
        ));
    }
    cfg.validate()?;
    let obs_dim = data.features().iter().map(|f| f.shape.iter().product::<usize>()).sum();
    let config = MoDEConfig::new(data.action_dim(), obs_dim)
        .with_n_obs_steps(cfg.model.n_obs_steps)
        .with_horizon(cfg.model.horizon)
        .with_n_action_steps(cfg.model.n_action_steps)
        .with_d_model(m.d_model)
        .with_n_layers(m.n_layers)
        .with_n_heads(m.n_heads)
        .with_n_experts(m.n_experts)
        .with_top_k(m.top_k)
        .with_num_inference_steps(m.num_inference_steps);
    let tc = MoDETrainConfig {
        steps: cfg.steps,
        batch_size: cfg.batch_size,
        lr: cfg.optim.lr,
        weight_decay: cfg.optim.weight_decay,
        seed: cfg.seed,
        aux_weight: m.aux_weight,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let (policy, losses) = train_mode::<CpuTrainBackend>(config, &tc, &data, &Default::default())?;
    let dir = out_dir.join("checkpoints").join(format!("{:06}", cfg.steps));
    let pretrained = dir.join("pretrained_model");
    policy.save(&pretrained)?;
    // The run's metadata next to the model's own fields.
    let path = pretrained.join("riptide.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PolicyError::Config(format!("{}: {e}", path.display())))?;
    v["fps"] = serde_json::json!(meta.fps);
    v["env"] = serde_json::json!(meta.env);
    v["training"] = serde_json::json!({ "steps": cfg.steps, "seed": cfg.seed, "data": meta.data,
        "config": serde_json::to_value(&cfg).map_err(|e| PolicyError::Config(e.to_string()))? });
    std::fs::write(&path, serde_json::to_string_pretty(&v).expect("JSON serialises"))
        .map_err(|e| PolicyError::io(&path, e))?;
    let w = (losses.len() / 10).clamp(1, 100);
    let mean = |s: &[f32]| s.iter().map(|v| *v as f64).sum::<f64>() / s.len().max(1) as f64;
    Ok(TrainSummary {
        steps: cfg.steps,
        initial_loss: mean(&losses[..w.min(losses.len())]),
        final_loss: mean(&losses[losses.len().saturating_sub(w)..]),
        final_val_loss: None,
        wall_time_s: t0.elapsed().as_secs_f64(),
        checkpoint: Some(dir),
    })
}
