//! DDPM and DDIM noise schedules, matching diffusers' `DDPMScheduler` / `DDIMScheduler`.
//!
//! Schedule constants are computed the way diffusers does (betas in f64, stored f32, f32 cumulative
//! product) so `alphas_cumprod` agrees bit-for-bit or within an ulp; per-step coefficients are then
//! derived in f64 from those f32 values and applied to the sample as scalar multiply-adds.

use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// How betas are laid out over the training timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
}

impl BetaSchedule {
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s {
            "linear" => Ok(Self::Linear),
            "scaled_linear" => Ok(Self::ScaledLinear),
            "squaredcos_cap_v2" => Ok(Self::SquaredcosCapV2),
            other => Err(PolicyError::Config(format!(
                "beta_schedule = {other:?} is not supported (use \"squaredcos_cap_v2\", \"linear\" or \"scaled_linear\")"
            ))),
        }
    }
}

/// What the denoiser predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    Sample,
    VPrediction,
}

impl PredictionType {
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s {
            "epsilon" => Ok(Self::Epsilon),
            "sample" => Ok(Self::Sample),
            "v_prediction" => Ok(Self::VPrediction),
            other => Err(PolicyError::Config(format!(
                "prediction_type = {other:?} is not supported (use \"epsilon\", \"sample\" or \"v_prediction\")"
            ))),
        }
    }
}

/// Which reverse process to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerKind {
    Ddpm,
    Ddim,
}

impl SchedulerKind {
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        match s.to_ascii_uppercase().as_str() {
            "DDPM" => Ok(Self::Ddpm),
            "DDIM" => Ok(Self::Ddim),
            _ => Err(PolicyError::Config(format!(
                "noise_scheduler_type = {s:?} is not supported (use \"DDPM\" or \"DDIM\")"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ddpm => "DDPM",
            Self::Ddim => "DDIM",
        }
    }
}

/// Everything that defines a DDPM/DDIM schedule (a subset of diffusers' scheduler config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleConfig {
    pub kind: SchedulerKind,
    pub num_train_timesteps: usize,
    pub beta_schedule: BetaSchedule,
    pub beta_start: f64,
    pub beta_end: f64,
    pub prediction_type: PredictionType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
}

/// diffusers' `torch.linspace(start, end, n, dtype=float32)`: the first half counts up from `start`,
/// the second half down from `end`, each value rounded to f32.
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start as f32];
    }
    let (s, e) = (start as f32, end as f32);
    let step = (e - s) / (n as f32 - 1.0);
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                s + step * i as f32
            } else {
                e - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// `alphas_cumprod` of a training schedule, as diffusers stores it (f32).
pub fn alphas_cumprod(schedule: BetaSchedule, t: usize, beta_start: f64, beta_end: f64) -> Vec<f32> {
    let betas: Vec<f32> = match schedule {
        BetaSchedule::Linear => linspace_f32(beta_start, beta_end, t),
        BetaSchedule::ScaledLinear => linspace_f32(beta_start.sqrt(), beta_end.sqrt(), t)
            .into_iter()
            .map(|b| b * b)
            .collect(),
        BetaSchedule::SquaredcosCapV2 => {
            let alpha_bar = |s: f64| ((s + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
            (0..t)
                .map(|i| {
                    let t1 = i as f64 / t as f64;
                    let t2 = (i + 1) as f64 / t as f64;
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                })
                .collect()
        }
    };
    let mut acc = 1.0f32;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// One reverse step, reduced to scalars: `x_prev = c_x·x + c_out·out (+ c_x0 / clip path) + σ·z`.
///
/// The step is expressed on the denoiser output `out` and the current sample `x`; clipping of the
/// predicted x0 is non-linear so the step keeps the two stages (predict x0, then combine).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    /// Timestep passed to the denoiser.
    pub t: usize,
    /// x0 = a_x·x + a_out·out   (before clipping)
    pub x0_from_x: f64,
    pub x0_from_out: f64,
    /// ε = e_x·x + e_out·out    (DDIM direction term, from the *unclipped* prediction)
    pub eps_from_x: f64,
    pub eps_from_out: f64,
    /// x_prev = m_x0·x0 + m_x·x + m_eps·ε + σ·z
    pub prev_from_x0: f64,
    pub prev_from_x: f64,
    pub prev_from_eps: f64,
    /// Standard deviation of the added noise (0 when no noise is drawn at this step).
    pub noise_std: f64,
    /// ᾱ of the level this step moves to (1 = clean; σ-space: 1/(1 + σ'²)): guidance scales by it.
    pub alpha_bar_prev: f64,
}

impl StepCoefficients {
    /// Whether this step draws fresh Gaussian noise (DDPM for t > 0).
    pub fn draws_noise(&self) -> bool {
        self.noise_std > 0.0
    }
}

/// The DDPM timestep `t` as a variance-exploding noise level: `x_t/√ᾱ_t = x0 + σ_t·ε` with
/// `σ_t = √((1−ᾱ_t)/ᾱ_t)` (how a DDPM teacher is read in EDM terms).
pub fn vp_sigma(alphas_cumprod: &[f32], t: usize) -> f64 {
    let a = alphas_cumprod[t] as f64;
    ((1.0 - a) / a).sqrt()
}

/// Consistency-model boundary scalings in EDM form, on the VP sample: with `σ = σ_t`,
/// `σ_min = σ_0` and `x_σ = x_t/√ᾱ_t`, the student's clean estimate is
/// `f(x_t, t) = c_skip(σ)·x_σ + c_out(σ)·F(x_t, t)`,
/// `c_skip = σ_d²/((σ−σ_min)² + σ_d²)`, `c_out = (σ−σ_min)·σ_d/√(σ² + σ_d²)`, so `f = x` at σ_min.
/// The network input stays the VP sample `x_t = x_σ/√(1+σ²)` (the teacher's convention, so the student
/// can start from the teacher's weights). Returns the coefficients on `x_t` and on `F`.
pub fn consistency_scalings(alphas_cumprod: &[f32], t: usize, sigma_data: f64) -> (f64, f64) {
    let a = alphas_cumprod[t] as f64;
    let (sigma, sigma_min) = (vp_sigma(alphas_cumprod, t), vp_sigma(alphas_cumprod, 0));
    let sd2 = sigma_data * sigma_data;
    let c_skip = sd2 / ((sigma - sigma_min).powi(2) + sd2);
    let c_out = (sigma - sigma_min) * sigma_data / (sigma * sigma + sd2).sqrt();
    (c_skip / a.sqrt(), c_out)
}

/// How a σ-space schedule moves from σ_i to σ_{i+1} (see [`NoiseSchedule::sigma_space`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmaStep {
    Deterministic,
    Renoise,
}

/// Karras et al.'s ρ-spaced σ grid from σ_max down to σ_min (`n` values), as Consistency Policy uses.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, rho: f64, n: usize) -> Vec<f64> {
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    (0..n)
        .map(|i| {
            let f = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
            (a + f * (b - a)).powf(rho).clamp(sigma_min, sigma_max)
        })
        .collect()
}

/// A schedule set to a number of inference steps: the timesteps and each step's coefficients.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub alphas_cumprod: Vec<f32>,
    pub timesteps: Vec<usize>,
    pub steps: Vec<StepCoefficients>,
}

impl NoiseSchedule {
    pub fn new(config: ScheduleConfig, num_inference_steps: usize) -> Result<Self, PolicyError> {
        let tt = config.num_train_timesteps;
        if tt == 0 {
            return Err(PolicyError::Config("num_train_timesteps must be > 0".into()));
        }
        if num_inference_steps == 0 || num_inference_steps > tt {
            return Err(PolicyError::Config(format!(
                "num_inference_steps = {num_inference_steps} must be in 1..={tt} (num_train_timesteps)"
            )));
        }
        let ac = alphas_cumprod(config.beta_schedule, tt, config.beta_start, config.beta_end);
        // "leading" spacing, steps_offset = 0 (what LeRobot constructs).
        let ratio = tt / num_inference_steps;
        let timesteps: Vec<usize> = (0..num_inference_steps).rev().map(|i| i * ratio).collect();
        let steps = timesteps
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let prev = match config.kind {
                    SchedulerKind::Ddpm => timesteps.get(i + 1).map(|&p| p as i64).unwrap_or(-1),
                    SchedulerKind::Ddim => t as i64 - ratio as i64,
                };
                step_coefficients(&config, &ac, t, prev)
            })
            .collect();
        Ok(Self {
            config,
            alphas_cumprod: ac,
            timesteps,
            steps,
        })
    }

    /// DDIM from each of `timesteps` (descending) to the next, the last one to the clean sample: the
    /// truncated-diffusion kind enters at a small timestep and takes two such steps.
    pub fn ddim_at(config: ScheduleConfig, timesteps: Vec<usize>) -> Result<Self, PolicyError> {
        let tt = config.num_train_timesteps;
        if timesteps.is_empty() || timesteps.windows(2).any(|w| w[0] <= w[1]) || timesteps[0] >= tt {
            return Err(PolicyError::Config(format!(
                "timesteps {timesteps:?} must be non-empty, strictly descending and below num_train_timesteps = {tt}"
            )));
        }
        let config = ScheduleConfig {
            kind: SchedulerKind::Ddim,
            ..config
        };
        let ac = alphas_cumprod(config.beta_schedule, tt, config.beta_start, config.beta_end);
        let steps = timesteps
            .iter()
            .enumerate()
            .map(|(i, &t)| step_coefficients(&config, &ac, t, timesteps.get(i + 1).map(|&p| p as i64).unwrap_or(-1)))
            .collect();
        Ok(Self {
            config,
            alphas_cumprod: ac,
            timesteps,
            steps,
        })
    }

    /// The consistency student's sampler: DDIM through `timesteps` like [`Self::ddim_at`], with the
    /// network output read through the boundary-condition scalings of consistency models instead of as
    /// ε (see [`consistency_scalings`]). One timestep = one-step generation; more = multistep refinement
    /// (each step re-enters at the next timestep along the DDIM direction).
    pub fn consistency(config: ScheduleConfig, timesteps: Vec<usize>, sigma_data: f64) -> Result<Self, PolicyError> {
        if !(sigma_data.is_finite() && sigma_data > 0.0) {
            return Err(PolicyError::Config(format!("sigma_data must be > 0, got {sigma_data}")));
        }
        let mut s = Self::ddim_at(
            ScheduleConfig {
                prediction_type: PredictionType::Sample,
                ..config
            },
            timesteps,
        )?;
        for c in &mut s.steps {
            let a = s.alphas_cumprod[c.t] as f64;
            let (x_coef, out_coef) = consistency_scalings(&s.alphas_cumprod, c.t, sigma_data);
            c.x0_from_x = x_coef;
            c.x0_from_out = out_coef;
            c.eps_from_x = (1.0 - a.sqrt() * x_coef) / (1.0 - a).sqrt();
            c.eps_from_out = -a.sqrt() * out_coef / (1.0 - a).sqrt();
        }
        Ok(s)
    }

    /// A σ-space (variance-exploding) schedule whose denoiser returns the clean sample D(x, σ_i):
    /// step i evaluates at `t = i` (the denoiser looks σ_i up by index) and moves to σ_{i+1} by
    /// `next(i)`: `Deterministic` is MoDE's DDIM/DPM-Solver-1 step `x ← (σ'/σ)·x + (1 − σ'/σ)·D`;
    /// `Renoise` is consistency-model chaining `x ← D + σ'·z` (fresh noise, none after the last step).
    pub fn sigma_space(sigmas: &[f64], step: SigmaStep, clip: Option<f64>) -> Result<Self, PolicyError> {
        if sigmas.len() < 2 || sigmas.windows(2).any(|w| !(w[0] > w[1])) || sigmas.iter().any(|s| !(*s >= 0.0)) {
            return Err(PolicyError::Config(format!(
                "sigmas {sigmas:?} must hold at least two strictly descending, non-negative values"
            )));
        }
        let steps = sigmas
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (s, s_next) = (w[0], w[1]);
                let last = i + 2 == sigmas.len();
                let (prev_from_x0, prev_from_x, noise_std) = match step {
                    SigmaStep::Deterministic => {
                        let r = if s > 0.0 { s_next / s } else { 0.0 };
                        (1.0 - r, r, 0.0)
                    }
                    SigmaStep::Renoise => (1.0, 0.0, if last { 0.0 } else { s_next }),
                };
                StepCoefficients {
                    t: i,
                    x0_from_x: 0.0,
                    x0_from_out: 1.0,
                    eps_from_x: 0.0,
                    eps_from_out: 0.0,
                    prev_from_x0,
                    prev_from_x,
                    prev_from_eps: 0.0,
                    noise_std,
                    alpha_bar_prev: 1.0 / (1.0 + s_next * s_next),
                }
            })
            .collect();
        Ok(Self {
            config: ScheduleConfig {
                kind: SchedulerKind::Ddim,
                num_train_timesteps: sigmas.len(),
                beta_schedule: BetaSchedule::Linear,
                beta_start: 0.0,
                beta_end: 0.0,
                prediction_type: PredictionType::Sample,
                clip_sample: clip.is_some(),
                clip_sample_range: clip.unwrap_or(1.0),
            },
            alphas_cumprod: Vec::new(),
            timesteps: (0..sigmas.len() - 1).collect(),
            steps,
        })
    }

    /// Number of denoiser evaluations for a full run.
    pub fn nfe(&self) -> usize {
        self.steps.len()
    }

    /// Clip range applied to predicted x0, if any.
    pub fn clip(&self) -> Option<f32> {
        self.config.clip_sample.then_some(self.config.clip_sample_range as f32)
    }

    /// `add_noise(x0, ε, t) = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`, as scalars.
    pub fn add_noise_coefficients(&self, t: usize) -> (f64, f64) {
        let a = self.alphas_cumprod[t] as f64;
        (a.sqrt(), (1.0 - a).sqrt())
    }
}

fn step_coefficients(cfg: &ScheduleConfig, ac: &[f32], t: usize, prev: i64) -> StepCoefficients {
    let a_t = ac[t] as f64;
    let a_p = if prev >= 0 { ac[prev as usize] as f64 } else { 1.0 };
    let b_t = 1.0 - a_t;
    let b_p = 1.0 - a_p;
    // Predicted x0 and ε as linear functions of (x, out).
    let (x0_from_x, x0_from_out, eps_from_x, eps_from_out) = match cfg.prediction_type {
        PredictionType::Epsilon => (1.0 / a_t.sqrt(), -b_t.sqrt() / a_t.sqrt(), 0.0, 1.0),
        PredictionType::Sample => (0.0, 1.0, 1.0 / b_t.sqrt(), -a_t.sqrt() / b_t.sqrt()),
        PredictionType::VPrediction => (a_t.sqrt(), -b_t.sqrt(), b_t.sqrt(), a_t.sqrt()),
    };
    match cfg.kind {
        SchedulerKind::Ddpm => {
            let alpha_t = a_t / a_p;
            let beta_t = 1.0 - alpha_t;
            let var = if t > 0 { (b_p / b_t * beta_t).max(1e-20) } else { 0.0 };
            StepCoefficients {
                t,
                x0_from_x,
                x0_from_out,
                eps_from_x,
                eps_from_out,
                prev_from_x0: a_p.sqrt() * beta_t / b_t,
                prev_from_x: alpha_t.sqrt() * b_p / b_t,
                prev_from_eps: 0.0,
                noise_std: var.sqrt(),
                alpha_bar_prev: a_p,
            }
        }
        SchedulerKind::Ddim => StepCoefficients {
            t,
            x0_from_x,
            x0_from_out,
            eps_from_x,
            eps_from_out,
            prev_from_x0: a_p.sqrt(),
            prev_from_x: 0.0,
            prev_from_eps: (1.0 - a_p).max(0.0).sqrt(),
            noise_std: 0.0,
            alpha_bar_prev: a_p,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: SchedulerKind) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            num_train_timesteps: 100,
            beta_schedule: BetaSchedule::SquaredcosCapV2,
            beta_start: 1e-4,
            beta_end: 0.02,
            prediction_type: PredictionType::Epsilon,
            clip_sample: true,
            clip_sample_range: 1.0,
        }
    }

    #[test]
    fn leading_spacing_matches_diffusers() {
        let s = NoiseSchedule::new(cfg(SchedulerKind::Ddim), 10).unwrap();
        assert_eq!(s.timesteps, vec![90, 80, 70, 60, 50, 40, 30, 20, 10, 0]);
        let s = NoiseSchedule::new(cfg(SchedulerKind::Ddpm), 16).unwrap();
        assert_eq!(s.timesteps[0], 90);
        assert_eq!(s.timesteps[1], 84);
    }

    #[test]
    fn ddpm_last_step_returns_x0_without_noise() {
        let s = NoiseSchedule::new(cfg(SchedulerKind::Ddpm), 100).unwrap();
        let last = s.steps.last().unwrap();
        assert_eq!(last.t, 0);
        assert!(!last.draws_noise());
        assert!((last.prev_from_x0 - 1.0).abs() < 1e-12);
        assert!(last.prev_from_x.abs() < 1e-12);
        assert_eq!(s.steps.iter().filter(|c| c.draws_noise()).count(), 99);
    }

    #[test]
    fn rejects_bad_step_counts() {
        assert!(NoiseSchedule::new(cfg(SchedulerKind::Ddim), 0).is_err());
        assert!(NoiseSchedule::new(cfg(SchedulerKind::Ddim), 101).is_err());
    }
    #[test]
    fn karras_grid_matches_consistency_policy() {
        // Bins 0/27/54/79 of the CP defaults (σ_min 0.02, σ_max 80, ρ 7, N 80): 80.0 / 12.01 / 0.885 / 0.02.
        let s = karras_sigmas(0.02, 80.0, 7.0, 80);
        assert!((s[0] - 80.0).abs() < 1e-9 && (s[79] - 0.02).abs() < 1e-12);
        assert!((s[27] - 12.01).abs() < 0.01, "{}", s[27]);
        assert!((s[54] - 0.885).abs() < 0.001, "{}", s[54]);
    }

    #[test]
    fn sigma_space_steps() {
        let det = NoiseSchedule::sigma_space(&[80.0, 0.5, 0.0], SigmaStep::Deterministic, None).unwrap();
        assert_eq!(det.nfe(), 2);
        assert!((det.steps[0].prev_from_x - 0.5 / 80.0).abs() < 1e-15);
        assert!((det.steps[1].prev_from_x0 - 1.0).abs() < 1e-15 && det.steps[1].prev_from_x == 0.0);
        let re = NoiseSchedule::sigma_space(&[80.0, 0.8, 0.02], SigmaStep::Renoise, Some(1.0)).unwrap();
        assert_eq!(re.steps[0].noise_std, 0.8);
        assert!(!re.steps[1].draws_noise());
        assert!(NoiseSchedule::sigma_space(&[1.0, 2.0], SigmaStep::Renoise, None).is_err());
    }

    #[test]
    fn ddim_at_truncated_timesteps() {
        let mut c = cfg(SchedulerKind::Ddim);
        c.prediction_type = PredictionType::Sample;
        let s = NoiseSchedule::ddim_at(c.clone(), vec![8, 4]).unwrap();
        let ac = alphas_cumprod(c.beta_schedule, 100, 1e-4, 0.02);
        assert_eq!(s.timesteps, vec![8, 4]);
        assert!((s.steps[0].prev_from_x0 - (ac[4] as f64).sqrt()).abs() < 1e-12);
        assert!((s.steps[1].prev_from_x0 - 1.0).abs() < 1e-12);
        assert!(NoiseSchedule::ddim_at(c.clone(), vec![4, 8]).is_err());
        assert!(NoiseSchedule::ddim_at(c, vec![100]).is_err());
    }
    #[test]
    fn consistency_boundary_condition() {
        let mut c = cfg(SchedulerKind::Ddim);
        c.prediction_type = PredictionType::Sample;
        let ac = alphas_cumprod(c.beta_schedule, 100, 1e-4, 0.02);
        // At t = 0 (σ_min) the student is the identity on x_σ: c_out = 0, c_skip = 1.
        let (xc, oc) = consistency_scalings(&ac, 0, 0.5);
        assert!(oc.abs() < 1e-12 && (xc * (ac[0] as f64).sqrt() - 1.0).abs() < 1e-12);
        // At high noise the skip vanishes and c_out → σ_d.
        let (xc, oc) = consistency_scalings(&ac, 99, 0.5);
        assert!(
            xc * (ac[99] as f64).sqrt() < 1e-3 && (oc - 0.5).abs() < 1e-3,
            "{xc} {oc}"
        );
        // A one-step schedule returns c_skip·x_σ + c_out·out, clipped, with no noise.
        let s = NoiseSchedule::consistency(c, vec![90], 0.5).unwrap();
        assert_eq!(s.nfe(), 1);
        let st = s.steps[0];
        assert!((st.prev_from_x0 - 1.0).abs() < 1e-12 && !st.draws_noise());
        // ε recovered from (x, out) is consistent with x0: x = √ᾱ·x0 + √(1−ᾱ)·ε for any (x, out).
        let a = ac[90] as f64;
        let (x, out) = (0.3, -0.7);
        let x0 = st.x0_from_x * x + st.x0_from_out * out;
        let eps = st.eps_from_x * x + st.eps_from_out * out;
        assert!((a.sqrt() * x0 + (1.0 - a).sqrt() * eps - x).abs() < 1e-12);
    }
}
