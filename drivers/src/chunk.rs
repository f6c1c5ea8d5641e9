//! Action chunks as published by the daemon, and the command a driver sends each control step.

use serde::{Deserialize, Serialize};

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
