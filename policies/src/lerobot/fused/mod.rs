//! The diffusion model's fused inference path: the U-Net pass and the sampler update as a backend's own
//! kernels, behind [`UnetKernels`], a backend extension trait in burn's idiom. Its default body is what
//! every backend runs today (burn's ops, and burn-flex's host pass); the cube backends (CUDA, wgpu)
//! override it with the `#[cube]` kernels of [`cube`]. Training and `Autodiff<B>` never see it.

pub mod encoder;
pub mod program;

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube_encoder;

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;

use super::host_unet::HostUnet;
use crate::error::PolicyError;
use crate::schedule::StepCoefficients;

/// Which kernels a cube backend runs (`--kernels`): its fused ones, or burn's op by op (the baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    #[default]
    Fused,
    Burn,
}

impl FromStr for Kernels {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fused" => Ok(Self::Fused),
            "burn" => Ok(Self::Burn),
            _ => Err(PolicyError::Config(format!(
                "unknown kernels {s:?}: use fused (riptide's cube kernels, the default on GPU devices) or burn \
                 (burn's kernels, op by op)"
            ))),
        }
    }
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fused => "fused",
            Self::Burn => "burn",
        })
    }
}

/// Numeric precision of inference (`precision`, `--precision`). f32 is exact f32 on every device: no
/// TF32 or reduced-precision path exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
}

impl FromStr for Precision {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f32" => Ok(Self::F32),
            "tf32" | "f16" | "bf16" => Err(PolicyError::Config(format!(
                "precision {s:?} is not offered: riptide runs exact f32 on every device (precision = \"f32\")"
            ))),
            _ => Err(PolicyError::Config(format!(
                "unknown precision {s:?}: the only value is f32"
            ))),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("f32")
    }
}

/// A U-Net compiled into a backend's own kernels: one pass, and one reverse step of the sampler.
pub trait FusedUnet<B: Backend>: Send {
    /// ε̂ (or x̂0) for `x` [B, H, A] given the observation part of every block's FiLM [B, ΣF] and the
    /// step part [1, ΣF] (shared) or [B, ΣF] (a timestep per row).
    fn pass(&self, x: Tensor<B, 3>, obs_film: &Tensor<B, 2>, step_film: &Tensor<B, 2>) -> Tensor<B, 3>;

    /// Whether a pass of `rows` batch rows fits the device's buffers (its scratch is one allocation):
    /// a device error saying what to send instead, checked before anything runs. cubecl reports an
    /// allocation beyond the limit only once (later ones fail on its device thread, unseen), so the
    /// check is the fused path's own.
    fn check_rows(&self, _rows: usize) -> Result<(), PolicyError> {
        Ok(())
    }

    /// The observation part of every block's FiLM, `Mish(gc)·W_obs` [B, ΣF], once per inference.
    fn obs_film(&self, gc: Tensor<B, 2>, w_obs: &Tensor<B, 2>) -> Tensor<B, 2> {
        burn::tensor::activation::mish(gc).matmul(w_obs.clone())
    }

    /// One reverse step: what [`crate::sampler::step`] computes with burn's ops.
    fn update(
        &self,
        x: Tensor<B, 3>,
        out: Tensor<B, 3>,
        c: &StepCoefficients,
        clip: Option<f32>,
        noise: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3>;
}

/// An RGB encoder (ResNet18 trunk, keypoints, output layer) compiled into a backend's own kernels.
pub trait FusedEncoder<B: Backend>: Send {
    /// Features `[N, D]` of normalised images `[N, 3, H, W]`: what [`super::rgb::RgbEncoder::forward`]
    /// computes.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Whether `images` images fit the device's buffers: a device error saying what to send instead.
    fn check_images(&self, _images: usize) -> Result<(), PolicyError> {
        Ok(())
    }
}

/// A backend's fused kernels for the diffusion model: the U-Net and the RGB encoder. The default is
/// none: the policy runs burn's ops (or, on the CPU backends, the host pass), exactly as before.
pub trait UnetKernels: Backend {
    fn fused_unet(
        _unet: &HostUnet,
        _horizon: usize,
        _action_dim: usize,
        _film_total: usize,
        _device: &Self::Device,
    ) -> Result<Option<Box<dyn FusedUnet<Self>>>, PolicyError> {
        Ok(None)
    }

    fn fused_encoder(
        _program: encoder::EncoderProgram,
        _device: &Self::Device,
    ) -> Result<Option<Box<dyn FusedEncoder<Self>>>, PolicyError> {
        Ok(None)
    }
}

impl UnetKernels for burn::backend::Flex {}
impl UnetKernels for burn::backend::NdArray {}
#[cfg(feature = "cuda")]
impl UnetKernels for burn::backend::Cuda {}
