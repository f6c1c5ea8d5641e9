//! Sub-commands of the `riptide` binary that work on checkpoints without a robot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::lerobot::{read_config, CheckpointFiles};
use riptide_policies::{
    load_policy, load_policy_with, read_safetensors, write_safetensors, DeviceSpec, FeatureKind, HostTensor,
    LoadOptions, ObservationWindow, Policy, SampleRequest,
};

/// `riptide inspect DIR`: what a checkpoint is, without running it.
pub fn inspect(dir: &Path, device: DeviceSpec) -> Result<()> {
    let files = CheckpointFiles::locate(dir)?;
    let cfg = read_config(&files)?;
    let policy = load_policy(dir, device)?;
    let spec = policy.spec();
    println!("checkpoint   {}", files.dir.display());
    println!("policy       {} on {}", spec.label(), spec.backend);
    println!(
        "parameters   {} ({:.1} M)",
        spec.num_parameters,
        spec.num_parameters as f64 / 1e6
    );
    println!("inputs");
    for f in &spec.inputs {
        let norm = cfg
            .norm_modes
            .get(&f.name)
            .map(|m| format!("{m:?}"))
            .unwrap_or_else(|| "Identity".into());
        println!(
            "  {:<34} {:<7} {:?}  norm {norm}",
            f.name,
            format!("{:?}", f.kind),
            f.shape
        );
    }
    let anorm = cfg
        .norm_modes
        .get("action")
        .map(|m| format!("{m:?}"))
        .unwrap_or_default();
    println!("action       dim {}  norm {anorm}", spec.action_dim);
    if !spec.relative_actions.is_empty() {
        let pairs: Vec<String> = spec
            .relative_actions
            .iter()
            .map(|(a, s)| format!("action[{a}] = state[{s}] + offset"))
            .collect();
        println!("relative     {}", pairs.join(", "));
    }
    println!(
        "window       n_obs_steps {}  horizon {}  executes [{}..{}) ({} actions)",
        spec.n_obs_steps,
        spec.horizon,
        spec.exec_start,
        spec.exec_start + spec.n_action_steps,
        spec.n_action_steps
    );
    let s = &cfg.schedule;
    println!(
        "sampler      {} {} steps (of {} train), {:?}, {:?} prediction, clip_sample {}",
        s.kind.name(),
        cfg.num_inference_steps,
        s.num_train_timesteps,
        s.beta_schedule,
        s.prediction_type,
        if s.clip_sample {
            format!("±{}", s.clip_sample_range)
        } else {
            "off".into()
        }
    );
    println!(
        "unet         down_dims {:?}  kernel {}  groups {}  step-embed {}  FiLM scale {}",
        cfg.down_dims, cfg.kernel_size, cfg.n_groups, cfg.diffusion_step_embed_dim, cfg.use_film_scale_modulation
    );
    if !cfg.cameras().is_empty() {
        println!(
            "vision       resnet18 {}  crop {:?}  keypoints {}  {} encoder(s)",
            if cfg.use_group_norm { "GroupNorm" } else { "BatchNorm" },
            cfg.crop_shape,
            cfg.spatial_softmax_num_keypoints,
            if cfg.use_separate_rgb_encoder_per_camera {
                cfg.cameras().len()
            } else {
                1
            }
        );
    }
    for n in &cfg.notes {
        println!("note         {n}");
    }
    Ok(())
}

/// Split an inputs file into the observation window and the sampler's noise.
pub fn request_from_tensors(
    spec: &riptide_policies::PolicySpec,
    mut tensors: BTreeMap<String, HostTensor>,
    seed: Option<u64>,
) -> Result<(ObservationWindow, SampleRequest)> {
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        let t = tensors.remove(&f.name).with_context(|| {
            format!(
                "the inputs file lacks {:?} (shape [batch, {}, {}]); the policy needs: {}",
                f.name,
                spec.n_obs_steps,
                f.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                spec.inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        obs.features.insert(f.name.clone(), t);
    }
    let mut req = SampleRequest {
        seed,
        initial_noise: tensors.remove("noise"),
        ..Default::default()
    };
    for (k, v) in std::mem::take(&mut tensors) {
        if let Some(i) = k.strip_prefix("noise.step.") {
            let i: usize = i
                .parse()
                .with_context(|| format!("tensor {k:?}: expected noise.step.<integer>"))?;
            req.step_noise.insert(i, v);
        } else {
            tensors.insert(k, v);
        }
    }
    if !tensors.is_empty() {
        tracing::warn!(
            "ignoring tensors the policy does not use: {}",
            tensors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok((obs, req))
}

/// `riptide infer`: one inference from a safetensors file of observations.
pub fn infer(
    checkpoint: &Path,
    inputs: &Path,
    out: Option<&Path>,
    device: DeviceSpec,
    seed: Option<u64>,
    steps: Option<usize>,
) -> Result<()> {
    let mut policy = load_policy(checkpoint, device)?;
    let tensors = read_safetensors(inputs)?;
    let (obs, mut req) = request_from_tensors(policy.spec(), tensors, seed)?;
    req.num_inference_steps = steps;
    let chunk = policy.predict(&obs, &req, None)?;
    let exec = chunk.executable();
    let m = &chunk.meta;
    println!(
        "{} on {}: NFE {}, seed {}, {:.1} ms (encode {:.1} ms, denoise {:.1} ms)",
        m.kind,
        policy.spec().backend,
        m.nfe,
        m.seed,
        m.timings.total_s() * 1e3,
        m.timings.encode_s * 1e3,
        m.timings.denoise_s * 1e3
    );
    let [b, n, d] = [exec.shape[0], exec.shape[1], exec.shape[2]];
    println!("executable actions (batch 0 of {b}, {n} steps × {d} dims):");
    for i in 0..n {
        let row: Vec<String> = exec.data[i * d..(i + 1) * d]
            .iter()
            .map(|v| format!("{v:>10.4}"))
            .collect();
        println!("  {:>3}  {}", chunk.exec_start + i, row.join(" "));
    }
    if let Some(out) = out {
        let mut t = BTreeMap::new();
        t.insert("action".to_string(), chunk.actions.clone());
        t.insert("action.executed".to_string(), exec);
        write_safetensors(out, &t)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Random observations that fit the policy (uniform in a plausible range; images in [0, 1]).
pub fn random_window(policy: &dyn Policy, batch: usize, seed: u64) -> ObservationWindow {
    random_window_for(policy.spec(), batch, seed)
}

/// [`random_window`] from a spec.
pub fn random_window_for(spec: &riptide_policies::PolicySpec, batch: usize, seed: u64) -> ObservationWindow {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        let mut shape = vec![batch, spec.n_obs_steps];
        shape.extend(&f.shape);
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                if f.kind == FeatureKind::Visual {
                    rng.random::<f32>()
                } else {
                    rng.random_range(-1.0..1.0)
                }
            })
            .collect();
        obs.features.insert(f.name.clone(), HostTensor { shape, data });
    }
    obs
}

#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub checkpoint: String,
    pub backend: String,
    pub kind: String,
    pub batch: usize,
    pub nfe: usize,
    /// Chunks sampled per inference (consensus sampling; 1 = one).
    pub candidates: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
    pub chunks_per_s: f64,
    pub median_denoise_ms: f64,
    pub median_encode_ms: f64,
}

/// `riptide bench`: latency of full inferences after warm-up (warm-up excluded from the numbers).
pub fn bench(
    checkpoint: &Path,
    device: DeviceSpec,
    opts: LoadOptions,
    batch: usize,
    iters: usize,
    warmup: usize,
    steps: Option<usize>,
    candidates: Option<usize>,
) -> Result<BenchReport> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let mut policy = load_policy_with(checkpoint, device, opts)?;
    let obs = random_window(policy.as_ref(), batch, 0);
    let mut lat = Vec::new();
    let mut den = Vec::new();
    let mut enc = Vec::new();
    let mut nfe = 0;
    for i in 0..warmup + iters {
        let req = SampleRequest {
            seed: Some(i as u64),
            num_inference_steps: steps,
            candidates,
            ..Default::default()
        };
        let t = Instant::now();
        let c = policy.predict(&obs, &req, None)?;
        let dt = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            lat.push(dt);
            den.push(c.meta.timings.denoise_s * 1e3);
            enc.push(c.meta.timings.encode_s * 1e3);
            nfe = c.meta.nfe;
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let median = q(&mut lat, 0.5);
    Ok(BenchReport {
        checkpoint: checkpoint.display().to_string(),
        backend: policy.spec().backend.clone(),
        kind: policy.spec().label(),
        batch,
        nfe,
        candidates: policy.spec().candidates_for(candidates, true)?,
        iters,
        median_ms: median,
        p90_ms: q(&mut lat, 0.9),
        min_ms: q(&mut lat, 0.0),
        chunks_per_s: 1e3 / median,
        median_denoise_ms: q(&mut den, 0.5),
        median_encode_ms: q(&mut enc, 0.5),
    })
}
