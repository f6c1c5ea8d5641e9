//! `environment_state` layouts: older layouts are prefixes of the newest (so policies trained on them
//! keep working), and the appended tool/drone-relative values agree with the geometry.

use riptide_sim::arm_reach::{forward_kinematics, TOOL_RADIUS_M};
use riptide_sim::quadrotor::BODY_RADIUS_M;
use riptide_sim::{make_env, make_env_for, run_expert_episode, SimError, ENV_NAMES};

#[test]
fn older_layouts_are_prefixes_of_the_newest() {
    for name in ENV_NAMES {
        let full = make_env(name).unwrap();
        let widths = full.spec().env_state_widths.clone();
        assert_eq!(widths.last(), Some(&full.spec().env_state_dim), "{name}");
        let newest = run_expert_episode(make_env(name).unwrap().as_mut(), 3, false);
        for &w in &widths {
            let mut env = make_env_for(name, Some(w)).unwrap();
            assert_eq!(env.spec().env_state_dim, w);
            let ep = run_expert_episode(env.as_mut(), 3, false);
            assert_eq!(ep.actions, newest.actions, "{name}: the layout changed the episode");
            for (a, b) in ep.observations.iter().zip(&newest.observations) {
                assert_eq!(a.env_state.len(), w, "{name}");
                assert_eq!(a.env_state[..], b.env_state[..w], "{name}");
                assert_eq!(a.state, b.state);
            }
        }
    }
}

#[test]
fn an_unknown_width_is_refused_with_the_valid_ones() {
    let e = make_env_for("arm-reach", Some(7)).err().expect("width 7 accepted");
    assert!(matches!(e, SimError::EnvStateWidth { width: 7, .. }));
    let msg = e.to_string();
    assert!(msg.contains("5 or 12"), "{msg}");
}

#[test]
fn arm_reach_tool_features_match_forward_kinematics() {
    let mut env = make_env("arm-reach").unwrap();
    let ep = run_expert_episode(env.as_mut(), 11, false);
    for o in &ep.observations {
        let q = [o.state[0] as f64, o.state[1] as f64, o.state[2] as f64];
        let tip = forward_kinematics(&q)[3];
        let e = &o.env_state;
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-5;
        assert!(
            close(e[5], tip[0]) && close(e[6], tip[1]),
            "tool {:?} vs FK {tip:?}",
            &e[5..7]
        );
        assert!(close(e[7], e[0] as f64 - tip[0]) && close(e[8], e[1] as f64 - tip[1]));
        assert!(close(e[9], e[2] as f64 - tip[0]) && close(e[10], e[3] as f64 - tip[1]));
        let d = (e[2] as f64 - tip[0]).hypot(e[3] as f64 - tip[1]);
        assert!(close(e[11], d - e[4] as f64 - TOOL_RADIUS_M));
    }
    // The expert never touches the obstacle: its clearance stays positive.
    assert!(ep.observations.iter().all(|o| o.env_state[11] > 0.0));
}

#[test]
fn quadrotor_features_point_at_the_current_waypoint() {
    let mut env = make_env("quadrotor").unwrap();
    let ep = run_expert_episode(env.as_mut(), 5, false);
    assert!(ep.success);
    let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
    for o in &ep.observations {
        let (p, e) = (&o.state, &o.env_state);
        let visited = (e[12] * 3.0).round() as usize;
        if visited == 3 {
            assert!(e[13..19].iter().all(|&v| v == 0.0));
        } else {
            let k = visited;
            let n = (k + 1).min(2);
            for i in 0..3 {
                assert!(close(e[13 + i], e[3 * k + i] - p[i]), "current waypoint");
                assert!(close(e[16 + i], e[3 * n + i] - p[i]), "next waypoint");
            }
        }
        assert!(close(e[19], e[9] - p[0]) && close(e[20], e[10] - p[1]));
        let d = e[19].hypot(e[20]);
        assert!((e[21] - (d - e[11] - BODY_RADIUS_M as f32)).abs() < 1e-3);
    }
    // The expert flies round the pillar.
    assert!(ep.observations.iter().all(|o| o.env_state[21] > 0.0));
}
