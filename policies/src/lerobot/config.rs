//! Reading a LeRobot `DiffusionConfig` from `config.json`.
//!
//! Nothing is assumed from LeRobot's current defaults: every field that shapes the network or the
//! sampler must be present. Fields that older LeRobot versions did not write take the meaning they
//! had in those versions; each such fallback is logged.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::PolicyError;
use crate::normalize::NormMode;
use crate::policy::{FeatureKind, InputFeature};
use crate::schedule::{BetaSchedule, PredictionType, ScheduleConfig, SchedulerKind};

/// The parts of LeRobot's `DiffusionConfig` riptide needs, validated.
#[derive(Debug, Clone)]
pub struct DiffusionConfig {
    /// Input features in config order (camera order = order of VISUAL features here, as in LeRobot).
    pub inputs: Vec<InputFeature>,
    pub action_dim: usize,
    pub norm_modes: BTreeMap<String, NormMode>,
    pub n_obs_steps: usize,
    pub horizon: usize,
    pub n_action_steps: usize,
    pub crop_shape: Option<[usize; 2]>,
    pub use_group_norm: bool,
    pub spatial_softmax_num_keypoints: usize,
    pub use_separate_rgb_encoder_per_camera: bool,
    pub down_dims: Vec<usize>,
    pub kernel_size: usize,
    pub n_groups: usize,
    pub diffusion_step_embed_dim: usize,
    pub use_film_scale_modulation: bool,
    pub schedule: ScheduleConfig,
    pub num_inference_steps: usize,
    /// Notes about fields filled in for older config versions (also logged).
    pub notes: Vec<String>,
}

/// Input features, the state dimension and each feature's normalisation mode.
type Features = (Vec<InputFeature>, usize, BTreeMap<String, NormMode>);

impl DiffusionConfig {
    pub fn cameras(&self) -> Vec<&InputFeature> {
        self.inputs.iter().filter(|f| f.kind == FeatureKind::Visual).collect()
    }

    pub fn feature(&self, kind: FeatureKind) -> Option<&InputFeature> {
        self.inputs.iter().find(|f| f.kind == kind)
    }

    /// Per-frame width of the global conditioning: state + cameras·2K + env.
    pub fn obs_feature_dim(&self) -> usize {
        let vec_dim = |k| self.feature(k).map(|f: &InputFeature| f.shape[0]).unwrap_or(0);
        vec_dim(FeatureKind::State)
            + self.cameras().len() * 2 * self.spatial_softmax_num_keypoints
            + vec_dim(FeatureKind::Env)
    }

    pub fn global_cond_dim(&self) -> usize {
        self.obs_feature_dim() * self.n_obs_steps
    }

    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError::Config(format!("config.json is not valid JSON: {e}")))?;
        let obj = root
            .as_object()
            .ok_or_else(|| PolicyError::Config("config.json must hold a JSON object".into()))?;
        let mut c = Reader { obj, notes: Vec::new() };
        if let Some(t) = obj.get("type").and_then(Value::as_str) {
            if t != "diffusion" {
                return Err(PolicyError::Config(format!(
                    "config.json has type {t:?}; riptide loads LeRobot \"diffusion\" policies from this loader"
                )));
            }
        }
        let (inputs, action_dim, norm_modes) = c.features()?;
        let has_camera = inputs.iter().any(|f| f.kind == FeatureKind::Visual);
        let n_obs_steps = c.usize("n_obs_steps")?;
        let horizon = c.usize("horizon")?;
        let n_action_steps = c.usize("n_action_steps")?;
        let down_dims = c.usize_list("down_dims")?;
        if down_dims.is_empty() {
            return Err(PolicyError::Config("down_dims must not be empty".into()));
        }
        let num_train_timesteps = c.usize("num_train_timesteps")?;
        let schedule = ScheduleConfig {
            kind: SchedulerKind::parse(c.str("noise_scheduler_type")?)?,
            num_train_timesteps,
            beta_schedule: BetaSchedule::parse(c.str("beta_schedule")?)?,
            beta_start: c.f64("beta_start")?,
            beta_end: c.f64("beta_end")?,
            prediction_type: PredictionType::parse(c.str("prediction_type")?)?,
            clip_sample: c.bool("clip_sample")?,
            clip_sample_range: c.f64("clip_sample_range")?,
        };
        let num_inference_steps = match c.get("num_inference_steps")? {
            Value::Null => num_train_timesteps,
            v => v.as_u64().map(|v| v as usize).ok_or_else(|| {
                PolicyError::Config(format!("num_inference_steps must be an integer or null, got {v}"))
            })?,
        };
        let (crop_shape, use_group_norm, kp, separate) = if has_camera {
            let backbone = c.str("vision_backbone")?;
            if backbone != "resnet18" {
                return Err(PolicyError::Config(format!(
                    "vision_backbone = {backbone:?} is not supported yet (riptide implements resnet18)"
                )));
            }
            if let Some(v) = obj.get("resize_shape") {
                if !v.is_null() {
                    return Err(PolicyError::Config(
                        "resize_shape is set; riptide does not implement the model-side resize yet \
                         (resize images before they reach the policy)"
                            .into(),
                    ));
                }
            }
            // crop_ratio (LeRobot ≥ 2026-05) derives the crop from the image size; absent = 1.0 (no ratio crop).
            if let Some(r) = obj.get("crop_ratio").and_then(Value::as_f64) {
                if (r - 1.0).abs() > 1e-12 {
                    return Err(PolicyError::Config(format!(
                        "crop_ratio = {r} is not supported yet (riptide implements crop_shape); re-export with crop_ratio = 1.0"
                    )));
                }
            }
            let crop = match c.get("crop_shape")? {
                Value::Null => None,
                v => {
                    let l = usize_list(v, "crop_shape")?;
                    if l.len() != 2 {
                        return Err(PolicyError::Config(format!(
                            "crop_shape must be [height, width], got {v}"
                        )));
                    }
                    Some([l[0], l[1]])
                }
            };
            let separate = match obj.get("use_separate_rgb_encoder_per_camera") {
                Some(v) => v.as_bool().ok_or_else(|| {
                    PolicyError::Config("use_separate_rgb_encoder_per_camera must be true or false".into())
                })?,
                None => {
                    c.note(
                        "use_separate_rgb_encoder_per_camera is absent (LeRobot before 2024-08): one shared encoder",
                    );
                    false
                }
            };
            (
                crop,
                c.bool("use_group_norm")?,
                c.usize("spatial_softmax_num_keypoints")?,
                separate,
            )
        } else {
            (None, false, 0, false)
        };
        let cfg = DiffusionConfig {
            inputs,
            action_dim,
            norm_modes,
            n_obs_steps,
            horizon,
            n_action_steps,
            crop_shape,
            use_group_norm,
            spatial_softmax_num_keypoints: kp,
            use_separate_rgb_encoder_per_camera: separate,
            kernel_size: c.usize("kernel_size")?,
            n_groups: c.usize("n_groups")?,
            diffusion_step_embed_dim: c.usize("diffusion_step_embed_dim")?,
            use_film_scale_modulation: c.bool("use_film_scale_modulation")?,
            down_dims,
            schedule,
            num_inference_steps,
            notes: c.notes,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Consistency checks shared by the loader and the trainer.
    pub(crate) fn check(&self) -> Result<(), PolicyError> {
        let err = |m: String| Err(PolicyError::Config(m));
        if self.n_obs_steps == 0 || self.horizon == 0 || self.n_action_steps == 0 {
            return err("n_obs_steps, horizon and n_action_steps must be > 0".into());
        }
        let div = 1usize << self.down_dims.len();
        if !self.horizon.is_multiple_of(div) {
            return err(format!(
                "horizon = {} must be a multiple of 2^len(down_dims) = {div}",
                self.horizon
            ));
        }
        if self.n_action_steps > self.horizon - self.n_obs_steps + 1 {
            return err(format!(
                "n_action_steps = {} exceeds horizon − n_obs_steps + 1 = {}",
                self.n_action_steps,
                self.horizon - self.n_obs_steps + 1
            ));
        }
        if self.diffusion_step_embed_dim < 4 || !self.diffusion_step_embed_dim.is_multiple_of(2) {
            return err("diffusion_step_embed_dim must be even and ≥ 4".into());
        }
        for &d in self.down_dims.iter().chain([self.down_dims[0]].iter()) {
            if d % self.n_groups != 0 || d % 8 != 0 {
                return err(format!(
                    "down_dims entry {d} is not divisible by n_groups = {} (and 8)",
                    self.n_groups
                ));
            }
        }
        for cam in self.cameras() {
            if cam.shape.len() != 3 || cam.shape[0] != 3 {
                return err(format!(
                    "camera {:?} must have shape [3, H, W], got {:?}",
                    cam.name, cam.shape
                ));
            }
            if let Some([h, w]) = self.crop_shape {
                if h > cam.shape[1] || w > cam.shape[2] {
                    return err(format!(
                        "crop_shape [{h}, {w}] is larger than camera {:?} ({:?})",
                        cam.name, cam.shape
                    ));
                }
            }
        }
        for k in [FeatureKind::State, FeatureKind::Env] {
            if self.inputs.iter().filter(|f| f.kind == k).count() > 1 {
                return err(format!(
                    "more than one {k:?} feature; LeRobot diffusion takes at most one"
                ));
            }
        }
        if self.cameras().is_empty() && self.feature(FeatureKind::Env).is_none() {
            return err(
                "the policy needs an image or observation.environment_state input (as LeRobot requires)".into(),
            );
        }
        Ok(())
    }
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    notes: Vec<String>,
}

impl<'a> Reader<'a> {
    fn note(&mut self, msg: &str) {
        tracing::info!("config.json: {msg}");
        self.notes.push(msg.to_string());
    }

    fn get(&self, key: &str) -> Result<&'a Value, PolicyError> {
        self.obj.get(key).ok_or_else(|| {
            PolicyError::Config(format!(
                "config.json lacks the field {key:?}; riptide does not guess LeRobot defaults \
                 (they changed between versions) — add it with the value the checkpoint was trained with"
            ))
        })
    }

    fn usize(&self, key: &str) -> Result<usize, PolicyError> {
        let v = self.get(key)?;
        v.as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| PolicyError::Config(format!("{key} must be a non-negative integer, got {v}")))
    }

    fn f64(&self, key: &str) -> Result<f64, PolicyError> {
        let v = self.get(key)?;
        v.as_f64()
            .ok_or_else(|| PolicyError::Config(format!("{key} must be a number, got {v}")))
    }

    fn bool(&self, key: &str) -> Result<bool, PolicyError> {
        let v = self.get(key)?;
        v.as_bool()
            .ok_or_else(|| PolicyError::Config(format!("{key} must be true or false, got {v}")))
    }

    fn str(&self, key: &str) -> Result<&'a str, PolicyError> {
        let v = self.get(key)?;
        v.as_str()
            .ok_or_else(|| PolicyError::Config(format!("{key} must be a string, got {v}")))
    }

    fn usize_list(&self, key: &str) -> Result<Vec<usize>, PolicyError> {
        usize_list(self.get(key)?, key)
    }

    /// Input features, action dim and per-feature normalisation, from either the current layout
    /// (`input_features` + `normalization_mapping`) or the pre-2025 one (`input_shapes` +
    /// `input_normalization_modes`).
    fn features(&mut self) -> Result<Features, PolicyError> {
        let mut inputs = Vec::new();
        let mut modes = BTreeMap::new();
        if let Some(feats) = self.obj.get("input_features") {
            let mapping = self.get("normalization_mapping")?.as_object().ok_or_else(|| {
                PolicyError::Config("normalization_mapping must be an object like {\"STATE\": \"MIN_MAX\"}".into())
            })?;
            let mode_for = |ty: &str| -> Result<NormMode, PolicyError> {
                match mapping.get(ty) {
                    // A type without an entry passes through, as in LeRobot.
                    None => Ok(NormMode::Identity),
                    Some(v) => NormMode::parse(v.as_str().unwrap_or_default()),
                }
            };
            for (name, f) in feats
                .as_object()
                .ok_or_else(|| PolicyError::Config("input_features must be an object".into()))?
            {
                let ty = f.get("type").and_then(Value::as_str).unwrap_or_default();
                let shape = usize_list(
                    f.get("shape").unwrap_or(&Value::Null),
                    &format!("input_features.{name}.shape"),
                )?;
                let kind = match ty {
                    "STATE" => FeatureKind::State,
                    "ENV" => FeatureKind::Env,
                    "VISUAL" => FeatureKind::Visual,
                    other => {
                        return Err(PolicyError::Config(format!(
                            "input feature {name:?} has type {other:?}; the diffusion policy takes STATE, ENV and VISUAL inputs"
                        )))
                    }
                };
                modes.insert(name.clone(), mode_for(ty)?);
                inputs.push(InputFeature {
                    name: name.clone(),
                    kind,
                    shape,
                });
            }
            let outs = self
                .get("output_features")?
                .as_object()
                .ok_or_else(|| PolicyError::Config("output_features must be an object".into()))?;
            let action = outs
                .get("action")
                .ok_or_else(|| PolicyError::Config("output_features lacks \"action\"".into()))?;
            let shape = usize_list(
                action.get("shape").unwrap_or(&Value::Null),
                "output_features.action.shape",
            )?;
            if shape.len() != 1 {
                return Err(PolicyError::Config(format!(
                    "action shape must be [action_dim], got {shape:?}"
                )));
            }
            modes.insert("action".into(), mode_for("ACTION")?);
            return Ok((inputs, shape[0], modes));
        }
        // Pre-2025 layout.
        let shapes = self
            .get("input_shapes")?
            .as_object()
            .ok_or_else(|| PolicyError::Config("input_shapes must be an object".into()))?;
        self.note("input_features is absent: reading the pre-2025 input_shapes / *_normalization_modes layout");
        let in_modes = self
            .get("input_normalization_modes")?
            .as_object()
            .cloned()
            .unwrap_or_default();
        let out_modes = self
            .get("output_normalization_modes")?
            .as_object()
            .cloned()
            .unwrap_or_default();
        let legacy_mode = |m: Option<&Value>| -> Result<NormMode, PolicyError> {
            match m.and_then(Value::as_str) {
                None => Ok(NormMode::Identity),
                Some(s) => NormMode::parse(&s.to_ascii_uppercase()),
            }
        };
        for (name, s) in shapes {
            let shape = usize_list(s, &format!("input_shapes.{name}"))?;
            let kind = if name.starts_with("observation.image") {
                FeatureKind::Visual
            } else if name == "observation.environment_state" {
                FeatureKind::Env
            } else if name == "observation.state" {
                FeatureKind::State
            } else {
                return Err(PolicyError::Config(format!(
                    "input {name:?} is not a state, environment state or image feature"
                )));
            };
            modes.insert(name.clone(), legacy_mode(in_modes.get(name))?);
            inputs.push(InputFeature {
                name: name.clone(),
                kind,
                shape,
            });
        }
        let out_shapes = self.get("output_shapes")?;
        let a = usize_list(out_shapes.get("action").unwrap_or(&Value::Null), "output_shapes.action")?;
        modes.insert("action".into(), legacy_mode(out_modes.get("action"))?);
        Ok((inputs, a.first().copied().unwrap_or(0), modes))
    }
}

fn usize_list(v: &Value, key: &str) -> Result<Vec<usize>, PolicyError> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().map(|x| x as usize))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| PolicyError::Config(format!("{key} must be a list of non-negative integers, got {v}")))
}
