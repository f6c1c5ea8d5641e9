//! The fused U-Net pass and sampler update as `#[cube]` kernels, for every cubecl runtime (CUDA, and
//! wgpu: Vulkan, Metal, and lavapipe in CI: the same kernel source everywhere).
//!
//! One launch runs a whole pass of a small net: one cube per batch row walks the [`Program`], layer by
//! layer, with a storage barrier between layers, so launches per pass do not grow with the number of
//! residual blocks. A net whose pass is too large for one cube per row runs the same kernel once per
//! layer, that layer's outputs spread over several cubes per row. Every sum is plain f32
//! multiply-add: no tensor cores, no TF32.

use burn::prelude::*;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::program::{Program, CONV, CONV_T};
use super::{FusedUnet, UnetKernels};
use crate::cube_common::{check_weights, cube_tensor, from_cube, limits, upload, Limits};
use crate::error::PolicyError;
use crate::lerobot::host_unet::HostUnet;
use crate::schedule::StepCoefficients;

/// Multiply-adds per row and pass above which a pass runs as one launch per layer (several cubes per row).
const ONE_CUBE_MAX_MACS: usize = 32 << 20;

/// Batch rows one convolution launch computes per weight read in per-layer mode: a batch of up to 8
/// streams the weights once per pass (they dominate a PushT-size pass: ≈ 1 GB against a few MB of
/// activations).
const ROWS_PER_CONV: usize = 8;

/// The kernels (cubecl's prelude only: its `Tensor`, `Float` and `Int` are not burn's).
mod kernels {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    use super::super::program::{CONV, CONV_T, GN, LOAD, OP_WORDS, STORE};
    use crate::cube_common::kernels::word;

    #[cube]
    fn mish<F: Float>(v: F) -> F {
        // softplus with PyTorch's threshold: above 20 it is the identity in f32.
        let mut sp = v;
        if v < F::new(20.0) {
            sp = v.exp().log1p();
        }
        v * sp.tanh()
    }

    /// Where each row `row0 + r` of a group of `rows` starts in scratch, computed once per layer: rows past
    /// the batch read the last row (cube conditions do not short-circuit, so every read must stay in
    /// bounds; their results are dropped).
    #[cube]
    fn row_bases(row0: usize, batch: usize, row_scratch: usize, #[comptime] rows: usize) -> Array<u32> {
        let mut bases = Array::<u32>::new(rows);
        #[unroll]
        for r in 0..rows {
            let mut row = row0 + r;
            if row >= batch {
                row = batch - 1;
            }
            bases[r] = (row * row_scratch) as u32;
        }
        bases
    }

    /// Conv1d over the channel concatenation of two regions, bias added: one output value per unit, for
    /// `rows` batch rows at once (from `row0`), so each weight is read once for all of them.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn conv<F: Float, I: Int>(
        prog: &Tensor<I>,
        p: usize,
        weights: &Tensor<F>,
        scratch: &mut Tensor<F>,
        row0: usize,
        batch: usize,
        row_scratch: usize,
        first: usize,
        step: usize,
        #[comptime] rows: usize,
    ) {
        let src_a = word::<I>(prog, p, 1);
        let ca = word::<I>(prog, p, 2);
        let src_b = word::<I>(prog, p, 3);
        let cb = word::<I>(prog, p, 4);
        let l_in = word::<I>(prog, p, 5);
        let dst = word::<I>(prog, p, 6);
        let c_out = word::<I>(prog, p, 7);
        let l_out = word::<I>(prog, p, 8);
        let w = word::<I>(prog, p, 9);
        let bias = word::<I>(prog, p, 10);
        let k = word::<I>(prog, p, 11);
        let stride = word::<I>(prog, p, 12);
        let pad = word::<I>(prog, p, 13);
        let c_in = ca + cb;
        let bases = row_bases(row0, batch, row_scratch, rows);
        let mut i = first;
        while i < c_out * l_out {
            let co = i / l_out;
            let lo = i % l_out;
            let mut acc = Array::<F>::new(rows);
            #[unroll]
            for r in 0..rows {
                acc[r] = weights[bias + co];
            }
            let mut ci = 0;
            while ci < c_in {
                let mut src = src_a + ci * l_in;
                if ci >= ca {
                    src = src_b + (ci - ca) * l_in;
                }
                let wrow = w + (co * c_in + ci) * k;
                let mut j = 0;
                while j < k {
                    // Input position lo·stride + j − pad, zero outside 0..l_in.
                    let pos = lo * stride + j;
                    if pos >= pad && pos - pad < l_in {
                        let wv = weights[wrow + j];
                        #[unroll]
                        for r in 0..rows {
                            acc[r] += wv * scratch[bases[r] as usize + src + pos - pad];
                        }
                    }
                    j += 1;
                }
                ci += 1;
            }
            #[unroll]
            for r in 0..rows {
                if row0 + r < batch {
                    scratch[(row0 + r) * row_scratch + dst + i] = acc[r];
                }
            }
            i += step;
        }
    }

    /// ConvTranspose1d, direct: each output gathers the inputs whose taps land on it, for `rows` batch
    /// rows at once.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn conv_t<F: Float, I: Int>(
        prog: &Tensor<I>,
        p: usize,
        weights: &Tensor<F>,
        scratch: &mut Tensor<F>,
        row0: usize,
        batch: usize,
        row_scratch: usize,
        first: usize,
        step: usize,
        #[comptime] rows: usize,
    ) {
        let src = word::<I>(prog, p, 1);
        let c_in = word::<I>(prog, p, 2);
        let l_in = word::<I>(prog, p, 3);
        let dst = word::<I>(prog, p, 4);
        let c_out = word::<I>(prog, p, 5);
        let l_out = word::<I>(prog, p, 6);
        let w = word::<I>(prog, p, 7);
        let bias = word::<I>(prog, p, 8);
        let k = word::<I>(prog, p, 9);
        let stride = word::<I>(prog, p, 10);
        let pad = word::<I>(prog, p, 11);
        let bases = row_bases(row0, batch, row_scratch, rows);
        let mut i = first;
        while i < c_out * l_out {
            let co = i / l_out;
            let lo = i % l_out;
            let mut acc = Array::<F>::new(rows);
            #[unroll]
            for r in 0..rows {
                acc[r] = weights[bias + co];
            }
            // lo = li·stride + j − pad for tap j.
            let mut j = 0;
            while j < k {
                let num = lo + pad;
                // cube conditions do not short-circuit: for num < j the wrapped difference fails the range test.
                let d = num - j;
                let r = d % stride;
                if num >= j && r == 0 && d / stride < l_in {
                    let li = d / stride;
                    let mut ci = 0;
                    while ci < c_in {
                        let wv = weights[w + (ci * c_out + co) * k + j];
                        #[unroll]
                        for rr in 0..rows {
                            acc[rr] += wv * scratch[bases[rr] as usize + src + ci * l_in + li];
                        }
                        ci += 1;
                    }
                }
                j += 1;
            }
            #[unroll]
            for rr in 0..rows {
                if row0 + rr < batch {
                    scratch[(row0 + rr) * row_scratch + dst + i] = acc[rr];
                }
            }
            i += step;
        }
    }

    /// GroupNorm → Mish → FiLM → + residual, in place, by one cube: the units split into one team per
    /// group for the statistics (mean, then the mean of squared deviations, as PyTorch computes them).
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn group_norm<F: Float, I: Int>(
        prog: &Tensor<I>,
        p: usize,
        weights: &Tensor<F>,
        scratch: &mut Tensor<F>,
        obs_film: &Tensor<F>,
        step_film: &Tensor<F>,
        row: usize,
        base: usize,
        film_total: usize,
        step_stride: usize,
        partial: &mut SharedMemory<F>,
        stats: &mut SharedMemory<F>,
    ) {
        let unit = UNIT_POS_X as usize;
        let units = CUBE_DIM_X as usize;
        let buf = base + word::<I>(prog, p, 1);
        let c = word::<I>(prog, p, 2);
        let l = word::<I>(prog, p, 3);
        let groups = word::<I>(prog, p, 4);
        let gamma = word::<I>(prog, p, 5);
        let beta = word::<I>(prog, p, 6);
        let eps = weights[word::<I>(prog, p, 7)];
        let film_on = word::<I>(prog, p, 8);
        let film_off = word::<I>(prog, p, 9);
        let scale = word::<I>(prog, p, 10);
        let res_on = word::<I>(prog, p, 11);
        let res = base + word::<I>(prog, p, 12);
        let cg = c / groups;
        let n = cg * l;
        let team = units / groups;
        let g = unit / team;
        let lane = unit % team;
        let nf = F::cast_from(n as u32);

        let mut acc = F::new(0.0);
        if g < groups {
            let mut i = lane;
            while i < n {
                acc += scratch[buf + g * n + i];
                i += team;
            }
        }
        partial[unit] = acc;
        sync_cube();
        if unit < groups {
            let mut s = F::new(0.0);
            let mut t = 0;
            while t < team {
                s += partial[unit * team + t];
                t += 1;
            }
            stats[unit] = s / nf;
        }
        sync_cube();
        let mut acc2 = F::new(0.0);
        if g < groups {
            let mean = stats[g];
            let mut i = lane;
            while i < n {
                let d = scratch[buf + g * n + i] - mean;
                acc2 += d * d;
                i += team;
            }
        }
        partial[unit] = acc2;
        sync_cube();
        if unit < groups {
            let mut s = F::new(0.0);
            let mut t = 0;
            while t < team {
                s += partial[unit * team + t];
                t += 1;
            }
            stats[groups + unit] = F::new(1.0) / (s / nf + eps).sqrt();
        }
        sync_cube();
        let mut i = unit;
        while i < c * l {
            let ch = i / l;
            let gi = ch / cg;
            let mut v = (scratch[buf + i] - stats[gi]) * stats[groups + gi] * weights[gamma + ch] + weights[beta + ch];
            v = mish::<F>(v);
            if film_on == 1 {
                let f = row * film_total + film_off + ch;
                let fs = row * step_stride + film_off + ch;
                if scale == 1 {
                    let s = obs_film[f] + step_film[fs];
                    let b = obs_film[f + c] + step_film[fs + c];
                    v = v * s + b;
                } else {
                    v += obs_film[f] + step_film[fs];
                }
            }
            if res_on == 1 {
                v += scratch[res + i];
            }
            scratch[buf + i] = v;
            i += units;
        }
    }

    /// Ops `op_begin..op_end` of the program for batch rows `CUBE_POS_Y·rows ..` (`rows` > 1 only for a
    /// convolution launched on its own: its weights are then read once for all of them), spread over the
    /// `CUBE_COUNT_X` cubes of those rows (only one cube when the range holds more than one op: layers
    /// synchronise through a cube barrier).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn unet_pass_kernel<F: Float, I: Int>(
        prog: &Tensor<I>,
        weights: &Tensor<F>,
        x: &Tensor<F>,
        obs_film: &Tensor<F>,
        step_film: &Tensor<F>,
        scratch: &mut Tensor<F>,
        out: &mut Tensor<F>,
        op_begin: u32,
        op_end: u32,
        row_scratch: u32,
        film_total: u32,
        step_stride: u32,
        batch: u32,
        #[comptime] units: u32,
        #[comptime] rows: usize,
        #[define(F, I)] _dtypes: [StorageType; 2],
    ) {
        let row = CUBE_POS_Y as usize;
        let base = row * row_scratch as usize;
        let (row0, batch, row_scratch) = (row * rows, batch as usize, row_scratch as usize);
        let first = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        let step = CUBE_COUNT_X as usize * CUBE_DIM_X as usize;
        let mut partial = SharedMemory::<F>::new(units as usize);
        let mut stats = SharedMemory::<F>::new(2 * units as usize);
        let mut op = op_begin as usize;
        while op < op_end as usize {
            let p = op * OP_WORDS;
            let code = u32::cast_from(prog[p]);
            if code == CONV as u32 {
                conv::<F, I>(prog, p, weights, scratch, row0, batch, row_scratch, first, step, rows);
            } else if code == CONV_T as u32 {
                conv_t::<F, I>(prog, p, weights, scratch, row0, batch, row_scratch, first, step, rows);
            } else if code == GN as u32 {
                if CUBE_POS_X == 0 {
                    group_norm::<F, I>(
                        prog,
                        p,
                        weights,
                        scratch,
                        obs_film,
                        step_film,
                        row,
                        base,
                        film_total as usize,
                        step_stride as usize,
                        &mut partial,
                        &mut stats,
                    );
                }
            } else if code == LOAD as u32 {
                let dst = base + word::<I>(prog, p, 1);
                let a = word::<I>(prog, p, 2);
                let h = word::<I>(prog, p, 3);
                let mut i = first;
                while i < a * h {
                    // region [a, h] ← sample [h, a]
                    scratch[dst + i] = x[row * a * h + (i % h) * a + i / h];
                    i += step;
                }
            } else if code == STORE as u32 {
                let src = base + word::<I>(prog, p, 1);
                let a = word::<I>(prog, p, 2);
                let h = word::<I>(prog, p, 3);
                let mut i = first;
                while i < a * h {
                    // output [h, a] ← region [a, h]
                    out[row * a * h + i] = scratch[src + (i % a) * h + i / a];
                    i += step;
                }
            }
            sync_storage();
            sync_cube();
            op += 1;
        }
    }

    /// `out[r, f] = Σ_g Mish(gc[r, g])·w[g, f]`, one output per unit, in f32 (no tensor cores).
    #[cube(launch)]
    pub fn obs_film_kernel<F: Float>(
        gc: &Tensor<F>,
        w: &Tensor<F>,
        out: &mut Tensor<F>,
        rows: u32,
        g: u32,
        f: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        let i = ABSOLUTE_POS;
        let (g, f) = (g as usize, f as usize);
        if i < rows as usize * f {
            let r = i / f;
            let c = i % f;
            let mut acc = F::new(0.0);
            let mut k = 0;
            while k < g {
                acc += mish::<F>(gc[r * g + k]) * w[k * f + c];
                k += 1;
            }
            out[i] = acc;
        }
    }

    /// One reverse step on every value: `x0 = a·x + b·out` (clamped to ±clip when `clip > 0`),
    /// `x' = m_x0·x0 + m_eps·(e_x·x + e_out·out) + m_x·x + σ·z`; the 9 coefficients (the last is `clip`, 0 for
    /// none) per row, or shared (`coef_stride` 0).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn sampler_step_kernel<F: Float>(
        x: &Tensor<F>,
        model_out: &Tensor<F>,
        noise: &Tensor<F>,
        coefs: &Tensor<F>,
        next: &mut Tensor<F>,
        n: u32,
        per_row: u32,
        coef_stride: u32,
        has_noise: u32,
        #[define(F)] _dtype: StorageType,
    ) {
        let i = ABSOLUTE_POS;
        if i < n as usize {
            let c = (i / per_row as usize) * coef_stride as usize;
            let xv = x[i];
            let ov = model_out[i];
            let mut x0 = xv * coefs[c] + ov * coefs[c + 1];
            let clip = coefs[c + 8];
            if clip > F::new(0.0) {
                x0 = x0.clamp(-clip, clip);
            }
            let mut v = x0 * coefs[c + 2];
            if coefs[c + 3] != F::new(0.0) {
                let eps = xv * coefs[c + 4] + ov * coefs[c + 5];
                v += eps * coefs[c + 3];
            }
            if coefs[c + 6] != F::new(0.0) {
                v += xv * coefs[c + 6];
            }
            if has_noise == 1 {
                v += noise[i] * coefs[c + 7];
            }
            next[i] = v;
        }
    }
}

/// A U-Net compiled for a cube backend: the program and weights on the device.
struct CubeUnet<B: Backend> {
    program: Program,
    ops: Tensor<B, 1, Int>,
    weights: Tensor<B, 1>,
    /// Units per cube: the device's limit, at most 256, at least the largest group count.
    units: u32,
    /// Launch the whole pass at once (one cube per row) or one launch per layer.
    one_launch: bool,
    /// The device's largest single allocation, bytes.
    max_alloc: u64,
    device: B::Device,
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedUnet<CubeBackend<R, F, I, BT>>
    for CubeUnet<CubeBackend<R, F, I, BT>>
{
    fn pass(
        &self,
        x: Tensor<CubeBackend<R, F, I, BT>, 3>,
        obs_film: &Tensor<CubeBackend<R, F, I, BT>, 2>,
        step_film: &Tensor<CubeBackend<R, F, I, BT>, 2>,
    ) -> Tensor<CubeBackend<R, F, I, BT>, 3> {
        let [b, h, a] = x.dims();
        let prog = &self.program;
        let [film_rows, _] = obs_film.dims();
        debug_assert!(self.check_rows(b).is_ok(), "check_rows before sampling");
        debug_assert_eq!(film_rows, b);
        let step_stride = if step_film.dims()[0] == 1 { 0 } else { prog.film_total };
        let scratch = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 1>::empty(
            [b * prog.scratch_per_row],
            &self.device,
        ));
        let out = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 3>::empty([b, h, a], &self.device));
        let x = cube_tensor(x);
        let ops = self.ops.clone().into_primitive();
        let weights = cube_tensor(self.weights.clone());
        let obs = cube_tensor(obs_film.clone());
        let step = cube_tensor(step_film.clone());
        let client = x.client.clone();
        let dtypes = [x.dtype.into(), ops.dtype.into()];
        // `rows`: batch rows per cube (a convolution on its own reads each weight once for that many).
        let launch = |begin: usize, end: usize, cubes: u32, rows: usize| {
            kernels::unet_pass_kernel::launch::<R>(
                &client,
                CubeCount::Static(cubes, b.div_ceil(rows) as u32, 1),
                CubeDim::new_1d(self.units),
                ops.clone().into_tensor_arg(),
                weights.clone().into_tensor_arg(),
                x.clone().into_tensor_arg(),
                obs.clone().into_tensor_arg(),
                step.clone().into_tensor_arg(),
                scratch.clone().into_tensor_arg(),
                out.clone().into_tensor_arg(),
                begin as u32,
                end as u32,
                prog.scratch_per_row as u32,
                prog.film_total as u32,
                step_stride as u32,
                b as u32,
                self.units,
                rows,
                dtypes,
            )
        };
        if self.one_launch {
            launch(0, prog.n_ops(), 1, 1);
        } else {
            for i in 0..prog.n_ops() {
                let op = prog.op(i);
                // Outputs of the layer: c_out·l_out for convolutions, one cube for the others.
                let outputs = match op[0] {
                    CONV => (op[7] * op[8]) as usize,
                    CONV_T => (op[5] * op[6]) as usize,
                    _ => 0,
                };
                let cubes = outputs.div_ceil(self.units as usize).clamp(1, 4096) as u32;
                let rows = if outputs > 0 { ROWS_PER_CONV.min(b) } else { 1 };
                launch(i, i + 1, cubes, rows);
            }
        }
        from_cube(out)
    }

    fn obs_film(
        &self,
        gc: Tensor<CubeBackend<R, F, I, BT>, 2>,
        w_obs: &Tensor<CubeBackend<R, F, I, BT>, 2>,
    ) -> Tensor<CubeBackend<R, F, I, BT>, 2> {
        let [rows, g] = gc.dims();
        let [_, f] = w_obs.dims();
        let out = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 2>::empty([rows, f], &self.device));
        let (gc, w) = (cube_tensor(gc), cube_tensor(w_obs.clone()));
        let units = self.units.min(256);
        kernels::obs_film_kernel::launch::<R>(
            &gc.client,
            CubeCount::Static(((rows * f) as u32).div_ceil(units), 1, 1),
            CubeDim::new_1d(units),
            gc.clone().into_tensor_arg(),
            w.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            rows as u32,
            g as u32,
            f as u32,
            gc.dtype.into(),
        );
        from_cube(out)
    }

    fn check_rows(&self, rows: usize) -> Result<(), PolicyError> {
        let bytes = (rows * self.program.scratch_per_row * std::mem::size_of::<f32>()) as u64;
        match bytes <= self.max_alloc {
            true => Ok(()),
            false => Err(PolicyError::Device(format!(
                "a U-Net pass over {rows} rows needs {:.0} MB of scratch in one buffer, beyond this device's \
                 largest allocation ({:.0} MB): send fewer rows (batch × candidates) at once",
                bytes as f64 / 1e6,
                self.max_alloc as f64 / 1e6
            ))),
        }
    }

    fn update(
        &self,
        x: Tensor<CubeBackend<R, F, I, BT>, 3>,
        out: Tensor<CubeBackend<R, F, I, BT>, 3>,
        c: &StepCoefficients,
        clip: Option<f32>,
        noise: Option<Tensor<CubeBackend<R, F, I, BT>, 3>>,
    ) -> Tensor<CubeBackend<R, F, I, BT>, 3> {
        let [b, h, a] = x.dims();
        let coefs: Vec<f32> = [
            c.x0_from_x,
            c.x0_from_out,
            c.prev_from_x0,
            c.prev_from_eps,
            c.eps_from_x,
            c.eps_from_out,
            c.prev_from_x,
            c.noise_std,
            f64::from(clip.unwrap_or(0.0)),
        ]
        .iter()
        .map(|v| *v as f32)
        .collect();
        let coefs = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 1>::from_data(
            TensorData::new(coefs, [9]),
            &self.device,
        ));
        let has_noise = u32::from(noise.is_some());
        let x = cube_tensor(x);
        let out = cube_tensor(out);
        let noise = noise.map_or_else(|| x.clone(), cube_tensor);
        let next = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 3>::empty([b, h, a], &self.device));
        let n = b * h * a;
        let units = self.units.min(256);
        step_launch::<R>([&x, &out, &noise, &coefs, &next], n, h * a, has_noise, units);
        from_cube(next)
    }
}

/// `[x, out, noise, coefs, next]`.
fn step_launch<R: CubeRuntime>(t: [&CubeTensor<R>; 5], n: usize, per_row: usize, has_noise: u32, units: u32) {
    let [x, out, noise, coefs, next] = t;
    kernels::sampler_step_kernel::launch::<R>(
        &x.client,
        CubeCount::Static((n as u32).div_ceil(units), 1, 1),
        CubeDim::new_1d(units),
        x.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        noise.clone().into_tensor_arg(),
        coefs.clone().into_tensor_arg(),
        next.clone().into_tensor_arg(),
        n as u32,
        per_row as u32,
        0,
        has_noise,
        x.dtype.into(),
    );
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> UnetKernels for CubeBackend<R, F, I, BT> {
    fn fused_unet(
        unet: &HostUnet,
        horizon: usize,
        action_dim: usize,
        film_total: usize,
        device: &Self::Device,
    ) -> Result<Option<Box<dyn FusedUnet<Self>>>, PolicyError> {
        let program = super::program::compile(unet, horizon, action_dim, film_total);
        let Limits {
            units,
            shared: max_shared,
            max_alloc,
        } = limits::<R, F, I, BT>(device);
        // Shared memory: partial sums (units) and group statistics (2·units) per cube.
        let shared = 3 * units as usize * std::mem::size_of::<f32>();
        if (units as usize) < program.max_groups || shared > max_shared {
            return Err(PolicyError::Device(format!(
                "the fused U-Net needs {} units and {shared} B of shared memory per cube; this device allows {units} \
                 and {max_shared} B: run with --kernels burn",
                program.max_groups
            )));
        }
        check_weights("U-Net", program.weights.len(), max_alloc)?;
        let macs: usize = (0..program.n_ops())
            .map(|i| {
                let op = program.op(i);
                match op[0] {
                    CONV => (op[7] * op[8] * (op[2] + op[4]) * op[11]) as usize,
                    CONV_T => (op[5] * op[6] * op[2]) as usize,
                    _ => 0,
                }
            })
            .sum();
        let (ops, weights) = upload::<R, F, I, BT>(&program.ops, &program.weights, device);
        // `RIPTIDE_FUSED_LAUNCH=per-layer` runs a small net the way a large one runs (tests prove that
        // path on the shipped nets with it).
        let per_layer = std::env::var("RIPTIDE_FUSED_LAUNCH").as_deref() == Ok("per-layer");
        Ok(Some(Box::new(CubeUnet {
            one_launch: macs <= ONE_CUBE_MAX_MACS && !per_layer,
            program,
            ops,
            weights,
            units,
            max_alloc,
            device: device.clone(),
        })))
    }

    fn fused_encoder(
        program: super::encoder::EncoderProgram,
        device: &Self::Device,
    ) -> Result<Option<Box<dyn super::FusedEncoder<Self>>>, PolicyError> {
        Ok(Some(Box::new(super::cube_encoder::CubeEncoder::build(
            program, device,
        )?)))
    }
}
