//! `quadrotor`: 3D rigid-body quadrotor flying a waypoint course round a pillar, under a PX4-like cascaded
//! controller that takes ENU position + yaw setpoints.
//!
//! Physics ([`QuadBody`]): rigid body with mass and diagonal inertia, collective thrust along body +z and
//! body torques, four X-configuration motors with first-order lag ([`QuadParams::motor_tau_s`]), linear
//! drag against the air (which moves with a seeded mean wind plus Ornstein–Uhlenbeck gusts), integrated
//! at [`SIM_HZ`] with exact constant-acceleration translation and RK4 on (attitude quaternion, body
//! rates). Frames: world ENU (z up), body FLU (x forward, z up).
//!
//! Control ([`Controller`], run at every physics substep like PX4's inner loops): position P → velocity
//! PI (anti-windup) → acceleration → thrust vector with tilt and thrust limits → attitude (quaternion
//! error) P → body-rate P with gyroscopic feed-forward → mixer.
//!
//! Task: visit three waypoints in order within [`WAYPOINT_TOL_M`]. A pillar (infinite vertical cylinder)
//! stands on one leg of the course; touching it or the ground is a crash, which ends the episode as a
//! failure. The expert goes round the pillar on a randomly chosen side, holding its start heading.

use std::f64::consts::PI;

use nalgebra::{Matrix4, Quaternion, UnitQuaternion, Vector3, Vector4};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

use crate::env::{rng_for, sanitize_action, wrap_angle, Env, EnvSpec, Observation};
use crate::render::{RgbImage, View};

pub const FPS: f64 = 10.0;
/// Physics and inner-loop rate.
pub const SIM_HZ: f64 = 500.0;
pub const MAX_STEPS: usize = 250;
pub const GRAVITY_M_S2: f64 = 9.81;
pub const WAYPOINT_TOL_M: f64 = 0.3;
pub const N_WAYPOINTS: usize = 3;
/// Collision radius of the airframe.
pub const BODY_RADIUS_M: f64 = 0.15;
/// Horizontal half-size of the arena.
pub const ARENA_HALF_M: f64 = 4.5;
pub const Z_MIN_M: f64 = 0.2;
pub const Z_MAX_M: f64 = 4.0;
/// Setpoint rate limits the driver should enforce: x, y, z (m/s), yaw (rad/s).
pub const MAX_SETPOINT_SPEED: [f64; 4] = [2.5, 2.5, 1.5, 1.5];
const IMAGE_PX: usize = 96;

/// Physical parameters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuadParams {
    pub mass_kg: f64,
    /// Diagonal of the body inertia.
    pub inertia_kg_m2: [f64; 3],
    /// Motor distance from the centre.
    pub arm_m: f64,
    /// Yaw torque per newton of motor thrust.
    pub yaw_moment_m: f64,
    pub motor_max_n: f64,
    /// Motor thrust lag; 0 = instantaneous.
    pub motor_tau_s: f64,
    /// Linear drag coefficient against the air velocity.
    pub drag_n_s_m: f64,
}

impl Default for QuadParams {
    fn default() -> Self {
        Self {
            mass_kg: 1.0,
            inertia_kg_m2: [0.008, 0.008, 0.014],
            arm_m: 0.17,
            yaw_moment_m: 0.016,
            motor_max_n: 6.0,
            motor_tau_s: 0.02,
            drag_n_s_m: 0.15,
        }
    }
}

/// Rigid-body state of the quadrotor (world ENU position/velocity, body→world attitude, body rates).
#[derive(Debug, Clone, PartialEq)]
pub struct QuadBody {
    pub pos_m: Vector3<f64>,
    pub vel_m_s: Vector3<f64>,
    pub att: UnitQuaternion<f64>,
    pub rate_rad_s: Vector3<f64>,
}

impl QuadBody {
    pub fn at(pos_m: Vector3<f64>) -> Self {
        Self {
            pos_m,
            vel_m_s: Vector3::zeros(),
            att: UnitQuaternion::identity(),
            rate_rad_s: Vector3::zeros(),
        }
    }

    /// Advances `dt_s` under collective thrust `thrust_n` (body +z), body torque `torque_nm`, gravity and
    /// drag against `wind_m_s` (forces held constant over the step).
    pub fn step(&mut self, p: &QuadParams, dt_s: f64, thrust_n: f64, torque_nm: Vector3<f64>, wind_m_s: Vector3<f64>) {
        let inertia = Vector3::from(p.inertia_kg_m2);
        let f = self.att * Vector3::new(0.0, 0.0, thrust_n) - p.drag_n_s_m * (self.vel_m_s - wind_m_s);
        let acc = f / p.mass_kg - Vector3::new(0.0, 0.0, GRAVITY_M_S2);
        // Exact for constant acceleration (keeps free-fall energy).
        self.pos_m += self.vel_m_s * dt_s + 0.5 * acc * dt_s * dt_s;
        self.vel_m_s += acc * dt_s;

        // RK4 on (q, ω): q̇ = ½ q ⊗ (0, ω), ω̇ = I⁻¹(τ − ω × Iω).
        let deriv = |q: &Vector4<f64>, w: &Vector3<f64>| {
            let qq = Quaternion::from(*q);
            let qd = qq * Quaternion::from_parts(0.0, *w) * 0.5;
            let iw = w.component_mul(&inertia);
            let wd = (torque_nm - w.cross(&iw)).component_div(&inertia);
            (qd.coords, wd)
        };
        let q0 = self.att.quaternion().coords;
        let w0 = self.rate_rad_s;
        let (k1q, k1w) = deriv(&q0, &w0);
        let (k2q, k2w) = deriv(&(q0 + k1q * (dt_s / 2.0)), &(w0 + k1w * (dt_s / 2.0)));
        let (k3q, k3w) = deriv(&(q0 + k2q * (dt_s / 2.0)), &(w0 + k2w * (dt_s / 2.0)));
        let (k4q, k4w) = deriv(&(q0 + k3q * dt_s), &(w0 + k3w * dt_s));
        let q1 = q0 + (k1q + 2.0 * k2q + 2.0 * k3q + k4q) * (dt_s / 6.0);
        self.rate_rad_s = w0 + (k1w + 2.0 * k2w + 2.0 * k3w + k4w) * (dt_s / 6.0);
        self.att = UnitQuaternion::from_quaternion(Quaternion::from(q1));
    }

    /// Yaw of the body x axis in the world (rad, ENU: 0 = east, counter-clockwise).
    pub fn yaw(&self) -> f64 {
        let x = self.att * Vector3::x();
        x.y.atan2(x.x)
    }

    /// World-frame angular momentum R·I·ω.
    pub fn angular_momentum(&self, p: &QuadParams) -> Vector3<f64> {
        self.att * self.rate_rad_s.component_mul(&Vector3::from(p.inertia_kg_m2))
    }

    /// Kinetic (translational + rotational) plus gravitational potential energy.
    pub fn energy_j(&self, p: &QuadParams) -> f64 {
        let iw = self.rate_rad_s.component_mul(&Vector3::from(p.inertia_kg_m2));
        0.5 * p.mass_kg * self.vel_m_s.norm_squared()
            + 0.5 * self.rate_rad_s.dot(&iw)
            + p.mass_kg * GRAVITY_M_S2 * self.pos_m.z
    }
}

/// Four motors in X configuration with first-order thrust lag; maps (collective, torque) to motor thrusts.
#[derive(Debug, Clone)]
pub struct Motors {
    /// Current thrust of each motor.
    pub thrust_n: [f64; 4],
    /// Motor thrusts → [collective, τx, τy, τz].
    alloc: Matrix4<f64>,
    mix: Matrix4<f64>,
}

impl Motors {
    pub fn new(p: &QuadParams) -> Self {
        let a = p.arm_m / 2f64.sqrt();
        // Front-left, back-left, back-right, front-right; spin directions alternate.
        let pos = [[a, a], [-a, a], [-a, -a], [a, -a]];
        let spin = [1.0, -1.0, 1.0, -1.0];
        let mut alloc = Matrix4::zeros();
        for i in 0..4 {
            alloc[(0, i)] = 1.0;
            alloc[(1, i)] = pos[i][1];
            alloc[(2, i)] = -pos[i][0];
            alloc[(3, i)] = spin[i] * p.yaw_moment_m;
        }
        let mix = alloc.try_inverse().unwrap_or_else(Matrix4::zeros);
        let hover = p.mass_kg * GRAVITY_M_S2 / 4.0;
        Self {
            thrust_n: [hover; 4],
            alloc,
            mix,
        }
    }

    /// Advances the motors towards the thrusts that realise the command; returns (collective, torque).
    /// Saturation keeps collective thrust and roll/pitch first by scaling down the yaw torque.
    pub fn step(&mut self, p: &QuadParams, dt_s: f64, thrust_n: f64, torque_nm: Vector3<f64>) -> (f64, Vector3<f64>) {
        // Largest share of the yaw torque that keeps every motor in range (yaw is shed first).
        let base = self.mix * Vector4::new(thrust_n, torque_nm.x, torque_nm.y, 0.0);
        let yaw = self.mix.column(3) * torque_nm.z;
        let mut share: f64 = 1.0;
        for i in 0..4 {
            let v = base[i] + yaw[i];
            if v > p.motor_max_n && yaw[i] > 0.0 {
                share = share.min(((p.motor_max_n - base[i]) / yaw[i]).max(0.0));
            } else if v < 0.0 && yaw[i] < 0.0 {
                share = share.min((base[i] / -yaw[i]).max(0.0));
            }
        }
        let f = base + yaw * share;
        let alpha = if p.motor_tau_s > 0.0 {
            1.0 - (-dt_s / p.motor_tau_s).exp()
        } else {
            1.0
        };
        for i in 0..4 {
            let target = f[i].clamp(0.0, p.motor_max_n);
            self.thrust_n[i] += (target - self.thrust_n[i]) * alpha;
        }
        let out = self.alloc * Vector4::from(self.thrust_n);
        (out[0], Vector3::new(out[1], out[2], out[3]))
    }
}

/// Gains and limits of the cascaded controller (PX4 structure, hand-tuned for [`QuadParams::default`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControllerGains {
    pub pos_p: [f64; 3],
    pub vel_p: [f64; 3],
    pub vel_i: [f64; 3],
    pub max_vel_xy_m_s: f64,
    pub max_vel_up_m_s: f64,
    pub max_vel_down_m_s: f64,
    pub max_tilt_rad: f64,
    pub att_p: [f64; 3],
    pub max_rate_rad_s: [f64; 3],
    pub rate_p: [f64; 3],
}

impl Default for ControllerGains {
    fn default() -> Self {
        Self {
            pos_p: [1.1, 1.1, 1.2],
            vel_p: [2.2, 2.2, 4.0],
            vel_i: [0.6, 0.6, 1.5],
            max_vel_xy_m_s: 3.0,
            max_vel_up_m_s: 1.5,
            max_vel_down_m_s: 1.0,
            max_tilt_rad: 35f64.to_radians(),
            att_p: [8.0, 8.0, 3.0],
            max_rate_rad_s: [4.0, 4.0, 2.0],
            rate_p: [25.0, 25.0, 10.0],
        }
    }
}

/// PX4-like cascaded position controller.
#[derive(Debug, Clone)]
pub struct Controller {
    pub gains: ControllerGains,
    vel_int: Vector3<f64>,
}

impl Controller {
    pub fn new(gains: ControllerGains) -> Self {
        Self {
            gains,
            vel_int: Vector3::zeros(),
        }
    }

    /// One control update: setpoint (ENU position, yaw) → (collective thrust, body torque).
    pub fn update(
        &mut self,
        p: &QuadParams,
        b: &QuadBody,
        sp_pos: Vector3<f64>,
        sp_yaw: f64,
        dt_s: f64,
    ) -> (f64, Vector3<f64>) {
        let g = &self.gains;
        // Position P → velocity setpoint with speed limits.
        let e = sp_pos - b.pos_m;
        let mut v_sp = Vector3::new(e.x * g.pos_p[0], e.y * g.pos_p[1], e.z * g.pos_p[2]);
        let vxy = v_sp.xy().norm();
        if vxy > g.max_vel_xy_m_s {
            let s = g.max_vel_xy_m_s / vxy;
            v_sp.x *= s;
            v_sp.y *= s;
        }
        v_sp.z = v_sp.z.clamp(-g.max_vel_down_m_s, g.max_vel_up_m_s);
        // Velocity PI → acceleration setpoint (integral clamped: anti-windup).
        let ev = v_sp - b.vel_m_s;
        self.vel_int += ev * dt_s;
        for i in 0..3 {
            let lim = 3.0 / g.vel_i[i].max(1e-6);
            self.vel_int[i] = self.vel_int[i].clamp(-lim, lim);
        }
        let acc = Vector3::new(
            g.vel_p[0] * ev.x + g.vel_i[0] * self.vel_int.x,
            g.vel_p[1] * ev.y + g.vel_i[1] * self.vel_int.y,
            g.vel_p[2] * ev.z + g.vel_i[2] * self.vel_int.z,
        );
        // Thrust vector with vertical priority and tilt limit.
        let f_max = 4.0 * p.motor_max_n * 0.9;
        let fz = (p.mass_kg * (acc.z + GRAVITY_M_S2)).clamp(0.1 * p.mass_kg * GRAVITY_M_S2, f_max);
        let mut fxy = p.mass_kg * acc.xy();
        let max_xy = (fz * g.max_tilt_rad.tan()).min((f_max * f_max - fz * fz).max(0.0).sqrt());
        if fxy.norm() > max_xy {
            fxy *= max_xy / fxy.norm();
        }
        let f = Vector3::new(fxy.x, fxy.y, fz);
        // Desired attitude from thrust direction and yaw.
        let zb = f.normalize();
        let xc = Vector3::new(sp_yaw.cos(), sp_yaw.sin(), 0.0);
        let yb = zb.cross(&xc).normalize();
        let xb = yb.cross(&zb);
        let rd = nalgebra::Rotation3::from_basis_unchecked(&[xb, yb, zb]);
        let qd = UnitQuaternion::from_rotation_matrix(&rd);
        let thrust = f.dot(&(b.att * Vector3::z())).max(0.0);
        // Attitude P (PX4): reduced attitude first (tilt the thrust axis the shortest way), then add only
        // a weighted share of the yaw, so a large yaw error never starves roll/pitch.
        let ez = b.att * Vector3::z();
        let q_red = UnitQuaternion::rotation_between(&ez, &zb).unwrap_or_else(UnitQuaternion::identity) * b.att;
        let mut q_mix = (q_red.inverse() * qd).into_inner();
        if q_mix.w < 0.0 {
            q_mix = -q_mix;
        }
        let yaw_w = (g.att_p[2] / g.att_p[0]).clamp(0.0, 1.0);
        let (w, z) = (q_mix.w.clamp(-1.0, 1.0), q_mix.k.clamp(-1.0, 1.0));
        let q_yaw = UnitQuaternion::from_quaternion(Quaternion::new(
            (yaw_w * w.acos()).cos(),
            0.0,
            0.0,
            (yaw_w * z.asin()).sin(),
        ));
        let mut qe = b.att.inverse() * (q_red * q_yaw);
        if qe.w < 0.0 {
            qe = UnitQuaternion::from_quaternion(-qe.into_inner());
        }
        let ev = qe.imag() * 2.0;
        let att_gain = [g.att_p[0], g.att_p[1], g.att_p[0]];
        let mut rate_sp = Vector3::zeros();
        for i in 0..3 {
            rate_sp[i] = (att_gain[i] * ev[i]).clamp(-g.max_rate_rad_s[i], g.max_rate_rad_s[i]);
        }
        // Rate P with gyroscopic feed-forward.
        let inertia = Vector3::from(p.inertia_kg_m2);
        let er = rate_sp - b.rate_rad_s;
        let alpha = Vector3::new(g.rate_p[0] * er.x, g.rate_p[1] * er.y, g.rate_p[2] * er.z);
        let torque = alpha.component_mul(&inertia) + b.rate_rad_s.cross(&b.rate_rad_s.component_mul(&inertia));
        (thrust, torque)
    }
}

/// Seeded wind: mean wind plus Ornstein–Uhlenbeck gusts per axis (vertical gusts at a third).
#[derive(Debug, Clone)]
struct Wind {
    rng: StdRng,
    mean_m_s: Vector3<f64>,
    gust_m_s: Vector3<f64>,
    sigma_m_s: f64,
    tau_s: f64,
}

impl Wind {
    fn new(seed: u64) -> Self {
        let mut rng = rng_for(seed, 3);
        let speed = rng.random_range(0.0..1.5);
        let dir = rng.random_range(-PI..PI);
        let sigma_m_s = rng.random_range(0.2..0.8);
        Self {
            rng,
            mean_m_s: Vector3::new(speed * dir.cos(), speed * dir.sin(), 0.0),
            gust_m_s: Vector3::zeros(),
            sigma_m_s,
            tau_s: 1.5,
        }
    }

    fn step(&mut self, dt_s: f64) -> Vector3<f64> {
        let a = (-dt_s / self.tau_s).exp();
        let s = self.sigma_m_s * (1.0 - a * a).sqrt();
        for (i, k) in [1.0, 1.0, 0.33].iter().enumerate() {
            let n: f64 = StandardNormal.sample(&mut self.rng);
            self.gust_m_s[i] = a * self.gust_m_s[i] + s * k * n;
        }
        self.mean_m_s + self.gust_m_s
    }
}

#[derive(Debug, Clone)]
struct Task {
    start: Vector3<f64>,
    waypoints: [Vector3<f64>; N_WAYPOINTS],
    pillar: [f64; 2],
    pillar_r: f64,
    /// Leg the pillar blocks: 0 = start→wp0, k = wp(k-1)→wp(k).
    pillar_leg: usize,
}

fn xy_dist(a: &Vector3<f64>, b: [f64; 2]) -> f64 {
    (a.x - b[0]).hypot(a.y - b[1])
}

fn sample_task(rng: &mut StdRng) -> Task {
    let lim = ARENA_HALF_M - 1.0;
    loop {
        let start = Vector3::new(rng.random_range(-lim..lim), rng.random_range(-lim..lim), 1.0);
        let mut pts = vec![start];
        for _ in 0..N_WAYPOINTS {
            let mut ok = None;
            for _ in 0..100 {
                let w = Vector3::new(
                    rng.random_range(-lim..lim),
                    rng.random_range(-lim..lim),
                    rng.random_range(0.8..2.5),
                );
                let d = (w - pts.last().unwrap()).xy().norm();
                if (2.5..5.0).contains(&d) {
                    ok = Some(w);
                    break;
                }
            }
            match ok {
                Some(w) => pts.push(w),
                None => break,
            }
        }
        if pts.len() != N_WAYPOINTS + 1 {
            continue;
        }
        let pillar_leg = rng.random_range(0..N_WAYPOINTS);
        let (a, b) = (pts[pillar_leg], pts[pillar_leg + 1]);
        let pillar = [(a.x + b.x) / 2.0, (a.y + b.y) / 2.0];
        let pillar_r = rng.random_range(0.25..0.45);
        // Every point of the course must be well clear of the pillar, and both detours inside the arena.
        if pts.iter().any(|p| xy_dist(p, pillar) < pillar_r + 0.9) {
            continue;
        }
        // The other legs must pass well clear of it too (courses can double back).
        let blocked = (0..N_WAYPOINTS)
            .filter(|&l| l != pillar_leg)
            .any(|l| segment_xy_dist(&pts[l], &pts[l + 1], pillar) < pillar_r + 1.0);
        if blocked {
            continue;
        }
        let inside = [-1.0, 1.0].iter().all(|&side| {
            detour(&a, &b, pillar, pillar_r, side, 0.9)
                .iter()
                .all(|p| p.x.abs() < ARENA_HALF_M - 0.3 && p.y.abs() < ARENA_HALF_M - 0.3)
        });
        if !inside {
            continue;
        }
        return Task {
            start,
            waypoints: [pts[1], pts[2], pts[3]],
            pillar,
            pillar_r,
            pillar_leg,
        };
    }
}

/// Horizontal distance from `c` to the segment a→b.
fn segment_xy_dist(a: &Vector3<f64>, b: &Vector3<f64>, c: [f64; 2]) -> f64 {
    let d = (b - a).xy();
    let t = ((nalgebra::Vector2::new(c[0], c[1]) - a.xy()).dot(&d) / d.norm_squared().max(1e-12)).clamp(0.0, 1.0);
    let p = a.xy() + d * t;
    (p.x - c[0]).hypot(p.y - c[1])
}

/// Via points round the pillar on `side` (+1 left of a→b, -1 right), at the leg's interpolated height.
fn detour(a: &Vector3<f64>, b: &Vector3<f64>, c: [f64; 2], r: f64, side: f64, clearance: f64) -> [Vector3<f64>; 2] {
    let d = (b - a).xy();
    let len = d.norm().max(1e-9);
    let u = d / len;
    let n = nalgebra::Vector2::new(-u.y, u.x) * side;
    let h = r + clearance;
    let mk = |along: f64| {
        let xy = nalgebra::Vector2::new(c[0], c[1]) + u * along + n * h;
        let t = ((xy - a.xy()).dot(&u) / len).clamp(0.0, 1.0);
        Vector3::new(xy.x, xy.y, a.z + (b.z - a.z) * t)
    };
    [mk(-h * 0.7), mk(h * 0.7)]
}

/// Scripted expert: a carrot moving along the course (with the detour on its chosen side), waiting at
/// each waypoint until it is visited, never more than a lead distance ahead of the drone; yaw faces the
/// direction of travel; output rate-limited to [`MAX_SETPOINT_SPEED`].
#[derive(Debug, Clone)]
struct Expert {
    rng: StdRng,
    /// Path vertices; `wp_vertex[k]` is the index of waypoint k in `path`.
    path: Vec<Vector3<f64>>,
    wp_vertex: [usize; N_WAYPOINTS],
    s_m: f64,
    speed_m_s: f64,
    lead_m: f64,
    last: [f64; 4],
    side: f64,
}

impl Expert {
    fn new(seed: u64, task: &Task) -> Self {
        let mut rng = rng_for(seed, 2);
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let clearance = rng.random_range(0.7..1.0);
        let speed_m_s = rng.random_range(1.3..1.9);
        let lead_m = rng.random_range(0.8..1.2);
        let mut path = vec![task.start];
        let mut wp_vertex = [0; N_WAYPOINTS];
        let mut prev = task.start;
        for (k, w) in task.waypoints.iter().enumerate() {
            if k == task.pillar_leg {
                path.extend(detour(&prev, w, task.pillar, task.pillar_r, side, clearance));
            }
            path.push(*w);
            wp_vertex[k] = path.len() - 1;
            prev = *w;
        }
        // The expert holds the start heading (yaw 0). Facing the direction of travel would wrap the
        // yaw command at ±π on westward legs: a discontinuity in the demonstrations that a diffusion
        // policy averages into a half-turn. Heading plays no part in the task.
        let last = [task.start.x, task.start.y, task.start.z, 0.0];
        Self {
            rng,
            path,
            wp_vertex,
            s_m: 0.0,
            speed_m_s,
            lead_m,
            last,
            side,
        }
    }

    /// Arc length at vertex `v`.
    fn s_at(&self, v: usize) -> f64 {
        self.path.windows(2).take(v).map(|w| (w[1] - w[0]).norm()).sum()
    }

    /// Point and unit direction at arc length `s`.
    fn at(&self, s: f64) -> (Vector3<f64>, Vector3<f64>) {
        let mut s = s;
        for w in self.path.windows(2) {
            let l = (w[1] - w[0]).norm();
            if s <= l {
                return (w[0] + (w[1] - w[0]) * (s / l.max(1e-9)), (w[1] - w[0]) / l.max(1e-9));
            }
            s -= l;
        }
        let n = self.path.len();
        let dir = (self.path[n - 1] - self.path[n - 2]).normalize();
        (self.path[n - 1], dir)
    }

    fn action(&mut self, pos: &Vector3<f64>, visited: usize) -> Vec<f64> {
        let hold_s = if visited < N_WAYPOINTS {
            self.s_at(self.wp_vertex[visited])
        } else {
            f64::INFINITY
        };
        let (carrot, _) = self.at(self.s_m);
        if (carrot - pos).norm() < self.lead_m {
            self.s_m = (self.s_m + self.speed_m_s / FPS).min(hold_s);
        }
        let total = self.s_at(self.path.len() - 1);
        self.s_m = self.s_m.min(total);
        let (mut sp, _) = self.at(self.s_m);
        if self.s_m < hold_s - 1e-6 {
            for i in 0..3 {
                let n: f64 = StandardNormal.sample(&mut self.rng);
                sp[i] += 0.03 * n;
            }
        }
        let yaw = self.last[3];
        let mut out = [sp.x, sp.y, sp.z, yaw];
        for i in 0..4 {
            let lim = MAX_SETPOINT_SPEED[i] / FPS * 0.95;
            let d = if i == 3 {
                wrap_angle(out[i] - self.last[i])
            } else {
                out[i] - self.last[i]
            };
            out[i] = self.last[i] + d.clamp(-lim, lim);
        }
        out[3] = wrap_angle(out[3]);
        self.last = out;
        out.to_vec()
    }
}

/// The `quadrotor` environment (see the module docs).
pub struct Quadrotor {
    spec: EnvSpec,
    pub params: QuadParams,
    seed: u64,
    task: Task,
    body: QuadBody,
    motors: Motors,
    ctrl: Controller,
    wind: Wind,
    setpoint: [f64; 4],
    steps: usize,
    visited: usize,
    crashed: bool,
    faults: usize,
    expert: Expert,
}

impl Default for Quadrotor {
    fn default() -> Self {
        Self::new()
    }
}

impl Quadrotor {
    pub fn new() -> Self {
        let params = QuadParams::default();
        let spec = EnvSpec {
            name: "quadrotor",
            fps: FPS,
            state_dim: 7,
            env_state_dim: 3 * N_WAYPOINTS + 4 + 9,
            env_state_widths: vec![3 * N_WAYPOINTS + 4, 3 * N_WAYPOINTS + 4 + 9],
            action_dim: 4,
            image_hw: (IMAGE_PX, IMAGE_PX),
            max_steps: MAX_STEPS,
            action_low: vec![-ARENA_HALF_M, -ARENA_HALF_M, Z_MIN_M, -PI],
            action_high: vec![ARENA_HALF_M, ARENA_HALF_M, Z_MAX_M, PI],
            max_speed: MAX_SETPOINT_SPEED.to_vec(),
        };
        let task = sample_task(&mut rng_for(0, 1));
        let expert = Expert::new(0, &task);
        let mut env = Self {
            spec,
            motors: Motors::new(&params),
            params,
            seed: 0,
            body: QuadBody::at(task.start),
            task,
            ctrl: Controller::new(ControllerGains::default()),
            wind: Wind::new(0),
            setpoint: [0.0; 4],
            steps: 0,
            visited: 0,
            crashed: false,
            faults: 0,
            expert,
        };
        env.reset(0);
        env
    }

    pub fn body(&self) -> &QuadBody {
        &self.body
    }

    /// Waypoints visited so far (in order).
    pub fn visited(&self) -> usize {
        self.visited
    }

    /// Whether the drone hit the pillar or the ground this episode.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// The side (+1 left, -1 right of the blocked leg) the expert chose this episode.
    pub fn expert_side(&self) -> f64 {
        self.expert.side
    }

    fn check(&mut self) {
        let b = &self.body;
        if b.pos_m.z < 0.0 || xy_dist(&b.pos_m, self.task.pillar) < self.task.pillar_r + BODY_RADIUS_M {
            self.crashed = true;
        }
        if !self.crashed
            && self.visited < N_WAYPOINTS
            && (b.pos_m - self.task.waypoints[self.visited]).norm() < WAYPOINT_TOL_M
        {
            self.visited += 1;
        }
    }

    fn render(&self) -> RgbImage {
        let view = View::square(-5.0, 5.0, IMAGE_PX, false);
        let mut img = RgbImage::new(IMAGE_PX as u32, IMAGE_PX as u32, [225, 230, 215]);
        let edge = [
            view.px([-ARENA_HALF_M, -ARENA_HALF_M]),
            view.px([ARENA_HALF_M, ARENA_HALF_M]),
        ];
        img.fill_convex(
            &[edge[0], [edge[1][0], edge[0][1]], edge[1], [edge[0][0], edge[1][1]]],
            [205, 215, 195],
        );
        let c = view.px(self.task.pillar);
        img.fill_circle(c[0], c[1], view.len(self.task.pillar_r), [110, 100, 95]);
        for (k, w) in self.task.waypoints.iter().enumerate() {
            let p = view.px([w.x, w.y]);
            let color = match k.cmp(&self.visited) {
                std::cmp::Ordering::Less => [60, 170, 70],
                std::cmp::Ordering::Equal => [240, 190, 30],
                std::cmp::Ordering::Greater => [90, 140, 230],
            };
            // Waypoint size grows with its altitude so height is visible top-down.
            img.fill_circle(p[0], p[1], view.len(WAYPOINT_TOL_M) * (0.8 + w.z / 3.0), color);
        }
        let b = &self.body;
        let center = [b.pos_m.x, b.pos_m.y];
        // Shadow directly below, then the airframe scaled with altitude.
        let sc = view.px(center);
        img.fill_circle(sc[0], sc[1], 3.0, [150, 155, 140]);
        let scale = 0.25 * (1.0 + b.pos_m.z.max(0.0) / 3.0);
        for arm in [PI / 4.0, 3.0 * PI / 4.0] {
            let d = b.att * Vector3::new(arm.cos(), arm.sin(), 0.0) * scale;
            img.thick_line(
                view.px([center[0] - d.x, center[1] - d.y]),
                view.px([center[0] + d.x, center[1] + d.y]),
                2.0,
                [30, 30, 40],
            );
        }
        let fwd = b.att * Vector3::x() * scale;
        let f = view.px([center[0] + fwd.x, center[1] + fwd.y]);
        img.fill_circle(f[0], f[1], 2.0, [220, 40, 40]);
        img
    }
}

impl Env for Quadrotor {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Observation {
        self.seed = seed;
        self.task = sample_task(&mut rng_for(seed, 1));
        self.body = QuadBody::at(self.task.start);
        self.motors = Motors::new(&self.params);
        self.ctrl = Controller::new(ControllerGains::default());
        self.wind = Wind::new(seed);
        self.expert = Expert::new(seed, &self.task);
        self.setpoint = self.expert.last;
        self.steps = 0;
        self.visited = 0;
        self.crashed = false;
        self.faults = 0;
        self.observe(true)
    }

    fn step(&mut self, action: &[f64]) -> Observation {
        self.step_no_render(action);
        self.observe(true)
    }

    fn step_no_render(&mut self, action: &[f64]) -> Observation {
        let (sp, fault) = sanitize_action(&self.spec, action, &self.setpoint);
        self.faults += fault as usize;
        self.setpoint.copy_from_slice(&sp);
        let n = (SIM_HZ / FPS).round() as usize;
        let dt = 1.0 / SIM_HZ;
        let sp_pos = Vector3::new(sp[0], sp[1], sp[2]);
        for _ in 0..n {
            if self.crashed {
                break;
            }
            let (t, tau) = self.ctrl.update(&self.params, &self.body, sp_pos, sp[3], dt);
            let (t, tau) = self.motors.step(&self.params, dt, t, tau);
            let wind = self.wind.step(dt);
            self.body.step(&self.params, dt, t, tau, wind);
            self.check();
        }
        self.steps += 1;
        self.observe(false)
    }

    fn position(&self) -> Vec<f64> {
        vec![self.body.pos_m.x, self.body.pos_m.y, self.body.pos_m.z, self.body.yaw()]
    }

    fn observe(&self, render: bool) -> Observation {
        let b = &self.body;
        let mut env_state: Vec<f32> = self
            .task
            .waypoints
            .iter()
            .flat_map(|w| [w.x as f32, w.y as f32, w.z as f32])
            .collect();
        env_state.extend([
            self.task.pillar[0] as f32,
            self.task.pillar[1] as f32,
            self.task.pillar_r as f32,
            (self.visited as f64 / N_WAYPOINTS as f64) as f32,
        ]);
        // Layout 2 appends the course seen from the drone: the current and the next waypoint (the last
        // one again once there is no next; zeros once all are visited), the pillar, and the clearance.
        let wp = |k: usize| {
            self.task
                .waypoints
                .get(k.min(N_WAYPOINTS - 1))
                .filter(|_| self.visited < N_WAYPOINTS)
                .map(|w| w - b.pos_m)
                .unwrap_or_else(Vector3::zeros)
        };
        let (cur, next) = (wp(self.visited), wp(self.visited + 1));
        let clearance = xy_dist(&b.pos_m, self.task.pillar) - self.task.pillar_r - BODY_RADIUS_M;
        env_state.extend(
            [
                cur.x,
                cur.y,
                cur.z,
                next.x,
                next.y,
                next.z,
                self.task.pillar[0] - b.pos_m.x,
                self.task.pillar[1] - b.pos_m.y,
                clearance,
            ]
            .iter()
            .map(|&v| v as f32),
        );
        Observation {
            state: [
                b.pos_m.x,
                b.pos_m.y,
                b.pos_m.z,
                b.vel_m_s.x,
                b.vel_m_s.y,
                b.vel_m_s.z,
                b.yaw(),
            ]
            .iter()
            .map(|&v| v as f32)
            .collect(),
            env_state,
            image: render.then(|| self.render()),
        }
    }

    fn success(&self) -> bool {
        self.visited == N_WAYPOINTS
    }

    fn score(&self) -> f64 {
        self.visited as f64 / N_WAYPOINTS as f64
    }

    fn done(&self) -> bool {
        self.success() || self.crashed || self.steps >= MAX_STEPS
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn expert_action(&mut self) -> Vec<f64> {
        self.expert.action(&self.body.pos_m, self.visited)
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn action_faults(&self) -> usize {
        self.faults
    }

    fn config_json(&self) -> serde_json::Value {
        json!({
            "name": self.spec.name,
            "fps": FPS,
            "sim_hz": SIM_HZ,
            "max_steps": MAX_STEPS,
            "params": self.params,
            "controller": self.ctrl.gains,
            "waypoint_tol_m": WAYPOINT_TOL_M,
            "n_waypoints": N_WAYPOINTS,
            "body_radius_m": BODY_RADIUS_M,
            "arena_half_m": ARENA_HALF_M,
            "frames": "world ENU, body FLU; yaw 0 = east, counter-clockwise",
            "state": "[x, y, z, vx, vy, vz, yaw] (m, m/s, rad)",
            "env_state": "[wp0 xyz, wp1 xyz, wp2 xyz, pillar_x, pillar_y, pillar_r, visited/3, current wp - drone xyz, next wp - drone xyz, pillar - drone xy, pillar clearance]; policies trained on the first 13 get those",
            "action": "[x, y, z, yaw] ENU position + yaw setpoint",
            "crash": "touching the pillar or the ground ends the episode as a failure",
        })
    }
}
