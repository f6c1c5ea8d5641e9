//! [`MavlinkConfig`], the link's configuration, and its validation.

use serde::{Deserialize, Serialize};

use crate::validate::{require_positive, ConfigError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
