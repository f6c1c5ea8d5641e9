//! Controller-side half of embodiment-aware diffusion guidance (UMI-on-Air EADP) for drones.
//!
//! EADP steers a diffusion sampler towards action chunks the robot's controller can actually track: between
//! denoising steps the sampler asks the controller for the tracking cost `J(τ)` of the candidate chunk `τ` and
//! its gradient, and moves the sample down that gradient (`x ← x − λ_t · clip(∇J)`, with `λ_t = s · ᾱ_t` in
//! EADP's scale mode). This module is that controller model for a multirotor flying `[x, y, z, yaw]` ENU
//! position setpoints through a PX4-like cascaded position controller (the structure of the `quadrotor` sim in
//! `riptide-sim` and of a PX4 vehicle driven in offboard position mode by [`crate::MavlinkLink`]).
//!
//! # The model ([`TrackingModel`])
//!
//! A reduced translational + yaw model of the closed loop, integrated with fixed substeps (≈ 10 ms) inside each
//! chunk period:
//!
//! ```text
//! v_sp  = sat_v(K_p ⊙ (sp − p) + vel_ff·v_i)     horizontal speed ≤ max_vel_xy, vertical in [−down, up]
//! I    ← clamp(I + h·(v_sp − v), ±lim/K_i)       velocity integral, anti-windup as in PX4 / the sim
//! a_cmd = K_v ⊙ (v_sp − v) + K_i ⊙ I
//! a_z   ∈ [thrust_min − g, thrust_max − g]        collective thrust limits
//! |a_xy| ≤ min((g + a_z)·tan(max_tilt), √(thrust_max² − (g + a_z)²))     tilt / total-thrust limit
//! a    ← a + (1 − e^{−h/τ}) (a_cmd − a)           τ = tilt_lag_s (x, y: attitude loop), thrust_lag_s (z)
//! v    ← v + h (a − drag·v);   p ← p + h v        semi-implicit Euler
//! r    ← r + (1 − e^{−h/τ_r}) (clamp(k_ψ · wrap(ψ_sp − ψ) + vel_ff·ψ̇_i, ±r_max) − r);   ψ ← ψ + h r
//! ```
//!
//! Setpoint `i` of the chunk is held (zero-order hold) during `[i·dt, (i+1)·dt)`, as the sim's `Env::step` does
//! with each action. The tracked pose at the end of that period (by default; see
//! [`TrackingModelConfig::eval_fraction`]) is compared with it:
//!
//! ```text
//! J(τ) = Σ_i ‖p((i+1)·dt) − sp_i‖² + w_yaw · wrap(ψ((i+1)·dt) − ψ_sp_i)²
//! ```
//!
//! so `J` is the squared position error (m²) the drone has when each setpoint's period ends, which is what the
//! sim observes after each step. `vel_ff` (default 0, the sim's controller) optionally feeds the chunk's own
//! velocity `v_i = (sp_{i+1} − sp_i)/dt` forward, modelling a driver that sends velocity with each setpoint. The rollout starts from [`DroneState`] (position, velocity, yaw) with the
//! internal acceleration and velocity integral *trimmed* for steady flight at that velocity in still air.
//!
//! Note what this cost measures with a controller that has no velocity feed-forward (the sim's, and PX4 in
//! position-only offboard mode): a setpoint ramp at speed `v` is tracked with a steady lag of `v / K_p` (≈ 0.9 s
//! × v horizontally), so any moving chunk costs something and the cost grows with speed squared; jumps cost far
//! more because the drone cannot get there (speed, tilt and lag limits). The minimum, `J = 0`, is hovering in
//! place. Guidance therefore shortens and slows chunks; the diffusion prior keeps them on task. With
//! `vel_ff = 1` (and `eval_fraction = 0.5`) a chunk that continues the drone's motion costs almost nothing, and
//! only what the vehicle cannot do (jumps, speed, tilt and acceleration limits) is penalised.
//!
//! # The gradient
//!
//! [`TrackingModel::cost_and_grad`] is exact reverse-mode differentiation (a hand-written adjoint pass) of the
//! discrete rollout above, including the saturations (piecewise: a clamped quantity passes no gradient; a
//! norm-saturated vector passes its tangential part). It matches central finite differences of
//! [`TrackingModel::cost`] to ~1e-6 relative away from saturation kinks (tests/guidance.rs). One call on a
//! 16 × 4 chunk at 10 Hz is a few microseconds.
//!
//! # The guidance step ([`EadpGuidance`])
//!
//! [`EadpGuidance::step`] returns `λ_t · clip(∇J)` in world units, with `λ_t = scale · ᾱ_t` (ᾱ_t supplied by the
//! caller) and the clip applied per waypoint (`‖g_xyz‖ ≤ clip_pos`, `|g_yaw| ≤ clip_yaw`), as EADP does; the
//! sampler subtracts it from the unnormalised sample. [`EadpGuidance::step_normalised`] is the reference's
//! exact form for a normalised sample (gradient w.r.t. the normalised coordinates, clipped in normalised units,
//! returned in normalised units). Note the two differ by the square of the normalisation scale in how far a
//! given `λ` moves the chunk in metres.

use serde::{Deserialize, Serialize};

use crate::validate::{require_finite, require_positive, ConfigError};

/// Standard gravity, m/s².
pub const GRAVITY_M_S2: f64 = 9.81;

/// Closed-loop model parameters. The defaults are the `quadrotor` sim's controller (`ControllerGains::default`)
/// and airframe (`QuadParams::default`, 1 kg); the three lags were fitted to the sim's step responses
/// (`sim/tests/eadp_model.rs`: the model stays within 1 cm of the sim on a 1 m step, 3.5 cm on a 3 m jump).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingModelConfig {
    /// Position P gain per axis (x, y, z), 1/s: velocity setpoint = gain × position error.
    pub pos_p: [f64; 3],
    /// Velocity P gain per axis, 1/s: acceleration command per m/s of velocity error.
    pub vel_p: [f64; 3],
    /// Velocity I gain per axis, 1/s².
    pub vel_i: [f64; 3],
    /// Anti-windup: the integral term `vel_i · ∫e_v` is clamped to ± this, m/s².
    pub vel_i_limit_m_s2: f64,
    /// Horizontal speed limit of the velocity setpoint (norm of x, y), m/s.
    pub max_vel_xy_m_s: f64,
    /// Climb-rate limit, m/s.
    pub max_vel_up_m_s: f64,
    /// Descent-rate limit, m/s.
    pub max_vel_down_m_s: f64,
    /// Tilt limit, degrees. Limits the horizontal acceleration to `(g + a_z) · tan(max_tilt)` (6.87 m/s² at
    /// hover for 35°).
    pub max_tilt_deg: f64,
    /// Largest collective thrust per unit mass, m/s² (sim: 0.9 × 4 motors × 6 N / 1 kg = 21.6). Bounds the
    /// climb acceleration (`thrust_max − g`) and, with the tilt, the horizontal acceleration.
    pub max_thrust_accel_m_s2: f64,
    /// Smallest collective thrust per unit mass, m/s² (sim: 0.1 g), bounding the sink acceleration.
    pub min_thrust_accel_m_s2: f64,
    /// Linear drag per unit mass, 1/s (sim: 0.15 N·s/m on 1 kg).
    pub drag_per_s: f64,
    /// Time constant of the horizontal acceleration's response to its command, s: the attitude and rate loops
    /// tilting the airframe (sim: attitude P 8, rate P 25, motor lag 0.02 s).
    pub tilt_lag_s: f64,
    /// Time constant of the vertical acceleration's response, s (motor spin-up; sim 0.02 s).
    pub thrust_lag_s: f64,
    /// Yaw P gain, 1/s: yaw-rate setpoint per rad of yaw error (sim: attitude P 8 × yaw weight 3/8 = 3).
    pub yaw_p: f64,
    /// Yaw-rate limit, rad/s.
    pub max_yaw_rate_rad_s: f64,
    /// Time constant of the yaw rate's response to its setpoint, s. The sim's rate P 10 alone gives 0.1; its
    /// motors' limited yaw torque slows it further, and 0.15 fits its yaw steps best.
    pub yaw_rate_lag_s: f64,
    /// Velocity feed-forward weight, 0–1: the velocity setpoint becomes `K_p (sp_i − p) + vel_ff · v_i` and the
    /// yaw-rate setpoint `k_ψ wrap(ψ_sp_i − ψ) + vel_ff · ψ̇_i`, with `v_i = (sp_{i+1} − sp_i) / dt` (the last
    /// point repeats the previous difference). 0 (default) is the sim's controller and PX4 driven with
    /// position-only setpoints (what [`crate::MavlinkLink`] sends), which lag a ramp by `v / K_p`; 1 models a
    /// driver that also sends the chunk's velocity (PX4 trajectory setpoints), which tracks feasible ramps
    /// without that lag.
    pub vel_ff: f64,
    /// Where in each setpoint's period the tracked pose is compared with it, as a fraction of the period in
    /// (0, 1] (rounded to a substep). 1 (default): at the end, what the sim observes after each step. With
    /// `vel_ff` under zero-order hold the drone passes each setpoint mid-period, so use 0.5 there.
    pub eval_fraction: f64,
    /// Integration substep, s. Each chunk period is split into `ceil(dt / substep_s)` equal substeps.
    pub substep_s: f64,
    /// Weight of the squared yaw error (rad²) against the squared position error (m²) in the cost; 0 = ignore
    /// yaw. The default 0.1 makes 1 rad of yaw cost like 0.32 m of position.
    pub yaw_weight: f64,
}

impl Default for TrackingModelConfig {
    fn default() -> Self {
        Self {
            pos_p: [1.1, 1.1, 1.2],
            vel_p: [2.2, 2.2, 4.0],
            vel_i: [0.6, 0.6, 1.5],
            vel_i_limit_m_s2: 3.0,
            max_vel_xy_m_s: 3.0,
            max_vel_up_m_s: 1.5,
            max_vel_down_m_s: 1.0,
            max_tilt_deg: 35.0,
            max_thrust_accel_m_s2: 21.6,
            min_thrust_accel_m_s2: 0.981,
            drag_per_s: 0.15,
            tilt_lag_s: 0.14,
            thrust_lag_s: 0.02,
            yaw_p: 3.0,
            max_yaw_rate_rad_s: 2.0,
            yaw_rate_lag_s: 0.15,
            vel_ff: 0.0,
            eval_fraction: 1.0,
            substep_s: 0.01,
            yaw_weight: 0.1,
        }
    }
}

impl TrackingModelConfig {
    /// Checks every value, naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [("pos_p", self.pos_p), ("vel_p", self.vel_p)] {
            for (i, x) in v.iter().enumerate() {
                require_positive(format!("{name}[{i}]"), *x)?;
            }
        }
        for (i, x) in self.vel_i.iter().enumerate() {
            require_non_negative(format!("vel_i[{i}]"), *x)?;
        }
        require_non_negative("vel_i_limit_m_s2", self.vel_i_limit_m_s2)?;
        require_positive("max_vel_xy_m_s", self.max_vel_xy_m_s)?;
        require_positive("max_vel_up_m_s", self.max_vel_up_m_s)?;
        require_positive("max_vel_down_m_s", self.max_vel_down_m_s)?;
        require_positive("max_tilt_deg", self.max_tilt_deg)?;
        if self.max_tilt_deg >= 90.0 {
            return Err(ConfigError::new(
                "max_tilt_deg",
                format!("must be < 90 (got {})", self.max_tilt_deg),
            ));
        }
        require_non_negative("min_thrust_accel_m_s2", self.min_thrust_accel_m_s2)?;
        require_finite("max_thrust_accel_m_s2", self.max_thrust_accel_m_s2)?;
        if self.max_thrust_accel_m_s2 <= GRAVITY_M_S2 || self.min_thrust_accel_m_s2 >= GRAVITY_M_S2 {
            return Err(ConfigError::new(
                "max_thrust_accel_m_s2",
                format!(
                    "need min_thrust_accel_m_s2 < g = {GRAVITY_M_S2} < max_thrust_accel_m_s2 (got {} and {})",
                    self.min_thrust_accel_m_s2, self.max_thrust_accel_m_s2
                ),
            ));
        }
        require_non_negative("drag_per_s", self.drag_per_s)?;
        require_non_negative("tilt_lag_s", self.tilt_lag_s)?;
        require_non_negative("thrust_lag_s", self.thrust_lag_s)?;
        require_positive("yaw_p", self.yaw_p)?;
        require_positive("max_yaw_rate_rad_s", self.max_yaw_rate_rad_s)?;
        require_non_negative("yaw_rate_lag_s", self.yaw_rate_lag_s)?;
        require_non_negative("vel_ff", self.vel_ff)?;
        require_positive("eval_fraction", self.eval_fraction)?;
        if self.eval_fraction > 1.0 {
            return Err(ConfigError::new(
                "eval_fraction",
                format!("must be <= 1 (got {})", self.eval_fraction),
            ));
        }
        require_positive("substep_s", self.substep_s)?;
        require_non_negative("yaw_weight", self.yaw_weight)?;
        Ok(())
    }
}

fn require_non_negative(key: impl Into<String>, value: f64) -> Result<(), ConfigError> {
    let key = key.into();
    require_finite(key.clone(), value)?;
    if value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(key, format!("must be >= 0 (got {value})")))
    }
}

/// The drone's state when the chunk starts: world ENU position (m), velocity (m/s) and yaw (rad, 0 = east,
/// counter-clockwise). This is the sim's 7-D observation state `[x, y, z, vx, vy, vz, yaw]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DroneState {
    /// Position, m.
    pub position: [f64; 3],
    /// Velocity, m/s.
    pub velocity: [f64; 3],
    /// Yaw, rad.
    pub yaw: f64,
}

impl DroneState {
    /// At rest at `position` with heading `yaw`.
    pub fn at_rest(position: [f64; 3], yaw: f64) -> Self {
        Self {
            position,
            velocity: [0.0; 3],
            yaw,
        }
    }

    /// From `[x, y, z, vx, vy, vz, yaw]` (the `quadrotor` sim's observation state); `None` if `state` has
    /// fewer than 7 values.
    pub fn from_state7(state: &[f64]) -> Option<Self> {
        (state.len() >= 7).then(|| Self {
            position: [state[0], state[1], state[2]],
            velocity: [state[3], state[4], state[5]],
            yaw: state[6],
        })
    }
}

/// Wraps an angle to (−π, π].
fn wrap(a: f64) -> f64 {
    if a > -std::f64::consts::PI && a <= std::f64::consts::PI {
        return a;
    }
    let t = std::f64::consts::TAU;
    let mut w = a.rem_euclid(t);
    if w > std::f64::consts::PI {
        w -= t;
    }
    w
}

/// Full internal state of the reduced closed-loop model.
#[derive(Debug, Clone, Copy)]
struct State {
    p: [f64; 3],
    v: [f64; 3],
    /// Achieved acceleration (thrust minus gravity, per unit mass), before drag.
    a: [f64; 3],
    /// Velocity-error integral.
    i: [f64; 3],
    yaw: f64,
    yaw_rate: f64,
}

/// What the adjoint pass needs from one forward substep (the active branches of the saturations).
#[derive(Debug, Clone, Copy, Default)]
struct Local {
    /// Raw horizontal velocity setpoint and whether its norm was limited.
    u_xy: [f64; 2],
    vxy_sat: bool,
    /// Vertical velocity setpoint clamped.
    vz_sat: bool,
    /// Integral clamped, per axis.
    i_sat: [bool; 3],
    /// Vertical acceleration command clamped.
    az_sat: bool,
    /// Horizontal acceleration command and whether its norm was limited.
    c_xy: [f64; 2],
    axy_sat: bool,
    /// Which bound limited it: tilt (`true`) or total thrust (`false`); the vertical thrust `g + a_z` and the
    /// limit.
    tilt_bound: bool,
    tz: f64,
    limit: f64,
    /// Yaw-rate setpoint clamped.
    r_sat: bool,
}

/// The closed-loop tracking model: rollout, cost `J(τ)` and its exact gradient (see the module docs).
#[derive(Debug, Clone)]
pub struct TrackingModel {
    cfg: TrackingModelConfig,
    tan_tilt: f64,
    /// Integral clamp per axis, in integral units (`vel_i_limit / vel_i`).
    i_lim: [f64; 3],
}

impl TrackingModel {
    /// Validates `cfg`.
    pub fn new(cfg: TrackingModelConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let tan_tilt = cfg.max_tilt_deg.to_radians().tan();
        let i_lim = cfg.vel_i.map(|k| if k > 0.0 { cfg.vel_i_limit_m_s2 / k } else { 0.0 });
        Ok(Self { cfg, tan_tilt, i_lim })
    }

    /// The configuration.
    pub fn config(&self) -> &TrackingModelConfig {
        &self.cfg
    }

    /// Substeps per chunk period, their length, and the substep count after which the pose is compared.
    fn substeps(&self, dt: f64) -> (usize, f64, usize) {
        let n = ((dt / self.cfg.substep_s) - 1e-9).ceil().max(1.0) as usize;
        let m = ((self.cfg.eval_fraction * n as f64).round() as usize).clamp(1, n);
        (n, dt / n as f64, m)
    }

    /// Internal state trimmed for steady flight at the initial velocity in still air (acceleration balancing
    /// drag, held by the integral).
    fn initial(&self, s: &DroneState) -> State {
        let c = &self.cfg;
        let mut a = [0.0; 3];
        let mut i = [0.0; 3];
        for k in 0..3 {
            a[k] = c.drag_per_s * s.velocity[k];
            if c.vel_i[k] > 0.0 {
                i[k] = (a[k] / c.vel_i[k]).clamp(-self.i_lim[k], self.i_lim[k]);
            }
        }
        State {
            p: s.position,
            v: s.velocity,
            a,
            i,
            yaw: s.yaw,
            yaw_rate: 0.0,
        }
    }

    /// One substep of length `h` towards setpoint `sp`; `alpha` = (xy, z, yaw-rate) lag blend factors.
    #[allow(clippy::needless_range_loop)] // parallel per-axis arrays
    fn step(&self, x: &mut State, sp: &[f64; 4], ff: &[f64; 4], h: f64, alpha: [f64; 3]) -> Local {
        let c = &self.cfg;
        let mut l = Local::default();
        // Position P → velocity setpoint with speed limits.
        let mut vsp = [0.0; 3];
        for k in 0..3 {
            vsp[k] = c.pos_p[k] * (sp[k] - x.p[k]) + ff[k];
        }
        l.u_xy = [vsp[0], vsp[1]];
        let n = (vsp[0] * vsp[0] + vsp[1] * vsp[1]).sqrt();
        if n > c.max_vel_xy_m_s {
            l.vxy_sat = true;
            vsp[0] *= c.max_vel_xy_m_s / n;
            vsp[1] *= c.max_vel_xy_m_s / n;
        }
        let vz = vsp[2].clamp(-c.max_vel_down_m_s, c.max_vel_up_m_s);
        l.vz_sat = vz != vsp[2];
        vsp[2] = vz;
        // Velocity PI → acceleration command (integral clamped).
        let mut cmd = [0.0; 3];
        for k in 0..3 {
            let ev = vsp[k] - x.v[k];
            let raw = x.i[k] + h * ev;
            let ik = raw.clamp(-self.i_lim[k], self.i_lim[k]);
            l.i_sat[k] = ik != raw;
            x.i[k] = ik;
            cmd[k] = c.vel_p[k] * ev + c.vel_i[k] * ik;
        }
        // Thrust limits: vertical first, then the horizontal share the tilt and total thrust allow.
        let az = cmd[2].clamp(
            c.min_thrust_accel_m_s2 - GRAVITY_M_S2,
            c.max_thrust_accel_m_s2 - GRAVITY_M_S2,
        );
        l.az_sat = az != cmd[2];
        cmd[2] = az;
        let tz = GRAVITY_M_S2 + az;
        let by_tilt = tz * self.tan_tilt;
        let by_thrust = (c.max_thrust_accel_m_s2 * c.max_thrust_accel_m_s2 - tz * tz)
            .max(0.0)
            .sqrt();
        l.tilt_bound = by_tilt <= by_thrust;
        l.limit = by_tilt.min(by_thrust);
        l.tz = tz;
        l.c_xy = [cmd[0], cmd[1]];
        let n = (cmd[0] * cmd[0] + cmd[1] * cmd[1]).sqrt();
        if n > l.limit {
            l.axy_sat = true;
            let s = if n > 0.0 { l.limit / n } else { 0.0 };
            cmd[0] *= s;
            cmd[1] *= s;
        }
        // Lagged response, then drag and semi-implicit Euler.
        for k in 0..3 {
            let al = if k < 2 { alpha[0] } else { alpha[1] };
            x.a[k] += al * (cmd[k] - x.a[k]);
            x.v[k] += h * (x.a[k] - c.drag_per_s * x.v[k]);
            x.p[k] += h * x.v[k];
        }
        // Yaw: P on the wrapped error → rate setpoint (limited) → lagged rate.
        let q = c.yaw_p * wrap(sp[3] - x.yaw) + ff[3];
        let rsp = q.clamp(-c.max_yaw_rate_rad_s, c.max_yaw_rate_rad_s);
        l.r_sat = rsp != q;
        x.yaw_rate += alpha[2] * (rsp - x.yaw_rate);
        x.yaw += h * x.yaw_rate;
        l
    }

    fn alphas(&self, h: f64) -> [f64; 3] {
        let blend = |tau: f64| if tau > 0.0 { 1.0 - (-h / tau).exp() } else { 1.0 };
        [
            blend(self.cfg.tilt_lag_s),
            blend(self.cfg.thrust_lag_s),
            blend(self.cfg.yaw_rate_lag_s),
        ]
    }

    /// The pair of setpoints whose difference is interval `i`'s velocity feed-forward, if any.
    fn ff_pair(&self, i: usize, len: usize) -> Option<(usize, usize)> {
        if self.cfg.vel_ff == 0.0 || len < 2 {
            None
        } else if i + 1 < len {
            Some((i, i + 1))
        } else {
            Some((len - 2, len - 1))
        }
    }

    /// Velocity (and yaw-rate) feed-forward of interval `i`.
    fn ff(&self, setpoints: &[[f64; 4]], i: usize, dt: f64) -> [f64; 4] {
        match self.ff_pair(i, setpoints.len()) {
            None => [0.0; 4],
            Some((lo, hi)) => {
                let w = self.cfg.vel_ff / dt;
                let (a, b) = (&setpoints[lo], &setpoints[hi]);
                [
                    w * (b[0] - a[0]),
                    w * (b[1] - a[1]),
                    w * (b[2] - a[2]),
                    w * wrap(b[3] - a[3]),
                ]
            }
        }
    }

    /// Cost terms of one tracked pose against its setpoint: (cost, error xyz, wrapped yaw error).
    fn term(&self, x: &State, sp: &[f64; 4]) -> (f64, [f64; 3], f64) {
        let e = [x.p[0] - sp[0], x.p[1] - sp[1], x.p[2] - sp[2]];
        let ey = wrap(x.yaw - sp[3]);
        (
            e[0] * e[0] + e[1] * e[1] + e[2] * e[2] + self.cfg.yaw_weight * ey * ey,
            e,
            ey,
        )
    }

    /// The tracked pose `[x, y, z, yaw]` compared with each setpoint: at `(i + eval_fraction)·dt` (default: the
    /// end of its period), setpoint `i` held during `[i·dt, (i+1)·dt)`. Yaw is unwrapped (continuous).
    pub fn rollout(&self, initial: &DroneState, setpoints: &[[f64; 4]], dt: f64) -> Vec<[f64; 4]> {
        let (n, h, m) = self.substeps(dt);
        let alpha = self.alphas(h);
        let mut x = self.initial(initial);
        setpoints
            .iter()
            .enumerate()
            .map(|(i, sp)| {
                let ff = self.ff(setpoints, i, dt);
                let mut pose = [0.0; 4];
                for j in 0..n {
                    self.step(&mut x, sp, &ff, h, alpha);
                    if j + 1 == m {
                        pose = [x.p[0], x.p[1], x.p[2], x.yaw];
                    }
                }
                pose
            })
            .collect()
    }

    /// Tracking cost `J(τ) = Σ_i ‖p(t_i') − sp_i‖² + yaw_weight · wrap(ψ(t_i') − ψ_sp_i)²`, `t_i' = (i +
    /// eval_fraction)·dt` (default `(i+1)·dt`), of the chunk `setpoints` (world `[x, y, z, yaw]`, `dt` seconds
    /// apart, the first due now) flown from `initial`.
    pub fn cost(&self, initial: &DroneState, setpoints: &[[f64; 4]], dt: f64) -> f64 {
        let (n, h, m) = self.substeps(dt);
        let alpha = self.alphas(h);
        let mut x = self.initial(initial);
        let mut j = 0.0;
        for (i, sp) in setpoints.iter().enumerate() {
            let ff = self.ff(setpoints, i, dt);
            for k in 0..n {
                self.step(&mut x, sp, &ff, h, alpha);
                if k + 1 == m {
                    j += self.term(&x, sp).0;
                }
            }
        }
        j
    }

    /// `J(τ)` and `∂J/∂sp_i` for every setpoint component (exact adjoint of the rollout; at a saturation kink
    /// it is one of the one-sided derivatives).
    pub fn cost_and_grad(&self, initial: &DroneState, setpoints: &[[f64; 4]], dt: f64) -> (f64, Vec<[f64; 4]>) {
        let (n, h, m) = self.substeps(dt);
        let alpha = self.alphas(h);
        let c = &self.cfg;
        let mut x = self.initial(initial);
        let mut tape: Vec<Local> = Vec::with_capacity(n * setpoints.len());
        // Per setpoint: d(term)/d(pose) = (2e, 2 w ey).
        let mut dterm: Vec<([f64; 3], f64)> = Vec::with_capacity(setpoints.len());
        let mut j = 0.0;
        for (i, sp) in setpoints.iter().enumerate() {
            let ff = self.ff(setpoints, i, dt);
            for k in 0..n {
                tape.push(self.step(&mut x, sp, &ff, h, alpha));
                if k + 1 == m {
                    let (cost, e, ey) = self.term(&x, sp);
                    j += cost;
                    dterm.push(([2.0 * e[0], 2.0 * e[1], 2.0 * e[2]], 2.0 * c.yaw_weight * ey));
                }
            }
        }

        // Adjoint pass. `b*` are ∂J/∂(state) at the current point of the backward sweep.
        let mut grad = vec![[0.0; 4]; setpoints.len()];
        let (mut bp, mut bv, mut ba, mut bi) = ([0.0; 3], [0.0; 3], [0.0; 3], [0.0; 3]);
        let (mut byaw, mut brate) = (0.0, 0.0);
        let (ax, az, ar) = (alpha[0], alpha[1], alpha[2]);
        for idx in (0..setpoints.len()).rev() {
            let (de, dey) = dterm[idx];
            // ∂J/∂sp_idx through the error terms, and ∂J/∂(feed-forward of this interval).
            let mut g = [0.0; 4];
            let mut bff = [0.0; 4];
            for (k, l) in tape[idx * n..(idx + 1) * n].iter().enumerate().rev() {
                if k + 1 == m {
                    // The error term was taken after this substep.
                    for a in 0..3 {
                        bp[a] += de[a];
                        g[a] -= de[a];
                    }
                    byaw += dey;
                    g[3] -= dey;
                }
                // p' = p + h v'  ;  v' = (1 − h d) v + h a'  ;  a' = (1 − α) a + α cmd.
                let mut bcmd = [0.0; 3];
                for k in 0..3 {
                    let bv_new = bv[k] + h * bp[k];
                    let ba_new = ba[k] + h * bv_new;
                    bv[k] = (1.0 - h * c.drag_per_s) * bv_new;
                    let al = if k < 2 { ax } else { az };
                    ba[k] = (1.0 - al) * ba_new;
                    bcmd[k] = al * ba_new;
                }
                // Horizontal norm limit: cmd_xy = L · c/|c|.
                let mut bc = bcmd;
                if l.axy_sat {
                    let nrm = (l.c_xy[0] * l.c_xy[0] + l.c_xy[1] * l.c_xy[1]).sqrt();
                    if nrm > 0.0 {
                        let u = [l.c_xy[0] / nrm, l.c_xy[1] / nrm];
                        let dot = u[0] * bcmd[0] + u[1] * bcmd[1];
                        let s = l.limit / nrm;
                        bc[0] = s * (bcmd[0] - u[0] * dot);
                        bc[1] = s * (bcmd[1] - u[1] * dot);
                        // ∂L/∂tz flows to the vertical command.
                        let dl = if l.tilt_bound {
                            self.tan_tilt
                        } else if l.limit > 0.0 {
                            -l.tz / l.limit
                        } else {
                            0.0
                        };
                        bc[2] += dot * dl;
                    } else {
                        bc[0] = 0.0;
                        bc[1] = 0.0;
                    }
                }
                if l.az_sat {
                    bc[2] = 0.0;
                }
                // cmd = Kv ev + Ki I'  ;  I' = clamp(I + h ev).
                let mut bvsp = [0.0; 3];
                for k in 0..3 {
                    let mut bev = c.vel_p[k] * bc[k];
                    let bi_new = bi[k] + c.vel_i[k] * bc[k];
                    let braw = if l.i_sat[k] { 0.0 } else { bi_new };
                    bi[k] = braw;
                    bev += h * braw;
                    bvsp[k] = bev;
                    bv[k] -= bev;
                }
                // Velocity setpoint limits.
                if l.vxy_sat {
                    let nrm = (l.u_xy[0] * l.u_xy[0] + l.u_xy[1] * l.u_xy[1]).sqrt();
                    let u = [l.u_xy[0] / nrm, l.u_xy[1] / nrm];
                    let dot = u[0] * bvsp[0] + u[1] * bvsp[1];
                    let s = c.max_vel_xy_m_s / nrm;
                    bvsp[0] = s * (bvsp[0] - u[0] * dot);
                    bvsp[1] = s * (bvsp[1] - u[1] * dot);
                }
                if l.vz_sat {
                    bvsp[2] = 0.0;
                }
                for k in 0..3 {
                    let be = c.pos_p[k] * bvsp[k];
                    g[k] += be;
                    bp[k] -= be;
                    bff[k] += bvsp[k];
                }
                // Yaw: ψ' = ψ + h r'  ;  r' = (1 − α) r + α rsp  ;  rsp = clamp(k wrap(sp − ψ)).
                let br_new = brate + h * byaw;
                brate = (1.0 - ar) * br_new;
                let brsp = ar * br_new;
                if !l.r_sat {
                    let be = c.yaw_p * brsp;
                    g[3] += be;
                    byaw -= be;
                    bff[3] += brsp;
                }
            }
            for k in 0..4 {
                grad[idx][k] += g[k];
            }
            if let Some((lo, hi)) = self.ff_pair(idx, setpoints.len()) {
                let w = c.vel_ff / dt;
                for k in 0..4 {
                    grad[hi][k] += w * bff[k];
                    grad[lo][k] -= w * bff[k];
                }
            }
        }
        (j, grad)
    }
}

/// Clips each waypoint's gradient in place: the position part `[0..3]` to Euclidean norm ≤ `clip_pos`, the yaw
/// part `[3]` to |·| ≤ `clip_yaw` (EADP clips position and rotation separately per waypoint). Returns how many
/// waypoints were clipped (either part). Non-finite gradients become zero.
pub fn clip_per_waypoint(grad: &mut [[f64; 4]], clip_pos: f64, clip_yaw: f64) -> usize {
    let mut clipped = 0;
    for g in grad.iter_mut() {
        if !g.iter().all(|v| v.is_finite()) {
            *g = [0.0; 4];
            clipped += 1;
            continue;
        }
        let mut hit = false;
        let n = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
        if n > clip_pos {
            let s = clip_pos / n;
            g[0] *= s;
            g[1] *= s;
            g[2] *= s;
            hit = true;
        }
        if g[3].abs() > clip_yaw {
            g[3] = clip_yaw.copysign(g[3]);
            hit = true;
        }
        clipped += hit as usize;
    }
    clipped
}

/// EADP guidance settings: the controller model plus the scale-mode step size and the per-waypoint clips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EadpConfig {
    /// The controller model.
    pub model: TrackingModelConfig,
    /// `s` in EADP's scale mode, `λ_t = s · ᾱ_t` (the reference ablation sweeps 0.8–1.5 in normalised units).
    /// Plain repeated descent in world units ([`EadpGuidance::step`]) falls monotonically only while
    /// `λ_t < 2 / L`, `L` ≈ 2.9 being the largest curvature of `J` for a 16-point 10 Hz chunk (so `s ≤ 0.69` at
    /// ᾱ = 1; with `vel_ff = 1` `L` ≈ 11, so `s ≤ 0.18`); above that the clip bounds the step and the final
    /// approach can oscillate (the denoiser between guidance steps damps this in EADP). The default 0.5 is
    /// inside the bound for the default model.
    pub scale: f64,
    /// [`EadpGuidance::step`]: per-waypoint bound on the position gradient's norm, world units (m²/m = m). The
    /// default 0.25 is EADP's 0.05 in normalised units for a range-normalised ±4.5 m workspace (the
    /// `quadrotor` arena).
    pub clip_pos: f64,
    /// [`EadpGuidance::step`]: per-waypoint bound on |∂J/∂yaw|, world units (m²/rad).
    pub clip_yaw: f64,
    /// [`EadpGuidance::step_normalised`]: per-waypoint bound on the position gradient's norm in normalised
    /// units (EADP: 0.05).
    pub clip_pos_normalised: f64,
    /// [`EadpGuidance::step_normalised`]: per-waypoint bound on the yaw gradient in normalised units (EADP clips
    /// its rotation gradient at 0.005).
    pub clip_yaw_normalised: f64,
}

impl Default for EadpConfig {
    fn default() -> Self {
        Self {
            model: TrackingModelConfig::default(),
            scale: 0.5,
            clip_pos: 0.25,
            clip_yaw: 0.05,
            clip_pos_normalised: 0.05,
            clip_yaw_normalised: 0.005,
        }
    }
}

/// One guidance step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidanceStep {
    /// `J` of the chunk the step was computed for (NaN if the chunk or state was not finite).
    pub cost: f64,
    /// `λ_t = scale · ᾱ_t`.
    pub lambda: f64,
    /// `λ_t · clip(∇J)` per waypoint, world units: the sampler does `x ← x − step` (all zero if the input was
    /// not finite).
    pub step: Vec<[f64; 4]>,
    /// Waypoints whose gradient was clipped.
    pub clipped: usize,
}

/// EADP scale-mode guidance for a drone chunk (see the module docs).
#[derive(Debug, Clone)]
pub struct EadpGuidance {
    model: TrackingModel,
    cfg: EadpConfig,
}

impl EadpGuidance {
    /// Validates `cfg`.
    pub fn new(cfg: EadpConfig) -> Result<Self, ConfigError> {
        require_non_negative("scale", cfg.scale)?;
        require_positive("clip_pos", cfg.clip_pos)?;
        require_positive("clip_yaw", cfg.clip_yaw)?;
        require_positive("clip_pos_normalised", cfg.clip_pos_normalised)?;
        require_positive("clip_yaw_normalised", cfg.clip_yaw_normalised)?;
        let model = TrackingModel::new(cfg.model.clone()).map_err(|e| e.prefixed("model"))?;
        Ok(Self { model, cfg })
    }

    /// The controller model.
    pub fn model(&self) -> &TrackingModel {
        &self.model
    }

    /// The configuration.
    pub fn config(&self) -> &EadpConfig {
        &self.cfg
    }

    /// The guidance step for the candidate chunk `setpoints` (world `[x, y, z, yaw]`, `dt` s apart, the first due
    /// now) from `initial`, at a denoising step whose cumulative signal level is `alpha_bar` (ᾱ_t ∈ [0, 1]):
    /// `λ_t · clip(∇J)` in world units, `λ_t = scale · alpha_bar`, clipped with `clip_pos` / `clip_yaw`. The
    /// caller does `x_world ← x_world − step`.
    pub fn step(&self, initial: &DroneState, setpoints: &[[f64; 4]], dt: f64, alpha_bar: f64) -> GuidanceStep {
        self.guided(
            initial,
            setpoints,
            dt,
            alpha_bar,
            [1.0; 4],
            self.cfg.clip_pos,
            self.cfg.clip_yaw,
        )
    }

    /// EADP exactly as the reference applies it to a normalised sample: with `x_world[k] = unnorm_scale[k] ·
    /// x_norm[k] + offset[k]` (for min–max normalisation to [−1, 1], `unnorm_scale = (max − min) / 2`), the
    /// gradient w.r.t. the normalised sample is `unnorm_scale ⊙ ∇J`; it is clipped per waypoint with
    /// `clip_pos_normalised` / `clip_yaw_normalised` and scaled by `λ_t = scale · alpha_bar`. `setpoints` are the
    /// *unnormalised* chunk; the returned step is in normalised units: `x_norm ← x_norm − step`.
    pub fn step_normalised(
        &self,
        initial: &DroneState,
        setpoints: &[[f64; 4]],
        dt: f64,
        alpha_bar: f64,
        unnorm_scale: [f64; 4],
    ) -> GuidanceStep {
        self.guided(
            initial,
            setpoints,
            dt,
            alpha_bar,
            unnorm_scale,
            self.cfg.clip_pos_normalised,
            self.cfg.clip_yaw_normalised,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn guided(
        &self,
        initial: &DroneState,
        setpoints: &[[f64; 4]],
        dt: f64,
        alpha_bar: f64,
        chain: [f64; 4],
        clip_pos: f64,
        clip_yaw: f64,
    ) -> GuidanceStep {
        let lambda = self.cfg.scale * alpha_bar;
        let finite = dt.is_finite()
            && dt > 0.0
            && alpha_bar.is_finite()
            && chain.iter().all(|v| v.is_finite())
            && setpoints.iter().flatten().all(|v| v.is_finite())
            && initial.position.iter().chain(&initial.velocity).all(|v| v.is_finite())
            && initial.yaw.is_finite();
        if !finite {
            return GuidanceStep {
                cost: f64::NAN,
                lambda,
                step: vec![[0.0; 4]; setpoints.len()],
                clipped: 0,
            };
        }
        let (cost, mut grad) = self.model.cost_and_grad(initial, setpoints, dt);
        for g in grad.iter_mut() {
            for k in 0..4 {
                g[k] *= chain[k];
            }
        }
        let clipped = clip_per_waypoint(&mut grad, clip_pos, clip_yaw);
        for g in grad.iter_mut() {
            for v in g.iter_mut() {
                *v *= lambda;
            }
        }
        GuidanceStep {
            cost,
            lambda,
            step: grad,
            clipped,
        }
    }
}
