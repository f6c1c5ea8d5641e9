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

pub mod driver;
pub mod executor;
pub mod guidance;
pub mod mavlink;
pub mod safety;
pub mod supervisor;

use serde::{Deserialize, Serialize};

pub use self::mavlink::{MavlinkConfig, MavlinkCounters, MavlinkError, MavlinkLink, VehicleGate, VehicleState};
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

/// One point of an action chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPoint {
    /// Seconds after the chunk's `t0_s` at which this point is due.
    pub time_from_start_s: f64,
    /// Position setpoint (arm: joint positions; drone: `[x, y, z, yaw]`).
    pub position: Vec<f64>,
}

/// An action chunk as published by the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Absolute time (seconds, the driver's clock) at which `time_from_start_s = 0` is due.
    pub t0_s: f64,
    /// The points, in strictly increasing `time_from_start_s`.
    pub points: Vec<ChunkPoint>,
}

impl Chunk {
    /// A chunk whose points are `period_s` apart, the first due at `t0_s`.
    pub fn uniform(t0_s: f64, period_s: f64, positions: Vec<Vec<f64>>) -> Self {
        let points = positions
            .into_iter()
            .enumerate()
            .map(|(i, position)| ChunkPoint {
                time_from_start_s: i as f64 * period_s,
                position,
            })
            .collect();
        Chunk { t0_s, points }
    }
}

/// What the driver tells the device to do this control step (after the safety envelope).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Command {
    /// Track this position setpoint.
    Position(Vec<f64>),
    /// Hold this position (the last safe command): watchdog, disengaged, e-stop, or a rejected command.
    Hold(Vec<f64>),
    /// Drone only: descend from the current setpoint `position` at `descent_rate` (units/s) to the ground.
    /// `position` already includes this step's descent.
    Land {
        /// This step's setpoint on the way down.
        position: Vec<f64>,
        /// Configured descent rate, units/s.
        descent_rate: f64,
    },
    /// No setpoint: never engaged, or landed and disarmed.
    Idle,
}

impl Command {
    /// The position setpoint carried by this command, if any.
    pub fn position(&self) -> Option<&[f64]> {
        match self {
            Command::Position(p) | Command::Hold(p) => Some(p),
            Command::Land { position, .. } => Some(position),
            Command::Idle => None,
        }
    }
}

/// A configuration value that failed validation. `key` is the dotted path of the offending key, e.g.
/// `safety.position_min[2]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted path of the bad key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` put before the key.
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}.{}", self.key);
        self
    }
}

/// Checks that `value` is finite, naming `key` otherwise.
pub(crate) fn require_finite(key: impl Into<String>, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("must be finite (got {value})")))
    }
}

/// Checks that `value` is finite and > 0, naming `key` otherwise.
pub(crate) fn require_positive(key: impl Into<String>, value: f64) -> Result<(), ConfigError> {
    let key = key.into();
    require_finite(key.clone(), value)?;
    if value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("must be > 0 (got {value})")))
    }
}
