//! HEARTBEAT decoding (armed, offboard / GUIDED) and the DO_SET_MODE parameters that select offboard mode.

use ::mavlink::dialects::common::{MavAutopilot, MavModeFlag, MavType};

/// PX4 main mode "offboard" (custom mode bits 16–23).
pub const PX4_MAIN_MODE_OFFBOARD: u8 = 6;
/// ArduCopter mode GUIDED (custom mode), ArduPilot's offboard.
pub const ARDUCOPTER_MODE_GUIDED: u32 = 4;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
