//! `riptide replay`: recorded episodes through a policy.
//!
//! - Open loop: the recorded observations go through the policy at their recorded times (every
//!   `n_action_steps` steps, as the daemon would trigger); each predicted executable action is compared
//!   with the action recorded for the same time.
//! - Closed loop: the env is reset to the episode's seed (same initial state), the policy drives it
//!   through the driver in lockstep simulated time with a simulated inference delay, and success/score
//!   are reported.
//!
//! Deterministic: same inputs, checkpoint and seed → byte-identical JSON (wall-clock latencies are
//! reported separately and excluded from the comparable summary).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use riptide_policies::{load_policy, DeviceSpec, SampleRequest};
use riptide_sim::dataset::{read_episode, EpisodeData};
use riptide_sim::{Observation, RgbImage};

use crate::pipeline::window::{Frame, WindowBuilder};
use crate::tools::eval::{frames_for, sim_daemon_config, ClosedLoop};
pub use crate::tools::report::{ClosedLoopResult, OpenLoopEpisode, ReplaySummary};

#[derive(Debug, Clone)]
pub struct ReplayArgs {
    pub episodes: Vec<PathBuf>,
    pub checkpoint: PathBuf,
    pub device: DeviceSpec,
    pub closed_loop: bool,
    pub delay_ms: f64,
    /// Where to write `replay.json` and `replay.html`.
    pub out: PathBuf,
}

/// Frame `k` of a recording, its `environment_state` cut to `env_state_width` values when the recording
/// holds a newer (longer) layout than the policy was trained on (layouts only append).
fn observation_at(ep: &EpisodeData, k: usize, env_state_width: usize) -> Observation {
    let mut env_state = ep.env_state.get(k).cloned().unwrap_or_default();
    env_state.truncate(env_state_width);
    Observation {
        state: ep.state[k].clone(),
        env_state,
        image: ep.images.get(k).cloned().map(|im: RgbImage| im),
    }
}

/// Open-loop replay of one recorded episode.
pub fn open_loop(checkpoint: &Path, device: DeviceSpec, ep: &EpisodeData) -> Result<(OpenLoopEpisode, Vec<f64>)> {
    let mut policy = load_policy(checkpoint, device)?;
    let spec = policy.spec().clone();
    let env_name = ep
        .env
        .clone()
        .ok_or_else(|| anyhow!("{}: no env in metadata", ep.path.display()))?;
    let env = crate::tools::eval::env_for_policy(&env_name, &spec)?;
    let inputs = sim_daemon_config(checkpoint, env.spec(), &spec).resolve(&spec)?.inputs;
    if ep.fps <= 0.0 {
        bail!("{}: unknown fps", ep.path.display());
    }
    let dt = 1.0 / ep.fps;
    let mut builder = WindowBuilder::new(
        spec.n_obs_steps,
        dt,
        spec.inputs.iter().map(|f| (f.name.clone(), f.shape.clone(), 1e9)),
    );
    let d = spec.action_dim;
    let n_exec = spec.n_action_steps;
    let mut sum_abs = vec![0.0f64; n_exec];
    let mut cnt = vec![0usize; n_exec];
    let mut sum_sq = 0.0f64;
    let mut trace = Vec::new();
    let mut latencies = Vec::new();
    let mut inferences = 0;
    let seed0 = ep.seed.unwrap_or(0);
    for k in 0..ep.len() {
        let t = ep.times_s[k];
        for (feature, values) in frames_for(&inputs, t, &observation_at(ep, k, env.spec().env_state_dim))? {
            builder.push(
                &feature,
                Frame {
                    stamp_s: t,
                    data: std::sync::Arc::new(values),
                },
            );
        }
        if k % n_exec != 0 {
            continue;
        }
        let tw = builder.build(t).map_err(|e| anyhow!("{e}"))?;
        let req = SampleRequest {
            seed: Some(
                seed0
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(inferences as u64),
            ),
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let chunk = policy.predict(&tw.window, &req, None)?;
        latencies.push(t0.elapsed().as_secs_f64());
        inferences += 1;
        for j in 0..chunk.n_exec.min(n_exec) {
            let i = chunk.exec_start + j;
            let Some(rec) = ep.actions.get(k + j) else { break };
            let pred = &chunk.actions.data[i * d..(i + 1) * d];
            for (p, r) in pred.iter().zip(rec) {
                let e = (*p - *r) as f64;
                sum_abs[j] += e.abs();
                sum_sq += e * e;
                cnt[j] += 1;
            }
            trace.push((ep.times_s[k + j], rec.clone(), pred.to_vec()));
        }
    }
    let total: usize = cnt.iter().sum();
    let total = total.max(1);
    Ok((
        OpenLoopEpisode {
            path: ep.path.display().to_string(),
            seed: ep.seed,
            steps: ep.len(),
            inferences,
            mae: sum_abs.iter().sum::<f64>() / total as f64,
            rmse: (sum_sq / total as f64).sqrt(),
            mae_by_offset: sum_abs
                .iter()
                .zip(&cnt)
                .map(|(s, c)| if *c > 0 { s / *c as f64 } else { 0.0 })
                .collect(),
            trace,
        },
        latencies,
    ))
}

/// Replay episodes and write `replay.json` + `replay.html` into `args.out`.
pub fn replay(args: &ReplayArgs, mut progress: impl FnMut(usize, usize)) -> Result<ReplaySummary> {
    let mut open = Vec::new();
    let mut closed = Vec::new();
    let mut latencies = Vec::new();
    let mut closed_loop: Option<(String, ClosedLoop)> = None;
    let n = args.episodes.len();
    for (i, path) in args.episodes.iter().enumerate() {
        let ep = read_episode(path).with_context(|| format!("reading {}", path.display()))?;
        if args.closed_loop {
            let env = ep
                .env
                .clone()
                .ok_or_else(|| anyhow!("{}: no env in metadata", path.display()))?;
            let seed = ep
                .seed
                .ok_or_else(|| anyhow!("{}: no seed in metadata", path.display()))?;
            if closed_loop.as_ref().is_none_or(|(e, _)| e != &env) {
                closed_loop = Some((
                    env.clone(),
                    ClosedLoop::new(&args.checkpoint, args.device, &env, args.delay_ms / 1e3)?,
                ));
            }
            let cl = &mut closed_loop.as_mut().expect("set above").1;
            let r = cl.episode(seed)?;
            latencies.extend(&r.inference_s);
            closed.push(ClosedLoopResult {
                path: path.display().to_string(),
                seed,
                recorded_success: ep.success,
                success: r.success,
                score: r.score,
                steps: r.steps,
                inferences: r.inferences,
                nfe: r.nfe,
            });
        } else {
            let (r, lat) = open_loop(&args.checkpoint, args.device, &ep)?;
            latencies.extend(lat);
            open.push(r);
        }
        progress(i + 1, n);
    }
    let summary = ReplaySummary {
        checkpoint: args.checkpoint.display().to_string(),
        mode: if args.closed_loop { "closed_loop" } else { "open_loop" },
        delay_ms: args.delay_ms,
        mean_mae: (!open.is_empty()).then(|| open.iter().map(|e| e.mae).sum::<f64>() / open.len() as f64),
        success_rate: (!closed.is_empty())
            .then(|| closed.iter().filter(|e| e.success).count() as f64 / closed.len() as f64),
        open_loop: open,
        closed_loop: closed,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("replay.json"), serde_json::to_string_pretty(&summary)?)?;
    std::fs::write(
        args.out.join("replay.html"),
        crate::tools::report::html(&summary, &latencies),
    )?;
    Ok(summary)
}

/// `riptide replay`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct ReplayCmd {
    /// MCAP episodes (files or folders).
    pub episodes: Vec<PathBuf>,
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    #[arg(long)]
    pub closed_loop: bool,
    /// Simulated inference delay (closed loop), ms.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    #[arg(long, default_value = "replay")]
    pub out: PathBuf,
}

impl ReplayCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
            episodes,
            checkpoint,
            device,
            closed_loop,
            delay_ms,
            out,
        } = self;

        let files = crate::episodes::mcap_files(&episodes)?;
        let s = crate::tools::replay::replay(
            &crate::tools::replay::ReplayArgs {
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
}
