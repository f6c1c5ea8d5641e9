//! The trainer: LeRobot's `DiffusionModel.compute_loss` under burn autodiff, AdamW with a global
//! gradient-norm clip, LeRobot's cosine schedule with linear warm-up, an EMA of the weights (what gets
//! saved), validation loss, checkpoints and resuming.
//!
//! Determinism: every random draw of step k (batch order, timesteps, noise, crops) comes from an RNG
//! seeded by (seed, k), and weights are initialised from a seeded host RNG. A run's state is therefore
//! its weights, optimiser moments, EMA weights and step count: that is all a checkpoint stores
//! ("the RNG position" is the step), and a resumed run repeats the uninterrupted one bit for bit on
//! the CPU.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Uniform};
use serde_json::{json, Value};

use super::checkpoint::{write_pretrained, RunMeta};
use super::config::{ConsistencyTrainConfig, NormChoice, Objective, TrainConfig};
use super::data::{FeatureStats, TrainingSet, WindowSpec};
use crate::error::PolicyError;
use crate::lerobot::{ConsistencySampling, DiffusionConfig, DiffusionModel, DiffusionPolicy};
use crate::normalize::FeatureNorm;
use crate::policy::{FeatureKind, Policy};
use crate::schedule::{alphas_cumprod, consistency_scalings, NoiseSchedule, PredictionType, ScheduleConfig};
use crate::spec::PolicyKind;

type Optim<B> = OptimizerAdaptor<AdamW, DiffusionModel<B>, B>;
type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

/// Independent random streams derived from the run seed.
const STREAM_STEP: u64 = 1;
const STREAM_EPOCH: u64 = 2;
const STREAM_VAL: u64 = 3;
const STREAM_SPLIT: u64 = 4;
const STREAM_INIT: u64 = 5;
const STREAM_POOL: u64 = 6;

pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn stream_rng(seed: u64, stream: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(
        splitmix64(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f)) ^ index,
    ))
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepStats {
    /// Steps completed (1 after the first step).
    pub step: usize,
    pub loss: f64,
    /// Learning rate this step ran at.
    pub lr: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    pub batch_size: usize,
    pub samples_per_s: f64,
}

/// Progress reports for the caller (the CLI draws a progress bar from `Step`).
#[derive(Debug)]
pub enum TrainEvent<'a> {
    Step(&'a StepStats),
    Validation {
        step: usize,
        loss: f64,
    },
    Eval {
        step: usize,
        metrics: &'a BTreeMap<String, f64>,
    },
    Checkpoint {
        step: usize,
        dir: &'a Path,
    },
}

/// The event callback's answer: `Stop` ends the run after this step (a final checkpoint is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Evaluation hook: called every `eval_every` steps with the EMA policy (e.g. closed-loop rollouts in
/// a simulator); returns named metrics.
pub type EvalHook<'a> = Box<dyn FnMut(usize, &mut dyn Policy) -> Result<BTreeMap<String, f64>, PolicyError> + 'a>;

/// Called with every training event; its answer can stop the run.
pub type EventHook<'a> = Box<dyn FnMut(&TrainEvent) -> Control + 'a>;

/// Episode indices for training, and (episode, start) windows for training and validation.
type Split = (Vec<usize>, Vec<(usize, usize)>, Vec<(usize, usize)>);

#[derive(Default)]
pub struct Hooks<'a> {
    pub on_event: Option<EventHook<'a>>,
    pub eval: Option<EvalHook<'a>>,
}

/// What a run ended with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    pub steps: usize,
    /// Mean loss of the first and last few steps (min(100, steps/10) steps, at least 1).
    pub initial_loss: f64,
    pub final_loss: f64,
    pub final_val_loss: Option<f64>,
    pub wall_time_s: f64,
    /// The last checkpoint written (`<out>/checkpoints/<step>`), if any.
    pub checkpoint: Option<PathBuf>,
}

/// A batch on the host, normalised.
struct HostBatch {
    b: usize,
    /// Per feature: [b, n_obs_steps, ...frame].
    obs: Vec<Vec<f32>>,
    /// [b, horizon, action_dim].
    action: Vec<f32>,
    /// [b, horizon].
    is_pad: Vec<bool>,
}

/// The random draws of one loss evaluation.
struct Draw {
    timesteps: Vec<usize>,
    /// [b, horizon, action_dim].
    eps: Vec<f32>,
    /// One crop per encoder call (None = the encoder's eval-time center crop).
    crops: Vec<Option<[usize; 4]>>,
}

/// A diffusion-policy training run on autodiff backend `B`.
pub struct Trainer<B: AutodiffBackend> {
    /// Consistency distillation: teacher trajectories and the student's sampling (None: diffusion).
    distill: Option<Distill>,
    /// Truncated diffusion: anchors, score head and its optimiser (None: plain diffusion).
    trunc: Option<Trunc<B>>,
    cfg: TrainConfig,
    config: DiffusionConfig,
    data: TrainingSet,
    meta: RunMeta,
    spec: WindowSpec,
    train_windows: Vec<(usize, usize)>,
    val_windows: Vec<(usize, usize)>,
    val_episodes: Vec<usize>,
    stats: BTreeMap<String, FeatureStats>,
    /// Per feature, in the set's order.
    norms: Vec<FeatureNorm>,
    action_norm: FeatureNorm,
    alphas_cumprod: Vec<f32>,
    model: Option<DiffusionModel<B>>,
    optim: Optim<B>,
    ema: DiffusionModel<B::InnerBackend>,
    step: usize,
    losses: Vec<f32>,
    last_val_loss: Option<f64>,
    /// (epoch, permutation of train_windows) of the epoch in progress.
    epoch_perm: Option<(usize, Vec<usize>)>,
    device: B::Device,
    backend_name: String,
}

/// PyTorch's default init for Linear and Conv layers (kaiming-uniform, a = √5: U(±1/√fan_in) for
/// weights and biases), from a seeded host RNG. Seeding burn's backend RNG instead would make weights
/// depend on whatever else in the process draws from it.
struct TorchInit {
    rng: StdRng,
    stack: Vec<(String, String)>,
    fan_in: usize,
}

impl<B: Backend> ModuleMapper<B> for TorchInit {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let (name, ty) = self.stack.last().cloned().unwrap_or_default();
        let dims = tensor.dims();
        let layer = matches!(
            ty.as_str(),
            "Struct:Linear" | "Struct:Conv1d" | "Struct:Conv2d" | "Struct:ConvTranspose1d"
        );
        let tensor = match (layer, name.as_str()) {
            (true, "weight") | (true, "bias") => {
                if name == "weight" {
                    // burn's Linear weight is [in, out]; conv weights are [a, b, k…] with fan_in = b·k…
                    self.fan_in = if ty == "Struct:Linear" {
                        dims[0]
                    } else {
                        dims[1..].iter().product()
                    };
                }
                let bound = 1.0 / (self.fan_in.max(1) as f64).sqrt();
                let u = Uniform::new_inclusive(-bound, bound).expect("finite bound");
                let n: usize = dims.iter().product();
                let values: Vec<f32> = (0..n).map(|_| u.sample(&mut self.rng) as f32).collect();
                let grad = tensor.is_require_grad();
                Tensor::<B, D>::from_data(TensorData::new(values, dims.to_vec()), &tensor.device())
                    .set_require_grad(grad)
            }
            // SpatialSoftmax's coordinate grid is a buffer in LeRobot: never trained.
            (false, "pos_grid") => tensor.set_require_grad(false),
            _ => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Every float tensor of a module, flattened, by parameter id.
struct Collect<B: Backend> {
    out: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.out.insert(param.id, t.reshape([n]));
    }
}

/// ema ← decay·ema + (1 − decay)·live, as diffusers' `EMAModel.step` (buffers included).
struct EmaUpdate<B: Backend> {
    live: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for EmaUpdate<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.live.remove(&id) {
            Some(live) => {
                let live = live.reshape(tensor.dims());
                if self.decay == 0.0 {
                    live
                } else {
                    tensor.mul_scalar(self.decay) + live.mul_scalar(1.0 - self.decay)
                }
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Σ‖g‖² over every parameter's gradient.
struct GradNormSq<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    acc: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradNormSq<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.acc = Some(match self.acc.take() {
                Some(a) => a + s,
                None => s,
            });
        }
    }
}

struct GradScale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g * self.coef.clone().unsqueeze::<D>());
        }
    }
}

/// The DiffusionConfig the trainer builds: identical to what the loader reads back from config.json.
/// Consistency distillation data: teacher DDIM trajectories generated once (host memory).
///
/// The student is trained to be the teacher's solution map: for every state `x_k` the teacher's
/// sampler passes through (at its timestep `t_k`; `x_0` is the initial noise), the student's clean
/// estimate `f(x_k, t_k) = c_skip·x_k/√ᾱ + c_out·F(x_k, t_k)` (boundary scalings,
/// [`consistency_scalings`]) should equal the teacher's final sample from that trajectory. That is
/// the consistency property along the teacher's probability-flow trajectories with the teacher's
/// full K-step solution as the (stop-gradient) target; `f(x_0, t_0)` alone is one-step generation.
struct Distill {
    /// Dataset window of each trajectory.
    windows: Vec<(usize, usize)>,
    /// Teacher timesteps t_k of the stored states, [K].
    timesteps: Vec<usize>,
    /// [P, K, H·A]: the sample entering teacher step k.
    states: Vec<f32>,
    /// [P, H·A]: the teacher's result.
    targets: Vec<f32>,
    /// Per teacher step: (coefficient on x_t, coefficient on F).
    coefs: Vec<(f32, f32)>,
    one_step_fraction: f64,
    sampling: ConsistencySampling,
}

/// Truncated-diffusion training state (see [`crate::truncated`]). The score head has its own AdamW
/// (same settings, no gradient clipping) and is saved with its live weights.
struct Trunc<B: AutodiffBackend> {
    /// Normalised anchors [K, H·A].
    anchors: Vec<f32>,
    head: Option<crate::truncated::ScoreHead<B>>,
    optim: OptimizerAdaptor<AdamW, crate::truncated::ScoreHead<B>, B>,
    sampling: crate::truncated::TruncatedSampling,
    score_weight: f64,
}

/// Burn records of a truncated run's live score head and its AdamW moments in `training_state/`.
const SCORE_HEAD: &str = "score_head";
const SCORE_HEAD_OPTIM: &str = "score_head_optimizer";

impl<B: AutodiffBackend> Trunc<B> {
    /// Restore the anchors, score head and its optimiser of the run saved in `dir`. The anchors come
    /// from the checkpoint, not a new k-means, so the resumed run denoises towards the same modes.
    /// Checkpoints written before the head's training state was saved still resume: their
    /// `truncated.safetensors` holds the live head, and only its AdamW moments restart (a warning).
    fn resume(
        &mut self,
        dir: &Path,
        ts: &Path,
        config: &DiffusionConfig,
        rec: &Rec,
        device: &B::Device,
    ) -> Result<(), PolicyError> {
        let parts = crate::truncated::load_parts::<B>(
            &dir.join("pretrained_model"),
            self.sampling.clone(),
            config.global_cond_dim(),
            config.horizon,
            config.action_dim,
            device,
        )?;
        if parts.anchors.data.len() != self.anchors.len() {
            return Err(PolicyError::Config(format!(
                "resume: {} holds {} anchor values, this run's [truncated] makes {}",
                dir.display(),
                parts.anchors.data.len(),
                self.anchors.len()
            )));
        }
        self.anchors = parts.anchors.data;
        let head_file = ts.join(format!("{SCORE_HEAD}.mpk"));
        if head_file.exists() {
            let head = self.head.take().expect("score head present");
            self.head = Some(
                head.load_file(ts.join(SCORE_HEAD), rec, device)
                    .map_err(|e| recorder_err(&head_file, e))?,
            );
            let record = Recorder::<B>::load(rec, ts.join(SCORE_HEAD_OPTIM), device)
                .map_err(|e| recorder_err(&ts.join(format!("{SCORE_HEAD_OPTIM}.mpk")), e))?;
            self.optim = self.optim.clone().load_record(record);
        } else {
            tracing::warn!(
                "{} has no score-head training state (written by an older riptide): the head resumes from its saved weights, its AdamW moments restart",
                ts.display()
            );
            self.head = Some(parts.score_head);
        }
        Ok(())
    }
}

/// A [`crate::StepHook`] that keeps every intermediate sample of the teacher's run.
struct Record(Vec<crate::tensor::HostTensor>);

impl crate::policy::StepHook for Record {
    fn after_step(&mut self, _info: crate::policy::StepInfo, sample: &mut crate::tensor::HostTensor) {
        self.0.push(sample.clone());
    }
}

/// The teacher's sampler for distillation: its DDIM run (deterministic, so each trajectory is the
/// probability-flow solution of its initial noise), with its own step count unless overridden.
fn teacher_schedule(teacher: &DiffusionConfig, c: &ConsistencyTrainConfig) -> Result<NoiseSchedule, PolicyError> {
    NoiseSchedule::new(
        ScheduleConfig {
            kind: crate::schedule::SchedulerKind::Ddim,
            ..teacher.schedule.clone()
        },
        c.teacher_steps.unwrap_or(teacher.num_inference_steps),
    )
}

fn default_device<X: Backend>() -> X::Device {
    Default::default()
}

fn norm_choice(m: crate::normalize::NormMode) -> NormChoice {
    match m {
        crate::normalize::NormMode::MeanStd => NormChoice::MeanStd,
        crate::normalize::NormMode::MinMax => NormChoice::MinMax,
        crate::normalize::NormMode::Identity => NormChoice::Identity,
    }
}

/// Windows split by episode into validation and training sets, seeded: (validation episodes,
/// validation windows, training windows). No training window is an error naming the data's size.
fn split_windows(cfg: &TrainConfig, data: &TrainingSet, spec: &WindowSpec) -> Result<Split, PolicyError> {
    // Episode-level split, seeded.
    let n_eps = data.episodes().len();
    let mut order: Vec<usize> = (0..n_eps).collect();
    order.shuffle(&mut stream_rng(cfg.seed, STREAM_SPLIT, 0));
    let n_val = if cfg.data.val_fraction > 0.0 {
        if n_eps < 2 {
            return Err(PolicyError::Config(
                "train config: data.val_fraction > 0 needs at least 2 episodes".into(),
            ));
        }
        ((cfg.data.val_fraction * n_eps as f64).round() as usize).clamp(1, n_eps - 1)
    } else {
        0
    };
    let mut val_episodes: Vec<usize> = order[..n_val].to_vec();
    val_episodes.sort_unstable();
    let all = data.windows(spec);
    let (val_windows, train_windows): (Vec<_>, Vec<_>) = all.into_iter().partition(|(e, _)| val_episodes.contains(e));
    if train_windows.is_empty() {
        return Err(PolicyError::Input(format!(
            "training set: no training windows ({} episodes, {} frames; drop_n_last_frames = {})",
            n_eps,
            data.num_frames(),
            spec.drop_n_last_frames
        )));
    }
    Ok((val_episodes, val_windows, train_windows))
}

/// A student predicts in its teacher's action space: a teacher trained on relative actions makes the
/// student's `data.relative_actions` its pairs (the config may repeat them, not contradict them).
fn adopt_teacher_relative_actions(pairs: &mut Vec<[usize; 2]>, teacher: &std::path::Path) -> Result<(), PolicyError> {
    let files = crate::lerobot::CheckpointFiles::locate(teacher)
        .map_err(|e| PolicyError::Config(format!("consistency.teacher: {e}")))?;
    let theirs: Vec<[usize; 2]> = match crate::lerobot::loader::read_riptide_kind(&files.dir)?
        .and_then(|(_, v)| v.get("relative_actions").cloned())
    {
        Some(v) => serde_json::from_value(v).map_err(|e| {
            PolicyError::Config(format!(
                "consistency.teacher {}: riptide.json relative_actions: {e}",
                teacher.display()
            ))
        })?,
        None => Vec::new(),
    };
    if pairs.is_empty() {
        *pairs = theirs;
    } else if *pairs != theirs {
        return Err(PolicyError::Config(format!(
            "data.relative_actions {pairs:?}: the consistency teacher {} was trained with {theirs:?}; a student \
             predicts in its teacher's action space (remove the key to adopt the teacher's)",
            teacher.display()
        )));
    }
    Ok(())
}

/// Make `cfg`'s `[model]`, `[diffusion]` and `[normalization]` the teacher's (the student has the
/// teacher's network and reads its outputs as a consistency model), checking the data fits it.
fn adopt_teacher(
    cfg: &mut TrainConfig,
    teacher: &DiffusionConfig,
    c: &ConsistencyTrainConfig,
    data: &TrainingSet,
) -> Result<Vec<usize>, PolicyError> {
    let names = |v: &[crate::policy::InputFeature]| {
        v.iter()
            .map(|f| format!("{}{:?}", f.name, f.shape))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if teacher.inputs.len() != data.features().len()
        || teacher
            .inputs
            .iter()
            .zip(data.features())
            .any(|(a, b)| a.name != b.name || a.shape != b.shape)
        || teacher.action_dim != data.action_dim()
    {
        return Err(PolicyError::Config(format!(
            "consistency.teacher {} takes [{}] → {} actions, the data has [{}] → {}; distil on the teacher's features \
             (riptide train --features ...)",
            c.teacher.display(),
            names(&teacher.inputs),
            teacher.action_dim,
            names(data.features()),
            data.action_dim()
        )));
    }
    let teacher_schedule = teacher_schedule(teacher, c)?;
    let student_ts = c
        .timesteps
        .clone()
        .unwrap_or_else(|| vec![teacher_schedule.timesteps[0]]);
    if let Some(t) = student_ts.iter().find(|t| !teacher_schedule.timesteps.contains(t)) {
        return Err(PolicyError::Config(format!(
            "consistency.timesteps: {t} is not one of the teacher's timesteps {:?} (the student is trained only there)",
            teacher_schedule.timesteps
        )));
    }
    let m = &mut cfg.model;
    m.n_obs_steps = teacher.n_obs_steps;
    m.horizon = teacher.horizon;
    m.n_action_steps = teacher.n_action_steps;
    m.down_dims = teacher.down_dims.clone();
    m.kernel_size = teacher.kernel_size;
    m.n_groups = teacher.n_groups;
    m.diffusion_step_embed_dim = teacher.diffusion_step_embed_dim;
    m.use_film_scale_modulation = teacher.use_film_scale_modulation;
    m.crop_shape = teacher.crop_shape;
    m.use_group_norm = teacher.use_group_norm;
    m.spatial_softmax_num_keypoints = teacher.spatial_softmax_num_keypoints;
    m.use_separate_rgb_encoder_per_camera = teacher.use_separate_rgb_encoder_per_camera;
    let d = &mut cfg.diffusion;
    let ts = &teacher.schedule;
    d.noise_scheduler_type = "DDIM".into();
    d.num_train_timesteps = ts.num_train_timesteps;
    d.beta_schedule = ts.beta_schedule;
    d.beta_start = ts.beta_start;
    d.beta_end = ts.beta_end;
    d.prediction_type = PredictionType::Sample;
    d.clip_sample = ts.clip_sample;
    d.clip_sample_range = ts.clip_sample_range;
    d.num_inference_steps = Some(student_ts.len());
    for f in &teacher.inputs {
        let choice = norm_choice(teacher.norm_modes[&f.name]);
        match f.kind {
            FeatureKind::State => cfg.normalization.state = choice,
            FeatureKind::Env => cfg.normalization.env = choice,
            FeatureKind::Visual => cfg.normalization.visual = choice,
        }
    }
    cfg.normalization.action = norm_choice(teacher.norm_modes["action"]);
    Ok(student_ts)
}

pub(crate) fn diffusion_config(cfg: &TrainConfig, data: &TrainingSet) -> Result<DiffusionConfig, PolicyError> {
    let m = &cfg.model;
    let d = &cfg.diffusion;
    let mut norm_modes = BTreeMap::new();
    for f in data.features() {
        norm_modes.insert(f.name.clone(), cfg.normalization.for_kind(f.kind).mode());
    }
    norm_modes.insert("action".into(), cfg.normalization.action.mode());
    let has_camera = data.features().iter().any(|f| f.kind == FeatureKind::Visual);
    let config = DiffusionConfig {
        inputs: data.features().to_vec(),
        action_dim: data.action_dim(),
        norm_modes,
        n_obs_steps: m.n_obs_steps,
        horizon: m.horizon,
        n_action_steps: m.n_action_steps,
        crop_shape: if has_camera { m.crop_shape } else { None },
        use_group_norm: has_camera && m.use_group_norm,
        spatial_softmax_num_keypoints: if has_camera { m.spatial_softmax_num_keypoints } else { 0 },
        use_separate_rgb_encoder_per_camera: has_camera && m.use_separate_rgb_encoder_per_camera,
        down_dims: m.down_dims.clone(),
        kernel_size: m.kernel_size,
        n_groups: m.n_groups,
        diffusion_step_embed_dim: m.diffusion_step_embed_dim,
        use_film_scale_modulation: m.use_film_scale_modulation,
        schedule: ScheduleConfig {
            kind: cfg.scheduler_kind()?,
            num_train_timesteps: d.num_train_timesteps,
            beta_schedule: d.beta_schedule,
            beta_start: d.beta_start,
            beta_end: d.beta_end,
            prediction_type: d.prediction_type,
            clip_sample: d.clip_sample,
            clip_sample_range: d.clip_sample_range,
        },
        num_inference_steps: d.num_inference_steps.unwrap_or(d.num_train_timesteps),
        notes: Vec::new(),
    };
    if m.down_dims.is_empty() {
        return Err(PolicyError::Config(
            "train config: model.down_dims must not be empty".into(),
        ));
    }
    if has_camera && m.spatial_softmax_num_keypoints == 0 {
        return Err(PolicyError::Config(
            "train config: model.spatial_softmax_num_keypoints must be > 0".into(),
        ));
    }
    config
        .check()
        .map_err(|e| PolicyError::Config(format!("train config (section [model]): {e}")))?;
    Ok(config)
}

fn recorder_err(path: &Path, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Safetensors {
        path: path.into(),
        message: format!("training state: {e}"),
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A fresh run: stats from `data`, weights initialised from `cfg.seed`.
    pub fn new(
        mut cfg: TrainConfig,
        mut data: TrainingSet,
        meta: RunMeta,
        device: B::Device,
    ) -> Result<Self, PolicyError> {
        cfg.validate()?;
        if let Objective::Mode(_) = cfg.objective {
            return Err(PolicyError::Config(
                "[mode]: the U-Net trainer does not train MoDE policies; run `riptide_policies::train`".into(),
            ));
        }
        if let Objective::Consistency(c) = &cfg.objective {
            adopt_teacher_relative_actions(&mut cfg.data.relative_actions, &c.teacher)?;
        }
        data.set_relative_actions(&cfg.data.relative_actions)?;
        let teacher = match cfg.objective.clone() {
            Objective::Consistency(c) => {
                let files = crate::lerobot::CheckpointFiles::locate(&c.teacher)
                    .map_err(|e| PolicyError::Config(format!("consistency.teacher: {e}")))?;
                let tc = crate::lerobot::read_config(&files)?;
                let student_ts = adopt_teacher(&mut cfg, &tc, &c, &data)?;
                Some((c, student_ts))
            }
            _ => None,
        };
        if let Objective::Truncated(t) = &cfg.objective {
            // The U-Net predicts the clean chunk from a noised anchor; two DDIM steps at inference.
            cfg.diffusion.prediction_type = PredictionType::Sample;
            cfg.diffusion.noise_scheduler_type = "DDIM".into();
            cfg.diffusion.num_inference_steps = Some(2.min(t.trunc_timestep));
        }
        let config = diffusion_config(&cfg, &data)?;
        let spec = WindowSpec {
            n_obs_steps: cfg.model.n_obs_steps,
            horizon: cfg.model.horizon,
            drop_n_last_frames: cfg.drop_n_last_frames(),
        };
        let (val_episodes, val_windows, train_windows) = split_windows(&cfg, &data, &spec)?;
        let mut stats = data.stats_for(&spec)?;
        if cfg.data.stats_from_init {
            match &cfg.init_from {
                Some(dir) => super::init::adopt_stats(dir, &mut stats)?,
                None => {
                    return Err(PolicyError::Config(
                        "data.stats_from_init: set init_from (or --init-from) to say whose stats".into(),
                    ))
                }
            }
        }
        let norms = data
            .features()
            .iter()
            .map(|f| stats[&f.name].norm(&f.name, config.norm_modes[&f.name]))
            .collect::<Result<Vec<_>, _>>()?;
        let action_norm = stats["action"].norm("action", config.norm_modes["action"])?;
        let d = &cfg.diffusion;
        let alphas_cumprod = alphas_cumprod(d.beta_schedule, d.num_train_timesteps, d.beta_start, d.beta_end);

        let model: DiffusionModel<B> = config.init_model(&device);
        let model = model.map(&mut TorchInit {
            rng: stream_rng(cfg.seed, STREAM_INIT, 0),
            stack: Vec::new(),
            fan_in: 1,
        });
        // A student starts from its teacher's weights.
        let mut model = match &teacher {
            Some((c, _)) => crate::lerobot::load_diffusion::<B>(&c.teacher, "teacher", &device)?.model,
            None => model,
        };
        if let Some(dir) = &cfg.init_from {
            if cfg.objective.kind() != PolicyKind::Diffusion {
                return Err(PolicyError::Config(
                    "init_from: only plain diffusion runs start from another checkpoint".into(),
                ));
            }
            let w = super::init::weights_for(dir, &config)?;
            let bytes = crate::tensor::safetensors_bytes(&w).map_err(PolicyError::Weights)?;
            crate::lerobot::loader::load_weights_bytes(&mut model, bytes, &dir.join("model.safetensors"))?;
        }
        let ema = model.valid();
        let o = &cfg.optim;
        let optim = AdamWConfig::new()
            .with_beta_1(o.betas[0] as f32)
            .with_beta_2(o.betas[1] as f32)
            .with_epsilon(o.eps as f32)
            .with_weight_decay(o.weight_decay as f32)
            .init::<B, DiffusionModel<B>>();
        let backend_name = format!("train ({})", std::any::type_name::<B::InnerBackend>());
        let trunc = match cfg.truncated() {
            Some(tc) => {
                // Anchors from every training window's normalised action chunk.
                let per = config.horizon * config.action_dim;
                let mut chunks = Vec::with_capacity(train_windows.len() * per);
                for &(e, t) in &train_windows {
                    let mut a = data.sample(e, t, &spec).action;
                    action_norm.normalize(&mut a, 1);
                    chunks.extend(a);
                }
                let anchors =
                    crate::truncated::kmeans(&chunks, per, tc.n_anchors, tc.kmeans_iters, cfg.seed ^ STREAM_INIT)?;
                let head = crate::truncated::ScoreHead::<B>::new(
                    config.global_cond_dim(),
                    tc.score_hidden,
                    tc.n_anchors,
                    &device,
                );
                let mut sampling = crate::truncated::TruncatedSampling::new(tc.trunc_timestep, tc.n_anchors);
                sampling.select = tc.select;
                Some(Trunc {
                    anchors,
                    head: Some(head),
                    optim: AdamWConfig::new()
                        .with_weight_decay(o.weight_decay as f32)
                        .init::<B, crate::truncated::ScoreHead<B>>(),
                    sampling,
                    score_weight: tc.score_weight,
                })
            }
            None => None,
        };
        let mut t = Self {
            distill: None,
            trunc,
            cfg,
            config,
            data,
            meta,
            spec,
            train_windows,
            val_windows,
            val_episodes,
            stats,
            norms,
            action_norm,
            alphas_cumprod,
            model: Some(model),
            optim,
            ema,
            step: 0,
            losses: Vec::new(),
            last_val_loss: None,
            epoch_perm: None,
            device,
            backend_name,
        };
        if let Some((c, student_ts)) = teacher {
            t.distill = Some(t.teacher_pool(&c, student_ts)?);
        }
        Ok(t)
    }

    /// Run the teacher from `c.pool_size` seeded noises on seeded training windows, keeping every
    /// state of each trajectory (see [`Distill`]). The teacher's statistics must be the data's.
    fn teacher_pool(&self, c: &ConsistencyTrainConfig, student_ts: Vec<usize>) -> Result<Distill, PolicyError> {
        // The teacher runs without autodiff (on the backend's default device).
        let dev = default_device::<B::InnerBackend>();
        let teacher = crate::lerobot::load_diffusion::<B::InnerBackend>(&c.teacher, "teacher", &dev)?;
        // Stats vectors hold one value per channel: compare a feature's mean through both normalisers.
        let same = |name: &str, ours: &FeatureNorm, theirs: Option<&FeatureNorm>| {
            let mean = &self.stats[name].mean;
            let (mut a, mut b) = (mean.clone(), mean.clone());
            ours.normalize(&mut a, 1);
            if let Some(t) = theirs {
                t.normalize(&mut b, 1);
            }
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
        };
        let probe_ok = self
            .data
            .features()
            .iter()
            .zip(&self.norms)
            .all(|(f, n)| same(&f.name, n, teacher.input_norms.get(&f.name)));
        // With relative actions the data's action statistics are those of the offsets: they must be the
        // teacher's too, or the student would learn the teacher's outputs on another scale.
        let action_ok = same("action", &self.action_norm, Some(&teacher.action_norm));
        if !probe_ok || !action_ok {
            return Err(PolicyError::Config(format!(
                "consistency.teacher {}: its normalisation statistics differ from this data's; distil on the data the teacher was trained on",
                c.teacher.display()
            )));
        }
        let schedule = teacher_schedule(&teacher.config, c)?;
        let (h, a) = (self.config.horizon, self.config.action_dim);
        let per = h * a;
        let k = schedule.nfe();
        let mut rng = stream_rng(self.cfg.seed, STREAM_POOL, 0);
        let windows: Vec<(usize, usize)> = (0..c.pool_size)
            .map(|_| self.train_windows[rng.random_range(0..self.train_windows.len())])
            .collect();
        let mut states = vec![0.0f32; c.pool_size * k * per];
        let mut targets = vec![0.0f32; c.pool_size * per];
        let bs = self.cfg.batch_size;
        for (ci, chunk) in windows.chunks(bs).enumerate() {
            let batch = self.host_batch(chunk);
            let b = batch.b;
            let crops = vec![None; self.config.cameras().len()];
            let gc = global_conditioning(&teacher.model, &teacher.config, &batch, &crops, &dev);
            let cond = teacher.condition(gc);
            let z: Vec<f32> = (0..b * per).map(|_| StandardNormal.sample(&mut rng)).collect();
            let x = Tensor::<B::InnerBackend, 3>::from_data(TensorData::new(z.clone(), [b, h, a]), &dev);
            let mut rec = Record(Vec::with_capacity(k));
            let mut no_noise = |i: usize| -> Result<crate::tensor::HostTensor, PolicyError> {
                Err(PolicyError::Config(format!(
                    "consistency: teacher step {i} draws noise; distil from a deterministic (DDIM) schedule"
                )))
            };
            let (out, _) = crate::sampler::sample(&teacher, &cond, &schedule, 0..k, x, &mut no_noise, Some(&mut rec))?;
            let out = crate::sampler::to_host(out);
            for i in 0..b {
                let p = ci * bs + i;
                for step in 0..k {
                    let src = if step == 0 {
                        &z[i * per..(i + 1) * per]
                    } else {
                        &rec.0[step - 1].data[i * per..(i + 1) * per]
                    };
                    states[(p * k + step) * per..(p * k + step + 1) * per].copy_from_slice(src);
                }
                targets[p * per..(p + 1) * per].copy_from_slice(&out.data[i * per..(i + 1) * per]);
            }
        }
        let coefs = schedule
            .timesteps
            .iter()
            .map(|&t| {
                let (x, o) = consistency_scalings(&self.alphas_cumprod, t, c.sigma_data);
                (x as f32, o as f32)
            })
            .collect();
        Ok(Distill {
            windows,
            timesteps: schedule.timesteps.clone(),
            states,
            targets,
            coefs,
            one_step_fraction: c.one_step_fraction,
            sampling: ConsistencySampling {
                sigma_data: c.sigma_data,
                timesteps: student_ts,
            },
        })
    }

    /// Continue the run saved in checkpoint directory `dir` (written by [`Self::save_checkpoint`]) on
    /// the same data: weights, optimiser moments, EMA and step are restored, so the remaining steps
    /// repeat what an uninterrupted run would have done.
    pub fn resume(dir: &Path, data: TrainingSet, device: B::Device) -> Result<Self, PolicyError> {
        let ts = dir.join("training_state");
        let state_path = ts.join("trainer.json");
        let text = std::fs::read_to_string(&state_path).map_err(|e| PolicyError::io(&state_path, e))?;
        let state: Value =
            serde_json::from_str(&text).map_err(|e| PolicyError::Config(format!("{}: {e}", state_path.display())))?;
        let field = |k: &str| {
            state
                .get(k)
                .cloned()
                .ok_or_else(|| PolicyError::Config(format!("{} lacks {k:?}", state_path.display())))
        };
        let parse = |k: &str, e: serde_json::Error| PolicyError::Config(format!("{}: {k}: {e}", state_path.display()));
        let cfg: TrainConfig = serde_json::from_value(field("config")?).map_err(|e| parse("config", e))?;
        let meta: RunMeta = serde_json::from_value(field("meta")?).map_err(|e| parse("meta", e))?;
        let step: usize = serde_json::from_value(field("step")?).map_err(|e| parse("step", e))?;
        let losses: Vec<f32> = serde_json::from_value(field("losses")?).map_err(|e| parse("losses", e))?;
        let fp: (usize, usize, f64) =
            serde_json::from_value(field("data_fingerprint")?).map_err(|e| parse("data_fingerprint", e))?;
        let now = data.fingerprint();
        if fp.0 != now.0 || fp.1 != now.1 || (fp.2 - now.2).abs() > 1e-9 * fp.2.abs().max(1.0) {
            return Err(PolicyError::Input(format!(
                "resume: the training data differs from the run's ({} episodes / {} frames / sum {} then, {} / {} / {} now)",
                fp.0, fp.1, fp.2, now.0, now.1, now.2
            )));
        }
        let mut t = Self::new(cfg, data, meta, device)?;
        let rec = Rec::new();
        if let Some(tr) = &mut t.trunc {
            tr.resume(dir, &ts, &t.config, &rec, &t.device)?;
        }
        let model = t.model.take().expect("model present");
        let model = model
            .load_file(ts.join("model"), &rec, &t.device)
            .map_err(|e| recorder_err(&ts.join("model.mpk"), e))?;
        t.model = Some(model);
        t.ema = t
            .ema
            .clone()
            .load_file(ts.join("ema"), &rec, &t.device)
            .map_err(|e| recorder_err(&ts.join("ema.mpk"), e))?;
        let record = Recorder::<B>::load(&rec, ts.join("optimizer"), &t.device)
            .map_err(|e| recorder_err(&ts.join("optimizer.mpk"), e))?;
        t.optim = t.optim.load_record(record);
        t.step = step;
        t.losses = losses;
        t.last_val_loss = state.get("last_val_loss").and_then(Value::as_f64);
        Ok(t)
    }

    /// Change the run's total number of steps (e.g. to extend a resumed run); the cosine schedule
    /// follows the new length from the current step on.
    pub fn set_total_steps(&mut self, steps: usize) -> Result<(), PolicyError> {
        if steps <= self.step {
            return Err(PolicyError::Config(format!(
                "--steps {steps} is not beyond the checkpoint's step {}; give a larger total",
                self.step
            )));
        }
        self.cfg.steps = steps;
        Ok(())
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn diffusion_config(&self) -> &DiffusionConfig {
        &self.config
    }

    /// Steps completed.
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// Loss of every step so far.
    pub fn losses(&self) -> &[f32] {
        &self.losses
    }

    pub fn num_train_samples(&self) -> usize {
        self.train_windows.len()
    }

    pub fn num_val_samples(&self) -> usize {
        self.val_windows.len()
    }

    pub fn stats(&self) -> &BTreeMap<String, FeatureStats> {
        &self.stats
    }

    fn host_batch(&self, windows: &[(usize, usize)]) -> HostBatch {
        let b = windows.len();
        let nf = self.data.features().len();
        let mut obs: Vec<Vec<f32>> = vec![Vec::new(); nf];
        let mut action = Vec::new();
        let mut is_pad = Vec::new();
        for &(e, t) in windows {
            let s = self.data.sample(e, t, &self.spec);
            for (o, v) in obs.iter_mut().zip(s.obs) {
                o.extend(v);
            }
            action.extend(s.action);
            is_pad.extend(s.action_is_pad);
        }
        // Same host-side normalisation as inference: vectors per element, images per channel over H·W.
        for ((o, f), n) in obs.iter_mut().zip(self.data.features()).zip(&self.norms) {
            let inner = if f.kind == FeatureKind::Visual {
                f.shape[1] * f.shape[2]
            } else {
                1
            };
            n.normalize(o, inner);
        }
        self.action_norm.normalize(&mut action, 1);
        HostBatch { b, obs, action, is_pad }
    }

    fn draw(&self, rng: &mut StdRng, b: usize, train: bool) -> Draw {
        let tt = self.cfg.diffusion.num_train_timesteps;
        let timesteps = (0..b).map(|_| rng.random_range(0..tt)).collect();
        let n = b * self.config.horizon * self.config.action_dim;
        let eps = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        let cams = self.config.cameras();
        let calls = if self.config.use_separate_rgb_encoder_per_camera || cams.len() <= 1 {
            cams.len()
        } else {
            1
        };
        let crops = (0..calls)
            .map(|_| match self.config.crop_shape {
                // torchvision RandomCrop: one offset per call, uniform over every valid position.
                Some([h, w]) if train && self.cfg.model.crop_is_random => {
                    let (ih, iw) = (cams[0].shape[1], cams[0].shape[2]);
                    let top = rng.random_range(0..=ih - h);
                    let left = rng.random_range(0..=iw - w);
                    Some([top, left, h, w])
                }
                _ => None,
            })
            .collect();
        Draw { timesteps, eps, crops }
    }

    /// The windows of optimiser step `k`: epochs of seeded permutations, LeRobot-style shuffling.
    fn batch_windows(&mut self, k: usize) -> Vec<(usize, usize)> {
        let n = self.train_windows.len();
        let bs = self.cfg.batch_size.min(n);
        let per_epoch = n / bs;
        let (epoch, i) = (k / per_epoch, k % per_epoch);
        if self.epoch_perm.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut perm: Vec<usize> = (0..n).collect();
            perm.shuffle(&mut stream_rng(self.cfg.seed, STREAM_EPOCH, epoch as u64));
            self.epoch_perm = Some((epoch, perm));
        }
        let perm = &self.epoch_perm.as_ref().expect("set above").1;
        perm[i * bs..(i + 1) * bs]
            .iter()
            .map(|&j| self.train_windows[j])
            .collect()
    }

    /// One optimiser step.
    pub fn train_step(&mut self) -> Result<StepStats, PolicyError> {
        let t0 = Instant::now();
        let k = self.step;
        let mut rng = stream_rng(self.cfg.seed, STREAM_STEP, k as u64);
        let (batch, loss, model) = if let Some(d) = &self.distill {
            // Pool trajectories and one state of each, the first (pure noise) one with probability
            // `one_step_fraction`.
            let kk = d.timesteps.len();
            let picks: Vec<(usize, usize)> = (0..self.cfg.batch_size)
                .map(|_| {
                    let p = rng.random_range(0..d.windows.len());
                    let s = if kk == 1 || rng.random_bool(d.one_step_fraction) {
                        0
                    } else {
                        rng.random_range(1..kk)
                    };
                    (p, s)
                })
                .collect();
            let windows: Vec<_> = picks.iter().map(|&(p, _)| d.windows[p]).collect();
            let batch = self.host_batch(&windows);
            let draw = self.draw(&mut rng, batch.b, true);
            let model = self.model.take().expect("model present");
            let loss = distill_loss(&model, &self.config, d, &picks, &batch, &draw, &self.device);
            (batch, loss, model)
        } else if self.trunc.is_some() {
            let windows = self.batch_windows(k);
            let batch = self.host_batch(&windows);
            let mut draw = self.draw(&mut rng, batch.b, true);
            let model = self.model.take().expect("model present");
            let tr = self.trunc.as_mut().expect("checked");
            let tmax = tr.sampling.trunc_timestep;
            draw.timesteps = (0..batch.b).map(|_| rng.random_range(0..=tmax)).collect();
            let head = tr.head.take().expect("score head present");
            let loss = truncated_loss(
                &model,
                &head,
                &self.config,
                &tr.anchors,
                tr.score_weight,
                &self.alphas_cumprod,
                &batch,
                &draw,
                &self.device,
            );
            tr.head = Some(head);
            (batch, loss, model)
        } else {
            let windows = self.batch_windows(k);
            let batch = self.host_batch(&windows);
            let draw = self.draw(&mut rng, batch.b, true);
            let model = self.model.take().expect("model present");
            let loss = batch_loss(
                &model,
                &self.config,
                &self.cfg,
                &self.alphas_cumprod,
                &batch,
                &draw,
                &self.device,
            );
            (batch, loss, model)
        };
        let loss_value = loss.clone().detach().inner();
        let mut grads = loss.backward();
        let lr = self.cfg.lr_at(k);
        if let Some(tr) = &mut self.trunc {
            let head = tr.head.take().expect("score head present");
            let hg = GradientsParams::from_module(&mut grads, &head);
            tr.head = Some(tr.optim.step(lr, head, hg));
        }
        let mut grads = GradientsParams::from_grads(grads, &model);
        let mut norm = GradNormSq::<B> {
            grads: &grads,
            acc: None,
        };
        model.visit(&mut norm);
        let grad_norm = norm
            .acc
            .map(|a| a.sqrt())
            .unwrap_or_else(|| Tensor::zeros([1], &self.device));
        let max_norm = self.cfg.optim.grad_clip_norm;
        if max_norm > 0.0 {
            // torch's clip_grad_norm_: scale by min(1, max / (‖g‖ + 1e-6)).
            let coef = grad_norm
                .clone()
                .add_scalar(1e-6)
                .recip()
                .mul_scalar(max_norm)
                .clamp_max(1.0);
            model.visit(&mut GradScale::<B> {
                grads: &mut grads,
                coef,
            });
        }
        let model = self.optim.step(lr, model, grads);
        let decay = self.cfg.ema.decay(k);
        let mut live = Collect { out: HashMap::new() };
        model.valid().visit(&mut live);
        self.ema = self.ema.clone().map(&mut EmaUpdate { live: live.out, decay });
        self.model = Some(model);
        self.step += 1;
        let both = Tensor::cat(vec![loss_value, grad_norm], 0)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 scalars");
        let loss = both[0] as f64;
        if !loss.is_finite() {
            return Err(PolicyError::Input(format!(
                "training diverged: loss is {loss} at step {}; lower optim.lr or check the data",
                self.step
            )));
        }
        self.losses.push(both[0]);
        let elapsed = t0.elapsed().as_secs_f64();
        Ok(StepStats {
            step: self.step,
            loss,
            lr,
            grad_norm: both[1] as f64,
            batch_size: batch.b,
            samples_per_s: batch.b as f64 / elapsed.max(1e-9),
        })
    }

    /// Mean loss of the EMA model over held-out episodes (fixed order and noise, eval-mode crops);
    /// None without validation data.
    pub fn validation_loss(&mut self) -> Result<Option<f64>, PolicyError> {
        // Distillation has no held-out teacher trajectories: closed-loop evaluation is its measure.
        if self.val_windows.is_empty() || self.distill.is_some() || self.trunc.is_some() {
            return Ok(None);
        }
        let mut rng = stream_rng(self.cfg.seed, STREAM_VAL, 0);
        let (mut total, mut n) = (0.0f64, 0usize);
        let bs = self.cfg.batch_size;
        for chunk in self.val_windows.chunks(bs).take(self.cfg.val_max_batches) {
            let batch = self.host_batch(chunk);
            let draw = self.draw(&mut rng, batch.b, false);
            let loss = batch_loss(
                &self.ema,
                &self.config,
                &self.cfg,
                &self.alphas_cumprod,
                &batch,
                &draw,
                &self.device,
            );
            let v = loss.into_data().convert::<f32>().into_vec::<f32>().expect("f32 scalar")[0] as f64;
            total += v * batch.b as f64;
            n += batch.b;
        }
        let v = total / n as f64;
        self.last_val_loss = Some(v);
        Ok(Some(v))
    }

    /// The EMA weights as an inference policy (the same model a saved checkpoint loads as).
    pub fn policy(&self) -> Result<DiffusionPolicy<B::InnerBackend>, PolicyError> {
        let input_norms = self
            .data
            .features()
            .iter()
            .zip(&self.norms)
            .map(|(f, n)| (f.name.clone(), n.clone()))
            .collect();
        let p = DiffusionPolicy::new(
            self.config.clone(),
            self.ema.clone(),
            input_norms,
            self.action_norm.clone(),
            &self.backend_name,
            self.device.clone(),
        )?;
        if let Some(tr) = &self.trunc {
            let head = tr.head.as_ref().expect("score head present").valid();
            let (h, a) = (self.config.horizon, self.config.action_dim);
            let anchors = crate::tensor::HostTensor::new(vec![tr.sampling.n_anchors, h, a], tr.anchors.clone())?;
            return p.with_truncated(crate::truncated::TruncatedParts {
                sampling: tr.sampling.clone(),
                anchors,
                score_head: head,
            });
        }
        match &self.distill {
            Some(d) => p.with_consistency(d.sampling.clone()),
            None => Ok(p),
        }
    }

    fn summary_losses(&self) -> (f64, f64) {
        let n = self.losses.len();
        if n == 0 {
            return (f64::NAN, f64::NAN);
        }
        let w = (n / 10).clamp(1, 100);
        let mean = |s: &[f32]| s.iter().map(|v| *v as f64).sum::<f64>() / s.len() as f64;
        (mean(&self.losses[..w]), mean(&self.losses[n - w..]))
    }

    fn riptide_json(&self) -> Value {
        let (initial, fin) = self.summary_losses();
        let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let mut v = json!({
            "format": 1,
            "kind": self.cfg.objective.kind(),
            "fps": self.meta.fps,
            "env": self.meta.env,
            "training": {
                "steps": self.step,
                "initial_loss": finite(initial),
                "final_loss": finite(fin),
                "final_val_loss": self.last_val_loss,
                "seed": self.cfg.seed,
                "riptide_version": env!("CARGO_PKG_VERSION"),
                "backend": self.backend_name,
                "weights": if self.cfg.ema.enabled { "ema" } else { "live" },
                "data": {
                    "description": self.meta.data,
                    "episodes": self.data.episodes().len(),
                    "frames": self.data.num_frames(),
                    "train_samples": self.train_windows.len(),
                    "val_samples": self.val_windows.len(),
                    "val_episodes": self.val_episodes,
                },
                "config": serde_json::to_value(&self.cfg).expect("config serialises"),
            }
        });
        if let Some(tr) = &self.trunc {
            v["truncated"] = serde_json::to_value(&tr.sampling).expect("sampling serialises");
        }
        if !self.cfg.data.relative_actions.is_empty() {
            // What inference must add back (see `DiffusionPolicy::with_relative_actions`).
            v["relative_actions"] = json!(self.cfg.data.relative_actions);
        }
        if let (Some(d), Objective::Consistency(c)) = (&self.distill, &self.cfg.objective) {
            v["consistency"] = serde_json::to_value(&d.sampling).expect("sampling serialises");
            v["teacher"] = json!(c.teacher.display().to_string());
        }
        v
    }

    /// Write `dir/pretrained_model/` (LeRobot layout, EMA weights; what `load_policy` and LeRobot
    /// load) and `dir/training_state/` (burn records of live weights, EMA and AdamW moments, plus
    /// `trainer.json`; what [`Self::resume`] reads).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), PolicyError> {
        write_pretrained(
            &dir.join("pretrained_model"),
            &self.ema,
            &self.config,
            &self.cfg,
            &self.stats,
            &self.riptide_json(),
        )?;
        if let Some(tr) = &self.trunc {
            let (h, a) = (self.config.horizon, self.config.action_dim);
            let anchors = crate::tensor::HostTensor::new(vec![tr.sampling.n_anchors, h, a], tr.anchors.clone())?;
            let head = tr.head.as_ref().expect("score head present").valid();
            crate::truncated::save_parts(&dir.join("pretrained_model"), &anchors, &head)?;
        }
        let ts = dir.join("training_state");
        std::fs::create_dir_all(&ts).map_err(|e| PolicyError::io(&ts, e))?;
        let rec = Rec::new();
        let model = self.model.as_ref().expect("model present").clone();
        model
            .save_file(ts.join("model"), &rec)
            .map_err(|e| recorder_err(&ts.join("model.mpk"), e))?;
        self.ema
            .clone()
            .save_file(ts.join("ema"), &rec)
            .map_err(|e| recorder_err(&ts.join("ema.mpk"), e))?;
        Recorder::<B>::record(&rec, self.optim.to_record(), ts.join("optimizer"))
            .map_err(|e| recorder_err(&ts.join("optimizer.mpk"), e))?;
        if let Some(tr) = &self.trunc {
            tr.head
                .as_ref()
                .expect("score head present")
                .clone()
                .save_file(ts.join(SCORE_HEAD), &rec)
                .map_err(|e| recorder_err(&ts.join(format!("{SCORE_HEAD}.mpk")), e))?;
            Recorder::<B>::record(&rec, tr.optim.to_record(), ts.join(SCORE_HEAD_OPTIM))
                .map_err(|e| recorder_err(&ts.join(format!("{SCORE_HEAD_OPTIM}.mpk")), e))?;
        }
        let state = json!({
            "format": 1,
            "step": self.step,
            "config": serde_json::to_value(&self.cfg).expect("config serialises"),
            "meta": serde_json::to_value(&self.meta).expect("meta serialises"),
            "losses": self.losses,
            "last_val_loss": self.last_val_loss,
            "data_fingerprint": self.data.fingerprint(),
        });
        let p = ts.join("trainer.json");
        std::fs::write(&p, serde_json::to_string(&state).expect("state serialises")).map_err(|e| PolicyError::io(&p, e))
    }

    /// Train until `config.steps`, validating, evaluating and checkpointing as configured. With
    /// `out_dir`, checkpoints go to `out_dir/checkpoints/<step>/` (and `checkpoints/last` links to the
    /// newest), and one is always written at the end.
    pub fn run(&mut self, out_dir: Option<&Path>, hooks: &mut Hooks) -> Result<TrainSummary, PolicyError> {
        let t0 = Instant::now();
        let mut last_ckpt: Option<(usize, PathBuf)> = None;
        while self.step < self.cfg.steps {
            let s = self.train_step()?;
            let mut control = emit(hooks, TrainEvent::Step(&s));
            let k = self.step;
            let every = |n: usize| n > 0 && k.is_multiple_of(n);
            if every(self.cfg.val_every) {
                if let Some(loss) = self.validation_loss()? {
                    control = max_control(control, emit(hooks, TrainEvent::Validation { step: k, loss }));
                }
            }
            if every(self.cfg.eval_every) {
                if let Some(eval) = hooks.eval.as_mut() {
                    let mut policy = self.policy()?;
                    let metrics = eval(k, &mut policy)?;
                    control = max_control(
                        control,
                        emit(
                            hooks,
                            TrainEvent::Eval {
                                step: k,
                                metrics: &metrics,
                            },
                        ),
                    );
                }
            }
            let stop = control == Control::Stop;
            if let Some(out) = out_dir {
                if every(self.cfg.checkpoint_every) || stop || k == self.cfg.steps {
                    let dir = self.write_numbered_checkpoint(out)?;
                    emit(hooks, TrainEvent::Checkpoint { step: k, dir: &dir });
                    last_ckpt = Some((k, dir));
                }
            }
            if stop {
                break;
            }
        }
        if let Some(out) = out_dir {
            if last_ckpt.as_ref().map(|(s, _)| *s) != Some(self.step) {
                let dir = self.write_numbered_checkpoint(out)?;
                emit(
                    hooks,
                    TrainEvent::Checkpoint {
                        step: self.step,
                        dir: &dir,
                    },
                );
                last_ckpt = Some((self.step, dir));
            }
        }
        let (initial_loss, final_loss) = self.summary_losses();
        Ok(TrainSummary {
            steps: self.step,
            initial_loss,
            final_loss,
            final_val_loss: self.last_val_loss,
            wall_time_s: t0.elapsed().as_secs_f64(),
            checkpoint: last_ckpt.map(|(_, d)| d),
        })
    }

    fn write_numbered_checkpoint(&self, out: &Path) -> Result<PathBuf, PolicyError> {
        let root = out.join("checkpoints");
        let dir = root.join(format!("{:06}", self.step));
        self.save_checkpoint(&dir)?;
        #[cfg(unix)]
        {
            let last = root.join("last");
            let _ = std::fs::remove_file(&last);
            std::os::unix::fs::symlink(format!("{:06}", self.step), &last).map_err(|e| PolicyError::io(&last, e))?;
        }
        Ok(dir)
    }
}

fn emit(hooks: &mut Hooks, ev: TrainEvent) -> Control {
    match hooks.on_event.as_mut() {
        Some(f) => f(&ev),
        None => Control::Continue,
    }
}

fn max_control(a: Control, b: Control) -> Control {
    if a == Control::Stop || b == Control::Stop {
        Control::Stop
    } else {
        Control::Continue
    }
}

/// LeRobot's `_prepare_global_conditioning` on already-normalised windows: per frame [state, camera
/// features…, env], flattened time-major to [b, n_obs_steps·d]. Mirrors
/// [`DiffusionPolicy::global_conditioning`] with explicit crops.
fn global_conditioning<Bk: Backend>(
    model: &DiffusionModel<Bk>,
    config: &DiffusionConfig,
    batch: &HostBatch,
    crops: &[Option<[usize; 4]>],
    device: &Bk::Device,
) -> Tensor<Bk, 2> {
    let (b, to) = (batch.b, config.n_obs_steps);
    let idx = |kind: FeatureKind| config.inputs.iter().position(|f| f.kind == kind);
    let window = |i: usize| {
        let mut shape = vec![b, to];
        shape.extend(&config.inputs[i].shape);
        TensorData::new(batch.obs[i].clone(), shape)
    };
    let mut per_frame: Vec<Tensor<Bk, 3>> = Vec::new();
    if let Some(i) = idx(FeatureKind::State) {
        per_frame.push(Tensor::from_data(window(i), device));
    }
    let cams: Vec<usize> = (0..config.inputs.len())
        .filter(|&i| config.inputs[i].kind == FeatureKind::Visual)
        .collect();
    if !cams.is_empty() {
        let imgs: Vec<Tensor<Bk, 5>> = cams.iter().map(|&i| Tensor::from_data(window(i), device)).collect();
        let crop = |k: usize, enc: &crate::lerobot::rgb::RgbEncoder<Bk>| crops.get(k).copied().flatten().or(enc.crop);
        if model.rgb_encoder.len() == 1 && cams.len() > 1 {
            let stacked: Tensor<Bk, 6> = Tensor::stack(imgs, 2);
            let [b, s, n, c, h, w] = stacked.dims();
            let enc = &model.rgb_encoder[0];
            let feats = enc.forward_crop(stacked.reshape([b * s * n, c, h, w]), crop(0, enc));
            let d = feats.dims()[1];
            per_frame.push(feats.reshape([b, s, n * d]));
        } else {
            for (k, (enc, img)) in model.rgb_encoder.iter().cycle().zip(imgs).enumerate() {
                let [b, s, c, h, w] = img.dims();
                let feats = enc.forward_crop(img.reshape([b * s, c, h, w]), crop(k, enc));
                let d = feats.dims()[1];
                per_frame.push(feats.reshape([b, s, d]));
            }
        }
    }
    if let Some(i) = idx(FeatureKind::Env) {
        per_frame.push(Tensor::from_data(window(i), device));
    }
    let cond = Tensor::cat(per_frame, 2);
    let d = cond.dims()[2];
    cond.reshape([b, to * d])
}

/// LeRobot's `DiffusionModel.compute_loss`: forward-noise the normalised action chunk at one uniform
/// timestep per sample (diffusers' `add_noise`, in f32), predict ε or x0, MSE with copy-padded actions
/// zeroed when masking is on, mean over every element.
fn batch_loss<Bk: Backend>(
    model: &DiffusionModel<Bk>,
    config: &DiffusionConfig,
    cfg: &TrainConfig,
    alphas_cumprod: &[f32],
    batch: &HostBatch,
    draw: &Draw,
    device: &Bk::Device,
) -> Tensor<Bk, 1> {
    let (b, h, a) = (batch.b, config.horizon, config.action_dim);
    let global_cond = global_conditioning(model, config, batch, &draw.crops, device);
    let per = h * a;
    let mut noisy = vec![0.0f32; b * per];
    for i in 0..b {
        let ac = alphas_cumprod[draw.timesteps[i]];
        let (sa, sb) = (ac.sqrt(), (1.0 - ac).sqrt());
        for (j, v) in noisy.iter_mut().enumerate().take((i + 1) * per).skip(i * per) {
            *v = sa * batch.action[j] + sb * draw.eps[j];
        }
    }
    let noisy = Tensor::<Bk, 3>::from_data(TensorData::new(noisy, [b, h, a]), device);
    let pred = model.unet.forward_steps(noisy, &draw.timesteps, global_cond);
    let target = match cfg.diffusion.prediction_type {
        PredictionType::Sample => batch.action.clone(),
        _ => draw.eps.clone(),
    };
    let target = Tensor::<Bk, 3>::from_data(TensorData::new(target, [b, h, a]), device);
    let mut err = (pred - target).square();
    if cfg.diffusion.do_mask_loss_for_padding {
        let keep: Vec<f32> = batch.is_pad.iter().map(|p| if *p { 0.0 } else { 1.0 }).collect();
        err = err * Tensor::<Bk, 3>::from_data(TensorData::new(keep, [b, h, 1]), device);
    }
    err.mean()
}

/// Consistency distillation loss: MSE between the student's clean estimate at the picked teacher
/// states and the teacher's results (see [`Distill`]).
fn distill_loss<Bk: Backend>(
    model: &DiffusionModel<Bk>,
    config: &DiffusionConfig,
    d: &Distill,
    picks: &[(usize, usize)],
    batch: &HostBatch,
    draw: &Draw,
    device: &Bk::Device,
) -> Tensor<Bk, 1> {
    let (b, h, a) = (batch.b, config.horizon, config.action_dim);
    let per = h * a;
    let kk = d.timesteps.len();
    let global_cond = global_conditioning(model, config, batch, &draw.crops, device);
    let mut x = Vec::with_capacity(b * per);
    let mut target = Vec::with_capacity(b * per);
    let (mut cx, mut co, mut ts) = (Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b));
    for &(p, s) in picks {
        x.extend_from_slice(&d.states[(p * kk + s) * per..(p * kk + s + 1) * per]);
        target.extend_from_slice(&d.targets[p * per..(p + 1) * per]);
        cx.push(d.coefs[s].0);
        co.push(d.coefs[s].1);
        ts.push(d.timesteps[s]);
    }
    let x = Tensor::<Bk, 3>::from_data(TensorData::new(x, [b, h, a]), device);
    let f = model.unet.forward_steps(x.clone(), &ts, global_cond);
    let cx = Tensor::<Bk, 3>::from_data(TensorData::new(cx, [b, 1, 1]), device);
    let co = Tensor::<Bk, 3>::from_data(TensorData::new(co, [b, 1, 1]), device);
    let x0 = x * cx + f * co;
    let target = Tensor::<Bk, 3>::from_data(TensorData::new(target, [b, h, a]), device);
    (x0 - target).square().mean()
}

/// Truncated-diffusion loss: the anchor nearest to each demonstration, forward-noised to the drawn
/// timestep (≤ the truncation step) and clamped, is denoised to the demonstration (MSE on the clean
/// chunk), and the score head's cross-entropy names that anchor.
#[allow(clippy::too_many_arguments)]
fn truncated_loss<Bk: Backend>(
    model: &DiffusionModel<Bk>,
    head: &crate::truncated::ScoreHead<Bk>,
    config: &DiffusionConfig,
    anchors: &[f32],
    score_weight: f64,
    alphas_cumprod: &[f32],
    batch: &HostBatch,
    draw: &Draw,
    device: &Bk::Device,
) -> Tensor<Bk, 1> {
    let (b, h, a) = (batch.b, config.horizon, config.action_dim);
    let per = h * a;
    let k = anchors.len() / per;
    let global_cond = global_conditioning(model, config, batch, &draw.crops, device);
    let mut noisy = vec![0.0f32; b * per];
    let mut target_idx = Vec::with_capacity(b);
    for i in 0..b {
        let gt = &batch.action[i * per..(i + 1) * per];
        let j = crate::truncated::nearest(gt, anchors, per);
        target_idx.push(j as i64);
        let ac = alphas_cumprod[draw.timesteps[i]];
        let (sa, sb) = (ac.sqrt(), (1.0 - ac).sqrt());
        for q in 0..per {
            noisy[i * per + q] = (sa * anchors[j * per + q] + sb * draw.eps[i * per + q]).clamp(-1.0, 1.0);
        }
    }
    let noisy = Tensor::<Bk, 3>::from_data(TensorData::new(noisy, [b, h, a]), device);
    let pred = model.unet.forward_steps(noisy, &draw.timesteps, global_cond.clone());
    let target = Tensor::<Bk, 3>::from_data(TensorData::new(batch.action.clone(), [b, h, a]), device);
    let mse = (pred - target).square().mean();
    let logits = head.forward(global_cond);
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let onehot: Vec<f32> = target_idx
        .iter()
        .flat_map(|&j| (0..k).map(move |c| if c as i64 == j { 1.0 } else { 0.0 }))
        .collect();
    let onehot = Tensor::<Bk, 2>::from_data(TensorData::new(onehot, [b, k]), device);
    let ce = (logp * onehot).sum().neg().div_scalar(b as f32);
    mse + ce.mul_scalar(score_weight)
}
