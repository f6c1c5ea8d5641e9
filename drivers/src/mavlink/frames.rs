//! Frame conversions between riptide's ENU and MAVLink's `MAV_FRAME_LOCAL_NED` (see the [module docs](super)).

use std::f64::consts::PI;

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
}
