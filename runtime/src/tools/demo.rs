//! `riptide demo`: the whole system on one machine with nothing but the repository: an in-process
//! zenoh peer (the daemon, listening on a free loopback port), the sim node as a second peer, the
//! daemon serving a shipped policy with its driver hosted in-process, in lockstep simulated time.
//! Prints each episode as it ends and latency percentiles at the end; optionally records every episode
//! (MCAP) and writes the replay report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::checkpoints::{env_state_width, shipped_checkpoint};
use crate::daemon::config::LockstepSection;
use crate::daemon::config::{DaemonConfig, InputType};
use crate::daemon::run;
use crate::node::{ZenohConfig, ZenohMode};
use crate::simnode::{run_sim, EpisodeResult, SimNodeConfig};
use crate::tools::eval::driver_config_for;

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub env: String,
    pub episodes: usize,
    pub seed: u64,
    pub device: String,
    /// Default: the shipped policy for the env.
    pub checkpoint: Option<PathBuf>,
    pub delay_ms: f64,
    /// Record each episode (MCAP) here and write the replay report next to them.
    pub record: Option<PathBuf>,
    /// RTI warm starts entering at this schedule step (the daemon's `[rti]`); None = cold starts.
    pub rti_start_step: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub env: String,
    pub checkpoint: String,
    pub episodes: Vec<EpisodeResult>,
    pub successes: usize,
    pub inference_ms_p50: Option<f64>,
    pub inference_ms_p90: Option<f64>,
    pub inference_ms_p99: Option<f64>,
    pub chunks: u64,
    pub wall_s: f64,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Input feature names of a checkpoint (from its config.json, without loading weights).
fn checkpoint_inputs(dir: &Path) -> Result<Vec<(String, String)>> {
    if !dir.join("config.json").exists() {
        // riptide-only kinds (e.g. MoDE) have no LeRobot config: ask the loaded policy.
        let p = riptide_policies::load_policy(dir, riptide_policies::DeviceSpec::Cpu)
            .with_context(|| format!("{}", dir.display()))?;
        return Ok(p
            .spec()
            .inputs
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    riptide_policies::FeatureKind::Visual => "VISUAL",
                    riptide_policies::FeatureKind::State => "STATE",
                    riptide_policies::FeatureKind::Env => "ENV",
                };
                (f.name.clone(), kind.to_string())
            })
            .collect());
    }
    let text = std::fs::read_to_string(dir.join("config.json")).with_context(|| format!("{}", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let feats = v
        .get("input_features")
        .and_then(|f| f.as_object())
        .ok_or_else(|| anyhow!("{}/config.json has no input_features", dir.display()))?;
    Ok(feats
        .iter()
        .map(|(k, f)| {
            (
                k.clone(),
                f.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string(),
            )
        })
        .collect())
}

pub async fn demo(args: DemoArgs) -> Result<DemoReport> {
    let env = riptide_sim::make_env(&args.env)?;
    let spec = env.spec().clone();
    drop(env);
    let checkpoint = match &args.checkpoint {
        Some(c) => c.clone(),
        None => shipped_checkpoint(&args.env)?,
    };
    let port = free_port()?;
    let ns = format!("riptide/demo{}", std::process::id());
    let mut cfg = DaemonConfig::for_checkpoint(checkpoint.clone());
    cfg.device = args.device.clone();
    cfg.fps = Some(spec.fps);
    cfg.namespace = ns.clone();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    cfg.metrics.summary_period_s = 3600.0;
    let inputs = checkpoint_inputs(&checkpoint)?;
    let render = inputs.iter().any(|(_, t)| t == "VISUAL");
    for (name, kind) in &inputs {
        if kind != "VISUAL" {
            let mut ic: crate::daemon::config::InputConfig = toml::from_str("")?;
            ic.msg_type = Some(InputType::JointState);
            cfg.inputs.insert(name.clone(), ic);
        }
    }
    cfg.rti = args.rti_start_step.map(riptide_policies::rti::RtiConfig::new);
    cfg.lockstep = Some(LockstepSection {
        delay_ms: args.delay_ms,
        queue_threshold_s: 0.0,
        driver: driver_config_for(&spec),
    });

    let t_start = Instant::now();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(
        cfg,
        crate::node::Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        move |_| {
            let _ = ready_tx.send(());
        },
    ));
    if ready_rx.await.is_err() {
        return Err(daemon
            .await?
            .err()
            .unwrap_or_else(|| anyhow!("the daemon stopped before it was ready")));
    }
    let sim_cfg = SimNodeConfig {
        env: args.env.clone(),
        namespace: ns.clone(),
        lockstep: true,
        episodes: args.episodes,
        seed: args.seed,
        render,
        command_timeout_s: 120.0,
        zenoh: ZenohConfig {
            mode: ZenohMode::Peer,
            listen: vec![],
            connect: vec![format!("tcp/127.0.0.1:{port}")],
            ..ZenohConfig::default()
        },
        record_dir: args.record.clone(),
        env_state_width: env_state_width(&checkpoint)?,
        publish_hz: None,
        ros2: None,
    };
    let session = zenoh::open(crate::node::network::zenoh_config_from(&sim_cfg.zenoh)?)
        .await
        .map_err(|e| anyhow!("sim session: {e}"))?;
    // Wait until the daemon (its subscribers are declared before its token) is visible.
    crate::node::wait_alive(
        &session,
        &format!("{ns}/{}", riptide_msgs::topics::ALIVE_DAEMON),
        Duration::from_secs(30),
    )
    .await?;
    println!(
        "riptide demo: {} × {} episodes, policy {}, lockstep over zenoh (tcp/127.0.0.1:{port})",
        args.env,
        args.episodes,
        checkpoint.display()
    );
    let stop = crate::node::Shutdown::new();
    let results = {
        let (cfg, stop) = (sim_cfg.clone(), stop.clone());
        let session = session.clone();
        tokio::task::spawn_blocking(move || {
            run_sim(&cfg, &session, &stop, |r| {
                println!(
                    "  episode {:>3}  seed {:>6}  {}  score {:.2}  steps {:>4}  ({:.1} s)",
                    r.episode,
                    r.seed,
                    if r.success { "SUCCESS" } else { "fail   " },
                    r.score,
                    r.steps,
                    r.wall_s
                );
            })
        })
        .await?
    };
    let _ = stop_tx.send(());
    let metrics = daemon.await??;
    session.close().await.map_err(|e| anyhow!("{e}"))?;
    let results = results?;
    let p = |q: f64| metrics.inference.percentile(q).map(|s| s * 1e3);
    let report = DemoReport {
        env: args.env.clone(),
        checkpoint: checkpoint.display().to_string(),
        successes: results.iter().filter(|r| r.success).count(),
        episodes: results,
        inference_ms_p50: p(50.0),
        inference_ms_p90: p(90.0),
        inference_ms_p99: p(99.0),
        chunks: metrics.get("chunks_total"),
        wall_s: t_start.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// `riptide demo`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct DemoCmd {
    #[arg(long, default_value = "arm-reach")]
    pub env: String,
    #[arg(long, default_value_t = 5)]
    pub episodes: usize,
    #[arg(long, default_value_t = 1000)]
    pub seed: u64,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Default: the shipped policy for --env (policies/shipped/ENV).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Simulated inference delay, ms.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Record every episode (MCAP) into this folder and write the replay report there.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// RTI warm starts entering at this denoising step (e.g. 8 of DDIM-10: 2 evaluations per chunk).
    #[arg(long)]
    pub rti: Option<usize>,
}

impl DemoCmd {
    pub fn run(self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            env,
            episodes,
            seed,
            device,
            checkpoint,
            delay_ms,
            record,
            rti,
        } = self;

        let r = rt.block_on(crate::tools::demo::demo(crate::tools::demo::DemoArgs {
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
            crate::tools::demo::fmt_ms(r.inference_ms_p50),
            crate::tools::demo::fmt_ms(r.inference_ms_p90),
            crate::tools::demo::fmt_ms(r.inference_ms_p99),
            r.chunks,
            r.wall_s
        );
        if let Some(dir) = record {
            let episodes = crate::episodes::mcap_files(std::slice::from_ref(&dir))?;
            let s = crate::tools::replay::replay(
                &crate::tools::replay::ReplayArgs {
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
}

pub fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}
