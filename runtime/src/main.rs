//! `riptide`: a real-time diffusion-policy runtime for robots.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use riptide_policies::DeviceSpec;
use riptide_runtime::cli;
use riptide_runtime::config::DaemonConfig;

#[derive(Parser)]
#[command(name = "riptide", version, about = "Real-time diffusion-policy runtime for robots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: observations in over zenoh, time-stamped action chunks out.
    Run(RunArgs),
    /// Validate a daemon config against its checkpoint without starting anything.
    CheckConfig {
        /// The daemon config (TOML).
        file: PathBuf,
    },
    /// Summarise a LeRobot checkpoint: config, parameters, normalisation, features.
    Inspect {
        /// A LeRobot pretrained_model/ directory.
        dir: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
    /// Run one inference on observations from a safetensors file.
    Infer {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Observation tensors under their LeRobot names, [batch, n_obs_steps, ...]; optional `noise`
        /// [batch, horizon, action_dim] and `noise.step.K` (DDPM variance noise of step K).
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write `action` and `action.executed` (safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        /// Seed for noise not given in the inputs file.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the checkpoint's number of inference steps.
        #[arg(long)]
        steps: Option<usize>,
    },
    /// Time full inferences on random observations (after warm-up); prints JSON.
    Bench {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 50)]
        iters: usize,
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        #[arg(long)]
        steps: Option<usize>,
        /// Disable the fused host epilogue on CPU backends (for before/after measurements).
        #[arg(long)]
        no_cpu_fusion: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Daemon config (TOML); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Checkpoint to serve when no config file is given (or to override it).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Zenoh endpoint to listen on (default tcp/127.0.0.1:7450, loopback only).
    #[arg(long)]
    listen: Vec<String>,
    /// Zenoh endpoint to connect to (e.g. a zenohd router, tcp/127.0.0.1:7447).
    #[arg(long)]
    connect: Vec<String>,
    /// Control rate of the training data (required unless the config sets fps).
    #[arg(long)]
    fps: Option<f64>,
    /// Prefix replacing `riptide` in every topic.
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    device: Option<String>,
    /// Inference rate (default fps / n_action_steps).
    #[arg(long)]
    rate_hz: Option<f64>,
    /// Print p50/p90/p99 per stage at exit.
    #[arg(long)]
    stats: bool,
}

impl RunArgs {
    fn config(&self) -> Result<DaemonConfig> {
        let mut cfg = match (&self.config, &self.checkpoint) {
            (Some(f), _) => DaemonConfig::from_file(f)?,
            (None, Some(c)) => DaemonConfig::for_checkpoint(c.clone()),
            (None, None) => anyhow::bail!("give --config FILE or --checkpoint DIR"),
        };
        if let (Some(_), Some(c)) = (&self.config, &self.checkpoint) {
            cfg.checkpoint = c.clone();
        }
        if !self.listen.is_empty() {
            cfg.zenoh.listen = self.listen.clone();
        }
        if !self.connect.is_empty() {
            cfg.zenoh.connect = self.connect.clone();
        }
        if self.fps.is_some() {
            cfg.fps = self.fps;
        }
        if let Some(n) = &self.namespace {
            cfg.namespace = n.clone();
        }
        if let Some(d) = &self.device {
            cfg.device = d.clone();
        }
        if self.rate_hz.is_some() {
            cfg.trigger.rate_hz = self.rate_hz;
        }
        Ok(cfg)
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => {
            let cfg = args.config()?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let metrics = rt.block_on(riptide_runtime::daemon::run(cfg, shutdown_signal(), |r| {
                tracing::info!(
                    "ready: {} inputs, {} on {}",
                    r.spec.inputs.len(),
                    r.spec.kind,
                    r.spec.backend
                )
            }))?;
            if args.stats {
                println!("{}", metrics.table());
            }
            Ok(())
        }
        Command::CheckConfig { file } => {
            let cfg = DaemonConfig::from_file(&file)?;
            let policy = riptide_policies::load_policy(&cfg.checkpoint, cfg.device()?)?;
            let r = cfg.resolve(policy.spec())?;
            println!(
                "{}: OK ({} on {})",
                file.display(),
                policy.spec().kind,
                policy.spec().backend
            );
            for i in &r.inputs {
                println!(
                    "  {:<34} ← {} ({:?}, max age {:.0} ms)",
                    i.feature,
                    i.topic,
                    i.msg_type,
                    i.max_age_s * 1e3
                );
            }
            println!(
                "  chunks → {} every {:.3} s ({} actions at {} fps)",
                r.chunk_topic,
                1.0 / r.rate_hz,
                policy.spec().n_action_steps,
                r.fps
            );
            Ok(())
        }
        Command::Inspect { dir, device } => cli::inspect(&dir, device),
        Command::Infer {
            checkpoint,
            inputs,
            out,
            device,
            seed,
            steps,
        } => cli::infer(&checkpoint, &inputs, out.as_deref(), device, seed, steps),
        Command::Bench {
            checkpoint,
            device,
            batch,
            iters,
            warmup,
            steps,
            no_cpu_fusion,
        } => {
            let opts = riptide_policies::LoadOptions {
                cpu_fusion: !no_cpu_fusion,
            };
            let r = cli::bench(&checkpoint, device, opts, batch, iters, warmup, steps)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
    }
}
