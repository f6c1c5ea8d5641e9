//! DDPM/DDIM schedules against diffusers' own numbers (tests/fixtures/schedulers.safetensors, written
//! by tests/fixtures/make_lerobot_fixtures.py with diffusers' DDPMScheduler / DDIMScheduler).

use std::path::PathBuf;

use burn::prelude::*;
use riptide_policies::sampler::{self, to_device, to_host, Denoiser};
use riptide_policies::schedule::{
    alphas_cumprod, BetaSchedule, NoiseSchedule, PredictionType, ScheduleConfig, SchedulerKind,
};
use riptide_policies::{read_safetensors, HostTensor};

type B = burn::backend::Flex;

fn fixtures() -> std::collections::BTreeMap<String, HostTensor> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/schedulers.safetensors");
    read_safetensors(&p).expect("scheduler fixture (regenerate with tests/fixtures/make_lerobot_fixtures.py)")
}

const SCHEDULES: [(&str, BetaSchedule); 3] = [
    ("squaredcos_cap_v2", BetaSchedule::SquaredcosCapV2),
    ("linear", BetaSchedule::Linear),
    ("scaled_linear", BetaSchedule::ScaledLinear),
];

fn config(kind: SchedulerKind, beta: BetaSchedule, pred: PredictionType, clip: bool) -> ScheduleConfig {
    ScheduleConfig {
        kind,
        num_train_timesteps: 100,
        beta_schedule: beta,
        beta_start: 1e-4,
        beta_end: 0.02,
        prediction_type: pred,
        clip_sample: clip,
        clip_sample_range: 1.0,
    }
}

#[test]
fn alphas_cumprod_match_diffusers() {
    let f = fixtures();
    for (name, beta) in SCHEDULES {
        let want = &f[&format!("{name}.alphas_cumprod")].data;
        let got = alphas_cumprod(beta, 100, 1e-4, 0.02);
        assert_eq!(want.len(), got.len());
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                (w - g).abs() <= 1e-6 * w.abs().max(1e-6),
                "{name} alphas_cumprod[{i}]: diffusers {w}, riptide {g}"
            );
        }
    }
}

#[test]
fn timesteps_match_diffusers() {
    let f = fixtures();
    for (name, beta) in SCHEDULES {
        for (kind, k) in [(SchedulerKind::Ddpm, "ddpm"), (SchedulerKind::Ddim, "ddim")] {
            for n in [10usize, 16, 20, 100] {
                let want: Vec<usize> = f[&format!("{name}.{k}.timesteps.{n}")]
                    .data
                    .iter()
                    .map(|v| *v as usize)
                    .collect();
                let s = NoiseSchedule::new(config(kind, beta, PredictionType::Epsilon, true), n).unwrap();
                assert_eq!(s.timesteps, want, "{name} {k} N={n}");
            }
        }
    }
}

/// Returns a fixed prediction, to drive single scheduler steps.
struct Fixed(Tensor<B, 3>);

impl Denoiser<B> for Fixed {
    type Cond = ();
    fn denoise(&self, _x: Tensor<B, 3>, _t: usize, _c: &()) -> Tensor<B, 3> {
        self.0.clone()
    }
}

#[test]
fn step_outputs_match_diffusers() {
    let f = fixtures();
    let dev = Default::default();
    let model_output = &f["step.model_output"];
    let sample = &f["step.sample"];
    let noise = f["step.noise"].clone();
    let denoiser = Fixed(to_device(model_output, &dev));
    let mut checked = 0;
    for (name, beta) in SCHEDULES {
        for (kind, k) in [(SchedulerKind::Ddpm, "ddpm"), (SchedulerKind::Ddim, "ddim")] {
            for (pred, p) in [(PredictionType::Epsilon, "epsilon"), (PredictionType::Sample, "sample")] {
                for clip in [false, true] {
                    let s = NoiseSchedule::new(config(kind, beta, pred, clip), 10).unwrap();
                    for (idx, &t) in s.timesteps.iter().enumerate() {
                        let key = format!("{name}.{k}.{p}.clip{}.t{t}", clip as u8);
                        let Some(want) = f.get(&key) else { continue };
                        let mut z = |_k: usize| Ok(noise.clone());
                        let (x, nfe) =
                            sampler::sample(&denoiser, &(), &s, idx..idx + 1, to_device(sample, &dev), &mut z, None)
                                .unwrap();
                        assert_eq!(nfe, 1);
                        let got = to_host(x);
                        let err = got.max_abs_diff(want).unwrap();
                        let scale = want.data.iter().fold(1f32, |m, v| m.max(v.abs()));
                        assert!(err <= 2e-6 * scale, "{key}: max abs error {err} (scale {scale})");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 3 * 2 * 2 * 2 * 3, "only {checked} step fixtures found");
}
