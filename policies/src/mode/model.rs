//! The MoDE denoiser network F (Reuss et al., "Efficient Diffusion Transformer Policies with Mixture of
//! Expert Denoisers"): a small transformer over [noise token, observation token, action tokens] whose
//! feed-forward layers are sparse mixtures of SwiGLU experts routed by the noise level alone.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu, softmax};

use crate::error::PolicyError;
use crate::matmul::{linear, matmul, ExactMatmul};
use crate::normalize::NormMode;

/// Hyper-parameters of a MoDE policy: network shape, EDM constants and the inference schedule.
#[derive(Config, Debug, PartialEq)]
pub struct MoDEConfig {
    /// Action vector size.
    pub action_dim: usize,
    /// Size of one observation frame: the state and environment-state vectors concatenated.
    pub obs_dim: usize,
    /// Observation frames per window.
    #[config(default = 1)]
    pub n_obs_steps: usize,
    /// Actions predicted per chunk.
    #[config(default = 8)]
    pub horizon: usize,
    /// Actions executed per chunk.
    #[config(default = 8)]
    pub n_action_steps: usize,
    /// Transformer width D.
    #[config(default = 64)]
    pub d_model: usize,
    #[config(default = 2)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 4)]
    pub n_experts: usize,
    /// Experts evaluated per layer and noise level.
    #[config(default = 2)]
    pub top_k: usize,
    /// EDM data standard deviation σ_d.
    #[config(default = 0.5)]
    pub sigma_data: f64,
    #[config(default = 0.001)]
    pub sigma_min: f64,
    #[config(default = 80.0)]
    pub sigma_max: f64,
    /// Denoiser evaluations of a default inference (exponential σ grid + final 0).
    #[config(default = 10)]
    pub num_inference_steps: usize,
    /// How the observation features are normalised (MinMax or MeanStd).
    #[config(default = "NormMode::MinMax")]
    pub input_norm: NormMode,
    /// How actions are normalised; MinMax maps them to [-1, 1], where inference clamps D.
    #[config(default = "NormMode::MinMax")]
    pub action_norm: NormMode,
}

impl MoDEConfig {
    /// Reject shapes the network cannot be built with (a bad riptide.json is an error, not a panic).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |m: String| Err(PolicyError::Config(format!("mode config: {m}")));
        let positive = [
            ("action_dim", self.action_dim),
            ("obs_dim", self.obs_dim),
            ("n_obs_steps", self.n_obs_steps),
            ("horizon", self.horizon),
            ("n_action_steps", self.n_action_steps),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_experts", self.n_experts),
            ("top_k", self.top_k),
            ("num_inference_steps", self.num_inference_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return err(format!("{name} must be > 0"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return err(format!(
                "d_model = {} must be divisible by n_heads = {}",
                self.d_model, self.n_heads
            ));
        }
        if self.top_k > self.n_experts {
            return err(format!("top_k = {} exceeds n_experts = {}", self.top_k, self.n_experts));
        }
        if self.n_action_steps > self.horizon {
            return err(format!(
                "n_action_steps = {} exceeds horizon = {}",
                self.n_action_steps, self.horizon
            ));
        }
        if !(self.sigma_data > 0.0 && self.sigma_min > 0.0 && self.sigma_max > self.sigma_min) {
            return err(format!(
                "need sigma_data > 0 and 0 < sigma_min < sigma_max (got {}, {}, {})",
                self.sigma_data, self.sigma_min, self.sigma_max
            ));
        }
        if self.input_norm == NormMode::Identity || self.action_norm == NormMode::Identity {
            return err("input_norm and action_norm must be MinMax or MeanStd".into());
        }
        Ok(())
    }

    /// Build the network with zero weights (RMSNorm gains 1): the trainer then draws seeded weights
    /// and the loader overwrites every tensor, so burn's backend RNG is never consulted.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MoDE<B> {
        let d = self.d_model;
        let lin = |i: usize, o: usize, bias: bool| {
            LinearConfig::new(i, o)
                .with_bias(bias)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let blocks = (0..self.n_layers)
            .map(|_| Block {
                attn_norm: RmsNorm::new(d, device),
                query: lin(d, d, true),
                key: lin(d, d, true),
                value: lin(d, d, true),
                attn_out: lin(d, d, true),
                mlp_norm: RmsNorm::new(d, device),
                router: Router {
                    fc1: lin(d, 2 * d, true),
                    fc2: lin(2 * d, self.n_experts, true),
                },
                experts: (0..self.n_experts)
                    .map(|_| Expert {
                        proj: lin(d, 8 * d, true),
                        out: lin(4 * d, d, false),
                    })
                    .collect(),
                n_heads: self.n_heads,
            })
            .collect();
        MoDE {
            sigma_emb: lin(1, d, true),
            sigma_linear: lin(d, d, false),
            obs_emb: lin(self.n_obs_steps * self.obs_dim, d, true),
            action_emb: lin(self.action_dim, d, true),
            pos_emb: Param::from_tensor(Tensor::zeros([1 + self.horizon, d], device)),
            blocks,
            final_norm: RmsNorm::new(d, device),
            head: lin(d, self.action_dim, true),
            horizon: self.horizon,
        }
    }
}

/// EDM "no boundary" preconditioning (Karras et al.): (c_skip, c_out, c_in) at noise level σ.
pub fn edm_scalings(sigma: f64, sigma_data: f64) -> (f64, f64, f64) {
    let s2 = sigma * sigma + sigma_data * sigma_data;
    (
        sigma_data * sigma_data / s2,
        sigma * sigma_data / s2.sqrt(),
        1.0 / s2.sqrt(),
    )
}

/// MoDE's inference grid: `exp(linspace(ln σ_max, ln σ_min, n))` followed by a final 0.
pub fn exponential_sigmas(sigma_max: f64, sigma_min: f64, n: usize) -> Vec<f64> {
    let (a, b) = (sigma_max.ln(), sigma_min.ln());
    let mut s: Vec<f64> = (0..n)
        .map(|i| {
            let f = if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 };
            // Endpoints exact, not exp(ln(σ)) round trips.
            match i {
                0 => sigma_max,
                _ if i + 1 == n => sigma_min,
                _ => (a + f * (b - a)).exp(),
            }
        })
        .collect();
    s.push(0.0);
    s
}

/// `x / max(rms(x), ε) · g` over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
}

impl<B: Backend> RmsNorm<B> {
    fn new(d: usize, device: &B::Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        Self::unit(x).mul(self.weight.val().unsqueeze::<3>())
    }

    /// `x / max(rms(x), ε)`: the norm without its gain (which a following matmul can absorb).
    pub fn unit(x: Tensor<B, 3>) -> Tensor<B, 3> {
        let rms = x.clone().square().mean_dim(2).sqrt().clamp_min(1e-6);
        x.div(rms)
    }
}

/// Router on the noise embedding: `Linear(D, 2D) → GELU → Linear(2D, E)`.
#[derive(Module, Debug)]
pub struct Router<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: ExactMatmul> Router<B> {
    /// Expert probabilities `softmax(Router(c))`, clamped to [1e-9, 1 − 1e-9] as MoDE does; c is
    /// [B, 1, D], the result [B, E].
    pub fn probs(&self, c: Tensor<B, 3>) -> Tensor<B, 2> {
        let logits = linear(&self.fc2, gelu(linear(&self.fc1, c)));
        let [b, _, e] = logits.dims();
        softmax(logits.reshape([b, e]), 1).clamp(1e-9, 1.0 - 1e-9)
    }

    /// [`Self::probs`] read back to the host, row-major [B, E] (routing decisions are made there).
    pub fn probs_host(&self, c: Tensor<B, 3>) -> Vec<f32> {
        self.probs(c)
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32 above")
    }
}

/// SwiGLU expert: `Linear(D, 8D)` → [proj, gate] → `proj·SiLU(gate)` → `Linear(4D, D, no bias)`.
#[derive(Module, Debug)]
pub struct Expert<B: Backend> {
    pub proj: Linear<B>,
    pub out: Linear<B>,
}

impl<B: ExactMatmul> Expert<B> {
    pub fn forward(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = linear(&self.proj, h);
        let half = y.dims()[2] / 2;
        let (p, g) = (y.clone().narrow(2, 0, half), y.narrow(2, half, half));
        linear(&self.out, p.mul(silu(g)))
    }
}

/// One noise-conditioned block:
/// `x = x + Attn(RMSNorm(x) + c)`, `h = RMSNorm(x)`, `x = h + Σ_k w_k Expert_k(h)`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub attn_out: Linear<B>,
    pub mlp_norm: RmsNorm<B>,
    pub router: Router<B>,
    pub experts: Vec<Expert<B>>,
    pub n_heads: usize,
}

impl<B: ExactMatmul> Block<B> {
    /// `x + Attn(RMSNorm(x) + c)`: non-causal multi-head self-attention, c added to every token.
    pub fn attend(&self, x: Tensor<B, 3>, c: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let xn = self.attn_norm.forward(x.clone()) + c;
        let (q, k, v) = (
            linear(&self.query, xn.clone()),
            linear(&self.key, xn.clone()),
            linear(&self.value, xn),
        );
        x + self.attention(q, k, v, [b, t, d])
    }

    /// [`Self::attend`] with the norm's gain g folded into the Q, K, V weights and the noise term c into
    /// their biases: `(x̂·g + c)·W + b = x̂·(diag(g)·W) + (c·W + b)`. `weights` are the three
    /// `diag(g)·W` ([`Self::qkv_gain_folded`]), `biases` the three `c·W + b` ([`Self::qkv_noise_bias`]):
    /// σ alone fixes the biases, so the expert cache precomputes them per step.
    pub fn attend_folded(
        &self,
        x: Tensor<B, 3>,
        weights: &[Tensor<B, 2>; 3],
        biases: &[Tensor<B, 1>; 3],
    ) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let xn = RmsNorm::unit(x.clone()).reshape([b * t, d]);
        let proj =
            |i: usize| (matmul(xn.clone(), weights[i].clone()) + biases[i].clone().unsqueeze::<2>()).reshape([b, t, d]);
        x + self.attention(proj(0), proj(1), proj(2), [b, t, d])
    }

    fn qkv(&self) -> [&Linear<B>; 3] {
        [&self.query, &self.key, &self.value]
    }

    /// `diag(g)·W` for Q, K and V, g the attention norm's gain.
    pub fn qkv_gain_folded(&self) -> [Tensor<B, 2>; 3] {
        let g = self.attn_norm.weight.val();
        let d = g.dims()[0];
        self.qkv().map(|l| l.weight.val().mul(g.clone().reshape([d, 1])))
    }

    /// `c·W + b` for Q, K and V, from a noise embedding c [1, 1, D].
    pub fn qkv_noise_bias(&self, c: Tensor<B, 3>) -> [Tensor<B, 1>; 3] {
        let d = c.dims()[2];
        let c = c.reshape([1, d]);
        self.qkv().map(|l| {
            let y = linear(l, c.clone());
            let n = y.dims()[1];
            y.reshape([n])
        })
    }

    /// Scaled dot-product attention over projected q, k, v ([B, T, D] each) and the output projection.
    fn attention(&self, q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, [b, t, d]: [usize; 3]) -> Tensor<B, 3> {
        let (h, dh) = (self.n_heads, d / self.n_heads);
        let heads = |x: Tensor<B, 3>| x.reshape([b, t, h, dh]).swap_dims(1, 2);
        let (q, k, v) = (heads(q), heads(k), heads(v));
        let att = softmax(matmul(q, k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()), 3);
        let y = matmul(att, v).swap_dims(1, 2).reshape([b, t, d]);
        linear(&self.attn_out, y)
    }

    /// `Σ_k w_k Expert_k(h)` over the given (expert, weight) pairs: the uncached inference path.
    pub fn experts_selected(&self, h: Tensor<B, 3>, selected: &[(usize, f32)]) -> Tensor<B, 3> {
        let mut acc: Option<Tensor<B, 3>> = None;
        for &(e, w) in selected {
            let y = self.experts[e].forward(h.clone()).mul_scalar(w);
            acc = Some(match acc {
                Some(a) => a + y,
                None => y,
            });
        }
        acc.unwrap_or_else(|| h.zeros_like())
    }

    /// `Σ_e gates[:, e]·Expert_e(h)` with per-sample gates [B, E] (zero for unselected experts): the
    /// training path, where each sample has its own σ and therefore its own experts.
    pub fn experts_gated(&self, h: Tensor<B, 3>, gates: Tensor<B, 2>) -> Tensor<B, 3> {
        let b = gates.dims()[0];
        let mut acc: Option<Tensor<B, 3>> = None;
        for (e, expert) in self.experts.iter().enumerate() {
            let g = gates.clone().narrow(1, e, 1).reshape([b, 1, 1]);
            let y = expert.forward(h.clone()).mul(g);
            acc = Some(match acc {
                Some(a) => a + y,
                None => y,
            });
        }
        acc.expect("at least one expert")
    }
}

/// The denoiser network F(c_in·a, σ, obs).
#[derive(Module, Debug)]
pub struct MoDE<B: Backend> {
    /// Noise embedding `c = sigma_linear(sigma_emb(ln(σ)/4))`.
    pub sigma_emb: Linear<B>,
    pub sigma_linear: Linear<B>,
    /// One observation token from the normalised, flattened observation window.
    pub obs_emb: Linear<B>,
    pub action_emb: Linear<B>,
    /// Learned positions: row 0 for the observation token, rows 1..=horizon for the actions (the noise
    /// token gets none, as in MoDE).
    pub pos_emb: Param<Tensor<B, 2>>,
    pub blocks: Vec<Block<B>>,
    pub final_norm: RmsNorm<B>,
    pub head: Linear<B>,
    pub horizon: usize,
}

impl<B: ExactMatmul> MoDE<B> {
    /// Noise embedding of per-sample noise levels σ [B] → [B, 1, D].
    pub fn noise_embedding(&self, sigma: Tensor<B, 1>) -> Tensor<B, 3> {
        let b = sigma.dims()[0];
        let s = sigma.log().div_scalar(4.0).reshape([b, 1, 1]);
        linear(&self.sigma_linear, linear(&self.sigma_emb, s))
    }

    /// Noise embedding of one σ shared by the whole batch, [1, 1, D].
    pub fn noise_embedding_at(&self, sigma: f64, device: &B::Device) -> Tensor<B, 3> {
        self.noise_embedding(Tensor::from_floats([sigma as f32], device))
    }

    /// The observation token with its position, [B, 1, D], from the flattened window [B, To·obs_dim].
    pub fn obs_token(&self, obs: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, _] = obs.dims();
        let d = self.pos_emb.dims()[1];
        let pos = self.pos_emb.val().narrow(0, 0, 1).reshape([1, 1, d]);
        linear(&self.obs_emb, obs).reshape([b, 1, d]) + pos
    }

    /// F over the token sequence; `attend(layer, block, x)` computes each block's attention residual
    /// (`block.attend(x, c)`, or the cache's folded form) and `mlp(layer, block, h)` its expert mixture
    /// (dense gates in training, selected experts or a cached fused MLP at inference).
    pub fn forward_with(
        &self,
        x_in: Tensor<B, 3>,
        c: Tensor<B, 3>,
        obs_token: Tensor<B, 3>,
        mut attend: impl FnMut(usize, &Block<B>, Tensor<B, 3>) -> Tensor<B, 3>,
        mut mlp: impl FnMut(usize, &Block<B>, Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let [b, h, _] = x_in.dims();
        let d = self.pos_emb.dims()[1];
        let c_tok = if c.dims()[0] == b { c } else { c.repeat_dim(0, b) };
        let pos = self.pos_emb.val().narrow(0, 1, h).reshape([1, h, d]);
        let actions = linear(&self.action_emb, x_in) + pos;
        let mut x = Tensor::cat(vec![c_tok, obs_token, actions], 1);
        for (l, block) in self.blocks.iter().enumerate() {
            let x_attn = attend(l, block, x);
            let hn = block.mlp_norm.forward(x_attn);
            x = hn.clone() + mlp(l, block, hn);
        }
        let t = x.dims()[1];
        linear(&self.head, self.final_norm.forward(x.narrow(1, t - h, h)))
    }
}

/// The k most probable experts of one probability row, weights renormalised over them (ties go to
/// the lower index, so every path picks the same experts).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.truncate(k);
    let sum: f32 = idx.iter().map(|&i| probs[i]).sum();
    idx.into_iter().map(|i| (i, probs[i] / sum)).collect()
}
