//! The safety envelope, applied last to every command.
//!
//! [`SafetyEnvelope::apply`] takes the desired position and the control step `dt` and returns the position to send,
//! with the [`Violations`] the desired position had (each also counted in [`ViolationCounters`]).
//!
//! What is guaranteed for every position the envelope emits, whatever it is given (NaN, ±Inf, huge values, any
//! `dt`): it is finite; it is inside the per-dimension position limits and the geofence; it differs from the
//! previous emitted position by at most `max_velocity[d] * dt` per dimension and, for drones, by at most
//! `max_horizontal_speed * dt` horizontally and `max_vertical_speed * dt` vertically (`dt` capped at `max_dt_s`,
//! and 0 when time did not advance). These need the previous position to be inside the envelope, which
//! [`SafetyEnvelope::reset`] enforces.
//!
//! Acceleration and tilt limits are best effort: they are met unless a hard limit (position, geofence, speed)
//! forces harder braking, and a hold (non-finite input, `Reject`, watchdog, e-stop) stops at once.
//!
//! Violation handling ([`ViolationMode`]):
//! * `Clamp`: the command is projected into the envelope: onto the position box and geofence, then its velocity
//!   is limited to the acceleration/tilt bounds around the previous velocity and to the speed limits, and finally
//!   the step is shortened along its own direction if it would leave the position box or geofence.
//! * `Reject`: a command violating a position, geofence or speed limit is not used at all: the envelope holds the
//!   last safe command (velocity becomes zero). Acceleration and tilt are clamped in both modes, since replacing an
//!   over-accelerating command by a hold would brake even harder. Note that once holding, a moving trajectory
//!   keeps being rejected until it comes back within one step of the held position (re-engaging ramps to it).
//!
//! A non-finite (or mis-sized) command never passes in either mode: the last safe command is held.
//!
//! Chunk-boundary jumps are checked separately by [`SafetyEnvelope::check_jump`], see there.

use serde::{Deserialize, Serialize};

use crate::supervisor::EngageError;
use crate::validate::{require_finite, require_positive, ConfigError};

/// Standard gravity, m/s², for the tilt proxy.
pub const GRAVITY: f64 = 9.80665;

/// Relative tolerance of violation detection (not of clamping, which is exact), so a command exactly at a limit
/// is not reported as violating it because of rounding.
const DETECT_TOL: f64 = 1e-9;

/// What to do with a command that violates the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationMode {
    /// Project the command into the envelope.
    #[default]
    Clamp,
    /// Hold the last safe command.
    Reject,
}

/// Drone geofence over `[x, y, z]` (dimensions 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "shape", rename_all = "snake_case", deny_unknown_fields)]
pub enum Geofence {
    /// Axis-aligned box.
    Box {
        /// Lower corner `[x, y, z]`.
        min: [f64; 3],
        /// Upper corner `[x, y, z]`.
        max: [f64; 3],
    },
    /// Vertical cylinder.
    Cylinder {
        /// Axis position `[x, y]`.
        center: [f64; 2],
        /// Radius.
        radius: f64,
        /// Lowest allowed z.
        z_min: f64,
        /// Highest allowed z.
        z_max: f64,
    },
}

impl Geofence {
    /// Whether `[x, y, z, ..]` is inside (boundary included).
    pub fn contains(&self, p: &[f64]) -> bool {
        match *self {
            Geofence::Box { min, max } => (0..3).all(|d| p[d] >= min[d] && p[d] <= max[d]),
            Geofence::Cylinder {
                center,
                radius,
                z_min,
                z_max,
            } => {
                let (dx, dy) = (p[0] - center[0], p[1] - center[1]);
                dx * dx + dy * dy <= radius * radius && p[2] >= z_min && p[2] <= z_max
            }
        }
    }

    /// z range `[lo, hi]`.
    pub fn z_range(&self) -> (f64, f64) {
        match *self {
            Geofence::Box { min, max } => (min[2], max[2]),
            Geofence::Cylinder { z_min, z_max, .. } => (z_min, z_max),
        }
    }

    /// Moves `p` to the nearest point of the fence (exact projection for both shapes).
    fn project(&self, p: &mut [f64]) {
        match *self {
            Geofence::Box { min, max } => {
                for d in 0..3 {
                    p[d] = p[d].clamp(min[d], max[d]);
                }
            }
            Geofence::Cylinder {
                center,
                radius,
                z_min,
                z_max,
            } => {
                let (dx, dy) = (p[0] - center[0], p[1] - center[1]);
                let r = dx.hypot(dy);
                if r > radius {
                    // Slightly inside, so rounding cannot leave it outside.
                    let k = radius / r * (1.0 - 4.0 * f64::EPSILON);
                    p[0] = center[0] + dx * k;
                    p[1] = center[1] + dy * k;
                }
                p[2] = p[2].clamp(z_min, z_max);
            }
        }
    }

    /// Largest `lambda` in `[0, 1]` such that `p + lambda * step` is inside, given `p` inside.
    fn max_fraction(&self, p: &[f64], step: &[f64]) -> f64 {
        match *self {
            Geofence::Box { min, max } => (0..3).fold(1.0, |l, d| l.min(box_fraction(p[d], step[d], min[d], max[d]))),
            Geofence::Cylinder {
                center,
                radius,
                z_min,
                z_max,
            } => {
                let mut l = box_fraction(p[2], step[2], z_min, z_max);
                let (qx, qy) = (p[0] - center[0], p[1] - center[1]);
                let (sx, sy) = (step[0], step[1]);
                let a = sx * sx + sy * sy;
                if a > 0.0 {
                    // |q + lambda s|² = R²: a λ² + b λ + c = 0 with c <= 0 (p inside).
                    let b = 2.0 * (qx * sx + qy * sy);
                    let c = (qx * qx + qy * qy - radius * radius).min(0.0);
                    let root = (-b + (b * b - 4.0 * a * c).max(0.0).sqrt()) / (2.0 * a);
                    l = l.min(root.max(0.0));
                }
                l
            }
        }
    }
}

/// `x.clamp(lo, hi)`, setting `changed` when that moved `x`.
fn clamp_tracked(x: f64, lo: f64, hi: f64, changed: &mut bool) -> f64 {
    let y = x.clamp(lo, hi);
    *changed |= y != x;
    y
}

/// Largest `lambda` in `[0, 1]` with `lo <= p + lambda * s <= hi`, given `lo <= p <= hi`.
fn box_fraction(p: f64, s: f64, lo: f64, hi: f64) -> f64 {
    let l = if p + s > hi {
        (hi - p) / s
    } else if p + s < lo {
        (lo - p) / s
    } else {
        1.0
    };
    l.clamp(0.0, 1.0)
}

/// Limits that only apply to drones (`[x, y, z, yaw]` setpoints; x, y, z are dimensions 0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroneLimits {
    /// Allowed region.
    #[serde(default)]
    pub geofence: Option<Geofence>,
    /// Max speed in the x-y plane, units/s.
    #[serde(default)]
    pub max_horizontal_speed: Option<f64>,
    /// Max |vz|, units/s.
    #[serde(default)]
    pub max_vertical_speed: Option<f64>,
    /// Max tilt, degrees, enforced as a max horizontal acceleration `g * tan(max_tilt)`.
    #[serde(default)]
    pub max_tilt_deg: Option<f64>,
}

impl DroneLimits {
    /// Max horizontal acceleration implied by `max_tilt_deg`.
    pub fn max_horizontal_acceleration(&self) -> Option<f64> {
        self.max_tilt_deg.map(|deg| GRAVITY * deg.to_radians().tan())
    }
}

fn default_max_dt_s() -> f64 {
    0.1
}

/// Safety envelope configuration. All vectors have one value per position dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Lower position limit per dimension.
    pub position_min: Vec<f64>,
    /// Upper position limit per dimension.
    pub position_max: Vec<f64>,
    /// Max |velocity| per dimension, units/s.
    pub max_velocity: Vec<f64>,
    /// Max |acceleration| per dimension, units/s².
    #[serde(default)]
    pub max_acceleration: Option<Vec<f64>>,
    /// Max per-dimension difference between a new chunk's first due point and the running trajectory.
    #[serde(default)]
    pub max_jump: Option<Vec<f64>>,
    /// A control step longer than this (a stalled loop) counts as this long, so one late step cannot make a big
    /// move. Default 0.1 s.
    #[serde(default = "default_max_dt_s")]
    pub max_dt_s: f64,
    /// `clamp` (default) or `reject`.
    #[serde(default)]
    pub on_violation: ViolationMode,
    /// Drone limits; requires at least 3 dimensions.
    #[serde(default)]
    pub drone: Option<DroneLimits>,
}

impl SafetyConfig {
    /// Position dimension (`position_min.len()`).
    pub fn dim(&self) -> usize {
        self.position_min.len()
    }

    /// Checks the values; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let dim = self.dim();
        if dim == 0 {
            return Err(ConfigError::new("position_min", "must have at least one value"));
        }
        let check_len = |key: &str, v: &[f64]| {
            if v.len() == dim {
                Ok(())
            } else {
                Err(ConfigError::new(
                    key,
                    format!("has {} values, position_min has {dim}", v.len()),
                ))
            }
        };
        check_len("position_max", &self.position_max)?;
        check_len("max_velocity", &self.max_velocity)?;
        for d in 0..dim {
            require_finite(format!("position_min[{d}]"), self.position_min[d])?;
            require_finite(format!("position_max[{d}]"), self.position_max[d])?;
            if self.position_min[d] > self.position_max[d] {
                return Err(ConfigError::new(
                    format!("position_min[{d}]"),
                    format!(
                        "greater than position_max[{d}] ({} > {})",
                        self.position_min[d], self.position_max[d]
                    ),
                ));
            }
            require_positive(format!("max_velocity[{d}]"), self.max_velocity[d])?;
        }
        if let Some(a) = &self.max_acceleration {
            check_len("max_acceleration", a)?;
            for (d, &x) in a.iter().enumerate() {
                require_positive(format!("max_acceleration[{d}]"), x)?;
            }
        }
        if let Some(j) = &self.max_jump {
            check_len("max_jump", j)?;
            for (d, &x) in j.iter().enumerate() {
                require_finite(format!("max_jump[{d}]"), x)?;
                if x < 0.0 {
                    return Err(ConfigError::new(
                        format!("max_jump[{d}]"),
                        format!("must be >= 0 (got {x})"),
                    ));
                }
            }
        }
        require_positive("max_dt_s", self.max_dt_s)?;
        if let Some(drone) = &self.drone {
            if dim < 3 {
                return Err(ConfigError::new(
                    "drone",
                    format!("needs at least 3 dimensions (x, y, z), have {dim}"),
                ));
            }
            if let Some(h) = drone.max_horizontal_speed {
                require_positive("drone.max_horizontal_speed", h)?;
            }
            if let Some(v) = drone.max_vertical_speed {
                require_positive("drone.max_vertical_speed", v)?;
            }
            if let Some(t) = drone.max_tilt_deg {
                require_positive("drone.max_tilt_deg", t)?;
                if t >= 90.0 {
                    return Err(ConfigError::new(
                        "drone.max_tilt_deg",
                        format!("must be < 90 (got {t})"),
                    ));
                }
            }
            if let Some(fence) = &drone.geofence {
                self.validate_fence(fence)?;
            }
        }
        Ok(())
    }

    fn validate_fence(&self, fence: &Geofence) -> Result<(), ConfigError> {
        let (lo, hi) = (&self.position_min, &self.position_max);
        match *fence {
            Geofence::Box { min, max } => {
                for d in 0..3 {
                    require_finite(format!("drone.geofence.min[{d}]"), min[d])?;
                    require_finite(format!("drone.geofence.max[{d}]"), max[d])?;
                    if min[d] > max[d] {
                        return Err(ConfigError::new(
                            format!("drone.geofence.min[{d}]"),
                            format!("greater than drone.geofence.max[{d}] ({} > {})", min[d], max[d]),
                        ));
                    }
                    if min[d].max(lo[d]) > max[d].min(hi[d]) {
                        return Err(ConfigError::new(
                            "drone.geofence",
                            format!("does not overlap position_min/position_max in dimension {d}"),
                        ));
                    }
                }
            }
            Geofence::Cylinder {
                center,
                radius,
                z_min,
                z_max,
            } => {
                require_finite("drone.geofence.center[0]", center[0])?;
                require_finite("drone.geofence.center[1]", center[1])?;
                require_positive("drone.geofence.radius", radius)?;
                require_finite("drone.geofence.z_min", z_min)?;
                require_finite("drone.geofence.z_max", z_max)?;
                if z_min > z_max {
                    return Err(ConfigError::new(
                        "drone.geofence.z_min",
                        format!("greater than drone.geofence.z_max ({z_min} > {z_max})"),
                    ));
                }
                let nearest_x = center[0].clamp(lo[0], hi[0]);
                let nearest_y = center[1].clamp(lo[1], hi[1]);
                let disk_overlaps = (nearest_x - center[0]).hypot(nearest_y - center[1]) <= radius;
                if !disk_overlaps || z_min.max(lo[2]) > z_max.min(hi[2]) {
                    return Err(ConfigError::new(
                        "drone.geofence",
                        "does not overlap position_min/position_max",
                    ));
                }
            }
        }
        Ok(())
    }
}

macro_rules! violation_kinds {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Which checks a command (or a chunk boundary) failed.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct Violations {
            $($(#[$doc])* pub $name: bool,)*
        }

        /// How often each check failed since the envelope was built.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct ViolationCounters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Violations {
            /// Names of all violation kinds, in field order.
            pub const KINDS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Whether any check failed.
            pub fn any(&self) -> bool {
                false $(|| self.$name)*
            }

            /// Names of the failed checks, for logging.
            pub fn names(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$name { names.push(stringify!($name)); })*
                names
            }

            /// Sets every kind set in `other`.
            pub fn merge(&mut self, other: &Violations) {
                $(self.$name |= other.$name;)*
            }
        }

        impl ViolationCounters {
            /// Adds one to each kind set in `v`.
            pub fn add(&mut self, v: &Violations) {
                $(self.$name += u64::from(v.$name);)*
            }

            /// Sum over all kinds.
            pub fn total(&self) -> u64 {
                0 $(+ self.$name)*
            }
        }
    };
}

violation_kinds! {
    /// NaN, ±Inf or wrong number of values: held.
    non_finite,
    /// Outside `position_min`/`position_max`.
    position,
    /// Outside the drone geofence.
    geofence,
    /// Some |Δposition| / dt > `max_velocity`.
    velocity,
    /// Some |Δvelocity| / dt > `max_acceleration`.
    acceleration,
    /// New chunk's first due point too far from the running trajectory.
    jump,
    /// Horizontal speed > `max_horizontal_speed`.
    horizontal_speed,
    /// |vz| > `max_vertical_speed`.
    vertical_speed,
    /// Horizontal acceleration > g·tan(`max_tilt_deg`).
    tilt,
}

/// Result of [`SafetyEnvelope::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The position to send; `None` only if the envelope was never [`reset`](SafetyEnvelope::reset).
    pub position: Option<Vec<f64>>,
    /// What the desired command violated.
    pub violations: Violations,
    /// True when the last safe command was held instead (non-finite input or `Reject`).
    pub held: bool,
}

/// The safety envelope and its state (last safe command and velocity).
#[derive(Debug, Clone)]
pub struct SafetyEnvelope {
    config: SafetyConfig,
    horizontal_accel: Option<f64>,
    last: Option<Vec<f64>>,
    velocity: Vec<f64>,
    counters: ViolationCounters,
}

impl SafetyEnvelope {
    /// A validated envelope with no reference position yet.
    pub fn new(config: SafetyConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let horizontal_accel = config.drone.as_ref().and_then(DroneLimits::max_horizontal_acceleration);
        let dim = config.dim();
        Ok(SafetyEnvelope {
            config,
            horizontal_accel,
            last: None,
            velocity: vec![0.0; dim],
            counters: Default::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SafetyConfig {
        &self.config
    }

    /// Position dimension.
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Counters since construction.
    pub fn counters(&self) -> ViolationCounters {
        self.counters
    }

    /// The last safe command.
    pub fn last(&self) -> Option<&[f64]> {
        self.last.as_deref()
    }

    /// Whether `p` has the right size, is finite and lies inside the position limits and geofence.
    pub fn contains(&self, p: &[f64]) -> bool {
        p.len() == self.dim()
            && p.iter().all(|x| x.is_finite())
            && p.iter().zip(&self.config.position_min).all(|(x, lo)| x >= lo)
            && p.iter().zip(&self.config.position_max).all(|(x, hi)| x <= hi)
            && self.fence().is_none_or(|f| f.contains(p))
    }

    /// Makes `position` (e.g. the device's measured position at engage) the last safe command, at rest.
    /// Refused unless it is finite and inside the envelope: rate limits are only meaningful from a safe start.
    pub fn reset(&mut self, position: &[f64]) -> Result<(), EngageError> {
        if position.len() != self.dim() {
            return Err(EngageError::DimensionMismatch {
                expected: self.dim(),
                got: position.len(),
            });
        }
        if position.iter().any(|x| !x.is_finite()) {
            return Err(EngageError::NonFinite);
        }
        if !self.contains(position) {
            return Err(EngageError::OutsideEnvelope);
        }
        self.last = Some(position.to_vec());
        self.velocity.iter_mut().for_each(|v| *v = 0.0);
        Ok(())
    }

    /// Holds the last safe command (velocity becomes zero) and returns it.
    pub fn hold(&mut self) -> Option<Vec<f64>> {
        self.velocity.iter_mut().for_each(|v| *v = 0.0);
        self.last.clone()
    }

    /// Checks a chunk boundary: `first` is the new chunk's first due point, `reference` the value the running
    /// trajectory has at that time (or the last command when nothing is queued). A jump is any per-dimension
    /// difference larger than `max_jump`. Counted; the caller decides what to do (the [`crate::Driver`] drops the
    /// chunk in `Reject` mode, and in `Clamp` mode lets the per-step limits smooth the transition).
    pub fn check_jump(&mut self, reference: &[f64], first: &[f64]) -> Violations {
        let mut v = Violations::default();
        if let Some(max_jump) = &self.config.max_jump {
            v.jump = reference.len() != first.len()
                || reference
                    .iter()
                    .zip(first)
                    .zip(max_jump)
                    .any(|((r, f), m)| (f - r).is_nan() || (f - r).abs() > *m);
        }
        self.counters.add(&v);
        v
    }

    fn fence(&self) -> Option<&Geofence> {
        self.config.drone.as_ref().and_then(|d| d.geofence.as_ref())
    }

    /// Checks `desired` against the envelope for a control step of `dt_s` seconds and returns the position to
    /// send (see the module docs for the guarantees and the two violation modes).
    pub fn apply(&mut self, desired: &[f64], dt_s: f64) -> Checked {
        let Some(prev) = self.last.clone() else {
            return Checked {
                position: None,
                violations: Violations::default(),
                held: false,
            };
        };
        let mut v = Violations::default();
        if desired.len() != prev.len() || desired.iter().any(|x| !x.is_finite()) {
            v.non_finite = true;
            self.counters.add(&v);
            return Checked {
                position: self.hold(),
                violations: v,
                held: true,
            };
        }
        let dt = if dt_s.is_finite() {
            dt_s.clamp(0.0, self.config.max_dt_s)
        } else {
            0.0
        };
        self.detect(&prev, desired, dt, &mut v);
        self.counters.add(&v);
        let hard = v.position || v.geofence || v.velocity || v.horizontal_speed || v.vertical_speed;
        if dt == 0.0 || (hard && self.config.on_violation == ViolationMode::Reject) {
            // No time passed (nothing may move), or the command is rejected.
            return Checked {
                position: self.hold(),
                violations: v,
                held: dt > 0.0,
            };
        }
        let out = self.clamp_step(&prev, desired, dt);
        for d in 0..prev.len() {
            self.velocity[d] = (out[d] - prev[d]) / dt;
        }
        self.last = Some(out.clone());
        Checked {
            position: Some(out),
            violations: v,
            held: false,
        }
    }

    /// Marks in `v` every limit `desired` violates (relative to `prev` and the current velocity).
    fn detect(&self, prev: &[f64], desired: &[f64], dt: f64, v: &mut Violations) {
        let c = &self.config;
        let exceeds = |x: f64, limit: f64| x > limit * (1.0 + DETECT_TOL);
        v.position = desired
            .iter()
            .enumerate()
            .any(|(d, x)| *x < c.position_min[d] || *x > c.position_max[d]);
        v.geofence = self.fence().is_some_and(|f| !f.contains(desired));
        if dt <= 0.0 {
            return;
        }
        let vel: Vec<f64> = desired.iter().zip(prev).map(|(x, p)| (x - p) / dt).collect();
        v.velocity = vel.iter().zip(&c.max_velocity).any(|(x, m)| exceeds(x.abs(), *m));
        if let Some(a) = &c.max_acceleration {
            v.acceleration = (0..vel.len()).any(|d| exceeds((vel[d] - self.velocity[d]).abs() / dt, a[d]));
        }
        if let Some(drone) = &c.drone {
            if let Some(h) = drone.max_horizontal_speed {
                v.horizontal_speed = exceeds(vel[0].hypot(vel[1]), h);
            }
            if let Some(z) = drone.max_vertical_speed {
                v.vertical_speed = exceeds(vel[2].abs(), z);
            }
            if let Some(ha) = self.horizontal_accel {
                let (ax, ay) = ((vel[0] - self.velocity[0]) / dt, (vel[1] - self.velocity[1]) / dt);
                v.tilt = exceeds(ax.hypot(ay), ha);
            }
        }
    }

    /// Projects `desired` into the envelope (the `Clamp` pipeline). `prev` must be inside; `dt > 0`. A command
    /// that no stage has to change is returned exactly as given.
    fn clamp_step(&self, prev: &[f64], desired: &[f64], dt: f64) -> Vec<f64> {
        let c = &self.config;
        let dim = prev.len();
        // Set when a stage changes something.
        let mut changed = false;
        let ch = &mut changed;
        // 1. Position: onto the box, the fence, the box again (the fence projection can leave the box).
        let mut target: Vec<f64> = (0..dim)
            .map(|d| clamp_tracked(desired[d], c.position_min[d], c.position_max[d], ch))
            .collect();
        if let Some(f) = self.fence() {
            if !f.contains(&target) {
                f.project(&mut target);
                self.clamp_box(&mut target);
                *ch = true;
            }
        }
        // 2. Velocity of that step, per-dimension speed limits first (this also makes it finite for tiny dt).
        let mut vel: Vec<f64> = (0..dim)
            .map(|d| clamp_tracked((target[d] - prev[d]) / dt, -c.max_velocity[d], c.max_velocity[d], ch))
            .collect();
        // 3. Acceleration and tilt around the previous velocity.
        if let Some(a) = &c.max_acceleration {
            for d in 0..dim {
                vel[d] = clamp_tracked(vel[d], self.velocity[d] - a[d] * dt, self.velocity[d] + a[d] * dt, ch);
            }
        }
        if let Some(ha) = self.horizontal_accel {
            let (dvx, dvy) = (vel[0] - self.velocity[0], vel[1] - self.velocity[1]);
            let n = dvx.hypot(dvy);
            let limit = ha * dt;
            if n > limit {
                let k = limit / n;
                vel[0] = self.velocity[0] + dvx * k;
                vel[1] = self.velocity[1] + dvy * k;
                *ch = true;
            }
        }
        // 4. Speed limits again (hard).
        for (v, m) in vel.iter_mut().zip(&c.max_velocity) {
            *v = clamp_tracked(*v, -m, *m, ch);
        }
        if let Some(drone) = &c.drone {
            if let Some(z) = drone.max_vertical_speed {
                vel[2] = clamp_tracked(vel[2], -z, z, ch);
            }
            if let Some(h) = drone.max_horizontal_speed {
                let n = vel[0].hypot(vel[1]);
                if n > h {
                    let k = h / n;
                    vel[0] *= k;
                    vel[1] *= k;
                    *ch = true;
                }
            }
        }
        if !changed {
            return desired.to_vec();
        }
        // 5. Shorten the step along its direction so it stays inside the box and fence (both convex, prev inside).
        let mut step: Vec<f64> = vel.iter().map(|v| v * dt).collect();
        let mut lambda: f64 = 1.0;
        for d in 0..dim {
            lambda = lambda.min(box_fraction(prev[d], step[d], c.position_min[d], c.position_max[d]));
        }
        if let Some(f) = self.fence() {
            lambda = lambda.min(f.max_fraction(prev, &step));
        }
        if lambda < 1.0 {
            step.iter_mut().for_each(|s| *s *= lambda);
        }
        let mut out: Vec<f64> = prev.iter().zip(&step).map(|(p, s)| p + s).collect();
        // 6. Rounding: snap the last ulp back inside.
        if let Some(f) = self.fence() {
            if !f.contains(&out) {
                f.project(&mut out);
            }
        }
        self.clamp_box(&mut out);
        out
    }

    fn clamp_box(&self, p: &mut [f64]) {
        for (d, x) in p.iter_mut().enumerate() {
            *x = x.clamp(self.config.position_min[d], self.config.position_max[d]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(mode: ViolationMode) -> SafetyConfig {
        SafetyConfig {
            position_min: vec![-1.0, -2.0],
            position_max: vec![1.0, 2.0],
            max_velocity: vec![1.0, 2.0],
            max_acceleration: None,
            max_jump: Some(vec![0.1, 0.1]),
            max_dt_s: 0.1,
            on_violation: mode,
            drone: None,
        }
    }

    fn drone(fence: Geofence) -> SafetyConfig {
        SafetyConfig {
            position_min: vec![-100.0, -100.0, 0.0, -4.0],
            position_max: vec![100.0, 100.0, 50.0, 4.0],
            max_velocity: vec![10.0, 10.0, 3.0, 1.0],
            max_acceleration: None,
            max_jump: None,
            max_dt_s: 0.1,
            on_violation: ViolationMode::Clamp,
            drone: Some(DroneLimits {
                geofence: Some(fence),
                max_horizontal_speed: Some(5.0),
                max_vertical_speed: Some(2.0),
                max_tilt_deg: Some(20.0),
            }),
        }
    }

    fn envelope(config: SafetyConfig, start: &[f64]) -> SafetyEnvelope {
        let mut e = SafetyEnvelope::new(config).unwrap();
        e.reset(start).unwrap();
        e
    }

    #[test]
    fn nan_and_inf_never_pass() {
        for mode in [ViolationMode::Clamp, ViolationMode::Reject] {
            let mut e = envelope(arm(mode), &[0.5, 0.5]);
            for bad in [[f64::NAN, 0.0], [0.0, f64::INFINITY], [f64::NEG_INFINITY, f64::NAN]] {
                let c = e.apply(&bad, 0.01);
                assert_eq!(c.position, Some(vec![0.5, 0.5]));
                assert!(c.held && c.violations.non_finite);
            }
            let c = e.apply(&[0.5], 0.01);
            assert!(c.held && c.violations.non_finite, "wrong size counts as non-finite");
            assert_eq!(e.counters().non_finite, 4);
        }
    }

    #[test]
    fn clamp_projects_and_reject_holds() {
        let mut e = envelope(arm(ViolationMode::Clamp), &[0.95, 0.0]);
        let c = e.apply(&[1.5, 0.0], 0.1);
        let p = c.position.unwrap();
        assert!((p[0] - 1.0).abs() < 1e-15 && p[0] <= 1.0 && p[1] == 0.0, "{p:?}");
        assert!(c.violations.position && !c.held);
        assert_eq!(c.violations.names(), vec!["position", "velocity"]);

        let mut e = envelope(arm(ViolationMode::Reject), &[0.95, 0.0]);
        let c = e.apply(&[1.5, 0.0], 0.1);
        assert_eq!(c.position, Some(vec![0.95, 0.0]));
        assert!(c.held);
        let c = e.apply(&[0.96, 0.01], 0.1);
        assert_eq!(c.position, Some(vec![0.96, 0.01]), "a valid command passes unchanged");
        assert!(!c.violations.any());
    }

    #[test]
    fn velocity_is_limited_per_dimension() {
        let mut e = envelope(arm(ViolationMode::Clamp), &[0.0, 0.0]);
        let c = e.apply(&[1.0, -1.0], 0.01);
        let p = c.position.unwrap();
        assert!((p[0] - 0.01).abs() < 1e-15 && (p[1] + 0.02).abs() < 1e-15, "{p:?}");
        assert!(c.violations.velocity);
        // dt is capped at max_dt_s.
        let c = e.apply(&[1.0, -1.0], 10.0);
        let p = c.position.unwrap();
        assert!((p[0] - 0.11).abs() < 1e-12, "{p:?}");
        // No time: no motion.
        let c = e.apply(&[1.0, -1.0], 0.0);
        assert_eq!(c.position.unwrap(), p);
    }

    #[test]
    fn acceleration_is_limited_from_rest() {
        let mut config = arm(ViolationMode::Clamp);
        config.max_acceleration = Some(vec![10.0, 10.0]);
        let mut e = envelope(config, &[0.0, 0.0]);
        let dt = 0.01;
        let mut prev_v = 0.0;
        let mut prev = 0.0;
        for _ in 0..50 {
            let c = e.apply(&[1.0, 0.0], dt);
            let x = c.position.unwrap()[0];
            let v = (x - prev) / dt;
            assert!(
                (v - prev_v).abs() / dt <= 10.0 * (1.0 + 1e-9),
                "accel {}",
                (v - prev_v) / dt
            );
            assert!(v <= 1.0 + 1e-12);
            prev_v = v;
            prev = x;
        }
        assert!((prev_v - 1.0).abs() < 1e-9, "reaches max velocity");
        assert!(e.counters().acceleration > 0);
    }

    #[test]
    fn jump_check() {
        let mut e = envelope(arm(ViolationMode::Clamp), &[0.0, 0.0]);
        assert!(!e.check_jump(&[0.0, 0.0], &[0.1, -0.1]).any());
        assert!(e.check_jump(&[0.0, 0.0], &[0.0, 0.2]).jump);
        assert_eq!(e.counters().jump, 1);
    }

    #[test]
    fn cylinder_geofence_clamps_and_limits_speeds() {
        let fence = Geofence::Cylinder {
            center: [0.0, 0.0],
            radius: 10.0,
            z_min: 0.0,
            z_max: 20.0,
        };
        let mut e = envelope(drone(fence), &[9.9, 0.0, 5.0, 0.0]);
        let mut prev = vec![9.9, 0.0, 5.0, 0.0];
        let dt = 0.02;
        for k in 0..200 {
            // Far outside: the drone heads for the nearest fence point, within the fence and the speed limits.
            let c = e.apply(&[20.0, 20.0, 30.0, 0.0], dt);
            let p = c.position.unwrap();
            assert!(p[0].hypot(p[1]) <= 10.0 + 1e-9, "step {k}: {p:?}");
            assert!(p[2] <= 20.0);
            let h = (p[0] - prev[0]).hypot(p[1] - prev[1]);
            assert!(h <= 5.0 * dt * (1.0 + 1e-9), "horizontal speed {}", h / dt);
            assert!((p[2] - prev[2]).abs() <= 2.0 * dt * (1.0 + 1e-9));
            prev = p;
        }
        assert!(prev[1] > 5.0, "moved toward the nearest fence point: {prev:?}");
        let n = e.counters();
        assert!(n.geofence > 0 && n.horizontal_speed > 0 && n.vertical_speed > 0 && n.tilt > 0);
    }

    #[test]
    fn box_geofence_and_tilt() {
        let fence = Geofence::Box {
            min: [-5.0, -5.0, 0.0],
            max: [5.0, 5.0, 10.0],
        };
        let mut e = envelope(drone(fence), &[0.0, 0.0, 1.0, 0.0]);
        let dt = 0.01;
        let max_acc = GRAVITY * 20f64.to_radians().tan();
        let (mut prev, mut prev_v) = (0.0, 0.0);
        for _ in 0..300 {
            let p = e.apply(&[50.0, 0.0, 1.0, 0.0], dt).position.unwrap();
            let v = (p[0] - prev) / dt;
            assert!((v - prev_v).abs() / dt <= max_acc * (1.0 + 1e-9) || p[0] >= 5.0 - 1e-9);
            assert!(p[0] <= 5.0);
            prev = p[0];
            prev_v = v;
        }
        assert!((5.0 - 1e-9..=5.0).contains(&prev), "{prev}");
    }

    #[test]
    fn reset_refuses_outside_or_non_finite() {
        let mut e = SafetyEnvelope::new(arm(ViolationMode::Clamp)).unwrap();
        assert_eq!(e.apply(&[0.0, 0.0], 0.01).position, None, "no reference yet");
        assert_eq!(e.reset(&[2.0, 0.0]), Err(EngageError::OutsideEnvelope));
        assert_eq!(e.reset(&[f64::NAN, 0.0]), Err(EngageError::NonFinite));
        assert_eq!(
            e.reset(&[0.0]),
            Err(EngageError::DimensionMismatch { expected: 2, got: 1 })
        );
        assert!(e.reset(&[1.0, -2.0]).is_ok());
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut c = arm(ViolationMode::Clamp);
        c.position_min[1] = 3.0;
        let err = c.validate().unwrap_err();
        assert_eq!(err.key, "position_min[1]");
        assert!(err.message.contains("greater than position_max[1]"), "{err}");
        let mut c = arm(ViolationMode::Clamp);
        c.max_velocity = vec![1.0];
        assert_eq!(c.validate().unwrap_err().key, "max_velocity");
        let mut c = arm(ViolationMode::Clamp);
        c.max_velocity[0] = -1.0;
        assert_eq!(c.validate().unwrap_err().key, "max_velocity[0]");
        let mut c = arm(ViolationMode::Clamp);
        c.max_jump = Some(vec![0.1, f64::NAN]);
        assert_eq!(c.validate().unwrap_err().key, "max_jump[1]");
        let mut c = arm(ViolationMode::Clamp);
        c.drone = Some(DroneLimits::default());
        assert_eq!(c.validate().unwrap_err().key, "drone");
        let mut c = drone(Geofence::Box {
            min: [0.0, 0.0, 5.0],
            max: [1.0, 1.0, 4.0],
        });
        assert_eq!(c.validate().unwrap_err().key, "drone.geofence.min[2]");
        c.drone.as_mut().unwrap().geofence = Some(Geofence::Cylinder {
            center: [500.0, 0.0],
            radius: 10.0,
            z_min: 0.0,
            z_max: 10.0,
        });
        assert_eq!(c.validate().unwrap_err().key, "drone.geofence");
        c.drone.as_mut().unwrap().geofence = None;
        c.drone.as_mut().unwrap().max_tilt_deg = Some(90.0);
        assert_eq!(c.validate().unwrap_err().key, "drone.max_tilt_deg");
    }

    #[test]
    fn config_parses_and_denies_unknown_keys() {
        let c: SafetyConfig = toml::from_str(
            r#"
            position_min = [-1, -1, 0, -3.2]
            position_max = [1, 1, 5, 3.2]
            max_velocity = [2, 2, 1, 1]
            on_violation = "reject"
            [drone]
            max_tilt_deg = 25
            geofence = { shape = "cylinder", center = [0, 0], radius = 1, z_min = 0, z_max = 4 }
            "#,
        )
        .unwrap();
        assert_eq!(c.on_violation, ViolationMode::Reject);
        assert_eq!(c.max_dt_s, 0.1);
        assert!(c.validate().is_ok());
        let bad = toml::from_str::<SafetyConfig>(
            "position_min = [0]\nposition_max = [1]\nmax_velocity = [1]\nmax_speed = 3\n",
        );
        assert!(bad.unwrap_err().to_string().contains("max_speed"));
        let bad_fence = toml::from_str::<SafetyConfig>(
            "position_min = [0,0,0]\nposition_max = [1,1,1]\nmax_velocity = [1,1,1]\n\
             [drone]\ngeofence = { shape = \"box\", min = [0,0,0], max = [1,1,1], radius = 2 }\n",
        );
        assert!(bad_fence.unwrap_err().to_string().contains("radius"));
    }
}
