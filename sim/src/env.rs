//! The [`Env`] trait every environment implements, its [`EnvSpec`] and [`Observation`], expert rollouts, and
//! the helpers the environments share (action repair, angle wrapping, per-purpose RNGs).

use serde::Serialize;

use crate::render::RgbImage;

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
    /// policy trained on it keeps working: see [`make_env_for`](crate::make_env_for).
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
