//! The RGB encoder (center crop → ResNet18 trunk → SpatialSoftmax → Linear + ReLU) as a flat program for
//! the cube kernel ([`super::cube`]): one record of [`OP_WORDS`] integers per layer, every weight packed in
//! one f32 buffer, every activation a region of a per-image scratch buffer (channel-major `[c, h, w]`).
//!
//! Built once per policy from a host copy of the encoder's weights. Each layer is one launch over many
//! cubes (an image's activations are far larger than one cube's share), so an encoding takes one launch
//! per layer whatever the image size. Regions are reused once their last reader has run, so the scratch
//! is a few activation maps, not the whole trunk's.

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;

use super::super::host_unet::host_vec;
use super::super::rgb::{BasicBlock, Norm2d, RgbEncoder};
use super::program::OP_WORDS;

/// `[CROP, dst, c, h_in, w_in, top, left, h, w]`: the image `[c, h_in, w_in]` of this row, cropped.
pub const CROP: i32 = 1;
/// `[CONV2D, src, c_in, h_in, w_in, dst, c_out, h_out, w_out, w, bias, has_bias, k, stride, pad]`.
pub const CONV2D: i32 = 2;
/// `[NORM, buf, c, hw, groups, gamma, beta, eps, mean, std, res_on, res, relu]`, in place: GroupNorm
/// (`groups` > 0, statistics of the map) or BatchNorm (`groups` 0, running `mean` and `std` = √(var+ε)),
/// then `+ res`, then ReLU.
pub const NORM: i32 = 3;
/// `[MAXPOOL, src, c, h_in, w_in, dst, h_out, w_out, k, stride, pad]` (padding never wins the max).
pub const MAXPOOL: i32 = 4;
/// `[KEYPOINTS, src, k, hw, grid, dst]`: per channel, softmax over the map, then the expected (x, y) of
/// `grid` `[hw, 2]` into `dst[2k]`, `dst[2k+1]`.
pub const KEYPOINTS: i32 = 5;
/// `[LINEAR, src, d_in, d_out, w, bias, relu]`: into this row of the output `[N, d_out]`.
pub const LINEAR: i32 = 6;

/// The compiled encoder.
#[derive(Debug, Clone)]
pub struct EncoderProgram {
    pub ops: Vec<i32>,
    pub weights: Vec<f32>,
    /// f32 values of scratch per image.
    pub scratch_per_image: usize,
    /// Expected input `[3, H, W]`.
    pub input: [usize; 3],
    /// Features per image.
    pub features: usize,
}

impl EncoderProgram {
    pub fn n_ops(&self) -> usize {
        self.ops.len() / OP_WORDS
    }

    pub fn op(&self, i: usize) -> &[i32] {
        &self.ops[i * OP_WORDS..(i + 1) * OP_WORDS]
    }

    /// Values an op writes per image (what its launch spreads over units), and whether it is a
    /// GroupNorm (one cube per group instead).
    pub fn outputs(&self, i: usize) -> usize {
        let op = self.op(i);
        let n = match op[0] {
            CROP => op[2] * op[7] * op[8],
            CONV2D => op[6] * op[7] * op[8],
            NORM => op[2] * op[3],
            MAXPOOL => op[2] * op[6] * op[7],
            KEYPOINTS => op[2],
            LINEAR => op[3],
            _ => 0,
        };
        n as usize
    }
}

/// An activation map in the image scratch.
#[derive(Debug, Clone, Copy)]
struct Map {
    at: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Map {
    fn len(&self) -> usize {
        self.c * self.h * self.w
    }
}

#[derive(Default)]
struct Builder {
    ops: Vec<i32>,
    weights: Vec<f32>,
    scratch: usize,
    /// Released regions `(at, len)`, reused first-fit.
    free: Vec<(usize, usize)>,
}

fn word(v: usize) -> Result<i32, String> {
    i32::try_from(v).map_err(|_| format!("the encoder program's offset {v} does not fit in i32"))
}

impl Builder {
    fn push(&mut self, words: &[usize]) -> Result<(), String> {
        let mut rec = [0i32; OP_WORDS];
        for (r, w) in rec.iter_mut().zip(words) {
            *r = word(*w)?;
        }
        self.ops.extend_from_slice(&rec);
        Ok(())
    }

    fn weights(&mut self, w: &[f32]) -> usize {
        let at = self.weights.len();
        self.weights.extend_from_slice(w);
        at
    }

    fn alloc(&mut self, c: usize, h: usize, w: usize) -> Map {
        let len = c * h * w;
        let at = match self.free.iter().position(|&(_, l)| l >= len) {
            Some(i) => {
                let (at, l) = self.free.remove(i);
                if l > len {
                    self.free.push((at + len, l - len));
                }
                at
            }
            None => {
                self.scratch += len;
                self.scratch - len
            }
        };
        Map { at, c, h, w }
    }

    fn release(&mut self, m: Map) {
        self.free.push((m.at, m.len()));
        // Smallest first, so a small map does not split a large region another map needs.
        self.free.sort_by_key(|&(_, l)| l);
    }

    fn conv<B: Backend>(&mut self, conv: &Conv2d<B>, x: Map) -> Result<Map, String> {
        let [c_out, c_in, kh, kw] = conv.weight.dims();
        let square = |[a, b]: [usize; 2], what: &str| match a == b {
            true => Ok(a),
            false => Err(format!("a conv2d with a non-square {what} {a}×{b}")),
        };
        let k = square([kh, kw], "kernel")?;
        let stride = square(conv.stride, "stride")?;
        if conv.dilation != [1, 1] || conv.groups != 1 {
            return Err("a conv2d with dilation or groups".into());
        }
        let pad = match &conv.padding {
            PaddingConfig2d::Valid => 0,
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => *t,
            p => return Err(format!("a conv2d with padding {p:?}")),
        };
        if c_in != x.c {
            return Err(format!("a conv2d of {c_in} input channels fed {}", x.c));
        }
        let out_len = |n: usize| (n + 2 * pad).checked_sub(k).map(|v| v / stride + 1);
        let (Some(ho), Some(wo)) = (out_len(x.h), out_len(x.w)) else {
            return Err(format!("a {}×{} map is smaller than a {k}×{k} kernel", x.h, x.w));
        };
        let out = self.alloc(c_out, ho, wo);
        let w = self.weights(&host_vec(conv.weight.val()));
        let (bias, has_bias) = match &conv.bias {
            Some(b) => (self.weights(&host_vec(b.val())), 1),
            None => (0, 0),
        };
        self.push(&[
            CONV2D as usize,
            x.at,
            x.c,
            x.h,
            x.w,
            out.at,
            c_out,
            ho,
            wo,
            w,
            bias,
            has_bias,
            k,
            stride,
            pad,
        ])?;
        Ok(out)
    }

    /// Norm in place, then `+ res`, then ReLU.
    fn norm<B: Backend>(&mut self, norm: &Norm2d<B>, x: Map, res: Option<Map>, relu: bool) -> Result<(), String> {
        let (groups, gamma, beta, eps, mean, std) = match norm {
            Norm2d::Group(n) => {
                let affine = |p: &Option<burn::module::Param<Tensor<B, 1>>>| match p {
                    Some(p) => Ok(host_vec(p.val())),
                    None => Err("a GroupNorm without affine parameters".to_string()),
                };
                if n.num_channels != x.c || n.num_groups == 0 || !x.c.is_multiple_of(n.num_groups) {
                    return Err(format!(
                        "GroupNorm({}, {}) on {} channels",
                        n.num_groups, n.num_channels, x.c
                    ));
                }
                let (g, b) = (affine(&n.gamma)?, affine(&n.beta)?);
                let (g, b) = (self.weights(&g), self.weights(&b));
                (n.num_groups, g, b, self.weights(&[n.epsilon as f32]), 0, 0)
            }
            Norm2d::Batch(n) => {
                let var = host_vec(n.running_var.value());
                // burn's inference: (x − mean) / √(var + ε) · γ + β.
                let std: Vec<f32> = var.iter().map(|v| (v + n.epsilon as f32).sqrt()).collect();
                let mean = host_vec(n.running_mean.value());
                let (g, b) = (host_vec(n.gamma.val()), host_vec(n.beta.val()));
                if g.len() != x.c {
                    return Err(format!("BatchNorm of {} channels on {}", g.len(), x.c));
                }
                let (g, b) = (self.weights(&g), self.weights(&b));
                (0, g, b, 0, self.weights(&mean), self.weights(&std))
            }
        };
        let (res_on, res_at) = res.map_or((0, 0), |r| (1, r.at));
        self.push(&[
            NORM as usize,
            x.at,
            x.c,
            x.h * x.w,
            groups,
            gamma,
            beta,
            eps,
            mean,
            std,
            res_on,
            res_at,
            usize::from(relu),
        ])
    }

    fn block<B: Backend>(&mut self, blk: &BasicBlock<B>, x: Map) -> Result<Map, String> {
        let h = self.conv(&blk.conv1, x)?;
        self.norm(&blk.bn1, h, None, true)?;
        let h2 = self.conv(&blk.conv2, h)?;
        self.release(h);
        let identity = match &blk.downsample {
            Some(d) => {
                let id = self.conv(&d.conv, x)?;
                self.norm(&d.bn, id, None, false)?;
                self.release(x);
                id
            }
            None => x,
        };
        self.norm(&blk.bn2, h2, Some(identity), true)?;
        self.release(identity);
        Ok(h2)
    }
}

/// The program of `enc` for images `[3, image_h, image_w]`, or why the fused kernels cannot run it.
pub fn compile<B: Backend>(enc: &RgbEncoder<B>, image_hw: [usize; 2]) -> Result<EncoderProgram, String> {
    let mut b = Builder::default();
    let [ih, iw] = image_hw;
    let [top, left, h, w] = enc.crop.unwrap_or([0, 0, ih, iw]);
    if top + h > ih || left + w > iw {
        return Err(format!("a {h}×{w} crop at ({top}, {left}) of a {ih}×{iw} image"));
    }
    let x = b.alloc(3, h, w);
    b.push(&[CROP as usize, x.at, 3, ih, iw, top, left, h, w])?;
    let t = &enc.backbone;
    let h1 = b.conv(&t.conv1, x)?;
    b.release(x);
    b.norm(&t.bn1, h1, None, true)?;
    let [pk, pk2] = t.maxpool.kernel_size;
    let [ps, ps2] = t.maxpool.stride;
    let pp = match &t.maxpool.padding {
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Explicit(a, l, c, r) if a == l && l == c && c == r => *a,
        p => return Err(format!("a max pool with padding {p:?}")),
    };
    if pk != pk2 || ps != ps2 || pp >= pk || t.maxpool.dilation != [1, 1] || t.maxpool.ceil_mode {
        return Err("a max pool other than square, dilation 1, floor mode".into());
    }
    let pool_len = |n: usize| (n + 2 * pp - pk) / ps + 1;
    let mut m = b.alloc(h1.c, pool_len(h1.h), pool_len(h1.w));
    b.push(&[MAXPOOL as usize, h1.at, h1.c, h1.h, h1.w, m.at, m.h, m.w, pk, ps, pp])?;
    b.release(h1);
    for blk in t.layer1.iter().chain(&t.layer2).chain(&t.layer3).chain(&t.layer4) {
        m = b.block(blk, m)?;
    }
    let f = b.conv(&enc.pool.nets, m)?;
    b.release(m);
    let grid = host_vec(enc.pool.pos_grid.val());
    if grid.len() != 2 * f.h * f.w {
        return Err(format!(
            "a keypoint grid of {} values for a {}×{} map",
            grid.len(),
            f.h,
            f.w
        ));
    }
    let grid = b.weights(&grid);
    let kp = b.alloc(2 * f.c, 1, 1);
    b.push(&[KEYPOINTS as usize, f.at, f.c, f.h * f.w, grid, kp.at])?;
    let [d_in, d_out] = enc.out.weight.dims();
    if d_in != kp.c {
        return Err(format!("an output layer of {d_in} inputs fed {} keypoint values", kp.c));
    }
    let lw = b.weights(&host_vec(enc.out.weight.val()));
    let lb = match &enc.out.bias {
        Some(p) => b.weights(&host_vec(p.val())),
        None => b.weights(&vec![0.0; d_out]),
    };
    b.push(&[LINEAR as usize, kp.at, d_in, d_out, lw, lb, 1])?;
    Ok(EncoderProgram {
        ops: b.ops,
        weights: b.weights,
        scratch_per_image: b.scratch,
        input: [3, ih, iw],
        features: d_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lerobot::rgb::RgbEncoderConfig;
    use burn::backend::NdArray;

    /// LeRobot's PushT encoder (96×96 → crop 84×84, GroupNorm, 32 keypoints): one op per layer, and
    /// a scratch of a few maps, not the sum of all of them.
    #[test]
    fn pusht_encoder_compiles_to_one_op_per_layer_with_reused_scratch() {
        let enc = RgbEncoderConfig::new([96, 96], true, 32)
            .with_crop_shape(Some([84, 84]))
            .init::<NdArray>(&Default::default());
        let p = compile(&enc, [96, 96]).unwrap();
        // crop, stem conv + norm + pool, 8 blocks × 4 + 3 downsamples × 2, keypoint conv + softmax, linear.
        assert_eq!(p.n_ops(), 1 + 3 + 8 * 4 + 3 * 2 + 2 + 1);
        assert_eq!((p.input, p.features), ([3, 96, 96], 64));
        let stem = 64 * 42 * 42;
        let all: usize = (0..p.n_ops()).map(|i| p.outputs(i)).sum();
        assert!(
            p.scratch_per_image < 2 * stem,
            "{} values of scratch",
            p.scratch_per_image
        );
        assert!(p.scratch_per_image < all / 3, "{} of {all}", p.scratch_per_image);
        let params: usize = enc.num_params();
        assert!(
            p.weights.len() >= params,
            "{} packed of {params} parameters",
            p.weights.len()
        );
    }

    #[test]
    fn a_crop_outside_the_image_is_refused() {
        let enc = RgbEncoderConfig::new([96, 96], false, 32)
            .with_crop_shape(Some([84, 84]))
            .init::<NdArray>(&Default::default());
        let err = compile(&enc, [64, 64]).unwrap_err();
        assert!(err.contains("crop"), "{err}");
    }
}
