//! Sub-commands of the `riptide` binary that work on checkpoints without a robot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use riptide_policies::lerobot::{read_config, CheckpointFiles};

use crate::pipeline::tensors::request_from_tensors;
use riptide_policies::{load_policy, read_safetensors, write_safetensors, DeviceSpec};

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

/// `riptide infer`: one inference from a safetensors file of observations.
pub fn infer(
    checkpoint: &Path,
    inputs: &Path,
    out: Option<&Path>,
    device: DeviceSpec,
    seed: Option<u64>,
    steps: Option<usize>,
    opts: riptide_policies::LoadOptions,
) -> Result<()> {
    let mut policy = riptide_policies::load_policy_with(checkpoint, device, opts)?;
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

/// `riptide inspect`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct InspectCmd {
    /// A LeRobot pretrained_model/ directory.
    pub dir: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

impl InspectCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self { dir, device } = self;

        crate::tools::inspect::inspect(&dir, device)
    }
}

/// `riptide infer`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct InferCmd {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Observation tensors under their LeRobot names, [batch, n_obs_steps, ...]; optional `noise`
    /// [batch, horizon, action_dim] and `noise.step.K` (DDPM variance noise of step K).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `action` and `action.executed` (safetensors).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Seed for noise not given in the inputs file.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the checkpoint's number of inference steps.
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub gpu: crate::tools::gpu::GpuArgs,
}

impl InferCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            checkpoint,
            inputs,
            out,
            device,
            seed,
            steps,
            gpu,
        } = self;
        let opts = gpu.apply()?;
        crate::tools::inspect::infer(&checkpoint, &inputs, out.as_deref(), device, seed, steps, opts)
    }
}
