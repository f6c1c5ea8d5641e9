//! Simulation environments and scripted experts for riptide.
//!
//! The runtime needs closed-loop worlds to evaluate policies in and to record demonstrations from, without
//! a robot: a planar arm reaching around an obstacle (`arm-reach`), a PushT-like contact task on rapier2d
//! (`push-t`) and a quadrotor flying a waypoint course under a PX4-like cascaded controller (`quadrotor`).
//! Every environment takes *position targets* as actions (what riptide's drivers send to real robots), is
//! deterministic given its reset seed (task, initial state, disturbances and the expert's choices), renders
//! small RGB frames headlessly on request, and ships a scripted expert whose demonstrations are
//! multimodal (it picks a side around an obstacle, or one of several good pushes) so that diffusion
//! policies have something to learn that a mean-regressor cannot.
//!
//! | env | fps | state | env_state | action | max_steps | expert success (seeds 0..200) |
//! |---|---|---|---|---|---|---|
//! | `arm-reach` | 10 | 3 joint angles | target, obstacle (5); + tool-relative (12) | 3 joint targets (rad) | 100 | 200/200 |
//! | `push-t` | 10 | pusher xy (px) | pusher xy, block x, y, θ (5) | pusher target xy (px) | 300 | 194/200 |
//! | `quadrotor` | 10 | pos, vel, yaw (7) | 3 waypoints, pillar, progress (13); + drone-relative (22) | ENU x, y, z, yaw | 250 | 200/200 |
//!
//! The second `env_state` layouts append the same task seen from the tool or the drone (its position,
//! the vector to the current goal, to the obstacle, and the clearance to it), which a policy would
//! otherwise have to learn to compute (forward kinematics, picking the current waypoint).
//!
//! All render 96×96 RGB. Failure modes that end an episode early (arm tool hitting the obstacle, drone
//! hitting the pillar or the ground) are documented in each module.
//!
//! Bad actions never panic: a wrong-length action is padded with the held target (or truncated), a
//! non-finite component holds the previous target for that component, and everything is clamped to
//! [`EnvSpec::action_low`]..[`EnvSpec::action_high`]; each repaired action is counted in
//! [`Env::action_faults`].

pub mod arm_reach;
pub mod dataset;
pub mod push_t;
pub mod quadrotor;
pub mod record;
pub mod render;

use serde::Serialize;

pub use render::RgbImage;

/// Names accepted by [`make_env`].
pub const ENV_NAMES: &[&str] = &["arm-reach", "push-t", "quadrotor"];

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown environment {name:?}; valid names: {}", ENV_NAMES.join(", "))]
    UnknownEnv { name: String },
    #[error(
        "{name} publishes observation.environment_state with {} values (older layouts first); {width} is none of them",
        fmt_widths(valid)
    )]
    EnvStateWidth {
        name: String,
        width: usize,
        valid: Vec<usize>,
    },
}

/// Static description of an environment: what the policy sees and what the driver must enforce.
#[derive(Debug, Clone, Serialize)]
pub struct EnvSpec {
    /// "arm-reach" | "push-t" | "quadrotor".
    pub name: &'static str,
    /// Control rate: one [`Env::step`] lasts `1/fps` seconds.
    pub fps: f64,
    /// Length of `observation.state` (proprioception).
    pub state_dim: usize,
    /// Length of `observation.environment_state` (privileged low-dimensional task state).
    pub env_state_dim: usize,
    /// Layouts of `observation.environment_state` this env can publish, oldest first, the last being
    /// `env_state_dim`. Layouts only ever append values, so an older one is a prefix of the newest and a
    /// policy trained on it keeps working: see [`make_env_for`].
    pub env_state_widths: Vec<usize>,
    /// Length of an action (a position target).
    pub action_dim: usize,
    /// Rendered RGB size (height, width).
    pub image_hw: (usize, usize),
    /// Episode length limit in control steps.
    pub max_steps: usize,
    /// Position limits of the action (the driver's safety envelope); actions are clamped to them.
    pub action_low: Vec<f64>,
    pub action_high: Vec<f64>,
    /// Per-dimension limit on how fast the target may move (units/s), for the driver to enforce.
    pub max_speed: Vec<f64>,
}

/// One observation, named after LeRobot's features.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// `observation.state`.
    pub state: Vec<f32>,
    /// `observation.environment_state`.
    pub env_state: Vec<f32>,
    /// `observation.image` when rendering was asked for.
    pub image: Option<RgbImage>,
}

/// A simulated task. Implementations are deterministic given the seed passed to [`Env::reset`].
pub trait Env: Send {
    fn spec(&self) -> &EnvSpec;
    /// Starts a new episode; task, initial state, disturbances and expert choices derive from `seed`.
    /// Renders the first frame.
    fn reset(&mut self, seed: u64) -> Observation;
    /// Applies one control step of the position target `action` and returns the rendered observation.
    /// A wrong length or non-finite components are repaired (see the crate docs), never a panic.
    /// Stepping a finished episode keeps simulating (the latched success stays).
    fn step(&mut self, action: &[f64]) -> Observation;
    /// The current observation, rendered only when `render` (stepping without rendering is much faster:
    /// use [`Env::step_no_render`] in evaluation loops that do not need images).
    fn observe(&self, render: bool) -> Observation;
    /// Task solved; latches once true.
    fn success(&self) -> bool;
    /// Task-specific progress in [0, 1].
    fn score(&self) -> f64;
    /// Success, failure that ends the episode (documented per env), or `steps() >= max_steps`.
    fn done(&self) -> bool;
    fn steps(&self) -> usize;
    /// Where the device is now in action space (arm joints, pusher xy, drone [x, y, z, yaw]): what a
    /// driver engages from.
    fn position(&self) -> Vec<f64>;
    /// The scripted expert's next position target (its own RNG, seeded from the reset seed).
    fn expert_action(&mut self) -> Vec<f64>;
    /// Whether [`Env::expert_action`] is a feedback law of the current state, so it is a correct label
    /// at any state (DAgger). An expert that plays a planned path open loop is not: at a state some other
    /// controller reached it still emits the next point of its old plan.
    fn expert_is_feedback(&self) -> bool {
        true
    }
    fn seed(&self) -> u64;
    /// Environment configuration for recording metadata.
    fn config_json(&self) -> serde_json::Value;
    /// Number of actions repaired so far this episode (wrong length, non-finite, out of limits).
    fn action_faults(&self) -> usize {
        0
    }
    /// [`Env::step`] without rendering the returned observation's image.
    fn step_no_render(&mut self, action: &[f64]) -> Observation {
        self.step(action)
    }
}

/// Creates an environment by name (see [`ENV_NAMES`]); call [`Env::reset`] before stepping.
pub fn make_env(name: &str) -> Result<Box<dyn Env>, SimError> {
    match name {
        "arm-reach" => Ok(Box::new(arm_reach::ArmReach::new())),
        "push-t" => Ok(Box::new(push_t::PushT::new())),
        "quadrotor" => Ok(Box::new(quadrotor::Quadrotor::new())),
        _ => Err(SimError::UnknownEnv { name: name.to_string() }),
    }
}

fn fmt_widths(w: &[usize]) -> String {
    w.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(" or ")
}

/// [`make_env`] publishing the `observation.environment_state` layout of width `env_state_width`
/// (one of [`EnvSpec::env_state_widths`]; `None`: the newest), so a policy trained on an older layout
/// sees exactly the values it was trained on.
pub fn make_env_for(name: &str, env_state_width: Option<usize>) -> Result<Box<dyn Env>, SimError> {
    let env = make_env(name)?;
    let valid = &env.spec().env_state_widths;
    match env_state_width {
        None => Ok(env),
        Some(w) if w == env.spec().env_state_dim => Ok(env),
        Some(w) if valid.contains(&w) => {
            let mut spec = env.spec().clone();
            spec.env_state_dim = w;
            Ok(Box::new(EnvStatePrefix { inner: env, spec }))
        }
        Some(w) => Err(SimError::EnvStateWidth {
            name: name.into(),
            width: w,
            valid: valid.clone(),
        }),
    }
}

/// An env whose `environment_state` is cut to an older layout (a prefix of the newest).
struct EnvStatePrefix {
    inner: Box<dyn Env>,
    spec: EnvSpec,
}

impl EnvStatePrefix {
    fn cut(&self, mut obs: Observation) -> Observation {
        obs.env_state.truncate(self.spec.env_state_dim);
        obs
    }
}

impl Env for EnvStatePrefix {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }
    fn reset(&mut self, seed: u64) -> Observation {
        let o = self.inner.reset(seed);
        self.cut(o)
    }
    fn step(&mut self, action: &[f64]) -> Observation {
        let o = self.inner.step(action);
        self.cut(o)
    }
    fn observe(&self, render: bool) -> Observation {
        self.cut(self.inner.observe(render))
    }
    fn success(&self) -> bool {
        self.inner.success()
    }
    fn score(&self) -> f64 {
        self.inner.score()
    }
    fn done(&self) -> bool {
        self.inner.done()
    }
    fn steps(&self) -> usize {
        self.inner.steps()
    }
    fn position(&self) -> Vec<f64> {
        self.inner.position()
    }
    fn expert_action(&mut self) -> Vec<f64> {
        self.inner.expert_action()
    }
    fn expert_is_feedback(&self) -> bool {
        self.inner.expert_is_feedback()
    }
    fn seed(&self) -> u64 {
        self.inner.seed()
    }
    fn config_json(&self) -> serde_json::Value {
        let mut v = self.inner.config_json();
        v["env_state_width"] = serde_json::json!(self.spec.env_state_dim);
        v
    }
    fn action_faults(&self) -> usize {
        self.inner.action_faults()
    }
    fn step_no_render(&mut self, action: &[f64]) -> Observation {
        let o = self.inner.step_no_render(action);
        self.cut(o)
    }
}

/// One expert rollout: `observations[i]` is what the expert saw when it chose `actions[i]`;
/// the final observation (after the last action) is `observations[actions.len()]`.
#[derive(Debug, Clone)]
pub struct Episode {
    pub seed: u64,
    pub observations: Vec<Observation>,
    pub actions: Vec<Vec<f64>>,
    pub success: bool,
    pub score: f64,
    pub steps: usize,
}

/// Resets `env` with `seed` and runs its scripted expert until [`Env::done`].
pub fn run_expert_episode(env: &mut dyn Env, seed: u64, render: bool) -> Episode {
    let first = env.reset(seed);
    let first = if render {
        first
    } else {
        Observation { image: None, ..first }
    };
    let mut observations = vec![first];
    let mut actions = Vec::new();
    while !env.done() {
        let action = env.expert_action();
        let obs = if render {
            env.step(&action)
        } else {
            env.step_no_render(&action)
        };
        actions.push(action);
        observations.push(obs);
    }
    Episode {
        seed,
        observations,
        actions,
        success: env.success(),
        score: env.score(),
        steps: env.steps(),
    }
}

/// Repairs an action against the spec: wrong length → truncate or pad with `held`; non-finite → the
/// `held` component; then clamp to the limits. Returns the repaired target and whether anything changed.
pub(crate) fn sanitize_action(spec: &EnvSpec, action: &[f64], held: &[f64]) -> (Vec<f64>, bool) {
    let mut fault = action.len() != spec.action_dim;
    let mut out = Vec::with_capacity(spec.action_dim);
    let limits = spec.action_low.iter().zip(&spec.action_high);
    for (i, (&h, (&lo, &hi))) in held.iter().zip(limits).enumerate().take(spec.action_dim) {
        let v = match action.get(i) {
            Some(v) if v.is_finite() => *v,
            Some(_) => {
                fault = true;
                h
            }
            None => h,
        };
        let c = v.clamp(lo, hi);
        if c != v {
            fault = true;
        }
        out.push(c);
    }
    (out, fault)
}

/// Wraps an angle to (-π, π].
pub(crate) fn wrap_angle(a: f64) -> f64 {
    let t = std::f64::consts::TAU;
    let mut w = a.rem_euclid(t);
    if w > std::f64::consts::PI {
        w -= t;
    }
    w
}

/// Deterministic per-purpose RNG derived from the episode seed (task vs expert vs disturbances), so that
/// the expert drawing more or fewer numbers never changes the task.
pub(crate) fn rng_for(seed: u64, stream: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    // SplitMix64 finaliser decorrelates neighbouring seeds/streams.
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    rand::rngs::StdRng::seed_from_u64(z)
}
