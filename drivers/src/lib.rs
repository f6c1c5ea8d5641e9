//! Chunk execution and safety envelope for arm and drone back-ends.
//!
//! The riptide daemon publishes *action chunks*: a start time `t0_s` (when the first point is due) and a list of
//! points, each with a `time_from_start_s` and a position vector (arm: joint positions; drone: `[x, y, z, yaw]`
//! ENU setpoints). A driver runs its own control loop (e.g. 500 Hz for an arm, 50–100 Hz for a drone) and must
//! turn those chunks into a smooth command stream that never leaves a safety envelope, whatever arrives.
//!
//! This crate is the pure-logic core of such a driver. It does no I/O, spawns nothing and reads no clock: every
//! function takes the current time explicitly (seconds, `f64`), so the behaviour is deterministic and testable.
//!
//! * [`executor`]: [`ChunkExecutor`], a time-indexed queue of points, chunk switching policies
//!   ([`Switching`]: replace, crossfade, ACT-style temporal ensembling) and interpolation ([`Interpolation`]).
//! * [`safety`]: [`SafetyEnvelope`], applied last to every command: position limits, velocity, acceleration,
//!   chunk-boundary jumps, non-finite guard, and for drones geofence, horizontal/vertical speed and tilt.
//! * [`supervisor`]: [`Supervisor`], the engage/disengage state machine, watchdog (hold, then land for drones)
//!   and latched e-stop.
//! * [`driver`]: [`Driver`], which ties them together: `on_chunk` and `step(now) -> Command`.
//! * [`guidance`]: [`TrackingModel`] and [`EadpGuidance`], the drone controller's tracking cost of a candidate
//!   chunk and its gradient, for embodiment-aware (EADP) diffusion guidance.
//!
//! Configuration structs deserialize with serde (unknown keys are errors) and are validated by the
//! constructors; a [`ConfigError`] names the offending key.

mod chunk;
pub mod driver;
pub mod executor;
pub mod guidance;
pub mod mavlink;
pub mod safety;
pub mod supervisor;
mod validate;

pub use self::mavlink::{MavlinkConfig, MavlinkCounters, MavlinkError, MavlinkLink, VehicleGate, VehicleState};
pub use chunk::{Chunk, ChunkPoint, Command};
pub use driver::{Driver, DriverConfig, DriverCounters};
pub use executor::{
    ChunkExecutor, ChunkRejected, ExecutorConfig, ExecutorCounters, Interpolation, PreparedChunk, PushReport, Switching,
};
pub use guidance::{
    clip_per_waypoint, DroneState, EadpConfig, EadpGuidance, GuidanceStep, TrackingModel, TrackingModelConfig,
};
pub use safety::{
    Checked, DroneLimits, Geofence, SafetyConfig, SafetyEnvelope, ViolationCounters, ViolationMode, Violations,
};
pub use supervisor::{EngageError, RampLimits, Supervisor, SupervisorConfig, SupervisorCounters, SupervisorState};
pub use validate::ConfigError;
