//! Closed-loop evaluation in-process: a sim env and the daemon's lockstep pipeline
//! ([`crate::daemon::lockstep::Lockstep`]: window, policy, chunk timing with the simulated delay,
//! hosted driver) joined by an in-process transport instead of zenoh. Observations are encoded as the
//! sim node publishes them and handed over as bytes, so decoding, resizing, layout and validation are
//! the daemon's. Deterministic: same checkpoint, seeds and delay → identical commands.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use riptide_drivers::{DriverConfig, SafetyConfig, SupervisorConfig};
use riptide_policies::{load_policy, DeviceSpec, PolicySpec};
use riptide_sim::record::{image_msg, joint_state_msg};
use riptide_sim::{Env, EnvSpec, Observation};
use serde::Serialize;

use crate::daemon::config::{DaemonConfig, InputConfig, InputType, ResolvedInput};
use crate::daemon::lockstep::{Handled, Lockstep, LockstepConfig, RobotStep};
use crate::node::Metrics;
use crate::pipeline::{Pipeline, Sampling};

/// The driver an env needs: its action limits and speed limits, clamping; the watchdog only matters
/// when the policy stalls, which lockstep cannot, so it is generous.
pub fn driver_config_for(spec: &EnvSpec) -> DriverConfig {
    let dt = 1.0 / spec.fps;
    let mut supervisor = SupervisorConfig::new(5_000);
    supervisor.engage_velocity_scale = 1.0;
    DriverConfig {
        executor: Default::default(),
        safety: SafetyConfig {
            position_min: spec.action_low.clone(),
            position_max: spec.action_high.clone(),
            max_velocity: spec.max_speed.clone(),
            max_acceleration: None,
            max_jump: None,
            max_dt_s: 2.0 * dt,
            on_violation: Default::default(),
            drone: None,
        },
        supervisor,
    }
}

/// Width of the policy's `observation.environment_state`, if it takes one.
pub fn policy_env_state_width(policy: &PolicySpec) -> Option<usize> {
    policy
        .inputs
        .iter()
        .find(|f| f.name == "observation.environment_state")
        .map(|f| f.shape.iter().product())
}

/// The sim env `name` publishing the `environment_state` layout `policy` was trained on.
pub fn env_for_policy(name: &str, policy: &PolicySpec) -> Result<Box<dyn riptide_sim::Env>> {
    Ok(riptide_sim::make_env_for(name, policy_env_state_width(policy))?)
}

/// Daemon-style input config for a sim env's topics (vectors as JointState with stamps).
pub fn sim_daemon_config(checkpoint: &Path, spec: &EnvSpec, policy: &PolicySpec) -> DaemonConfig {
    let mut cfg = DaemonConfig::for_checkpoint(checkpoint.to_path_buf());
    cfg.fps = Some(spec.fps);
    for f in &policy.inputs {
        let mut ic: InputConfig = toml::from_str("").expect("empty input config");
        if f.kind != riptide_policies::FeatureKind::Visual {
            ic.msg_type = Some(InputType::JointState);
        }
        cfg.inputs.insert(f.name.clone(), ic);
    }
    cfg
}

/// Encode one observation's frames as the sim node publishes them, in `inputs` order.
pub fn encode_frames(inputs: &[ResolvedInput], t_s: f64, obs: &Observation) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let bytes = match input.feature.as_str() {
            "observation.state" => riptide_msgs::encode(&joint_state_msg(t_s, obs.state.iter().map(|v| *v as f64)))?,
            "observation.environment_state" => {
                riptide_msgs::encode(&joint_state_msg(t_s, obs.env_state.iter().map(|v| *v as f64)))?
            }
            name if input.kind == riptide_policies::FeatureKind::Visual => {
                let img = obs
                    .image
                    .as_ref()
                    .ok_or_else(|| anyhow!("the policy needs {name} but the env rendered no image"))?;
                riptide_msgs::encode(&image_msg(t_s, img))?
            }
            other => anyhow::bail!("the sim provides observation.state, observation.environment_state and observation.image; the policy asks for {other}"),
        };
        out.push(bytes);
    }
    Ok(out)
}

/// Encode one observation as the sim node would publish it and decode it as the daemon would.
pub fn frames_for(inputs: &[ResolvedInput], t_s: f64, obs: &Observation) -> Result<Vec<(String, Vec<f32>)>> {
    let frames = encode_frames(inputs, t_s, obs)?;
    inputs
        .iter()
        .zip(frames)
        .map(|(input, bytes)| {
            let d = crate::pipeline::decode::decode(input, &bytes)
                .map_err(|(r, why)| anyhow!("{}: {} ({why})", input.feature, r.label()))?;
            Ok((input.feature.clone(), d.values))
        })
        .collect()
}

/// One closed-loop episode's result.
#[derive(Debug, Clone, Serialize)]
pub struct ClosedLoopEpisode {
    pub seed: u64,
    /// Which simulated robot ran it (`riptide eval --robots N`, N > 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robot: Option<usize>,
    pub success: bool,
    pub score: f64,
    pub steps: usize,
    pub inferences: usize,
    pub nfe: u64,
    /// Inferences that continued the previous chunk (RTI) instead of starting from noise.
    pub warm_starts: u64,
    /// Mean distance between the device's position after each step and the command of that step,
    /// over the first three position dimensions (m for the quadrotor's xyz, rad for arm-reach's joints).
    pub tracking_error: f64,
    /// Commands sent to the env, one per step.
    #[serde(skip)]
    pub commands: Vec<Vec<f64>>,
    /// The device's position at reset, then after each step (one more than `commands`; `riptide eval --trace`).
    #[serde(skip)]
    pub positions: Vec<Vec<f64>>,
    /// The first observation's `observation.environment_state` (the task: targets, obstacles).
    #[serde(skip)]
    pub first_env_state: Vec<f32>,
    /// Wall-clock inference latencies, seconds.
    #[serde(skip)]
    pub inference_s: Vec<f64>,
}

/// The lockstep pipeline + env, joined in-process, ready to run episodes.
pub struct ClosedLoop {
    pub lockstep: Lockstep,
    pub env: Box<dyn Env>,
    render: bool,
}

impl ClosedLoop {
    pub fn new(checkpoint: &Path, device: DeviceSpec, env_name: &str, delay_s: f64) -> Result<Self> {
        Self::with_sampling(checkpoint, device, env_name, delay_s, 0.0, Sampling::default())
    }

    /// As [`ClosedLoop::new`], inferring when less than `queue_threshold_s` of the chunk is left
    /// (0: when it ran out) and sampling as `sampling` says (step count, RTI warm starts).
    pub fn with_sampling(
        checkpoint: &Path,
        device: DeviceSpec,
        env_name: &str,
        delay_s: f64,
        queue_threshold_s: f64,
        sampling: Sampling,
    ) -> Result<Self> {
        let policy = load_policy(checkpoint, device).with_context(|| format!("loading {}", checkpoint.display()))?;
        let pspec = policy.spec().clone();
        let env = env_for_policy(env_name, &pspec)?;
        let spec = env.spec().clone();
        if pspec.action_dim != spec.action_dim {
            anyhow::bail!(
                "{} takes {}-D actions but the policy makes {}-D ones",
                spec.name,
                spec.action_dim,
                pspec.action_dim
            );
        }
        let resolved = sim_daemon_config(checkpoint, &spec, &pspec).resolve(&pspec)?;
        let render = pspec
            .inputs
            .iter()
            .any(|f| f.kind == riptide_policies::FeatureKind::Visual);
        let dt_s = 1.0 / spec.fps;
        let lockstep = Lockstep::new(
            Pipeline::new(policy, sampling, dt_s)?,
            resolved.inputs,
            LockstepConfig {
                dt_s,
                delay_s,
                queue_threshold_s,
                driver: driver_config_for(&spec),
            },
            std::sync::Arc::new(Metrics::default()),
        )?;
        Ok(Self { lockstep, env, render })
    }

    pub fn spec(&self) -> &PolicySpec {
        self.lockstep.spec()
    }

    /// Run one episode from `seed`.
    pub fn episode(&mut self, seed: u64) -> Result<ClosedLoopEpisode> {
        self.episode_observed(seed, |_, _, _| Ok(()))
    }

    /// The in-process transport of one control step: the observation's frames in, the command out.
    fn command(&mut self, t: f64, obs: &Observation) -> Result<Vec<f64>> {
        let frames = encode_frames(self.lockstep.inputs(), t, obs)?;
        let n = frames.len();
        for (i, bytes) in frames.into_iter().enumerate() {
            match self.lockstep.frame(i, &bytes)? {
                Handled::Step(step) if i + 1 == n => return Ok(step.command),
                Handled::Stored if i + 1 < n => {}
                Handled::Rejected { reason, detail } => anyhow::bail!("{reason}: {detail}"),
                _ => anyhow::bail!("lockstep stepped before the last frame of t = {t:.3}"),
            }
        }
        anyhow::bail!("no command for t = {t:.3}: the policy has no inputs")
    }

    /// [`ClosedLoop::episode`], calling `observe(k, observation, env)` before control step k is taken
    /// and once more with the final observation (k = the number of steps taken).
    pub fn episode_observed(
        &mut self,
        seed: u64,
        mut observe: impl FnMut(usize, &Observation, &mut dyn Env) -> Result<()>,
    ) -> Result<ClosedLoopEpisode> {
        let dt = 1.0 / self.env.spec().fps;
        let mut obs = self.env.reset(seed);
        let first_env_state = obs.env_state.clone();
        self.lockstep.start_episode(seed, &self.env.position())?;
        let mut positions = vec![self.env.position()];
        let st = &self.lockstep.stats();
        let (n_inf0, nfe0, warm0) = (st.inference_s.len(), st.nfe_total, st.warm_starts);
        let mut commands = Vec::new();
        let mut track_sum = 0.0;
        let mut k = 0usize;
        while !self.env.done() {
            observe(k, &obs, self.env.as_mut())?;
            // The time a message stamp carries (ns resolution), as the wire path sees it.
            let t = riptide_msgs::ros::Time::from_secs_f64(k as f64 * dt).as_secs_f64();
            let cmd = self.command(t, &obs)?;
            obs = if self.render {
                self.env.step(&cmd)
            } else {
                self.env.step_no_render(&cmd)
            };
            let pos = self.env.position();
            track_sum += tracking_error(&pos, &cmd);
            commands.push(cmd);
            positions.push(pos);
            k += 1;
        }
        observe(k, &obs, self.env.as_mut())?;
        self.lockstep.end_episode();
        let st = &self.lockstep.stats();
        Ok(ClosedLoopEpisode {
            seed,
            robot: None,
            success: self.env.success(),
            score: self.env.score(),
            steps: self.env.steps(),
            inferences: st.inference_s.len() - n_inf0,
            nfe: st.nfe_total - nfe0,
            warm_starts: st.warm_starts - warm0,
            tracking_error: track_sum / k.max(1) as f64,
            commands,
            positions,
            first_env_state,
            inference_s: st.inference_s[n_inf0..].to_vec(),
        })
    }
}

/// `riptide eval`: closed-loop success of a policy on fresh seeds, next to the scripted expert on the
/// same seeds, with what each control step cost (denoiser evaluations) and inference latency.
#[derive(Debug, Clone)]
pub struct EvalArgs {
    pub checkpoint: std::path::PathBuf,
    pub device: DeviceSpec,
    pub env: String,
    pub seed: u64,
    pub episodes: usize,
    pub delay_s: f64,
    pub queue_threshold_s: f64,
    pub sampling: Sampling,
    /// Simulated robots run together through one batching pipeline (1 = one robot).
    pub robots: usize,
}

/// One robot's share of a multi-robot evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct PerRobot {
    pub robot: usize,
    pub episodes: usize,
    pub successes: usize,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub env: String,
    pub checkpoint: String,
    pub policy_kind: String,
    pub seeds: [u64; 2],
    pub episodes: usize,
    pub successes: usize,
    pub expert_successes: usize,
    pub mean_score: f64,
    pub inference_steps: Option<usize>,
    pub rti_start_step: Option<usize>,
    pub rti_cold_steps: Option<usize>,
    pub rti_warm_steps: Option<usize>,
    pub rti_jump_threshold: Option<f32>,
    /// EADP guidance scale (None: no guidance model; 0: the model only measures).
    pub eadp_scale: Option<f64>,
    /// Consensus sampling's chunks per inference.
    pub candidates: usize,
    pub queue_threshold_s: f64,
    pub inferences: usize,
    pub warm_starts: u64,
    /// Denoiser evaluations per inference and per control step (the cost RTI cuts).
    pub nfe_per_inference: f64,
    pub nfe_per_control_step: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    /// Mean of the episodes' tracking errors ([`ClosedLoopEpisode::tracking_error`]).
    pub mean_tracking_error: f64,
    /// With EADP: the controller model's mean tracking cost `J` of the chunks as sampled.
    pub eadp_model_cost: Option<f64>,
    /// Simulated robots (`--robots N`, N > 1); absent for one robot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robots: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_robot: Vec<PerRobot>,
    pub per_episode: Vec<ClosedLoopEpisode>,
}

pub fn evaluate(args: &EvalArgs, mut progress: impl FnMut(usize, usize, &ClosedLoopEpisode)) -> Result<EvalSummary> {
    anyhow::ensure!(args.robots >= 1, "--robots must be at least 1");
    let mut cl = ClosedLoop::with_sampling(
        &args.checkpoint,
        args.device,
        &args.env,
        args.delay_s,
        args.queue_threshold_s,
        args.sampling.clone(),
    )?;
    let mut expert_env = riptide_sim::make_env(&args.env)?;
    let mut expert_successes = 0;
    for i in 0..args.episodes {
        let seed = args.seed + i as u64;
        expert_successes += riptide_sim::run_expert_episode(expert_env.as_mut(), seed, false).success as usize;
    }
    let mut per_episode = Vec::with_capacity(args.episodes);
    if args.robots == 1 {
        for i in 0..args.episodes {
            let r = cl.episode(args.seed + i as u64)?;
            progress(i + 1, args.episodes, &r);
            per_episode.push(r);
        }
    } else {
        per_episode = fleet_episodes(&mut cl, args, &mut progress)?;
    }
    let lat_ms = |eps: &mut dyn Iterator<Item = &ClosedLoopEpisode>| {
        let mut lat: Vec<f64> = eps.flat_map(|e| e.inference_s.iter().copied()).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        move |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0.0, |s| s * 1e3)
        }
    };
    let pct = lat_ms(&mut per_episode.iter());
    let per_robot: Vec<PerRobot> = if args.robots == 1 {
        Vec::new()
    } else {
        (0..args.robots)
            .map(|r| {
                let mine = || per_episode.iter().filter(move |e| e.robot == Some(r));
                let p = lat_ms(&mut mine());
                PerRobot {
                    robot: r,
                    episodes: mine().count(),
                    successes: mine().filter(|e| e.success).count(),
                    latency_ms_p50: p(0.5),
                    latency_ms_p99: p(0.99),
                }
            })
            .collect()
    };
    let inferences: usize = per_episode.iter().map(|e| e.inferences).sum();
    let nfe: u64 = per_episode.iter().map(|e| e.nfe).sum();
    let steps: usize = per_episode.iter().map(|e| e.steps).sum();
    let n = per_episode.len().max(1) as f64;
    Ok(EvalSummary {
        env: args.env.clone(),
        checkpoint: args.checkpoint.display().to_string(),
        policy_kind: cl.spec().label(),
        seeds: [args.seed, args.seed + args.episodes.saturating_sub(1) as u64],
        episodes: per_episode.len(),
        successes: per_episode.iter().filter(|e| e.success).count(),
        expert_successes,
        mean_score: per_episode.iter().map(|e| e.score).sum::<f64>() / n,
        inference_steps: args.sampling.inference_steps,
        rti_start_step: args.sampling.rti.as_ref().map(|r| r.start_step),
        rti_cold_steps: args.sampling.rti.as_ref().and_then(|r| r.cold_steps),
        rti_warm_steps: args.sampling.rti.as_ref().and_then(|r| r.warm_steps),
        rti_jump_threshold: args.sampling.rti.as_ref().and_then(|r| r.jump_threshold),
        eadp_scale: args.sampling.eadp.as_ref().map(|e| e.scale),
        // What ran (a bad explicit count failed the first inference already).
        candidates: cl.lockstep.pipeline().candidates(),
        queue_threshold_s: args.queue_threshold_s,
        inferences,
        warm_starts: per_episode.iter().map(|e| e.warm_starts).sum(),
        nfe_per_inference: nfe as f64 / inferences.max(1) as f64,
        nfe_per_control_step: nfe as f64 / steps.max(1) as f64,
        latency_ms_p50: pct(0.5),
        latency_ms_p99: pct(0.99),
        mean_tracking_error: per_episode.iter().map(|e| e.tracking_error).sum::<f64>() / n,
        eadp_model_cost: args.sampling.eadp.as_ref().map(|_| {
            let c: Vec<f64> = (0..args.robots)
                .flat_map(|r| cl.lockstep.stats_of(r).eadp_costs.iter().copied())
                .collect();
            c.iter().sum::<f64>() / c.len().max(1) as f64
        }),
        robots: (args.robots > 1).then_some(args.robots),
        per_robot,
        per_episode,
    })
}

/// Distance between the device's position after a step and that step's command, over the first three
/// position dimensions ([`ClosedLoopEpisode::tracking_error`]).
fn tracking_error(position: &[f64], command: &[f64]) -> f64 {
    position
        .iter()
        .zip(command)
        .take(3)
        .map(|(p, c)| (p - c) * (p - c))
        .sum::<f64>()
        .sqrt()
}

/// One robot's episode in progress ([`fleet_episodes`]).
struct Ongoing {
    seed: u64,
    k: usize,
    obs: Observation,
    commands: Vec<Vec<f64>>,
    positions: Vec<Vec<f64>>,
    track_sum: f64,
    first_env_state: Vec<f32>,
    /// The robot's statistics when the episode started (inferences, NFE, warm starts).
    stats0: (usize, u64, u64),
}

/// `args.robots` simulated robots in lockstep through `cl`'s one pipeline: every control step, the
/// robots whose driver needs a chunk infer as one wave. Each robot takes the next unused seed when its
/// episode ends; the episodes come back sorted by seed, each as [`ClosedLoop::episode`] gives it.
fn fleet_episodes(
    cl: &mut ClosedLoop,
    args: &EvalArgs,
    progress: &mut impl FnMut(usize, usize, &ClosedLoopEpisode),
) -> Result<Vec<ClosedLoopEpisode>> {
    let n = args.robots.min(args.episodes.max(1));
    while cl.lockstep.robots() < n {
        cl.lockstep.add_robot()?;
    }
    let spec = cl.spec().clone();
    let mut envs: Vec<Box<dyn Env>> = (0..n)
        .map(|_| env_for_policy(&args.env, &spec))
        .collect::<Result<_>>()?;
    let dt = 1.0 / envs[0].spec().fps;
    let mut next = 0usize;
    let mut slots: Vec<Option<Ongoing>> = (0..n).map(|_| None).collect();
    let mut done = Vec::with_capacity(args.episodes);
    loop {
        for r in 0..n {
            let finished = slots[r].as_ref().is_some_and(|_| envs[r].done());
            if finished {
                let ep = slots[r].take().expect("an episode in progress");
                cl.lockstep.end_episode_of(r);
                done.push(finish_episode(cl, r, envs[r].as_ref(), ep));
                progress(done.len(), args.episodes, done.last().expect("just pushed"));
            }
            if slots[r].is_none() && next < args.episodes {
                let seed = args.seed + next as u64;
                next += 1;
                let obs = envs[r].reset(seed);
                cl.lockstep.start_episode_of(r, seed, &envs[r].position())?;
                let st = cl.lockstep.stats_of(r);
                slots[r] = Some(Ongoing {
                    seed,
                    k: 0,
                    first_env_state: obs.env_state.clone(),
                    obs,
                    commands: Vec::new(),
                    positions: vec![envs[r].position()],
                    track_sum: 0.0,
                    stats0: (st.inference_s.len(), st.nfe_total, st.warm_starts),
                });
            }
        }
        let active: Vec<usize> = (0..n).filter(|&r| slots[r].is_some()).collect();
        if active.is_empty() {
            break;
        }
        let mut frames = Vec::with_capacity(active.len());
        for &r in &active {
            let ep = slots[r].as_ref().expect("active");
            // The time a message stamp carries (ns resolution), as the wire path sees it.
            let t = riptide_msgs::ros::Time::from_secs_f64(ep.k as f64 * dt).as_secs_f64();
            frames.push((r, t, encode_frames(cl.lockstep.inputs(), t, &ep.obs)?));
        }
        let steps: Vec<RobotStep<'_>> = frames
            .iter()
            .map(|(robot, t_s, f)| RobotStep {
                robot: *robot,
                t_s: *t_s,
                frames: f,
            })
            .collect();
        let commands = cl.lockstep.step_robots(&steps)?;
        for (&r, step) in active.iter().zip(commands) {
            let ep = slots[r].as_mut().expect("active");
            let cmd = step.command;
            ep.obs = if cl.render {
                envs[r].step(&cmd)
            } else {
                envs[r].step_no_render(&cmd)
            };
            let pos = envs[r].position();
            ep.track_sum += tracking_error(&pos, &cmd);
            ep.commands.push(cmd);
            ep.positions.push(pos);
            ep.k += 1;
        }
    }
    done.sort_by_key(|e| e.seed);
    Ok(done)
}

fn finish_episode(cl: &ClosedLoop, r: usize, env: &dyn Env, ep: Ongoing) -> ClosedLoopEpisode {
    let st = cl.lockstep.stats_of(r);
    let (n_inf0, nfe0, warm0) = ep.stats0;
    ClosedLoopEpisode {
        seed: ep.seed,
        robot: Some(r),
        success: env.success(),
        score: env.score(),
        steps: env.steps(),
        inferences: st.inference_s.len() - n_inf0,
        nfe: st.nfe_total - nfe0,
        warm_starts: st.warm_starts - warm0,
        tracking_error: ep.track_sum / ep.k.max(1) as f64,
        commands: ep.commands,
        positions: ep.positions,
        first_env_state: ep.first_env_state,
        inference_s: st.inference_s[n_inf0..].to_vec(),
    }
}

/// Whether `env`'s scripted expert can label states some other controller reached ([`record_dagger_episode`]).
pub fn dagger_labels_valid(env: &dyn Env) -> Result<()> {
    anyhow::ensure!(
        env.expert_is_feedback(),
        "{}'s scripted expert plays a planned path open loop (it re-plans only between moves), so its \
         commands at states the policy reached are not corrections and would teach the policy wrong \
         actions; record DART episodes (--perturb) for this env instead",
        env.spec().name
    );
    Ok(())
}

/// DAgger (Ross et al. 2011, "A Reduction of Imitation Learning and Structured Prediction to No-Regret
/// Online Learning"): one closed-loop episode driven by the policy, recorded with the scripted expert's
/// command at every state the policy visits (the file's `action`s are the expert's, as in
/// [`riptide_sim::record::record_expert_episode_perturbed`]).
///
/// Expert demonstrations, even DART-perturbed ones, only cover states near the expert's own paths; a
/// policy's residual errors take it elsewhere (an arm lagging towards the obstacle, a drone drifting off
/// its line), and it never learned what to do there. Labelling the policy's own states with the
/// expert's corrections and training on them closes that gap. The metadata names the policy.
pub fn record_dagger_episode(
    cl: &mut ClosedLoop,
    seed: u64,
    path: &Path,
    render: bool,
    policy_label: &str,
) -> Result<riptide_sim::record::EpisodeSummary> {
    dagger_labels_valid(cl.env.as_ref())?;
    let extra = std::collections::BTreeMap::from([("dagger_policy".to_string(), policy_label.to_string())]);
    let mut w = riptide_sim::record::EpisodeWriter::create_with(path, cl.env.as_ref(), seed, extra)
        .with_context(|| format!("creating {}", path.display()))?;
    let r = cl.episode_observed(seed, |k, obs, env| {
        // A state-only policy steps the env without rendering; --render still records camera frames.
        let obs = match (render, &obs.image) {
            (true, None) => env.observe(true),
            (true, Some(_)) => obs.clone(),
            (false, _) => Observation {
                image: None,
                ..obs.clone()
            },
        };
        w.observation(k, &obs, &env.position())?;
        if !env.done() {
            let a = env.expert_action();
            w.action(k, &a)?;
        }
        Ok(())
    })?;
    let messages = w.finish(r.success, r.score, r.steps)?;
    Ok(riptide_sim::record::EpisodeSummary {
        env: cl.env.spec().name.to_string(),
        seed,
        success: r.success,
        score: r.score,
        steps: r.steps,
        messages,
    })
}

/// `riptide eval`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct EvalCmd {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub env: String,
    #[arg(long, default_value_t = 10000)]
    pub seed: u64,
    #[arg(long, default_value_t = 100)]
    pub episodes: usize,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Simulated inference delay, ms.
    #[arg(long, default_value_t = 0.0)]
    pub delay_ms: f64,
    /// Infer when less than this much of the chunk is left (s of simulated time; 0 = when it ran out).
    #[arg(long, default_value_t = 0.0)]
    pub queue_threshold_s: f64,
    /// Override the checkpoint's number of denoising steps.
    #[arg(long)]
    pub inference_steps: Option<usize>,
    /// RTI warm starts entering at this schedule step (see the daemon's [rti]); omit for cold starts.
    #[arg(long)]
    pub rti_start_step: Option<usize>,
    /// With --rti-start-step: forward-noise the shifted chunk to that step's level.
    #[arg(long)]
    pub rti_noise: bool,
    /// With --rti-start-step: cold starts (each episode's first chunk) run this many steps.
    #[arg(long)]
    pub rti_cold_steps: Option<usize>,
    /// With --rti-start-step: warm starts run this many DDIM steps from that step's level (re-spaced).
    #[arg(long)]
    pub rti_warm_steps: Option<usize>,
    /// With --rti-start-step: cold start when the normalised state moved more than this since the
    /// previous chunk's observation (max-abs).
    #[arg(long)]
    pub rti_jump_threshold: Option<f32>,
    /// EADP guidance (drone policies) with this scale, λ_t = scale·ᾱ_t; 0 only measures the
    /// controller model's tracking cost of the unguided chunks.
    #[arg(long)]
    pub eadp_scale: Option<f64>,
    /// Consensus sampling: draw this many chunks per inference (one batch) and execute their medoid.
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Simulated robots run together through one batching pipeline (each takes the next unused seed
    /// when its episode ends; `--episodes` is the total).
    #[arg(long, default_value_t = 1)]
    pub robots: usize,
    /// Write the full summary (per-episode results) here as well.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write every episode's task (first environment_state), commands and device positions here
    /// (JSON), to see how failures happen.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub gpu: crate::tools::gpu::GpuArgs,
}

impl EvalCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let Self {
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
            robots,
            out,
            trace,
            gpu,
        } = self;
        // Loaders below take the process default (`--kernels`).
        gpu.apply()?;

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
        let args = crate::tools::eval::EvalArgs {
            checkpoint,
            device,
            env,
            seed,
            episodes,
            delay_s: delay_ms / 1e3,
            queue_threshold_s,
            sampling: crate::pipeline::Sampling {
                inference_steps,
                rti,
                eadp: eadp_scale.map(|scale| riptide_drivers::EadpConfig {
                    scale,
                    ..Default::default()
                }),
                candidates,
            },
            robots,
        };
        let mut ok = 0;
        let s = crate::tools::eval::evaluate(&args, |i, n, e| {
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
}
