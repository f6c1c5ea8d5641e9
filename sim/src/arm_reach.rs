//! `arm-reach`: a planar 3-joint arm under joint-position control reaching a random target around an
//! obstacle.
//!
//! Each joint tracks its position target with a first-order servo (time constant [`SERVO_TAU_S`]) whose
//! speed is capped at [`JOINT_MAX_SPEED_RAD_S`], integrated at [`SUBSTEPS`] substeps per control step;
//! targets are clamped to the joint limits, so joints never leave them. The obstacle is a keep-out disc
//! for the *tool tip* (think of a fixture on the table that the links pass over but the tool hanging below
//! them must avoid); it sits on the straight line from start to target, so the tool must go round it on
//! the left or on the right — the expert picks a side at random, which makes the demonstrations bimodal.
//!
//! Collision (tool disc touching the obstacle) is a failure: it latches, the score becomes 0, success can
//! no longer happen, and the episode is done.

use std::f64::consts::PI;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;

use crate::render::{RgbImage, View};
use crate::{rng_for, sanitize_action, Env, EnvSpec, Observation};

/// Link lengths from the base outwards.
pub const LINK_LENGTHS_M: [f64; 3] = [0.40, 0.30, 0.20];
pub const JOINT_LOW_RAD: [f64; 3] = [-2.8, -2.6, -2.6];
pub const JOINT_HIGH_RAD: [f64; 3] = [2.8, 2.6, 2.6];
/// Joint speed limits, enforced by the servo.
pub const JOINT_MAX_SPEED_RAD_S: [f64; 3] = [1.5, 2.0, 2.5];
/// First-order servo time constant.
pub const SERVO_TAU_S: f64 = 0.12;
pub const FPS: f64 = 10.0;
pub const SUBSTEPS: usize = 10;
pub const MAX_STEPS: usize = 100;
/// Tool tip within this distance of the target = success.
pub const SUCCESS_TOL_M: f64 = 0.03;
/// Radius of the tool tip for the obstacle check.
pub const TOOL_RADIUS_M: f64 = 0.02;
const IMAGE_PX: usize = 96;

/// Forward kinematics: joint positions (base, elbow, tool tip) for joint angles `q`.
pub fn forward_kinematics(q: &[f64; 3]) -> [[f64; 2]; 4] {
    let mut pts = [[0.0; 2]; 4];
    let mut a = 0.0;
    for i in 0..3 {
        a += q[i];
        pts[i + 1] = [pts[i][0] + LINK_LENGTHS_M[i] * a.cos(), pts[i][1] + LINK_LENGTHS_M[i] * a.sin()];
    }
    pts
}

/// Two-link analytic IK of the wrist for each tool angle on a grid around the current one and both elbow
/// branches; returns the solution inside the joint limits closest to `q` (continuity), or `q` when none.
fn ik(q: [f64; 3], target: [f64; 2]) -> [f64; 3] {
    let [l1, l2, l3] = LINK_LENGTHS_M;
    let phi0 = q[0] + q[1] + q[2];
    let mut best: Option<(f64, [f64; 3])> = None;
    for k in 0..72 {
        // 0, +5°, -5°, +10°, ...: small changes of the tool angle first.
        let step = ((k + 1) / 2) as f64 * 5f64.to_radians();
        let phi = if k % 2 == 1 { phi0 + step } else { phi0 - step };
        let w = [target[0] - l3 * phi.cos(), target[1] - l3 * phi.sin()];
        let c2 = (w[0] * w[0] + w[1] * w[1] - l1 * l1 - l2 * l2) / (2.0 * l1 * l2);
        if !(-1.0..=1.0).contains(&c2) {
            continue;
        }
        for elbow in [1.0, -1.0] {
            let q1 = elbow * c2.acos();
            let q0 = w[1].atan2(w[0]) - (l2 * q1.sin()).atan2(l1 + l2 * q1.cos());
            // Pick the 2π-equivalent closest to the current joint angle.
            let q0 = q[0] + crate::wrap_angle(q0 - q[0]);
            let q2 = q[2] + crate::wrap_angle(phi - q0 - q1 - q[2]);
            let cand = [q0, q1, q2];
            if (0..3).any(|i| cand[i] < JOINT_LOW_RAD[i] || cand[i] > JOINT_HIGH_RAD[i]) {
                continue;
            }
            let margin: f64 = (0..3).map(|i| (cand[i] - JOINT_LOW_RAD[i]).min(JOINT_HIGH_RAD[i] - cand[i])).fold(f64::MAX, f64::min);
            let cost = (0..3).map(|i| (cand[i] - q[i]).powi(2)).sum::<f64>() + 0.05 * (0.3 - margin).max(0.0);
            if best.is_none_or(|b| cost < b.0) {
                best = Some((cost, cand));
            }
        }
        if best.is_some_and(|b| b.0 < 1e-4) {
            break;
        }
    }
    best.map_or(q, |b| b.1)
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Task drawn at reset.
#[derive(Debug, Clone)]
struct Task {
    q_start: [f64; 3],
    target: [f64; 2],
    obstacle: [f64; 2],
    obstacle_r: f64,
}

fn sample_task(rng: &mut impl Rng) -> Task {
    loop {
        let q_start = [rng.random_range(-2.5..2.5), rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0)];
        let start = forward_kinematics(&q_start)[3];
        let rs = start[0].hypot(start[1]);
        if !(0.35..=0.85).contains(&rs) {
            continue;
        }
        let (r, a) = (rng.random_range(0.35..0.85), rng.random_range(-PI..PI));
        let target = [r * f64::cos(a), r * f64::sin(a)];
        let d = dist(start, target);
        if !(0.5..=1.2).contains(&d) {
            continue;
        }
        let obstacle = [(start[0] + target[0]) / 2.0, (start[1] + target[1]) / 2.0];
        let obstacle_r = rng.random_range(0.05..0.09);
        if obstacle[0].hypot(obstacle[1]) < 0.2 {
            continue;
        }
        // Both detours must be reachable.
        let ok = [-1.0, 1.0].iter().all(|&side| {
            detour(start, target, obstacle, obstacle_r, side, 0.12).iter().all(|p| {
                let r = p[0].hypot(p[1]);
                (0.12..=0.86).contains(&r)
            })
        });
        if ok {
            return Task { q_start, target, obstacle, obstacle_r };
        }
    }
}

/// Two via points going round the obstacle on `side` (+1 left of start→target, -1 right).
fn detour(start: [f64; 2], target: [f64; 2], c: [f64; 2], r: f64, side: f64, clearance: f64) -> [[f64; 2]; 2] {
    let d = dist(start, target).max(1e-9);
    let u = [(target[0] - start[0]) / d, (target[1] - start[1]) / d];
    let n = [-u[1] * side, u[0] * side];
    let h = r + clearance;
    [
        [c[0] - u[0] * h * 0.8 + n[0] * h, c[1] - u[1] * h * 0.8 + n[1] * h],
        [c[0] + u[0] * h * 0.8 + n[0] * h, c[1] + u[1] * h * 0.8 + n[1] * h],
    ]
}

/// Scripted expert: a carrot moving along start → detour → target at a per-episode speed, converted to
/// joint targets by IK continuing from its previous solution.
#[derive(Debug, Clone)]
struct Expert {
    rng: rand::rngs::StdRng,
    path: Vec<[f64; 2]>,
    /// Arc length travelled along `path`.
    s_m: f64,
    speed_m_s: f64,
    q_cmd: [f64; 3],
    side: f64,
}

impl Expert {
    fn new(seed: u64, task: &Task) -> Self {
        let mut rng = rng_for(seed, 2);
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let clearance = rng.random_range(0.08..0.14);
        let start = forward_kinematics(&task.q_start)[3];
        let via = detour(start, task.target, task.obstacle, task.obstacle_r, side, clearance);
        let speed_m_s = rng.random_range(0.22..0.32);
        Self { rng, path: vec![start, via[0], via[1], task.target], s_m: 0.0, speed_m_s, q_cmd: task.q_start, side }
    }

    fn point_at(&self, s: f64) -> [f64; 2] {
        let mut s = s;
        for w in self.path.windows(2) {
            let l = dist(w[0], w[1]);
            if s <= l {
                let t = s / l.max(1e-9);
                return [w[0][0] + (w[1][0] - w[0][0]) * t, w[0][1] + (w[1][1] - w[0][1]) * t];
            }
            s -= l;
        }
        *self.path.last().unwrap()
    }

    fn action(&mut self, tip: [f64; 2]) -> Vec<f64> {
        // Do not run away from a lagging arm: wait while the tip is far behind the carrot.
        let carrot = self.point_at(self.s_m);
        if dist(carrot, tip) < 0.08 {
            self.s_m += self.speed_m_s / FPS;
        }
        let total: f64 = self.path.windows(2).map(|w| dist(w[0], w[1])).sum();
        let mut goal = self.point_at(self.s_m);
        if self.s_m < total {
            let noise = Normal::new(0.0, 0.004).unwrap();
            goal[0] += noise.sample(&mut self.rng);
            goal[1] += noise.sample(&mut self.rng);
        }
        self.q_cmd = ik(self.q_cmd, goal);
        self.q_cmd.to_vec()
    }
}

/// The `arm-reach` environment (see the module docs).
pub struct ArmReach {
    spec: EnvSpec,
    seed: u64,
    task: Task,
    q: [f64; 3],
    target_cmd: [f64; 3],
    steps: usize,
    success: bool,
    collided: bool,
    faults: usize,
    start_dist_m: f64,
    expert: Expert,
}

impl Default for ArmReach {
    fn default() -> Self {
        Self::new()
    }
}

impl ArmReach {
    pub fn new() -> Self {
        let spec = EnvSpec {
            name: "arm-reach",
            fps: FPS,
            state_dim: 3,
            env_state_dim: 5,
            action_dim: 3,
            image_hw: (IMAGE_PX, IMAGE_PX),
            max_steps: MAX_STEPS,
            action_low: JOINT_LOW_RAD.to_vec(),
            action_high: JOINT_HIGH_RAD.to_vec(),
            max_speed: JOINT_MAX_SPEED_RAD_S.to_vec(),
        };
        let mut env = Self {
            spec,
            seed: 0,
            task: Task { q_start: [0.0; 3], target: [0.5, 0.0], obstacle: [0.0, 0.5], obstacle_r: 0.05 },
            q: [0.0; 3],
            target_cmd: [0.0; 3],
            steps: 0,
            success: false,
            collided: false,
            faults: 0,
            start_dist_m: 1.0,
            expert: Expert {
                rng: rng_for(0, 2),
                path: vec![[0.0; 2]],
                s_m: 0.0,
                speed_m_s: 0.0,
                q_cmd: [0.0; 3],
                side: 1.0,
            },
        };
        env.reset(0);
        env
    }

    /// Joint angles.
    pub fn joints(&self) -> [f64; 3] {
        self.q
    }

    /// Tool-tip position.
    pub fn tip(&self) -> [f64; 2] {
        forward_kinematics(&self.q)[3]
    }

    /// Whether the tool touched the obstacle this episode.
    pub fn collided(&self) -> bool {
        self.collided
    }

    /// The side (+1 left of start→target, -1 right) the expert chose this episode.
    pub fn expert_side(&self) -> f64 {
        self.expert.side
    }

    fn check(&mut self) {
        let tip = self.tip();
        if dist(tip, self.task.obstacle) < self.task.obstacle_r + TOOL_RADIUS_M {
            self.collided = true;
        }
        if !self.collided && dist(tip, self.task.target) < SUCCESS_TOL_M {
            self.success = true;
        }
    }

    fn render(&self) -> RgbImage {
        let view = View::square(-1.0, 1.0, IMAGE_PX, false);
        let mut img = RgbImage::new(IMAGE_PX as u32, IMAGE_PX as u32, [235, 235, 230]);
        let reach = view.len(LINK_LENGTHS_M.iter().sum());
        let c = view.px([0.0, 0.0]);
        img.fill_circle(c[0], c[1], reach, [215, 220, 225]);
        let o = view.px(self.task.obstacle);
        img.fill_circle(o[0], o[1], view.len(self.task.obstacle_r), [200, 40, 40]);
        let t = view.px(self.task.target);
        img.fill_circle(t[0], t[1], view.len(SUCCESS_TOL_M).max(2.0), [40, 170, 60]);
        let pts = forward_kinematics(&self.q);
        let colors = [[40, 60, 140], [60, 90, 180], [90, 130, 220]];
        for i in 0..3 {
            img.thick_line(view.px(pts[i]), view.px(pts[i + 1]), 3.5, colors[i]);
        }
        for p in &pts[..3] {
            let p = view.px(*p);
            img.fill_circle(p[0], p[1], 2.5, [30, 30, 30]);
        }
        let tip = view.px(pts[3]);
        img.fill_circle(tip[0], tip[1], view.len(TOOL_RADIUS_M).max(1.5), [250, 170, 20]);
        img
    }
}

impl Env for ArmReach {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Observation {
        self.seed = seed;
        self.task = sample_task(&mut rng_for(seed, 1));
        self.q = self.task.q_start;
        self.target_cmd = self.q;
        self.steps = 0;
        self.success = false;
        self.collided = false;
        self.faults = 0;
        self.start_dist_m = dist(self.tip(), self.task.target);
        self.expert = Expert::new(seed, &self.task);
        self.observe(true)
    }

    fn step(&mut self, action: &[f64]) -> Observation {
        self.step_no_render(action);
        self.observe(true)
    }

    fn step_no_render(&mut self, action: &[f64]) -> Observation {
        let (target, fault) = sanitize_action(&self.spec, action, &self.target_cmd);
        self.faults += fault as usize;
        self.target_cmd.copy_from_slice(&target);
        let dt = 1.0 / FPS / SUBSTEPS as f64;
        for _ in 0..SUBSTEPS {
            for i in 0..3 {
                let v = ((self.target_cmd[i] - self.q[i]) / SERVO_TAU_S)
                    .clamp(-JOINT_MAX_SPEED_RAD_S[i], JOINT_MAX_SPEED_RAD_S[i]);
                self.q[i] = (self.q[i] + v * dt).clamp(JOINT_LOW_RAD[i], JOINT_HIGH_RAD[i]);
            }
            self.check();
        }
        self.steps += 1;
        self.observe(false)
    }

    fn observe(&self, render: bool) -> Observation {
        let t = &self.task;
        Observation {
            state: self.q.iter().map(|&v| v as f32).collect(),
            env_state: [t.target[0], t.target[1], t.obstacle[0], t.obstacle[1], t.obstacle_r]
                .iter()
                .map(|&v| v as f32)
                .collect(),
            image: render.then(|| self.render()),
        }
    }

    fn success(&self) -> bool {
        self.success
    }

    fn score(&self) -> f64 {
        if self.collided {
            0.0
        } else if self.success {
            1.0
        } else {
            (1.0 - dist(self.tip(), self.task.target) / self.start_dist_m.max(1e-9)).clamp(0.0, 1.0)
        }
    }

    fn done(&self) -> bool {
        self.success || self.collided || self.steps >= MAX_STEPS
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn expert_action(&mut self) -> Vec<f64> {
        let tip = self.tip();
        self.expert.action(tip)
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
            "substeps": SUBSTEPS,
            "max_steps": MAX_STEPS,
            "link_lengths_m": LINK_LENGTHS_M,
            "joint_low_rad": JOINT_LOW_RAD,
            "joint_high_rad": JOINT_HIGH_RAD,
            "joint_max_speed_rad_s": JOINT_MAX_SPEED_RAD_S,
            "servo_tau_s": SERVO_TAU_S,
            "success_tol_m": SUCCESS_TOL_M,
            "tool_radius_m": TOOL_RADIUS_M,
            "collision": "tool tip touching the obstacle ends the episode as a failure (score 0)",
            "state": "joint angles [q0, q1, q2] (rad)",
            "env_state": "[target_x, target_y, obstacle_x, obstacle_y, obstacle_r] (m)",
            "action": "joint position targets (rad)",
        })
    }
}
