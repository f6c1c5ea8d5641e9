//! `riptide`: a real-time diffusion-policy runtime for robots. This file is the table of contents:
//! each command's arguments and code live in its room of `riptide_runtime`.

use anyhow::Result;
use clap::{Parser, Subcommand};
use riptide_runtime::{daemon, drive, episodes, simnode, tools};

#[derive(Parser)]
#[command(name = "riptide", version, about = "Real-time diffusion-policy runtime for robots")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: observations in over zenoh, time-stamped action chunks out.
    Run(daemon::cmd::RunCmd),
    /// Validate a daemon config against its checkpoint without starting anything.
    CheckConfig(daemon::cmd::CheckConfigCmd),
    /// Run a driver node: chunks in, a safe command stream out at the driver's rate.
    Drive(drive::cmd::DriveCmd),
    /// Run a simulated robot as a zenoh node (observations out, commands on <ns>/action in).
    Sim(simnode::cmd::SimCmd),
    /// The whole system on this machine: sim node → zenoh → daemon (shipped policy, hosted driver) → sim,
    /// in lockstep simulated time; prints each episode and latency percentiles.
    Demo(tools::demo::DemoCmd),
    /// Closed-loop success of a policy on fresh seeds (in-process lockstep), next to the scripted
    /// expert on the same seeds; NFE per control step and latency. Prints JSON.
    Eval(tools::eval::EvalCmd),
    /// Replay recorded episodes through a policy, open loop (compare with recorded actions) or closed
    /// loop (reset the sim to each episode's seed and let the policy drive); writes replay.json/.html.
    Replay(tools::replay::ReplayCmd),
    /// Record expert episodes of a sim env (one MCAP per episode), or live zenoh topics (--topic).
    Record(tools::record::RecordCmd),
    /// Publish a recording's observation topics onto zenoh at their recorded timing.
    Play(episodes::cmd::PlayCmd),
    /// Train a diffusion policy from recorded episodes (a folder of MCAP files); writes LeRobot-layout
    /// checkpoints under OUT/checkpoints/STEP.
    Train(tools::train::TrainCmd),
    /// Summarise a LeRobot checkpoint: config, parameters, normalisation, features.
    Inspect(tools::inspect::InspectCmd),
    /// Run one inference on observations from a safetensors file.
    Infer(tools::inspect::InferCmd),
    /// Run LeRobot reference fixtures (checkpoint + inputs + LeRobot's outputs) on a device, all in one
    /// process; one JSON line of errors per fixture, failing above --tol.
    Parity(tools::parity::ParityCmd),
    /// Time full inferences on random observations (after warm-up); prints JSON.
    Bench(tools::bench::BenchCmd),
    /// Measure what the zenoh path adds to inference (obs in → chunk out, minus inference); prints JSON.
    BenchTransport(tools::bench_transport::BenchTransportCmd),
    /// List every device a policy can run on (cpu, cuda:N, wgpu:N), by the name `--device` takes.
    Devices(tools::devices::DevicesCmd),
    /// Finish an MCAP file cut by a crash (index, summary, footer) so Foxglove and the mcap tools open it.
    Recover(tools::recover::RecoverArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,zenoh=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let command = Cli::parse().command;
    // One tokio runtime for the process (zenoh needs the multi-threaded one).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match command {
        Command::Run(c) => c.run(&rt).map_err(|e| {
            // A policy that keeps faulting: exit 3 for the supervisor that restarts the daemon.
            if riptide_runtime::daemon::exit_code(&e) != 1 {
                eprintln!("Error: {e:#}");
                std::process::exit(riptide_runtime::daemon::exit_code(&e));
            }
            e
        }),
        Command::CheckConfig(c) => c.run(&rt),
        Command::Drive(c) => c.run(&rt),
        Command::Sim(c) => c.run(&rt),
        Command::Demo(c) => c.run(&rt),
        Command::Eval(c) => c.run(&rt),
        Command::Replay(c) => c.run(&rt),
        Command::Record(c) => c.run(&rt),
        Command::Play(c) => c.run(&rt),
        Command::Train(c) => c.run(&rt),
        Command::Inspect(c) => c.run(&rt),
        Command::Infer(c) => c.run(&rt),
        Command::Parity(c) => c.run(&rt),
        Command::Bench(c) => c.run(&rt),
        Command::BenchTransport(c) => c.run(&rt),
        Command::Devices(c) => c.run(&rt),
        Command::Recover(c) => tools::recover::run(&c),
    }
}
