//! RTI warm starts (`riptide_policies::rti`) on the committed LeRobot fixtures and on an analytic
//! denoiser: entry point and NFE, cold fallbacks, discrete (gripper) dimensions, forward noise,
//! deadline refinement, and a cold-vs-warm latency measurement (`--ignored`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::*;
use riptide_policies::backend::FlexBackend;
use riptide_policies::lerobot::{load_diffusion, DiffusionPolicy};
use riptide_policies::rti::{self, DiscreteDim, PreviousChunk, RtiConfig, Start, WarmContext, WarmStart};
use riptide_policies::sampler::{self, to_device, to_host, Denoiser, NoiseSource};
use riptide_policies::schedule::{BetaSchedule, NoiseSchedule, PredictionType, ScheduleConfig, SchedulerKind};
use riptide_policies::{
    read_safetensors, ActionChunk, FeatureKind, HostTensor, InputFeature, ObservationWindow, Policy, PolicyError,
    PolicySpec, SampleRequest,
};

type B = FlexBackend;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/lerobot")
        .join(name)
}

struct Fx {
    policy: DiffusionPolicy<B>,
    obs: ObservationWindow,
    expected: BTreeMap<String, HostTensor>,
}

fn load(name: &str) -> Fx {
    let dir = fixture(name);
    let policy = load_diffusion::<B>(&dir, "cpu (burn-flex)", &Default::default()).unwrap();
    let mut inputs = read_safetensors(&dir.join("inputs.safetensors")).unwrap();
    inputs.remove("noise");
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    Fx {
        policy,
        obs: ObservationWindow { features: inputs },
        expected,
    }
}

fn cold(fx: &mut Fx, seed: u64) -> ActionChunk {
    let req = SampleRequest {
        seed: Some(seed),
        ..Default::default()
    };
    fx.policy.predict(&fx.obs, &req, None).unwrap()
}

fn warm_req(seed: u64, config: RtiConfig, previous: Option<PreviousChunk>) -> SampleRequest {
    SampleRequest {
        seed: Some(seed),
        warm_start: Some(WarmStart { config, previous }),
        ..Default::default()
    }
}

fn prev(actions: &HostTensor, shift: usize, obs: &ObservationWindow) -> PreviousChunk {
    PreviousChunk {
        shift,
        ..PreviousChunk::new(actions.clone(), obs)
    }
}

/// `x[b, i] = prev[b, min(i + shift, H − 1)]`, written out independently of `rti::shift_chunk`.
fn shifted_by_hand(prev: &HostTensor, shift: usize) -> HostTensor {
    let (b, h, a) = (prev.shape[0], prev.shape[1], prev.shape[2]);
    let mut out = HostTensor::zeros(prev.shape.clone());
    for bi in 0..b {
        for i in 0..h {
            let j = if i + shift < h { i + shift } else { h - 1 };
            for c in 0..a {
                out.data[(bi * h + i) * a + c] = prev.data[(bi * h + j) * a + c];
            }
        }
    }
    out
}

/// Steps `range` of the policy's own schedule from `x`, through `sampler::sample` directly; DDPM
/// variance noise from a fresh `NoiseSource(seed)` (after `skip_draws` draws already made).
fn by_hand(
    fx: &Fx,
    x: &HostTensor,
    range: std::ops::Range<usize>,
    seed: u64,
    skip_draws: usize,
) -> (HostTensor, usize) {
    let p = &fx.policy;
    let batch = x.shape[0];
    let cond = p.condition(p.global_conditioning(&fx.obs, batch));
    let shape = [x.shape[0], x.shape[1], x.shape[2]];
    let mut noise = NoiseSource::new(seed);
    for _ in 0..skip_draws {
        noise.draw(shape);
    }
    let (y, nfe) = sampler::sample(
        p,
        &cond,
        p.schedule(),
        range,
        to_device::<B, 3>(x, &Default::default()),
        &mut |_| Ok(noise.draw(shape)),
        None,
    )
    .unwrap();
    (to_host(y), nfe)
}

fn max_diff(a: &HostTensor, b: &HostTensor) -> f32 {
    a.max_abs_diff(b).expect("same shape")
}

/// LeRobot's own sample after k of its N DDIM steps, taken as the warm sample at step k (shift 0, no
/// noise), finishes to LeRobot's output in N − k evaluations: the warm entry point is exactly "the
/// sample at step k" of the reference implementation.
#[test]
fn warm_start_from_lerobot_trajectory_finishes_to_lerobot_output() {
    let mut fx = load("state_env_ddim_eps");
    let traj = fx.expected["trajectory"].clone(); // [N + 1, B, H, A]
    let want = fx.expected["action.normalized"].clone();
    let n = fx.policy.schedule().nfe();
    assert_eq!(traj.shape[0], n + 1);
    for k in [0, 5, 8, 9, n] {
        let x_k = traj.narrow(0, k, 1);
        let x_k = HostTensor::new(traj.shape[1..].to_vec(), x_k.data).unwrap();
        let req = warm_req(0, RtiConfig::new(k), Some(prev(&x_k, 0, &fx.obs)));
        let c = fx.policy.predict(&fx.obs, &req, None).unwrap();
        assert!(c.meta.warm_started);
        assert_eq!(c.meta.nfe, n - k, "k = {k}");
        let err = max_diff(&c.actions_normalized, &want);
        assert!(err <= 1e-4, "k = {k}: max |Δ| to LeRobot = {err}");
        if k == n {
            assert_eq!(
                c.actions_normalized, x_k,
                "k = N runs no step and returns the warm sample"
            );
        }
    }
}

/// With shift s, start step k and no noise, the warm chunk equals running the sampler's last N − k
/// steps by hand from the shifted, last-action-padded previous chunk (DDIM and seeded DDPM).
#[test]
fn warm_start_equals_last_steps_by_hand() {
    for (name, k, shift) in [("state_env_ddim_eps", 7, 2), ("state_env_ddpm_eps", 16, 3)] {
        let mut fx = load(name);
        let n = fx.policy.schedule().nfe();
        let p0 = cold(&mut fx, 11);
        let req = warm_req(5, RtiConfig::new(k), Some(prev(&p0.actions_normalized, shift, &fx.obs)));
        let c = fx.policy.predict(&fx.obs, &req, None).unwrap();
        let (want, nfe) = by_hand(&fx, &shifted_by_hand(&p0.actions_normalized, shift), k..n, 5, 0);
        assert_eq!(nfe, n - k);
        assert_eq!(c.meta.nfe, n - k, "{name}");
        assert!(c.meta.warm_started);
        assert_eq!(
            c.actions_normalized, want,
            "{name}: warm start differs from the by-hand run"
        );
        // Unnormalised output is the ordinary unnormalisation of it.
        let mut un = want.clone();
        fx.policy.action_norm.unnormalize(&mut un.data, 1);
        assert_eq!(c.actions, un);
    }
}

/// No previous chunk, shift ≥ horizon, or an observation jump: the request runs cold and equals a plain
/// cold request with the same seed bit for bit; a small move under the threshold stays warm.
#[test]
fn cold_fallbacks_equal_plain_cold_starts() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let h = fx.policy.spec().horizon;
    let plain = cold(&mut fx, 3);
    assert!(!plain.meta.warm_started);
    let p0 = cold(&mut fx, 4).actions_normalized;
    let mut cfg = RtiConfig::new(8);
    cfg.jump_threshold = Some(0.1);

    let check_cold = |fx: &mut Fx, obs: &ObservationWindow, previous: Option<PreviousChunk>, why: &str| {
        let c = fx
            .policy
            .predict(obs, &warm_req(3, cfg.clone(), previous), None)
            .unwrap();
        assert!(!c.meta.warm_started, "{why}");
        assert_eq!(c.meta.nfe, n, "{why}");
        c
    };
    let obs = fx.obs.clone();
    let c = check_cold(&mut fx, &obs, None, "no previous chunk");
    assert_eq!(c.actions_normalized, plain.actions_normalized);
    assert_eq!(c.actions, plain.actions);
    check_cold(&mut fx, &obs, Some(prev(&p0, h, &obs)), "shift = horizon");
    check_cold(&mut fx, &obs, Some(prev(&p0, h + 5, &obs)), "shift > horizon");
    let no_obs = PreviousChunk {
        observation: None,
        ..prev(&p0, 1, &obs)
    };
    check_cold(&mut fx, &obs, Some(no_obs), "threshold set, previous window missing");

    // Move the newest frame of the state: MIN_MAX maps a raw δ to 2δ/(max − min) in normalised units.
    let moved = |delta: f32| {
        let mut o = obs.clone();
        let s = o.features.get_mut("observation.state").unwrap();
        let (to, d) = (s.shape[1], s.shape[2]);
        s.data[(to - 1) * d] += delta; // batch 0, newest frame, element 0
        o
    };
    let norm = &fx.policy.input_norms["observation.state"];
    let unit = {
        let mut a = [0.0f32, 0.0];
        let mut b = [1.0f32, 0.0];
        norm.normalize(&mut a, 1);
        norm.normalize(&mut b, 1);
        b[0] - a[0] // normalised units per raw unit along element 0
    };
    let big = moved(0.2 / unit);
    let c = check_cold(&mut fx, &big, Some(prev(&p0, 1, &obs)), "observation jump");
    let plain_big = fx
        .policy
        .predict(
            &big,
            &SampleRequest {
                seed: Some(3),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(c.actions_normalized, plain_big.actions_normalized);
    // An older frame moving does not count (newest frame only).
    let mut old_moved = obs.clone();
    old_moved.features.get_mut("observation.state").unwrap().data[0] += 10.0;
    let small = moved(0.05 / unit);
    for (o, why) in [(&small, "small move"), (&old_moved, "older frame moved")] {
        let c = fx
            .policy
            .predict(o, &warm_req(3, cfg.clone(), Some(prev(&p0, 1, &obs))), None)
            .unwrap();
        assert!(c.meta.warm_started, "{why}");
        assert_eq!(c.meta.nfe, n - 8);
    }
    // The distance itself, in normalised units.
    let d = rti::state_distance(
        fx.policy.spec(),
        &fx.policy.input_norms,
        &obs,
        &big,
        rti::JumpMetric::MaxAbs,
    )
    .unwrap()
    .unwrap();
    assert!((d - 0.2).abs() < 1e-4, "distance {d}");
    let d2 = rti::state_distance(
        fx.policy.spec(),
        &fx.policy.input_norms,
        &obs,
        &big,
        rti::JumpMetric::L2,
    )
    .unwrap()
    .unwrap();
    assert!(
        (d2 - 0.2).abs() < 1e-4,
        "a single moved element: L2 = max-abs, got {d2}"
    );
}

/// `cold_steps`: a cold start (first chunk or fallback) runs the re-spaced short schedule and equals a
/// plain cold request with that many steps; the warm chunk after it still runs the full schedule's tail.
#[test]
fn cold_steps_shorten_only_cold_starts() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let cfg = RtiConfig {
        cold_steps: Some(2),
        ..RtiConfig::new(8)
    };
    let obs = fx.obs.clone();
    let first = fx.policy.predict(&obs, &warm_req(5, cfg.clone(), None), None).unwrap();
    assert!(!first.meta.warm_started);
    assert_eq!(first.meta.nfe, 2);
    let plain2 = fx
        .policy
        .predict(
            &obs,
            &SampleRequest {
                seed: Some(5),
                num_inference_steps: Some(2),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(first.actions_normalized, plain2.actions_normalized);
    let full = cold(&mut fx, 5);
    assert!(
        max_diff(&first.actions_normalized, &full.actions_normalized) > 1e-4,
        "2 steps ≠ {n} steps"
    );
    let next = fx
        .policy
        .predict(
            &obs,
            &warm_req(6, cfg.clone(), Some(prev(&first.actions_normalized, 1, &obs))),
            None,
        )
        .unwrap();
    assert!(next.meta.warm_started);
    assert_eq!(next.meta.nfe, n - 8);
    // Alternating schedules keeps both cached: the full-schedule cold start is unchanged afterwards.
    assert_eq!(cold(&mut fx, 5).actions_normalized, full.actions_normalized);
    let e = RtiConfig {
        cold_steps: Some(0),
        ..RtiConfig::new(8)
    }
    .validate(fx.policy.spec(), n)
    .unwrap_err()
    .to_string();
    assert!(e.contains("cold_steps"), "{e}");
}

/// `warm_steps`: a warm pass re-spaced to fewer DDIM steps from the same entry level. All `N − k`
/// steps is the default bit for bit; one step is the DDIM jump from `timesteps[k]` to the clean chunk,
/// `x0 = clip((x − √(1−ᾱ)·ε̂) / √ᾱ)`, written out here from the denoiser's ε̂.
#[test]
fn warm_steps_respace_the_warm_pass() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let (k, shift) = (6, 2);
    let p0 = cold(&mut fx, 11);
    let previous = || Some(prev(&p0.actions_normalized, shift, &fx.obs));
    let with = |w: Option<usize>| RtiConfig {
        warm_steps: w,
        ..RtiConfig::new(k)
    };
    let obs = fx.obs.clone();
    let default = fx
        .policy
        .predict(&obs, &warm_req(5, with(None), previous()), None)
        .unwrap();
    let all = fx
        .policy
        .predict(&obs, &warm_req(5, with(Some(n - k)), previous()), None)
        .unwrap();
    assert_eq!(all.actions_normalized, default.actions_normalized);
    assert_eq!(all.meta.nfe, n - k);

    let one = fx
        .policy
        .predict(&obs, &warm_req(5, with(Some(1)), previous()), None)
        .unwrap();
    assert!(one.meta.warm_started);
    assert_eq!(one.meta.nfe, 1);
    let x = shifted_by_hand(&p0.actions_normalized, shift);
    let p = &fx.policy;
    let t = p.schedule().timesteps[k];
    let cond = p.condition(p.global_conditioning(&obs, x.shape[0]));
    let eps = to_host(p.denoise(to_device::<B, 3>(&x, &Default::default()), t, &cond));
    let ab = p.schedule().alphas_cumprod[t] as f64;
    let mut want = x.clone();
    for (w, e) in want.data.iter_mut().zip(&eps.data) {
        *w = (((*w as f64 - (1.0 - ab).sqrt() * *e as f64) / ab.sqrt()).clamp(-1.0, 1.0)) as f32;
    }
    let err = max_diff(&one.actions_normalized, &want);
    assert!(
        err <= 1e-5,
        "one warm step from t = {t} vs the DDIM jump by hand: {err}"
    );
    assert!(max_diff(&one.actions_normalized, &default.actions_normalized) > 1e-4);

    // Re-spacing picks evenly from the tail, starting at the entry level.
    let ts: Vec<usize> = (0..10).rev().map(|i| i * 10).collect();
    assert_eq!(with(Some(2)).warm_timesteps(&ts), vec![30, 10]);
    assert_eq!(with(Some(1)).warm_timesteps(&ts), vec![30]);
    assert_eq!(with(None).warm_timesteps(&ts), vec![30, 20, 10, 0]);
    for w in [0, n - k + 1] {
        let e = with(Some(w)).validate(fx.policy.spec(), n).unwrap_err().to_string();
        assert!(e.contains("warm_steps"), "{e}");
    }
}

#[test]
fn bad_warm_requests_are_errors() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let p0 = cold(&mut fx, 1).actions_normalized;
    let obs = fx.obs.clone();
    let e = fx
        .policy
        .predict(
            &obs,
            &warm_req(0, RtiConfig::new(n + 1), Some(prev(&p0, 1, &obs))),
            None,
        )
        .unwrap_err();
    assert!(
        matches!(e, PolicyError::Config(_)) && e.to_string().contains("start_step"),
        "{e}"
    );
    let short = p0.narrow(1, 0, 4);
    let e = fx
        .policy
        .predict(&obs, &warm_req(0, RtiConfig::new(8), Some(prev(&short, 1, &obs))), None)
        .unwrap_err();
    assert!(e.to_string().contains("previous chunk has shape"), "{e}");
    let mut cfg = RtiConfig::new(8);
    cfg.discrete = vec![DiscreteDim { dim: 2, scale: 10.0 }];
    let e = fx
        .policy
        .predict(&obs, &warm_req(0, cfg, Some(prev(&p0, 1, &obs))), None)
        .unwrap_err();
    assert!(e.to_string().contains("discrete dim 2"), "{e}");
}

/// Discrete dim 1 marked with scale 10: the warm sample's dim is snapped to ±0.1, the unnormalised
/// output carries unnormalize(±1) (the action range's ends under MIN_MAX), `actions_normalized` keeps
/// the model-space values, on warm and on cold-fallback chunks alike.
#[test]
fn discrete_dims_use_the_scaling_method() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let (k, shift) = (7, 1);
    let p0 = cold(&mut fx, 8).actions_normalized;
    let mut cfg = RtiConfig::new(k);
    cfg.discrete = vec![DiscreteDim { dim: 1, scale: 10.0 }];
    let obs = fx.obs.clone();
    let c = fx
        .policy
        .predict(&obs, &warm_req(2, cfg.clone(), Some(prev(&p0, shift, &obs))), None)
        .unwrap();
    let mut x = shifted_by_hand(&p0, shift);
    for v in x.data.iter_mut().skip(1).step_by(2) {
        *v = if *v >= 0.0 { 0.1 } else { -0.1 };
    }
    let (want, _) = by_hand(&fx, &x, k..n, 2, 0);
    assert_eq!(c.actions_normalized, want);
    let ends = {
        let mut e = [0.0, -1.0, 0.0, 1.0];
        fx.policy.action_norm.unnormalize(&mut e, 1);
        [e[1], e[3]]
    };
    let check_out = |c: &ActionChunk| {
        for (i, (&a, &m)) in c.actions.data.iter().zip(&c.actions_normalized.data).enumerate() {
            if i % 2 == 1 {
                assert_eq!(a, if m >= 0.0 { ends[1] } else { ends[0] }, "gripper at {i}");
            }
        }
    };
    check_out(&c);
    // Continuous dim 0 is the plain unnormalisation.
    let mut un = want.clone();
    fx.policy.action_norm.unnormalize(&mut un.data, 1);
    for i in (0..un.data.len()).step_by(2) {
        assert_eq!(c.actions.data[i], un.data[i]);
    }
    let c = fx.policy.predict(&obs, &warm_req(2, cfg, None), None).unwrap();
    assert!(!c.meta.warm_started);
    check_out(&c);
}

/// With `noise = true` the entry sample is q(x_k | x_0): seeded, √ᾱ_t-scaled mean, √(1−ᾱ_t) spread
/// (t = timesteps[k]); predict uses exactly that sample (checked against a by-hand run).
#[test]
fn forward_noise_matches_q_xk_given_x0() {
    let mut fx = load("state_env_ddim_eps");
    let schedule = fx.policy.schedule().clone();
    let n = schedule.nfe();
    let k = 6;
    let t = schedule.timesteps[k];
    let ab = schedule.alphas_cumprod[t] as f64;
    let mut cfg = RtiConfig::new(k);
    cfg.noise = true;
    // Statistics on a large batch of a fixed x0.
    let (b, h, a) = (256, 16, 2);
    let x0 = HostTensor::new(
        vec![b, h, a],
        (0..b * h * a).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect(),
    )
    .unwrap();
    let xk = rti::warm_sample(&x0, 0, &cfg, &schedule, &mut NoiseSource::new(9), None).unwrap();
    let z: Vec<f64> = xk
        .data
        .iter()
        .zip(&x0.data)
        .map(|(&x, &x0)| (x as f64 - ab.sqrt() * x0 as f64) / (1.0 - ab).sqrt())
        .collect();
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64;
    // 8192 draws: the mean's standard error is 0.011, the variance's 0.016.
    assert!(mean.abs() < 0.05, "mean {mean}");
    assert!((var - 1.0).abs() < 0.07, "variance {var}");
    // Residual independent of x0 (no correlation).
    let corr = z.iter().zip(&x0.data).map(|(z, &x)| z * x as f64).sum::<f64>() / z.len() as f64;
    assert!(corr.abs() < 0.05, "correlation with x0 {corr}");
    // Seeded: same seed → same sample, other seed → other sample.
    let again = rti::warm_sample(&x0, 0, &cfg, &schedule, &mut NoiseSource::new(9), None).unwrap();
    assert_eq!(xk, again);
    let other = rti::warm_sample(&x0, 0, &cfg, &schedule, &mut NoiseSource::new(10), None).unwrap();
    assert_ne!(xk, other);

    // Through predict: ε is the request stream's first draw, then the steps k..N.
    let p0 = cold(&mut fx, 8).actions_normalized;
    let obs = fx.obs.clone();
    let c = fx
        .policy
        .predict(&obs, &warm_req(21, cfg.clone(), Some(prev(&p0, 2, &obs))), None)
        .unwrap();
    let x0 = shifted_by_hand(&p0, 2);
    let eps = NoiseSource::new(21).draw([3, 16, 2]);
    let (sa, sb) = (ab.sqrt(), (1.0 - ab).sqrt());
    let xk = HostTensor::new(
        x0.shape.clone(),
        x0.data
            .iter()
            .zip(&eps.data)
            .map(|(&x, &e)| (sa * x as f64 + sb * e as f64) as f32)
            .collect(),
    )
    .unwrap();
    let (want, _) = by_hand(&fx, &xk, k..n, 21, 1);
    assert_eq!(c.actions_normalized, want);
    assert_eq!(c.meta.nfe, n - k);
    // ... and a supplied `initial_noise` is taken as ε.
    let mut req = warm_req(99, cfg, Some(prev(&p0, 2, &obs)));
    req.initial_noise = Some(eps);
    let c2 = fx.policy.predict(&obs, &req, None).unwrap();
    assert_eq!(c2.actions_normalized, want);
}

/// Deadline refinement: the first pass always runs; each refinement pass is a warm start with shift 0
/// from the current output (N − k evaluations), up to `max_refine_passes` while the budget lasts.
#[test]
fn deadline_refines_with_repeated_warm_passes() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let k = 8;
    let p0 = cold(&mut fx, 8).actions_normalized;
    let obs = fx.obs.clone();
    let mut cfg = RtiConfig::new(k);
    cfg.deadline_ms = Some(60_000.0);
    cfg.max_refine_passes = 2;
    let c = fx
        .policy
        .predict(&obs, &warm_req(1, cfg.clone(), Some(prev(&p0, 1, &obs))), None)
        .unwrap();
    assert_eq!(c.meta.nfe, 3 * (n - k));
    let (mut x, _) = by_hand(&fx, &shifted_by_hand(&p0, 1), k..n, 1, 0);
    for _ in 0..2 {
        x = by_hand(&fx, &x, k..n, 1, 0).0;
    }
    assert_eq!(c.actions_normalized, x);

    cfg.deadline_ms = Some(0.0);
    let c = fx
        .policy
        .predict(&obs, &warm_req(1, cfg.clone(), Some(prev(&p0, 1, &obs))), None)
        .unwrap();
    assert_eq!(c.meta.nfe, n - k, "a spent budget still runs the first pass");

    // A realistic budget: never more than max passes, and the result within budget + one pass.
    cfg.max_refine_passes = 1000;
    cfg.deadline_ms = Some(50.0);
    let t = Instant::now();
    let c = fx
        .policy
        .predict(&obs, &warm_req(1, cfg, Some(prev(&p0, 1, &obs))), None)
        .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(c.meta.nfe % (n - k), 0);
    assert!(c.meta.nfe > n - k, "50 ms fits more than one pass of this small model");
    println!("deadline 50 ms: {} evaluations in {ms:.1} ms", c.meta.nfe);
    assert!(ms < 250.0, "overran the 50 ms budget by far: {ms:.1} ms");
}

/// Re-planning on a static observation: a warm start from the policy's own previous output (shift 0)
/// stays closer to it than an independent cold sample does, with N − k instead of N evaluations.
#[test]
fn warm_start_on_static_observation_is_consistent_and_cheaper() {
    let mut fx = load("state_env_ddim_eps");
    let n = fx.policy.schedule().nfe();
    let p0 = cold(&mut fx, 100);
    let other = cold(&mut fx, 200);
    let obs = fx.obs.clone();
    let spread = max_diff(&other.actions_normalized, &p0.actions_normalized);
    for k in [8, 9] {
        let c = fx
            .policy
            .predict(
                &obs,
                &warm_req(0, RtiConfig::new(k), Some(prev(&p0.actions_normalized, 0, &obs))),
                None,
            )
            .unwrap();
        let d = max_diff(&c.actions_normalized, &p0.actions_normalized);
        println!("k = {k}: warm vs previous {d:.4}, independent cold vs previous {spread:.4}");
        assert!(c.meta.nfe < p0.meta.nfe && c.meta.nfe == n - k);
        assert!(d < spread / 2.0, "k = {k}: warm moved {d} vs cold spread {spread}");
    }
}

/// An analytic denoiser: every action element is ±a with prior log-odds `cond` for +a, and the exact
/// posterior-mean ε prediction for that two-point distribution under the schedule's ᾱ_t.
struct TwoPoint {
    alphas_cumprod: Vec<f32>,
    a: f32,
}

impl Denoiser<B> for TwoPoint {
    type Cond = f32;

    fn denoise(&self, x: Tensor<B, 3>, t: usize, log_odds: &f32) -> Tensor<B, 3> {
        let ab = self.alphas_cumprod[t] as f64;
        let mut h = to_host(x.clone());
        for v in h.data.iter_mut() {
            let x = *v as f64;
            let m = self.a as f64 * (*log_odds as f64 / 2.0 + x * ab.sqrt() * self.a as f64 / (1.0 - ab)).tanh();
            *v = ((x - ab.sqrt() * m) / (1.0 - ab).sqrt()) as f32;
        }
        to_device(&h, &x.device())
    }
}

/// Why the scaling method exists (RTI-DP §6.2), on the exact denoiser of a gripper that is ±a: the
/// previous chunk says "open" (−), the new observation makes "closed" (+) 99 % likely. Warm-started
/// from a clean −1 at a low noise level the unscaled gripper stays open; scaled to ±0.1 it flips.
#[test]
fn scaled_discrete_dims_can_flip_under_a_warm_start() {
    let config = ScheduleConfig {
        kind: SchedulerKind::Ddim,
        num_train_timesteps: 100,
        beta_schedule: BetaSchedule::SquaredcosCapV2,
        beta_start: 1e-4,
        beta_end: 0.02,
        prediction_type: PredictionType::Epsilon,
        clip_sample: true,
        clip_sample_range: 1.0,
    };
    let schedule = NoiseSchedule::new(config, 10).unwrap();
    let spec = PolicySpec {
        kind: riptide_policies::PolicyKind::Diffusion,
        scheduler: None,
        inputs: vec![InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![1],
        }],
        action_dim: 1,
        n_obs_steps: 1,
        horizon: 4,
        exec_start: 0,
        n_action_steps: 4,
        default_nfe: 10,
        default_candidates: 1,
        num_parameters: 0,
        backend: "flex".into(),
        relative_actions: Vec::new(),
    };
    let obs = ObservationWindow::default();
    let norms = BTreeMap::new();
    let log_odds = (0.99f32 / 0.01).ln();
    let run = |scale: f32| -> Vec<f32> {
        let den = TwoPoint {
            alphas_cumprod: schedule.alphas_cumprod.clone(),
            a: 1.0 / scale,
        };
        let mut cfg = RtiConfig::new(8);
        cfg.discrete = vec![DiscreteDim { dim: 0, scale }];
        let previous = PreviousChunk {
            actions_normalized: HostTensor::new(vec![1, 4, 1], vec![-1.0 / scale; 4]).unwrap(),
            observation: None,
            shift: 1,
        };
        let warm = WarmStart {
            config: cfg,
            previous: Some(previous),
        };
        let ctx = WarmContext {
            spec: &spec,
            norms: &norms,
            obs: &obs,
            shape: [1, 4, 1],
            started: Instant::now(),
            cold_schedule: None,
            warm_schedule: None,
        };
        let out = rti::denoise(
            &den,
            &log_odds,
            &schedule,
            &Default::default(),
            &warm,
            ctx,
            &SampleRequest::default(),
            &mut NoiseSource::new(0),
            None,
        )
        .unwrap();
        assert_eq!(out.start, Start::Warm { shift: 1 });
        assert_eq!(out.nfe, 2);
        to_host(out.x).data
    };
    let unscaled = run(1.0);
    assert!(
        unscaled.iter().all(|&v| v < -0.9),
        "unscaled stays locked in: {unscaled:?}"
    );
    let scaled = run(10.0);
    assert!(scaled.iter().all(|&v| v > 0.09), "scaled flips to +1/scale: {scaled:?}");
}

/// Cold vs warm latency and NFE on the fixture (CPU, host fusion on as `load_policy` sets it;
/// `cargo test --workspace --features cuda --test policies rti::bench -- --ignored --nocapture`).
#[test]
#[ignore]
fn bench_cold_vs_warm() {
    for name in ["state_env_ddim_eps", "state_env_ddpm_eps"] {
        let mut fx = load(name);
        fx.policy.set_host_fusion(true); // what `load_policy` does on the CPU
        let n = fx.policy.schedule().nfe();
        let obs = fx.obs.clone();
        let iters = 50;
        let mut last = cold(&mut fx, 0);
        let time = |fx: &mut Fx, req: &SampleRequest| -> (f64, usize, ActionChunk) {
            for _ in 0..5 {
                fx.policy.predict(&obs, req, None).unwrap();
            }
            let mut ts = Vec::new();
            let mut c = None;
            for _ in 0..iters {
                let t = Instant::now();
                c = Some(fx.policy.predict(&obs, req, None).unwrap());
                ts.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ts.sort_by(f64::total_cmp);
            let c = c.unwrap();
            (ts[iters / 2], c.meta.nfe, c)
        };
        let (ms, nfe, _) = time(&mut fx, &SampleRequest::default());
        println!("{name}: cold           NFE {nfe:>3}  p50 {ms:.3} ms (batch 3)");
        for k in [n - 3, n - 2, n - 1] {
            let req = warm_req(0, RtiConfig::new(k), Some(prev(&last.actions_normalized, 1, &obs)));
            let (ms, nfe, c) = time(&mut fx, &req);
            assert!(c.meta.warm_started);
            println!("{name}: warm k = {k:>2}    NFE {nfe:>3}  p50 {ms:.3} ms");
            last = c;
        }
    }
}
