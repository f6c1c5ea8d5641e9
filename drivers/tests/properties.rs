//! Property tests: whatever chunks, clock and operator events arrive, every position the driver emits is finite,
//! inside the position limits and geofence, and within the velocity (and drone speed) limits of the previous one.

use proptest::prelude::*;
use riptide_drivers::{
    Chunk, ChunkExecutor, ChunkPoint, Command, Driver, DriverConfig, DroneLimits, ExecutorConfig, Geofence,
    Interpolation, SafetyConfig, SafetyEnvelope, SupervisorConfig, SupervisorState, Switching, ViolationMode,
};

/// Absolute slack on the velocity checks (rounding of `prev + step`).
const EPS: f64 = 1e-9;

#[derive(Debug, Clone)]
enum Event {
    /// Advance the clock by this much (may be 0 or negative) and step.
    Step(f64),
    /// A chunk due `t0_offset` after now.
    Chunk {
        t0_offset: f64,
        times: Vec<f64>,
        values: Vec<Vec<f64>>,
    },
    /// Engage at this position, given as fractions of the position box (a little outside it at times).
    Engage(Vec<f64>),
    Disengage,
    EStop,
    EStopReset,
}

/// A plausible position value: mostly near the limits, sometimes far outside.
fn clean_value() -> impl Strategy<Value = f64> {
    prop_oneof![4 => -2.0..2.0f64, 1 => -60.0..60.0f64]
}

/// Anything, including NaN, ±Inf and huge values.
fn wild_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => clean_value(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e300),
        1 => Just(-1e300),
        1 => Just(f64::MAX),
        1 => any::<f64>(),
    ]
}

fn times(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        // Increasing, random spacing.
        4 => prop::collection::vec(0.001..0.2f64, n).prop_map(|steps| {
            steps.iter().scan(0.0, |t, s| { *t += s; Some(*t - steps[0]) }).collect()
        }),
        // Anything: out of order, repeated, negative.
        1 => prop::collection::vec(-0.3..0.5f64, n),
    ]
}

fn event(dim: usize) -> impl Strategy<Value = Event> {
    let chunk =
        (1usize..10, -0.5..1.0f64, prop::bool::weighted(0.05)).prop_flat_map(move |(n, t0_offset, wrong_dim)| {
            let d = if wrong_dim { dim + 1 } else { dim };
            // Most chunks are clean, the rest carry NaN/±Inf/huge values here and there.
            let values = prop_oneof![
                3 => prop::collection::vec(prop::collection::vec(clean_value(), d), n),
                1 => prop::collection::vec(prop::collection::vec(wild_value(), d), n),
            ];
            (times(n), values).prop_map(move |(times, values)| Event::Chunk {
                t0_offset,
                times,
                values,
            })
        });
    prop_oneof![
        30 => prop_oneof![
            4 => 0.0..0.03f64,
            1 => Just(0.0),
            1 => -0.05..0.0f64,
            1 => 0.1..2.0f64,
        ].prop_map(Event::Step),
        8 => chunk,
        3 => prop::collection::vec(-0.1..1.1f64, dim).prop_map(Event::Engage),
        1 => Just(Event::Disengage),
        1 => Just(Event::EStop),
        3 => Just(Event::EStopReset),
    ]
}

fn executor_config() -> impl Strategy<Value = ExecutorConfig> {
    let interpolation = prop_oneof![Just(Interpolation::Linear), Just(Interpolation::Cubic)];
    let switching = prop_oneof![
        Just(Switching::Replace {}),
        (0.0..0.5f64).prop_map(|window_s| Switching::Crossfade { window_s }),
        (-1.0..1.0f64).prop_map(|decay| Switching::TemporalEnsemble { decay }),
    ];
    (interpolation, switching).prop_map(|(interpolation, switching)| ExecutorConfig {
        interpolation,
        switching,
    })
}

fn mode() -> impl Strategy<Value = ViolationMode> {
    prop_oneof![Just(ViolationMode::Clamp), Just(ViolationMode::Reject)]
}

fn arm_config() -> impl Strategy<Value = DriverConfig> {
    (executor_config(), mode(), any::<bool>(), any::<bool>(), 50u64..400).prop_map(
        |(executor, on_violation, accel, jump, hold_after_ms)| DriverConfig {
            executor,
            safety: SafetyConfig {
                position_min: vec![-1.0, -0.5, 0.0],
                position_max: vec![1.0, 0.5, 2.0],
                max_velocity: vec![1.0, 0.5, 3.0],
                max_acceleration: accel.then(|| vec![10.0, 5.0, 30.0]),
                max_jump: jump.then(|| vec![0.3, 0.3, 0.3]),
                max_dt_s: 0.05,
                on_violation,
                drone: None,
            },
            supervisor: SupervisorConfig::new(hold_after_ms),
        },
    )
}

fn drone_config() -> impl Strategy<Value = DriverConfig> {
    let fence = prop_oneof![
        Just(Geofence::Box {
            min: [-5.0, -5.0, 0.0],
            max: [5.0, 5.0, 8.0]
        }),
        Just(Geofence::Cylinder {
            center: [1.0, -1.0],
            radius: 6.0,
            z_min: 0.0,
            z_max: 8.0
        }),
    ];
    (
        executor_config(),
        mode(),
        any::<bool>(),
        any::<bool>(),
        fence,
        50u64..400,
        0u64..1500,
    )
        .prop_map(
            |(executor, on_violation, accel, tilt, geofence, hold_after_ms, extra)| DriverConfig {
                executor,
                safety: SafetyConfig {
                    position_min: vec![-6.0, -6.0, 0.0, -3.2],
                    position_max: vec![6.0, 6.0, 10.0, 3.2],
                    max_velocity: vec![4.0, 4.0, 2.0, 1.5],
                    max_acceleration: accel.then(|| vec![8.0, 8.0, 4.0, 3.0]),
                    max_jump: None,
                    max_dt_s: 0.1,
                    on_violation,
                    drone: Some(DroneLimits {
                        geofence: Some(geofence),
                        max_horizontal_speed: Some(3.0),
                        max_vertical_speed: Some(1.5),
                        max_tilt_deg: tilt.then_some(25.0),
                    }),
                },
                supervisor: SupervisorConfig {
                    land_after_ms: Some(hold_after_ms + extra),
                    descent_rate: 1.0,
                    ..SupervisorConfig::new(hold_after_ms)
                },
            },
        )
}

fn inside_fence(fence: &Geofence, p: &[f64]) -> bool {
    match *fence {
        Geofence::Box { min, max } => (0..3).all(|d| p[d] >= min[d] && p[d] <= max[d]),
        Geofence::Cylinder {
            center,
            radius,
            z_min,
            z_max,
        } => (p[0] - center[0]).hypot(p[1] - center[1]) <= radius * (1.0 + 1e-12) && p[2] >= z_min && p[2] <= z_max,
    }
}

/// Runs the events and checks every emitted command.
fn check(config: DriverConfig, events: Vec<Event>) -> Result<(), TestCaseError> {
    let safety = config.safety.clone();
    let dim = safety.dim();
    let mut driver = Driver::new(config).expect("valid config");
    let mut now = 100.0;
    // Mirror of the driver's clock: dt is measured from the latest time seen.
    let mut clock: Option<f64> = None;
    let mut prev: Option<Vec<f64>> = None;
    let mut estopped = false;
    for (i, event) in events.into_iter().enumerate() {
        match event {
            Event::Step(delta) => {
                now += delta;
                let dt = clock.map_or(0.0, |c| (now - c).clamp(0.0, safety.max_dt_s));
                clock = Some(clock.map_or(now, |c: f64| c.max(now)));
                let command = driver.step(now);
                if estopped {
                    prop_assert!(
                        matches!(command, Command::Hold(_) | Command::Idle),
                        "event {i}: {command:?} while e-stopped"
                    );
                }
                let Some(p) = command.position() else { continue };
                prop_assert_eq!(p.len(), dim);
                prop_assert!(p.iter().all(|x| x.is_finite()), "event {}: non-finite {:?}", i, p);
                for d in 0..dim {
                    prop_assert!(
                        p[d] >= safety.position_min[d] && p[d] <= safety.position_max[d],
                        "event {}: {:?} outside the limits in dim {}",
                        i,
                        p,
                        d
                    );
                }
                if let Some(fence) = safety.drone.as_ref().and_then(|d| d.geofence.as_ref()) {
                    prop_assert!(inside_fence(fence, p), "event {}: {:?} outside the geofence", i, p);
                }
                let before = prev.as_ref().expect("a position is only emitted after an engage");
                for d in 0..dim {
                    let step = (p[d] - before[d]).abs();
                    prop_assert!(
                        step <= safety.max_velocity[d] * dt + EPS,
                        "event {}: dim {} moved {} in dt {} (limit {})",
                        i,
                        d,
                        step,
                        dt,
                        safety.max_velocity[d] * dt
                    );
                }
                if let Some(drone) = &safety.drone {
                    let h = (p[0] - before[0]).hypot(p[1] - before[1]);
                    prop_assert!(
                        h <= drone.max_horizontal_speed.unwrap() * dt + EPS,
                        "event {i}: horizontal {h} in {dt}"
                    );
                    let v = (p[2] - before[2]).abs();
                    prop_assert!(
                        v <= drone.max_vertical_speed.unwrap() * dt + EPS,
                        "event {i}: vertical {v} in {dt}"
                    );
                }
                if estopped {
                    prop_assert_eq!(p, before.as_slice(), "event {}: moved while e-stopped", i);
                }
                prev = Some(p.to_vec());
            }
            Event::Chunk {
                t0_offset,
                times,
                values,
            } => {
                let chunk = Chunk {
                    t0_s: now + t0_offset,
                    points: times
                        .into_iter()
                        .zip(values)
                        .map(|(time_from_start_s, position)| ChunkPoint {
                            time_from_start_s,
                            position,
                        })
                        .collect(),
                };
                let _ = driver.on_chunk(&chunk, now);
            }
            Event::Engage(fractions) => {
                let position: Vec<f64> = (0..dim)
                    .map(|d| safety.position_min[d] + fractions[d] * (safety.position_max[d] - safety.position_min[d]))
                    .collect();
                let state = driver.state();
                let result = driver.engage(&position, now);
                match state {
                    SupervisorState::EStopped => prop_assert!(result.is_err()),
                    SupervisorState::Engaging | SupervisorState::Engaged => prop_assert!(result.is_ok()),
                    _ => {
                        prop_assert_eq!(
                            result.is_ok(),
                            driver.envelope().contains(&position),
                            "engage at {:?}",
                            position
                        );
                        if result.is_ok() {
                            prev = Some(position);
                            clock = Some(clock.map_or(now, |c: f64| c.max(now)));
                        }
                    }
                }
            }
            Event::Disengage => driver.disengage(),
            Event::EStop => {
                driver.estop();
                estopped = true;
            }
            Event::EStopReset => {
                driver.estop_reset();
                if estopped {
                    prop_assert_eq!(driver.state(), SupervisorState::Disengaged);
                }
                estopped = false;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arm_commands_never_leave_the_envelope(
        config in arm_config(),
        events in prop::collection::vec(event(3), 1..120),
    ) {
        check(config, events)?;
    }

    #[test]
    fn drone_commands_never_leave_the_envelope(
        config in drone_config(),
        events in prop::collection::vec(event(4), 1..120),
    ) {
        check(config, events)?;
    }

    /// Mostly valid chunks and a running control loop (with the odd late step), so the engaged tracking paths get
    /// exercised, not only the guards.
    #[test]
    fn engaged_tracking_stays_in_the_envelope(
        config in prop_oneof![arm_config(), drone_config()],
        chunks in prop::collection::vec(
            (
                0.0..0.3f64,
                prop::collection::vec(-8.0..8.0f64, 4 * 12),
                prop::collection::vec(prop_oneof![8 => 0.002..0.02f64, 1 => 0.05..0.3f64], 25),
            ),
            1..12,
        ),
        start in prop::collection::vec(0.2..0.8f64, 4),
    ) {
        let dim = config.safety.dim();
        let mut events = vec![Event::Engage(start[..dim].to_vec())];
        for (offset, values, steps) in chunks {
            let values: Vec<Vec<f64>> = values.chunks(4).map(|v| v[..dim].to_vec()).collect();
            let times = (0..values.len()).map(|i| i as f64 * 0.1).collect();
            events.push(Event::Chunk { t0_offset: offset, times, values });
            events.extend(steps.into_iter().map(Event::Step));
        }
        check(config, events)?;
    }

    /// The envelope on its own, fed anything (NaN, ±Inf, huge values, any dt including NaN and negative).
    #[test]
    fn envelope_alone_never_emits_unsafe_commands(
        config in prop_oneof![arm_config(), drone_config()],
        start in prop::collection::vec(0.0..1.0f64, 4),
        commands in prop::collection::vec(
            (
                prop::collection::vec(wild_value(), 4),
                prop_oneof![
                    6 => 0.0..0.05f64,
                    1 => Just(0.0),
                    1 => -1.0..0.0f64,
                    1 => 0.05..5.0f64,
                    1 => Just(f64::NAN),
                    1 => Just(f64::INFINITY),
                ],
            ),
            1..200,
        ),
    ) {
        let safety = config.safety;
        let dim = safety.dim();
        let mut envelope = SafetyEnvelope::new(safety.clone()).unwrap();
        let start: Vec<f64> = (0..dim)
            .map(|d| safety.position_min[d] + start[d] * (safety.position_max[d] - safety.position_min[d]))
            .collect();
        prop_assume!(envelope.contains(&start));
        envelope.reset(&start).unwrap();
        let mut prev = start;
        for (i, (desired, dt)) in commands.into_iter().enumerate() {
            let checked = envelope.apply(&desired[..dim], dt);
            let p = checked.position.expect("reset envelope always answers");
            let dt = if dt.is_finite() { dt.clamp(0.0, safety.max_dt_s) } else { 0.0 };
            prop_assert!(p.iter().all(|x| x.is_finite()), "command {}: {:?}", i, p);
            for d in 0..dim {
                prop_assert!(p[d] >= safety.position_min[d] && p[d] <= safety.position_max[d], "command {}: {:?}", i, p);
                prop_assert!((p[d] - prev[d]).abs() <= safety.max_velocity[d] * dt + EPS, "command {}: dim {}", i, d);
            }
            if desired[..dim].iter().any(|x| !x.is_finite()) {
                prop_assert!(checked.held && checked.violations.non_finite);
                prop_assert_eq!(&p, &prev);
            }
            if let Some(drone) = &safety.drone {
                prop_assert!(inside_fence(drone.geofence.as_ref().unwrap(), &p), "command {}: {:?}", i, p);
                let h = (p[0] - prev[0]).hypot(p[1] - prev[1]);
                prop_assert!(h <= drone.max_horizontal_speed.unwrap() * dt + EPS, "command {}: horizontal", i);
                prop_assert!((p[2] - prev[2]).abs() <= drone.max_vertical_speed.unwrap() * dt + EPS);
            }
            prev = p;
        }
    }

    #[test]
    fn interpolation_is_exact_on_linear_trajectories(
        slope in -10.0..10.0f64,
        intercept in -5.0..5.0f64,
        steps in prop::collection::vec(0.001..0.3f64, 2..15),
        queries in prop::collection::vec(0.0..1.0f64, 1..30),
        cubic in any::<bool>(),
    ) {
        let interpolation = if cubic { Interpolation::Cubic } else { Interpolation::Linear };
        let mut e = ChunkExecutor::new(ExecutorConfig { interpolation, switching: Switching::default() }, 1).unwrap();
        let times: Vec<f64> = steps.iter().scan(0.0, |t, s| { let out = *t; *t += s; Some(out) }).collect();
        let chunk = Chunk {
            t0_s: 0.0,
            points: times.iter().map(|&t| ChunkPoint { time_from_start_s: t, position: vec![intercept + slope * t] }).collect(),
        };
        e.push_chunk(&chunk, 0.0).unwrap();
        let end = *times.last().unwrap();
        for q in queries {
            let t = q * end;
            let got = e.value_at(t).unwrap()[0];
            let want = intercept + slope * t;
            prop_assert!((got - want).abs() <= 1e-9 * (1.0 + want.abs()), "t={} got {} want {}", t, got, want);
        }
        for (t, p) in times.iter().zip(&chunk.points) {
            prop_assert_eq!(e.value_at(*t).unwrap()[0], p.position[0]);
        }
    }

    #[test]
    fn ensemble_of_constant_chunks_is_the_weighted_mean(
        constants in prop::collection::vec(-10.0..10.0f64, 1..6),
        decay in -1.0..1.0f64,
    ) {
        let config = ExecutorConfig { interpolation: Interpolation::Linear, switching: Switching::TemporalEnsemble { decay } };
        let mut e = ChunkExecutor::new(config, 1).unwrap();
        for (k, c) in constants.iter().enumerate() {
            // Each chunk starts 0.1 s later and covers the probe time 1.0.
            let t0 = 0.1 * k as f64;
            e.push_chunk(&Chunk::uniform(t0, 0.05, vec![vec![*c]; 40]), t0).unwrap();
        }
        let (num, den) = constants.iter().enumerate().fold((0.0, 0.0), |(n, d), (i, c)| {
            let w = (-decay * i as f64).exp();
            (n + w * c, d + w)
        });
        let got = e.value_at(1.0).unwrap()[0];
        prop_assert!((got - num / den).abs() <= 1e-9 * (1.0 + got.abs()), "got {} want {}", got, num / den);
    }
}
