//! Expert episodes to MCAP, on the topics and message types the daemon uses, so a recording can be
//! played into a live daemon (`riptide play`), replayed through a policy (`riptide replay`) and read by
//! the trainer ([`crate::dataset`]) unchanged.
//!
//! One file per episode. Per control step k (simulated time t_k = k / fps, also the MCAP log time and
//! every header stamp): `riptide/clock`, `riptide/robot/joint_states` (action-space position),
//! `riptide/observation/environment_state`, `riptide/observation/image` (when rendered),
//! `riptide/observation/state` (vectors as `sensor_msgs/JointState.position`), then the command executed
//! for that step on `riptide/action` (`sensor_msgs/JointState`). The observation after the last action is
//! recorded too (it has no action). Metadata `riptide.episode` (env, seed, fps, env config) is written
//! first, `riptide.result` (success, score, steps) last, so a crashed recording still says what it was.

use std::collections::BTreeMap;
use std::path::Path;

use riptide_msgs::mcap::{McapError, McapRecorder};
use riptide_msgs::ros::{Clock, Header, Image, JointState, Time};
use riptide_msgs::topics::default_ns as topics;

use crate::env::{Env, Observation};
use crate::render::RgbImage;

/// `sensor_msgs/JointState` carrying a vector in `position`, stamped `stamp_s`.
pub fn joint_state_msg(stamp_s: f64, values: impl IntoIterator<Item = f64>) -> JointState {
    JointState {
        header: Header {
            stamp: Time::from_secs_f64(stamp_s),
            frame_id: String::new(),
        },
        position: values.into_iter().collect(),
        ..Default::default()
    }
}

/// `sensor_msgs/Image` (rgb8) of a rendered frame.
pub fn image_msg(stamp_s: f64, img: &RgbImage) -> Image {
    Image {
        header: Header {
            stamp: Time::from_secs_f64(stamp_s),
            frame_id: "camera".into(),
        },
        height: img.height,
        width: img.width,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 3 * img.width,
        data: img.data.clone(),
    }
}

/// What a recorded episode was.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpisodeSummary {
    pub env: String,
    pub seed: u64,
    pub success: bool,
    pub score: f64,
    pub steps: usize,
    pub messages: u64,
}

/// Writes one episode step by step.
pub struct EpisodeWriter {
    rec: McapRecorder,
    fps: f64,
}

fn ns(t_s: f64) -> u64 {
    (t_s.max(0.0) * 1e9).round() as u64
}

impl EpisodeWriter {
    /// Create the file and write the `riptide.episode` metadata.
    pub fn create(path: &Path, env: &dyn Env, seed: u64) -> Result<Self, McapError> {
        Self::create_with(path, env, seed, BTreeMap::new())
    }

    /// [`EpisodeWriter::create`] with more `riptide.episode` metadata entries.
    pub fn create_with(
        path: &Path,
        env: &dyn Env,
        seed: u64,
        extra: BTreeMap<String, String>,
    ) -> Result<Self, McapError> {
        let mut rec = McapRecorder::create(path)?;
        let spec = env.spec();
        let mut meta = BTreeMap::from([
            ("env".to_string(), spec.name.to_string()),
            ("seed".to_string(), seed.to_string()),
            ("fps".to_string(), spec.fps.to_string()),
            ("config".to_string(), env.config_json().to_string()),
            ("spec".to_string(), serde_json::to_string(spec).unwrap_or_default()),
        ]);
        meta.extend(extra);
        rec.write_metadata("riptide.episode", &meta)?;
        Ok(Self { rec, fps: spec.fps })
    }

    /// Observation (and position) at step `k`.
    pub fn observation(&mut self, k: usize, obs: &Observation, position: &[f64]) -> Result<(), McapError> {
        let t = k as f64 / self.fps;
        let log = ns(t);
        self.rec.write(
            topics::CLOCK,
            log,
            &Clock {
                clock: Time::from_secs_f64(t),
            },
        )?;
        self.rec.write(
            topics::ROBOT_JOINT_STATES,
            log,
            &joint_state_msg(t, position.iter().copied()),
        )?;
        if !obs.env_state.is_empty() {
            self.rec.write(
                topics::OBSERVATION_ENVIRONMENT_STATE,
                log,
                &joint_state_msg(t, obs.env_state.iter().map(|v| *v as f64)),
            )?;
        }
        if let Some(img) = &obs.image {
            self.rec.write(topics::OBSERVATION_IMAGE, log, &image_msg(t, img))?;
        }
        self.rec.write(
            topics::OBSERVATION_STATE,
            log,
            &joint_state_msg(t, obs.state.iter().map(|v| *v as f64)),
        )
    }

    /// The command for step `k` (the expert's; a perturbed recording executed it plus an offset).
    pub fn action(&mut self, k: usize, action: &[f64]) -> Result<(), McapError> {
        let t = k as f64 / self.fps;
        self.rec
            .write(topics::ACTION, ns(t), &joint_state_msg(t, action.iter().copied()))
    }

    /// Write `riptide.result` and finish the file.
    pub fn finish(mut self, success: bool, score: f64, steps: usize) -> Result<u64, McapError> {
        let meta = BTreeMap::from([
            ("success".to_string(), success.to_string()),
            ("score".to_string(), score.to_string()),
            ("steps".to_string(), steps.to_string()),
        ]);
        self.rec.write_metadata("riptide.result", &meta)?;
        let n = self.rec.message_count();
        self.rec.finish()?;
        Ok(n)
    }
}

/// Run the env's scripted expert for one episode and record it to `path`.
pub fn record_expert_episode(
    env: &mut dyn Env,
    seed: u64,
    path: &Path,
    render: bool,
) -> Result<EpisodeSummary, McapError> {
    record_expert_episode_with_hold(env, seed, path, render, 0)
}

/// [`record_expert_episode`], then `hold_steps` more expert steps after a success.
///
/// An episode ends the moment the task succeeds, so the expert's last recorded frames are still moving
/// towards the goal and a policy trained on them never sees how to arrive: it carries the motion on past
/// the target. Holding a little past success records the arrival (the expert holds its goal).
pub fn record_expert_episode_with_hold(
    env: &mut dyn Env,
    seed: u64,
    path: &Path,
    render: bool,
    hold_steps: usize,
) -> Result<EpisodeSummary, McapError> {
    record_expert_episode_perturbed(env, seed, path, render, hold_steps, None)
}

/// DART-style perturbation of an expert recording (Laskey et al. 2017, "DART: Noise Injection for Robust
/// Imitation Learning"): the env executes the expert's command plus an offset, the recording keeps the
/// expert's own command.
///
/// A policy trained only on clean demonstrations never sees the states its own small errors lead to, and
/// those errors compound (a lagging arm brushes the obstacle, a drone drifts into the pillar). With the
/// perturbations the demonstrations show the expert correcting from such states. Offsets are held for
/// `hold_steps` control steps because position targets are low-pass filtered by the robot's controller: a
/// fresh offset every step would barely move it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Perturbation {
    /// Standard deviation of the offset per action dimension (action units: rad, m, px).
    pub sigma: Vec<f64>,
    /// Control steps each offset is held.
    pub hold_steps: usize,
    /// Probability that a hold period is perturbed at all (the rest run clean).
    pub probability: f64,
}

/// Offsets of one episode, a deterministic function of the episode seed.
pub struct PerturbationSampler {
    p: Perturbation,
    rng: rand::rngs::StdRng,
    offset: Vec<f64>,
    k: usize,
}

impl Perturbation {
    /// Seeded independently of the env's own streams, so the task, gusts and the expert's choices are
    /// those of the unperturbed episode.
    pub fn sampler(&self, seed: u64) -> PerturbationSampler {
        PerturbationSampler {
            p: self.clone(),
            rng: crate::env::rng_for(seed, 0xDA27),
            offset: vec![0.0; self.sigma.len()],
            k: 0,
        }
    }
}

impl PerturbationSampler {
    /// The offset to add to control step k's command (k = 0, 1, ... in order).
    pub fn next_offset(&mut self) -> &[f64] {
        use rand::Rng;
        use rand_distr::{Distribution, StandardNormal};
        if self.k.is_multiple_of(self.p.hold_steps.max(1)) {
            let on = self.rng.random_bool(self.p.probability.clamp(0.0, 1.0));
            for (o, s) in self.offset.iter_mut().zip(&self.p.sigma) {
                let n: f64 = StandardNormal.sample(&mut self.rng);
                *o = if on { s * n } else { 0.0 };
            }
        }
        self.k += 1;
        &self.offset
    }
}

/// [`record_expert_episode_with_hold`], executing the expert's commands plus `perturb`'s offsets (none
/// while holding past success) and recording the expert's commands; the perturbation is written to the
/// `riptide.episode` metadata.
pub fn record_expert_episode_perturbed(
    env: &mut dyn Env,
    seed: u64,
    path: &Path,
    render: bool,
    hold_steps: usize,
    perturb: Option<&Perturbation>,
) -> Result<EpisodeSummary, McapError> {
    let mut obs = env.reset(seed);
    let extra = perturb
        .map(|p| ("perturbation".to_string(), serde_json::to_string(p).unwrap_or_default()))
        .into_iter()
        .collect();
    let mut w = EpisodeWriter::create_with(path, env, seed, extra)?;
    let mut offsets = perturb.map(|p| p.sampler(seed));
    let mut k = 0;
    let mut held = 0;
    loop {
        if !render {
            obs.image = None;
        }
        w.observation(k, &obs, &env.position())?;
        if env.done() {
            if !env.success() || held >= hold_steps {
                break;
            }
            held += 1;
        }
        let a = env.expert_action();
        w.action(k, &a)?;
        let mut executed = a.clone();
        if let Some(o) = offsets.as_mut() {
            let off = o.next_offset();
            if !env.done() {
                for (x, d) in executed.iter_mut().zip(off) {
                    *x += d;
                }
            }
        }
        obs = if render {
            env.step(&executed)
        } else {
            env.step_no_render(&executed)
        };
        k += 1;
    }
    let (success, score, steps) = (env.success(), env.score(), env.steps());
    let messages = w.finish(success, score, steps)?;
    Ok(EpisodeSummary {
        env: env.spec().name.to_string(),
        seed,
        success,
        score,
        steps,
        messages,
    })
}
