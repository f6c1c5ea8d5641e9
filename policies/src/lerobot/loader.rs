//! Loading a LeRobot `pretrained_model/` directory: config.json, model.safetensors (every tensor mapped
//! by name through burn-store), and normalisation stats from the processor files or legacy buffers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde_json::Value;

use super::config::DiffusionConfig;
use super::model::{DiffusionModel, DiffusionPolicy};
use crate::error::PolicyError;
use crate::normalize::{FeatureNorm, NormMode, StatsLayout};
use crate::spec::{FeatureKind, PolicyKind};
use crate::tensor::{read_safetensors_where, HostTensor};

/// LeRobot parameter names → riptide module paths, applied in order. One table, so the loader and the
/// error messages (which map back) agree.
const KEY_MAP: &[(&str, &str)] = &[
    (r"^diffusion\.", ""),
    (r"^rgb_encoder\.(backbone|pool|out)\.", "rgb_encoder.0.$1."),
    (r"\.backbone\.0\.", ".backbone.conv1."),
    (r"\.backbone\.1\.", ".backbone.bn1."),
    (r"\.backbone\.4\.", ".backbone.layer1."),
    (r"\.backbone\.5\.", ".backbone.layer2."),
    (r"\.backbone\.6\.", ".backbone.layer3."),
    (r"\.backbone\.7\.", ".backbone.layer4."),
    (r"\.downsample\.0\.", ".downsample.conv."),
    (r"\.downsample\.1\.", ".downsample.bn."),
    (
        r"^unet\.diffusion_step_encoder\.1\.",
        "unet.diffusion_step_encoder.fc1.",
    ),
    (
        r"^unet\.diffusion_step_encoder\.3\.",
        "unet.diffusion_step_encoder.fc2.",
    ),
    (r"^unet\.(down|up)_modules\.(\d+)\.0\.", "unet.${1}_modules.$2.res0."),
    (r"^unet\.(down|up)_modules\.(\d+)\.1\.", "unet.${1}_modules.$2.res1."),
    (r"^unet\.down_modules\.(\d+)\.2\.", "unet.down_modules.$1.downsample."),
    (r"^unet\.up_modules\.(\d+)\.2\.", "unet.up_modules.$1.upsample."),
    (r"\.conv([12])\.block\.0\.", ".conv$1.conv."),
    (r"\.conv([12])\.block\.1\.", ".conv$1.norm."),
    (r"\.cond_encoder\.1\.", ".cond_encoder."),
    (r"^unet\.final_conv\.0\.block\.0\.", "unet.final_block.conv."),
    (r"^unet\.final_conv\.0\.block\.1\.", "unet.final_block.norm."),
    (r"^unet\.final_conv\.1\.", "unet.final_conv."),
    // Norm affine parameters are burn's gamma/beta. burn-store's adapter can look them up by their
    // PyTorch names, but then reports the file's tensors as unused; renaming here keeps the report exact.
    (r"\.(norm|bn1|bn2|bn)\.weight$", ".$1.gamma"),
    (r"\.(norm|bn1|bn2|bn)\.bias$", ".$1.beta"),
];

/// Tensors a checkpoint may carry that the model does not load (buffers riptide recomputes or ignores).
fn ignorable_extra(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
        || name.starts_with("normalize_inputs.")
        || name.starts_with("normalize_targets.")
        || name.starts_with("unnormalize_outputs.")
}

/// riptide module path → LeRobot-style name, for error messages.
fn lerobot_name(path: &str) -> String {
    const BACK: &[(&str, &str)] = &[
        (r"\.(Group|Batch)\.", "."),
        (r"\.gamma$", ".weight"),
        (r"\.beta$", ".bias"),
        (r"^unet\.final_block\.conv\.", "unet.final_conv.0.block.0."),
        (r"^unet\.final_block\.norm\.", "unet.final_conv.0.block.1."),
        (r"^unet\.final_conv\.", "unet.final_conv.1."),
        (r"\.cond_encoder\.", ".cond_encoder.1."),
        (r"\.conv([12])\.conv\.", ".conv$1.block.0."),
        (r"\.conv([12])\.norm\.", ".conv$1.block.1."),
        (r"\.res0\.", ".0."),
        (r"\.res1\.", ".1."),
        (r"^unet\.down_modules\.(\d+)\.downsample\.", "unet.down_modules.$1.2."),
        (r"\.upsample\.", ".2."),
        (r"\.fc1\.", ".1."),
        (r"\.fc2\.", ".3."),
        (r"\.downsample\.conv\.", ".downsample.0."),
        (r"\.downsample\.bn\.", ".downsample.1."),
        (r"\.backbone\.conv1\.", ".backbone.0."),
        (r"\.backbone\.bn1\.", ".backbone.1."),
        (r"\.layer([1-4])\.", ".L$1."),
    ];
    let mut s = path.to_string();
    for (from, to) in BACK {
        s = regex::Regex::new(from).unwrap().replace_all(&s, *to).into_owned();
    }
    for (i, l) in ["L1", "L2", "L3", "L4"].iter().enumerate() {
        s = s.replace(&format!(".{l}."), &format!(".{}.", i + 4));
    }
    format!("diffusion.{s}")
}

/// Files of a checkpoint directory.
pub struct CheckpointFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
}

impl CheckpointFiles {
    pub fn locate(dir: &Path) -> Result<Self, PolicyError> {
        // Accept the run directory too: LeRobot writes checkpoints/<step>/pretrained_model/.
        let dir = if dir.join("config.json").exists() {
            dir.to_path_buf()
        } else {
            dir.join("pretrained_model")
        };
        let config = dir.join("config.json");
        let weights = dir.join("model.safetensors");
        for f in [&config, &weights] {
            if !f.exists() {
                return Err(PolicyError::Config(format!(
                    "{} not found: a LeRobot pretrained_model directory holds config.json and model.safetensors",
                    f.display()
                )));
            }
        }
        Ok(Self { dir, config, weights })
    }
}

pub fn read_config(files: &CheckpointFiles) -> Result<DiffusionConfig, PolicyError> {
    let text = std::fs::read_to_string(&files.config).map_err(|e| PolicyError::io(&files.config, e))?;
    DiffusionConfig::parse(&text)
}

/// Load a LeRobot diffusion checkpoint onto `device`.
pub fn load_diffusion<B: Backend>(
    dir: &Path,
    backend_name: &str,
    device: &B::Device,
) -> Result<DiffusionPolicy<B>, PolicyError> {
    let files = CheckpointFiles::locate(dir)?;
    let config = read_config(&files)?;
    let mut model: DiffusionModel<B> = config.init_model(device);
    load_weights(&mut model, &files.weights)?;
    let (input_norms, action_norm) = load_stats(&files, &config)?;
    let mut policy = DiffusionPolicy::new(config, model, input_norms, action_norm, backend_name, device.clone())?;
    let sidecar = read_riptide_kind(&files.dir)?;
    if let Some(dims) = sidecar.as_ref().and_then(|(_, v)| v.get("relative_actions")) {
        let path = files.dir.join("riptide.json");
        let dims: Vec<[usize; 2]> = serde_json::from_value(dims.clone()).map_err(|e| {
            PolicyError::Config(format!(
                "{}: relative_actions: {e} (expected [[action index, observation.state index], ...])",
                path.display()
            ))
        })?;
        policy = policy
            .with_relative_actions(dims.iter().map(|&[a, s]| (a, s)).collect())
            .map_err(|e| PolicyError::Config(format!("{}: {e}", path.display())))?;
    }
    // Parsed before the kind is applied (which consumes the sidecar), applied after it (truncated refuses it).
    let sampling: Option<SidecarSampling> = match sidecar.as_ref().and_then(|(_, v)| v.get("sampling")) {
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
            PolicyError::Config(format!("{}: sampling: {e}", files.dir.join("riptide.json").display()))
        })?),
        None => None,
    };
    let policy = match sidecar {
        Some((PolicyKind::Consistency, v)) => {
            let path = files.dir.join("riptide.json");
            let c = v.get("consistency").cloned().ok_or_else(|| {
                PolicyError::Config(format!(
                    "{}: kind \"consistency\" needs a \"consistency\" object",
                    path.display()
                ))
            })?;
            let c: super::model::ConsistencySampling = serde_json::from_value(c)
                .map_err(|e| PolicyError::Config(format!("{}: consistency: {e}", path.display())))?;
            policy.with_consistency(c)
        }
        Some((PolicyKind::Truncated, v)) => {
            let path = files.dir.join("riptide.json");
            let t: crate::truncated::TruncatedSampling = v
                .get("truncated")
                .cloned()
                .ok_or_else(|| {
                    PolicyError::Config(format!(
                        "{}: kind \"truncated\" needs a \"truncated\" object",
                        path.display()
                    ))
                })
                .and_then(|t| {
                    serde_json::from_value(t)
                        .map_err(|e| PolicyError::Config(format!("{}: truncated: {e}", path.display())))
                })?;
            let parts = crate::truncated::load_parts::<B>(
                &files.dir,
                t,
                policy.config.global_cond_dim(),
                policy.config.horizon,
                policy.config.action_dim,
                device,
            )?;
            policy.with_truncated(parts)
        }
        Some((PolicyKind::Diffusion, _)) | None => Ok(policy),
        Some((kind, _)) => Err(PolicyError::Config(format!(
            "{}: riptide.json says kind \"{kind}\", which is not a U-Net checkpoint (load it with `load_policy`)",
            files.dir.display()
        ))),
    }?;
    match sampling.and_then(|s| s.candidates) {
        Some(k) => policy
            .with_default_candidates(k)
            .map_err(|e| PolicyError::Config(format!("{}: sampling: {e}", files.dir.join("riptide.json").display()))),
        None => Ok(policy),
    }
}

/// riptide.json `"sampling"`: inference defaults that travel with the weights.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SidecarSampling {
    /// Chunks per cold-start inference; the medoid is executed ([`crate::consensus`]).
    candidates: Option<usize>,
}

/// `kind` from the optional `riptide.json` sidecar (diffusion when it names none), with the whole
/// document; a kind riptide does not know is an error naming the file and the known kinds.
pub fn read_riptide_kind(dir: &Path) -> Result<Option<(PolicyKind, serde_json::Value)>, PolicyError> {
    let path = dir.join("riptide.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| PolicyError::Config(format!("{}: {e}", path.display())))?;
    let kind = match v.get("kind") {
        None => PolicyKind::Diffusion,
        Some(k) => k
            .as_str()
            .ok_or_else(|| PolicyError::Config(format!("{}: \"kind\" must be a string, got {k}", path.display())))?
            .parse::<PolicyKind>()
            .map_err(|e| PolicyError::Config(format!("{}: {e}", path.display())))?,
    };
    Ok(Some((kind, v)))
}

fn load_weights<B: Backend>(model: &mut DiffusionModel<B>, path: &Path) -> Result<(), PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| PolicyError::io(path, e))?;
    load_weights_bytes(model, bytes, path)
}

/// [`load_weights`] from the bytes of a safetensors file (`path` names it in errors).
pub(crate) fn load_weights_bytes<B: Backend>(
    model: &mut DiffusionModel<B>,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<(), PolicyError> {
    let bytes = crate::tensor::upcast_floats_to_f32(&bytes, path)?.unwrap_or(bytes);
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .validate(false)
        .allow_partial(true);
    for (from, to) in KEY_MAP {
        store = store.with_key_remapping(*from, *to);
    }
    let result = model.load_from(&mut store).map_err(|e| PolicyError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    })?;
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        // pos_grid is a recomputable buffer that checkpoints before 2024-05 lack.
        .filter(|p| !p.ends_with("pool.pos_grid"))
        .map(|p| lerobot_name(&p))
        .collect();
    let unexpected: Vec<String> = result.unused.iter().filter(|p| !ignorable_extra(p)).cloned().collect();
    let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    if missing.is_empty() && unexpected.is_empty() && errors.is_empty() {
        return Ok(());
    }
    let mut msg = String::new();
    let mut section = |title: &str, items: &[String]| {
        if !items.is_empty() {
            msg.push_str(&format!("  {title} ({}):\n", items.len()));
            for i in items.iter().take(40) {
                msg.push_str(&format!("    {i}\n"));
            }
            if items.len() > 40 {
                msg.push_str(&format!("    … and {} more\n", items.len() - 40));
            }
        }
    };
    section("missing from model.safetensors", &missing);
    section(
        "unexpected in model.safetensors (after renaming to riptide paths)",
        &unexpected,
    );
    section("shape or dtype mismatches", &errors);
    msg.push_str(&format!(
        "  (file: {}; check that config.json matches the weights: down_dims, kernel_size, features, use_group_norm …)",
        path.display()
    ));
    Err(PolicyError::Weights(msg))
}

/// Stats per feature, as "stat name → values".
pub(crate) type StatsMap = BTreeMap<String, BTreeMap<String, HostTensor>>;

pub(crate) fn group_stats(flat: BTreeMap<String, HostTensor>, features: &[&str]) -> StatsMap {
    let mut out: StatsMap = BTreeMap::new();
    for (k, v) in flat {
        // Keys are "<feature>.<stat>"; feature names contain dots, so match known features.
        if let Some(f) = features
            .iter()
            .find(|f| k.len() > f.len() && k.starts_with(**f) && k.as_bytes()[f.len()] == b'.')
        {
            out.entry(f.to_string())
                .or_default()
                .insert(k[f.len() + 1..].to_string(), v);
        }
    }
    out
}

/// The state file of the normalizer step of a processor pipeline JSON, if the pipeline exists.
pub(crate) fn processor_state_file(
    dir: &Path,
    pipeline: &str,
    registry_hint: &str,
) -> Result<Option<PathBuf>, PolicyError> {
    let json_path = dir.join(format!("{pipeline}.json"));
    if !json_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&json_path).map_err(|e| PolicyError::io(&json_path, e))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| PolicyError::Stats(format!("{} is not valid JSON: {e}", json_path.display())))?;
    let steps = v.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
    for s in steps {
        let reg = s.get("registry_name").and_then(Value::as_str).unwrap_or_default();
        if reg.contains(registry_hint) {
            if let Some(f) = s.get("state_file").and_then(Value::as_str) {
                return Ok(Some(dir.join(f)));
            }
        }
    }
    Err(PolicyError::Stats(format!(
        "{} has no {registry_hint} step with a state_file",
        json_path.display()
    )))
}

fn load_stats(
    files: &CheckpointFiles,
    config: &DiffusionConfig,
) -> Result<(BTreeMap<String, FeatureNorm>, FeatureNorm), PolicyError> {
    let mut names: Vec<&str> = config.inputs.iter().map(|f| f.name.as_str()).collect();
    names.push("action");
    let pre = processor_state_file(&files.dir, "policy_preprocessor", "normalizer_processor")?;
    let post = processor_state_file(&files.dir, "policy_postprocessor", "unnormalizer_processor")?;
    let (inputs, outputs, layout) =
        match (pre, post) {
            (Some(pre), Some(post)) => (
                group_stats(read_safetensors_where(&pre, |_| true)?, &names),
                group_stats(read_safetensors_where(&post, |_| true)?, &names),
                StatsLayout::Processor,
            ),
            (None, None) => {
                // Legacy: buffers inside model.safetensors, "buffer_" + key with '.' → '_'.
                let flat = read_safetensors_where(&files.weights, |k| {
                    k.starts_with("normalize_inputs.") || k.starts_with("unnormalize_outputs.")
                })?;
                let mut inputs: StatsMap = BTreeMap::new();
                let mut outputs: StatsMap = BTreeMap::new();
                for (k, v) in flat {
                    let (target, rest) = match k.split_once('.') {
                        Some(("normalize_inputs", r)) => (&mut inputs, r),
                        Some((_, r)) => (&mut outputs, r),
                        None => continue,
                    };
                    if let Some((buf, stat)) = rest.split_once('.') {
                        if let Some(f) = names.iter().find(|f| format!("buffer_{}", f.replace('.', "_")) == buf) {
                            target.entry(f.to_string()).or_default().insert(stat.to_string(), v);
                        }
                    }
                }
                (inputs, outputs, StatsLayout::Legacy)
            }
            (Some(_), None) | (None, Some(_)) => return Err(PolicyError::Stats(
                "the checkpoint has only one of policy_preprocessor.json / policy_postprocessor.json; both are needed"
                    .into(),
            )),
        };
    let empty = BTreeMap::new();
    let mut input_norms = BTreeMap::new();
    for f in &config.inputs {
        let mode = config.norm_modes.get(&f.name).copied().unwrap_or(NormMode::Identity);
        let channels = if f.kind == FeatureKind::Visual {
            f.shape[0]
        } else {
            f.shape.iter().product()
        };
        let norm = FeatureNorm::from_stats(&f.name, mode, inputs.get(&f.name).unwrap_or(&empty), layout, channels)
            .map_err(|e| with_layout_hint(e, layout))?;
        input_norms.insert(f.name.clone(), norm);
    }
    let mode = config.norm_modes.get("action").copied().unwrap_or(NormMode::Identity);
    let action_norm = FeatureNorm::from_stats(
        "action",
        mode,
        outputs.get("action").unwrap_or(&empty),
        layout,
        config.action_dim,
    )
    .map_err(|e| with_layout_hint(e, layout))?;
    Ok((input_norms, action_norm))
}

fn with_layout_hint(e: PolicyError, layout: StatsLayout) -> PolicyError {
    match (e, layout) {
        (PolicyError::Stats(m), StatsLayout::Legacy) => PolicyError::Stats(format!(
            "{m} (no policy_preprocessor.json found, so stats were read from the legacy normalize_inputs / \
             unnormalize_outputs buffers in model.safetensors)"
        )),
        (e, _) => e,
    }
}
