//! The U-Net's inference pass in host memory, for the CPU backends: LeRobot's
//! `DiffusionConditionalUnet1d` layer by layer.
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
//! Training and the GPU backends keep burn's tensor path (`riptide_policies::lerobot::unet`), which builds
//! these layers from its modules' weights (`riptide_policies::lerobot::host_unet`).

/// Mish(x) = x·tanh(softplus(x)) with one exp: tanh(ln(1+e)) = n/(n+2), n = e·(e+2), e = eˣ.
/// (The libm tanh/log1p/expm1 chain took 40 % of a small U-Net's CPU time.)
#[inline]
pub fn mish_f32(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        let e = x.exp();
        let n = e * (e + 2.0);
        x * n / (n + 2.0)
    }
}

/// Products are cut along their depth (`ci·k`) at multiples of this: gemm then runs one depth block
/// per call whatever the batch width (it re-blocks depths above 512 depending on the output's size).
const DEPTH_BLOCK: usize = 512;

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
pub struct Conv1d {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv1d {
    pub fn out_len(&self, l: usize) -> usize {
        (l + 2 * self.pad - self.kernel) / self.stride + 1
    }

    /// `x` `[c_in, b, l]` → `[c_out, b, l_out]` without the bias.
    pub fn apply(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
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
    pub fn forward(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
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
pub struct ConvTranspose1d {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvTranspose1d {
    pub fn forward(&self, x: &[f32], b: usize, l: usize) -> (Vec<f32>, usize) {
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
pub struct ConvBlock {
    pub conv: Conv1d,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub groups: usize,
    pub eps: f64,
}

/// A residual block's FiLM columns in the pass's `[rows, total]` FiLM matrix (`scale…, bias…` when
/// `scale`, else `bias…`).
#[derive(Debug, Clone, Copy)]
pub struct FilmAt<'a> {
    pub all: &'a [f32],
    pub total: usize,
    pub offset: usize,
    pub scale: bool,
}

impl ConvBlock {
    pub fn forward(&self, x: &[f32], b: usize, l: usize, film: Option<FilmAt<'_>>) -> Vec<f32> {
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
pub struct ResBlock {
    pub conv1: ConvBlock,
    pub conv2: ConvBlock,
    pub residual: Option<Conv1d>,
    pub film_width: usize,
    pub film_scale: bool,
}

impl ResBlock {
    pub fn forward(&self, x: &[f32], b: usize, l: usize, film: FilmAt<'_>) -> Vec<f32> {
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
pub struct Level {
    pub res0: ResBlock,
    pub res1: ResBlock,
}

/// The inference pass of LeRobot's `ConditionalUnet1d` with its weights in host memory.
#[derive(Debug, Clone)]
pub struct Unet {
    pub down: Vec<(Level, Option<Conv1d>)>,
    pub mid: Vec<ResBlock>,
    pub up: Vec<(Level, ConvTranspose1d)>,
    pub final_block: ConvBlock,
    pub final_conv: Conv1d,
}

impl Unet {
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
        let mut film = |r: &ResBlock| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exp_mish_matches_the_definition() {
        for i in -4000..4000 {
            let x = i as f64 / 100.0;
            let want = x * (x.exp().ln_1p()).tanh();
            let got = mish_f32(x as f32) as f64;
            assert!(
                (got - want).abs() <= 2e-6 * want.abs().max(1e-3),
                "x={x}: {got} vs {want}"
            );
        }
    }

    /// A direct triple loop over `[b, c, l]` (no im2col, no gemm) as the reference.
    fn conv_reference(conv: &Conv1d, x: &[f32], b: usize, l: usize) -> Vec<f32> {
        let lo = conv.out_len(l);
        let mut out = vec![0.0f32; conv.c_out * b * lo];
        for bi in 0..b {
            for co in 0..conv.c_out {
                for o in 0..lo {
                    let mut acc = conv.bias[co] as f64;
                    for ci in 0..conv.c_in {
                        for j in 0..conv.kernel {
                            let i = (o * conv.stride + j) as isize - conv.pad as isize;
                            if i >= 0 && (i as usize) < l {
                                acc += conv.weight[(co * conv.c_in + ci) * conv.kernel + j] as f64
                                    * x[(ci * b + bi) * l + i as usize] as f64;
                            }
                        }
                    }
                    out[(co * b + bi) * lo + o] = acc as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
            .collect()
    }

    #[test]
    fn convolutions_match_a_direct_loop_and_rows_do_not_depend_on_the_batch() {
        // Depth 130·5 = 650 > one depth block: the split must not change a row's sums with the batch.
        for (c_in, c_out, kernel, stride, pad, l) in [(3, 8, 5, 1, 2, 16), (130, 7, 5, 1, 2, 4), (6, 6, 3, 2, 1, 9)] {
            let conv = Conv1d {
                weight: values(c_out * c_in * kernel, 1),
                bias: values(c_out, 2),
                c_in,
                c_out,
                kernel,
                stride,
                pad,
            };
            let b = 5;
            let x = values(c_in * b * l, 3);
            let (got, lo) = conv.forward(&x, b, l);
            let want = conv_reference(&conv, &x, b, l);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5,
                    "conv {c_in}->{c_out} k{kernel} s{stride}: {g} vs {w}"
                );
            }
            // Row 3 alone: bitwise its part of the batch.
            let row: Vec<f32> = (0..c_in)
                .flat_map(|c| x[(c * b + 3) * l..(c * b + 4) * l].to_vec())
                .collect();
            let (alone, _) = conv.forward(&row, 1, l);
            for co in 0..c_out {
                assert_eq!(
                    alone[co * lo..(co + 1) * lo]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    got[(co * b + 3) * lo..(co * b + 4) * lo]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "conv {c_in}->{c_out}: row 3 alone vs in the batch"
                );
            }
        }
    }

    #[test]
    fn transposed_convolution_matches_its_definition() {
        let (c_in, c_out, kernel, stride, pad, l, b) = (4, 3, 4, 2, 1, 5, 2);
        let t = ConvTranspose1d {
            weight: values(c_in * c_out * kernel, 4),
            bias: values(c_out, 5),
            c_in,
            c_out,
            kernel,
            stride,
            pad,
        };
        let x = values(c_in * b * l, 6);
        let (got, lo) = t.forward(&x, b, l);
        assert_eq!(lo, 2 * l);
        for bi in 0..b {
            for co in 0..c_out {
                for o in 0..lo {
                    // out[o] = bias + Σ x[ci, i]·W[ci, co, j] over i·s − p + j = o.
                    let mut want = t.bias[co] as f64;
                    for ci in 0..c_in {
                        for i in 0..l {
                            let j = o as isize + pad as isize - (i * stride) as isize;
                            if (0..kernel as isize).contains(&j) {
                                want += x[(ci * b + bi) * l + i] as f64
                                    * t.weight[(ci * c_out + co) * kernel + j as usize] as f64;
                            }
                        }
                    }
                    let g = got[(co * b + bi) * lo + o];
                    assert!((g as f64 - want).abs() <= 1e-5, "({bi}, {co}, {o}): {g} vs {want}");
                }
            }
        }
    }
}
