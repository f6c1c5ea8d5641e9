//! `riptide demo`: the whole system on one machine with nothing but the repository: an in-process
//! zenoh peer (the daemon, listening on a free loopback port), the sim node as a second peer, the
//! daemon serving a shipped policy with its driver hosted in-process, in lockstep simulated time.
//! Prints each episode as it ends and latency percentiles at the end; optionally records every episode
//! (MCAP) and writes the replay report.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::config::{DaemonConfig, InputType, ZenohConfig, ZenohMode};
use crate::daemon::run;
use crate::daemon_lockstep::LockstepSection;
use crate::evaluate::driver_config_for;
use crate::simnode::{run_sim, EpisodeResult, SimNodeConfig};

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

/// Where the shipped policy for `env` lives (`policies/shipped/<env>` of the repository).
pub fn shipped_checkpoint(env: &str) -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("policies/shipped").join(env),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies/shipped")
            .join(env),
    ];
    candidates
        .iter()
        .find(|p| p.join("config.json").exists())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no shipped policy for {env:?} (looked in {}); pass --checkpoint DIR",
                candidates[0].display()
            )
        })
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

/// The `environment_state` layout the shipped policy for `env` takes (what a sim node publishes when
/// not told otherwise, so `riptide sim` + `riptide daemon` work together out of the box).
pub fn default_env_state_width(env: &str) -> Option<usize> {
    env_state_width(&shipped_checkpoint(env).ok()?).ok().flatten()
}

/// Width of the checkpoint's `observation.environment_state` input, if any: from LeRobot's config.json
/// `input_features`, or riptide.json's `inputs` for kinds without a config.json (MoDE).
pub fn env_state_width(dir: &Path) -> Result<Option<usize>> {
    let read = |name: &str| -> Result<serde_json::Value> {
        let path = dir.join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?)
            .with_context(|| format!("{}", path.display()))
    };
    let product = |s: &serde_json::Value| {
        s.as_array()
            .map(|s| s.iter().filter_map(|d| d.as_u64()).product::<u64>() as usize)
    };
    if dir.join("config.json").exists() {
        let v = read("config.json")?;
        return Ok(v
            .pointer("/input_features/observation.environment_state/shape")
            .and_then(product));
    }
    let v = read("riptide.json")?;
    Ok(v.get("inputs")
        .and_then(|i| i.as_array())
        .and_then(|i| {
            i.iter()
                .find(|f| f.get("name").and_then(|n| n.as_str()) == Some("observation.environment_state"))
        })
        .and_then(|f| f.get("shape"))
        .and_then(product))
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
            let mut ic: crate::config::InputConfig = toml::from_str("")?;
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
        async {
            let _ = stop_rx.await;
        },
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
    };
    let session = zenoh::open(crate::daemon::zenoh_config_from(&sim_cfg.zenoh)?)
        .await
        .map_err(|e| anyhow!("sim session: {e}"))?;
    // Wait until the daemon (its subscribers are declared before its token) is visible.
    crate::daemon::wait_alive(&session, &format!("{ns}/alive/daemon"), Duration::from_secs(30)).await?;
    println!(
        "riptide demo: {} × {} episodes, policy {}, lockstep over zenoh (tcp/127.0.0.1:{port})",
        args.env,
        args.episodes,
        checkpoint.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
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
