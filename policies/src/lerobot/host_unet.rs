//! The CPU backends' U-Net inference pass: [`riptide_kernels::Unet`] built from a
//! [`ConditionalUnet1d`]'s weights (copied to host memory once, at load).
//!
//! Why a host pass, and why a batched row is bitwise the row alone: see `riptide_kernels::unet`.
//! Training and the GPU backends keep the tensor path.

use burn::nn::conv::{Conv1d, ConvTranspose1d};
use burn::nn::PaddingConfig1d;
use burn::prelude::*;
use riptide_kernels::unet as k;

use super::unet::{ConditionalUnet1d, Conv1dBlock, ResBlock};

pub use riptide_kernels::Unet as HostUnet;

pub(crate) fn host_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 weights")
}

fn bias_of<B: Backend>(bias: &Option<burn::module::Param<Tensor<B, 1>>>, c_out: usize) -> Vec<f32> {
    bias.as_ref()
        .map(|b| host_vec(b.val()))
        .unwrap_or_else(|| vec![0.0; c_out])
}

fn conv<B: Backend>(conv: &Conv1d<B>) -> k::Conv1d {
    let [c_out, c_in, kernel] = conv.weight.dims();
    assert_eq!((conv.dilation, conv.groups), (1, 1), "host conv: dilation and groups 1");
    let pad = match &conv.padding {
        PaddingConfig1d::Explicit(a, b) if a == b => *a,
        PaddingConfig1d::Valid => 0,
        p => panic!("host conv: unsupported padding {p:?}"),
    };
    k::Conv1d {
        weight: host_vec(conv.weight.val()),
        bias: bias_of(&conv.bias, c_out),
        c_in,
        c_out,
        kernel,
        stride: conv.stride,
        pad,
    }
}

fn conv_transpose<B: Backend>(conv: &ConvTranspose1d<B>) -> k::ConvTranspose1d {
    let [c_in, c_out, kernel] = conv.weight.dims();
    assert_eq!(
        (conv.dilation, conv.groups, conv.padding_out),
        (1, 1, 0),
        "host transposed conv: dilation 1, groups 1, no output padding"
    );
    k::ConvTranspose1d {
        weight: host_vec(conv.weight.val()),
        bias: bias_of(&conv.bias, c_out),
        c_in,
        c_out,
        kernel,
        stride: conv.stride,
        pad: conv.padding,
    }
}

fn conv_block<B: Backend>(block: &Conv1dBlock<B>) -> k::ConvBlock {
    let affine = |p: &Option<burn::module::Param<Tensor<B, 1>>>| host_vec(p.as_ref().expect("affine GroupNorm").val());
    k::ConvBlock {
        conv: conv(&block.conv),
        gamma: affine(&block.norm.gamma),
        beta: affine(&block.norm.beta),
        groups: block.norm.num_groups,
        eps: block.norm.epsilon,
    }
}

fn res_block<B: Backend>(r: &ResBlock<B>) -> k::ResBlock {
    k::ResBlock {
        conv1: conv_block(&r.conv1),
        conv2: conv_block(&r.conv2),
        residual: r.residual_conv.as_ref().map(conv),
        film_width: r.cond_encoder.weight.dims()[1],
        film_scale: r.film_scale,
    }
}

/// The host pass of `unet`, from a copy of its weights.
pub fn host_unet<B: Backend>(unet: &ConditionalUnet1d<B>) -> HostUnet {
    let level = |a: &ResBlock<B>, b: &ResBlock<B>| k::Level {
        res0: res_block(a),
        res1: res_block(b),
    };
    HostUnet {
        down: unet
            .down_modules
            .iter()
            .map(|d| (level(&d.res0, &d.res1), d.downsample.as_ref().map(conv)))
            .collect(),
        mid: unet.mid_modules.iter().map(res_block).collect(),
        up: unet
            .up_modules
            .iter()
            .map(|u| (level(&u.res0, &u.res1), conv_transpose(&u.upsample)))
            .collect(),
        final_block: conv_block(&unet.final_block),
        final_conv: conv(&unet.final_conv),
    }
}
