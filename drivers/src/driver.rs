//! [`Driver`]: executor → supervisor → safety envelope, one call per control step.
//!
//! ```
//! use riptide_drivers::{Chunk, Command, Driver, DriverConfig};
//!
//! let config: DriverConfig = toml::from_str(r#"
//!     [executor]
//!     interpolation = "cubic"
//!     switching = { policy = "crossfade", window_s = 0.1 }
//!     [safety]
//!     position_min = [-1.0, -1.0]
//!     position_max = [1.0, 1.0]
//!     max_velocity = [2.0, 2.0]
//!     [supervisor]
//!     hold_after_ms = 200
//! "#).unwrap();
//! let mut driver = Driver::new(config).unwrap();
//! driver.engage(&[0.0, 0.0], 0.0).unwrap();
//! driver.on_chunk(&Chunk::uniform(0.1, 0.1, vec![vec![0.1, 0.0], vec![0.2, 0.0]]), 0.0).unwrap();
//! for k in 1..=500 {
//!     let command = driver.step(k as f64 * 0.002); // 500 Hz
//!     assert!(matches!(command, Command::Position(_) | Command::Hold(_)));
//! }
//! ```

use serde::{Deserialize, Serialize};

use crate::chunk::{Chunk, Command};
use crate::executor::{ChunkExecutor, ChunkRejected, ExecutorConfig, ExecutorCounters, PushReport};
use crate::safety::{SafetyConfig, SafetyEnvelope, ViolationCounters, ViolationMode, Violations};
use crate::supervisor::{EngageError, RampLimits, Supervisor, SupervisorConfig, SupervisorCounters, SupervisorState};
use crate::validate::ConfigError;

/// Whole driver configuration (e.g. a `[driver]` table of a TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// Interpolation and switching (defaults: linear, replace).
    #[serde(default)]
    pub executor: ExecutorConfig,
    /// Safety envelope; its `position_min` sets the position dimension.
    pub safety: SafetyConfig,
    /// Engage ramp, watchdog, landing.
    pub supervisor: SupervisorConfig,
}

impl DriverConfig {
    /// Validates each part and their consistency; the error names the bad key (e.g. `safety.position_min[2]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.executor.validate().map_err(|e| e.prefixed("executor"))?;
        self.safety.validate().map_err(|e| e.prefixed("safety"))?;
        self.supervisor.validate().map_err(|e| e.prefixed("supervisor"))?;
        let s = &self.safety;
        let sup = &self.supervisor;
        if sup.land_after_ms.is_some() {
            if s.dim() < 3 {
                return Err(ConfigError::new(
                    "supervisor.land_after_ms",
                    format!("landing needs a z dimension (2); safety has {} dimensions", s.dim()),
                ));
            }
            let vz = s
                .drone
                .as_ref()
                .and_then(|d| d.max_vertical_speed)
                .unwrap_or(f64::INFINITY)
                .min(s.max_velocity[2]);
            if sup.descent_rate > vz {
                return Err(ConfigError::new(
                    "supervisor.descent_rate",
                    format!(
                        "{} exceeds the safety envelope's vertical speed limit {vz}",
                        sup.descent_rate
                    ),
                ));
            }
            let (mut lo, mut hi) = (s.position_min[2], s.position_max[2]);
            if let Some(fence) = s.drone.as_ref().and_then(|d| d.geofence.as_ref()) {
                let (flo, fhi) = fence.z_range();
                lo = lo.max(flo);
                hi = hi.min(fhi);
            }
            if sup.ground_z < lo || sup.ground_z > hi {
                return Err(ConfigError::new(
                    "supervisor.ground_z",
                    format!(
                        "{} is outside the safety envelope's z range [{lo}, {hi}]: a landing could not end",
                        sup.ground_z
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// All counters of a driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DriverCounters {
    /// Calls to [`Driver::step`].
    pub steps: u64,
    /// Chunks dropped because their first due point jumped more than `max_jump` (`Reject` mode).
    pub chunks_dropped_jump: u64,
    /// Executor counters.
    pub executor: ExecutorCounters,
    /// Safety violations by kind.
    pub safety: ViolationCounters,
    /// Supervisor counters.
    pub supervisor: SupervisorCounters,
}

/// A driver core: feed it chunks with [`on_chunk`](Self::on_chunk), call [`step`](Self::step) every control period
/// and send the returned [`Command`] to the device.
#[derive(Debug, Clone)]
pub struct Driver {
    executor: ChunkExecutor,
    envelope: SafetyEnvelope,
    supervisor: Supervisor,
    /// Latest time seen by `step`/`engage`; `dt` is measured from it, so a clock that steps back cannot widen it.
    clock_s: Option<f64>,
    last_violations: Violations,
    steps: u64,
    chunks_dropped_jump: u64,
}

impl Driver {
    /// A disengaged driver.
    pub fn new(config: DriverConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let dim = config.safety.dim();
        let executor = ChunkExecutor::new(config.executor, dim).map_err(|e| e.prefixed("executor"))?;
        let drone = config.safety.drone;
        let mut velocity = config.safety.max_velocity.clone();
        if let Some(vz) = drone.and_then(|d| d.max_vertical_speed) {
            velocity[2] = velocity[2].min(vz);
        }
        let ramp = RampLimits {
            velocity,
            horizontal_speed: drone.and_then(|d| d.max_horizontal_speed),
        };
        let supervisor = Supervisor::new(config.supervisor, ramp).map_err(|e| e.prefixed("supervisor"))?;
        let envelope = SafetyEnvelope::new(config.safety).map_err(|e| e.prefixed("safety"))?;
        Ok(Driver {
            executor,
            envelope,
            supervisor,
            clock_s: None,
            last_violations: Violations::default(),
            steps: 0,
            chunks_dropped_jump: 0,
        })
    }

    /// Position dimension.
    pub fn dim(&self) -> usize {
        self.envelope.dim()
    }

    /// A new chunk arrived at `now_s`. Points already due are dropped (counted); a chunk whose first due point
    /// jumps more than `safety.max_jump` from the running trajectory is counted and, in `Reject` mode, dropped.
    /// An accepted chunk feeds the watchdog.
    pub fn on_chunk(&mut self, chunk: &Chunk, now_s: f64) -> Result<PushReport, ChunkRejected> {
        let prepared = self.executor.prepare(chunk, now_s)?;
        let reference = self
            .executor
            .value_at(prepared.first_time_s())
            .or_else(|| self.envelope.last().map(<[f64]>::to_vec));
        if let Some(reference) = reference {
            let v = self.envelope.check_jump(&reference, prepared.first_position());
            if v.jump && self.envelope.config().on_violation == ViolationMode::Reject {
                self.chunks_dropped_jump += 1;
                return Err(ChunkRejected::Jump);
            }
        }
        let report = self.executor.commit(prepared);
        self.supervisor.feed(now_s);
        Ok(report)
    }

    /// One control step at `now_s`: executor sample → supervisor → safety envelope.
    pub fn step(&mut self, now_s: f64) -> Command {
        self.steps += 1;
        self.last_violations = Violations::default();
        if !now_s.is_finite() {
            // No usable time: nothing may move.
            return match (self.supervisor.state(), self.envelope.hold()) {
                (SupervisorState::Landed, _) | (_, None) => Command::Idle,
                (_, Some(p)) => Command::Hold(p),
            };
        }
        let dt = match self.clock_s {
            Some(t) => (now_s - t).clamp(0.0, self.envelope.config().max_dt_s),
            None => 0.0,
        };
        self.clock_s = Some(self.clock_s.map_or(now_s, |t| t.max(now_s)));
        let target = self.executor.sample(now_s);
        let queue_end = self.executor.queue_end_s();
        let command = self.supervisor.step(now_s, dt, target.as_deref(), queue_end);
        let out = match command {
            Command::Position(p) => {
                let checked = self.envelope.apply(&p, dt);
                self.last_violations = checked.violations;
                match checked.position {
                    Some(q) if checked.held => Command::Hold(q),
                    Some(q) => Command::Position(q),
                    None => Command::Idle,
                }
            }
            Command::Land { position, descent_rate } => {
                let checked = self.envelope.apply(&position, dt);
                self.last_violations = checked.violations;
                match checked.position {
                    Some(q) if checked.held => Command::Hold(q),
                    Some(q) => Command::Land {
                        position: q,
                        descent_rate,
                    },
                    None => Command::Idle,
                }
            }
            Command::Hold(_) => self.envelope.hold().map_or(Command::Idle, Command::Hold),
            Command::Idle => Command::Idle,
        };
        if let Some(p) = out.position() {
            self.supervisor.observe_output(p);
        }
        out
    }

    /// Engage from the device's measured `current` position at `now_s`: the output ramps from there to the
    /// commanded trajectory. Refused while e-stopped, or if `current` is non-finite or outside the safety envelope;
    /// a no-op while already engaging or engaged.
    pub fn engage(&mut self, current: &[f64], now_s: f64) -> Result<(), EngageError> {
        match self.supervisor.state() {
            SupervisorState::EStopped => return Err(EngageError::EStopped),
            SupervisorState::Engaging | SupervisorState::Engaged => return Ok(()),
            _ => {}
        }
        if !now_s.is_finite() {
            return Err(EngageError::NonFinite);
        }
        self.envelope.reset(current)?;
        self.supervisor.engage(current, now_s)?;
        self.clock_s = Some(self.clock_s.map_or(now_s, |t| t.max(now_s)));
        Ok(())
    }

    /// Stop following commands; the output holds.
    pub fn disengage(&mut self) {
        self.supervisor.disengage();
    }

    /// Latch the e-stop: the output holds (a drone hovers) whatever arrives, until [`estop_reset`](Self::estop_reset).
    pub fn estop(&mut self) {
        self.supervisor.estop();
    }

    /// Clear the e-stop; the driver is then disengaged and must be engaged again.
    pub fn estop_reset(&mut self) {
        self.supervisor.estop_reset();
    }

    /// Supervisor state.
    pub fn state(&self) -> SupervisorState {
        self.supervisor.state()
    }

    /// Seconds of commands still queued after `now_s` (publish this for on-demand inference triggering).
    pub fn queued_s(&self, now_s: f64) -> f64 {
        self.executor.queued_s(now_s)
    }

    /// What the last [`step`](Self::step)'s command violated (for logging).
    pub fn last_violations(&self) -> Violations {
        self.last_violations
    }

    /// All counters.
    pub fn counters(&self) -> DriverCounters {
        DriverCounters {
            steps: self.steps,
            chunks_dropped_jump: self.chunks_dropped_jump,
            executor: self.executor.counters(),
            safety: self.envelope.counters(),
            supervisor: self.supervisor.counters(),
        }
    }

    /// The chunk executor.
    pub fn executor(&self) -> &ChunkExecutor {
        &self.executor
    }

    /// The safety envelope.
    pub fn envelope(&self) -> &SafetyEnvelope {
        &self.envelope
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM: &str = r#"
        [executor]
        interpolation = "linear"
        switching = { policy = "replace" }
        [safety]
        position_min = [-1.0, -1.0]
        position_max = [1.0, 1.0]
        max_velocity = [1.0, 1.0]
        max_jump = [0.2, 0.2]
        [supervisor]
        hold_after_ms = 200
    "#;

    const DRONE: &str = r#"
        [executor]
        interpolation = "cubic"
        switching = { policy = "temporal_ensemble", decay = 0.01 }
        [safety]
        position_min = [-50.0, -50.0, 0.0, -3.2]
        position_max = [50.0, 50.0, 30.0, 3.2]
        max_velocity = [5.0, 5.0, 2.0, 1.0]
        [safety.drone]
        max_horizontal_speed = 4.0
        max_vertical_speed = 1.5
        max_tilt_deg = 30.0
        geofence = { shape = "cylinder", center = [0.0, 0.0], radius = 20.0, z_min = 0.0, z_max = 10.0 }
        [supervisor]
        hold_after_ms = 300
        land_after_ms = 2000
        descent_rate = 1.0
    "#;

    fn driver(text: &str) -> Driver {
        Driver::new(toml::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn arm_tracks_a_chunk_and_reports_queued_time() {
        let mut d = driver(ARM);
        assert_eq!(d.step(0.0), Command::Idle);
        d.engage(&[0.0, 0.0], 0.0).unwrap();
        let chunk = Chunk::uniform(0.0, 0.1, (0..10).map(|i| vec![0.04 * i as f64, 0.0]).collect());
        d.on_chunk(&chunk, 0.0).unwrap();
        assert!((d.queued_s(0.0) - 0.9).abs() < 1e-12);
        let mut last = None;
        for k in 1..=450 {
            last = Some(d.step(k as f64 * 0.002));
        }
        assert_eq!(d.state(), SupervisorState::Engaged);
        let p = last.unwrap().position().unwrap().to_vec();
        assert!((p[0] - 0.36).abs() < 1e-9, "{p:?}");
        assert!((d.queued_s(0.9) - 0.0).abs() < 1e-12);
        // 0.9 + 0.2: watchdog.
        assert!(matches!(d.step(1.099), Command::Position(_)));
        assert!(matches!(d.step(1.1), Command::Hold(_)));
    }

    #[test]
    fn reject_mode_drops_jumping_chunks() {
        let text = ARM.replace(
            "max_jump = [0.2, 0.2]",
            "max_jump = [0.2, 0.2]\non_violation = \"reject\"",
        );
        let mut d = driver(&text);
        d.engage(&[0.0, 0.0], 0.0).unwrap();
        d.on_chunk(&Chunk::uniform(0.0, 0.1, vec![vec![0.0, 0.0]; 10]), 0.0)
            .unwrap();
        let jump = Chunk::uniform(0.5, 0.1, vec![vec![0.5, 0.0]; 10]);
        assert_eq!(d.on_chunk(&jump, 0.3), Err(ChunkRejected::Jump));
        let small = Chunk::uniform(0.5, 0.1, vec![vec![0.1, 0.0]; 10]);
        assert!(d.on_chunk(&small, 0.3).is_ok());
        let c = d.counters();
        assert_eq!((c.chunks_dropped_jump, c.safety.jump), (1, 1));
        // In clamp mode the jump is counted but the chunk is used, rate-limited.
        let mut d = driver(ARM);
        d.engage(&[0.0, 0.0], 0.0).unwrap();
        d.on_chunk(&Chunk::uniform(0.0, 0.1, vec![vec![0.0, 0.0]; 10]), 0.0)
            .unwrap();
        assert!(d.on_chunk(&jump, 0.3).is_ok());
        assert_eq!(d.counters().safety.jump, 1);
    }

    #[test]
    fn estop_latches_through_chunks_until_reset_then_needs_engage() {
        let mut d = driver(ARM);
        d.engage(&[0.0, 0.0], 0.0).unwrap();
        d.on_chunk(&Chunk::uniform(0.0, 0.1, vec![vec![0.0, 0.0]; 10]), 0.0)
            .unwrap();
        d.step(0.01);
        d.estop();
        for k in 0..100 {
            let now = 0.02 + 0.01 * k as f64;
            let ramp: Vec<Vec<f64>> = (0..10).map(|i| vec![0.01 * i as f64, 0.0]).collect();
            d.on_chunk(&Chunk::uniform(now, 0.1, ramp), now).unwrap();
            assert_eq!(d.step(now), Command::Hold(vec![0.0, 0.0]));
        }
        assert_eq!(d.engage(&[0.0, 0.0], 1.1), Err(EngageError::EStopped));
        d.estop_reset();
        assert_eq!(d.state(), SupervisorState::Disengaged);
        assert_eq!(d.step(1.12), Command::Hold(vec![0.0, 0.0]));
        d.engage(&[0.0, 0.0], 1.12).unwrap();
        assert!(matches!(d.step(1.13), Command::Position(_)));
    }

    #[test]
    fn engage_outside_the_envelope_is_refused() {
        let mut d = driver(ARM);
        assert_eq!(d.engage(&[1.5, 0.0], 0.0), Err(EngageError::OutsideEnvelope));
        assert_eq!(d.engage(&[0.0, f64::NAN], 0.0), Err(EngageError::NonFinite));
        assert_eq!(d.engage(&[0.0, 0.0], f64::NAN), Err(EngageError::NonFinite));
        assert_eq!(d.state(), SupervisorState::Disengaged);
    }

    #[test]
    fn drone_hovers_then_lands_inside_the_fence() {
        let mut d = driver(DRONE);
        d.engage(&[1.0, 1.0, 0.0, 0.0], 0.0).unwrap();
        let up: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![1.0, 1.0, (0.1 * i as f64).min(1.0), 0.0])
            .collect();
        d.on_chunk(&Chunk::uniform(0.0, 0.1, up), 0.0).unwrap();
        let dt = 0.02;
        let mut saw = (false, false, false);
        let mut prev_z = 0.0;
        for k in 1..=500 {
            let now = k as f64 * dt;
            let c = d.step(now);
            match &c {
                Command::Position(p) => {
                    assert!(now < 1.9 + 0.3 + 1e-9);
                    prev_z = p[2];
                }
                Command::Hold(p) => {
                    saw.0 = true;
                    assert!((2.2 - 1e-9..3.9 - 1e-9).contains(&now), "hold at {now}");
                    assert_eq!(p[2], prev_z);
                }
                Command::Land { position, .. } => {
                    saw.1 = true;
                    assert!(now >= 3.9 - 1e-9);
                    assert!(position[2] <= prev_z && prev_z - position[2] <= 1.0 * dt + 1e-12);
                    prev_z = position[2];
                }
                Command::Idle => {
                    saw.2 = true;
                    assert_eq!(prev_z, 0.0);
                }
            }
        }
        assert_eq!(saw, (true, true, true));
        assert_eq!(d.state(), SupervisorState::Landed);
        assert_eq!(d.counters().safety.total(), 0, "{:?}", d.counters().safety);
    }

    #[test]
    fn config_validation_names_keys() {
        let mut c: DriverConfig = toml::from_str(ARM).unwrap();
        c.safety.position_min[1] = 2.0;
        assert_eq!(Driver::new(c).unwrap_err().key, "safety.position_min[1]");
        let mut c: DriverConfig = toml::from_str(DRONE).unwrap();
        c.supervisor.descent_rate = 1.6;
        assert_eq!(Driver::new(c).unwrap_err().key, "supervisor.descent_rate");
        let mut c: DriverConfig = toml::from_str(DRONE).unwrap();
        c.supervisor.ground_z = -1.0;
        assert_eq!(Driver::new(c).unwrap_err().key, "supervisor.ground_z");
        let mut c: DriverConfig = toml::from_str(ARM).unwrap();
        c.supervisor.land_after_ms = Some(1000);
        assert_eq!(Driver::new(c).unwrap_err().key, "supervisor.land_after_ms");
        let mut c: DriverConfig = toml::from_str(ARM).unwrap();
        c.executor.switching = crate::executor::Switching::Crossfade { window_s: -1.0 };
        assert_eq!(Driver::new(c).unwrap_err().key, "executor.switching.window_s");
        let err = toml::from_str::<DriverConfig>(&ARM.replace("[supervisor]", "[supervisor]\nwatchdog_ms = 3"));
        assert!(err.unwrap_err().to_string().contains("watchdog_ms"));
        let err = toml::from_str::<DriverConfig>(&ARM.replace(
            "{ policy = \"replace\" }",
            "{ policy = \"crossfade\", window_s = 0.1, decay = 1 }",
        ));
        assert!(err.unwrap_err().to_string().contains("decay"));
        let err =
            toml::from_str::<DriverConfig>(&ARM.replace("{ policy = \"replace\" }", "{ policy = \"replace\", x = 1 }"));
        assert!(err.is_err(), "unknown key in a unit-like switching policy");
    }
}
