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
//! Start, target and both detours lie in front of the robot (x ≥ [`FRONT_MIN_X_M`]).
//!
//! Collision (tool disc touching the obstacle) is a failure: it latches, the score becomes 0, success can
//! no longer happen, and the episode is done.

use std::f64::consts::PI;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;

use crate::env::{rng_for, sanitize_action, Env, EnvSpec, Observation};
use crate::render::{RgbImage, View};

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
/// Tasks live in front of the robot (x ≥ this), so reaching never needs the base to wrap round ±π.
pub const FRONT_MIN_X_M: f64 = 0.05;

/// Forward kinematics: joint positions (base, elbow, tool tip) for joint angles `q`.
pub fn forward_kinematics(q: &[f64; 3]) -> [[f64; 2]; 4] {
    let mut pts = [[0.0; 2]; 4];
    let mut a = 0.0;
    for i in 0..3 {
        a += q[i];
        pts[i + 1] = [
            pts[i][0] + LINK_LENGTHS_M[i] * a.cos(),
            pts[i][1] + LINK_LENGTHS_M[i] * a.sin(),
        ];
    }
    pts
}

/// All IK solutions inside the joint limits for the tool tip at `p`: tool angle on a 10° grid (through
/// `phi_anchor`, the start's tool angle, so the tool may keep its orientation exactly) × both
/// elbow branches (analytic two-link IK of the wrist).
fn ik_all(p: [f64; 2], phi_anchor: f64) -> Vec<[f64; 3]> {
    let [l1, l2, l3] = LINK_LENGTHS_M;
    let mut out = Vec::new();
    for k in 0..36 {
        let phi = phi_anchor + k as f64 * 10f64.to_radians();
        let w = [p[0] - l3 * phi.cos(), p[1] - l3 * phi.sin()];
        let c2 = (w[0] * w[0] + w[1] * w[1] - l1 * l1 - l2 * l2) / (2.0 * l1 * l2);
        if !(-1.0..=1.0).contains(&c2) {
            continue;
        }
        for elbow in [1.0, -1.0] {
            let q1 = elbow * c2.acos();
            let q0 = crate::env::wrap_angle(w[1].atan2(w[0]) - (l2 * q1.sin()).atan2(l1 + l2 * q1.cos()));
            let q2 = crate::env::wrap_angle(phi - q0 - q1);
            let q = [q0, q1, q2];
            if (0..3).all(|i| q[i] >= JOINT_LOW_RAD[i] && q[i] <= JOINT_HIGH_RAD[i]) {
                out.push(q);
            }
        }
    }
    out
}

/// Spacing of the planned path's points.
const PLAN_STEP_M: f64 = 0.02;

/// Plans joint positions along the Cartesian polyline `path` (starting at the tip of `q_start`) by dynamic
/// programming over the IK solutions of each point: least total joint motion, no branch jumps (each joint
/// moves at most 0.5 rad between neighbouring points), a penalty near the limits. `None` if infeasible.
fn plan_joint_path(q_start: [f64; 3], path: &[[f64; 2]]) -> Option<Vec<[f64; 3]>> {
    let mut pts = Vec::new();
    for w in path.windows(2) {
        let k = (dist(w[0], w[1]) / PLAN_STEP_M).ceil().max(1.0) as usize;
        for i in 1..=k {
            let t = i as f64 / k as f64;
            pts.push([w[0][0] + (w[1][0] - w[0][0]) * t, w[0][1] + (w[1][1] - w[0][1]) * t]);
        }
    }
    let limit_pen = |q: &[f64; 3]| -> f64 {
        (0..3)
            .map(|i| (0.4 - (q[i] - JOINT_LOW_RAD[i]).min(JOINT_HIGH_RAD[i] - q[i])).max(0.0))
            .sum::<f64>()
    };
    let mut layers: Vec<Vec<[f64; 3]>> = vec![vec![q_start]];
    let mut costs: Vec<Vec<f64>> = vec![vec![0.0]];
    let mut back: Vec<Vec<usize>> = vec![vec![0]];
    for p in &pts {
        let cands = ik_all(*p, q_start.iter().sum());
        let (prev, prev_cost) = (layers.last().unwrap(), costs.last().unwrap());
        let mut cost = vec![f64::INFINITY; cands.len()];
        let mut from = vec![0; cands.len()];
        for (j, q) in cands.iter().enumerate() {
            for (k, r) in prev.iter().enumerate() {
                if !prev_cost[k].is_finite() || (0..3).any(|i| (q[i] - r[i]).abs() > 0.5) {
                    continue;
                }
                let c = prev_cost[k] + (0..3).map(|i| (q[i] - r[i]).powi(2)).sum::<f64>() + 0.02 * limit_pen(q);
                if c < cost[j] {
                    cost[j] = c;
                    from[j] = k;
                }
            }
        }
        if !cost.iter().any(|c| c.is_finite()) {
            return None;
        }
        layers.push(cands);
        costs.push(cost);
        back.push(from);
    }
    let last = costs.last().unwrap();
    let mut j = (0..last.len()).min_by(|&a, &b| last[a].total_cmp(&last[b]))?;
    let mut out = vec![[0.0; 3]; layers.len()];
    for i in (0..layers.len()).rev() {
        out[i] = layers[i][j];
        j = back[i][j];
    }
    Some(out)
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
        let q_start: [f64; 3] = [
            rng.random_range(-2.5..2.5),
            rng.random_range(-2.0..2.0),
            rng.random_range(-2.0..2.0),
        ];
        // No near-straight elbow at the start (a singular start makes the first motions jerky).
        if q_start[1].abs() < 0.3 {
            continue;
        }
        let start = forward_kinematics(&q_start)[3];
        let rs = start[0].hypot(start[1]);
        if !(0.35..=0.85).contains(&rs) || start[0] < FRONT_MIN_X_M {
            continue;
        }
        let (r, a) = (rng.random_range(0.35..0.85), rng.random_range(-PI / 2.0..PI / 2.0));
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
                (0.12..=0.86).contains(&r) && p[0] >= FRONT_MIN_X_M
            })
        });
        if ok {
            return Task {
                q_start,
                target,
                obstacle,
                obstacle_r,
            };
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

/// Scripted expert: picks a side at random, plans joint positions along start → detour → target
/// ([`plan_joint_path`]), and moves a carrot along that plan at a per-episode speed, waiting while the tip
/// lags behind; small joint noise on the way, none at the end.
#[derive(Debug, Clone)]
struct Expert {
    rng: rand::rngs::StdRng,
    /// Planned joint positions, [`PLAN_STEP_M`] apart along the tool path.
    plan: Vec<[f64; 3]>,
    /// Position along `plan` in points.
    s: f64,
    speed_m_s: f64,
    side: f64,
}

impl Expert {
    fn new(seed: u64, task: &Task) -> Self {
        let mut rng = rng_for(seed, 2);
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let clearance = rng.random_range(0.08..0.14);
        let speed_m_s = rng.random_range(0.22..0.32);
        let start = forward_kinematics(&task.q_start)[3];
        let mut plan = None;
        let mut chosen = side;
        // Fall back to the other side (then to holding still) if a side is infeasible.
        for s in [side, -side] {
            let via = detour(start, task.target, task.obstacle, task.obstacle_r, s, clearance);
            plan = plan_joint_path(task.q_start, &[start, via[0], via[1], task.target]);
            if plan.is_some() {
                chosen = s;
                break;
            }
        }
        Self {
            rng,
            plan: plan.unwrap_or_else(|| vec![task.q_start]),
            s: 0.0,
            speed_m_s,
            side: chosen,
        }
    }

    fn q_at(&self, s: f64) -> [f64; 3] {
        let n = self.plan.len();
        let i = (s.floor() as usize).min(n - 1);
        let j = (i + 1).min(n - 1);
        let t = s - i as f64;
        let (a, b) = (self.plan[i], self.plan[j]);
        [
            a[0] + (b[0] - a[0]) * t,
            a[1] + (b[1] - a[1]) * t,
            a[2] + (b[2] - a[2]) * t,
        ]
    }

    fn action(&mut self, tip: [f64; 2]) -> Vec<f64> {
        let end = (self.plan.len() - 1) as f64;
        // Do not run away from a lagging arm: wait while the tip is far behind the carrot.
        if dist(forward_kinematics(&self.q_at(self.s))[3], tip) < 0.08 {
            self.s = (self.s + self.speed_m_s / FPS / PLAN_STEP_M).min(end);
        }
        let mut q = self.q_at(self.s);
        if self.s < end {
            let noise = Normal::new(0.0, 0.01).unwrap();
            for v in q.iter_mut() {
                *v += noise.sample(&mut self.rng);
            }
        }
        q.to_vec()
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
            env_state_dim: 12,
            env_state_widths: vec![5, 12],
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
            task: Task {
                q_start: [0.0; 3],
                target: [0.5, 0.0],
                obstacle: [0.0, 0.5],
                obstacle_r: 0.05,
            },
            q: [0.0; 3],
            target_cmd: [0.0; 3],
            steps: 0,
            success: false,
            collided: false,
            faults: 0,
            start_dist_m: 1.0,
            expert: Expert {
                rng: rng_for(0, 2),
                plan: vec![[0.0; 3]],
                s: 0.0,
                speed_m_s: 0.0,
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

    fn position(&self) -> Vec<f64> {
        self.q.to_vec()
    }

    fn observe(&self, render: bool) -> Observation {
        let t = &self.task;
        Observation {
            state: self.q.iter().map(|&v| v as f32).collect(),
            env_state: {
                // Layout 2 appends the task seen from the tool tip.
                let tip = self.tip();
                let clearance = dist(tip, t.obstacle) - t.obstacle_r - TOOL_RADIUS_M;
                [
                    t.target[0],
                    t.target[1],
                    t.obstacle[0],
                    t.obstacle[1],
                    t.obstacle_r,
                    tip[0],
                    tip[1],
                    t.target[0] - tip[0],
                    t.target[1] - tip[1],
                    t.obstacle[0] - tip[0],
                    t.obstacle[1] - tip[1],
                    clearance,
                ]
                .iter()
                .map(|&v| v as f32)
                .collect()
            },
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
            "env_state": "[target_x, target_y, obstacle_x, obstacle_y, obstacle_r, tool_x, tool_y, target-tool xy, obstacle-tool xy, tool clearance to the obstacle] (m); policies trained on the first 5 get those",
            "action": "joint position targets (rad)",
        })
    }
}
