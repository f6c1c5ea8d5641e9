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

mod link;

use std::f64::consts::PI;

use ::mavlink::dialects::common::{MavAutopilot, MavModeFlag, MavType};
use serde::{Deserialize, Serialize};

use crate::{require_positive, ConfigError};

pub use link::{MavlinkCounters, MavlinkLink, VehicleGate, VehicleState, POSITION_YAW_TYPE_MASK};

/// PX4 main mode "offboard" (custom mode bits 16–23).
pub const PX4_MAIN_MODE_OFFBOARD: u8 = 6;
/// ArduCopter mode GUIDED (custom mode), ArduPilot's offboard.
pub const ARDUCOPTER_MODE_GUIDED: u32 = 4;
/// PX4's minimum offboard setpoint rate, Hz: slower and it leaves offboard mode.
pub const PX4_MIN_SETPOINT_RATE_HZ: f64 = 2.0;

/// What riptide says it is in its HEARTBEAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatType {
    /// `MAV_TYPE_ONBOARD_CONTROLLER` (a companion computer).
    #[default]
    OnboardController,
    /// `MAV_TYPE_GCS` (a ground station).
    Gcs,
}

/// MAVLink link configuration (e.g. a `[mavlink]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MavlinkConfig {
    /// `udpin:HOST:PORT` (listen; replies go to whoever sent last, PX4's usual offboard setup),
    /// `udpout:HOST:PORT` (send to) or `udpbcast:HOST:PORT`. Default `udpin:127.0.0.1:14540` (loopback).
    #[serde(default = "default_connection")]
    pub connection: String,
    /// riptide's MAVLink system id (default 245, a GCS/companion id).
    #[serde(default = "default_system_id")]
    pub system_id: u8,
    /// riptide's MAVLink component id (default 191, `MAV_COMP_ID_ONBOARD_COMPUTER`).
    #[serde(default = "default_component_id")]
    pub component_id: u8,
    /// The vehicle's system id (default 1).
    #[serde(default = "default_target")]
    pub target_system: u8,
    /// The autopilot's component id (default 1; 0 = any component of `target_system`).
    #[serde(default = "default_target")]
    pub target_component: u8,
    /// MAV_TYPE of riptide's heartbeat (default `onboard_controller`).
    #[serde(default)]
    pub heartbeat_type: HeartbeatType,
    /// SET_POSITION_TARGET_LOCAL_NED stream rate, Hz (default 20; must be > 2, PX4's offboard minimum).
    #[serde(default = "default_setpoint_rate_hz")]
    pub setpoint_rate_hz: f64,
    /// HEARTBEAT rate, Hz (default 1).
    #[serde(default = "default_heartbeat_rate_hz")]
    pub heartbeat_rate_hz: f64,
    /// Request arming (in offboard mode only). Default false: riptide never arms by itself.
    #[serde(default)]
    pub arm: bool,
    /// Request offboard (PX4) / GUIDED (ArduPilot) mode. Default false.
    #[serde(default)]
    pub set_offboard_mode: bool,
    /// The vehicle is lost after this long without its HEARTBEAT, ms (default 3000).
    #[serde(default = "default_vehicle_timeout_ms")]
    pub vehicle_timeout_ms: u64,
}

fn default_connection() -> String {
    "udpin:127.0.0.1:14540".to_string()
}
fn default_system_id() -> u8 {
    245
}
fn default_component_id() -> u8 {
    191
}
fn default_target() -> u8 {
    1
}
fn default_setpoint_rate_hz() -> f64 {
    20.0
}
fn default_heartbeat_rate_hz() -> f64 {
    1.0
}
fn default_vehicle_timeout_ms() -> u64 {
    3000
}

impl Default for MavlinkConfig {
    fn default() -> Self {
        MavlinkConfig {
            connection: default_connection(),
            system_id: default_system_id(),
            component_id: default_component_id(),
            target_system: default_target(),
            target_component: default_target(),
            heartbeat_type: HeartbeatType::default(),
            setpoint_rate_hz: default_setpoint_rate_hz(),
            heartbeat_rate_hz: default_heartbeat_rate_hz(),
            arm: false,
            set_offboard_mode: false,
            vehicle_timeout_ms: default_vehicle_timeout_ms(),
        }
    }
}

impl MavlinkConfig {
    /// The defaults with another connection string.
    pub fn with_connection(connection: impl Into<String>) -> Self {
        MavlinkConfig {
            connection: connection.into(),
            ..MavlinkConfig::default()
        }
    }

    /// Checks the values; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_connection(&self.connection)?;
        for (key, id) in [
            ("system_id", self.system_id),
            ("component_id", self.component_id),
            ("target_system", self.target_system),
        ] {
            if id == 0 {
                return Err(ConfigError::new(key, "must be 1..=255 (0 is the broadcast id)"));
            }
        }
        require_positive("setpoint_rate_hz", self.setpoint_rate_hz)?;
        if self.setpoint_rate_hz <= PX4_MIN_SETPOINT_RATE_HZ || self.setpoint_rate_hz > 1000.0 {
            return Err(ConfigError::new(
                "setpoint_rate_hz",
                format!(
                    "must be > {PX4_MIN_SETPOINT_RATE_HZ} Hz (PX4 leaves offboard mode below 2 Hz) and <= 1000 Hz \
                     (got {})",
                    self.setpoint_rate_hz
                ),
            ));
        }
        require_positive("heartbeat_rate_hz", self.heartbeat_rate_hz)?;
        if self.heartbeat_rate_hz > 100.0 {
            return Err(ConfigError::new(
                "heartbeat_rate_hz",
                format!("must be <= 100 Hz (got {})", self.heartbeat_rate_hz),
            ));
        }
        if self.vehicle_timeout_ms == 0 {
            return Err(ConfigError::new("vehicle_timeout_ms", "must be > 0"));
        }
        Ok(())
    }
}

/// Checks `udpin|udpout|udpbcast:HOST:PORT` (the transports compiled in).
fn validate_connection(connection: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        Err(ConfigError::new(
            "connection",
            format!("{why} (got `{connection}`; expected udpin:HOST:PORT, udpout:HOST:PORT or udpbcast:HOST:PORT)"),
        ))
    };
    let Some((scheme, address)) = connection.split_once(':') else {
        return bad("no transport");
    };
    if !matches!(scheme, "udpin" | "udpout" | "udpbcast") {
        return bad(&format!("unsupported transport `{scheme}`"));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() {
        return bad("no host");
    }
    match port.parse::<u16>() {
        Ok(0) if scheme != "udpin" => bad("port 0 is only valid for udpin"),
        Ok(_) => Ok(()),
        Err(_) => bad(&format!("bad port `{port}`")),
    }
}

/// Wraps an angle to (−π, π].
pub fn wrap_pi(angle_rad: f64) -> f64 {
    let r = angle_rad.rem_euclid(2.0 * PI);
    if r > PI {
        r - 2.0 * PI
    } else {
        r
    }
}

/// ENU `[x_east, y_north, z_up, yaw]` (yaw counter-clockwise from east) → NED `[north, east, down, yaw]` (yaw
/// clockwise from north), yaw wrapped to (−π, π].
pub fn enu_to_ned(enu: [f64; 4]) -> [f64; 4] {
    [enu[1], enu[0], -enu[2], wrap_pi(PI / 2.0 - enu[3])]
}

/// NED `[north, east, down, yaw]` → ENU `[x_east, y_north, z_up, yaw]`, yaw wrapped to (−π, π]. The inverse of
/// [`enu_to_ned`] (the same map).
pub fn ned_to_enu(ned: [f64; 4]) -> [f64; 4] {
    [ned[1], ned[0], -ned[2], wrap_pi(PI / 2.0 - ned[3])]
}

/// A NED vector `[north, east, down]` in ENU `[east, north, up]`.
pub fn ned_to_enu_vec(ned: [f64; 3]) -> [f64; 3] {
    [ned[1], ned[0], -ned[2]]
}

/// PX4 main mode from a HEARTBEAT's `custom_mode` (bits 16–23).
pub fn px4_main_mode(custom_mode: u32) -> u8 {
    ((custom_mode >> 16) & 0xff) as u8
}

/// PX4 sub mode from a HEARTBEAT's `custom_mode` (bits 24–31).
pub fn px4_sub_mode(custom_mode: u32) -> u8 {
    (custom_mode >> 24) as u8
}

/// Whether a HEARTBEAT says the vehicle is armed (`MAV_MODE_FLAG_SAFETY_ARMED` in `base_mode`).
pub fn heartbeat_armed(base_mode: u8) -> bool {
    base_mode & MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED.bits() != 0
}

/// Whether a HEARTBEAT says the vehicle follows external position setpoints: PX4 in offboard mode, or an
/// ArduPilot multicopter in GUIDED. Needs `MAV_MODE_FLAG_CUSTOM_MODE_ENABLED` in `base_mode`.
pub fn heartbeat_offboard(autopilot: MavAutopilot, mav_type: MavType, base_mode: u8, custom_mode: u32) -> bool {
    if base_mode & MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED.bits() == 0 {
        return false;
    }
    match autopilot {
        MavAutopilot::MAV_AUTOPILOT_PX4 => px4_main_mode(custom_mode) == PX4_MAIN_MODE_OFFBOARD,
        MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA => is_multicopter(mav_type) && custom_mode == ARDUCOPTER_MODE_GUIDED,
        _ => false,
    }
}

/// The DO_SET_MODE parameters (param1 base mode, param2, param3) that select offboard/GUIDED, if known for this
/// autopilot.
pub(crate) fn offboard_mode_params(autopilot: MavAutopilot, mav_type: MavType) -> Option<[f32; 3]> {
    let custom = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED.bits() as f32;
    match autopilot {
        MavAutopilot::MAV_AUTOPILOT_PX4 => Some([custom, PX4_MAIN_MODE_OFFBOARD as f32, 0.0]),
        MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA if is_multicopter(mav_type) => {
            Some([custom, ARDUCOPTER_MODE_GUIDED as f32, 0.0])
        }
        _ => None,
    }
}

fn is_multicopter(mav_type: MavType) -> bool {
    use MavType::*;
    matches!(
        mav_type,
        MAV_TYPE_QUADROTOR
            | MAV_TYPE_HEXAROTOR
            | MAV_TYPE_OCTOROTOR
            | MAV_TYPE_TRICOPTER
            | MAV_TYPE_COAXIAL
            | MAV_TYPE_HELICOPTER
            | MAV_TYPE_DECAROTOR
            | MAV_TYPE_DODECAROTOR
    )
}

/// Errors of the MAVLink back-end.
#[derive(Debug, thiserror::Error)]
pub enum MavlinkError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The connection could not be opened.
    #[error("cannot open MAVLink connection `{connection}`: {source}")]
    Connect {
        /// The connection string.
        connection: String,
        /// Why.
        source: std::io::Error,
    },
    /// A link thread could not be started.
    #[error("cannot start the MAVLink {which} thread: {source}")]
    Spawn {
        /// `sender` or `receiver`.
        which: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A setpoint with a NaN or infinite value: never sent.
    #[error("setpoint is not finite: {0:?}")]
    NonFinite([f64; 4]),
    /// A command whose position is not `[x, y, z, yaw]`.
    #[error("a MAVLink setpoint is [x, y, z, yaw]; got {0} values")]
    Dimension(usize),
    /// [`MavlinkLink::land`] was called: this link no longer streams setpoints (open a new one to fly again).
    #[error("the vehicle was told to land; setpoints are no longer streamed")]
    Landing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enu_ned_round_trip_and_axes() {
        // East 1, north 2, up 3, facing north (yaw_enu = π/2) → north 2, east 1, down −3, yaw_ned 0.
        let ned = enu_to_ned([1.0, 2.0, 3.0, PI / 2.0]);
        assert_eq!(&ned[..3], &[2.0, 1.0, -3.0]);
        assert_eq!(ned[3], 0.0);
        // Facing east: NED yaw π/2.
        assert_eq!(enu_to_ned([0.0, 0.0, 0.0, 0.0])[3], PI / 2.0);
        // Facing south (−π/2 ENU) is NED π; facing west (π ENU) is NED −π/2.
        assert_eq!(enu_to_ned([0.0, 0.0, 0.0, -PI / 2.0])[3], PI);
        assert_eq!(enu_to_ned([0.0, 0.0, 0.0, PI])[3], -PI / 2.0);
        for &(x, y, z) in &[(0.5, -1.25, 2.0), (-30.0, 7.5, 0.0), (1e-3, 1e3, -4.0)] {
            for k in -40..=40 {
                let yaw = wrap_pi(k as f64 * 0.1);
                let enu = [x, y, z, yaw];
                let back = ned_to_enu(enu_to_ned(enu));
                assert_eq!(&back[..3], &enu[..3]);
                let d = wrap_pi(back[3] - yaw).abs();
                assert!(d < 1e-12, "yaw {yaw} came back as {}", back[3]);
                let ned_yaw = enu_to_ned(enu)[3];
                assert!(ned_yaw > -PI && ned_yaw <= PI, "{ned_yaw}");
            }
        }
    }

    #[test]
    fn wrap_pi_range() {
        assert_eq!(wrap_pi(PI), PI);
        assert_eq!(wrap_pi(-PI), PI);
        assert_eq!(wrap_pi(0.0), 0.0);
        assert!((wrap_pi(3.0 * PI) - PI).abs() < 1e-12);
        assert!((wrap_pi(-0.5 - 4.0 * PI) + 0.5).abs() < 1e-12);
        for k in -100..100 {
            let w = wrap_pi(k as f64 * 0.37);
            assert!(w > -PI && w <= PI);
        }
    }

    #[test]
    fn mode_decoding() {
        let custom = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED.bits();
        let armed = MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED.bits();
        let px4 = MavAutopilot::MAV_AUTOPILOT_PX4;
        let quad = MavType::MAV_TYPE_QUADROTOR;
        // PX4 offboard: main mode 6 in bits 16–23, sub mode 0.
        assert!(heartbeat_offboard(px4, quad, custom, 6 << 16));
        assert!(heartbeat_offboard(px4, quad, custom | armed, 6 << 16));
        // Position (3), AUTO.LAND (4/6): not offboard; sub mode bits do not leak into the main mode.
        assert!(!heartbeat_offboard(px4, quad, custom, 3 << 16));
        assert!(!heartbeat_offboard(px4, quad, custom, (4 << 16) | (6 << 24)));
        assert_eq!(px4_main_mode((4 << 16) | (6 << 24)), 4);
        assert_eq!(px4_sub_mode((4 << 16) | (6 << 24)), 6);
        // Custom mode not enabled: the custom mode means nothing.
        assert!(!heartbeat_offboard(px4, quad, 0, 6 << 16));
        // ArduCopter GUIDED = 4; ArduPlane's 4 is not GUIDED.
        let apm = MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA;
        assert!(heartbeat_offboard(apm, quad, custom, 4));
        assert!(!heartbeat_offboard(apm, quad, custom, 5));
        assert!(!heartbeat_offboard(apm, MavType::MAV_TYPE_FIXED_WING, custom, 4));
        assert!(!heartbeat_offboard(
            MavAutopilot::MAV_AUTOPILOT_GENERIC,
            quad,
            custom,
            6 << 16
        ));
        assert!(heartbeat_armed(armed | custom));
        assert!(!heartbeat_armed(custom));
        assert_eq!(offboard_mode_params(px4, quad), Some([1.0, 6.0, 0.0]));
        assert_eq!(offboard_mode_params(apm, quad), Some([1.0, 4.0, 0.0]));
        assert_eq!(offboard_mode_params(MavAutopilot::MAV_AUTOPILOT_GENERIC, quad), None);
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: MavlinkConfig = toml::from_str("").unwrap();
        assert_eq!(c, MavlinkConfig::default());
        assert_eq!(c.setpoint_rate_hz, 20.0);
        assert_eq!(c.heartbeat_rate_hz, 1.0);
        assert!(!c.arm && !c.set_offboard_mode);
        assert!(c.connection.starts_with("udpin:127.0.0.1:"));
        c.validate().unwrap();
        let parsed: MavlinkConfig = toml::from_str(
            "connection = \"udpout:127.0.0.1:14580\"\nsystem_id = 1\ncomponent_id = 191\narm = true\n\
             set_offboard_mode = true\nheartbeat_type = \"gcs\"\nsetpoint_rate_hz = 50.0\n",
        )
        .unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.heartbeat_type, HeartbeatType::Gcs);
        assert!(toml::from_str::<MavlinkConfig>("setpoint_hz = 20.0\n").is_err());

        let key = |c: MavlinkConfig| c.validate().unwrap_err();
        let e = key(MavlinkConfig {
            setpoint_rate_hz: 2.0,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "setpoint_rate_hz");
        assert!(e.message.contains("PX4"), "{e}");
        let e = key(MavlinkConfig {
            setpoint_rate_hz: f64::NAN,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "setpoint_rate_hz");
        let e = key(MavlinkConfig {
            heartbeat_rate_hz: 0.0,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "heartbeat_rate_hz");
        let e = key(MavlinkConfig {
            vehicle_timeout_ms: 0,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "vehicle_timeout_ms");
        let e = key(MavlinkConfig {
            system_id: 0,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "system_id");
        let e = key(MavlinkConfig {
            target_system: 0,
            ..MavlinkConfig::default()
        });
        assert_eq!(e.key, "target_system");
        for bad in [
            "tcpout:127.0.0.1:5760",
            "udpin:127.0.0.1",
            "udpout:127.0.0.1:0",
            "udpout:127.0.0.1:port",
            "127.0.0.1:14540",
            "udpin::14540",
        ] {
            let e = key(MavlinkConfig::with_connection(bad));
            assert_eq!(e.key, "connection", "{bad}");
            assert!(e.message.contains(bad), "{e}");
        }
        MavlinkConfig::with_connection("udpin:0.0.0.0:14540")
            .validate()
            .unwrap();
        MavlinkConfig::with_connection("udpbcast:192.168.1.255:14550")
            .validate()
            .unwrap();
    }
}
