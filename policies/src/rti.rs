//! RTI warm starts (Real-Time Iteration for Diffusion Policy, Duan, Yin & Kragic 2025; user guide:
//! docs/policies.md, "RTI warm starts"): instead of denoising every chunk from pure noise, the previous
//! chunk, shifted into the new chunk's time frame, enters the reverse process late and only the last
//! few denoising steps run.
//!
//! # What a warm start does
//!
//! With a schedule of `N` steps (`NoiseSchedule::steps`, step `i` evaluates the denoiser at
//! `timesteps[i]`) and [`RtiConfig::start_step`] `k` (`0 ≤ k ≤ N`):
//!
//! 1. **Shift and pad** ([`shift_chunk`]): `x0[:, i] = prev[:, i + shift]` for `i + shift < H`, and the
//!    previous chunk's last action repeated for the `shift` slots at the end (no extrapolation).
//!    `prev` is the previous chunk's *normalised* actions ([`crate::ActionChunk::actions_normalized`]).
//! 2. **Discrete dimensions** ([`DiscreteDim`], the scaling method of RTI-DP §6.2): each marked
//!    dimension of `x0` is snapped to `sign(x)/scale` (`x ≥ 0` counts as positive).
//! 3. **Entry sample** ([`warm_sample`]): by default (as RTI-DP does) `x_k = x0`, the clean shifted
//!    chunk taken as the sample at step `k`, no noise added. With [`RtiConfig::noise`] it is the forward
//!    process instead, `x_k = √ᾱ_t·x0 + √(1−ᾱ_t)·ε` with `t = timesteps[k]` (`ᾱ = 1` for `k = N`) and
//!    `ε ~ N(0, I)` from the request's seeded noise stream (or `SampleRequest::initial_noise` if given).
//! 4. **Denoise** steps `k..N` with [`crate::sampler::sample`]: `N − k` denoiser evaluations. DDPM steps
//!    draw their variance noise as on a cold start; `SampleRequest::step_noise` is keyed by the
//!    *schedule* step index (which equals execution order only on cold starts). With
//!    [`RtiConfig::warm_steps`] the steps `k..N` are re-spaced to fewer deterministic DDIM steps from the
//!    same level `timesteps[k]`, the last one straight to the clean chunk.
//! 5. **Deadline refinement** ([`RtiConfig::deadline_ms`]): while another pass fits in the budget
//!    (measured from the start of `predict`; a pass is estimated from the time per denoiser evaluation
//!    so far) and fewer than [`RtiConfig::max_refine_passes`] passes ran, the current output is taken as
//!    a new previous chunk with shift 0 and steps 2–4 run again on the same observation: snap discrete
//!    dimensions, optionally re-noise to level `k` with a fresh draw, denoise `k..N`. So one refinement
//!    pass costs `N − k` evaluations and repeats exactly what a warm start does. The first pass (warm or
//!    cold) always runs; refinement also follows a cold fallback (then from that cold result).
//!
//! # Cold fallback ([`decide`])
//!
//! A warm-start request falls back to the policy's ordinary cold start (same noise stream, so the
//! result equals a plain cold request with the same seed) when there is no previous chunk, when
//! `shift ≥ H` (nothing of the previous chunk is left), when a jump threshold is set and the previous
//! window is missing, or when the observation jumped: the distance ([`JumpMetric`]) between the
//! *newest frames* of the new and the previous window's normalised vector features (state and
//! environment state, concatenated per batch element; the largest over the batch) exceeds
//! [`RtiConfig::jump_threshold`].
//!
//! # Discrete dimensions (gripper): the scaling method
//!
//! RTI-DP's scaling method trains the policy with the discrete dimensions divided by `scale` (10 in the
//! paper), so in model space they live at `±1/scale`: a small jump that the few warm-started steps can
//! still flip, where a clean `±1` at a low noise level would be locked in. riptide applies the
//! inference side for every [`DiscreteDim`] of a warm-start request: the warm sample's dimension is
//! snapped to `sign(x)/scale` (step 2 above), and the *unnormalised* output
//! ([`crate::ActionChunk::actions`]) carries `unnormalize(sign(x))`, i.e. the normalised value ±1 (the
//! two extremes of the action range under MIN_MAX), whether the chunk was warm or cold started.
//! `actions_normalized` keeps the sampler's model-space values (what the next warm start reuses). The
//! checkpoint must have been trained with the same scaling of *normalised* actions for `scale ≠ 1`;
//! with `scale = 1` (any checkpoint) this is RTI-DP's "clip" variant: snap to ±1 and threshold.
//!
//! # What a caller keeps between chunks
//!
//! The previous chunk's `actions_normalized`, the window it was computed from (its vector features are
//! enough; images may be dropped), and the number of control periods between that window's newest
//! frame and the new one's, `shift = round((t_obs_new − t_obs_prev)·fps)`, which equals the number of
//! actions executed since when the robot executes one action per period. See [`PreviousChunk`].

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::*;

use crate::error::PolicyError;
use crate::normalize::FeatureNorm;
use crate::request::{default_max_refine_passes, SampleRequest, StepHook};
pub use crate::request::{DiscreteDim, JumpMetric, PreviousChunk, RtiConfig, WarmStart};
use crate::sampler::{self, to_device, to_host, Denoiser, NoiseSource};
use crate::schedule::NoiseSchedule;
use crate::spec::{FeatureKind, ObservationWindow, PolicySpec};
use crate::tensor::HostTensor;

impl RtiConfig {
    /// A config with only `start_step` set and everything else at its default.
    pub fn new(start_step: usize) -> Self {
        Self {
            start_step,
            noise: false,
            jump_threshold: None,
            jump_metric: JumpMetric::MaxAbs,
            discrete: Vec::new(),
            deadline_ms: None,
            max_refine_passes: default_max_refine_passes(),
            cold_steps: None,
            warm_steps: None,
        }
    }

    /// Denoiser evaluations of one warm pass on a schedule of `n_steps` steps.
    pub fn warm_nfe(&self, n_steps: usize) -> usize {
        let tail = n_steps.saturating_sub(self.start_step);
        self.warm_steps.map_or(tail, |w| w.min(tail))
    }

    /// The timesteps a warm pass runs: `timesteps[start_step..]` re-spaced to [`Self::warm_steps`]
    /// (evenly over the tail, always starting at `timesteps[start_step]`).
    pub fn warm_timesteps(&self, timesteps: &[usize]) -> Vec<usize> {
        let tail = &timesteps[self.start_step.min(timesteps.len())..];
        let m = self.warm_nfe(timesteps.len());
        (0..m).map(|i| tail[i * tail.len() / m]).collect()
    }

    /// Check against a policy with `n_steps` inference steps (use `PolicySpec::default_nfe` unless the
    /// requests override the step count).
    pub fn validate(&self, spec: &PolicySpec, n_steps: usize) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Config(format!("rti: {m}")));
        if self.start_step > n_steps {
            return bad(format!(
                "start_step = {} is beyond the schedule's {n_steps} steps (use 0..={n_steps}; \
                 a warm start runs N − start_step denoiser evaluations)",
                self.start_step
            ));
        }
        for d in &self.discrete {
            if d.dim >= spec.action_dim {
                return bad(format!(
                    "discrete dim {} is out of range (action_dim = {})",
                    d.dim, spec.action_dim
                ));
            }
            if !(d.scale.is_finite() && d.scale > 0.0) {
                return bad(format!(
                    "discrete dim {}: scale must be finite and > 0, got {}",
                    d.dim, d.scale
                ));
            }
        }
        if let Some(t) = self.jump_threshold {
            if !(t >= 0.0) {
                return bad(format!("jump_threshold must be ≥ 0, got {t}"));
            }
            if vector_features(spec).next().is_none() {
                return bad("jump_threshold needs a state or environment-state input; this policy has none".into());
            }
        }
        if let Some(w) = self.warm_steps {
            if w == 0 || w > n_steps - self.start_step {
                return bad(format!(
                    "warm_steps = {w} must be in 1..={} (the schedule's steps after start_step = {}); omit it to run them all",
                    n_steps - self.start_step,
                    self.start_step
                ));
            }
        }
        if self.cold_steps == Some(0) {
            return bad("cold_steps must be ≥ 1 (omit it to run the full schedule on cold starts)".into());
        }
        if let Some(d) = self.deadline_ms {
            if !(d.is_finite() && d >= 0.0) {
                return bad(format!("deadline_ms must be finite and ≥ 0, got {d}"));
            }
        }
        Ok(())
    }
}

/// Why a warm-start request ran cold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColdReason {
    NoPreviousChunk,
    /// `shift ≥ horizon`: nothing of the previous chunk is left.
    ShiftBeyondHorizon {
        shift: usize,
        horizon: usize,
    },
    /// A jump threshold is set but the previous window was not supplied.
    NoPreviousObservation,
    ObservationJump {
        distance: f32,
        threshold: f32,
    },
}

/// How a warm-start request starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    Warm { shift: usize },
    Cold(ColdReason),
}

/// The fallback decision. `distance` is the observation distance ([`state_distance`]), None when it
/// could not be measured (no previous window).
pub fn decide(cfg: &RtiConfig, previous: Option<&PreviousChunk>, horizon: usize, distance: Option<f32>) -> Start {
    let Some(prev) = previous else {
        return Start::Cold(ColdReason::NoPreviousChunk);
    };
    if prev.shift >= horizon {
        return Start::Cold(ColdReason::ShiftBeyondHorizon {
            shift: prev.shift,
            horizon,
        });
    }
    if let Some(threshold) = cfg.jump_threshold {
        match distance {
            None => return Start::Cold(ColdReason::NoPreviousObservation),
            // NaN compares false: treat as a jump.
            Some(distance) if !(distance <= threshold) => {
                return Start::Cold(ColdReason::ObservationJump { distance, threshold })
            }
            _ => {}
        }
    }
    Start::Warm { shift: prev.shift }
}

/// `prev` [B, H, A] shifted left by `shift` along the horizon, the last action repeated into the freed
/// slots. None when `shift ≥ H` (nothing left to reuse).
pub fn shift_chunk(prev: &HostTensor, shift: usize) -> Option<HostTensor> {
    let [b, h, a] = prev.shape[..] else {
        return None;
    };
    if shift >= h {
        return None;
    }
    let mut data = Vec::with_capacity(prev.data.len());
    for bi in 0..b {
        let row = &prev.data[bi * h * a..(bi + 1) * h * a];
        for i in 0..h {
            let j = (i + shift).min(h - 1);
            data.extend_from_slice(&row[j * a..(j + 1) * a]);
        }
    }
    Some(HostTensor {
        shape: prev.shape.clone(),
        data,
    })
}

/// Snap each discrete dimension of `x` [.., A] to `sign(x)/scale` (`x ≥ 0` → +).
pub fn snap_discrete(x: &mut HostTensor, dims: &[DiscreteDim]) {
    let a = *x.shape.last().unwrap_or(&1);
    for d in dims {
        for v in x.data.iter_mut().skip(d.dim).step_by(a) {
            *v = if *v >= 0.0 { 1.0 / d.scale } else { -1.0 / d.scale };
        }
    }
}

/// The normalised value of each discrete dimension for unnormalisation: `sign(x)` = ±1.
pub fn discrete_to_unit(x: &mut HostTensor, dims: &[DiscreteDim]) {
    let unit: Vec<DiscreteDim> = dims.iter().map(|d| DiscreteDim { dim: d.dim, scale: 1.0 }).collect();
    snap_discrete(x, &unit);
}

/// `q(x_k | x_0)`: `√ᾱ_t·x0 + √(1−ᾱ_t)·ε`, `t = timesteps[start_step]`; `x0` itself for `start_step = N`.
pub fn forward_noise(x0: &HostTensor, eps: &HostTensor, schedule: &NoiseSchedule, start_step: usize) -> HostTensor {
    let Some(&t) = schedule.timesteps.get(start_step) else {
        return x0.clone();
    };
    let (a, s) = schedule.add_noise_coefficients(t);
    let data = x0
        .data
        .iter()
        .zip(&eps.data)
        .map(|(&x, &e)| (a * x as f64 + s * e as f64) as f32)
        .collect();
    HostTensor {
        shape: x0.shape.clone(),
        data,
    }
}

/// The sample at step `k` built from a previous chunk (steps 1–3 of the module docs). With
/// `cfg.noise`, ε is `supplied_eps` if given (shape-checked) or the next draw of `noise`.
pub fn warm_sample(
    prev: &HostTensor,
    shift: usize,
    cfg: &RtiConfig,
    schedule: &NoiseSchedule,
    noise: &mut NoiseSource,
    supplied_eps: Option<&HostTensor>,
) -> Result<HostTensor, PolicyError> {
    let mut x0 = shift_chunk(prev, shift).ok_or_else(|| {
        PolicyError::Input(format!(
            "warm start: cannot shift a chunk of shape {:?} by {shift}",
            prev.shape
        ))
    })?;
    snap_discrete(&mut x0, &cfg.discrete);
    if !cfg.noise {
        return Ok(x0);
    }
    let [b, h, a] = x0.shape[..] else { unreachable!() };
    let eps = noise.take(supplied_eps, [b, h, a], "warm-start forward noise")?;
    Ok(forward_noise(&x0, &eps, schedule, cfg.start_step))
}

fn vector_features(spec: &PolicySpec) -> impl Iterator<Item = &crate::spec::InputFeature> {
    spec.inputs
        .iter()
        .filter(|f| matches!(f.kind, FeatureKind::State | FeatureKind::Env))
}

/// Distance between the newest frames of two windows' normalised vector features (module docs):
/// per batch element over all state / environment features together, the largest over the batch.
/// Features are normalised with `norms` (absent = identity). None if the policy has no vector feature.
pub fn state_distance(
    spec: &PolicySpec,
    norms: &BTreeMap<String, FeatureNorm>,
    previous: &ObservationWindow,
    new: &ObservationWindow,
    metric: JumpMetric,
) -> Result<Option<f32>, PolicyError> {
    let mut per_batch: Option<Vec<f32>> = None;
    for f in vector_features(spec) {
        let newest = |w: &ObservationWindow, which: &str| -> Result<HostTensor, PolicyError> {
            let t = w.features.get(&f.name).ok_or_else(|| {
                PolicyError::Input(format!("warm start: the {which} window lacks feature {:?}", f.name))
            })?;
            if t.shape.len() != 3 || t.shape[1] == 0 {
                return Err(PolicyError::Input(format!(
                    "warm start: feature {:?} of the {which} window has shape {:?}, expected [batch, n_obs_steps, dim]",
                    f.name, t.shape
                )));
            }
            let mut frame = t.narrow(1, t.shape[1] - 1, 1);
            if let Some(n) = norms.get(&f.name) {
                n.normalize(&mut frame.data, 1);
            }
            Ok(frame)
        };
        let (p, n) = (newest(previous, "previous")?, newest(new, "new")?);
        if p.shape != n.shape {
            return Err(PolicyError::Input(format!(
                "warm start: feature {:?} has shape {:?} in the previous window but {:?} in the new one",
                f.name, p.shape, n.shape
            )));
        }
        let (b, d) = (n.shape[0], n.shape[2]);
        let acc = per_batch.get_or_insert_with(|| vec![0.0; b]);
        if acc.len() != b {
            return Err(PolicyError::Input(
                "warm start: vector features disagree on the batch size".into(),
            ));
        }
        for (bi, acc) in acc.iter_mut().enumerate() {
            for j in 0..d {
                let diff = (n.data[bi * d + j] - p.data[bi * d + j]).abs();
                match metric {
                    JumpMetric::MaxAbs => {
                        if diff > *acc || diff.is_nan() {
                            *acc = diff
                        }
                    }
                    JumpMetric::L2 => *acc += diff * diff,
                }
            }
        }
    }
    Ok(per_batch.map(|v| {
        v.into_iter()
            .map(|x| if metric == JumpMetric::L2 { x.sqrt() } else { x })
            // NaN must propagate (a non-finite state is a jump), so no f32::max.
            .fold(0.0f32, |m, x| if x > m || x.is_nan() { x } else { m })
    }))
}

/// What the policy needs to hand over for a warm-start request.
pub struct WarmContext<'a> {
    pub spec: &'a PolicySpec,
    pub norms: &'a BTreeMap<String, FeatureNorm>,
    pub obs: &'a ObservationWindow,
    /// [batch, horizon, action_dim]
    pub shape: [usize; 3],
    /// When `predict` started (the deadline is measured from here).
    pub started: Instant,
    /// The schedule a cold start runs ([`RtiConfig::cold_steps`]); None = the warm-start schedule.
    pub cold_schedule: Option<&'a NoiseSchedule>,
    /// The re-spaced schedule a warm pass runs in full ([`RtiConfig::warm_steps`]); None = steps
    /// `start_step..N` of the policy's schedule.
    pub warm_schedule: Option<&'a NoiseSchedule>,
}

/// Result of [`denoise`].
pub struct WarmOutcome<B: Backend> {
    /// Final normalised sample.
    pub x: Tensor<B, 3>,
    /// Denoiser evaluations, all passes.
    pub nfe: usize,
    pub start: Start,
    /// Refinement passes run after the first.
    pub refine_passes: usize,
}

/// Run a warm-start request (module docs): decide, build the sample, denoise `k..N` (or fall back to a
/// cold `0..N` from `initial_noise` / the first draw), then refine under the deadline.
#[allow(clippy::too_many_arguments)]
pub fn denoise<B: Backend, D: Denoiser<B>>(
    denoiser: &D,
    cond: &D::Cond,
    schedule: &NoiseSchedule,
    device: &B::Device,
    warm: &WarmStart,
    ctx: WarmContext<'_>,
    req: &SampleRequest,
    noise: &mut NoiseSource,
    mut hook: Option<&mut dyn StepHook>,
) -> Result<WarmOutcome<B>, PolicyError> {
    let cfg = &warm.config;
    let n = schedule.nfe();
    cfg.validate(ctx.spec, n)?;
    let shape = ctx.shape;
    let k = cfg.start_step;
    let distance = match (&warm.previous, cfg.jump_threshold) {
        (
            Some(PreviousChunk {
                observation: Some(prev_obs),
                ..
            }),
            Some(_),
        ) => state_distance(ctx.spec, ctx.norms, prev_obs, ctx.obs, cfg.jump_metric)?,
        _ => None,
    };
    if let Some(p) = &warm.previous {
        let t = &p.actions_normalized;
        if t.shape != shape {
            return Err(PolicyError::Input(format!(
                "warm start: previous chunk has shape {:?}, expected {shape:?} [batch, horizon, action_dim]",
                t.shape
            )));
        }
        if let Some(i) = t.first_non_finite() {
            return Err(PolicyError::Input(format!(
                "warm start: previous chunk holds a non-finite value at flat index {i}"
            )));
        }
    }
    let start = decide(cfg, warm.previous.as_ref(), shape[1], distance);
    if let Start::Cold(reason) = start {
        tracing::debug!(?reason, "RTI warm start falls back to a cold start");
    }
    let step_noise_for =
        |noise: &mut NoiseSource, s: usize| noise.take(req.step_noise.get(&s), shape, &format!("noise for step {s}"));
    let t_denoise = Instant::now();
    // A warm pass runs the re-spaced schedule in full, or steps k..N of the policy's own.
    let warm_pass = match ctx.warm_schedule {
        Some(w) => (w, 0..w.nfe()),
        None => (schedule, k..n),
    };
    let (x_start, (first_schedule, range)) = match (start, &warm.previous) {
        (Start::Warm { shift }, Some(p)) => (
            warm_sample(
                &p.actions_normalized,
                shift,
                cfg,
                schedule,
                noise,
                req.initial_noise.as_ref(),
            )?,
            warm_pass.clone(),
        ),
        _ => (
            noise.take(req.initial_noise.as_ref(), shape, "initial noise")?,
            ctx.cold_schedule.map_or((schedule, 0..n), |c| (c, 0..c.nfe())),
        ),
    };
    let (mut x, mut nfe) = sampler::sample(
        denoiser,
        cond,
        first_schedule,
        range,
        to_device::<B, 3>(&x_start, device),
        &mut |s| step_noise_for(noise, s),
        hook.as_mut().map(|h| &mut **h as &mut dyn StepHook),
    )?;
    let mut refine_passes = 0;
    if let Some(budget_ms) = cfg.deadline_ms {
        let pass_nfe = warm_pass.1.len();
        while pass_nfe > 0 && refine_passes < cfg.max_refine_passes {
            let per_nfe = t_denoise.elapsed().as_secs_f64() / nfe.max(1) as f64;
            let projected = ctx.started.elapsed().as_secs_f64() + per_nfe * pass_nfe as f64;
            if projected * 1e3 > budget_ms {
                break;
            }
            let cur = to_host(x);
            let x_k = warm_sample(&cur, 0, cfg, schedule, noise, None)?;
            let (next, used) = sampler::sample(
                denoiser,
                cond,
                warm_pass.0,
                warm_pass.1.clone(),
                to_device::<B, 3>(&x_k, device),
                &mut |s| step_noise_for(noise, s),
                hook.as_mut().map(|h| &mut **h as &mut dyn StepHook),
            )?;
            x = next;
            nfe += used;
            refine_passes += 1;
        }
    }
    Ok(WarmOutcome {
        x,
        nfe,
        start,
        refine_passes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(b: usize, h: usize, a: usize) -> HostTensor {
        let data = (0..b * h * a).map(|i| i as f32).collect();
        HostTensor::new(vec![b, h, a], data).unwrap()
    }

    #[test]
    fn shift_moves_actions_forward_and_repeats_the_last() {
        let prev = chunk(2, 4, 2);
        assert_eq!(shift_chunk(&prev, 0).unwrap(), prev);
        let s = shift_chunk(&prev, 1).unwrap();
        // batch 0: actions [0,1] [2,3] [4,5] [6,7] → [2,3] [4,5] [6,7] [6,7]
        assert_eq!(&s.data[..8], &[2., 3., 4., 5., 6., 7., 6., 7.]);
        // batch 1 shifted independently
        assert_eq!(&s.data[8..], &[10., 11., 12., 13., 14., 15., 14., 15.]);
        let s = shift_chunk(&prev, 3).unwrap();
        assert_eq!(&s.data[..8], &[6., 7., 6., 7., 6., 7., 6., 7.]);
        assert!(shift_chunk(&prev, 4).is_none());
        assert!(shift_chunk(&prev, 100).is_none());
    }

    fn prev(shift: usize) -> PreviousChunk {
        PreviousChunk {
            actions_normalized: chunk(1, 4, 2),
            observation: None,
            shift,
        }
    }

    #[test]
    fn fallback_decisions() {
        let mut cfg = RtiConfig::new(8);
        assert_eq!(decide(&cfg, None, 4, None), Start::Cold(ColdReason::NoPreviousChunk));
        assert_eq!(decide(&cfg, Some(&prev(2)), 4, None), Start::Warm { shift: 2 });
        assert_eq!(
            decide(&cfg, Some(&prev(4)), 4, None),
            Start::Cold(ColdReason::ShiftBeyondHorizon { shift: 4, horizon: 4 })
        );
        cfg.jump_threshold = Some(0.5);
        assert_eq!(
            decide(&cfg, Some(&prev(1)), 4, None),
            Start::Cold(ColdReason::NoPreviousObservation)
        );
        assert_eq!(decide(&cfg, Some(&prev(1)), 4, Some(0.5)), Start::Warm { shift: 1 });
        assert_eq!(
            decide(&cfg, Some(&prev(1)), 4, Some(0.6)),
            Start::Cold(ColdReason::ObservationJump {
                distance: 0.6,
                threshold: 0.5
            })
        );
        assert!(matches!(
            decide(&cfg, Some(&prev(1)), 4, Some(f32::NAN)),
            Start::Cold(ColdReason::ObservationJump { .. })
        ));
    }

    #[test]
    fn discrete_dims_snap_to_scaled_sign_and_unit() {
        let mut x = HostTensor::new(vec![1, 3, 2], vec![0.3, 0.7, -0.2, -0.01, 0.5, 0.0]).unwrap();
        let dims = [DiscreteDim { dim: 1, scale: 10.0 }];
        let mut s = x.clone();
        snap_discrete(&mut s, &dims);
        assert_eq!(s.data, vec![0.3, 0.1, -0.2, -0.1, 0.5, 0.1]);
        discrete_to_unit(&mut x, &dims);
        assert_eq!(x.data, vec![0.3, 1.0, -0.2, -1.0, 0.5, 1.0]);
    }

    fn spec_with(inputs: Vec<crate::spec::InputFeature>) -> PolicySpec {
        PolicySpec {
            kind: crate::spec::PolicyKind::Diffusion,
            scheduler: None,
            inputs,
            action_dim: 2,
            n_obs_steps: 2,
            horizon: 4,
            exec_start: 1,
            n_action_steps: 2,
            default_nfe: 10,
            default_candidates: 1,
            num_parameters: 0,
            backend: "none".into(),
            relative_actions: Vec::new(),
        }
    }

    #[test]
    fn state_distance_uses_the_newest_normalised_frame() {
        use crate::normalize::{NormMode, StatsLayout};
        use crate::spec::InputFeature;
        let feat = |name: &str, kind, d| InputFeature {
            name: name.into(),
            kind,
            shape: vec![d],
        };
        let spec = spec_with(vec![
            feat("s", FeatureKind::State, 2),
            feat("e", FeatureKind::Env, 1),
            InputFeature {
                name: "cam".into(),
                kind: FeatureKind::Visual,
                shape: vec![3, 2, 2],
            },
        ]);
        let stats = BTreeMap::from([
            ("min".to_string(), HostTensor::new(vec![2], vec![0.0, 0.0]).unwrap()),
            ("max".to_string(), HostTensor::new(vec![2], vec![4.0, 4.0]).unwrap()),
        ]);
        // MIN_MAX over [0, 4]: one raw unit is 0.5 normalised; "e" has no stats (identity).
        let norms = BTreeMap::from([(
            "s".to_string(),
            FeatureNorm::from_stats("s", NormMode::MinMax, &stats, StatsLayout::Processor, 2).unwrap(),
        )]);
        // [batch 2, frames 2, dim]
        let win = |s: Vec<f32>, e: Vec<f32>| ObservationWindow {
            features: BTreeMap::from([
                ("s".to_string(), HostTensor::new(vec![2, 2, 2], s).unwrap()),
                ("e".to_string(), HostTensor::new(vec![2, 2, 1], e).unwrap()),
            ]),
        };
        let prev = win(vec![1., 1., 1., 1., 2., 2., 2., 2.], vec![0., 0., 0., 0.]);
        // batch 0: newest s[0] +1 raw (0.5), e +0.3; batch 1: newest s[1] +0.2 raw (0.1), older frame +9.
        let new = win(vec![1., 1., 2., 1., 11., 2., 2., 2.2], vec![0., 0.3, 0., 0.]);
        let d = |m| state_distance(&spec, &norms, &prev, &new, m).unwrap().unwrap();
        assert!((d(JumpMetric::MaxAbs) - 0.5).abs() < 1e-6);
        assert!((d(JumpMetric::L2) - (0.25f32 + 0.09).sqrt()).abs() < 1e-6);
        assert_eq!(
            state_distance(&spec, &norms, &prev, &prev, JumpMetric::L2).unwrap(),
            Some(0.0)
        );
        let mut nan = new.clone();
        nan.features.get_mut("e").unwrap().data[3] = f32::NAN;
        assert!(
            d(JumpMetric::MaxAbs) < 1.0
                && state_distance(&spec, &norms, &prev, &nan, JumpMetric::MaxAbs)
                    .unwrap()
                    .unwrap()
                    .is_nan()
        );
        let mut missing = prev.clone();
        missing.features.remove("e");
        assert!(state_distance(&spec, &norms, &missing, &new, JumpMetric::MaxAbs).is_err());
        let images_only = spec_with(vec![InputFeature {
            name: "cam".into(),
            kind: FeatureKind::Visual,
            shape: vec![3, 2, 2],
        }]);
        assert_eq!(
            state_distance(&images_only, &norms, &prev, &new, JumpMetric::MaxAbs).unwrap(),
            None
        );
        let mut cfg = RtiConfig::new(3);
        assert!(cfg.validate(&images_only, 10).is_ok());
        cfg.jump_threshold = Some(0.1);
        assert!(cfg.validate(&images_only, 10).is_err());
        assert!(cfg.validate(&spec, 10).is_ok());
        assert!(RtiConfig::new(10).validate(&spec, 10).is_ok());
        assert!(RtiConfig::new(11).validate(&spec, 10).is_err());
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_keys() {
        let parse = |s: &str| serde_json::from_str::<RtiConfig>(s);
        assert_eq!(parse(r#"{"start_step": 8}"#).unwrap(), RtiConfig::new(8));
        let c = parse(
            r#"{"start_step": 97, "noise": true, "jump_threshold": 0.2, "jump_metric": "l2",
                "discrete": [{"dim": 1, "scale": 10.0}, {"dim": 0}], "deadline_ms": 15.0, "max_refine_passes": 3,
                "cold_steps": 5, "warm_steps": 1}"#,
        )
        .unwrap();
        assert_eq!((c.cold_steps, c.warm_steps), (Some(5), Some(1)));
        assert!(c.noise);
        assert_eq!(c.jump_threshold, Some(0.2));
        assert_eq!(c.jump_metric, JumpMetric::L2);
        assert_eq!(c.discrete[1], DiscreteDim { dim: 0, scale: 1.0 });
        assert_eq!((c.deadline_ms, c.max_refine_passes), (Some(15.0), 3));
        assert!(parse(r#"{"start_step": 1, "noise_level": 3}"#).is_err());
        assert!(parse(r#"{"noise": true}"#).is_err(), "start_step is required");
        assert!(parse(r#"{"start_step": 1, "discrete": [{"dim": 0, "sclae": 2.0}]}"#).is_err());
        assert!(parse(r#"{"start_step": 1, "jump_metric": "l1"}"#).is_err());
    }
}
