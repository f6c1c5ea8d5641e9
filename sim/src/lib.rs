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
mod env;
pub mod push_t;
pub mod quadrotor;
pub mod record;
mod registry;
pub mod render;

pub use env::{run_expert_episode, Env, EnvSpec, Episode, Observation};
pub use registry::{make_env, make_env_for, SimError, ENV_NAMES};
pub use render::RgbImage;
