//! Environments by name: [`make_env`], [`make_env_for`] and the [`SimError`] they return.

use crate::env::{Env, EnvSpec, Observation};
use crate::{arm_reach, push_t, quadrotor};

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
