//! The U-Net pass as a flat program for the cube kernel ([`super::cube`]): one record of
//! [`OP_WORDS`] integers per layer, every weight packed in one f32 buffer, every activation a region
//! of a per-row scratch buffer (channel-major `[c, l]`).
//!
//! Built once per policy from the host copy of the weights ([`HostUnet`]), so the kernel reads the
//! same numbers the CPU pass does, in the same order of operations.

use riptide_kernels::unet::{Conv1d, ConvBlock, ConvTranspose1d, ResBlock};

use super::super::host_unet::HostUnet;

/// Integers per op record.
pub const OP_WORDS: usize = 16;

/// `[CONV, src_a, c_a, src_b, c_b, l_in, dst, c_out, l_out, w, bias, k, stride, pad]`: a 1-D convolution
/// over the channel concatenation of two regions (`c_b = 0`: one input), bias added.
pub const CONV: i32 = 1;
/// `[CONV_T, src, c_in, l_in, dst, c_out, l_out, w, bias, k, stride, pad]`: a direct transposed convolution.
pub const CONV_T: i32 = 2;
/// `[GN, buf, c, l, groups, gamma, beta, eps, film_on, film_off, film_scale, res_on, res]`, in place:
/// GroupNorm → Mish → FiLM (`scale·h + bias` or `h + bias`) → `+ res`.
pub const GN: i32 = 3;
/// `[LOAD, dst, a, h]`: the sample `[h, a]` of this row into a region `[a, h]`.
pub const LOAD: i32 = 4;
/// `[STORE, src, a, h]`: a region `[a, h]` into this row of the output `[h, a]`.
pub const STORE: i32 = 5;

/// The compiled pass of one U-Net.
#[derive(Debug, Clone)]
pub struct Program {
    /// `ops.len() / OP_WORDS` records.
    pub ops: Vec<i32>,
    pub weights: Vec<f32>,
    /// f32 values of scratch per batch row.
    pub scratch_per_row: usize,
    /// Width of one row of FiLM parameters (every residual block's, in `res_blocks()` order).
    pub film_total: usize,
    /// The most GroupNorm groups of any layer (the kernel needs at least this many units per cube).
    pub max_groups: usize,
    pub horizon: usize,
    pub action_dim: usize,
}

impl Program {
    pub fn n_ops(&self) -> usize {
        self.ops.len() / OP_WORDS
    }

    /// The records of ops `range`, for splitting a large net's pass into one launch per op.
    pub fn op(&self, i: usize) -> &[i32] {
        &self.ops[i * OP_WORDS..(i + 1) * OP_WORDS]
    }
}

struct Builder {
    ops: Vec<i32>,
    weights: Vec<f32>,
    scratch: usize,
    film_offset: usize,
    max_groups: usize,
}

/// Region of `c` channels of length `l` in the row scratch.
#[derive(Debug, Clone, Copy)]
struct Act {
    at: usize,
    c: usize,
    l: usize,
}

fn word(v: usize) -> i32 {
    i32::try_from(v).expect("U-Net program offsets fit in i32")
}

impl Builder {
    fn push(&mut self, words: &[usize]) {
        let mut rec = [0i32; OP_WORDS];
        for (r, w) in rec.iter_mut().zip(words) {
            *r = word(*w);
        }
        self.ops.extend_from_slice(&rec);
    }

    fn weights(&mut self, w: &[f32]) -> usize {
        let at = self.weights.len();
        self.weights.extend_from_slice(w);
        at
    }

    fn region(&mut self, c: usize, l: usize) -> Act {
        let at = self.scratch;
        self.scratch += c * l;
        Act { at, c, l }
    }

    /// A convolution of `a` (channel-concatenated with `b`, if given).
    fn conv(&mut self, conv: &Conv1d, a: Act, b: Option<Act>) -> Act {
        let cb = b.map_or(0, |b| b.c);
        assert_eq!(a.c + cb, conv.c_in, "conv input channels");
        let lo = conv.out_len(a.l);
        let out = self.region(conv.c_out, lo);
        let (w, bias) = (self.weights(&conv.weight), self.weights(&conv.bias));
        let b_at = b.map_or(0, |b| b.at);
        self.push(&[
            CONV as usize,
            a.at,
            a.c,
            b_at,
            cb,
            a.l,
            out.at,
            conv.c_out,
            lo,
            w,
            bias,
            conv.kernel,
            conv.stride,
            conv.pad,
        ]);
        out
    }

    fn conv_t(&mut self, conv: &ConvTranspose1d, x: Act) -> Act {
        let lo = (x.l - 1) * conv.stride + conv.kernel - 2 * conv.pad;
        let out = self.region(conv.c_out, lo);
        let (w, bias) = (self.weights(&conv.weight), self.weights(&conv.bias));
        self.push(&[
            CONV_T as usize,
            x.at,
            conv.c_in,
            x.l,
            out.at,
            conv.c_out,
            lo,
            w,
            bias,
            conv.kernel,
            conv.stride,
            conv.pad,
        ]);
        out
    }

    /// conv → GroupNorm → Mish (→ FiLM at `film`) (→ + `res`).
    fn block(&mut self, blk: &ConvBlock, a: Act, b: Option<Act>, film: Option<(usize, bool)>, res: Option<Act>) -> Act {
        let h = self.conv(&blk.conv, a, b);
        let (gamma, beta) = (self.weights(&blk.gamma), self.weights(&blk.beta));
        let eps = self.weights(&[blk.eps as f32]);
        self.max_groups = self.max_groups.max(blk.groups);
        let (film_on, film_off, scale) = film.map_or((0, 0, 0), |(o, s)| (1, o, usize::from(s)));
        let (res_on, res_at) = res.map_or((0, 0), |r| {
            assert_eq!((r.c, r.l), (h.c, h.l), "residual shape");
            (1, r.at)
        });
        self.push(&[
            GN as usize,
            h.at,
            h.c,
            h.l,
            blk.groups,
            gamma,
            beta,
            eps,
            film_on,
            film_off,
            scale,
            res_on,
            res_at,
        ]);
        h
    }

    fn res_block(&mut self, r: &ResBlock, a: Act, b: Option<Act>) -> Act {
        let film = (self.film_offset, r.film_scale);
        self.film_offset += r.film_width;
        let res = match &r.residual {
            Some(conv) => self.conv(conv, a, b),
            None => {
                assert!(b.is_none(), "an identity residual has one input");
                a
            }
        };
        let h = self.block(&r.conv1, a, b, Some(film), None);
        self.block(&r.conv2, h, None, None, Some(res))
    }
}

/// The program of `unet` for samples `[horizon, action_dim]`.
pub fn compile(unet: &HostUnet, horizon: usize, action_dim: usize, film_total: usize) -> Program {
    let mut b = Builder {
        ops: Vec::new(),
        weights: Vec::new(),
        scratch: 0,
        film_offset: 0,
        max_groups: 1,
    };
    let mut h = b.region(action_dim, horizon);
    b.push(&[LOAD as usize, h.at, action_dim, horizon]);
    let mut skips = Vec::with_capacity(unet.down.len());
    for (level, downsample) in &unet.down {
        h = b.res_block(&level.res0, h, None);
        h = b.res_block(&level.res1, h, None);
        skips.push(h);
        if let Some(ds) = downsample {
            h = b.conv(ds, h, None);
        }
    }
    for m in &unet.mid {
        h = b.res_block(m, h, None);
    }
    for (level, upsample) in &unet.up {
        let skip = skips.pop().expect("one skip per down level");
        h = b.res_block(&level.res0, h, Some(skip));
        h = b.res_block(&level.res1, h, None);
        h = b.conv_t(upsample, h);
    }
    assert_eq!(b.film_offset, film_total, "FiLM width");
    h = b.block(&unet.final_block, h, None, None, None);
    h = b.conv(&unet.final_conv, h, None);
    assert_eq!((h.c, h.l), (action_dim, horizon), "U-Net output shape");
    b.push(&[STORE as usize, h.at, action_dim, horizon]);
    Program {
        ops: b.ops,
        weights: b.weights,
        scratch_per_row: b.scratch,
        film_total,
        max_groups: b.max_groups,
        horizon,
        action_dim,
    }
}
