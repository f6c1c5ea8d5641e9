//! Training MoDE from recorded episodes: EDM denoising loss on F plus the router load-balancing loss,
//! AdamW, every random draw from seeded host RNG streams (same seed, same CPU: same run).
//!
//! Choices (documented deviations from the paper's code):
//! - σ_train ~ truncated log-logistic(loc ln 0.5, scale 0.5) on [σ_min, σ_max], by inverse CDF.
//! - Each sample routes on its own σ. Experts are drawn by multinomial sampling without replacement
//!   from the router probabilities ([`TrainRouting::Sample`], MoDE's training behaviour) or taken
//!   top-k ([`TrainRouting::TopK`]); weights are renormalised over the chosen experts either way. All
//!   experts are evaluated densely and gated (zero gate = unused), which is simple and fine at the
//!   sizes trained on a CPU.
//! - No EMA: the returned policy holds the live weights.

use crate::train::trainer::splitmix64;
use std::collections::BTreeMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal, Uniform};

use super::model::{edm_scalings, top_k, MoDE, MoDEConfig};
use super::policy::{interleave_frames, MoDEPolicy};
use crate::error::PolicyError;
use crate::matmul::ExactMatmul;
use crate::policy::FeatureKind;
use crate::train::data::{FeatureStats, TrainingSet, WindowSpec};

/// How training picks each sample's experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainRouting {
    /// Multinomial sampling of k experts without replacement (exploration, as MoDE trains).
    Sample,
    /// The k most probable experts (what inference uses).
    TopK,
}

#[derive(Debug, Clone)]
pub struct MoDETrainConfig {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Weight of the load-balancing loss (MoDE's `entropy_gamma`).
    pub aux_weight: f64,
    pub routing: TrainRouting,
    /// log-logistic σ_train location (of ln σ) and scale.
    pub sigma_loc: f64,
    pub sigma_scale: f64,
}

impl Default for MoDETrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-4,
            seed: 0,
            aux_weight: 0.01,
            routing: TrainRouting::Sample,
            sigma_loc: 0.5f64.ln(),
            sigma_scale: 0.5,
        }
    }
}

/// Independent RNG stream `stream` (init = 0, steps = 1) at `index`, derived from the run seed.
fn stream_rng(seed: u64, stream: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ index))
}

/// Seeded weights: Linear weights and biases U(±1/√fan_in) (PyTorch's default), position embeddings
/// N(0, 0.02²), RMSNorm gains left at 1.
struct SeededInit {
    rng: StdRng,
    stack: Vec<(String, String)>,
    fan_in: usize,
}

impl<B: Backend> ModuleMapper<B> for SeededInit {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let (name, ty) = self.stack.last().cloned().unwrap_or_default();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let values: Option<Vec<f32>> = match (ty.as_str(), name.as_str()) {
            ("Struct:Linear", "weight" | "bias") => {
                if name == "weight" {
                    self.fan_in = dims[0];
                }
                let bound = 1.0 / (self.fan_in.max(1) as f64).sqrt();
                let u = Uniform::new_inclusive(-bound, bound).expect("finite bound");
                Some((0..n).map(|_| u.sample(&mut self.rng) as f32).collect())
            }
            (_, "pos_emb") => Some(
                (0..n)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(&mut self.rng);
                        (0.02 * z) as f32
                    })
                    .collect(),
            ),
            _ => None,
        };
        let tensor = match values {
            Some(v) => {
                let grad = tensor.is_require_grad();
                Tensor::<B, D>::from_data(TensorData::new(v, dims.to_vec()), &tensor.device()).set_require_grad(grad)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// A network with seeded initial weights.
pub fn init_model<B: Backend>(config: &MoDEConfig, seed: u64, device: &B::Device) -> MoDE<B> {
    config.init::<B>(device).map(&mut SeededInit {
        rng: stream_rng(seed, 0, 0),
        stack: Vec::new(),
        fan_in: 1,
    })
}

/// Check that `config` fits the data (state-vector inputs only, matching sizes).
fn check_data(config: &MoDEConfig, data: &TrainingSet) -> Result<(), PolicyError> {
    config.validate()?;
    if let Some(f) = data.features().iter().find(|f| f.kind == FeatureKind::Visual) {
        return Err(PolicyError::Config(format!(
            "mode takes state vectors only; the training set has camera {:?}",
            f.name
        )));
    }
    let obs_dim: usize = data.features().iter().map(|f| f.shape[0]).sum();
    if obs_dim != config.obs_dim || data.action_dim() != config.action_dim {
        return Err(PolicyError::Config(format!(
            "config has obs_dim {} / action_dim {}, the training set {obs_dim} / {}",
            config.obs_dim,
            config.action_dim,
            data.action_dim()
        )));
    }
    Ok(())
}

/// A policy with seeded untrained weights and the data's normalisation stats (a baseline for tests
/// and benchmarks).
pub fn untrained_policy<B: ExactMatmul>(
    config: MoDEConfig,
    data: &TrainingSet,
    seed: u64,
    device: &B::Device,
) -> Result<MoDEPolicy<B>, PolicyError> {
    check_data(&config, data)?;
    let model = init_model::<B>(&config, seed, device);
    MoDEPolicy::new(config, model, data.features().to_vec(), data.stats()?, device.clone())
}

/// Inverse CDF of the log-logistic truncated to [lo, hi]: ln σ = loc + scale·logit(u).
fn sample_sigma(rng: &mut StdRng, loc: f64, scale: f64, lo: f64, hi: f64) -> f64 {
    let cdf = |s: f64| 1.0 / (1.0 + (-(s.ln() - loc) / scale).exp());
    let (a, b) = (cdf(lo), cdf(hi));
    let u = a + (b - a) * rng.random::<f64>();
    let u = u.clamp(1e-12, 1.0 - 1e-12);
    (loc + scale * (u / (1.0 - u)).ln()).exp().clamp(lo, hi)
}

/// k distinct experts drawn in proportion to `p` (sampling without replacement).
fn sample_experts(rng: &mut StdRng, p: &[f32], k: usize) -> Vec<usize> {
    let mut w: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let total: f64 = w.iter().sum();
        let mut u = rng.random::<f64>() * total;
        let mut pick = w.iter().rposition(|&v| v > 0.0).unwrap_or(0);
        for (i, &v) in w.iter().enumerate() {
            if v > 0.0 && u < v {
                pick = i;
                break;
            }
            u -= v;
        }
        out.push(pick);
        w[pick] = 0.0;
    }
    out
}

/// Train a MoDE policy on `data`; returns the policy (live weights, on the inner backend) and the
/// loss of every step (denoising MSE + aux_weight·load-balancing).
pub fn train_mode<B: AutodiffBackend + ExactMatmul>(
    config: MoDEConfig,
    train: &MoDETrainConfig,
    data: &TrainingSet,
    device: &B::Device,
) -> Result<(MoDEPolicy<B::InnerBackend>, Vec<f32>), PolicyError>
where
    B::InnerBackend: ExactMatmul,
{
    check_data(&config, data)?;
    if train.batch_size == 0 {
        return Err(PolicyError::Config("batch_size must be > 0".into()));
    }
    let stats: BTreeMap<String, FeatureStats> = data.stats()?;
    let input_norms = data
        .features()
        .iter()
        .map(|f| stats[&f.name].norm(&f.name, config.input_norm))
        .collect::<Result<Vec<_>, _>>()?;
    let action_norm = stats["action"].norm("action", config.action_norm)?;
    let spec = WindowSpec {
        n_obs_steps: config.n_obs_steps,
        horizon: config.horizon,
        drop_n_last_frames: (config.horizon + 1).saturating_sub(config.n_action_steps + config.n_obs_steps),
    };
    let windows = data.windows(&spec);
    if windows.is_empty() {
        return Err(PolicyError::Input(
            "training set: no windows (episodes too short?)".into(),
        ));
    }
    let (b, h, a) = (train.batch_size, config.horizon, config.action_dim);
    let (n_exp, k) = (config.n_experts, config.top_k);

    let mut model: MoDE<B> = init_model(&config, train.seed, device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(train.weight_decay as f32)
        .init::<B, MoDE<B>>();
    let mut losses = Vec::with_capacity(train.steps);
    let pick = Uniform::new(0, windows.len()).expect("non-empty windows");

    for step in 0..train.steps {
        let mut rng = stream_rng(train.seed, 1, step as u64);
        // Batch on the host, normalised.
        let mut obs_feats: Vec<(Vec<f32>, usize)> = data.features().iter().map(|f| (Vec::new(), f.shape[0])).collect();
        let mut a0 = Vec::with_capacity(b * h * a);
        for _ in 0..b {
            let (e, t) = windows[pick.sample(&mut rng)];
            let s = data.sample(e, t, &spec);
            for ((dst, _), (src, norm)) in obs_feats.iter_mut().zip(s.obs.iter().zip(&input_norms)) {
                let mut v = src.clone();
                norm.normalize(&mut v, 1);
                dst.extend(v);
            }
            let mut act = s.action;
            action_norm.normalize(&mut act, 1);
            a0.extend(act);
        }
        let obs = interleave_frames(&obs_feats, b, config.n_obs_steps);
        // Noise levels, noise, EDM inputs and the F target: target = (a0 − c_skip·(a0 + σn)) / c_out.
        let sigmas: Vec<f64> = (0..b)
            .map(|_| {
                sample_sigma(
                    &mut rng,
                    train.sigma_loc,
                    train.sigma_scale,
                    config.sigma_min,
                    config.sigma_max,
                )
            })
            .collect();
        let mut x_in = Vec::with_capacity(b * h * a);
        let mut target = Vec::with_capacity(b * h * a);
        for (i, &s) in sigmas.iter().enumerate() {
            let (c_skip, c_out, c_in) = edm_scalings(s, config.sigma_data);
            for &v in &a0[i * h * a..(i + 1) * h * a] {
                let n: f64 = StandardNormal.sample(&mut rng);
                let noised = v as f64 + s * n;
                x_in.push((noised * c_in) as f32);
                target.push(((v as f64 - c_skip * noised) / c_out) as f32);
            }
        }
        let width = obs.len() / b;
        let obs = Tensor::<B, 2>::from_data(TensorData::new(obs, [b, width]), device);
        let x_in = Tensor::<B, 3>::from_data(TensorData::new(x_in, [b, h, a]), device);
        let target = Tensor::<B, 3>::from_data(TensorData::new(target, [b, h, a]), device);
        let sigma_t = Tensor::<B, 1>::from_data(
            TensorData::new(sigmas.iter().map(|&s| s as f32).collect::<Vec<_>>(), [b]),
            device,
        );

        let c = model.noise_embedding(sigma_t);
        let obs_token = model.obs_token(obs);
        let mut aux: Vec<Tensor<B, 1>> = Vec::new();
        let f = model.forward_with(
            x_in,
            c.clone(),
            obs_token,
            |_, block, x| block.attend(x, c.clone()),
            |_, block, hn| {
                let probs = block.router.probs(c.clone());
                let host = probs
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("f32 router probabilities");
                let mut mask = vec![0.0f32; b * n_exp];
                let mut counts = vec![0.0f32; n_exp];
                for (i, row) in host.chunks(n_exp).enumerate() {
                    let chosen: Vec<usize> = match train.routing {
                        TrainRouting::Sample => sample_experts(&mut rng, row, k),
                        TrainRouting::TopK => top_k(row, k).into_iter().map(|(e, _)| e).collect(),
                    };
                    for e in chosen {
                        mask[i * n_exp + e] = 1.0;
                        counts[e] += 1.0 / (b * k) as f32;
                    }
                }
                let mask = Tensor::<B, 2>::from_data(TensorData::new(mask, [b, n_exp]), device);
                let frac = Tensor::<B, 1>::from_data(TensorData::new(counts, [n_exp]), device);
                // Switch-style load balancing: E·Σ_e mean_b(p_e)·(fraction of routings to e).
                aux.push(
                    probs
                        .clone()
                        .mean_dim(0)
                        .reshape([n_exp])
                        .mul(frac)
                        .sum()
                        .mul_scalar(n_exp as f64),
                );
                let picked = probs.mul(mask);
                let gates = picked.clone().div(picked.sum_dim(1));
                block.experts_gated(hn, gates)
            },
        );
        let mse = (f - target).square().mean();
        let n_aux = aux.len();
        let aux = Tensor::cat(aux, 0).sum().div_scalar(n_aux as f64);
        let loss = mse + aux.mul_scalar(train.aux_weight);
        let value = loss
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 loss")[0];
        if !value.is_finite() {
            return Err(PolicyError::Input(format!(
                "training diverged: loss is {value} at step {step}; lower the learning rate"
            )));
        }
        losses.push(value);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(train.lr, model, grads);
    }
    let policy = MoDEPolicy::new(config, model.valid(), data.features().to_vec(), stats, device.clone())?;
    Ok((policy, losses))
}
