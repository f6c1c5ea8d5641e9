//! The one sampler loop every policy kind runs: kinds differ in their denoiser and schedule only.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::PolicyError;
use crate::request::{StepHook, StepInfo};
use crate::schedule::{NoiseSchedule, StepCoefficients};
use crate::tensor::HostTensor;

/// A network that maps (sample, timestep, conditioning) to the schedule's prediction target.
pub trait Denoiser<B: Backend> {
    /// Observation conditioning, computed once per inference.
    type Cond;

    fn denoise(&self, x: Tensor<B, 3>, t: usize, cond: &Self::Cond) -> Tensor<B, 3>;

    /// One reverse step from the denoiser's output (`noise`: this step's draw, if it draws one).
    /// The default is [`step`] in burn's ops; a fused path runs it as one kernel.
    fn update(
        &self,
        x: Tensor<B, 3>,
        out: Tensor<B, 3>,
        c: &StepCoefficients,
        clip: Option<f32>,
        noise: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        step(x, out, c, clip, noise)
    }
}

/// One reverse step in burn's ops: x0 from (x, out), clipped; then x' from x0, ε, x and the noise.
pub fn step<B: Backend>(
    x: Tensor<B, 3>,
    out: Tensor<B, 3>,
    c: &StepCoefficients,
    clip: Option<f32>,
    noise: Option<Tensor<B, 3>>,
) -> Tensor<B, 3> {
    let mut x0 = x.clone().mul_scalar(c.x0_from_x) + out.clone().mul_scalar(c.x0_from_out);
    if let Some(r) = clip {
        x0 = x0.clamp(-r, r);
    }
    let mut next = x0.mul_scalar(c.prev_from_x0);
    if c.prev_from_eps != 0.0 {
        // DDIM's direction term uses the *unclipped* ε, as diffusers does by default.
        let eps = x.clone().mul_scalar(c.eps_from_x) + out.mul_scalar(c.eps_from_out);
        next = next + eps.mul_scalar(c.prev_from_eps);
    }
    if c.prev_from_x != 0.0 {
        next = next + x.mul_scalar(c.prev_from_x);
    }
    if let Some(z) = noise {
        next = next + z.mul_scalar(c.noise_std);
    }
    next
}

/// Source of Gaussian noise: caller-supplied tensors first, then a seeded RNG in stream order.
///
/// A wave of rows from several streams ([`NoiseSource::per_row`]) gives each row its own seeded stream,
/// so a row's noise is the same whether it is sampled alone or in a batch with others.
pub struct NoiseSource {
    rng: StdRng,
    pub seed: u64,
    /// A wave's rows: each stream with the number of leading rows it draws for. Empty = one stream.
    rows: Vec<(StdRng, usize)>,
}

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            rows: Vec::new(),
        }
    }

    /// One stream per group of rows: `(seed, rows)` in batch order. A draw whose leading dimension is
    /// the total of the rows takes each group's rows from that group's stream; any other draw comes
    /// from the first seed's stream.
    pub fn per_row(streams: &[(u64, usize)]) -> Self {
        let seed = streams.first().map_or(0, |s| s.0);
        Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            rows: streams.iter().map(|&(s, n)| (StdRng::seed_from_u64(s), n)).collect(),
        }
    }

    pub fn draw(&mut self, shape: [usize; 3]) -> HostTensor {
        let n: usize = shape.iter().product();
        let total: usize = self.rows.iter().map(|r| r.1).sum();
        let data = if !self.rows.is_empty() && shape[0] == total {
            let per = n / total.max(1);
            let mut data = Vec::with_capacity(n);
            for (rng, rows) in &mut self.rows {
                data.extend((0..*rows * per).map(|_| -> f32 { StandardNormal.sample(rng) }));
            }
            data
        } else {
            (0..n).map(|_| StandardNormal.sample(&mut self.rng)).collect()
        };
        HostTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// `supplied` if given (shape-checked), else a fresh draw.
    pub fn take(
        &mut self,
        supplied: Option<&HostTensor>,
        shape: [usize; 3],
        what: &str,
    ) -> Result<HostTensor, PolicyError> {
        match supplied {
            Some(t) if t.shape == shape => {
                if let Some(i) = t.first_non_finite() {
                    return Err(PolicyError::Input(format!(
                        "{what} holds a non-finite value at flat index {i}"
                    )));
                }
                Ok(t.clone())
            }
            Some(t) => Err(PolicyError::Input(format!(
                "{what} has shape {:?}, expected {shape:?}",
                t.shape
            ))),
            None => Ok(self.draw(shape)),
        }
    }
}

pub fn to_device<B: Backend, const D: usize>(t: &HostTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), device)
}

pub fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 tensor data");
    HostTensor { shape, data }
}

/// Run the reverse process from `x` through `schedule.steps[steps]` (a full run is `0..nfe`; warm
/// starts begin later, parity tests may run a single step).
///
/// `step_noise(k)` returns the variance noise for step k (only called for steps that draw noise).
/// Returns the final sample and the number of denoiser evaluations.
pub fn sample<B: Backend, D: Denoiser<B>>(
    denoiser: &D,
    cond: &D::Cond,
    schedule: &NoiseSchedule,
    steps: std::ops::Range<usize>,
    mut x: Tensor<B, 3>,
    step_noise: &mut dyn FnMut(usize) -> Result<HostTensor, PolicyError>,
    mut hook: Option<&mut dyn StepHook>,
) -> Result<(Tensor<B, 3>, usize), PolicyError> {
    let device = x.device();
    let clip = schedule.clip();
    let n_steps = schedule.steps.len();
    let mut nfe = 0;
    let (skip, take) = (steps.start, steps.end.saturating_sub(steps.start));
    for (k, c) in schedule.steps.iter().enumerate().skip(skip).take(take) {
        let out = denoiser.denoise(x.clone(), c.t, cond);
        nfe += 1;
        let noise = match c.draws_noise() {
            true => Some(to_device::<B, 3>(&step_noise(k)?, &device)),
            false => None,
        };
        x = denoiser.update(x, out, c, clip, noise);
        if let Some(h) = hook.as_deref_mut() {
            let mut host = to_host(x);
            h.after_step(
                StepInfo {
                    index: k,
                    t: c.t,
                    n_steps,
                    alpha_bar: c.alpha_bar_prev,
                },
                &mut host,
            );
            x = to_device(&host, &device);
        }
    }
    Ok((x, nfe))
}
