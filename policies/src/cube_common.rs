//! What riptide's cube kernels (the fused U-Net and encoder, the exact matmul) share: reading a program's
//! words, moving tensors in and out of cubecl, and the device's limits.

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::error::PolicyError;

pub(crate) mod kernels {
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    /// Word `i` of the op record at `p`.
    #[cube]
    pub fn word<I: Int>(prog: &Tensor<I>, p: usize, i: usize) -> usize {
        u32::cast_from(prog[p + i]) as usize
    }
}

pub(crate) fn cube_tensor<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: Tensor<CubeBackend<R, F, I, BT>, D>,
) -> CubeTensor<R> {
    burn_cubecl::kernel::into_contiguous(t.into_primitive().tensor())
}

pub(crate) fn from_cube<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: CubeTensor<R>,
) -> Tensor<CubeBackend<R, F, I, BT>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// What a cube kernel may use on `device`: units per cube (at most 256), shared memory bytes, and the
/// largest single allocation in bytes.
pub(crate) struct Limits {
    pub units: u32,
    pub shared: usize,
    pub max_alloc: u64,
}

pub(crate) fn limits<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(device: &R::Device) -> Limits {
    let probe = cube_tensor(Tensor::<CubeBackend<R, F, I, BT>, 1>::zeros([1], device));
    let props = probe.client.properties();
    let hw = &props.hardware;
    Limits {
        units: units_per_cube(&probe),
        shared: hw.max_shared_memory_size,
        max_alloc: props.memory.max_page_size,
    }
}

/// Units per cube on `t`'s device: what it reports, at most 256 (no plane width assumed).
pub(crate) fn units_per_cube<R: CubeRuntime>(t: &CubeTensor<R>) -> u32 {
    let hw = &t.client.properties().hardware;
    hw.max_units_per_cube.min(hw.max_cube_dim.0).min(256)
}

/// A device error when `what`'s packed weights exceed the device's largest buffer.
pub(crate) fn check_weights(what: &str, values: usize, max_alloc: u64) -> Result<(), PolicyError> {
    let bytes = (values * std::mem::size_of::<f32>()) as u64;
    match bytes <= max_alloc {
        true => Ok(()),
        false => Err(PolicyError::Device(format!(
            "the fused {what} packs its weights ({:.0} MB) in one buffer, beyond this device's largest ({:.0} MB)",
            bytes as f64 / 1e6,
            max_alloc as f64 / 1e6
        ))),
    }
}

/// A program on the device: its op records and its packed weights.
pub(crate) type DeviceProgram<B> = (Tensor<B, 1, Int>, Tensor<B, 1>);

/// A program's op records and packed weights on `device`.
pub(crate) fn upload<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    ops: &[i32],
    weights: &[f32],
    device: &R::Device,
) -> DeviceProgram<CubeBackend<R, F, I, BT>> {
    (
        Tensor::from_data(TensorData::new(ops.to_vec(), [ops.len()]), device),
        Tensor::from_data(TensorData::new(weights.to_vec(), [weights.len()]), device),
    )
}
