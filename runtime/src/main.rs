//! `riptide`: a real-time diffusion-policy runtime for robots.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use riptide_policies::DeviceSpec;
use riptide_runtime::cli;

#[derive(Parser)]
#[command(name = "riptide", version, about = "Real-time diffusion-policy runtime for robots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
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
