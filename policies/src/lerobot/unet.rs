//! LeRobot's `DiffusionConditionalUnet1d`: a 1-D temporal U-Net over the action chunk whose residual
//! blocks are FiLM-modulated by the diffusion-step embedding and the observation features.

use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::mish;

#[derive(Config, Debug)]
pub struct ConditionalUnet1dConfig {
    pub action_dim: usize,
    pub global_cond_dim: usize,
    pub down_dims: Vec<usize>,
    pub kernel_size: usize,
    pub n_groups: usize,
    pub diffusion_step_embed_dim: usize,
    pub use_film_scale_modulation: bool,
}

/// Conv1d → GroupNorm → Mish.
#[derive(Module, Debug)]
pub struct Conv1dBlock<B: Backend> {
    pub conv: Conv1d<B>,
    pub norm: GroupNorm<B>,
}

impl<B: Backend> Conv1dBlock<B> {
    fn new(c_in: usize, c_out: usize, k: usize, groups: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv1dConfig::new(c_in, c_out, k)
                .with_padding(PaddingConfig1d::Explicit(k / 2, k / 2))
                .init(device),
            norm: GroupNormConfig::new(groups, c_out).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_film(x, None)
    }

    /// conv → GroupNorm → Mish, then FiLM if given (`scale·h + bias` from [B, 2·c], or `h + bias`).
    pub fn forward_film(&self, x: Tensor<B, 3>, film: Option<(&Tensor<B, 2>, bool)>) -> Tensor<B, 3> {
        let h = mish(self.norm.forward(self.conv.forward(x)));
        match film {
            None => h,
            Some((film, scale)) => {
                let film = film.clone().unsqueeze_dim::<3>(2);
                let c = h.dims()[1];
                if scale {
                    h * film.clone().narrow(1, 0, c) + film.narrow(1, c, c)
                } else {
                    h + film
                }
            }
        }
    }
}

/// `ConditionalResidualBlock1d`: h = conv2(FiLM(conv1(x), cond)) + residual(x).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub conv1: Conv1dBlock<B>,
    pub conv2: Conv1dBlock<B>,
    /// Linear(cond_dim → 2·out) applied to Mish(cond): first half scale, second half bias.
    pub cond_encoder: Linear<B>,
    pub residual_conv: Option<Conv1d<B>>,
    pub out_channels: usize,
    pub film_scale: bool,
}

impl<B: Backend> ResBlock<B> {
    fn new(c_in: usize, c_out: usize, cfg: &ConditionalUnet1dConfig, cond_dim: usize, device: &B::Device) -> Self {
        let film = if cfg.use_film_scale_modulation {
            2 * c_out
        } else {
            c_out
        };
        Self {
            conv1: Conv1dBlock::new(c_in, c_out, cfg.kernel_size, cfg.n_groups, device),
            conv2: Conv1dBlock::new(c_out, c_out, cfg.kernel_size, cfg.n_groups, device),
            cond_encoder: LinearConfig::new(cond_dim, film).init(device),
            residual_conv: (c_in != c_out).then(|| Conv1dConfig::new(c_in, c_out, 1).init(device)),
            out_channels: c_out,
            film_scale: cfg.use_film_scale_modulation,
        }
    }

    /// FiLM parameters for this block from the (already Mish-activated) conditioning vector.
    pub fn film(&self, cond_act: Tensor<B, 2>) -> Tensor<B, 2> {
        self.cond_encoder.forward(cond_act)
    }

    /// `film`: [B, 2·out] (scale, bias) or [B, out] (bias only).
    pub fn forward(&self, x: Tensor<B, 3>, film: &Tensor<B, 2>) -> Tensor<B, 3> {
        let h = self.conv1.forward_film(x.clone(), Some((film, self.film_scale)));
        let h = self.conv2.forward(h);
        let res = match &self.residual_conv {
            Some(conv) => conv.forward(x),
            None => x,
        };
        h + res
    }
}

#[derive(Module, Debug)]
pub struct DownLevel<B: Backend> {
    pub res0: ResBlock<B>,
    pub res1: ResBlock<B>,
    /// Conv1d(k3, s2, p1); absent on the last level.
    pub downsample: Option<Conv1d<B>>,
}

#[derive(Module, Debug)]
pub struct UpLevel<B: Backend> {
    pub res0: ResBlock<B>,
    pub res1: ResBlock<B>,
    /// ConvTranspose1d(k4, s2, p1): every up level upsamples (LeRobot's `is_last` is never true).
    pub upsample: ConvTranspose1d<B>,
}

#[derive(Module, Debug)]
pub struct StepEncoder<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub dim: usize,
}

#[derive(Module, Debug)]
pub struct ConditionalUnet1d<B: Backend> {
    pub diffusion_step_encoder: StepEncoder<B>,
    pub down_modules: Vec<DownLevel<B>>,
    pub mid_modules: Vec<ResBlock<B>>,
    pub up_modules: Vec<UpLevel<B>>,
    pub final_block: Conv1dBlock<B>,
    pub final_conv: Conv1d<B>,
}

impl ConditionalUnet1dConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConditionalUnet1d<B> {
        let dsed = self.diffusion_step_embed_dim;
        let cond_dim = dsed + self.global_cond_dim;
        let mut dims = vec![self.action_dim];
        dims.extend(&self.down_dims);
        let in_out: Vec<(usize, usize)> = dims.windows(2).map(|w| (w[0], w[1])).collect();
        let n = in_out.len();
        let down_modules = in_out
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| DownLevel {
                res0: ResBlock::new(a, b, self, cond_dim, device),
                res1: ResBlock::new(b, b, self, cond_dim, device),
                downsample: (i + 1 < n).then(|| {
                    Conv1dConfig::new(b, b, 3)
                        .with_stride(2)
                        .with_padding(PaddingConfig1d::Explicit(1, 1))
                        .init(device)
                }),
            })
            .collect();
        let last = *self.down_dims.last().expect("down_dims is not empty");
        let mid_modules = (0..2)
            .map(|_| ResBlock::new(last, last, self, cond_dim, device))
            .collect();
        let up_modules = in_out[1..]
            .iter()
            .rev()
            .map(|&(a, b)| UpLevel {
                res0: ResBlock::new(2 * b, a, self, cond_dim, device),
                res1: ResBlock::new(a, a, self, cond_dim, device),
                upsample: ConvTranspose1dConfig::new([a, a], 4)
                    .with_stride(2)
                    .with_padding(1)
                    .init(device),
            })
            .collect();
        let d0 = self.down_dims[0];
        ConditionalUnet1d {
            diffusion_step_encoder: StepEncoder {
                fc1: LinearConfig::new(dsed, dsed * 4).init(device),
                fc2: LinearConfig::new(dsed * 4, dsed).init(device),
                dim: dsed,
            },
            down_modules,
            mid_modules,
            up_modules,
            // The final block's GroupNorm always has 8 groups in LeRobot, whatever n_groups says.
            final_block: Conv1dBlock::new(d0, d0, self.kernel_size, 8, device),
            final_conv: Conv1dConfig::new(d0, self.action_dim, 1).init(device),
        }
    }
}

/// `SinusoidalPosEmb`: [sin(t·f_i), cos(t·f_i)], f_i = exp(−i·ln(10⁴)/(half−1)), computed in f32 as
/// PyTorch does.
pub fn sinusoidal_embedding(t: f32, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let scale = -((10000f64).ln() / (half as f64 - 1.0)) as f32;
    let freqs: Vec<f32> = (0..half).map(|i| (i as f32 * scale).exp()).collect();
    let mut out: Vec<f32> = freqs.iter().map(|f| (t * f).sin()).collect();
    out.extend(freqs.iter().map(|f| (t * f).cos()));
    out
}

impl<B: Backend> StepEncoder<B> {
    /// Embedding of the diffusion step `t`, shape [1, dim].
    pub fn forward(&self, t: usize, device: &B::Device) -> Tensor<B, 2> {
        let e = sinusoidal_embedding(t as f32, self.dim);
        let x = Tensor::<B, 2>::from_data(TensorData::new(e, [1, self.dim]), device);
        self.fc2.forward(mish(self.fc1.forward(x)))
    }
}

impl<B: Backend> StepEncoder<B> {
    /// Embeddings of one diffusion step per batch row, [ts.len(), dim]: training draws a step per sample.
    pub fn forward_steps(&self, ts: &[usize], device: &B::Device) -> Tensor<B, 2> {
        let e: Vec<f32> = ts
            .iter()
            .flat_map(|&t| sinusoidal_embedding(t as f32, self.dim))
            .collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(e, [ts.len(), self.dim]), device);
        self.fc2.forward(mish(self.fc1.forward(x)))
    }
}

impl<B: Backend> ConditionalUnet1d<B> {
    /// [`Self::forward`] with a diffusion step per batch row (LeRobot's training forward); every op is
    /// differentiable, so this is the path autodiff training runs.
    pub fn forward_steps(&self, x: Tensor<B, 3>, ts: &[usize], global_cond: Tensor<B, 2>) -> Tensor<B, 3> {
        let temb = self.diffusion_step_encoder.forward_steps(ts, &x.device());
        let cond = mish(Tensor::cat(vec![temb, global_cond], 1));
        let films: Vec<Tensor<B, 2>> = self.res_blocks().iter().map(|r| r.film(cond.clone())).collect();
        self.forward_with_film(x, &films)
    }

    /// Every residual block in execution order (down, mid, up), for precomputing FiLM parameters.
    pub fn res_blocks(&self) -> Vec<&ResBlock<B>> {
        let mut v = Vec::new();
        for l in &self.down_modules {
            v.push(&l.res0);
            v.push(&l.res1);
        }
        v.extend(self.mid_modules.iter());
        for l in &self.up_modules {
            v.push(&l.res0);
            v.push(&l.res1);
        }
        v
    }

    /// ε̂ (or x̂0) for sample `x` [B, H, Da] at step `t` with observation features `global_cond` [B, G].
    pub fn forward(&self, x: Tensor<B, 3>, t: usize, global_cond: Tensor<B, 2>) -> Tensor<B, 3> {
        let [b, _] = global_cond.dims();
        let temb = self.diffusion_step_encoder.forward(t, &x.device()).repeat_dim(0, b);
        let cond = mish(Tensor::cat(vec![temb, global_cond], 1));
        let films: Vec<Tensor<B, 2>> = self.res_blocks().iter().map(|r| r.film(cond.clone())).collect();
        self.forward_with_film(x, &films)
    }

    /// The U-Net body given each residual block's FiLM parameters (see [`Self::res_blocks`]).
    pub fn forward_with_film(&self, x: Tensor<B, 3>, films: &[Tensor<B, 2>]) -> Tensor<B, 3> {
        let mut films = films.iter();
        let mut next = || films.next().expect("one FiLM tensor per residual block");
        let mut h = x.swap_dims(1, 2);
        let mut skips = Vec::with_capacity(self.down_modules.len());
        for level in &self.down_modules {
            h = level.res0.forward(h, next());
            h = level.res1.forward(h, next());
            skips.push(h.clone());
            if let Some(ds) = &level.downsample {
                h = ds.forward(h);
            }
        }
        for m in &self.mid_modules {
            h = m.forward(h, next());
        }
        for level in &self.up_modules {
            let skip = skips.pop().expect("one skip per down level");
            h = Tensor::cat(vec![h, skip], 1);
            h = level.res0.forward(h, next());
            h = level.res1.forward(h, next());
            h = level.upsample.forward(h);
        }
        let h = self.final_conv.forward(self.final_block.forward(h));
        h.swap_dims(1, 2)
    }
}
