//! `TrainConfig`: everything a training run needs, read from TOML.
//!
//! Defaults are LeRobot 0.4.4's `DiffusionConfig` defaults (the PushT-size U-Net, DDPM, 100 train
//! steps, AdamW 1e-4 with betas (0.95, 0.999), cosine schedule with 500 warm-up steps), so a config only
//! lists what differs. Unknown keys are errors that name the key: a typo must not silently train
//! with a default.

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::normalize::NormMode;
use crate::schedule::{BetaSchedule, PredictionType, SchedulerKind};
use crate::spec::{FeatureKind, PolicyKind};

/// What a run trains: one policy kind, chosen in the TOML by at most one of the `[consistency]`,
/// `[truncated]` and `[mode]` sections (none = a diffusion policy).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Objective {
    /// A U-Net diffusion policy, LeRobot's objective.
    #[default]
    Diffusion,
    /// Distil a one-step consistency student from a trained diffusion teacher; `[model]` and
    /// `[diffusion]` then come from the teacher.
    Consistency(ConsistencyTrainConfig),
    /// Truncated diffusion with k-means anchors and a score head (`riptide_policies::truncated`); the
    /// U-Net is trained to predict the clean chunk.
    Truncated(TruncatedTrainSection),
    /// A MoDE policy (`riptide_policies::mode`) instead of a U-Net; windows come from `[model]`,
    /// optimiser settings from `[optim]`.
    Mode(ModeTrainSection),
}

impl Objective {
    /// The kind of policy the run writes.
    pub fn kind(&self) -> PolicyKind {
        match self {
            Self::Diffusion => PolicyKind::Diffusion,
            Self::Consistency(_) => PolicyKind::Consistency,
            Self::Truncated(_) => PolicyKind::Truncated,
            Self::Mode(_) => PolicyKind::Mode,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TrainConfigFile", into = "TrainConfigFile")]
pub struct TrainConfig {
    /// Seeds weight init, batch order, timesteps, noise and crops. Same seed → same run on the CPU.
    pub seed: u64,
    /// Optimiser steps of the whole run (also the length of the cosine schedule).
    pub steps: usize,
    pub batch_size: usize,
    pub model: ModelConfig,
    pub diffusion: DiffusionTrainConfig,
    pub optim: OptimConfig,
    pub ema: EmaConfig,
    pub normalization: NormalizationConfig,
    pub data: DataConfig,
    /// Validation loss every N steps (0 = never). Needs `data.val_fraction > 0`.
    pub val_every: usize,
    /// Cap on validation batches per evaluation (they run in a fixed order with fixed noise).
    pub val_max_batches: usize,
    /// Write a checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: usize,
    /// Call the evaluation hook every N steps (0 = never).
    pub eval_every: usize,
    /// The policy kind trained, from the `[consistency]`, `[truncated]` or `[mode]` section.
    pub objective: Objective,
    /// Start from this diffusion checkpoint's weights instead of a seeded init (fine-tuning), with fresh
    /// optimiser state; its environment_state may be an older, shorter layout (`train::init`).
    pub init_from: Option<std::path::PathBuf>,
}

impl TrainConfig {
    pub fn consistency(&self) -> Option<&ConsistencyTrainConfig> {
        match &self.objective {
            Objective::Consistency(c) => Some(c),
            _ => None,
        }
    }

    pub fn truncated(&self) -> Option<&TruncatedTrainSection> {
        match &self.objective {
            Objective::Truncated(t) => Some(t),
            _ => None,
        }
    }

    pub fn mode(&self) -> Option<&ModeTrainSection> {
        match &self.objective {
            Objective::Mode(m) => Some(m),
            _ => None,
        }
    }
}

/// [`TrainConfig`] as the TOML file spells it: the objective as optional sections, checked into one
/// [`Objective`] on parsing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainConfigFile {
    seed: u64,
    steps: usize,
    batch_size: usize,
    model: ModelConfig,
    diffusion: DiffusionTrainConfig,
    optim: OptimConfig,
    ema: EmaConfig,
    normalization: NormalizationConfig,
    data: DataConfig,
    val_every: usize,
    val_max_batches: usize,
    checkpoint_every: usize,
    eval_every: usize,
    consistency: Option<ConsistencyTrainConfig>,
    mode: Option<ModeTrainSection>,
    truncated: Option<TruncatedTrainSection>,
    init_from: Option<std::path::PathBuf>,
}

impl Default for TrainConfigFile {
    fn default() -> Self {
        TrainConfig::default().into()
    }
}

impl TryFrom<TrainConfigFile> for TrainConfig {
    type Error = String;

    fn try_from(f: TrainConfigFile) -> Result<Self, String> {
        let objective = match (f.consistency, f.truncated, f.mode) {
            (None, None, None) => Objective::Diffusion,
            (Some(c), None, None) => Objective::Consistency(c),
            (None, Some(t), None) => Objective::Truncated(t),
            (None, None, Some(m)) => Objective::Mode(m),
            _ => return Err("[mode], [consistency] and [truncated] cannot be combined: pick one policy kind".into()),
        };
        Ok(Self {
            seed: f.seed,
            steps: f.steps,
            batch_size: f.batch_size,
            model: f.model,
            diffusion: f.diffusion,
            optim: f.optim,
            ema: f.ema,
            normalization: f.normalization,
            data: f.data,
            val_every: f.val_every,
            val_max_batches: f.val_max_batches,
            checkpoint_every: f.checkpoint_every,
            eval_every: f.eval_every,
            objective,
            init_from: f.init_from,
        })
    }
}

impl From<TrainConfig> for TrainConfigFile {
    fn from(c: TrainConfig) -> Self {
        let (mut consistency, mut truncated, mut mode) = (None, None, None);
        match c.objective {
            Objective::Diffusion => {}
            Objective::Consistency(x) => consistency = Some(x),
            Objective::Truncated(x) => truncated = Some(x),
            Objective::Mode(x) => mode = Some(x),
        }
        Self {
            seed: c.seed,
            steps: c.steps,
            batch_size: c.batch_size,
            model: c.model,
            diffusion: c.diffusion,
            optim: c.optim,
            ema: c.ema,
            normalization: c.normalization,
            data: c.data,
            val_every: c.val_every,
            val_max_batches: c.val_max_batches,
            checkpoint_every: c.checkpoint_every,
            eval_every: c.eval_every,
            consistency,
            mode,
            truncated,
            init_from: c.init_from,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TruncatedTrainSection {
    /// Anchors: k-means centres of the (normalised) training action chunks.
    pub n_anchors: usize,
    /// Training noises anchors at timesteps 0..=trunc_timestep only; inference enters there.
    pub trunc_timestep: usize,
    /// Weight of the score head's cross-entropy next to the denoising MSE.
    pub score_weight: f64,
    pub score_hidden: usize,
    pub kmeans_iters: usize,
    pub select: crate::truncated::ModeSelect,
}

impl Default for TruncatedTrainSection {
    fn default() -> Self {
        Self {
            n_anchors: 16,
            trunc_timestep: 10,
            score_weight: 0.1,
            score_hidden: 128,
            kmeans_iters: 50,
            select: crate::truncated::ModeSelect::Argmax,
        }
    }
}

/// The MoDE transformer's shape and its trainer's extra knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeTrainSection {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_experts: usize,
    pub top_k: usize,
    pub num_inference_steps: usize,
    /// Weight of the load-balancing loss.
    pub aux_weight: f64,
}

impl Default for ModeTrainSection {
    fn default() -> Self {
        Self {
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            n_experts: 4,
            top_k: 2,
            num_inference_steps: 10,
            aux_weight: 0.01,
        }
    }
}

/// Consistency distillation (see `train/trainer.rs`): the student learns the teacher's DDIM solution
/// map, f(x_t, t) = Ψ_teacher(x_t → 0), on states along the teacher's own sampling trajectories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistencyTrainConfig {
    /// The teacher checkpoint (a diffusion `pretrained_model/` trained on the same data).
    pub teacher: std::path::PathBuf,
    /// σ_d of the boundary scalings.
    pub sigma_data: f64,
    /// Teacher trajectories generated once before training (window, noise, every DDIM state, result).
    pub pool_size: usize,
    /// Fraction of training samples taken at the first (pure-noise) state: the one-step case.
    pub one_step_fraction: f64,
    /// Student inference timesteps (descending); default: the teacher's first timestep only.
    pub timesteps: Option<Vec<usize>>,
    /// Teacher DDIM steps per trajectory; default: the teacher's own.
    pub teacher_steps: Option<usize>,
}

impl Default for ConsistencyTrainConfig {
    fn default() -> Self {
        Self {
            teacher: std::path::PathBuf::new(),
            sigma_data: 0.5,
            pool_size: 4096,
            one_step_fraction: 0.5,
            timesteps: None,
            teacher_steps: None,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            steps: 100_000,
            batch_size: 64,
            model: ModelConfig::default(),
            diffusion: DiffusionTrainConfig::default(),
            optim: OptimConfig::default(),
            ema: EmaConfig::default(),
            normalization: NormalizationConfig::default(),
            data: DataConfig::default(),
            val_every: 0,
            val_max_batches: 8,
            checkpoint_every: 0,
            eval_every: 0,
            objective: Objective::Diffusion,
            init_from: None,
        }
    }
}

/// Network shape and observation/action windows (LeRobot field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub n_obs_steps: usize,
    pub horizon: usize,
    pub n_action_steps: usize,
    pub down_dims: Vec<usize>,
    pub kernel_size: usize,
    pub n_groups: usize,
    pub diffusion_step_embed_dim: usize,
    pub use_film_scale_modulation: bool,
    /// Vision: crop (height, width) of camera images; random at training time when `crop_is_random`.
    pub crop_shape: Option<[usize; 2]>,
    pub crop_is_random: bool,
    /// GroupNorm instead of BatchNorm in the ResNet18 trunk (LeRobot's default; no pretrained weights).
    pub use_group_norm: bool,
    pub spatial_softmax_num_keypoints: usize,
    pub use_separate_rgb_encoder_per_camera: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            n_obs_steps: 2,
            horizon: 16,
            n_action_steps: 8,
            down_dims: vec![512, 1024, 2048],
            kernel_size: 5,
            n_groups: 8,
            diffusion_step_embed_dim: 128,
            use_film_scale_modulation: true,
            crop_shape: None,
            crop_is_random: true,
            use_group_norm: true,
            spatial_softmax_num_keypoints: 32,
            use_separate_rgb_encoder_per_camera: false,
        }
    }
}

/// The noise schedule trained on, and the inference scheduler written into the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffusionTrainConfig {
    /// "DDPM" or "DDIM": only affects inference (written as `noise_scheduler_type`).
    pub noise_scheduler_type: String,
    pub num_inference_steps: Option<usize>,
    pub num_train_timesteps: usize,
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    /// "epsilon" (default) or "sample"; LeRobot trains no other target.
    pub prediction_type: PredictionType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    /// Zero the loss on copy-padded actions past the episode edges (LeRobot's
    /// `do_mask_loss_for_padding`; LeRobot defaults to false, riptide to true).
    pub do_mask_loss_for_padding: bool,
}

impl Default for DiffusionTrainConfig {
    fn default() -> Self {
        Self {
            noise_scheduler_type: "DDPM".into(),
            num_inference_steps: None,
            num_train_timesteps: 100,
            beta_schedule: BetaSchedule::SquaredcosCapV2,
            beta_start: 1e-4,
            beta_end: 0.02,
            prediction_type: PredictionType::Epsilon,
            clip_sample: true,
            clip_sample_range: 1.0,
            do_mask_loss_for_padding: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// diffusers' `get_cosine_schedule_with_warmup` (half a cycle), LeRobot's diffusion preset.
    Cosine,
    /// Linear warm-up, then constant.
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Clip the global gradient L2 norm (over all parameters, as torch's `clip_grad_norm_`); 0 = off.
    pub grad_clip_norm: f64,
    pub warmup_steps: usize,
    pub lr_schedule: LrSchedule,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            betas: [0.95, 0.999],
            eps: 1e-8,
            weight_decay: 1e-6,
            grad_clip_norm: 10.0,
            warmup_steps: 500,
            lr_schedule: LrSchedule::Cosine,
        }
    }
}

/// Exponential moving average of the weights, with the power warm-up of the original Diffusion
/// Policy code (its `EMAModel`, update_after_step = 0): after optimiser step k (0-based) the decay is
/// clamp(1 − (1 + (k−1)/inv_gamma)^−power, min, max), and 0 (a plain copy) for k ≤ 1. Early decays are
/// small, so a short run's EMA weights are not stuck near the initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmaConfig {
    /// false = the saved weights are the live ones.
    pub enabled: bool,
    pub power: f64,
    pub inv_gamma: f64,
    pub min_decay: f64,
    pub max_decay: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            power: 0.75,
            inv_gamma: 1.0,
            min_decay: 0.0,
            max_decay: 0.9999,
        }
    }
}

impl EmaConfig {
    /// Decay of the update after optimiser step `k` (0-based).
    pub fn decay(&self, k: usize) -> f64 {
        let s = k.saturating_sub(1);
        if !self.enabled || s == 0 {
            return 0.0;
        }
        let v = 1.0 - (1.0 + s as f64 / self.inv_gamma).powf(-self.power);
        v.clamp(self.min_decay, self.max_decay)
    }
}

/// Normalisation per feature type, written into `normalization_mapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NormChoice {
    MeanStd,
    MinMax,
    Identity,
}

impl NormChoice {
    pub fn mode(self) -> NormMode {
        match self {
            Self::MeanStd => NormMode::MeanStd,
            Self::MinMax => NormMode::MinMax,
            Self::Identity => NormMode::Identity,
        }
    }

    pub fn lerobot_name(self) -> &'static str {
        match self {
            Self::MeanStd => "MEAN_STD",
            Self::MinMax => "MIN_MAX",
            Self::Identity => "IDENTITY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizationConfig {
    #[serde(rename = "VISUAL")]
    pub visual: NormChoice,
    #[serde(rename = "STATE")]
    pub state: NormChoice,
    #[serde(rename = "ENV")]
    pub env: NormChoice,
    #[serde(rename = "ACTION")]
    pub action: NormChoice,
}

impl Default for NormalizationConfig {
    fn default() -> Self {
        Self {
            visual: NormChoice::MeanStd,
            state: NormChoice::MinMax,
            env: NormChoice::MinMax,
            action: NormChoice::MinMax,
        }
    }
}

impl NormalizationConfig {
    pub fn for_kind(&self, kind: FeatureKind) -> NormChoice {
        match kind {
            FeatureKind::Visual => self.visual,
            FeatureKind::State => self.state,
            FeatureKind::Env => self.env,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Fraction of episodes held out for the validation loss (0 = none).
    pub val_fraction: f64,
    /// Windows whose current step is among an episode's last N frames are not sampled (LeRobot's
    /// `drop_n_last_frames`); None = horizon − n_action_steps − n_obs_steps + 1, LeRobot's choice.
    pub drop_n_last_frames: Option<usize>,
    /// `[action index, observation.state index]` pairs: that action value is trained (and predicted) as
    /// an offset from that state value of the newest observed frame, e.g. a position setpoint relative to
    /// the measured position (diffusion and truncated runs; a consistency student adopts its teacher's
    /// pairs; not MoDE). Empty = absolute actions, as LeRobot trains.
    pub relative_actions: Vec<[usize; 2]>,
    /// With `init_from`: normalise with the stats that checkpoint was trained with instead of this data's.
    /// New data that reaches further (DAgger episodes push the block to the walls) would otherwise widen
    /// min/max ranges and shift every input the network learned on; values outside the old range then
    /// normalise past ±1. Stats of environment_state values a grown layout appends come from the data.
    pub stats_from_init: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            val_fraction: 0.0,
            drop_n_last_frames: None,
            relative_actions: Vec::new(),
            stats_from_init: false,
        }
    }
}

impl TrainConfig {
    /// Parse TOML; unknown keys and bad values are errors naming the key (and line).
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyError> {
        let cfg: Self = toml::from_str(text).map_err(|e| PolicyError::Config(format!("train config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, e))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            PolicyError::Config(m) => PolicyError::Config(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("TrainConfig serialises to TOML")
    }

    pub fn scheduler_kind(&self) -> Result<SchedulerKind, PolicyError> {
        SchedulerKind::parse(&self.diffusion.noise_scheduler_type)
            .map_err(|e| PolicyError::Config(format!("diffusion.noise_scheduler_type: {e}")))
    }

    /// `drop_n_last_frames` after applying LeRobot's default.
    pub fn drop_n_last_frames(&self) -> usize {
        let m = &self.model;
        self.data
            .drop_n_last_frames
            .unwrap_or((m.horizon + 1).saturating_sub(m.n_action_steps + m.n_obs_steps))
    }

    /// Checks of trainer-specific keys; the network shape is checked against the data in
    /// [`super::Trainer::new`] (where feature sizes are known).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |m: String| Err(PolicyError::Config(format!("train config: {m}")));
        if self.steps == 0 {
            return err("steps must be > 0".into());
        }
        if self.batch_size == 0 {
            return err("batch_size must be > 0".into());
        }
        self.scheduler_kind()?;
        let d = &self.diffusion;
        if !matches!(d.prediction_type, PredictionType::Epsilon | PredictionType::Sample) {
            return err(format!(
                "diffusion.prediction_type = {:?}: LeRobot's diffusion policy trains \"epsilon\" or \"sample\"",
                d.prediction_type
            ));
        }
        if d.num_train_timesteps == 0 {
            return err("diffusion.num_train_timesteps must be > 0".into());
        }
        if let Some(n) = d.num_inference_steps {
            if n == 0 || n > d.num_train_timesteps {
                return err(format!(
                    "diffusion.num_inference_steps = {n} must be in 1..={} (diffusion.num_train_timesteps)",
                    d.num_train_timesteps
                ));
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return err(format!("optim.lr = {} must be a positive number", o.lr));
        }
        if o.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return err(format!("optim.betas = {:?} must lie in [0, 1)", o.betas));
        }
        if !(o.eps > 0.0) || o.weight_decay < 0.0 || o.grad_clip_norm < 0.0 {
            return err("optim.eps must be > 0, optim.weight_decay and optim.grad_clip_norm ≥ 0".into());
        }
        let e = &self.ema;
        if e.enabled && !(e.power > 0.0 && e.inv_gamma > 0.0 && e.min_decay <= e.max_decay && e.max_decay < 1.0) {
            return err("ema: need power > 0, inv_gamma > 0, min_decay ≤ max_decay < 1".into());
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return err(format!(
                "data.val_fraction = {} must lie in [0, 1)",
                self.data.val_fraction
            ));
        }
        if self.val_every > 0 && self.data.val_fraction == 0.0 {
            return err("val_every > 0 needs data.val_fraction > 0 (no episodes are held out)".into());
        }
        if self.val_max_batches == 0 {
            return err("val_max_batches must be > 0".into());
        }
        if let Objective::Truncated(t) = &self.objective {
            if t.n_anchors < 1 || t.trunc_timestep < 2 || t.trunc_timestep >= self.diffusion.num_train_timesteps {
                return err(format!(
                    "truncated: need n_anchors ≥ 1 and 2 ≤ trunc_timestep < diffusion.num_train_timesteps ({}), got {} / {}",
                    self.diffusion.num_train_timesteps, t.n_anchors, t.trunc_timestep
                ));
            }
        }
        if let Objective::Consistency(c) = &self.objective {
            if c.teacher.as_os_str().is_empty() {
                return err("consistency.teacher must name the teacher checkpoint".into());
            }
            if !(c.sigma_data > 0.0 && c.sigma_data.is_finite()) {
                return err(format!("consistency.sigma_data = {} must be > 0", c.sigma_data));
            }
            if c.pool_size == 0 {
                return err("consistency.pool_size must be > 0".into());
            }
            if !(0.0..=1.0).contains(&c.one_step_fraction) {
                return err(format!(
                    "consistency.one_step_fraction = {} must lie in [0, 1]",
                    c.one_step_fraction
                ));
            }
        }
        Ok(())
    }

    /// Learning rate of optimiser step `k` (0-based), as LeRobot's diffusers schedule gives it: the
    /// first step runs at lr·0 when there is a warm-up.
    pub fn lr_at(&self, k: usize) -> f64 {
        let o = &self.optim;
        let w = o.warmup_steps;
        if k < w {
            return o.lr * k as f64 / w.max(1) as f64;
        }
        match o.lr_schedule {
            LrSchedule::Constant => o.lr,
            LrSchedule::Cosine => {
                let progress = (k - w) as f64 / (self.steps.saturating_sub(w)).max(1) as f64;
                o.lr * (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let e = TrainConfig::from_toml_str("steps = 10\n[optim]\nlrr = 1e-3\n").unwrap_err();
        assert!(e.to_string().contains("lrr"), "{e}");
        let e = TrainConfig::from_toml_str("stepz = 10\n").unwrap_err();
        assert!(e.to_string().contains("stepz"), "{e}");
    }

    #[test]
    fn partial_config_keeps_lerobot_defaults_and_round_trips() {
        let c = TrainConfig::from_toml_str(
            "steps = 500\n[model]\ndown_dims = [16, 32]\n[normalization]\nENV = \"IDENTITY\"\n",
        )
        .unwrap();
        assert_eq!(c.model.down_dims, vec![16, 32]);
        assert_eq!(c.model.kernel_size, 5);
        assert_eq!(c.normalization.env, NormChoice::Identity);
        assert_eq!(c.optim.betas, [0.95, 0.999]);
        assert_eq!(TrainConfig::from_toml_str(&c.to_toml_string()).unwrap(), c);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = TrainConfig::from_toml_str("[diffusion]\nprediction_type = \"v_prediction\"\n").unwrap_err();
        assert!(e.to_string().contains("diffusion.prediction_type"), "{e}");
        let e = TrainConfig::from_toml_str("[diffusion]\nnoise_scheduler_type = \"PNDM\"\n").unwrap_err();
        assert!(e.to_string().contains("noise_scheduler_type"), "{e}");
    }

    #[test]
    fn cosine_with_warmup_matches_diffusers() {
        let mut c = TrainConfig {
            steps: 1000,
            ..Default::default()
        };
        c.optim.warmup_steps = 100;
        assert_eq!(c.lr_at(0), 0.0);
        assert!((c.lr_at(50) - 0.5e-4).abs() < 1e-12);
        assert!((c.lr_at(100) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(550) - 0.5e-4).abs() < 1e-9);
        assert!(c.lr_at(1000).abs() < 1e-12);
    }

    #[test]
    fn every_shipped_train_config_parses_and_picks_its_kind() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shipped");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("train-") && name.ends_with(".toml")) {
                continue;
            }
            let c = TrainConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = if name.contains("consistency") {
                PolicyKind::Consistency
            } else if name.contains("truncated") {
                PolicyKind::Truncated
            } else if name.contains("mode") {
                PolicyKind::Mode
            } else {
                PolicyKind::Diffusion
            };
            assert_eq!(c.objective.kind(), want, "{name}");
            assert_eq!(TrainConfig::from_toml_str(&c.to_toml_string()).unwrap(), c, "{name}");
            seen.push(name);
        }
        assert!(seen.len() >= 8, "found only {seen:?} in {}", dir.display());
    }

    #[test]
    fn two_objectives_are_one_error() {
        for text in ["[mode]\n[truncated]\n", "[consistency]\nteacher = \"t\"\n[truncated]\n"] {
            let e = TrainConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains("cannot be combined: pick one policy kind"), "{e}");
        }
        let c = TrainConfig::from_toml_str("[truncated]\nn_anchors = 4\n").unwrap();
        assert_eq!(c.truncated().map(|t| t.n_anchors), Some(4));
        assert_eq!(c.objective.kind(), PolicyKind::Truncated);
    }

    #[test]
    fn ema_decay_warms_up() {
        let e = EmaConfig::default();
        assert_eq!(e.decay(0), 0.0);
        assert_eq!(e.decay(1), 0.0);
        assert!((e.decay(2) - (1.0 - 2f64.powf(-0.75))).abs() < 1e-12);
        assert!(e.decay(101) > 0.96 && e.decay(101) < 0.97);
        assert_eq!(e.decay(1 << 40), 0.9999);
    }
}
