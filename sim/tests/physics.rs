//! Physics invariants of the simulators.

use nalgebra::Vector3;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use riptide_sim::arm_reach::{self, ArmReach};
use riptide_sim::push_t::{self, PushT};
use riptide_sim::quadrotor::{self, Controller, ControllerGains, Motors, QuadBody, QuadParams, GRAVITY_M_S2};
use riptide_sim::Env;

const DT: f64 = 1.0 / quadrotor::SIM_HZ;

fn passive() -> QuadParams {
    QuadParams {
        drag_n_s_m: 0.0,
        motor_tau_s: 0.0,
        inertia_kg_m2: [0.005, 0.008, 0.014],
        ..QuadParams::default()
    }
}

#[test]
fn quadrotor_free_falls_at_g_without_thrust() {
    let p = passive();
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 100.0));
    b.vel_m_s = Vector3::new(1.0, -2.0, 0.5);
    let t = 2.0;
    for _ in 0..(t / DT).round() as usize {
        b.step(&p, DT, 0.0, Vector3::zeros(), Vector3::zeros());
    }
    let z = 100.0 + 0.5 * t - 0.5 * GRAVITY_M_S2 * t * t;
    assert!((b.pos_m.z - z).abs() < 1e-9, "z {} vs {z}", b.pos_m.z);
    assert!((b.vel_m_s.z - (0.5 - GRAVITY_M_S2 * t)).abs() < 1e-9);
    assert!(
        (b.pos_m.x - 2.0).abs() < 1e-9 && (b.pos_m.y + 4.0).abs() < 1e-9,
        "horizontal motion is uniform"
    );
}

#[test]
fn quadrotor_hover_thrust_holds_altitude() {
    // Level attitude, thrust = weight, still air (drag on): nothing moves.
    let p = QuadParams::default();
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 2.0));
    for _ in 0..(5.0 / DT) as usize {
        b.step(&p, DT, p.mass_kg * GRAVITY_M_S2, Vector3::zeros(), Vector3::zeros());
    }
    assert!((b.pos_m - Vector3::new(0.0, 0.0, 2.0)).norm() < 1e-9, "{:?}", b.pos_m);
    // Through the motors (with lag) the hover command also holds.
    let mut m = Motors::new(&p);
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 2.0));
    for _ in 0..(5.0 / DT) as usize {
        let (t, tau) = m.step(&p, DT, p.mass_kg * GRAVITY_M_S2, Vector3::zeros());
        b.step(&p, DT, t, tau, Vector3::zeros());
    }
    assert!((b.pos_m.z - 2.0).abs() < 1e-9, "{:?}", b.pos_m);
    assert!(b.rate_rad_s.norm() < 1e-9);
}

#[test]
fn quadrotor_torque_free_rotation_conserves_momentum_and_energy() {
    let p = passive();
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 50.0));
    // Spin about an axis near the unstable intermediate axis: a hard case for the integrator.
    b.rate_rad_s = Vector3::new(0.3, 6.0, 0.4);
    b.vel_m_s = Vector3::new(0.5, 0.0, 3.0);
    let l0 = b.angular_momentum(&p);
    let e0 = b.energy_j(&p);
    let att0 = b.att;
    for _ in 0..(10.0 / DT) as usize {
        b.step(&p, DT, 0.0, Vector3::zeros(), Vector3::zeros());
        assert!((b.att.quaternion().norm() - 1.0).abs() < 1e-12);
    }
    let l1 = b.angular_momentum(&p);
    assert!((l1 - l0).norm() / l0.norm() < 1e-6, "L drifted: {l0:?} → {l1:?}");
    let e1 = b.energy_j(&p);
    assert!((e1 - e0).abs() / e0.abs() < 1e-6, "energy drifted: {e0} → {e1}");
    assert!(b.att.angle_to(&att0) > 0.1, "it did rotate");
}

#[test]
fn quadrotor_drag_only_removes_energy() {
    let p = QuadParams {
        motor_tau_s: 0.0,
        ..QuadParams::default()
    };
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 50.0));
    b.vel_m_s = Vector3::new(4.0, -3.0, 2.0);
    let mut e = b.energy_j(&p);
    for _ in 0..(3.0 / DT) as usize {
        b.step(&p, DT, 0.0, Vector3::zeros(), Vector3::zeros());
        let e1 = b.energy_j(&p);
        assert!(e1 <= e + 1e-9, "passive drag added energy: {e} → {e1}");
        e = e1;
    }
}

#[test]
fn quadrotor_controller_tracks_setpoints_within_limits() {
    let p = QuadParams::default();
    let gains = ControllerGains::default();
    let max_tilt = gains.max_tilt_rad;
    let mut c = Controller::new(gains);
    let mut m = Motors::new(&p);
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 1.0));
    let sp = Vector3::new(3.0, -2.0, 2.5);
    let mut max_tilt_seen: f64 = 0.0;
    let mut overshoot: f64 = 0.0;
    for i in 0..(8.0 / DT) as usize {
        let (t, tau) = c.update(&p, &b, sp, 1.0, DT);
        let (t, tau) = m.step(&p, DT, t, tau);
        b.step(&p, DT, t, tau, Vector3::zeros());
        let tilt = (b.att * Vector3::z()).z.clamp(-1.0, 1.0).acos();
        max_tilt_seen = max_tilt_seen.max(tilt);
        if i as f64 * DT > 2.0 {
            overshoot = overshoot.max(
                (b.pos_m - Vector3::new(0.0, 0.0, 1.0)).dot(&sp.normalize())
                    - (sp - Vector3::new(0.0, 0.0, 1.0)).norm(),
            );
        }
    }
    println!(
        "step response: final error {:.4} m, max tilt {:.1}°, overshoot {:.3} m",
        (b.pos_m - sp).norm(),
        max_tilt_seen.to_degrees(),
        overshoot
    );
    assert!((b.pos_m - sp).norm() < 0.02, "final {:?}", b.pos_m);
    assert!((b.yaw() - 1.0).abs() < 0.01, "yaw {}", b.yaw());
    assert!(max_tilt_seen < max_tilt + 5f64.to_radians(), "tilt {max_tilt_seen}");
    assert!(overshoot < 0.3, "overshoot {overshoot}");
}

/// A 180° yaw command must not disturb altitude much (the reduced-attitude controller keeps roll/pitch).
#[test]
fn quadrotor_yaw_flip_keeps_altitude() {
    let p = QuadParams::default();
    let mut c = Controller::new(ControllerGains::default());
    let mut m = Motors::new(&p);
    let mut b = QuadBody::at(Vector3::new(0.0, 0.0, 1.5));
    let mut worst: f64 = 0.0;
    for _ in 0..(4.0 / DT) as usize {
        let (t, tau) = c.update(&p, &b, Vector3::new(0.0, 0.0, 1.5), std::f64::consts::PI - 0.01, DT);
        let (t, tau) = m.step(&p, DT, t, tau);
        b.step(&p, DT, t, tau, Vector3::zeros());
        worst = worst.max((b.pos_m.z - 1.5).abs());
    }
    assert!(worst < 0.1, "altitude error {worst}");
    assert!((b.yaw().abs() - std::f64::consts::PI).abs() < 0.05, "yaw {}", b.yaw());
}

/// Pushes straight through the block at full speed from many directions: the pusher never ends a control
/// step inside the block (no tunnelling), and the block stays inside the walls.
#[test]
fn push_t_fast_push_never_tunnels() {
    let mut env = PushT::new();
    let mut worst_pen: f64 = 0.0;
    for k in 0..16 {
        let a = k as f64 * std::f64::consts::TAU / 16.0;
        let block = [256.0, 256.0, 0.3 * k as f64];
        let agent = [256.0 + 180.0 * a.cos(), 256.0 + 180.0 * a.sin()];
        env.reset_to(k, agent, block);
        // Target far beyond the block on the other side (and beyond the walls: clamped).
        let target = [256.0 - 600.0 * a.cos(), 256.0 - 600.0 * a.sin()];
        for _ in 0..40 {
            env.step_no_render(&target);
            let pen = push_t::PUSHER_RADIUS_PX - push_t::t_signed_distance(&env.block_pose(), env.agent());
            worst_pen = worst_pen.max(pen);
            assert!(pen < 4.0, "direction {k}: pusher {:.1} px into the block", pen);
            assert_block_inside(&env);
        }
    }
    println!("push-t fast push: worst penetration {worst_pen:.2} px");
}

/// Pinning the block against a wall at full speed does not crush it through the wall.
#[test]
fn push_t_block_pinned_against_wall_stays_inside() {
    let mut env = PushT::new();
    for (k, (agent, target)) in [
        ([256.0, 150.0], [256.0, 600.0]),
        ([150.0, 256.0], [600.0, 256.0]),
        ([400.0, 400.0], [-100.0, -100.0]),
    ]
    .iter()
    .enumerate()
    {
        env.reset_to(k as u64, *agent, [256.0, 256.0, 1.0 + k as f64]);
        for _ in 0..60 {
            env.step_no_render(target);
            assert_block_inside(&env);
            let pen = push_t::PUSHER_RADIUS_PX - push_t::t_signed_distance(&env.block_pose(), env.agent());
            assert!(pen < 4.0, "pusher {pen:.1} px into the block");
        }
    }
}

fn assert_block_inside(env: &PushT) {
    let tol = 2.0;
    for q in push_t::t_polygons(&env.block_pose()) {
        for p in q {
            assert!(
                p[0] > push_t::WALL_LO_PX - tol
                    && p[0] < push_t::WALL_HI_PX + tol
                    && p[1] > push_t::WALL_LO_PX - tol
                    && p[1] < push_t::WALL_HI_PX + tol,
                "block corner {p:?} outside the walls"
            );
        }
    }
    let a = env.agent();
    let m = push_t::PUSHER_RADIUS_PX - tol;
    assert!(
        a[0] > push_t::WALL_LO_PX + m
            && a[0] < push_t::WALL_HI_PX - m
            && a[1] > push_t::WALL_LO_PX + m
            && a[1] < push_t::WALL_HI_PX - m,
        "pusher {a:?}"
    );
}

#[test]
fn push_t_coverage_is_exact_on_known_poses() {
    let g = push_t::GOAL_POSE;
    assert!((push_t::coverage(&g, &g) - 1.0).abs() < 1e-9);
    // Shifting along the bar by 10 px loses 10×30 of the bar; the stem (30 wide) loses 10×90.
    let (s, c) = g[2].sin_cos();
    let shifted = [g[0] + 10.0 * c, g[1] + 10.0 * s, g[2]];
    let expect = 1.0 - (10.0 * 30.0 + 10.0 * 90.0) / 6300.0;
    assert!(
        (push_t::coverage(&shifted, &g) - expect).abs() < 1e-9,
        "{}",
        push_t::coverage(&shifted, &g)
    );
    assert!(push_t::coverage(&[50.0, 50.0, 0.0], &g) == 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, rng_seed: RngSeed::Fixed(0x5eed), ..ProptestConfig::default() })]

    /// Whatever the action sequence (out-of-range, NaN, wrong length), joints stay inside their limits
    /// and never move faster than their speed limits.
    #[test]
    fn arm_respects_joint_and_speed_limits(
        seed in 0u64..1000,
        actions in prop::collection::vec(prop::collection::vec(prop_oneof![-10.0..10.0f64, Just(f64::NAN), Just(f64::INFINITY)], 0..5), 1..60),
    ) {
        let mut env = ArmReach::new();
        env.reset(seed);
        let dt = 1.0 / arm_reach::FPS;
        for a in &actions {
            let q0 = env.joints();
            env.step_no_render(a);
            let q1 = env.joints();
            for i in 0..3 {
                prop_assert!(q1[i] >= arm_reach::JOINT_LOW_RAD[i] && q1[i] <= arm_reach::JOINT_HIGH_RAD[i], "joint {} = {}", i, q1[i]);
                prop_assert!((q1[i] - q0[i]).abs() <= arm_reach::JOINT_MAX_SPEED_RAD_S[i] * dt + 1e-9, "joint {} moved {}", i, q1[i] - q0[i]);
            }
        }
    }

    /// Random pusher targets (including jumps across the workspace) never push the block through a wall
    /// or let the pusher sink into the block.
    #[test]
    fn push_t_random_targets_keep_invariants(
        seed in 0u64..1000,
        targets in prop::collection::vec((-50.0..560.0f64, -50.0..560.0f64), 1..40),
    ) {
        let mut env = PushT::new();
        env.reset(seed);
        for (x, y) in &targets {
            env.step_no_render(&[*x, *y]);
            let pen = push_t::PUSHER_RADIUS_PX - push_t::t_signed_distance(&env.block_pose(), env.agent());
            prop_assert!(pen < 4.0, "pusher {} px into the block", pen);
            assert_block_inside(&env);
            let v = env.agent_velocity();
            prop_assert!(v[0].hypot(v[1]) <= push_t::PUSHER_MAX_SPEED_PX_S * 1.01);
        }
    }
}
