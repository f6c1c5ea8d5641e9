//! `riptide`: a real-time diffusion-policy runtime for robots.

use std::path::PathBuf;

use anyhow::{Context, Result};
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
        /// Consensus sampling: chunks per inference (default: the checkpoint's).
        #[arg(long)]
        candidates: Option<usize>,
        /// Disable the fused host epilogue on CPU backends (for before/after measurements).
        #[arg(long)]
        no_cpu_fusion: bool,
    },
    /// Closed-loop success of a policy on fresh seeds (in-process lockstep), next to the scripted
    /// expert on the same seeds; NFE per control step and latency. Prints JSON.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        env: String,
        #[arg(long, default_value_t = 10000)]
        seed: u64,
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        /// Simulated inference delay, ms.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        /// Infer when less than this much of the chunk is left (s of simulated time; 0 = when it ran out).
        #[arg(long, default_value_t = 0.0)]
        queue_threshold_s: f64,
        /// Override the checkpoint's number of denoising steps.
        #[arg(long)]
        inference_steps: Option<usize>,
        /// RTI warm starts entering at this schedule step (see the daemon's [rti]); omit for cold starts.
        #[arg(long)]
        rti_start_step: Option<usize>,
        /// With --rti-start-step: forward-noise the shifted chunk to that step's level.
        #[arg(long)]
        rti_noise: bool,
        /// With --rti-start-step: cold starts (each episode's first chunk) run this many steps.
        #[arg(long)]
        rti_cold_steps: Option<usize>,
        /// With --rti-start-step: warm starts run this many DDIM steps from that step's level (re-spaced).
        #[arg(long)]
        rti_warm_steps: Option<usize>,
        /// With --rti-start-step: cold start when the normalised state moved more than this since the
        /// previous chunk's observation (max-abs).
        #[arg(long)]
        rti_jump_threshold: Option<f32>,
        /// EADP guidance (drone policies) with this scale, λ_t = scale·ᾱ_t; 0 only measures the
        /// controller model's tracking cost of the unguided chunks.
        #[arg(long)]
        eadp_scale: Option<f64>,
        /// Consensus sampling: draw this many chunks per inference (one batch) and execute their medoid.
        #[arg(long)]
        candidates: Option<usize>,
        /// Write the full summary (per-episode results) here as well.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write every episode's task (first environment_state), commands and device positions here
        /// (JSON), to see how failures happen.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Run a driver node: chunks in, a safe command stream out at the driver's rate.
    Drive {
        /// The driver config (TOML); see examples/arm-driver.toml.
        #[arg(long)]
        config: PathBuf,
        /// Validate the config and exit.
        #[arg(long)]
        check: bool,
    },
    /// The whole system on this machine: sim node → zenoh → daemon (shipped policy, hosted driver) → sim,
    /// in lockstep simulated time; prints each episode and latency percentiles.
    Demo {
        #[arg(long, default_value = "arm-reach")]
        env: String,
        #[arg(long, default_value_t = 5)]
        episodes: usize,
        #[arg(long, default_value_t = 1000)]
        seed: u64,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Default: the shipped policy for --env (policies/shipped/ENV).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Simulated inference delay, ms.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        /// Record every episode (MCAP) into this folder and write the replay report there.
        #[arg(long)]
        record: Option<PathBuf>,
        /// RTI warm starts entering at this denoising step (e.g. 8 of DDIM-10: 2 evaluations per chunk).
        #[arg(long)]
        rti: Option<usize>,
    },
    /// Train a diffusion policy from recorded episodes (a folder of MCAP files); writes LeRobot-layout
    /// checkpoints under OUT/checkpoints/STEP.
    Train {
        #[arg(long)]
        data: PathBuf,
        /// Training config (TOML); defaults otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        /// Resume from a checkpoint written by an earlier run.
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Fine-tune: start from this diffusion checkpoint's weights (fresh optimiser and schedule); it
        /// may take an older, shorter observation.environment_state (the new inputs start at zero).
        #[arg(long, conflicts_with = "resume")]
        init_from: Option<PathBuf>,
        /// Input features, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "observation.state,observation.environment_state"
        )]
        features: Vec<String>,
        /// Override the config's number of steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Skip episodes recorded as failures.
        #[arg(long)]
        successful_only: bool,
    },
    /// Run a simulated robot as a zenoh node (observations out, commands on <ns>/action in).
    Sim {
        #[arg(long)]
        env: String,
        /// Simulated time: publish <ns>/clock and advance one control step per command.
        #[arg(long)]
        lockstep: bool,
        #[arg(long, default_value_t = 1)]
        episodes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Publish camera frames.
        #[arg(long)]
        render: bool,
        #[arg(long, default_value = "riptide")]
        namespace: String,
        /// Zenoh endpoint to connect to (default: the daemon's tcp/127.0.0.1:7450).
        #[arg(long)]
        connect: Vec<String>,
        /// Record each episode (MCAP) into this folder.
        #[arg(long)]
        record: Option<PathBuf>,
        /// observation.environment_state layout (its width, e.g. 5 or 12 for arm-reach: the original or
        /// with tool-relative features appended); default: the one the shipped policy for --env takes.
        #[arg(long)]
        env_state_width: Option<usize>,
    },
    /// Record expert episodes of a sim env (one MCAP per episode), or live zenoh topics (--topic).
    Record {
        /// Expert episodes of this env.
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder (expert episodes) or file (live topics).
        #[arg(long)]
        out: PathBuf,
        /// Record camera frames too.
        #[arg(long)]
        render: bool,
        /// Expert episodes: keep recording this long after a success, the expert holding its goal, so
        /// the demos show arriving and stopping (an episode otherwise ends mid-motion).
        #[arg(long, default_value_t = 0.0)]
        hold_s: f64,
        /// Expert episodes, DART-style: execute the expert's command plus a random offset with this
        /// standard deviation (action units; one value per action dimension, comma separated, or one for
        /// all), record the expert's command. Shows the policy how the expert recovers from errors.
        #[arg(long, value_delimiter = ',')]
        perturb: Vec<f64>,
        /// With --perturb: how long each offset is held, seconds.
        #[arg(long, default_value_t = 0.5)]
        perturb_hold_s: f64,
        /// With --perturb: the fraction of hold periods that are perturbed at all.
        #[arg(long, default_value_t = 0.5)]
        perturb_prob: f64,
        /// Expert episodes, DAgger-style: this policy checkpoint drives the env (through the driver, as
        /// in `riptide eval`) and the file records the expert's command at every state it visits, so
        /// training on them teaches the policy to recover from its own mistakes.
        #[arg(long, conflicts_with_all = ["perturb", "hold_s"])]
        policy: Option<PathBuf>,
        /// With --policy: where it runs.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        /// Live topic to record, KEY:TYPE (repeatable); `riptide` records the daemon's own topics.
        #[arg(long)]
        topic: Vec<String>,
        /// Live recording length (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
        #[arg(long)]
        connect: Vec<String>,
    },
    /// Publish a recording's observation topics onto zenoh at their recorded timing.
    Play {
        episode: PathBuf,
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        #[arg(long, default_value = "riptide")]
        namespace: String,
        #[arg(long)]
        connect: Vec<String>,
    },
    /// Replay recorded episodes through a policy, open loop (compare with recorded actions) or closed
    /// loop (reset the sim to each episode's seed and let the policy drive); writes replay.json/.html.
    Replay {
        /// MCAP episodes (files or folders).
        episodes: Vec<PathBuf>,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        #[arg(long)]
        closed_loop: bool,
        /// Simulated inference delay (closed loop), ms.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        #[arg(long, default_value = "replay")]
        out: PathBuf,
    },
    /// Measure what the zenoh path adds to inference (obs in → chunk out, minus inference); prints JSON.
    BenchTransport {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long, default_value_t = 10.0)]
        fps: f64,
        /// Camera + state frames per second.
        #[arg(long, default_value_t = 50.0)]
        rate_hz: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// Camera frame size to send, WxH (default: the checkpoint's input size).
        #[arg(long, value_parser = parse_wh)]
        image: Option<(u32, u32)>,
        /// Send camera frames through zenoh shared memory.
        #[arg(long)]
        shm: bool,
        #[arg(long, default_value_t = 17480)]
        port: u16,
        /// Denoising steps (default: the checkpoint's).
        #[arg(long)]
        steps: Option<usize>,
    },
}

/// Zenoh settings of a node (sim, recorder, player): connect to the daemon unless `--connect` says otherwise.
fn node_zenoh(connect: Vec<String>) -> riptide_runtime::config::ZenohConfig {
    let mut z = riptide_runtime::drive::node_zenoh();
    if !connect.is_empty() {
        z.connect = connect;
    }
    z
}

/// A flag set on Ctrl-C / SIGTERM, for loops running off the async executor (call inside the runtime).
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        s2.store(true, std::sync::atomic::Ordering::Release);
    });
    stop
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// MCAP files from a list of files and folders (sorted per folder).
fn mcap_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "mcap"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        anyhow::bail!("no .mcap episodes in {paths:?}");
    }
    Ok(out)
}

fn parse_wh(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?}: expected WxH, e.g. 640x480"))?;
    let p = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    Ok((p(w)?, p(h)?))
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
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,zenoh=warn".into()),
        )
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
                policy.spec().label(),
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
        Command::Drive { config, check } => {
            let cfg = riptide_runtime::drive::DriveConfig::from_file(&config)?;
            if check {
                println!("{}: OK", config.display());
                return Ok(());
            }
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let node = riptide_runtime::drive::start(cfg).await?;
                shutdown_signal().await;
                tracing::info!("shutting down");
                let m = node.stop().await?;
                tracing::info!("{}", m.summary());
                anyhow::Ok(())
            })
        }
        Command::Demo {
            env,
            episodes,
            seed,
            device,
            checkpoint,
            delay_ms,
            record,
            rti,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let r = rt.block_on(riptide_runtime::demo::demo(riptide_runtime::demo::DemoArgs {
                env,
                episodes,
                seed,
                device: device.clone(),
                checkpoint,
                delay_ms,
                record: record.clone(),
                rti_start_step: rti,
            }))?;
            println!(
                "{}/{} successful; inference p50 {} ms, p90 {} ms, p99 {} ms over {} chunks; {:.1} s",
                r.successes,
                r.episodes.len(),
                fmt_ms(r.inference_ms_p50),
                fmt_ms(r.inference_ms_p90),
                fmt_ms(r.inference_ms_p99),
                r.chunks,
                r.wall_s
            );
            if let Some(dir) = record {
                let episodes = mcap_files(std::slice::from_ref(&dir))?;
                let s = riptide_runtime::replay::replay(
                    &riptide_runtime::replay::ReplayArgs {
                        episodes,
                        checkpoint: r.checkpoint.clone().into(),
                        device: device.parse()?,
                        closed_loop: false,
                        delay_ms,
                        out: dir.clone(),
                    },
                    |_, _| {},
                )?;
                println!(
                    "recorded {} episodes in {}; open-loop replay: mean |Δaction| {:.4}; report {}",
                    s.open_loop.len(),
                    dir.display(),
                    s.mean_mae.unwrap_or(f64::NAN),
                    dir.join("replay.html").display()
                );
            }
            Ok(())
        }
        Command::Train {
            data,
            config,
            out,
            device,
            resume,
            init_from,
            features,
            steps,
            successful_only,
        } => {
            let s = riptide_runtime::train_cmd::train(&riptide_runtime::train_cmd::TrainArgs {
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
        Command::Sim {
            env,
            lockstep,
            episodes,
            seed,
            render,
            namespace,
            connect,
            record,
            env_state_width,
        } => {
            let z = node_zenoh(connect);
            let env_name = env.clone();
            let cfg = riptide_runtime::simnode::SimNodeConfig {
                env,
                namespace,
                lockstep,
                episodes,
                seed,
                render,
                command_timeout_s: 60.0,
                zenoh: z,
                record_dir: record,
                env_state_width: env_state_width.or_else(|| riptide_runtime::demo::default_env_state_width(&env_name)),
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let session = zenoh::open(riptide_runtime::daemon::zenoh_config_from(&cfg.zenoh)?)
                    .await
                    .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
                let stop = stop_on_signal();
                let results = tokio::task::spawn_blocking(move || {
                    riptide_runtime::simnode::run_sim(&cfg, &session, &stop, |r| {
                        println!("{}", serde_json::to_string(r).unwrap_or_default())
                    })
                })
                .await??;
                let ok = results.iter().filter(|r| r.success).count();
                println!("{ok}/{} successful", results.len());
                anyhow::Ok(())
            })
        }
        Command::Record {
            env,
            episodes,
            seed,
            out,
            render,
            hold_s,
            perturb,
            perturb_hold_s,
            perturb_prob,
            policy,
            device,
            topic,
            seconds,
            connect,
        } => match env {
            Some(env_name) => {
                use riptide_sim::record::EpisodeSummary;
                // One episode per seed into `path`: expert-driven (clean or DART-perturbed), or driven by
                // --policy and labelled by the expert (DAgger).
                let (mut record_one, kind): (Box<dyn FnMut(u64, &std::path::Path) -> Result<EpisodeSummary>>, _) =
                    match &policy {
                        Some(ckpt) => {
                            let mut cl = riptide_runtime::evaluate::ClosedLoop::new(ckpt, device, &env_name, 0.0)?;
                            riptide_runtime::evaluate::dagger_labels_valid(cl.env.as_ref())?;
                            let label = ckpt.display().to_string();
                            let f = move |s, path: &std::path::Path| {
                                riptide_runtime::evaluate::record_dagger_episode(&mut cl, s, path, render, &label)
                            };
                            (Box::new(f), "policy-driven (expert-labelled)")
                        }
                        None => {
                            anyhow::ensure!(
                                hold_s.is_finite() && hold_s >= 0.0,
                                "--hold-s must be a finite number of seconds >= 0 (got {hold_s})"
                            );
                            let mut env = riptide_sim::make_env(&env_name)?;
                            let hold_steps = (hold_s * env.spec().fps).round() as usize;
                            let perturbation = perturbation_for(env.spec(), &perturb, perturb_hold_s, perturb_prob)?;
                            let f = move |s, path: &std::path::Path| {
                                Ok(riptide_sim::record::record_expert_episode_perturbed(
                                    env.as_mut(),
                                    s,
                                    path,
                                    render,
                                    hold_steps,
                                    perturbation.as_ref(),
                                )?)
                            };
                            (Box::new(f), "expert")
                        }
                    };
                std::fs::create_dir_all(&out)?;
                let mut ok = 0;
                for i in 0..episodes {
                    let s = seed + i as u64;
                    let r = record_one(s, &out.join(format!("{env_name}_{s:06}.mcap")))?;
                    ok += r.success as usize;
                    eprint!("\r{}/{} episodes recorded ({} successful)", i + 1, episodes, ok);
                }
                eprintln!();
                println!("{ok}/{episodes} {kind} episodes successful → {}", out.display());
                Ok(())
            }
            None if policy.is_some() => {
                anyhow::bail!("--policy records sim episodes driven by that policy: give --env too")
            }
            None => {
                let topics = if topic.is_empty() || topic == ["riptide"] {
                    riptide_runtime::bag::default_topics("riptide")
                } else {
                    topic
                        .iter()
                        .map(|t| riptide_runtime::bag::parse_topic(t))
                        .collect::<Result<_>>()?
                };
                let z = node_zenoh(connect);
                let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                rt.block_on(async {
                    let session = zenoh::open(riptide_runtime::daemon::zenoh_config_from(&z)?)
                        .await
                        .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
                    let stop = async {
                        match seconds {
                            Some(s) => tokio::time::sleep(std::time::Duration::from_secs_f64(s)).await,
                            None => shutdown_signal().await,
                        }
                    };
                    let n = riptide_runtime::bag::record_live(&session, &topics, &out, stop).await?;
                    println!("{n} messages → {}", out.display());
                    anyhow::Ok(())
                })
            }
        },
        Command::Play {
            episode,
            rate,
            namespace,
            connect,
        } => {
            let z = node_zenoh(connect);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let session = zenoh::open(riptide_runtime::daemon::zenoh_config_from(&z)?)
                    .await
                    .map_err(|e| anyhow::anyhow!("zenoh: {e}"))?;
                let stop = stop_on_signal();
                let n = riptide_runtime::bag::play(&session, &episode, &namespace, rate, &stop).await?;
                println!("{n} messages played");
                anyhow::Ok(())
            })
        }
        Command::Replay {
            episodes,
            checkpoint,
            device,
            closed_loop,
            delay_ms,
            out,
        } => {
            let files = mcap_files(&episodes)?;
            let s = riptide_runtime::replay::replay(
                &riptide_runtime::replay::ReplayArgs {
                    episodes: files,
                    checkpoint,
                    device,
                    closed_loop,
                    delay_ms,
                    out: out.clone(),
                },
                |i, n| {
                    let w = 30;
                    let done = i * w / n.max(1);
                    eprint!("\r[{}{}] {i}/{n}", "#".repeat(done), " ".repeat(w - done));
                    if i == n {
                        eprintln!();
                    }
                },
            )?;
            if let Some(r) = s.success_rate {
                println!(
                    "closed loop: {:.1} % success over {} episodes",
                    r * 100.0,
                    s.closed_loop.len()
                );
            }
            if let Some(m) = s.mean_mae {
                println!(
                    "open loop: mean |predicted − recorded| {m:.4} over {} episodes",
                    s.open_loop.len()
                );
            }
            println!(
                "report: {} and {}",
                out.join("replay.json").display(),
                out.join("replay.html").display()
            );
            Ok(())
        }
        Command::BenchTransport {
            checkpoint,
            device,
            fps,
            rate_hz,
            seconds,
            image,
            shm,
            port,
            steps,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let r = rt.block_on(riptide_runtime::bench_transport::bench_transport(
                riptide_runtime::bench_transport::TransportBench {
                    checkpoint,
                    device,
                    fps,
                    rate_hz,
                    seconds,
                    image_wh: image,
                    shm,
                    port,
                    steps,
                },
            ))?;
            println!("{}", serde_json::to_string(&r)?);
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
        Command::Eval {
            checkpoint,
            env,
            seed,
            episodes,
            device,
            delay_ms,
            queue_threshold_s,
            inference_steps,
            rti_start_step,
            rti_noise,
            rti_cold_steps,
            rti_warm_steps,
            rti_jump_threshold,
            eadp_scale,
            candidates,
            out,
            trace,
        } => {
            if (rti_cold_steps.is_some() || rti_warm_steps.is_some() || rti_jump_threshold.is_some())
                && rti_start_step.is_none()
            {
                anyhow::bail!(
                    "--rti-cold-steps, --rti-warm-steps and --rti-jump-threshold need --rti-start-step (they shape RTI sampling)"
                );
            }
            let rti = rti_start_step.map(|k| riptide_policies::rti::RtiConfig {
                noise: rti_noise,
                cold_steps: rti_cold_steps,
                warm_steps: rti_warm_steps,
                jump_threshold: rti_jump_threshold,
                ..riptide_policies::rti::RtiConfig::new(k)
            });
            let args = riptide_runtime::evaluate::EvalArgs {
                checkpoint,
                device,
                env,
                seed,
                episodes,
                delay_s: delay_ms / 1e3,
                queue_threshold_s,
                sampling: riptide_runtime::lockstep::Sampling {
                    inference_steps,
                    rti,
                    eadp: eadp_scale.map(|scale| riptide_drivers::EadpConfig {
                        scale,
                        ..Default::default()
                    }),
                    candidates,
                },
            };
            let mut ok = 0;
            let s = riptide_runtime::evaluate::evaluate(&args, |i, n, e| {
                ok += e.success as usize;
                eprint!("\r{i}/{n} episodes, {ok} successful");
                if i == n {
                    eprintln!();
                }
            })?;
            if let Some(p) = out {
                std::fs::write(&p, serde_json::to_string_pretty(&s)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            if let Some(p) = trace {
                let eps: Vec<_> = s
                    .per_episode
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "seed": e.seed,
                            "success": e.success,
                            "steps": e.steps,
                            "first_env_state": e.first_env_state,
                            "commands": e.commands,
                            "positions": e.positions,
                        })
                    })
                    .collect();
                std::fs::write(&p, serde_json::to_string(&eps)?).with_context(|| format!("writing {}", p.display()))?;
            }
            let mut v = serde_json::to_value(&s)?;
            v.as_object_mut().map(|o| o.remove("per_episode"));
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Command::Bench {
            checkpoint,
            device,
            batch,
            iters,
            warmup,
            steps,
            candidates,
            no_cpu_fusion,
        } => {
            let opts = riptide_policies::LoadOptions {
                cpu_fusion: !no_cpu_fusion,
            };
            let r = cli::bench(&checkpoint, device, opts, batch, iters, warmup, steps, candidates)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
    }
}

/// `riptide record --perturb`: one sigma per action dimension (or one for all), finite and >= 0.
fn perturbation_for(
    spec: &riptide_sim::EnvSpec,
    sigma: &[f64],
    hold_s: f64,
    probability: f64,
) -> Result<Option<riptide_sim::record::Perturbation>> {
    if sigma.is_empty() {
        return Ok(None);
    }
    let n = spec.action_dim;
    let sigma = match sigma.len() {
        1 => vec![sigma[0]; n],
        m if m == n => sigma.to_vec(),
        m => anyhow::bail!(
            "--perturb takes one value or one per action dimension: {} actions have {n}, got {m}",
            spec.name
        ),
    };
    anyhow::ensure!(
        sigma.iter().all(|s| s.is_finite() && *s >= 0.0),
        "--perturb values must be finite and >= 0 (got {sigma:?})"
    );
    anyhow::ensure!(
        hold_s.is_finite() && hold_s > 0.0,
        "--perturb-hold-s must be a positive number of seconds (got {hold_s})"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&probability),
        "--perturb-prob must lie in [0, 1] (got {probability})"
    );
    Ok(Some(riptide_sim::record::Perturbation {
        sigma,
        hold_steps: ((hold_s * spec.fps).round() as usize).max(1),
        probability,
    }))
}
