//! Embodiment-aware guidance (EADP; see docs/drivers.md, "EADP guidance") wired into sampling. When riptide
//! hosts the drone driver in-process (lockstep daemon, `riptide demo`, `riptide eval`), the driver's
//! controller model ([`riptide_drivers::EadpGuidance`]) is asked after every denoising step for the
//! tracking cost of the candidate chunk and its gradient, and the sample moves down it:
//! `x ← x − λ_t · clip(∇_x J)`, `λ_t = scale · ᾱ_t`, in the policy's normalised action space exactly
//! as the reference does (the gradient is chained through the action normalisation and clipped per
//! waypoint there). ᾱ_t is the signal level the step moved to, so guidance is weak while the sample
//! is mostly noise and strongest on the final, clean chunk.
//!
//! Only the part of the chunk the driver will execute (from `exec_start`) is costed: the rollout
//! starts at the newest observed drone state (position, velocity, yaw: the `quadrotor` sim's
//! `observation.state` layout) with the setpoint at `exec_start` due first.

use riptide_drivers::{DroneState, EadpGuidance};
use riptide_policies::normalize::FeatureNorm;
use riptide_policies::{HostTensor, ObservationWindow, PolicySpec, StepHook, StepInfo};

/// Per-chunk EADP hook (one per inference).
pub struct EadpHook<'a> {
    guidance: &'a EadpGuidance,
    /// Newest drone state per batch element.
    states: Vec<DroneState>,
    norm: &'a FeatureNorm,
    /// d(world)/d(normalised) per action dimension.
    unnorm_scale: [f64; 4],
    /// For a relative-action policy: its (action, state) pairs and, per batch element, the state values
    /// its actions are offsets from.
    relative: Vec<(usize, usize)>,
    reference: Vec<Vec<f32>>,
    exec_start: usize,
    dt_s: f64,
    /// Guided steps and waypoints whose gradient was clipped.
    pub steps: usize,
    pub clipped: usize,
}

impl<'a> EadpHook<'a> {
    /// Whether guidance can apply to this policy: [`EadpHook::check_spec`], and it exposes its action
    /// normalisation (which [`EadpHook::new`] takes).
    pub fn check<'n>(spec: &PolicySpec, norm: Option<&'n FeatureNorm>) -> Result<&'n FeatureNorm, String> {
        Self::check_spec(spec)?;
        norm.ok_or_else(|| {
            format!(
                "EADP guidance needs the policy's action normalisation; a {} policy does not expose it",
                spec.kind
            )
        })
    }

    /// What the spec alone tells: the policy outputs `[x, y, z, yaw]` setpoints and observes the
    /// drone's state (all a daemon config can check before the policy is loaded).
    pub fn check_spec(spec: &PolicySpec) -> Result<(), String> {
        if spec.action_dim != 4 {
            return Err(format!(
                "EADP guidance needs [x, y, z, yaw] setpoints; this policy outputs {}-D actions",
                spec.action_dim
            ));
        }
        if !spec
            .inputs
            .iter()
            .any(|f| f.name == "observation.state" && f.shape.iter().product::<usize>() >= 7)
        {
            return Err("EADP guidance reads the drone state [x, y, z, vx, vy, vz, yaw] from a 7-D observation.state; this policy has none".into());
        }
        Ok(())
    }

    /// A hook for one inference on `window` of a policy that passed [`EadpHook::check`], whose
    /// actions are normalised by `norm`.
    pub fn new(
        guidance: &'a EadpGuidance,
        spec: &PolicySpec,
        norm: &'a FeatureNorm,
        window: &ObservationWindow,
        dt_s: f64,
    ) -> Result<Self, String> {
        let states = newest_drone_states(window)?;
        let (mut zero, mut one) = ([0.0f32; 4], [1.0f32; 4]);
        norm.unnormalize(&mut zero, 1);
        norm.unnormalize(&mut one, 1);
        let unnorm_scale = std::array::from_fn(|k| (one[k] - zero[k]) as f64);
        Ok(Self {
            guidance,
            relative: spec.relative_actions.clone(),
            reference: spec.relative_reference(window).map_err(|e| e.to_string())?,
            states,
            norm,
            unnorm_scale,
            exec_start: spec.exec_start,
            dt_s,
            steps: 0,
            clipped: 0,
        })
    }
}

/// The newest frame of `observation.state` per batch element, read as the drone's state.
fn newest_drone_states(window: &ObservationWindow) -> Result<Vec<DroneState>, String> {
    let state = window
        .features
        .get("observation.state")
        .ok_or("EADP guidance needs observation.state (position, velocity, yaw of the drone)")?;
    let [b, to, d] = state.shape[..] else {
        return Err(format!(
            "observation.state has shape {:?}, expected [batch, n_obs_steps, dim]",
            state.shape
        ));
    };
    if d < 7 || to == 0 {
        return Err(format!(
            "EADP guidance reads the drone state [x, y, z, vx, vy, vz, yaw] from observation.state; it has {d} values"
        ));
    }
    Ok((0..b)
        .map(|bi| {
            let off = (bi * to + to - 1) * d;
            let s: Vec<f64> = state.data[off..off + 7].iter().map(|v| *v as f64).collect();
            DroneState::from_state7(&s).expect("7 values")
        })
        .collect())
}

/// `[x, y, z, yaw]` setpoints from flat f32 rows.
fn setpoints(rows: &[f32]) -> Vec<[f64; 4]> {
    rows.chunks_exact(4)
        .map(|p| [p[0] as f64, p[1] as f64, p[2] as f64, p[3] as f64])
        .collect()
}

/// The controller model's tracking cost `J` of a finished chunk (batch 0, unnormalised `actions`
/// [B, H, 4], executed from `spec.exec_start`) from the newest drone state in `window`.
pub fn chunk_cost(
    guidance: &EadpGuidance,
    spec: &PolicySpec,
    window: &ObservationWindow,
    actions: &HostTensor,
    dt_s: f64,
) -> Option<f64> {
    let state = *newest_drone_states(window).ok()?.first()?;
    let [_, h, 4] = actions.shape[..] else { return None };
    if spec.exec_start >= h {
        return None;
    }
    let sp = setpoints(&actions.data[spec.exec_start * 4..h * 4]);
    Some(guidance.model().cost(&state, &sp, dt_s))
}

impl StepHook for EadpHook<'_> {
    fn after_step(&mut self, info: StepInfo, sample: &mut HostTensor) {
        let [b, h, a] = sample.shape[..] else { return };
        if a != 4 || b != self.states.len() || self.exec_start >= h {
            return;
        }
        for (bi, state) in self.states.iter().enumerate() {
            let rows = &mut sample.data[(bi * h + self.exec_start) * a..(bi + 1) * h * a];
            let mut world = rows.to_vec();
            self.norm.unnormalize(&mut world, 1);
            // A relative-action policy samples offsets: the model needs the absolute setpoints.
            if let Some(r) = self.reference.get(bi) {
                riptide_policies::policy::add_reference(&self.relative, 4, &mut world, r);
            }
            let g =
                self.guidance
                    .step_normalised(state, &setpoints(&world), self.dt_s, info.alpha_bar, self.unnorm_scale);
            self.clipped += g.clipped;
            for (row, step) in rows.chunks_exact_mut(4).zip(&g.step) {
                for k in 0..4 {
                    row[k] -= step[k] as f32;
                }
            }
        }
        self.steps += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use riptide_drivers::EadpConfig;
    use riptide_policies::normalize::{NormMode, StatsLayout};
    use riptide_policies::{FeatureKind, InputFeature};

    use super::*;

    const DT: f64 = 0.1;

    fn spec() -> PolicySpec {
        PolicySpec {
            kind: riptide_policies::PolicyKind::Diffusion,
            scheduler: None,
            inputs: vec![InputFeature {
                name: "observation.state".into(),
                kind: FeatureKind::State,
                shape: vec![7],
            }],
            action_dim: 4,
            n_obs_steps: 2,
            horizon: 16,
            exec_start: 1,
            n_action_steps: 8,
            default_nfe: 10,
            default_candidates: 1,
            num_parameters: 0,
            backend: "test".into(),
            relative_actions: Vec::new(),
        }
    }

    /// MIN_MAX over the quadrotor arena: x, y ∈ [−4.5, 4.5], z ∈ [0, 4], yaw ∈ [−π, π].
    // The arena's stats rounded as a dataset would store them, not the constant π.
    #[allow(clippy::approx_constant)]
    fn norm() -> FeatureNorm {
        let mut stats = BTreeMap::new();
        stats.insert(
            "min".into(),
            HostTensor::new(vec![4], vec![-4.5, -4.5, 0.0, -3.14159]).unwrap(),
        );
        stats.insert(
            "max".into(),
            HostTensor::new(vec![4], vec![4.5, 4.5, 4.0, 3.14159]).unwrap(),
        );
        FeatureNorm::from_stats("action", NormMode::MinMax, &stats, StatsLayout::Processor, 4).unwrap()
    }

    /// Hovering at (1, 0, 2), yaw 0, in both frames of the window.
    fn window() -> ObservationWindow {
        let frame = [1.0f32, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        let mut features = BTreeMap::new();
        features.insert(
            "observation.state".to_string(),
            HostTensor::new(vec![1, 2, 7], frame.iter().chain(&frame).copied().collect()).unwrap(),
        );
        ObservationWindow { features }
    }

    /// A normalised chunk that jumps 2 m away in x from the hover point (the drone cannot follow).
    fn jumpy_chunk(n: &FeatureNorm) -> HostTensor {
        let mut world: Vec<f32> = (0..16).flat_map(|_| [3.0f32, 0.0, 2.0, 0.0]).collect();
        n.normalize(&mut world, 1);
        HostTensor::new(vec![1, 16, 4], world).unwrap()
    }

    fn cost(g: &EadpGuidance, n: &FeatureNorm, x: &HostTensor) -> f64 {
        let mut world = x.clone();
        n.unnormalize(&mut world.data, 1);
        chunk_cost(g, &spec(), &window(), &world, DT).unwrap()
    }

    #[test]
    fn guidance_lowers_the_tracking_cost_and_leaves_past_actions() {
        let g = EadpGuidance::new(EadpConfig {
            scale: 1.0,
            ..Default::default()
        })
        .unwrap();
        let n = norm();
        let x0 = jumpy_chunk(&n);
        let mut x = x0.clone();
        let mut hook = EadpHook::new(&g, &spec(), &n, &window(), DT).unwrap();
        let before = cost(&g, &n, &x);
        let mut last = before;
        for i in 0..10 {
            hook.after_step(
                StepInfo {
                    index: i,
                    t: 0,
                    n_steps: 10,
                    alpha_bar: 1.0,
                },
                &mut x,
            );
            let c = cost(&g, &n, &x);
            // Far from the optimum the clipped steps descend; near it a fixed step may overshoot.
            if i < 5 {
                assert!(c < last, "step {i}: cost {c} did not fall below {last}");
            }
            last = c;
        }
        assert!(last < 0.2 * before, "cost {before} → {last}");
        assert_eq!(hook.steps, 10);
        // Row 0 (before exec_start) is history, not costed and not moved.
        assert_eq!(x.data[..4], x0.data[..4]);
        // Setpoints move towards the drone (x decreases), never past it.
        let mut world = x.clone();
        n.unnormalize(&mut world.data, 1);
        assert!(world.data[4] < 3.0 && world.data[4] > 1.0, "{}", world.data[4]);
    }

    #[test]
    fn no_signal_or_bad_input_leaves_the_sample() {
        let g = EadpGuidance::new(EadpConfig::default()).unwrap();
        let n = norm();
        let mut hook = EadpHook::new(&g, &spec(), &n, &window(), DT).unwrap();
        let info = |alpha_bar| StepInfo {
            index: 0,
            t: 99,
            n_steps: 10,
            alpha_bar,
        };
        let x0 = jumpy_chunk(&n);
        let mut x = x0.clone();
        hook.after_step(info(0.0), &mut x);
        assert_eq!(x, x0, "ᾱ = 0: pure noise, no guidance");
        x.data[9] = f32::NAN;
        let with_nan = x.clone();
        hook.after_step(info(1.0), &mut x);
        let bits = |t: &HostTensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x), bits(&with_nan), "a non-finite chunk is left alone");
        // Policies guidance cannot apply to are named at set-up.
        let mut s = spec();
        s.action_dim = 3;
        assert!(EadpHook::check(&s, Some(&n)).unwrap_err().contains("[x, y, z, yaw]"));
        assert!(EadpHook::check(&spec(), None).unwrap_err().contains("normalisation"));
        s = spec();
        s.inputs.clear();
        assert!(EadpHook::check(&s, Some(&n)).unwrap_err().contains("observation.state"));
    }
}
