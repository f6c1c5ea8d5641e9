//! `push-t`: a PushT-like planar pushing task on rapier2d (enhanced determinism).
//!
//! Coordinates follow LeRobot's gym-pusht so its conventions carry over: a 512×512 workspace in pixels
//! (x right, y down in the image), walls at 5 and 507, a round pusher of radius 15 whose [x, y] target is
//! tracked by gym-pusht's PD law (kp 100, kv 20, per physics substep at 100 Hz, 10 Hz control; here with
//! an acceleration limit and a speed limit), a T block
//! made of a 120×30 bar and a 30×90 stem (body origin at the middle of the bar's top edge), and the goal
//! pose (256, 256, π/4). `observation.state` is the pusher position, `observation.environment_state` is
//! `[agent_x, agent_y, block_x, block_y, block_angle mod 2π]` like gym-pusht's "state" observation.
//!
//! Physics: top-down, so there is no gravity; floor friction is modelled by linear and angular damping of
//! the block ([`BLOCK_DAMPING_1_S`], heavy, so the block is nearly quasi-static like gym-pusht's). The
//! pusher is a heavy dynamic disc (not kinematic) whose velocity is set by the PD law each substep, capped
//! at [`PUSHER_MAX_SPEED_PX_S`]: it therefore cannot crush the block through a wall, and walls stop it
//! too. The pusher is smooth (zero friction with the block), which is what the expert's model assumes.
//!
//! Success: coverage ≥ [`SUCCESS_COVERAGE`], where coverage = area(block T ∩ goal T) / area(goal T),
//! computed exactly by clipping the four rectangle pairs (each T is two interior-disjoint rectangles, so
//! the pairwise convex intersections add up exactly). Score = the best coverage so far.

use std::f64::consts::PI;

use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rapier2d::prelude::*;
use serde_json::json;

use crate::env::{rng_for, sanitize_action, wrap_angle, Env, EnvSpec, Observation};
use crate::render::{RgbImage, View};

pub const FPS: f64 = 10.0;
pub const SIM_HZ: f64 = 100.0;
pub const MAX_STEPS: usize = 300;
pub const WORKSPACE_PX: f64 = 512.0;
/// Inner faces of the walls.
pub const WALL_LO_PX: f64 = 5.0;
pub const WALL_HI_PX: f64 = 507.0;
pub const PUSHER_RADIUS_PX: f64 = 15.0;
pub const PUSHER_MAX_SPEED_PX_S: f64 = 500.0;
/// Force limit of the pusher's drive (per unit mass): a pinned pusher only gains this much speed per
/// substep, which the contact solver can always take back (no crushing through the block or a wall).
pub const PUSHER_MAX_ACCEL_PX_S2: f64 = 4000.0;
pub const PD_KP: f64 = 100.0;
pub const PD_KV: f64 = 20.0;
pub const BLOCK_DAMPING_1_S: f64 = 30.0;
pub const SUCCESS_COVERAGE: f64 = 0.95;
pub const GOAL_POSE: [f64; 3] = [256.0, 256.0, PI / 4.0];
const IMAGE_PX: usize = 96;
const BLOCK_MASS: f64 = 1.0;
const PUSHER_MASS: f64 = 10.0;

/// The T in its body frame as two rectangles [x0, y0, x1, y1]: the bar, then the stem.
pub const T_RECTS: [[f64; 4]; 2] = [[-60.0, 0.0, 60.0, 30.0], [-15.0, 30.0, 15.0, 120.0]];

fn t_area() -> f64 {
    T_RECTS.iter().map(|r| (r[2] - r[0]) * (r[3] - r[1])).sum()
}

/// Centre of mass of the T in its body frame (uniform density).
pub fn t_com() -> [f64; 2] {
    let mut c = [0.0; 2];
    for r in &T_RECTS {
        let a = (r[2] - r[0]) * (r[3] - r[1]);
        c[0] += a * (r[0] + r[2]) / 2.0;
        c[1] += a * (r[1] + r[3]) / 2.0;
    }
    [c[0] / t_area(), c[1] / t_area()]
}

/// Moment of inertia of the T about its centre of mass for `mass`.
fn t_inertia(mass: f64) -> f64 {
    let c = t_com();
    let rho = mass / t_area();
    T_RECTS
        .iter()
        .map(|r| {
            let (w, h) = (r[2] - r[0], r[3] - r[1]);
            let m = rho * w * h;
            let (cx, cy) = ((r[0] + r[2]) / 2.0 - c[0], (r[1] + r[3]) / 2.0 - c[1]);
            m * (w * w + h * h) / 12.0 + m * (cx * cx + cy * cy)
        })
        .sum()
}

/// Body point → world for pose [x, y, θ].
fn to_world(pose: &[f64; 3], p: [f64; 2]) -> [f64; 2] {
    let (s, c) = pose[2].sin_cos();
    [pose[0] + c * p[0] - s * p[1], pose[1] + s * p[0] + c * p[1]]
}

fn to_body(pose: &[f64; 3], p: [f64; 2]) -> [f64; 2] {
    let (s, c) = pose[2].sin_cos();
    let (dx, dy) = (p[0] - pose[0], p[1] - pose[1]);
    [c * dx + s * dy, -s * dx + c * dy]
}

fn rot(a: f64, v: [f64; 2]) -> [f64; 2] {
    let (s, c) = a.sin_cos();
    [c * v[0] - s * v[1], s * v[0] + c * v[1]]
}

/// The two rectangles of a T at `pose`, as world-frame quads (counter-clockwise in body frame).
pub fn t_polygons(pose: &[f64; 3]) -> [[[f64; 2]; 4]; 2] {
    T_RECTS.map(|r| [[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]]].map(|p| to_world(pose, p)))
}

fn poly_area(p: &[[f64; 2]]) -> f64 {
    let n = p.len();
    let mut a = 0.0;
    for i in 0..n {
        let (u, v) = (p[i], p[(i + 1) % n]);
        a += u[0] * v[1] - v[0] * u[1];
    }
    a / 2.0
}

/// Sutherland–Hodgman: `subject` clipped by the convex `clip` (same orientation as positive area).
fn clip_convex(subject: &[[f64; 2]], clip: &[[f64; 2]; 4]) -> Vec<[f64; 2]> {
    let orient = poly_area(clip).signum();
    let mut out = subject.to_vec();
    for i in 0..4 {
        let (a, b) = (clip[i], clip[(i + 1) % 4]);
        let side = |p: [f64; 2]| orient * ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]));
        let input = std::mem::take(&mut out);
        if input.is_empty() {
            break;
        }
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push([p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t]);
            }
        }
    }
    out
}

/// Fraction of the goal T covered by the block T (exact polygon intersection).
pub fn coverage(block: &[f64; 3], goal: &[f64; 3]) -> f64 {
    let (b, g) = (t_polygons(block), t_polygons(goal));
    let mut inter = 0.0;
    for pb in &b {
        for pg in &g {
            inter += poly_area(&clip_convex(pb, pg)).abs();
        }
    }
    inter / t_area()
}

/// Signed distance from world point `p` to the T at `pose` (negative inside).
pub fn t_signed_distance(pose: &[f64; 3], p: [f64; 2]) -> f64 {
    let q = to_body(pose, p);
    T_RECTS
        .iter()
        .map(|r| {
            let (cx, cy) = ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
            let (hx, hy) = ((r[2] - r[0]) / 2.0, (r[3] - r[1]) / 2.0);
            let (dx, dy) = ((q[0] - cx).abs() - hx, (q[1] - cy).abs() - hy);
            let outside = dx.max(0.0).hypot(dy.max(0.0));
            outside + dx.max(dy).min(0.0)
        })
        .fold(f64::INFINITY, f64::min)
}

/// Keypoints used by the expert's cost: the T's outer corners and the stem end.
const KEYPOINTS: [[f64; 2]; 6] = [
    [-60.0, 0.0],
    [60.0, 0.0],
    [-60.0, 30.0],
    [60.0, 30.0],
    [-15.0, 120.0],
    [15.0, 120.0],
];

fn keypoint_error(pose: &[f64; 3], goal: &[f64; 3]) -> f64 {
    KEYPOINTS
        .iter()
        .map(|k| {
            let (a, b) = (to_world(pose, *k), to_world(goal, *k));
            (a[0] - b[0]).hypot(a[1] - b[1])
        })
        .sum::<f64>()
        / KEYPOINTS.len() as f64
}

/// Faces of the T: (start, end, outward normal) in the body frame.
const FACES: [([f64; 2], [f64; 2], [f64; 2]); 8] = [
    ([-60.0, 0.0], [60.0, 0.0], [0.0, -1.0]),
    ([-60.0, 0.0], [-60.0, 30.0], [-1.0, 0.0]),
    ([60.0, 0.0], [60.0, 30.0], [1.0, 0.0]),
    ([-60.0, 30.0], [-15.0, 30.0], [0.0, 1.0]),
    ([15.0, 30.0], [60.0, 30.0], [0.0, 1.0]),
    ([-15.0, 30.0], [-15.0, 120.0], [-1.0, 0.0]),
    ([15.0, 30.0], [15.0, 120.0], [1.0, 0.0]),
    ([-15.0, 120.0], [15.0, 120.0], [0.0, 1.0]),
];

/// A push primitive: start behind `face` at fraction `t`, move along the inward normal turned by `angle`.
#[derive(Debug, Clone, Copy)]
struct Push {
    face: usize,
    t: f64,
    angle: f64,
    length_px: f64,
}

/// Gap between pusher and face before a push starts.
const PRE_GAP_PX: f64 = 6.0;

impl Push {
    /// Contact point and outward normal in the world for block `pose`.
    fn contact(&self, pose: &[f64; 3]) -> ([f64; 2], [f64; 2]) {
        let (a, b, n) = FACES[self.face];
        let p = [a[0] + (b[0] - a[0]) * self.t, a[1] + (b[1] - a[1]) * self.t];
        (to_world(pose, p), rot(pose[2], n))
    }

    fn pre_point(&self, pose: &[f64; 3]) -> [f64; 2] {
        let (c, n) = self.contact(pose);
        let d = PUSHER_RADIUS_PX + PRE_GAP_PX;
        [c[0] + n[0] * d, c[1] + n[1] * d]
    }

    fn direction(&self, pose: &[f64; 3]) -> [f64; 2] {
        let (_, n) = self.contact(pose);
        rot(self.angle, [-n[0], -n[1]])
    }
}

/// Quasi-static frictionless model of a push: the pusher slides along the contacted face; each small
/// penetration is removed by a normal impulse applied to the block's mass matrix (the same direction as
/// the viscous floor's response when linear and angular damping are equal). Returns the block pose after
/// each `checkpoints` length (pose stays put once contact is lost).
fn simulate_push(pose: &[f64; 3], push: &Push, checkpoints: &[f64], out: &mut Vec<[f64; 3]>) {
    let com_b = t_com();
    let inv_m = 1.0 / BLOCK_MASS;
    let inv_i = 1.0 / t_inertia(BLOCK_MASS);
    let mut pose = *pose;
    let mut p = push.pre_point(&pose);
    let d = push.direction(&pose);
    let (fa, fb, fn_b) = FACES[push.face];
    let ds = 0.5;
    let mut s = 0.0;
    let mut lost = false;
    out.clear();
    for &cp in checkpoints {
        let target = cp + PRE_GAP_PX;
        while s < target && !lost {
            p = [p[0] + d[0] * ds, p[1] + d[1] * ds];
            s += ds;
            // Pusher centre in the body frame against the face line.
            let q = to_body(&pose, p);
            let along = if fn_b[0] != 0.0 { q[1] } else { q[0] };
            let (lo, hi) = if fn_b[0] != 0.0 {
                (fa[1].min(fb[1]), fa[1].max(fb[1]))
            } else {
                (fa[0].min(fb[0]), fa[0].max(fb[0]))
            };
            let dist = (q[0] - fa[0]) * fn_b[0] + (q[1] - fa[1]) * fn_b[1];
            if along < lo - 2.0 || along > hi + 2.0 || dist > PUSHER_RADIUS_PX + PRE_GAP_PX + 1.0 {
                lost = true;
                break;
            }
            let pen = PUSHER_RADIUS_PX - dist;
            if pen <= 0.0 {
                continue;
            }
            let along = along.clamp(lo, hi);
            let cb = if fn_b[0] != 0.0 { [fa[0], along] } else { [along, fa[1]] };
            let rc = rot(pose[2], [cb[0] - com_b[0], cb[1] - com_b[1]]);
            let n = rot(pose[2], fn_b);
            let f_dir = [-n[0], -n[1]];
            let cross = rc[0] * f_dir[1] - rc[1] * f_dir[0];
            let k = inv_m + cross * cross * inv_i;
            let f = pen / k;
            let dtheta = cross * f * inv_i;
            // Rotate about the COM, then translate the COM.
            let com_w = to_world(&pose, com_b);
            let new_com = [com_w[0] + f_dir[0] * f * inv_m, com_w[1] + f_dir[1] * f * inv_m];
            let th = pose[2] + dtheta;
            let off = rot(th, com_b);
            pose = [new_com[0] - off[0], new_com[1] - off[1], th];
        }
        out.push(pose);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Plan,
    /// Following the approach waypoints, then the push.
    Execute,
    /// Push path done; waiting for the pusher to settle.
    Settle,
}

/// Scripted expert: greedy one-push lookahead on the quasi-static model. It scores every push primitive
/// (8 faces × contact points × push angles × lengths) by the keypoint error it leaves plus a travel
/// penalty, samples among the near-best (multimodal demos), approaches round the block and pushes, then
/// replans. Noise shrinks with the error so the final adjustments stay precise.
#[derive(Debug, Clone)]
struct Expert {
    rng: StdRng,
    phase: Phase,
    /// Remaining target points to emit, one per control step.
    queue: std::collections::VecDeque<[f64; 2]>,
    last_target: [f64; 2],
    approach_speed_px_s: f64,
    push_speed_px_s: f64,
    settle_steps: usize,
}

const LENGTHS_PX: [f64; 8] = [1.5, 3.0, 6.0, 10.0, 16.0, 25.0, 40.0, 60.0];
const TS: [f64; 5] = [0.05, 0.27, 0.5, 0.73, 0.95];
const ANGLES_DEG: [f64; 3] = [-20.0, 0.0, 20.0];

impl Expert {
    fn new(seed: u64, agent: [f64; 2]) -> Self {
        let mut rng = rng_for(seed, 2);
        let approach_speed_px_s = rng.random_range(220.0..320.0);
        let push_speed_px_s = rng.random_range(70.0..110.0);
        Self {
            rng,
            phase: Phase::Plan,
            queue: Default::default(),
            last_target: agent,
            approach_speed_px_s,
            push_speed_px_s,
            settle_steps: 0,
        }
    }

    fn plan(&mut self, agent: [f64; 2], block: &[f64; 3]) {
        let goal = GOAL_POSE;
        let err0 = keypoint_error(block, &goal);
        let mut cands: Vec<(f64, Push)> = Vec::new();
        let mut poses = Vec::new();
        for face in 0..FACES.len() {
            for &t in &TS {
                for &ang in &ANGLES_DEG {
                    let push = Push {
                        face,
                        t,
                        angle: ang.to_radians(),
                        length_px: 0.0,
                    };
                    let pre = push.pre_point(block);
                    let m = PUSHER_RADIUS_PX + WALL_LO_PX + 2.0;
                    if pre[0] < m || pre[1] < m || pre[0] > WORKSPACE_PX - m || pre[1] > WORKSPACE_PX - m {
                        continue;
                    }
                    let travel = (pre[0] - agent[0]).hypot(pre[1] - agent[1]);
                    simulate_push(block, &push, &LENGTHS_PX, &mut poses);
                    for (i, pose) in poses.iter().enumerate() {
                        let e = keypoint_error(pose, &goal);
                        let cost = e + 0.02 * travel.min(200.0) * (err0 / 40.0).min(1.0) + 0.03 * LENGTHS_PX[i];
                        cands.push((
                            cost,
                            Push {
                                length_px: LENGTHS_PX[i],
                                ..push
                            },
                        ));
                    }
                }
            }
        }
        cands.sort_by(|a, b| a.0.total_cmp(&b.0));
        if cands.is_empty() {
            return;
        }
        // Sample among pushes within 5 % of the best (a different face can be as good: multimodal demos).
        let best = cands[0].0;
        let n_ok = cands
            .iter()
            .take(12)
            .filter(|c| c.0 <= best * 1.05 + 0.05)
            .count()
            .max(1);
        let push = cands[self.rng.random_range(0..n_ok)].1;
        self.enqueue_push(agent, block, &push, err0);
        self.phase = Phase::Execute;
    }

    fn enqueue_push(&mut self, agent: [f64; 2], block: &[f64; 3], push: &Push, err: f64) {
        let pre = push.pre_point(block);
        let (_, n) = push.contact(block);
        let com = to_world(block, t_com());
        let safe_r = 82.0 + PUSHER_RADIUS_PX + 10.0;
        // Entry point: out along the face normal onto the safe circle (the normal ray never crosses a T).
        let rel = [pre[0] - com[0], pre[1] - com[1]];
        let b = rel[0] * n[0] + rel[1] * n[1];
        let c = rel[0] * rel[0] + rel[1] * rel[1] - safe_r * safe_r;
        let s = (-b + (b * b - c).max(0.0).sqrt()).max(0.0);
        let entry = [pre[0] + n[0] * s, pre[1] + n[1] * s];
        let mut path = vec![agent];
        if segment_clear(block, agent, pre) {
            path.push(pre);
        } else {
            if !segment_clear(block, agent, entry) {
                // Out to the safe circle, round it the short way, then in.
                let a0 = (agent[1] - com[1]).atan2(agent[0] - com[0]);
                let a1 = (entry[1] - com[1]).atan2(entry[0] - com[0]);
                let r0 = (agent[0] - com[0]).hypot(agent[1] - com[1]).max(safe_r);
                path.push([com[0] + r0 * a0.cos(), com[1] + r0 * a0.sin()]);
                let da = wrap_angle(a1 - a0);
                let k = (da.abs() / 0.3).ceil() as usize;
                for i in 1..=k {
                    let a = a0 + da * i as f64 / k as f64;
                    let r = r0 + (safe_r - r0) * i as f64 / k as f64;
                    path.push([com[0] + r * a.cos(), com[1] + r * a.sin()]);
                }
            }
            path.push(entry);
            path.push(pre);
        }
        let path: Vec<[f64; 2]> = path.into_iter().map(clamp_ws).collect();
        self.queue.clear();
        let noise = (err / 20.0).clamp(0.05, 1.0);
        self.emit_path(&path, self.approach_speed_px_s, 2.0 * noise);
        let d = push.direction(block);
        let len = push.length_px + PRE_GAP_PX;
        let end = [pre[0] + d[0] * len, pre[1] + d[1] * len];
        let speed = self.push_speed_px_s * (err / 30.0).clamp(0.25, 1.0);
        self.emit_path(&[pre, end], speed, 0.0);
    }

    /// Queues one target per control step along `path` at `speed`, with Gaussian noise `sigma_px`.
    fn emit_path(&mut self, path: &[[f64; 2]], speed: f64, sigma_px: f64) {
        let step = speed / FPS;
        for w in path.windows(2) {
            let l = (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]);
            let k = (l / step).ceil().max(1.0) as usize;
            for i in 1..=k {
                let t = i as f64 / k as f64;
                let mut p = [w[0][0] + (w[1][0] - w[0][0]) * t, w[0][1] + (w[1][1] - w[0][1]) * t];
                if i < k && sigma_px > 0.0 {
                    let (nx, ny): (f64, f64) = (
                        StandardNormal.sample(&mut self.rng),
                        StandardNormal.sample(&mut self.rng),
                    );
                    p[0] += sigma_px * nx;
                    p[1] += sigma_px * ny;
                }
                self.queue.push_back(p);
            }
        }
    }

    fn action(&mut self, agent: [f64; 2], agent_vel: [f64; 2], block: &[f64; 3]) -> Vec<f64> {
        loop {
            match self.phase {
                Phase::Plan => {
                    self.plan(agent, block);
                    if self.phase == Phase::Plan {
                        return self.last_target.to_vec();
                    }
                }
                Phase::Execute => {
                    if let Some(p) = self.queue.pop_front() {
                        self.last_target = p;
                        return p.to_vec();
                    }
                    self.phase = Phase::Settle;
                    self.settle_steps = 0;
                }
                Phase::Settle => {
                    let lag = (agent[0] - self.last_target[0]).hypot(agent[1] - self.last_target[1]);
                    let speed = agent_vel[0].hypot(agent_vel[1]);
                    self.settle_steps += 1;
                    if (lag < 1.0 && speed < 5.0) || self.settle_steps > 8 {
                        self.phase = Phase::Plan;
                        continue;
                    }
                    return self.last_target.to_vec();
                }
            }
        }
    }
}

fn clamp_ws(p: [f64; 2]) -> [f64; 2] {
    let m = WALL_LO_PX + PUSHER_RADIUS_PX + 1.0;
    [p[0].clamp(m, WORKSPACE_PX - m), p[1].clamp(m, WORKSPACE_PX - m)]
}

/// Whether the pusher can move straight from `a` to `b` without touching the block (with margin).
fn segment_clear(block: &[f64; 3], a: [f64; 2], b: [f64; 2]) -> bool {
    let l = (b[0] - a[0]).hypot(b[1] - a[1]);
    let k = (l / 4.0).ceil().max(1.0) as usize;
    (0..=k).all(|i| {
        let t = i as f64 / k as f64;
        t_signed_distance(block, [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]) > PUSHER_RADIUS_PX + 4.0
    })
}

/// The `push-t` environment (see the module docs).
pub struct PushT {
    spec: EnvSpec,
    seed: u64,
    world: PhysicsWorld,
    pusher: RigidBodyHandle,
    block: RigidBodyHandle,
    target: [f64; 2],
    steps: usize,
    best_coverage: f64,
    success: bool,
    faults: usize,
    expert: Expert,
}

impl Default for PushT {
    fn default() -> Self {
        Self::new()
    }
}

impl PushT {
    pub fn new() -> Self {
        let spec = EnvSpec {
            name: "push-t",
            fps: FPS,
            state_dim: 2,
            env_state_dim: 5,
            env_state_widths: vec![5],
            action_dim: 2,
            image_hw: (IMAGE_PX, IMAGE_PX),
            max_steps: MAX_STEPS,
            action_low: vec![0.0, 0.0],
            action_high: vec![WORKSPACE_PX, WORKSPACE_PX],
            max_speed: vec![PUSHER_MAX_SPEED_PX_S, PUSHER_MAX_SPEED_PX_S],
        };
        let (world, pusher, block) = build_world([256.0, 400.0], [256.0, 300.0, 0.0]);
        let mut env = Self {
            spec,
            seed: 0,
            world,
            pusher,
            block,
            target: [256.0, 400.0],
            steps: 0,
            best_coverage: 0.0,
            success: false,
            faults: 0,
            expert: Expert::new(0, [256.0, 400.0]),
        };
        env.reset(0);
        env
    }

    /// Builds the episode from an explicit initial state (used by tests and `reset`).
    pub fn reset_to(&mut self, seed: u64, agent: [f64; 2], block: [f64; 3]) -> Observation {
        let (world, pusher, blk) = build_world(agent, block);
        self.world = world;
        self.pusher = pusher;
        self.block = blk;
        self.seed = seed;
        self.target = agent;
        self.steps = 0;
        self.faults = 0;
        self.best_coverage = coverage(&block, &GOAL_POSE);
        self.success = self.best_coverage >= SUCCESS_COVERAGE;
        self.expert = Expert::new(seed, agent);
        self.observe(true)
    }

    /// Pusher centre (px).
    pub fn agent(&self) -> [f64; 2] {
        let t = self.world.bodies[self.pusher].translation();
        [t.x as f64, t.y as f64]
    }

    pub fn agent_velocity(&self) -> [f64; 2] {
        let v = self.world.bodies[self.pusher].linvel();
        [v.x as f64, v.y as f64]
    }

    /// Block pose [x, y, θ] of the body origin (middle of the bar's top edge), θ unwrapped to (-π, π].
    pub fn block_pose(&self) -> [f64; 3] {
        let b = &self.world.bodies[self.block];
        let t = b.translation();
        [t.x as f64, t.y as f64, b.rotation().angle() as f64]
    }

    /// Coverage of the goal right now.
    pub fn coverage(&self) -> f64 {
        coverage(&self.block_pose(), &GOAL_POSE)
    }

    fn render(&self) -> RgbImage {
        let view = View::square(0.0, WORKSPACE_PX, IMAGE_PX, true);
        let mut img = RgbImage::new(IMAGE_PX as u32, IMAGE_PX as u32, [255, 255, 255]);
        // Walls.
        for (a, b) in [
            ([WALL_LO_PX, WALL_LO_PX], [WALL_HI_PX, WALL_LO_PX]),
            ([WALL_HI_PX, WALL_LO_PX], [WALL_HI_PX, WALL_HI_PX]),
            ([WALL_HI_PX, WALL_HI_PX], [WALL_LO_PX, WALL_HI_PX]),
            ([WALL_LO_PX, WALL_HI_PX], [WALL_LO_PX, WALL_LO_PX]),
        ] {
            img.thick_line(view.px(a), view.px(b), 1.0, [200, 200, 200]);
        }
        for q in t_polygons(&GOAL_POSE) {
            img.fill_convex(&q.map(|p| view.px(p)), [144, 238, 144]);
        }
        for q in t_polygons(&self.block_pose()) {
            img.fill_convex(&q.map(|p| view.px(p)), [119, 136, 153]);
        }
        let a = view.px(self.agent());
        img.fill_circle(a[0], a[1], view.len(PUSHER_RADIUS_PX), [65, 105, 225]);
        img
    }

    fn substep(&mut self) {
        let dt = 1.0 / SIM_HZ;
        let pos = self.agent();
        let vel = self.agent_velocity();
        let mut acc = [
            PD_KP * (self.target[0] - pos[0]) - PD_KV * vel[0],
            PD_KP * (self.target[1] - pos[1]) - PD_KV * vel[1],
        ];
        let a = acc[0].hypot(acc[1]);
        if a > PUSHER_MAX_ACCEL_PX_S2 {
            acc = [acc[0] * PUSHER_MAX_ACCEL_PX_S2 / a, acc[1] * PUSHER_MAX_ACCEL_PX_S2 / a];
        }
        let mut v = [vel[0] + acc[0] * dt, vel[1] + acc[1] * dt];
        let speed = v[0].hypot(v[1]);
        if speed > PUSHER_MAX_SPEED_PX_S {
            v = [
                v[0] * PUSHER_MAX_SPEED_PX_S / speed,
                v[1] * PUSHER_MAX_SPEED_PX_S / speed,
            ];
        }
        self.world.bodies[self.pusher].set_linvel(Vector::new(v[0] as f32, v[1] as f32), true);
        self.world.step();
    }
}

fn build_world(agent: [f64; 2], block: [f64; 3]) -> (PhysicsWorld, RigidBodyHandle, RigidBodyHandle) {
    let mut world = PhysicsWorld::new();
    world.gravity = Vector::new(0.0, 0.0);
    world.integration_parameters.dt = (1.0 / SIM_HZ) as f32;
    world.integration_parameters.length_unit = 10.0;
    world.integration_parameters.num_solver_iterations = 8;
    // Resolve residual penetration at up to 200 px/s (the default, 3 length units/s, is too gentle).
    world.integration_parameters.normalized_max_corrective_velocity = 20.0;
    // Speculative contacts from 8 px away: a full-speed pusher (5 px per substep) is caught before impact.
    world.integration_parameters.normalized_prediction_distance = 0.8;
    // Walls: thick fixed boxes outside the inner faces.
    let (lo, hi, th) = (WALL_LO_PX as f32, WALL_HI_PX as f32, 50.0f32);
    let mid = (lo + hi) / 2.0;
    let half = (hi - lo) / 2.0 + th * 2.0;
    for (x, y, hx, hy) in [
        (mid, lo - th, half, th),
        (mid, hi + th, half, th),
        (lo - th, mid, th, half),
        (hi + th, mid, th, half),
    ] {
        world.insert_collider(
            ColliderBuilder::cuboid(hx, hy)
                .translation(Vector::new(x, y))
                .friction(0.5),
            None,
        );
    }
    let block_body = world.insert_body(
        RigidBodyBuilder::dynamic()
            .translation(Vector::new(block[0] as f32, block[1] as f32))
            .rotation(block[2] as f32)
            .linear_damping(BLOCK_DAMPING_1_S as f32)
            .angular_damping(BLOCK_DAMPING_1_S as f32)
            .can_sleep(false)
            .ccd_enabled(true),
    );
    let density = (BLOCK_MASS / t_area()) as f32;
    for r in &T_RECTS {
        let (hx, hy) = (((r[2] - r[0]) / 2.0) as f32, ((r[3] - r[1]) / 2.0) as f32);
        let (cx, cy) = (((r[0] + r[2]) / 2.0) as f32, ((r[1] + r[3]) / 2.0) as f32);
        world.insert_collider(
            ColliderBuilder::cuboid(hx, hy)
                .translation(Vector::new(cx, cy))
                .density(density)
                .friction(0.5),
            Some(block_body),
        );
    }
    let pusher = world.insert_body(
        RigidBodyBuilder::dynamic()
            .translation(Vector::new(agent[0] as f32, agent[1] as f32))
            .lock_rotations()
            .can_sleep(false)
            .ccd_enabled(true),
    );
    let r = PUSHER_RADIUS_PX;
    let pusher_density = (PUSHER_MASS / (PI * r * r)) as f32;
    world.insert_collider(
        ColliderBuilder::ball(r as f32)
            .density(pusher_density)
            .friction(0.0)
            .friction_combine_rule(CoefficientCombineRule::Min)
            .restitution(0.0),
        Some(pusher),
    );
    (world, pusher, block_body)
}

fn sample_initial(rng: &mut StdRng) -> ([f64; 2], [f64; 3]) {
    loop {
        let agent = [rng.random_range(50.0..450.0), rng.random_range(50.0..450.0)];
        let block = [
            rng.random_range(100.0..400.0),
            rng.random_range(100.0..400.0),
            rng.random_range(-PI..PI),
        ];
        if t_signed_distance(&block, agent) > PUSHER_RADIUS_PX + 2.0 && coverage(&block, &GOAL_POSE) < SUCCESS_COVERAGE
        {
            // The block must start clear of the walls.
            let inside = t_polygons(&block).iter().flatten().all(|p| {
                p[0] > WALL_LO_PX + 1.0 && p[0] < WALL_HI_PX - 1.0 && p[1] > WALL_LO_PX + 1.0 && p[1] < WALL_HI_PX - 1.0
            });
            if inside {
                return (agent, block);
            }
        }
    }
}

impl Env for PushT {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: u64) -> Observation {
        let (agent, block) = sample_initial(&mut rng_for(seed, 1));
        self.reset_to(seed, agent, block)
    }

    fn step(&mut self, action: &[f64]) -> Observation {
        self.step_no_render(action);
        self.observe(true)
    }

    fn step_no_render(&mut self, action: &[f64]) -> Observation {
        let (target, fault) = sanitize_action(&self.spec, action, &self.target);
        self.faults += fault as usize;
        self.target = [target[0], target[1]];
        for _ in 0..(SIM_HZ / FPS).round() as usize {
            self.substep();
        }
        self.steps += 1;
        let c = self.coverage();
        self.best_coverage = self.best_coverage.max(c);
        if c >= SUCCESS_COVERAGE {
            self.success = true;
        }
        self.observe(false)
    }

    fn position(&self) -> Vec<f64> {
        self.agent().to_vec()
    }

    fn observe(&self, render: bool) -> Observation {
        let a = self.agent();
        let b = self.block_pose();
        Observation {
            state: vec![a[0] as f32, a[1] as f32],
            env_state: vec![
                a[0] as f32,
                a[1] as f32,
                b[0] as f32,
                b[1] as f32,
                b[2].rem_euclid(2.0 * PI) as f32,
            ],
            image: render.then(|| self.render()),
        }
    }

    fn success(&self) -> bool {
        self.success
    }

    fn score(&self) -> f64 {
        self.best_coverage.clamp(0.0, 1.0)
    }

    fn done(&self) -> bool {
        self.success || self.steps >= MAX_STEPS
    }

    fn steps(&self) -> usize {
        self.steps
    }

    fn expert_action(&mut self) -> Vec<f64> {
        let (a, v, b) = (self.agent(), self.agent_velocity(), self.block_pose());
        self.expert.action(a, v, &b)
    }

    /// It plans a push, then emits the planned path point by point, re-planning only between pushes.
    fn expert_is_feedback(&self) -> bool {
        false
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
            "workspace_px": WORKSPACE_PX,
            "walls_px": [WALL_LO_PX, WALL_HI_PX],
            "pusher_radius_px": PUSHER_RADIUS_PX,
            "pusher_max_speed_px_s": PUSHER_MAX_SPEED_PX_S,
            "pd": {"kp": PD_KP, "kv": PD_KV, "max_accel_px_s2": PUSHER_MAX_ACCEL_PX_S2},
            "block_damping_1_s": BLOCK_DAMPING_1_S,
            "t_rects_px": T_RECTS,
            "goal_pose": GOAL_POSE,
            "success_coverage": SUCCESS_COVERAGE,
            "coverage": "exact area(block T ∩ goal T) / area(goal T)",
            "physics": "rapier2d 0.36 enhanced-determinism, f32",
            "state": "[agent_x, agent_y] (px)",
            "env_state": "[agent_x, agent_y, block_x, block_y, block_angle mod 2π]",
            "action": "pusher target [x, y] (px)",
        })
    }
}
