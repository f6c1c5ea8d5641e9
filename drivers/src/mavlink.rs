//! MAVLink offboard back-end for drones (PX4, ArduPilot).
//!
//! Why: a drone's flight controller, not riptide, flies the vehicle. riptide's driver core ([`Driver`](crate::Driver))
//! turns chunks into a safe `[x, y, z, yaw]` ENU setpoint each control step; this module hands those setpoints to
//! the autopilot the way it expects them, and tells the driver loop whether the vehicle is actually following them.
//!
//! [`MavlinkLink`] runs the link on two OS threads (no async runtime):
//! * a sender that streams HEARTBEAT at `heartbeat_rate_hz` and `SET_POSITION_TARGET_LOCAL_NED` at
//!   `setpoint_rate_hz` (PX4 leaves offboard mode when setpoints arrive slower than 2 Hz), always the latest
//!   setpoint ([`MavlinkLink::set_setpoint_enu`]); the supervisor's hover is "keep streaming the held position";
//! * a receiver that reads the vehicle's HEARTBEAT (armed flag, flight mode), LOCAL_POSITION_NED, ATTITUDE and
//!   COMMAND_ACK into a [`VehicleState`], counting every message by id and every message that fails to parse.
//!
//! Frames ([`enu_to_ned`], [`ned_to_enu`]): riptide works in ENU (x east, y north, z up, yaw counter-clockwise
//! from east), MAVLink's `MAV_FRAME_LOCAL_NED` is north, east, down with yaw clockwise from north. So
//! `north = y_enu`, `east = x_enu`, `down = −z_enu`, `yaw_ned = π/2 − yaw_enu` wrapped to (−π, π]; the map is its
//! own inverse.
//!
//! Respecting the vehicle: riptide never arms the vehicle or changes its mode unless configured (`arm`,
//! `set_offboard_mode`), and then only while the vehicle is connected and setpoints have been streaming for a
//! second. Each request is repeated (1 s apart, at most 5 times) until the vehicle accepts it (COMMAND_ACK) or
//! reports the state in its HEARTBEAT, and is never made again after that or after a refusal: a pilot who takes
//! over (leaves offboard) or disarms is not overridden. Arming is requested only in offboard mode. While the
//! vehicle is not connected, armed and in offboard mode, [`VehicleState::gate`] says why and every setpoint sent
//! is counted as not executed: the driver must not treat its commands as executed then. A landing
//! ([`MavlinkLink::land`]) sends `MAV_CMD_NAV_LAND` (the autopilot lands by itself) and stops the setpoint stream.
//!
//! Offboard detection: PX4 (custom mode main mode 6 in bits 16–23) and ArduPilot multicopters (custom mode 4,
//! GUIDED). Other autopilots are reported as never offboard.

mod config;
mod error;
mod frames;
mod link;
mod modes;

pub use config::{HeartbeatType, MavlinkConfig, PX4_MIN_SETPOINT_RATE_HZ};
pub use error::MavlinkError;
pub use frames::{enu_to_ned, ned_to_enu, ned_to_enu_vec, wrap_pi};
pub use link::{MavlinkCounters, MavlinkLink, VehicleGate, VehicleState, POSITION_YAW_TYPE_MASK};
pub use modes::{
    heartbeat_armed, heartbeat_offboard, px4_main_mode, px4_sub_mode, ARDUCOPTER_MODE_GUIDED, PX4_MAIN_MODE_OFFBOARD,
};
