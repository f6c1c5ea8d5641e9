//! The U-Net's inference pass in host memory, for the CPU backends.
//!
//! A small U-Net on a CPU backend is dominated by per-op dispatch: every burn op allocates a tensor
//! and, for a convolution, packs its operands once per batch row (a length-4 action sequence gives the
//! matrix kernel 4 columns to work on). This pass keeps activations channel-major, `[C, B, L]`, so a
//! convolution of every row of a batch is one matrix product `W[co, ci·k] × cols[ci·k, B·L]`, a skip
//! connection is an append, and the element-wise tail of a conv block (bias, GroupNorm, Mish, FiLM)
//! is one loop. Wave batching (several robots' rows in one pass) is then mostly wider matrix products.
//!
//! Every output of a row depends only on that row's inputs and is summed in an order that does not
//! depend on how many rows share the pass: products are split along their depth at fixed
//! [`DEPTH_BLOCK`] boundaries, so the matrix kernel never blocks the depth differently for a wider
//! batch. A batched row is therefore bitwise the row run alone (`tests/wave.rs` asserts it).
//! Training and the GPU backends keep the tensor path ([`super::unet::ConditionalUnet1d`]).

use burn::nn::conv::{Conv1d, ConvTranspose1d};
use burn::nn::PaddingConfig1d;
use burn::prelude::*;

use super::unet::{mish_f32, ConditionalUnet1d, Conv1dBlock, ResBlock};

/// Products are cut along their depth (`ci·k`) at multiples of this: gemm then runs one depth block
/// per call whatever the batch width (it re-blocks depths above 512 depending on the output's size).
const DEPTH_BLOCK: usize = 512;

fn host_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 weights")
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` (row-major dst and rhs; lhs with the given strides).
#[allow(clippy::too_many_arguments)]
fn matmul(dst: &mut [f32], lhs: &[f32], lhs_rs: usize, lhs_cs: usize, rhs: &[f32], m: usize, n: usize, k: usize) {
    assert!(dst.len() >= m * n && rhs.len() >= k * n, "matmul operands");
    assert!(
        m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs,
        "matmul lhs"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    let mut depth = 0;
    while depth < k {
        let kb = DEPTH_BLOCK.min(k - depth);
        // SAFETY: the asserts above bound every index gemm reads or writes: dst is [m, n] with row
        // stride n, rhs rows `depth..depth+kb` of [k, n], lhs columns `depth..depth+kb` at its strides.
        unsafe {
            gemm::gemm(
                m,
                n,
                kb,
                dst.as_mut_ptr(),
                1,
                n as isize,
                depth > 0,
                lhs.as_ptr().add(depth * lhs_cs),
                lhs_cs as isize,
                lhs_rs as isize,
                rhs.as_ptr().add(depth * n),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        depth += kb;
    }
}

/// A stride-s, zero-padded Conv1d (groups 1, dilation 1) as weights `[co, ci·k]` and bias.
#[derive(Debug, Clone)]
struct HostConv {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl HostConv {
    fn new<B: Backend>(conv: &Conv1d<B>) -> Self {
        let [c_out, c_in, kernel] = conv.weight.dims();
        assert_eq!((conv.dilation, conv.groups), (1, 1), "host conv: dilation and groups 1");
        let pad = match &conv.padding {
            PaddingConfig1d::Explicit(a, b) if a == b => *a,
            PaddingConfig1d::Valid => 0,
            p => panic!("host conv: unsupported padding {p:?}"),
        };
        Self {
            weight: host_vec(conv.weight.val()),
            bias: conv
                .bias
                .as_ref()
                .map(|b| host_vec(b.val()))
                .unwrap_or_else(|| vec![0.0; c_out]),
            c_in,
            c_out,
            kernel,
            stride: conv.stride,
            pad,
        }
    }

    fn out_len(&self, l: usize) -> usize {
        (l + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// `x` `[c_in, b, l]` → `[c_out, b, l_out]` without the bias.
    fn apply(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
        let lo = self.out_len(l);
        let n = b * lo;
        let depth = self.c_in * self.kernel;
        let mut out = vec![0.0f32; self.c_out * n];
        if self.kernel == 1 && self.stride == 1 && self.pad == 0 {
            matmul(&mut out, &self.weight, depth, 1, x, self.c_out, n, depth);
            return (out, lo);
        }
        // cols[(c·k + j), (bi, o)] = x[c, bi, o·s + j − p], zero outside.
        let (s, p) = (self.stride, self.pad);
        // Per tap j: the outputs o whose input o·s + j − p lies in 0..l.
        let taps: Vec<(usize, usize)> = (0..self.kernel)
            .map(|j| {
                let first = p.saturating_sub(j).div_ceil(s);
                let end = (l + p).saturating_sub(j).div_ceil(s).min(lo);
                (first, end.max(first))
            })
            .collect();
        let mut cols = vec![0.0f32; depth * n];
        for (c, xc) in x.chunks_exact(b * l).enumerate().take(self.c_in) {
            for (j, &(first, end)) in taps.iter().enumerate() {
                let row = &mut cols[(c * self.kernel + j) * n..][..n];
                for (src, dst) in xc.chunks_exact(l).zip(row.chunks_exact_mut(lo)) {
                    for (o, d) in dst[first..end].iter_mut().enumerate() {
                        *d = src[(first + o) * s + j - p];
                    }
                }
            }
        }
        matmul(&mut out, &self.weight, depth, 1, &cols, self.c_out, n, depth);
        (out, lo)
    }

    /// [`Self::apply`] plus the bias.
    fn forward(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
        let (mut out, lo) = self.apply(x, b, l);
        for (row, bias) in out.chunks_exact_mut(b * lo).zip(&self.bias) {
            row.iter_mut().for_each(|v| *v += bias);
        }
        (out, lo)
    }
}

/// ConvTranspose1d (groups 1, dilation 1, no output padding): `W[ci, co, k]` as one product
/// `Y[(co, j), (b, i)] = Σ_ci W[ci, co, j]·x[ci, b, i]`, then each output the sum of its (at most
/// ⌈k/s⌉) contributions in a fixed order.
#[derive(Debug, Clone)]
struct HostConvTranspose {
    weight: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl HostConvTranspose {
    fn new<B: Backend>(conv: &ConvTranspose1d<B>) -> Self {
        let [c_in, c_out, kernel] = conv.weight.dims();
        assert_eq!(
            (conv.dilation, conv.groups, conv.padding_out),
            (1, 1, 0),
            "host transposed conv: dilation 1, groups 1, no output padding"
        );
        Self {
            weight: host_vec(conv.weight.val()),
            bias: conv
                .bias
                .as_ref()
                .map(|b| host_vec(b.val()))
                .unwrap_or_else(|| vec![0.0; c_out]),
            c_in,
            c_out,
            kernel,
            stride: conv.stride,
            pad: conv.padding,
        }
    }

    fn forward(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
        let (k, s, p) = (self.kernel, self.stride, self.pad);
        let lo = (l - 1) * s + k - 2 * p;
        let n = b * l;
        let mut y = vec![0.0f32; self.c_out * k * n];
        // lhs[(co, j), ci] = W[ci, co, j]: row stride 1, column stride co·k.
        matmul(&mut y, &self.weight, 1, self.c_out * k, x, self.c_out * k, n, self.c_in);
        let mut out = vec![0.0f32; self.c_out * b * lo];
        for co in 0..self.c_out {
            for bi in 0..b {
                let dst = &mut out[(co * b + bi) * lo..][..lo];
                dst.fill(self.bias[co]);
                for i in 0..l {
                    for j in 0..k {
                        let o = (i * s + j) as isize - p as isize;
                        if o >= 0 && (o as usize) < lo {
                            dst[o as usize] += y[(co * k + j) * n + bi * l + i];
                        }
                    }
                }
            }
        }
        (out, lo)
    }
}

/// Conv1d → GroupNorm → Mish, with the FiLM of a residual block's first conv.
#[derive(Debug, Clone)]
struct HostConvBlock {
    conv: HostConv,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    groups: usize,
    eps: f64,
}

/// A residual block's FiLM columns in the pass's `[rows, total]` FiLM matrix.
#[derive(Debug, Clone, Copy)]
struct FilmAt<'a> {
    all: &'a [f32],
    total: usize,
    offset: usize,
    scale: bool,
}

impl HostConvBlock {
    fn new<B: Backend>(block: &Conv1dBlock<B>) -> Self {
        let affine =
            |p: &Option<burn::module::Param<Tensor<B, 1>>>| host_vec(p.as_ref().expect("affine GroupNorm").val());
        Self {
            conv: HostConv::new(&block.conv),
            gamma: affine(&block.norm.gamma),
            beta: affine(&block.norm.beta),
            groups: block.norm.num_groups,
            eps: block.norm.epsilon,
        }
    }

    fn forward(&self, x: &[f32], b: usize, l: usize, film: Option<FilmAt<'_>>) -> Vec<f32> {
        let (mut h, lo) = self.conv.forward(x, b, l);
        let c = self.conv.c_out;
        let cg = c / self.groups;
        let n = (cg * lo) as f64;
        // Statistics per (row, group), in memory order ([c, b, l]): sums, then squared deviations.
        let group = |ch: usize, bi: usize| bi * self.groups + ch / cg;
        let mut mean = vec![0.0f64; b * self.groups];
        for (i, v) in h.chunks_exact(lo).enumerate() {
            mean[group(i / b, i % b)] += v.iter().map(|v| *v as f64).sum::<f64>();
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut rstd = vec![0.0f64; b * self.groups];
        for (i, v) in h.chunks_exact(lo).enumerate() {
            let g = group(i / b, i % b);
            rstd[g] += v.iter().map(|v| (*v as f64 - mean[g]).powi(2)).sum::<f64>();
        }
        rstd.iter_mut().for_each(|r| *r = 1.0 / (*r / n + self.eps).sqrt());
        for (i, v) in h.chunks_exact_mut(lo).enumerate() {
            let (ch, bi) = (i / b, i % b);
            let g = group(ch, bi);
            let a = (self.gamma[ch] as f64 * rstd[g]) as f32;
            let off = (self.beta[ch] as f64 - mean[g] * self.gamma[ch] as f64 * rstd[g]) as f32;
            let (fs, fb) = match film {
                Some(f) if f.scale => {
                    let row = &f.all[bi * f.total + f.offset..];
                    (row[ch], row[c + ch])
                }
                Some(f) => (1.0, f.all[bi * f.total + f.offset + ch]),
                None => (1.0, 0.0),
            };
            for v in v {
                *v = fs * mish_f32(*v * a + off) + fb;
            }
        }
        h
    }
}

#[derive(Debug, Clone)]
struct HostResBlock {
    conv1: HostConvBlock,
    conv2: HostConvBlock,
    residual: Option<HostConv>,
    film_width: usize,
    film_scale: bool,
}

impl HostResBlock {
    fn new<B: Backend>(r: &ResBlock<B>) -> Self {
        Self {
            conv1: HostConvBlock::new(&r.conv1),
            conv2: HostConvBlock::new(&r.conv2),
            residual: r.residual_conv.as_ref().map(HostConv::new),
            film_width: r.cond_encoder.weight.dims()[1],
            film_scale: r.film_scale,
        }
    }

    fn forward(&self, x: &[f32], b: usize, l: usize, film: FilmAt<'_>) -> Vec<f32> {
        let h = self.conv1.forward(x, b, l, Some(film));
        let mut h = self.conv2.forward(&h, b, l, None);
        match &self.residual {
            Some(conv) => {
                let (res, _) = conv.forward(x, b, l);
                h.iter_mut().zip(&res).for_each(|(v, r)| *v += r);
            }
            None => h.iter_mut().zip(x).for_each(|(v, r)| *v += r),
        }
        h
    }
}

#[derive(Debug, Clone)]
struct HostLevel {
    res0: HostResBlock,
    res1: HostResBlock,
}

/// The inference pass of a [`ConditionalUnet1d`] with its weights copied to host memory.
#[derive(Debug, Clone)]
pub struct HostUnet {
    down: Vec<(HostLevel, Option<HostConv>)>,
    mid: Vec<HostResBlock>,
    up: Vec<(HostLevel, HostConvTranspose)>,
    final_block: HostConvBlock,
    final_conv: HostConv,
}

impl HostUnet {
    pub fn new<B: Backend>(unet: &ConditionalUnet1d<B>) -> Self {
        let level = |a: &ResBlock<B>, b: &ResBlock<B>| HostLevel {
            res0: HostResBlock::new(a),
            res1: HostResBlock::new(b),
        };
        Self {
            down: unet
                .down_modules
                .iter()
                .map(|d| (level(&d.res0, &d.res1), d.downsample.as_ref().map(HostConv::new)))
                .collect(),
            mid: unet.mid_modules.iter().map(HostResBlock::new).collect(),
            up: unet
                .up_modules
                .iter()
                .map(|u| (level(&u.res0, &u.res1), HostConvTranspose::new(&u.upsample)))
                .collect(),
            final_block: HostConvBlock::new(&unet.final_block),
            final_conv: HostConv::new(&unet.final_conv),
        }
    }

    /// The U-Net's output for `x` `[b, h, a]` (row-major), given every residual block's FiLM
    /// parameters as `films` `[b, total]` (blocks in `res_blocks()` order, each `scale…, bias…` or
    /// `bias…`). Returns `[b, h, a]`.
    ///
    /// Rows are split over the CPU's threads (each part a pass of its own): a row's result does not
    /// depend on the rows beside it.
    pub fn forward(&self, x: &[f32], b: usize, horizon: usize, films: &[f32], total: usize) -> Vec<f32> {
        use rayon::prelude::*;
        let a = x.len() / (b * horizon).max(1);
        assert_eq!(x.len(), b * horizon * a, "U-Net input [b, horizon, action_dim]");
        assert_eq!(films.len(), b * total, "FiLM [b, total]");
        let parts = b.min(rayon::current_num_threads()).max(1);
        if parts == 1 {
            return self.forward_rows(x, b, horizon, films, total);
        }
        let per = b.div_ceil(parts);
        let row = horizon * a;
        (0..b.div_ceil(per))
            .into_par_iter()
            .map(|i| {
                let rows = i * per..((i + 1) * per).min(b);
                let n = rows.len();
                self.forward_rows(
                    &x[rows.start * row..rows.end * row],
                    n,
                    horizon,
                    &films[rows.start * total..rows.end * total],
                    total,
                )
            })
            .collect::<Vec<_>>()
            .concat()
    }

    fn forward_rows(&self, x: &[f32], b: usize, horizon: usize, films: &[f32], total: usize) -> Vec<f32> {
        let a = x.len() / (b * horizon).max(1);
        // [b, h, a] → [a, b, h].
        let mut h = vec![0.0f32; x.len()];
        for bi in 0..b {
            for t in 0..horizon {
                for c in 0..a {
                    h[(c * b + bi) * horizon + t] = x[(bi * horizon + t) * a + c];
                }
            }
        }
        let mut l = horizon;
        let mut offset = 0;
        let mut film = |r: &HostResBlock| {
            let f = FilmAt {
                all: films,
                total,
                offset,
                scale: r.film_scale,
            };
            offset += r.film_width;
            f
        };
        let mut skips = Vec::with_capacity(self.down.len());
        for (level, downsample) in &self.down {
            h = level.res0.forward(&h, b, l, film(&level.res0));
            h = level.res1.forward(&h, b, l, film(&level.res1));
            skips.push(h.clone());
            if let Some(ds) = downsample {
                (h, l) = ds.forward(&h, b, l);
            }
        }
        for m in &self.mid {
            h = m.forward(&h, b, l, film(m));
        }
        for (level, upsample) in &self.up {
            // Channel-major: concatenating channels is appending.
            h.extend(skips.pop().expect("one skip per down level"));
            h = level.res0.forward(&h, b, l, film(&level.res0));
            h = level.res1.forward(&h, b, l, film(&level.res1));
            (h, l) = upsample.forward(&h, b, l);
        }
        assert_eq!(offset, total, "FiLM width");
        let h = self.final_block.forward(&h, b, l, None);
        let (h, _) = self.final_conv.forward(&h, b, l);
        // [a, b, h] → [b, h, a].
        let mut out = vec![0.0f32; h.len()];
        for c in 0..a {
            for bi in 0..b {
                for t in 0..l {
                    out[(bi * l + t) * a + c] = h[(c * b + bi) * l + t];
                }
            }
        }
        out
    }
}
