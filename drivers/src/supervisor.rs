//! Engage/disengage state machine, watchdog and latched e-stop.
//!
//! States ([`SupervisorState`]):
//! * `Disengaged` (initial): outputs [`Command::Hold`] of the last output, or [`Command::Idle`] if there never was
//!   one. [`Supervisor::engage`] with the device's current position starts `Engaging`.
//! * `Engaging`: a straight-line ramp from the current position to the executor's sample, at most
//!   `engage_velocity_scale` × the ramp limits per dimension (and horizontally for drones); never a jump. When the
//!   remaining distance fits in one step it becomes `Engaged`.
//! * `Engaged`: passes the executor's sample through ([`Command::Position`]); holds while there is none yet.
//! * `Holding` (watchdog): no valid command source for `hold_after_ms`: holds the last output (arm: last
//!   commanded position; drone: hover in place). A valid source again (a new chunk, or queued commands) ramps back
//!   through `Engaging`.
//! * `Landing` (drones, `land_after_ms` set): no valid source for `land_after_ms`: [`Command::Land`] descending at
//!   `descent_rate` from the last output straight down to `ground_z`; new chunks do not interrupt it (engage does).
//! * `Landed`: on the ground, disarmed: [`Command::Idle`] until engaged again.
//! * `EStopped`: latched by [`Supervisor::estop`] from any state; holds the last output (a drone hovers) or is idle,
//!   whatever arrives, until [`Supervisor::estop_reset`], which returns to `Disengaged` (engage again to move).
//!
//! Watchdog timing: the command source is valid until `max(time of the last accepted chunk, end of the queue)`;
//! the hold starts once `now - valid_until >= hold_after_ms` and the landing once it is `>= land_after_ms`
//! (1 ns tolerance for the ms → s rounding).
//!
//! The supervisor works on the outputs the safety envelope actually emitted: the driver reports them with
//! [`Supervisor::observe_output`], so holds and ramps start from what the device was really told.

use serde::{Deserialize, Serialize};

use crate::chunk::Command;
use crate::validate::{require_finite, require_positive, ConfigError};

/// Tolerance on watchdog deadlines, seconds.
const DEADLINE_TOL_S: f64 = 1e-9;

/// Supervisor configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Hold after this long without a valid command source, ms.
    pub hold_after_ms: u64,
    /// Drones: land after this long without a valid command source, ms (>= `hold_after_ms`). Unset for arms.
    #[serde(default)]
    pub land_after_ms: Option<u64>,
    /// Landing descent rate, units/s (default 0.5).
    #[serde(default = "default_descent_rate")]
    pub descent_rate: f64,
    /// Ground height (z, dimension 2) where a landing ends (default 0).
    #[serde(default)]
    pub ground_z: f64,
    /// Engage ramp speed as a fraction of the ramp limits, in (0, 1] (default 0.5).
    #[serde(default = "default_engage_velocity_scale")]
    pub engage_velocity_scale: f64,
}

fn default_descent_rate() -> f64 {
    0.5
}

fn default_engage_velocity_scale() -> f64 {
    0.5
}

impl SupervisorConfig {
    /// A config with the defaults and the given hold timeout.
    pub fn new(hold_after_ms: u64) -> Self {
        SupervisorConfig {
            hold_after_ms,
            land_after_ms: None,
            descent_rate: default_descent_rate(),
            ground_z: 0.0,
            engage_velocity_scale: default_engage_velocity_scale(),
        }
    }

    /// Checks the values; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(land) = self.land_after_ms {
            if land < self.hold_after_ms {
                return Err(ConfigError::new(
                    "land_after_ms",
                    format!("must be >= hold_after_ms ({land} < {})", self.hold_after_ms),
                ));
            }
        }
        require_positive("descent_rate", self.descent_rate)?;
        require_finite("ground_z", self.ground_z)?;
        require_positive("engage_velocity_scale", self.engage_velocity_scale)?;
        if self.engage_velocity_scale > 1.0 {
            return Err(ConfigError::new(
                "engage_velocity_scale",
                format!("must be <= 1 (got {})", self.engage_velocity_scale),
            ));
        }
        Ok(())
    }
}

/// Speed limits of the engage ramp (before `engage_velocity_scale`).
#[derive(Debug, Clone, PartialEq)]
pub struct RampLimits {
    /// Per-dimension max |velocity|, units/s.
    pub velocity: Vec<f64>,
    /// Max speed in the x-y plane (dimensions 0, 1), drones.
    pub horizontal_speed: Option<f64>,
}

/// Supervisor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SupervisorState {
    /// Not engaged (initial).
    Disengaged,
    /// Ramping from the engage position to the commanded trajectory.
    Engaging,
    /// Tracking the commanded trajectory.
    Engaged,
    /// Watchdog: holding the last output.
    Holding,
    /// Watchdog (drones): descending to the ground.
    Landing,
    /// On the ground, disarmed.
    Landed,
    /// Latched emergency stop.
    EStopped,
}

/// Why engage was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngageError {
    /// The e-stop is latched; reset it first.
    #[error("e-stop is latched")]
    EStopped,
    /// The position has the wrong number of values.
    #[error("position has {got} values, expected {expected}")]
    DimensionMismatch {
        /// The driver's dimension.
        expected: usize,
        /// The position's dimension.
        got: usize,
    },
    /// The position (or the engage time) has a NaN or infinite value.
    #[error("position or time is not finite")]
    NonFinite,
    /// The position is outside the safety envelope's position limits or geofence.
    #[error("position is outside the safety envelope")]
    OutsideEnvelope,
}

/// Supervisor counters (monotonic since construction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SupervisorCounters {
    /// Successful engages.
    pub engages: u64,
    /// Watchdog holds started.
    pub watchdog_holds: u64,
    /// Landings started.
    pub landings_started: u64,
    /// Landings that reached the ground.
    pub landings_completed: u64,
    /// E-stops latched.
    pub estops: u64,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Supervisor {
    config: SupervisorConfig,
    ramp: RampLimits,
    state: SupervisorState,
    last: Option<Vec<f64>>,
    last_chunk_s: f64,
    counters: SupervisorCounters,
}

impl Supervisor {
    /// A disengaged supervisor for positions of `ramp.velocity.len()` dimensions.
    pub fn new(config: SupervisorConfig, ramp: RampLimits) -> Result<Self, ConfigError> {
        config.validate()?;
        let dim = ramp.velocity.len();
        if dim == 0 {
            return Err(ConfigError::new("ramp.velocity", "must have at least one value"));
        }
        for (d, &v) in ramp.velocity.iter().enumerate() {
            require_positive(format!("ramp.velocity[{d}]"), v)?;
        }
        if let Some(h) = ramp.horizontal_speed {
            require_positive("ramp.horizontal_speed", h)?;
            if dim < 2 {
                return Err(ConfigError::new("ramp.horizontal_speed", "needs at least 2 dimensions"));
            }
        }
        if config.land_after_ms.is_some() && dim < 3 {
            return Err(ConfigError::new(
                "land_after_ms",
                format!("landing needs a z dimension (2); have {dim}"),
            ));
        }
        Ok(Supervisor {
            config,
            ramp,
            state: SupervisorState::Disengaged,
            last: None,
            last_chunk_s: f64::NEG_INFINITY,
            counters: SupervisorCounters::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> SupervisorState {
        self.state
    }

    /// Counters since construction.
    pub fn counters(&self) -> SupervisorCounters {
        self.counters
    }

    /// Whether the e-stop is latched.
    pub fn is_estopped(&self) -> bool {
        self.state == SupervisorState::EStopped
    }

    /// The last output reported by [`observe_output`](Self::observe_output) (or the engage position).
    pub fn last_output(&self) -> Option<&[f64]> {
        self.last.as_deref()
    }

    /// Engage from the device's `current` position at `now_s`: ramp to the commanded trajectory. Refused while
    /// e-stopped; a no-op while already engaging or engaged. Allowed from `Holding`, `Landing` and `Landed`.
    pub fn engage(&mut self, current: &[f64], now_s: f64) -> Result<(), EngageError> {
        match self.state {
            SupervisorState::EStopped => return Err(EngageError::EStopped),
            SupervisorState::Engaging | SupervisorState::Engaged => return Ok(()),
            _ => {}
        }
        let dim = self.ramp.velocity.len();
        if current.len() != dim {
            return Err(EngageError::DimensionMismatch {
                expected: dim,
                got: current.len(),
            });
        }
        if current.iter().any(|x| !x.is_finite()) || !now_s.is_finite() {
            return Err(EngageError::NonFinite);
        }
        self.last = Some(current.to_vec());
        // Engaging feeds the watchdog: the source has hold_after_ms to show up.
        self.last_chunk_s = now_s;
        self.state = SupervisorState::Engaging;
        self.counters.engages += 1;
        Ok(())
    }

    /// Stop following commands and hold. No effect while e-stopped.
    pub fn disengage(&mut self) {
        if self.state != SupervisorState::EStopped {
            self.state = SupervisorState::Disengaged;
        }
    }

    /// Latch the e-stop.
    pub fn estop(&mut self) {
        if self.state != SupervisorState::EStopped {
            self.counters.estops += 1;
        }
        self.state = SupervisorState::EStopped;
    }

    /// Clear a latched e-stop; the supervisor is then `Disengaged`. No effect when not e-stopped.
    pub fn estop_reset(&mut self) {
        if self.state == SupervisorState::EStopped {
            self.state = SupervisorState::Disengaged;
        }
    }

    /// A valid chunk arrived at `now_s` (feeds the watchdog).
    pub fn feed(&mut self, now_s: f64) {
        if now_s > self.last_chunk_s {
            self.last_chunk_s = now_s;
        }
    }

    /// Reports the position actually emitted this step (after the safety envelope).
    pub fn observe_output(&mut self, position: &[f64]) {
        self.last = Some(position.to_vec());
    }

    /// Seconds since the command source was last valid (negative while queued commands remain).
    fn starved_s(&self, now_s: f64, queue_end_s: Option<f64>) -> f64 {
        let valid_until = queue_end_s.map_or(self.last_chunk_s, |q| q.max(self.last_chunk_s));
        now_s - valid_until
    }

    fn hold_or_idle(&self) -> Command {
        match &self.last {
            Some(p) => Command::Hold(p.clone()),
            None => Command::Idle,
        }
    }

    /// One control step at `now_s`, `dt_s` after the previous one. `target` is the executor's sample,
    /// `queue_end_s` the time of its last queued point.
    pub fn step(&mut self, now_s: f64, dt_s: f64, target: Option<&[f64]>, queue_end_s: Option<f64>) -> Command {
        use SupervisorState::*;
        let starved = self.starved_s(now_s, queue_end_s);
        let hold_after = self.config.hold_after_ms as f64 / 1000.0;
        let land_after = self.config.land_after_ms.map(|ms| ms as f64 / 1000.0);
        let expired = |after: f64| starved + DEADLINE_TOL_S >= after;
        let state = self.state;
        match state {
            Engaging | Engaged if expired(hold_after) => {
                self.state = Holding;
                self.counters.watchdog_holds += 1;
            }
            Holding if !expired(hold_after) => self.state = Engaging,
            _ => {}
        }
        if self.state == Holding && land_after.is_some_and(expired) {
            self.state = Landing;
            self.counters.landings_started += 1;
        }
        let Some(last) = self.last.clone() else {
            return Command::Idle;
        };
        match self.state {
            Disengaged | Holding | EStopped => Command::Hold(last),
            Landed => Command::Idle,
            Landing => {
                let ground = self.config.ground_z;
                if last[2] <= ground + 1e-9 {
                    self.state = Landed;
                    self.counters.landings_completed += 1;
                    return Command::Idle;
                }
                let mut position = last;
                let z = position[2] - self.config.descent_rate * dt_s.max(0.0);
                position[2] = if z <= ground + 1e-9 { ground } else { z };
                Command::Land {
                    position,
                    descent_rate: self.config.descent_rate,
                }
            }
            Engaged => match target {
                Some(t) => Command::Position(t.to_vec()),
                None => self.hold_or_idle(),
            },
            Engaging => {
                let Some(target) = target else {
                    return Command::Hold(last);
                };
                if target.len() != last.len() || target.iter().any(|x| !x.is_finite()) {
                    // Let the safety envelope count and refuse it.
                    return Command::Position(target.to_vec());
                }
                let (position, reached) = self.ramp_step(&last, target, dt_s);
                if reached {
                    self.state = Engaged;
                }
                Command::Position(position)
            }
        }
    }

    /// One ramp step from `from` toward `to`: the longest step along the line that keeps every dimension (and the
    /// horizontal plane) within the scaled ramp limits. Returns the position and whether it reached `to`.
    fn ramp_step(&self, from: &[f64], to: &[f64], dt_s: f64) -> (Vec<f64>, bool) {
        let scale = self.config.engage_velocity_scale;
        let dt = dt_s.max(0.0);
        let delta: Vec<f64> = to.iter().zip(from).map(|(t, f)| t - f).collect();
        let mut lambda: f64 = 1.0;
        for (d, x) in delta.iter().enumerate() {
            let limit = self.ramp.velocity[d] * scale * dt;
            if x.abs() > limit {
                lambda = lambda.min(limit / x.abs());
            }
        }
        if let Some(h) = self.ramp.horizontal_speed {
            let n = delta[0].hypot(delta[1]);
            let limit = h * scale * dt;
            if n > limit {
                lambda = lambda.min(limit / n);
            }
        }
        if lambda >= 1.0 {
            (to.to_vec(), true)
        } else {
            (from.iter().zip(&delta).map(|(f, x)| f + lambda * x).collect(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm() -> Supervisor {
        Supervisor::new(
            SupervisorConfig::new(200),
            RampLimits {
                velocity: vec![1.0, 2.0],
                horizontal_speed: None,
            },
        )
        .unwrap()
    }

    fn drone() -> Supervisor {
        let config = SupervisorConfig {
            land_after_ms: Some(1000),
            descent_rate: 0.5,
            ..SupervisorConfig::new(200)
        };
        Supervisor::new(
            config,
            RampLimits {
                velocity: vec![4.0, 4.0, 2.0, 1.0],
                horizontal_speed: Some(3.0),
            },
        )
        .unwrap()
    }

    /// Steps like a driver would: feeds every output back.
    fn run(s: &mut Supervisor, now: f64, dt: f64, target: Option<&[f64]>, queue_end: Option<f64>) -> Command {
        let c = s.step(now, dt, target, queue_end);
        if let Some(p) = c.position() {
            s.observe_output(p);
        }
        c
    }

    #[test]
    fn starts_disengaged_and_idle() {
        let mut s = arm();
        assert_eq!(s.state(), SupervisorState::Disengaged);
        assert_eq!(run(&mut s, 0.0, 0.0, Some(&[1.0, 1.0]), Some(5.0)), Command::Idle);
    }

    #[test]
    fn engage_ramp_never_exceeds_the_velocity_limit() {
        let mut s = arm();
        s.engage(&[0.0, 0.0], 0.0).unwrap();
        let dt = 0.002;
        let mut prev = vec![0.0, 0.0];
        let mut k = 0;
        // Target moving away at 0.1/s in dim 0, far away in dim 1.
        while s.state() != SupervisorState::Engaged {
            k += 1;
            assert!(k < 10_000, "never engaged");
            let now = k as f64 * dt;
            let target = [0.5 + 0.1 * now, -1.5];
            let c = run(&mut s, now, dt, Some(&target), Some(now + 1.0));
            let p = c.position().unwrap().to_vec();
            assert!(
                (p[0] - prev[0]).abs() <= 0.5 * 1.0 * dt * (1.0 + 1e-12),
                "dim 0 step at {now}"
            );
            assert!(
                (p[1] - prev[1]).abs() <= 0.5 * 2.0 * dt * (1.0 + 1e-12),
                "dim 1 step at {now}"
            );
            // Straight line toward the target.
            prev = p;
        }
        // Dim 1 (1.5 at 1.0/s) is the slow axis: at least 1.5 s; a little more because the moving dim-0 target
        // bends the line and dim 0 binds near the end.
        let t = k as f64 * dt;
        assert!((1.5..1.65).contains(&t), "engaged after {t} s");
        let now = (k + 1) as f64 * dt;
        assert_eq!(
            run(&mut s, now, dt, Some(&[7.0, 7.0]), Some(now + 1.0)),
            Command::Position(vec![7.0, 7.0])
        );
    }

    #[test]
    fn engage_with_no_target_holds_the_current_position() {
        let mut s = arm();
        s.engage(&[0.3, 0.4], 0.0).unwrap();
        assert_eq!(run(&mut s, 0.01, 0.01, None, None), Command::Hold(vec![0.3, 0.4]));
        assert_eq!(s.state(), SupervisorState::Engaging);
    }

    #[test]
    fn watchdog_holds_exactly_after_hold_after_ms_and_resumes_with_a_ramp() {
        let mut s = arm();
        s.engage(&[0.0, 0.0], 0.0).unwrap();
        s.feed(0.0);
        run(&mut s, 0.001, 0.001, Some(&[0.0, 0.0]), Some(1.0));
        assert_eq!(s.state(), SupervisorState::Engaged);
        // Queue ends at 1.0, no new chunk: valid until 1.0, hold from 1.2.
        assert_eq!(
            run(&mut s, 1.199, 0.001, Some(&[0.1, 0.1]), Some(1.0)),
            Command::Position(vec![0.1, 0.1])
        );
        assert_eq!(
            run(&mut s, 1.2, 0.001, Some(&[0.1, 0.1]), Some(1.0)),
            Command::Hold(vec![0.1, 0.1])
        );
        assert_eq!(s.state(), SupervisorState::Holding);
        assert_eq!(s.counters().watchdog_holds, 1);
        // An arm never lands.
        assert_eq!(
            run(&mut s, 100.0, 0.001, Some(&[0.1, 0.1]), Some(1.0)),
            Command::Hold(vec![0.1, 0.1])
        );
        // A new chunk: ramp back (never a jump) to the new target.
        s.feed(100.0);
        let c = run(&mut s, 100.001, 0.001, Some(&[1.1, 0.1]), Some(101.0));
        assert_eq!(s.state(), SupervisorState::Engaging);
        assert!((c.position().unwrap()[0] - 0.1005).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn watchdog_counts_from_the_last_chunk_when_the_queue_ends_earlier() {
        let mut s = arm();
        s.engage(&[0.0, 0.0], 0.0).unwrap();
        run(&mut s, 0.0, 0.0, Some(&[0.0, 0.0]), Some(0.5));
        s.feed(2.0);
        assert!(matches!(
            run(&mut s, 2.19, 0.01, Some(&[0.0, 0.0]), Some(0.5)),
            Command::Position(_)
        ));
        assert!(matches!(
            run(&mut s, 2.2, 0.01, Some(&[0.0, 0.0]), Some(0.5)),
            Command::Hold(_)
        ));
    }

    #[test]
    fn drone_holds_then_lands_then_disarms() {
        let mut s = drone();
        s.engage(&[1.0, 2.0, 3.0, 0.5], 10.0).unwrap();
        run(&mut s, 10.0, 0.0, Some(&[1.0, 2.0, 3.0, 0.5]), Some(10.5));
        assert_eq!(s.state(), SupervisorState::Engaged);
        let dt: f64 = 0.01;
        let mut now: f64 = 10.0;
        let mut land_started = None;
        let mut landed = None;
        while now < 30.0 {
            now = 10.0 + (((now - 10.0) / dt).round() + 1.0) * dt;
            let c = run(&mut s, now, dt, Some(&[1.0, 2.0, 3.0, 0.5]), Some(10.5));
            match &c {
                Command::Position(_) => assert!(now < 10.7 - 1e-9, "position at {now}"),
                Command::Hold(p) => {
                    assert!((10.7 - 1e-9..11.5 - 1e-9).contains(&now), "hold at {now}");
                    assert_eq!(p, &vec![1.0, 2.0, 3.0, 0.5]);
                }
                Command::Land { position, descent_rate } => {
                    land_started.get_or_insert(now);
                    assert_eq!(*descent_rate, 0.5);
                    assert_eq!(&position[..2], &[1.0, 2.0]);
                    assert_eq!(position[3], 0.5);
                }
                Command::Idle => {
                    landed.get_or_insert(now);
                }
            }
        }
        let land_started = land_started.unwrap();
        assert!((land_started - 11.5).abs() < 1e-6, "land at {land_started}");
        // 3 m at 0.5 m/s: 6 s, then one more step to notice the ground.
        let landed = landed.unwrap();
        assert!((landed - (11.5 + 6.0)).abs() < 0.02 + 1e-6, "landed at {landed}");
        assert_eq!(s.state(), SupervisorState::Landed);
        assert_eq!(s.last_output().unwrap()[2], 0.0);
        // New chunks do not restart it; engage does.
        s.feed(40.0);
        assert_eq!(
            run(&mut s, 40.0, dt, Some(&[1.0, 2.0, 3.0, 0.5]), Some(41.0)),
            Command::Idle
        );
        s.engage(&[1.0, 2.0, 0.0, 0.5], 40.0).unwrap();
        assert_eq!(s.state(), SupervisorState::Engaging);
        assert_eq!(s.counters().landings_completed, 1);
    }

    #[test]
    fn estop_latches_until_reset_and_reset_requires_engage() {
        let mut s = arm();
        s.engage(&[0.0, 0.0], 0.0).unwrap();
        s.feed(0.0);
        run(&mut s, 0.01, 0.01, Some(&[0.0, 0.0]), Some(5.0));
        s.estop();
        for k in 0..100 {
            let now = 0.02 + k as f64 * 0.01;
            s.feed(now);
            assert_eq!(
                run(&mut s, now, 0.01, Some(&[0.5, 0.5]), Some(now + 1.0)),
                Command::Hold(vec![0.0, 0.0])
            );
        }
        assert_eq!(s.engage(&[0.0, 0.0], 1.1), Err(EngageError::EStopped));
        s.disengage();
        assert!(s.is_estopped(), "disengage does not clear the latch");
        s.estop_reset();
        assert_eq!(s.state(), SupervisorState::Disengaged);
        s.feed(1.2);
        assert_eq!(
            run(&mut s, 1.2, 0.01, Some(&[0.5, 0.5]), Some(3.0)),
            Command::Hold(vec![0.0, 0.0])
        );
        s.engage(&[0.0, 0.0], 1.2).unwrap();
        let c = run(&mut s, 1.21, 0.01, Some(&[0.5, 0.5]), Some(3.0));
        assert!(
            c.position().unwrap()[0] <= 0.005 + 1e-12,
            "ramps after re-engage: {c:?}"
        );
        assert_eq!(s.counters().estops, 1);
    }

    #[test]
    fn config_validation() {
        let mut c = SupervisorConfig::new(500);
        c.land_after_ms = Some(100);
        assert_eq!(c.validate().unwrap_err().key, "land_after_ms");
        let c = SupervisorConfig {
            engage_velocity_scale: 1.5,
            ..SupervisorConfig::new(500)
        };
        assert_eq!(c.validate().unwrap_err().key, "engage_velocity_scale");
        let c = SupervisorConfig {
            descent_rate: 0.0,
            ..SupervisorConfig::new(500)
        };
        assert_eq!(c.validate().unwrap_err().key, "descent_rate");
        let parsed: SupervisorConfig = toml::from_str("hold_after_ms = 150\nland_after_ms = 2000\n").unwrap();
        assert_eq!(parsed.land_after_ms, Some(2000));
        assert!(toml::from_str::<SupervisorConfig>("hold_after_ms = 150\nhold_ms = 3\n").is_err());
    }
}
