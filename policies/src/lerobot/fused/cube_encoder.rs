//! The RGB encoder's [`EncoderProgram`] as one `#[cube]` kernel launched once per layer, for every cubecl
//! runtime. Each launch spreads a layer's outputs over `CUBE_COUNT_X` cubes per image (`CUBE_POS_Y`); a
//! GroupNorm takes one cube per group. Direct convolutions in the native `[c, h, w]` layout with no
//! permute copies, the norm, residual add and ReLU in one pass, and every sum plain f32 multiply-add:
//! no tensor cores, no TF32.

use burn::prelude::*;
use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::encoder::{EncoderProgram, NORM};
use super::FusedEncoder;
use crate::cube_common::{check_weights, cube_tensor, from_cube, limits, upload, Limits};
use crate::error::PolicyError;

/// The most cubes one launch spreads over per image (Vulkan's guaranteed grid width is 65 535).
const MAX_CUBES_X: usize = 65_535;

mod kernels {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    use super::super::encoder::{CONV2D, CROP, KEYPOINTS, LINEAR, MAXPOOL, NORM};
    use super::super::program::OP_WORDS;
    use crate::cube_common::kernels::word;

    /// Conv2d, square kernel, zero padding: one output value per unit.
    #[cube]
    fn conv2d<F: Float, I: Int>(
        prog: &Tensor<I>,
        p: usize,
        weights: &Tensor<F>,
        scratch: &mut Tensor<F>,
        base: usize,
        first: usize,
        step: usize,
    ) {
        let src = base + word::<I>(prog, p, 1);
        let c_in = word::<I>(prog, p, 2);
        let h_in = word::<I>(prog, p, 3);
        let w_in = word::<I>(prog, p, 4);
        let dst = base + word::<I>(prog, p, 5);
        let c_out = word::<I>(prog, p, 6);
        let h_out = word::<I>(prog, p, 7);
        let w_out = word::<I>(prog, p, 8);
        let w = word::<I>(prog, p, 9);
        let bias = word::<I>(prog, p, 10);
        let has_bias = word::<I>(prog, p, 11);
        let k = word::<I>(prog, p, 12);
        let stride = word::<I>(prog, p, 13);
        let pad = word::<I>(prog, p, 14);
        let plane = h_out * w_out;
        let mut i = first;
        while i < c_out * plane {
            let co = i / plane;
            let oy = (i % plane) / w_out;
            let ox = i % w_out;
            let mut acc = F::new(0.0);
            let mut ci = 0;
            while ci < c_in {
                let wbase = w + (co * c_in + ci) * k * k;
                let sbase = src + ci * h_in * w_in;
                let mut ky = 0;
                while ky < k {
                    // Input row oy·stride + ky − pad, zero outside 0..h_in (unsigned: test before subtracting).
                    let y = oy * stride + ky;
                    if y >= pad && y - pad < h_in {
                        let row = sbase + (y - pad) * w_in;
                        let mut kx = 0;
                        while kx < k {
                            let x = ox * stride + kx;
                            if x >= pad && x - pad < w_in {
                                acc += weights[wbase + ky * k + kx] * scratch[row + x - pad];
                            }
                            kx += 1;
                        }
                    }
                    ky += 1;
                }
                ci += 1;
            }
            if has_bias == 1 {
                acc += weights[bias + co];
            }
            scratch[dst + i] = acc;
            i += step;
        }
    }

    /// `v` normalised, then `+ res`, then ReLU.
    #[cube]
    fn finish<F: Float>(v: F, res: F, res_on: usize, relu: usize) -> F {
        let mut o = v;
        if res_on == 1 {
            o += res;
        }
        if relu == 1 {
            o = o.max(F::new(0.0));
        }
        o
    }

    /// GroupNorm of group `CUBE_POS_X` by the units of one cube: the mean, then the mean of squared
    /// deviations (as burn and PyTorch compute them), then the map normalised in place.
    #[cube]
    fn group_norm<F: Float, I: Int>(
        prog: &Tensor<I>,
        p: usize,
        weights: &Tensor<F>,
        scratch: &mut Tensor<F>,
        base: usize,
        partial: &mut SharedMemory<F>,
    ) {
        let unit = UNIT_POS_X as usize;
        let units = CUBE_DIM_X as usize;
        let buf = base + word::<I>(prog, p, 1);
        let c = word::<I>(prog, p, 2);
        let hw = word::<I>(prog, p, 3);
        let groups = word::<I>(prog, p, 4);
        let gamma = word::<I>(prog, p, 5);
        let beta = word::<I>(prog, p, 6);
        let eps = weights[word::<I>(prog, p, 7)];
        let res_on = word::<I>(prog, p, 10);
        let res = base + word::<I>(prog, p, 11);
        let relu = word::<I>(prog, p, 12);
        let g = CUBE_POS_X as usize;
        let cg = c / groups;
        let n = cg * hw;
        let at = buf + g * n;
        let nf = F::cast_from(n as u32);

        let mut acc = F::new(0.0);
        let mut i = unit;
        while i < n {
            acc += scratch[at + i];
            i += units;
        }
        partial[unit] = acc;
        sync_cube();
        let mut s = F::new(0.0);
        let mut t = 0;
        while t < units {
            s += partial[t];
            t += 1;
        }
        let mean = s / nf;
        sync_cube();
        let mut acc2 = F::new(0.0);
        let mut i2 = unit;
        while i2 < n {
            let d = scratch[at + i2] - mean;
            acc2 += d * d;
            i2 += units;
        }
        partial[unit] = acc2;
        sync_cube();
        let mut s2 = F::new(0.0);
        let mut t2 = 0;
        while t2 < units {
            s2 += partial[t2];
            t2 += 1;
        }
        let std = (s2 / nf + eps).sqrt();
        let mut j = unit;
        while j < n {
            let ch = g * cg + j / hw;
            let v = (scratch[at + j] - mean) / std * weights[gamma + ch] + weights[beta + ch];
            scratch[at + j] = finish::<F>(v, scratch[res + g * n + j], res_on, relu);
            j += units;
        }
    }

    /// Op `op` of the encoder program for image `CUBE_POS_Y`, spread over the cubes of that image.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn encoder_op_kernel<F: Float, I: Int>(
        prog: &Tensor<I>,
        weights: &Tensor<F>,
        x: &Tensor<F>,
        scratch: &mut Tensor<F>,
        out: &mut Tensor<F>,
        op: u32,
        image_scratch: u32,
        #[comptime] units: u32,
        #[define(F, I)] _dtypes: [StorageType; 2],
    ) {
        let img = CUBE_POS_Y as usize;
        let base = img * image_scratch as usize;
        let first = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        let step = CUBE_COUNT_X as usize * CUBE_DIM_X as usize;
        let mut partial = SharedMemory::<F>::new(units as usize);
        let p = op as usize * OP_WORDS;
        let code = u32::cast_from(prog[p]);
        if code == CROP as u32 {
            let dst = base + word::<I>(prog, p, 1);
            let c = word::<I>(prog, p, 2);
            let h_in = word::<I>(prog, p, 3);
            let w_in = word::<I>(prog, p, 4);
            let top = word::<I>(prog, p, 5);
            let left = word::<I>(prog, p, 6);
            let h = word::<I>(prog, p, 7);
            let w = word::<I>(prog, p, 8);
            let mut i = first;
            while i < c * h * w {
                let ch = i / (h * w);
                let y = (i % (h * w)) / w;
                let xx = i % w;
                scratch[dst + i] = x[((img * c + ch) * h_in + top + y) * w_in + left + xx];
                i += step;
            }
        } else if code == CONV2D as u32 {
            conv2d::<F, I>(prog, p, weights, scratch, base, first, step);
        } else if code == NORM as u32 {
            let groups = word::<I>(prog, p, 4);
            if groups > 0 {
                group_norm::<F, I>(prog, p, weights, scratch, base, &mut partial);
            } else {
                // BatchNorm, running statistics: (x − mean) / std · γ + β.
                let buf = base + word::<I>(prog, p, 1);
                let c = word::<I>(prog, p, 2);
                let hw = word::<I>(prog, p, 3);
                let gamma = word::<I>(prog, p, 5);
                let beta = word::<I>(prog, p, 6);
                let mean = word::<I>(prog, p, 8);
                let std = word::<I>(prog, p, 9);
                let res_on = word::<I>(prog, p, 10);
                let res = base + word::<I>(prog, p, 11);
                let relu = word::<I>(prog, p, 12);
                let mut i = first;
                while i < c * hw {
                    let ch = i / hw;
                    let v = (scratch[buf + i] - weights[mean + ch]) / weights[std + ch] * weights[gamma + ch]
                        + weights[beta + ch];
                    scratch[buf + i] = finish::<F>(v, scratch[res + i], res_on, relu);
                    i += step;
                }
            }
        } else if code == MAXPOOL as u32 {
            let src = base + word::<I>(prog, p, 1);
            let c = word::<I>(prog, p, 2);
            let h_in = word::<I>(prog, p, 3);
            let w_in = word::<I>(prog, p, 4);
            let dst = base + word::<I>(prog, p, 5);
            let h_out = word::<I>(prog, p, 6);
            let w_out = word::<I>(prog, p, 7);
            let k = word::<I>(prog, p, 8);
            let stride = word::<I>(prog, p, 9);
            let pad = word::<I>(prog, p, 10);
            let plane = h_out * w_out;
            let mut i = first;
            while i < c * plane {
                let ch = i / plane;
                let oy = (i % plane) / w_out;
                let ox = i % w_out;
                let sbase = src + ch * h_in * w_in;
                let mut m = F::min_value();
                let mut ky = 0;
                while ky < k {
                    let y = oy * stride + ky;
                    if y >= pad && y - pad < h_in {
                        let mut kx = 0;
                        while kx < k {
                            let xx = ox * stride + kx;
                            if xx >= pad && xx - pad < w_in {
                                m = m.max(scratch[sbase + (y - pad) * w_in + xx - pad]);
                            }
                            kx += 1;
                        }
                    }
                    ky += 1;
                }
                scratch[dst + i] = m;
                i += step;
            }
        } else if code == KEYPOINTS as u32 {
            let src = base + word::<I>(prog, p, 1);
            let k = word::<I>(prog, p, 2);
            let hw = word::<I>(prog, p, 3);
            let grid = word::<I>(prog, p, 4);
            let dst = base + word::<I>(prog, p, 5);
            if first < k {
                let at = src + first * hw;
                let mut m = scratch[at];
                let mut i = 1;
                while i < hw {
                    m = m.max(scratch[at + i]);
                    i += 1;
                }
                let mut s = F::new(0.0);
                let mut i2 = 0;
                while i2 < hw {
                    s += (scratch[at + i2] - m).exp();
                    i2 += 1;
                }
                let mut ex = F::new(0.0);
                let mut ey = F::new(0.0);
                let mut i3 = 0;
                while i3 < hw {
                    let a = (scratch[at + i3] - m).exp() / s;
                    ex += a * weights[grid + 2 * i3];
                    ey += a * weights[grid + 2 * i3 + 1];
                    i3 += 1;
                }
                scratch[dst + 2 * first] = ex;
                scratch[dst + 2 * first + 1] = ey;
            }
        } else if code == LINEAR as u32 {
            let src = base + word::<I>(prog, p, 1);
            let d_in = word::<I>(prog, p, 2);
            let d_out = word::<I>(prog, p, 3);
            let w = word::<I>(prog, p, 4);
            let bias = word::<I>(prog, p, 5);
            let relu = word::<I>(prog, p, 6);
            if first < d_out {
                let mut acc = F::new(0.0);
                let mut i = 0;
                while i < d_in {
                    acc += scratch[src + i] * weights[w + i * d_out + first];
                    i += 1;
                }
                out[img * d_out + first] = finish::<F>(acc + weights[bias + first], F::new(0.0), 0, relu);
            }
        }
    }
}

/// An RGB encoder compiled for a cube backend: the program and weights on the device.
pub(super) struct CubeEncoder<B: Backend> {
    program: EncoderProgram,
    ops: Tensor<B, 1, Int>,
    weights: Tensor<B, 1>,
    units: u32,
    max_alloc: u64,
    device: B::Device,
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> CubeEncoder<CubeBackend<R, F, I, BT>> {
    /// `program` on `device`, or why the device cannot run it.
    pub(super) fn build(program: EncoderProgram, device: &R::Device) -> Result<Self, PolicyError> {
        let Limits {
            units,
            shared,
            max_alloc,
        } = limits::<R, F, I, BT>(device);
        let needs = units as usize * std::mem::size_of::<f32>();
        if needs > shared {
            return Err(PolicyError::Device(format!(
                "the fused encoder needs {needs} B of shared memory per cube; this device allows {shared} B"
            )));
        }
        check_weights("RGB encoder", program.weights.len(), max_alloc)?;
        let (ops, weights) = upload::<R, F, I, BT>(&program.ops, &program.weights, device);
        Ok(Self {
            program,
            ops,
            weights,
            units,
            max_alloc,
            device: device.clone(),
        })
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> FusedEncoder<CubeBackend<R, F, I, BT>>
    for CubeEncoder<CubeBackend<R, F, I, BT>>
{
    fn forward(&self, x: Tensor<CubeBackend<R, F, I, BT>, 4>) -> Tensor<CubeBackend<R, F, I, BT>, 2> {
        let [n, c, h, w] = x.dims();
        let prog = &self.program;
        debug_assert_eq!([c, h, w], prog.input, "encoder input shape");
        debug_assert!(self.check_images(n).is_ok(), "check_images before encoding");
        let scratch = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 1>::empty(
            [n * prog.scratch_per_image],
            &self.device,
        ));
        let out = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 2>::empty(
            [n, prog.features],
            &self.device,
        ));
        let x = cube_tensor(x);
        let ops = self.ops.clone().into_primitive();
        let weights = cube_tensor(self.weights.clone());
        let dtypes = [x.dtype.into(), ops.dtype.into()];
        for i in 0..prog.n_ops() {
            let op = prog.op(i);
            let cubes = if op[0] == NORM && op[4] > 0 {
                op[4] as usize
            } else {
                prog.outputs(i).div_ceil(self.units as usize).clamp(1, MAX_CUBES_X)
            };
            kernels::encoder_op_kernel::launch::<R>(
                &x.client,
                CubeCount::Static(cubes as u32, n as u32, 1),
                CubeDim::new_1d(self.units),
                ops.clone().into_tensor_arg(),
                weights.clone().into_tensor_arg(),
                x.clone().into_tensor_arg(),
                scratch.clone().into_tensor_arg(),
                out.clone().into_tensor_arg(),
                i as u32,
                prog.scratch_per_image as u32,
                self.units,
                dtypes,
            );
        }
        from_cube(out)
    }

    fn check_images(&self, images: usize) -> Result<(), PolicyError> {
        let bytes = (images * self.program.scratch_per_image * std::mem::size_of::<f32>()) as u64;
        match bytes <= self.max_alloc && images <= MAX_CUBES_X {
            true => Ok(()),
            false => Err(PolicyError::Device(format!(
                "encoding {images} images needs {:.0} MB of scratch in one buffer, beyond this device's largest \
                 allocation ({:.0} MB): send fewer observations (batch × steps × cameras) at once",
                bytes as f64 / 1e6,
                self.max_alloc as f64 / 1e6
            ))),
        }
    }
}
