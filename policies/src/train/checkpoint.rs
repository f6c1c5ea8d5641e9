//! Writing a LeRobot 0.4.4 `pretrained_model/` directory: `config.json`, `model.safetensors` under
//! LeRobot's parameter names, the normalizer processor files, and riptide's sidecar `riptide.json`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use serde_json::{json, Value};

use super::config::TrainConfig;
use super::data::FeatureStats;
use crate::error::PolicyError;
use crate::lerobot::{DiffusionConfig, DiffusionModel};
use crate::policy::FeatureKind;
use crate::tensor::{write_safetensors, HostTensor};

/// riptide module path (PyTorch layout, enum variants skipped) → LeRobot parameter name: the inverse of
/// the loader's key map, applied in order.
const TO_LEROBOT: &[(&str, &str)] = &[
    (r"^unet\.final_conv\.", "unet.final_conv.1."),
    (r"^unet\.final_block\.conv\.", "unet.final_conv.0.block.0."),
    (r"^unet\.final_block\.norm\.", "unet.final_conv.0.block.1."),
    (
        r"^unet\.diffusion_step_encoder\.fc1\.",
        "unet.diffusion_step_encoder.1.",
    ),
    (
        r"^unet\.diffusion_step_encoder\.fc2\.",
        "unet.diffusion_step_encoder.3.",
    ),
    (r"^unet\.(down|up)_modules\.(\d+)\.res0\.", "unet.${1}_modules.$2.0."),
    (r"^unet\.(down|up)_modules\.(\d+)\.res1\.", "unet.${1}_modules.$2.1."),
    (r"^unet\.down_modules\.(\d+)\.downsample\.", "unet.down_modules.$1.2."),
    (r"^unet\.up_modules\.(\d+)\.upsample\.", "unet.up_modules.$1.2."),
    (r"\.conv([12])\.conv\.", ".conv$1.block.0."),
    (r"\.conv([12])\.norm\.", ".conv$1.block.1."),
    (r"\.cond_encoder\.", ".cond_encoder.1."),
    (r"\.backbone\.conv1\.", ".backbone.0."),
    (r"\.backbone\.bn1\.", ".backbone.1."),
    (r"\.backbone\.layer1\.", ".backbone.4."),
    (r"\.backbone\.layer2\.", ".backbone.5."),
    (r"\.backbone\.layer3\.", ".backbone.6."),
    (r"\.backbone\.layer4\.", ".backbone.7."),
    (r"\.downsample\.conv\.", ".downsample.0."),
    (r"\.downsample\.bn\.", ".downsample.1."),
];

pub(crate) fn lerobot_param_name(path: &str, shared_rgb_encoder: bool) -> String {
    let mut s = path.to_string();
    for (from, to) in TO_LEROBOT {
        s = regex::Regex::new(from).unwrap().replace(&s, *to).into_owned();
    }
    if shared_rgb_encoder {
        // One shared encoder is a plain attribute in LeRobot, not a ModuleList.
        s = regex::Regex::new(r"^rgb_encoder\.0\.")
            .unwrap()
            .replace(&s, "rgb_encoder.")
            .into_owned();
    }
    format!("diffusion.{s}")
}

/// Every tensor of `model` under its LeRobot name, in PyTorch layout.
pub fn lerobot_state_dict<B: Backend>(
    model: &DiffusionModel<B>,
    config: &DiffusionConfig,
) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    let shared = !config.use_separate_rgb_encoder_per_camera;
    let mut out = BTreeMap::new();
    for snap in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let path = snap.full_path();
        let data = snap
            .to_data()
            .map_err(|e| PolicyError::Weights(format!("{path}: {e:?}")))?;
        let shape = data.shape.to_vec();
        let values = data
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| PolicyError::Weights(format!("{path}: {e:?}")))?;
        let name = lerobot_param_name(&path, shared);
        if out.insert(name.clone(), HostTensor { shape, data: values }).is_some() {
            return Err(PolicyError::Weights(format!("two tensors map to {name}")));
        }
    }
    Ok(out)
}

fn feature_type(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::State => "STATE",
        FeatureKind::Env => "ENV",
        FeatureKind::Visual => "VISUAL",
    }
}

fn features_json(config: &DiffusionConfig) -> (Value, Value) {
    let mut inputs = serde_json::Map::new();
    for f in &config.inputs {
        inputs.insert(f.name.clone(), json!({"type": feature_type(f.kind), "shape": f.shape}));
    }
    let outputs = json!({"action": {"type": "ACTION", "shape": [config.action_dim]}});
    (Value::Object(inputs), outputs)
}

fn normalization_json(cfg: &TrainConfig) -> Value {
    let n = &cfg.normalization;
    json!({
        "VISUAL": n.visual.lerobot_name(),
        "STATE": n.state.lerobot_name(),
        "ENV": n.env.lerobot_name(),
        "ACTION": n.action.lerobot_name(),
    })
}

/// `config.json` as LeRobot 0.4.4's `DiffusionConfig` writes it (every field, same order).
pub fn lerobot_config_json(config: &DiffusionConfig, cfg: &TrainConfig) -> Value {
    let (inputs, outputs) = features_json(config);
    let m = &cfg.model;
    let d = &cfg.diffusion;
    let o = &cfg.optim;
    let fields: Vec<(&str, Value)> = vec![
        ("type", json!("diffusion")),
        ("n_obs_steps", json!(config.n_obs_steps)),
        ("input_features", json!(inputs)),
        ("output_features", json!(outputs)),
        ("device", json!("cpu")),
        ("use_amp", json!(false)),
        ("use_peft", json!(false)),
        ("push_to_hub", json!(false)),
        ("repo_id", json!(null)),
        ("private", json!(null)),
        ("tags", json!(null)),
        ("license", json!(null)),
        ("pretrained_path", json!(null)),
        ("horizon", json!(config.horizon)),
        ("n_action_steps", json!(config.n_action_steps)),
        ("normalization_mapping", json!(normalization_json(cfg))),
        ("drop_n_last_frames", json!(cfg.drop_n_last_frames())),
        ("vision_backbone", json!("resnet18")),
        ("resize_shape", json!(null)),
        ("crop_ratio", json!(1.0)),
        ("crop_shape", json!(m.crop_shape)),
        ("crop_is_random", json!(m.crop_is_random)),
        ("pretrained_backbone_weights", json!(null)),
        ("use_group_norm", json!(m.use_group_norm)),
        ("spatial_softmax_num_keypoints", json!(m.spatial_softmax_num_keypoints)),
        (
            "use_separate_rgb_encoder_per_camera",
            json!(m.use_separate_rgb_encoder_per_camera),
        ),
        ("down_dims", json!(m.down_dims)),
        ("kernel_size", json!(m.kernel_size)),
        ("n_groups", json!(m.n_groups)),
        ("diffusion_step_embed_dim", json!(m.diffusion_step_embed_dim)),
        ("use_film_scale_modulation", json!(m.use_film_scale_modulation)),
        ("noise_scheduler_type", json!(config.schedule.kind.name())),
        ("num_train_timesteps", json!(d.num_train_timesteps)),
        ("beta_schedule", json!(d.beta_schedule)),
        ("beta_start", json!(d.beta_start)),
        ("beta_end", json!(d.beta_end)),
        ("prediction_type", json!(d.prediction_type)),
        ("clip_sample", json!(d.clip_sample)),
        ("clip_sample_range", json!(d.clip_sample_range)),
        ("num_inference_steps", json!(d.num_inference_steps)),
        ("compile_model", json!(false)),
        ("compile_mode", json!("reduce-overhead")),
        ("do_mask_loss_for_padding", json!(d.do_mask_loss_for_padding)),
        ("optimizer_lr", json!(o.lr)),
        ("optimizer_betas", json!(o.betas)),
        ("optimizer_eps", json!(o.eps)),
        ("optimizer_weight_decay", json!(o.weight_decay)),
        ("scheduler_name", json!("cosine")),
        ("scheduler_warmup_steps", json!(o.warmup_steps)),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn write_json(path: &Path, v: &Value) -> Result<(), PolicyError> {
    let text = serde_json::to_string_pretty(v).expect("JSON value serialises");
    std::fs::write(path, text).map_err(|e| PolicyError::io(path, e))
}

/// The two processor pipelines (same steps as LeRobot's `make_diffusion_pre_post_processors`) and
/// their stats files. Both files hold every feature's stats, as LeRobot writes them.
pub fn write_processors(
    dir: &Path,
    config: &DiffusionConfig,
    cfg: &TrainConfig,
    stats: &BTreeMap<String, FeatureStats>,
) -> Result<(), PolicyError> {
    let mut all = BTreeMap::new();
    for (name, st) in stats {
        all.extend(st.tensors(name));
    }
    let (inputs, outputs) = features_json(config);
    let mut with_action = inputs.as_object().cloned().unwrap_or_default();
    with_action.insert("action".into(), outputs["action"].clone());
    let norm_map = normalization_json(cfg);
    let pre_state = "policy_preprocessor_step_3_normalizer_processor.safetensors";
    let post_state = "policy_postprocessor_step_0_unnormalizer_processor.safetensors";
    let pre = json!({
        "name": "policy_preprocessor",
        "steps": [
            {"registry_name": "rename_observations_processor", "config": {"rename_map": {}}},
            {"registry_name": "to_batch_processor", "config": {}},
            {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": null}},
            {
                "registry_name": "normalizer_processor",
                "config": {"eps": 1e-8, "features": with_action, "norm_map": norm_map},
                "state_file": pre_state
            }
        ]
    });
    let post = json!({
        "name": "policy_postprocessor",
        "steps": [
            {
                "registry_name": "unnormalizer_processor",
                "config": {"eps": 1e-8, "features": outputs, "norm_map": norm_map},
                "state_file": post_state
            },
            {"registry_name": "device_processor", "config": {"device": "cpu", "float_dtype": null}}
        ]
    });
    write_json(&dir.join("policy_preprocessor.json"), &pre)?;
    write_json(&dir.join("policy_postprocessor.json"), &post)?;
    write_safetensors(&dir.join(pre_state), &all)?;
    write_safetensors(&dir.join(post_state), &all)
}

/// riptide-only facts about a trained checkpoint (LeRobot ignores this file).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunMeta {
    /// Control rate the data was recorded at (what the daemon should run at).
    pub fps: Option<f64>,
    /// Environment / task the data came from, e.g. "pusht".
    pub env: Option<String>,
    /// Free-form description of the data (paths, recorder version …).
    pub data: Option<String>,
}

/// Write a complete `pretrained_model/` directory.
pub(crate) fn write_pretrained<B: Backend>(
    dir: &Path,
    model: &DiffusionModel<B>,
    config: &DiffusionConfig,
    cfg: &TrainConfig,
    stats: &BTreeMap<String, FeatureStats>,
    riptide_json: &Value,
) -> Result<(), PolicyError> {
    std::fs::create_dir_all(dir).map_err(|e| PolicyError::io(dir, e))?;
    write_json(&dir.join("config.json"), &lerobot_config_json(config, cfg))?;
    write_safetensors(&dir.join("model.safetensors"), &lerobot_state_dict(model, config)?)?;
    write_processors(dir, config, cfg, stats)?;
    write_json(&dir.join("riptide.json"), riptide_json)
}

#[cfg(test)]
mod tests {
    use super::lerobot_param_name;

    #[test]
    fn names_invert_the_loader_map() {
        for (path, want) in [
            ("unet.final_conv.weight", "diffusion.unet.final_conv.1.weight"),
            (
                "unet.final_block.norm.weight",
                "diffusion.unet.final_conv.0.block.1.weight",
            ),
            (
                "unet.down_modules.1.res0.conv2.conv.bias",
                "diffusion.unet.down_modules.1.0.conv2.block.0.bias",
            ),
            (
                "unet.up_modules.0.upsample.weight",
                "diffusion.unet.up_modules.0.2.weight",
            ),
            (
                "unet.mid_modules.1.cond_encoder.weight",
                "diffusion.unet.mid_modules.1.cond_encoder.1.weight",
            ),
            (
                "unet.diffusion_step_encoder.fc2.bias",
                "diffusion.unet.diffusion_step_encoder.3.bias",
            ),
            (
                "rgb_encoder.0.backbone.layer2.0.downsample.bn.weight",
                "diffusion.rgb_encoder.backbone.5.0.downsample.1.weight",
            ),
            (
                "rgb_encoder.0.backbone.bn1.bias",
                "diffusion.rgb_encoder.backbone.1.bias",
            ),
            (
                "rgb_encoder.0.backbone.layer1.1.bn2.weight",
                "diffusion.rgb_encoder.backbone.4.1.bn2.weight",
            ),
            ("rgb_encoder.0.pool.pos_grid", "diffusion.rgb_encoder.pool.pos_grid"),
        ] {
            assert_eq!(lerobot_param_name(path, true), want, "{path}");
        }
        assert_eq!(
            lerobot_param_name("rgb_encoder.1.out.weight", false),
            "diffusion.rgb_encoder.1.out.weight"
        );
    }
}
