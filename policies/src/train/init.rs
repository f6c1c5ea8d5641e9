//! Starting a run from another checkpoint's weights (`init_from`), including one trained on an older,
//! shorter `observation.environment_state` layout.
//!
//! Env layouts only append values, and the U-Net sees observations only through the FiLM conditioning
//! `Linear(Mish(cat(t_emb, frame₀, frame₁, …)))` of each residual block, each frame being
//! `[state, cameras…, env]`. Widening the env therefore inserts input columns at the end of every
//! frame; the old columns keep their weights and the new ones start at zero, so the widened network
//! computes exactly what the old one did until training teaches it to use the new values.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::PolicyError;
use crate::lerobot::{read_config, CheckpointFiles, DiffusionConfig};
use crate::policy::FeatureKind;
use crate::tensor::HostTensor;
use crate::train::data::FeatureStats;

/// The weights of checkpoint `dir`, in LeRobot names and layout, fitted to `new`: identical but for
/// the FiLM conditioning inputs, widened as the module docs say when `new`'s env input is wider.
pub fn weights_for(dir: &Path, new: &DiffusionConfig) -> Result<BTreeMap<String, HostTensor>, PolicyError> {
    let files = CheckpointFiles::locate(dir)?;
    let old = read_config(&files)?;
    let ctx = |what: String| PolicyError::Config(format!("init_from {}: {what}", dir.display()));
    let width = |c: &DiffusionConfig, k| c.feature(k).map(|f| f.shape.iter().product()).unwrap_or(0usize);
    let (env_old, env_new) = (width(&old, FeatureKind::Env), width(new, FeatureKind::Env));
    if width(&old, FeatureKind::State) != width(new, FeatureKind::State)
        || old.cameras().len() != new.cameras().len()
        || old.n_obs_steps != new.n_obs_steps
        || old.diffusion_step_embed_dim != new.diffusion_step_embed_dim
    {
        return Err(ctx(format!(
            "its inputs (state {}, {} cameras, n_obs_steps {}, step embedding {}) differ from this run's (state {}, {} cameras, n_obs_steps {}, step embedding {}); only the environment_state may grow",
            width(&old, FeatureKind::State), old.cameras().len(), old.n_obs_steps, old.diffusion_step_embed_dim,
            width(new, FeatureKind::State), new.cameras().len(), new.n_obs_steps, new.diffusion_step_embed_dim,
        )));
    }
    if env_new < env_old {
        return Err(ctx(format!(
            "it takes {env_old} environment_state values, this data has {env_new}; a layout can only grow"
        )));
    }
    let bytes = std::fs::read(&files.weights).map_err(|e| PolicyError::io(&files.weights, e))?;
    let bytes = crate::tensor::upcast_floats_to_f32(&bytes, &files.weights)?.unwrap_or(bytes);
    let mut tensors = crate::tensor::parse_safetensors(&bytes, &files.weights)?;
    let (t_dim, d_old, d_new) = (
        old.diffusion_step_embed_dim,
        old.obs_feature_dim(),
        new.obs_feature_dim(),
    );
    let cond_old = t_dim + old.global_cond_dim();
    let cond_new = t_dim + new.global_cond_dim();
    if cond_old == cond_new {
        return Ok(tensors);
    }
    let mut widened = 0;
    for (name, t) in tensors.iter_mut() {
        if !name.ends_with("cond_encoder.1.weight") {
            continue;
        }
        // PyTorch layout [out, in].
        if t.shape.len() != 2 || t.shape[1] != cond_old {
            return Err(ctx(format!(
                "{name} has shape {:?}; expected [_, {cond_old}] for its config",
                t.shape
            )));
        }
        let rows = t.shape[0];
        let mut data = vec![0f32; rows * cond_new];
        for r in 0..rows {
            for c in 0..cond_old {
                let to = if c < t_dim {
                    c
                } else {
                    let (frame, j) = ((c - t_dim) / d_old, (c - t_dim) % d_old);
                    t_dim + frame * d_new + j
                };
                data[r * cond_new + to] = t.data[r * cond_old + c];
            }
        }
        *t = HostTensor {
            shape: vec![rows, cond_new],
            data,
        };
        widened += 1;
    }
    if widened == 0 {
        return Err(ctx(
            "no cond_encoder weights found; is it a LeRobot diffusion checkpoint?".into(),
        ));
    }
    tracing::info!(
        "init_from {}: environment_state {env_old} → {env_new} values; {widened} FiLM layers widened (new inputs start at zero)",
        dir.display()
    );
    Ok(tensors)
}

/// `[data] stats_from_init`: replace `stats` (this data's, per feature) by those checkpoint `dir` was
/// trained with, read from its processor files. An environment_state that grew keeps the data's stats for
/// the appended values; every feature must be in the checkpoint.
pub fn adopt_stats(dir: &Path, stats: &mut BTreeMap<String, FeatureStats>) -> Result<(), PolicyError> {
    use crate::lerobot::loader::{group_stats, processor_state_file};
    let ctx = |what: String| PolicyError::Config(format!("data.stats_from_init: init_from {}: {what}", dir.display()));
    let pre = processor_state_file(dir, "policy_preprocessor", "normalizer_processor")?;
    let post = processor_state_file(dir, "policy_postprocessor", "unnormalizer_processor")?;
    let (Some(pre), Some(post)) = (pre, post) else {
        return Err(ctx(
            "no policy_preprocessor/policy_postprocessor stats files (an older LeRobot layout); remove the key".into(),
        ));
    };
    let names: Vec<String> = stats.keys().cloned().collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let inputs = group_stats(crate::tensor::read_safetensors_where(&pre, |_| true)?, &names);
    let outputs = group_stats(crate::tensor::read_safetensors_where(&post, |_| true)?, &names);
    let mut missing = Vec::new();
    for (name, st) in stats.iter_mut() {
        let old = if name == "action" { &outputs } else { &inputs };
        let Some(old) = old.get(name) else {
            missing.push(name.clone());
            continue;
        };
        for (stat, new) in [
            ("mean", &mut st.mean),
            ("std", &mut st.std),
            ("min", &mut st.min),
            ("max", &mut st.max),
        ] {
            let Some(t) = old.get(stat) else {
                missing.push(format!("{name}.{stat}"));
                continue;
            };
            if t.data.len() > new.len() {
                return Err(ctx(format!(
                    "{name}.{stat} has {} values, this data {}; a layout can only grow",
                    t.data.len(),
                    new.len()
                )));
            }
            new[..t.data.len()].copy_from_slice(&t.data);
        }
    }
    if !missing.is_empty() {
        return Err(ctx(format!("its stats files lack {}", missing.join(", "))));
    }
    tracing::info!("normalising with the stats of {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;
    use crate::backend::FlexBackend as CpuBackend;
    use crate::policy::InputFeature;
    use crate::train::checkpoint::lerobot_state_dict;

    fn train_config() -> crate::train::TrainConfig {
        let mut cfg = crate::train::TrainConfig::default();
        cfg.model.down_dims = vec![16, 32];
        cfg.model.n_groups = 4;
        cfg.model.diffusion_step_embed_dim = 8;
        cfg.model.horizon = 8;
        cfg.model.n_action_steps = 4;
        cfg.model.n_obs_steps = 2;
        cfg
    }

    fn config(env: usize) -> DiffusionConfig {
        let data = crate::train::TrainingSet::new(
            vec![
                InputFeature {
                    name: "observation.state".into(),
                    kind: FeatureKind::State,
                    shape: vec![3],
                },
                InputFeature {
                    name: "observation.environment_state".into(),
                    kind: FeatureKind::Env,
                    shape: vec![env],
                },
            ],
            2,
        )
        .unwrap();
        crate::train::trainer::diffusion_config(&train_config(), &data).unwrap()
    }

    fn save(dir: &Path, c: &DiffusionConfig) -> crate::lerobot::DiffusionModel<CpuBackend> {
        let m = c.init_model::<CpuBackend>(&Default::default());
        let sd = lerobot_state_dict(&m, c).unwrap();
        crate::tensor::write_safetensors(&dir.join("model.safetensors"), &sd).unwrap();
        let json = crate::train::lerobot_config_json(c, &train_config());
        std::fs::write(dir.join("config.json"), serde_json::to_string(&json).unwrap()).unwrap();
        m
    }

    /// A network widened from env width 2 to 4 gives the old network's ε̂ whatever the new inputs hold.
    #[test]
    fn widened_network_matches_the_old_one() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let (old_cfg, new_cfg) = (config(2), config(4));
        let old = save(dir.path(), &old_cfg);

        let w = weights_for(dir.path(), &new_cfg).unwrap();
        let mut new = new_cfg.init_model::<CpuBackend>(&dev);
        let bytes = crate::tensor::safetensors_bytes(&w).unwrap();
        crate::lerobot::loader::load_weights_bytes(&mut new, bytes, Path::new("widened")).unwrap();

        // Frames [state 3, env 2] → [state 3, env 2, extra 2]; the extras are arbitrary.
        let (h, a) = (old_cfg.horizon, old_cfg.action_dim);
        let x: Vec<f32> = (0..h * a).map(|i| (i as f32 * 0.37).sin()).collect();
        let f0 = [0.1, -0.4, 0.7, 0.2, -0.9];
        let f1 = [0.3, 0.5, -0.2, -0.6, 0.4];
        let gc_old: Vec<f32> = f0.iter().chain(&f1).copied().collect();
        let gc_new: Vec<f32> = f0
            .iter()
            .chain(&[5.0, -3.0])
            .chain(&f1)
            .chain(&[-7.0, 2.5])
            .copied()
            .collect();
        let run = |m: &crate::lerobot::DiffusionModel<CpuBackend>, gc: Vec<f32>| {
            let g = gc.len();
            let x = Tensor::<CpuBackend, 3>::from_data(TensorData::new(x.clone(), [1, h, a]), &dev);
            let gc = Tensor::<CpuBackend, 2>::from_data(TensorData::new(gc, [1, g]), &dev);
            m.unet.forward(x, 7, gc).into_data().into_vec::<f32>().unwrap()
        };
        let (y_old, y_new) = (run(&old, gc_old.clone()), run(&new, gc_new));
        let diff = y_old
            .iter()
            .zip(&y_new)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "widened output differs by {diff}");
        // And the old columns really are used: changing an old input changes the output.
        let mut moved = gc_old;
        moved[4] += 1.0;
        let y_moved = run(&old, moved);
        assert!(y_old.iter().zip(&y_moved).any(|(p, q)| (p - q).abs() > 1e-4));
    }

    #[test]
    fn a_narrower_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &config(4));
        let e = weights_for(dir.path(), &config(2)).unwrap_err().to_string();
        assert!(e.contains("can only grow"), "{e}");
    }
}
