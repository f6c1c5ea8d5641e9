//! riptide-drivers' EADP tracking model (`guidance::TrackingModel`) against this crate's quadrotor: fly the same
//! setpoint sequences through the full rigid-body sim (motors, attitude and rate loops, PX4-like cascade) and
//! through the reduced model, and compare positions every 0.1 s. Also checks that the model's cost ranks
//! chunks as the sim's own tracking error does.

use nalgebra::Vector3;
use riptide_drivers::{DroneState, TrackingModel, TrackingModelConfig};
use riptide_sim::quadrotor::{Controller, ControllerGains, Motors, QuadBody, QuadParams, Quadrotor, FPS, SIM_HZ};
use riptide_sim::Env;

const DT: f64 = 1.0 / FPS;

/// Flies `setpoints` (one per 0.1 s, zero-order hold, as `Env::step` does) from rest at `start` in still air;
/// returns `[x, y, z, yaw]` at the end of each period.
fn fly_still_air(start: [f64; 3], setpoints: &[[f64; 4]]) -> Vec<[f64; 4]> {
    let params = QuadParams::default();
    let mut body = QuadBody::at(Vector3::from(start));
    let mut motors = Motors::new(&params);
    let mut ctrl = Controller::new(ControllerGains::default());
    let n = (SIM_HZ / FPS).round() as usize;
    let h = 1.0 / SIM_HZ;
    setpoints
        .iter()
        .map(|sp| {
            for _ in 0..n {
                let (t, tau) = ctrl.update(&params, &body, Vector3::new(sp[0], sp[1], sp[2]), sp[3], h);
                let (t, tau) = motors.step(&params, h, t, tau);
                body.step(&params, h, t, tau, Vector3::zeros());
            }
            [body.pos_m.x, body.pos_m.y, body.pos_m.z, body.yaw()]
        })
        .collect()
}

fn hold(sp: [f64; 4], n: usize) -> Vec<[f64; 4]> {
    vec![sp; n]
}

fn ramp(start: [f64; 4], vel: [f64; 4], n: usize) -> Vec<[f64; 4]> {
    (0..n)
        .map(|i| {
            let t = (i + 1) as f64 * DT;
            [
                start[0] + vel[0] * t,
                start[1] + vel[1] * t,
                start[2] + vel[2] * t,
                start[3] + vel[3] * t,
            ]
        })
        .collect()
}

/// (max, rms) position error in m and max |yaw error| in rad between two tracks.
fn compare(a: &[[f64; 4]], b: &[[f64; 4]]) -> (f64, f64, f64) {
    let mut max: f64 = 0.0;
    let mut sq = 0.0;
    let mut yaw: f64 = 0.0;
    for (p, q) in a.iter().zip(b) {
        let e = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt();
        max = max.max(e);
        sq += e * e;
        let dy = (p[3] - q[3] + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU) - std::f64::consts::PI;
        yaw = yaw.max(dy.abs());
    }
    (max, (sq / a.len() as f64).sqrt(), yaw)
}

struct Scenario {
    name: &'static str,
    start: [f64; 3],
    setpoints: Vec<[f64; 4]>,
    /// Largest excursion of the setpoints from the start, to put the error in proportion.
    size: f64,
}

fn scenarios() -> Vec<Scenario> {
    let s = [0.0, 0.0, 1.5];
    let mut zig = Vec::new();
    for i in 0..40 {
        let t = i as f64 * DT;
        zig.push([
            1.2 * (1.3 * t).sin(),
            0.8 * (0.9 * t).sin(),
            1.5 + 0.4 * (0.7 * t).sin(),
            0.6 * (0.5 * t).sin(),
        ]);
    }
    vec![
        Scenario {
            name: "1 m step x (3 s)",
            start: s,
            setpoints: hold([1.0, 0.0, 1.5, 0.0], 30),
            size: 1.0,
        },
        Scenario {
            name: "3 m jump diagonal (4 s)",
            start: s,
            setpoints: hold([2.1, 2.1, 1.5, 0.0], 40),
            size: 3.0,
        },
        Scenario {
            name: "6 m jump x (speed-limited, 4 s)",
            start: s,
            setpoints: hold([6.0, 0.0, 1.5, 0.0], 40),
            size: 6.0,
        },
        Scenario {
            name: "1 m climb (3 s)",
            start: s,
            setpoints: hold([0.0, 0.0, 2.5, 0.0], 30),
            size: 1.0,
        },
        Scenario {
            name: "1 m descent (3 s)",
            start: s,
            setpoints: hold([0.0, 0.0, 0.5, 0.0], 30),
            size: 1.0,
        },
        Scenario {
            name: "1 m/s ramp x (2 s)",
            start: s,
            setpoints: ramp([0.0, 0.0, 1.5, 0.0], [1.0, 0.0, 0.0, 0.0], 20),
            size: 2.0,
        },
        Scenario {
            name: "1.5 rad yaw step + 1 m step y (3 s)",
            start: s,
            setpoints: hold([0.0, 1.0, 1.5, 1.5], 30),
            size: 1.0,
        },
        Scenario {
            name: "smooth 3-axis wander (4 s)",
            start: s,
            setpoints: zig,
            size: 1.2,
        },
    ]
}

#[test]
fn model_tracks_like_the_sim_in_still_air() {
    let model = TrackingModel::new(TrackingModelConfig::default()).unwrap();
    let mut worst_rel: f64 = 0.0;
    for sc in scenarios() {
        let sim = fly_still_air(sc.start, &sc.setpoints);
        let m = model.rollout(&DroneState::at_rest(sc.start, 0.0), &sc.setpoints, DT);
        let (max, rms, yaw) = compare(&sim, &m);
        let sim_err = compare(&sim, &sc.setpoints).1;
        println!(
            "{:<38} model vs sim: max {:.3} m, rms {:.3} m, yaw max {:.3} rad   (sim's own tracking error rms {:.3} m)",
            sc.name, max, rms, yaw, sim_err
        );
        worst_rel = worst_rel.max(max / sc.size);
        assert!(max < 0.1 * sc.size, "{}: model off by {max:.3} m", sc.name);
        // The sim's yaw is disturbed by hard tilting (motor saturation sheds yaw torque first); the model has
        // no such coupling.
        assert!(yaw < 0.15, "{}: yaw off by {yaw:.3} rad", sc.name);
    }
    println!("worst max error / excursion: {:.1} %", 100.0 * worst_rel);
}

#[test]
fn model_cost_agrees_with_the_sims_tracking_error() {
    // J from the model vs the same sum of squared errors measured on the sim, for chunks of 16 setpoints.
    let model = TrackingModel::new(TrackingModelConfig::default()).unwrap();
    let s = [0.0, 0.0, 1.5];
    let chunks: Vec<(&str, Vec<[f64; 4]>)> = vec![
        ("hover", hold([0.0, 0.0, 1.5, 0.0], 16)),
        ("0.1 m/s line", ramp([0.0, 0.0, 1.5, 0.0], [0.1, 0.0, 0.0, 0.0], 16)),
        ("1 m jump", hold([1.0, 0.0, 1.5, 0.0], 16)),
        ("1 m/s line", ramp([0.0, 0.0, 1.5, 0.0], [1.0, 0.0, 0.0, 0.0], 16)),
        ("3 m jump", hold([3.0, 0.0, 1.5, 0.0], 16)),
        ("3 m jump + climb", hold([2.0, -2.0, 2.5, 0.0], 16)),
    ];
    let mut pairs = Vec::new();
    for (name, sp) in &chunks {
        let j_model = model.cost(&DroneState::at_rest(s, 0.0), sp, DT);
        let sim = fly_still_air(s, sp);
        let mut j_sim = 0.0;
        for (p, q) in sim.iter().zip(sp) {
            j_sim += (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2);
        }
        // Position part only (yaw setpoint 0 = the start heading).
        println!("{name:<18} J model {j_model:>9.4}   sim {j_sim:>9.4}");
        assert!(
            (j_model - j_sim).abs() <= 0.1 * j_sim + 0.01,
            "{name}: model J {j_model} vs sim {j_sim}"
        );
        pairs.push((j_model, j_sim));
    }
    // The model ranks the chunks exactly as the sim does.
    for a in &pairs {
        for b in &pairs {
            assert_eq!(a.0 < b.0, a.1 < b.1, "ranking differs: {pairs:?}");
        }
    }
}

#[test]
fn model_vs_sim_with_wind() {
    // The full environment (seeded mean wind up to 1.5 m/s plus gusts), which the model does not know about:
    // report how far apart they drift over 1.6 s chunks (the horizon guidance cares about).
    let model = TrackingModel::new(TrackingModelConfig::default()).unwrap();
    let mut errs = Vec::new();
    for seed in 0..8u64 {
        let mut env = Quadrotor::new();
        env.reset(seed);
        // Let the integral settle against the wind first.
        let p = env.position();
        for _ in 0..30 {
            env.step_no_render(&p);
        }
        let b = env.body();
        let start = DroneState {
            position: [b.pos_m.x, b.pos_m.y, b.pos_m.z],
            velocity: [b.vel_m_s.x, b.vel_m_s.y, b.vel_m_s.z],
            yaw: b.yaw(),
        };
        let sp: Vec<[f64; 4]> = (0..16)
            .map(|_| [start.position[0] + 1.0, start.position[1], start.position[2], start.yaw])
            .collect();
        let m = model.rollout(&start, &sp, DT);
        let sim: Vec<[f64; 4]> = sp
            .iter()
            .map(|a| {
                env.step_no_render(a);
                env.position().try_into().unwrap()
            })
            .collect();
        let (max, rms, _) = compare(&sim, &m);
        errs.push((max, rms));
    }
    let worst = errs.iter().map(|e| e.0).fold(0.0, f64::max);
    let mean_rms = errs.iter().map(|e| e.1).sum::<f64>() / errs.len() as f64;
    println!("1 m step over 1.6 s in wind, 8 seeds: model vs sim max {worst:.3} m, mean rms {mean_rms:.3} m");
    assert!(worst < 0.25, "wind pushes the sim {worst} m away from the model");
}
