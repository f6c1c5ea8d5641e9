//! `riptide train`: recorded MCAP episodes → a LeRobot-layout diffusion checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use riptide_policies::train::{Control, Hooks, RunMeta, TrainConfig, TrainEvent, TrainSummary, TrainingSet};
use riptide_policies::{DeviceSpec, FeatureKind, InputFeature};
use riptide_sim::dataset::{read_dir, EpisodeData};

#[derive(Debug, Clone)]
pub struct TrainArgs {
    pub data: PathBuf,
    pub config: Option<PathBuf>,
    pub out: PathBuf,
    pub device: DeviceSpec,
    pub resume: Option<PathBuf>,
    /// Start from this checkpoint's weights (overrides the config's `init_from`).
    pub init_from: Option<PathBuf>,
    /// Input features to train on (default: observation.state + observation.environment_state).
    pub features: Vec<String>,
    /// Override `steps` of the config.
    pub steps: Option<usize>,
    /// Only use episodes whose recorded result was a success.
    pub successful_only: bool,
}

fn image_chw(im: &riptide_sim::RgbImage) -> Vec<f32> {
    let (w, h) = (im.width as usize, im.height as usize);
    let mut out = vec![0f32; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[(c * h + y) * w + x] = im.data[(y * w + x) * 3 + c] as f32 / 255.0;
            }
        }
    }
    out
}

/// Build the training set from episodes.
pub fn training_set(episodes: &[EpisodeData], features: &[String]) -> Result<TrainingSet> {
    let first = episodes.first().ok_or_else(|| anyhow!("no episodes"))?;
    let mut inputs = Vec::new();
    for f in features {
        let feat = match f.as_str() {
            "observation.state" => InputFeature {
                name: f.clone(),
                kind: FeatureKind::State,
                shape: vec![first.state[0].len()],
            },
            "observation.environment_state" => InputFeature {
                name: f.clone(),
                kind: FeatureKind::Env,
                shape: vec![first
                    .env_state
                    .first()
                    .ok_or_else(|| anyhow!("{}: no environment_state recorded", first.path.display()))?
                    .len()],
            },
            "observation.image" => {
                let im = first.images.first().ok_or_else(|| {
                    anyhow!(
                        "{}: no images recorded (record with --render)",
                        first.path.display()
                    )
                })?;
                InputFeature {
                    name: f.clone(),
                    kind: FeatureKind::Visual,
                    shape: vec![3, im.height as usize, im.width as usize],
                }
            }
            other => bail!(
                "--features: unknown feature {other:?} (observation.state, observation.environment_state, observation.image)"
            ),
        };
        inputs.push(feat);
    }
    let action_dim = first.actions[0].len();
    let mut set = TrainingSet::new(inputs, action_dim)?;
    for ep in episodes {
        let obs: Vec<Vec<Vec<f32>>> = features
            .iter()
            .map(|f| match f.as_str() {
                "observation.image" => ep.images.iter().map(image_chw).collect(),
                other => ep.vectors(other).map(|v| v.to_vec()).unwrap_or_default(),
            })
            .collect();
        set.push_episode(&obs, &ep.actions)
            .with_context(|| format!("{}", ep.path.display()))?;
    }
    Ok(set)
}

pub fn train(args: &TrainArgs) -> Result<TrainSummary> {
    let mut cfg = match &args.config {
        Some(p) => TrainConfig::from_toml_file(p)?,
        None => TrainConfig::default(),
    };
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(p) = &args.init_from {
        cfg.init_from = Some(p.clone());
    }
    let mut episodes = read_dir(&args.data)?;
    let total = episodes.len();
    if args.successful_only {
        episodes.retain(|e| e.success != Some(false));
    }
    if episodes.is_empty() {
        bail!("{}: no usable episodes", args.data.display());
    }
    let env = episodes[0].env.clone();
    let fps = episodes[0].fps;
    let set = training_set(&episodes, &args.features)?;
    eprintln!(
        "training on {} episodes ({} frames; {} recorded) from {}, {} steps, batch {}",
        episodes.len(),
        set.num_frames(),
        total,
        args.data.display(),
        cfg.steps,
        cfg.batch_size
    );
    let meta = RunMeta {
        fps: Some(fps),
        env,
        data: Some(format!("{} ({} episodes)", args.data.display(), episodes.len())),
    };
    let t0 = Instant::now();
    let total_steps = cfg.steps;
    let mut hooks = Hooks {
        on_event: Some(Box::new(move |ev: &TrainEvent| {
            match ev {
                TrainEvent::Step(s) if s.step % 20 == 0 || s.step == total_steps => {
                    let w = 30;
                    let done = s.step * w / total_steps.max(1);
                    eprint!(
                        "\r[{}{}] {}/{} loss {:.4} lr {:.2e} {:.0} samples/s {:.0} s ",
                        "#".repeat(done),
                        " ".repeat(w - done),
                        s.step,
                        total_steps,
                        s.loss,
                        s.lr,
                        s.samples_per_s,
                        t0.elapsed().as_secs_f64()
                    );
                }
                TrainEvent::Validation { step, loss } => eprint!("\n  step {step}: validation loss {loss:.4}\n"),
                TrainEvent::Checkpoint { step, dir } => eprint!("\n  step {step}: checkpoint {}\n", dir.display()),
                _ => {}
            }
            Control::Continue
        })),
        eval: None,
    };
    let summary = riptide_policies::train::train_with(
        cfg,
        set,
        meta,
        args.device,
        &args.out,
        args.resume.as_deref(),
        args.steps.is_some(),
        &mut hooks,
    )?;
    eprintln!();
    Ok(summary)
}

/// The newest `pretrained_model` a training run wrote under `out`.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(out.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    v.sort();
    v.pop().map(|(_, p)| p)
}

/// `riptide train`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct TrainCmd {
    #[arg(long)]
    pub data: PathBuf,
    /// Training config (TOML); defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Resume from a checkpoint written by an earlier run.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Fine-tune: start from this diffusion checkpoint's weights (fresh optimiser and schedule); it
    /// may take an older, shorter observation.environment_state (the new inputs start at zero).
    #[arg(long, conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Input features, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "observation.state,observation.environment_state"
    )]
    pub features: Vec<String>,
    /// Override the config's number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Skip episodes recorded as failures.
    #[arg(long)]
    pub successful_only: bool,
}

impl TrainCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            data,
            config,
            out,
            device,
            resume,
            init_from,
            features,
            steps,
            successful_only,
        } = self;

        let s = crate::tools::train::train(&crate::tools::train::TrainArgs {
            data,
            config,
            out: out.clone(),
            device,
            resume,
            init_from,
            features,
            steps,
            successful_only,
        })?;
        println!("{}", serde_json::to_string_pretty(&s)?);
        Ok(())
    }
}
