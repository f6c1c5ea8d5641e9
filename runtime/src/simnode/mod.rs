//! `riptide sim`: a simulated robot as a zenoh node. It publishes observations with the daemon's
//! message types and executes the commands it receives on `<ns>/action` at its control rate, either in
//! wall time or in lockstep simulated time (it publishes `<ns>/clock` and advances one control step
//! per command, so evaluations run as fast as the CPU allows and are reproducible).
//!
//! Topics (namespace `riptide` by default):
//! - out: `observation/state` and `observation/environment_state` (`sensor_msgs/JointState`:
//!   `position` = the vector, header stamp = simulated or wall time), `observation/image`
//!   (`sensor_msgs/Image` rgb8), `robot/joint_states` (the action-space position, for drivers to engage
//!   from), `clock` (`rosgraph_msgs/Clock`), `sim/episode` (`std_msgs/String`, JSON: episode start/end);
//! - in: `action` (`sensor_msgs/JointState`, the driver's executed command).

pub mod cmd;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use riptide_msgs::ros::{Clock as ClockMsg, Image, JointState, StringMsg, Time};
use riptide_msgs::topics;
use riptide_sim::Observation;
use serde::Serialize;
use zenoh::Wait;

use crate::node::now_s;
use crate::node::ZenohConfig;
use crate::node::{Graph, Publisher, Ros2Settings, RosType};

/// A sim node's settings.
#[derive(Debug, Clone)]
pub struct SimNodeConfig {
    pub env: String,
    pub namespace: String,
    pub lockstep: bool,
    pub episodes: usize,
    /// Episode i uses seed `seed + i`.
    pub seed: u64,
    /// Publish camera frames (off when no consumer needs them: rendering costs time).
    pub render: bool,
    /// Lockstep: how long to wait (wall time) for the command of a step before giving up.
    pub command_timeout_s: f64,
    pub zenoh: ZenohConfig,
    /// Write one MCAP per episode here (`episode_<seed>.mcap`): observations and the commands executed.
    pub record_dir: Option<std::path::PathBuf>,
    /// Publish this older `environment_state` layout (see `EnvSpec::env_state_widths`; None: the newest),
    /// for a policy trained on it.
    pub env_state_width: Option<usize>,
    /// Wall time only: publish the newest observation this often (Hz, above the control rate: a
    /// sensor faster than the policy), stamped when sent; None = once per control step.
    pub publish_hz: Option<f64>,
    /// ROS 2 mode (rmw_zenoh keys, attachments, tokens); None = riptide's plain keys.
    pub ros2: Option<Ros2Settings>,
}

/// One episode's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeResult {
    pub episode: usize,
    pub seed: u64,
    pub success: bool,
    pub score: f64,
    pub steps: usize,
    /// Wall-clock duration of the episode.
    pub wall_s: f64,
}

/// Episode start/end announcements on `sim/episode` (the wire type lives with the topics).
pub use riptide_msgs::topics::EpisodeEvent;
pub use riptide_sim::record::{image_msg, joint_state_msg as joint_state};

/// Publishers of one sim node (also used by a driver whose back-end is the sim).
pub struct Outputs {
    state: Publisher,
    env_state: Publisher,
    image: Publisher,
    position: Publisher,
    clock: Publisher,
    episode: Publisher,
}

impl Outputs {
    /// Declare the sim's publishers under namespace `ns`.
    pub fn declare(graph: &Graph, ns: &str) -> Result<Self> {
        let ns = ns.trim_end_matches('/');
        let decl = |rest: &str, ty: RosType| graph.publisher(format!("{ns}/{rest}"), &ty);
        let joint_state = RosType::of::<JointState>;
        Ok(Self {
            state: decl(topics::OBSERVATION_STATE, joint_state())?,
            env_state: decl(topics::OBSERVATION_ENVIRONMENT_STATE, joint_state())?,
            image: decl(topics::OBSERVATION_IMAGE, RosType::of::<Image>())?,
            position: decl(topics::ROBOT_JOINT_STATES, joint_state())?,
            clock: decl(topics::CLOCK, RosType::of::<ClockMsg>())?,
            episode: decl(topics::SIM_EPISODE, RosType::of::<StringMsg>())?,
        })
    }

    /// One step's frames, stamped `t_s` (and the clock in lockstep).
    pub fn publish(&self, t_s: f64, obs: &Observation, position: &[f64], lockstep: bool) -> Result<()> {
        let put = |p: &Publisher, bytes: Vec<u8>| p.put(bytes);
        if lockstep {
            put(
                &self.clock,
                riptide_msgs::encode(&ClockMsg {
                    clock: Time::from_secs_f64(t_s),
                })?,
            )?;
        }
        put(
            &self.position,
            riptide_msgs::encode(&joint_state(t_s, position.iter().copied()))?,
        )?;
        if !obs.env_state.is_empty() {
            put(
                &self.env_state,
                riptide_msgs::encode(&joint_state(t_s, obs.env_state.iter().map(|v| *v as f64)))?,
            )?;
        }
        if let Some(img) = &obs.image {
            put(&self.image, riptide_msgs::encode(&image_msg(t_s, img))?)?;
        }
        // State last: a lockstep consumer treats it as "this step's frames are complete".
        put(
            &self.state,
            riptide_msgs::encode(&joint_state(t_s, obs.state.iter().map(|v| *v as f64)))?,
        )?;
        Ok(())
    }

    pub fn announce(&self, ev: &EpisodeEvent) -> Result<()> {
        let msg = StringMsg {
            data: serde_json::to_string(ev)?,
        };
        self.episode.put(riptide_msgs::encode(&msg)?)
    }
}

/// Run the sim node until its episodes are done or `stop` is set. Blocking: call it on its own thread
/// (or `spawn_blocking`).
pub fn run_sim(
    cfg: &SimNodeConfig,
    session: &zenoh::Session,
    stop: &crate::node::Shutdown,
    mut on_episode: impl FnMut(&EpisodeResult),
) -> Result<Vec<EpisodeResult>> {
    let mut env = riptide_sim::make_env_for(&cfg.env, cfg.env_state_width)?;
    let spec = env.spec().clone();
    let ns = cfg.namespace.trim_end_matches('/');
    let graph = Graph::new(session.clone(), cfg.ros2.as_ref(), Default::default())?;
    let out = Outputs::declare(&graph, ns)?;
    let (tx, rx) = mpsc::channel::<(f64, Vec<f64>)>();
    let _sub = graph.subscribe(format!("{ns}/action"), &RosType::of::<JointState>(), move |s| {
        if let Ok(js) = riptide_msgs::decode::<JointState>(&s.payload().to_bytes()) {
            let _ = tx.send((js.header.stamp.as_secs_f64(), js.position));
        }
    })?;
    let _token = session
        .liveliness()
        .declare_token(format!("{ns}/{}", topics::ALIVE_SIM))
        .wait()
        .map_err(|e| anyhow!("{e}"))?;
    let dt_s = 1.0 / spec.fps;
    let mut results = Vec::new();
    for episode in 0..cfg.episodes {
        if stop.is_triggered() {
            break;
        }
        let seed = cfg.seed + episode as u64;
        let t_wall = Instant::now();
        let mut obs = env.reset(seed);
        if !cfg.render {
            obs.image = None;
        }
        let mut position = env.position();
        let mut writer = match &cfg.record_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                Some(riptide_sim::record::EpisodeWriter::create(
                    &dir.join(format!("episode_{seed:06}.mcap")),
                    env.as_ref(),
                    seed,
                )?)
            }
            None => None,
        };
        while rx.try_recv().is_ok() {}
        out.announce(&EpisodeEvent::Start {
            episode,
            seed,
            env: cfg.env.clone(),
            position: position.clone(),
            fps: spec.fps,
        })?;
        let t0 = if cfg.lockstep { 0.0 } else { now_s() };
        let mut k = 0usize;
        let mut held = position.clone();
        let mut next = Instant::now();
        loop {
            let t = t0 + k as f64 * dt_s;
            out.publish(t, &obs, &position, cfg.lockstep)?;
            if let Some(w) = &mut writer {
                w.observation(k, &obs, &position)?;
            }
            if env.done() || stop.is_triggered() {
                break;
            }
            let action = if cfg.lockstep {
                let deadline = Instant::now() + Duration::from_secs_f64(cfg.command_timeout_s);
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                        Ok((stamp, a)) if (stamp - t).abs() < 1e-6 => break a,
                        Ok(_) => continue, // a command for another step (e.g. a previous episode)
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if stop.is_triggered() {
                                return Ok(results);
                            }
                            if Instant::now() >= deadline {
                                bail!(
                                    "lockstep: no command for step {k} (t = {t:.3} s) within {:.1} s; \
                                     is a driver publishing on {ns}/action?",
                                    cfg.command_timeout_s
                                );
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => bail!("command subscriber closed"),
                    }
                }
            } else {
                // Wall time: the newest command received, else hold.
                while let Ok((_, a)) = rx.try_recv() {
                    held = a;
                }
                next += Duration::from_secs_f64(dt_s);
                // A faster sensor: the same observation again, stamped when sent, until the step.
                if let Some(hz) = cfg.publish_hz.filter(|hz| *hz * dt_s > 1.0) {
                    let period = Duration::from_secs_f64(1.0 / hz);
                    let mut at = Instant::now() + period;
                    while at + period / 2 < next {
                        if let Some(d) = at.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                        out.publish(now_s(), &obs, &position, false)?;
                        at += period;
                    }
                }
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                held.clone()
            };
            if let Some(w) = &mut writer {
                w.action(k, &action)?;
            }
            obs = if cfg.render {
                env.step(&action)
            } else {
                env.step_no_render(&action)
            };
            if !cfg.render {
                obs.image = None;
            }
            position = env.position();
            k += 1;
        }
        if let Some(w) = writer.take() {
            w.finish(env.success(), env.score(), env.steps())?;
        }
        let r = EpisodeResult {
            episode,
            seed,
            success: env.success(),
            score: env.score(),
            steps: env.steps(),
            wall_s: t_wall.elapsed().as_secs_f64(),
        };
        out.announce(&EpisodeEvent::End {
            episode,
            seed,
            success: r.success,
            score: r.score,
            steps: r.steps,
        })?;
        on_episode(&r);
        results.push(r);
    }
    Ok(results)
}
