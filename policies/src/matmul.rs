//! Matrix products in exact f32 on every backend, for the models that run burn's ops on the GPU (MoDE).
//!
//! burn's matmul on the cube backends is cubek's, whose tensor-core variants silently compute f32 in TF32 on
//! sm_80+ (`cubek-matmul` `adjust_dtypes`; no setting turns it off). [`ExactMatmul`] is a backend extension
//! trait in burn's idiom: its default body is burn's matmul (exact on the CPU backends, and what `Autodiff<B>`
//! and burn-fusion run, as before); the cube backends without fusion (CUDA under `--kernels fused`, wgpu)
//! override it with [`cube`]'s plain multiply-add kernel, so a MoDE chunk on the GPU is f32 throughout.

use burn::nn::Linear;
use burn::prelude::*;

/// How a model that runs burn's ops with [`ExactMatmul`] on a cube backend names its kernels.
pub const MODEL_KERNELS: &str = "burn's ops with riptide's exact f32 matmul kernel";

/// A backend's matrix product for inference, `lhs [.., m, k] · rhs [.., k, n]` with burn's broadcasting of
/// the leading dimensions. The default is burn's `matmul`.
pub trait ExactMatmul: Backend {
    fn exact_matmul<const D: usize>(lhs: Tensor<Self, D>, rhs: Tensor<Self, D>) -> Tensor<Self, D> {
        lhs.matmul(rhs)
    }

    /// Whether [`Self::exact_matmul`] is riptide's own f32 kernel (the backend name says so).
    fn own_matmul_kernel() -> bool {
        false
    }
}

impl ExactMatmul for burn::backend::Flex {}
impl ExactMatmul for burn::backend::NdArray {}
/// burn-cuda with fusion (`--kernels burn`): burn's kernels, as before.
#[cfg(feature = "cuda")]
impl ExactMatmul for burn::backend::Cuda {}
impl<B: ExactMatmul, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy> ExactMatmul
    for burn::backend::Autodiff<B, C>
{
}

/// `lhs · rhs` through the backend's [`ExactMatmul`].
pub fn matmul<B: ExactMatmul, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    B::exact_matmul(lhs, rhs)
}

/// `x · W + b` for burn's `Linear` (weight [in, out]) over the last dimension of `x`.
pub fn linear<B: ExactMatmul, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let [d_in, d_out] = layer.weight.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = B::exact_matmul(x.reshape([rows, d_in]), layer.weight.val());
    let y = match &layer.bias {
        Some(b) => y + b.val().unsqueeze::<2>(),
        None => y,
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub mod cube {
    //! The exact matmul kernel for every cubecl runtime: one unit per output element, its dot product a
    //! sequential multiply-add over `k` in f32 (no tensor cores, no reduced precision). The models that
    //! use it are small (a MoDE step is a few hundred KB of weights), so launch count, not arithmetic,
    //! bounds them.

    use burn::prelude::*;
    use burn_cubecl::cubecl::prelude::{CubeCount, CubeDim};
    use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

    use super::ExactMatmul;
    use crate::cube_common::{cube_tensor, from_cube, units_per_cube};

    /// The most cubes one launch spreads over per matrix, and the most matrices per launch (Vulkan's
    /// guaranteed grid width and height are 65 535).
    const MAX_CUBES: usize = 65_535;

    mod kernels {
        use burn_cubecl::cubecl;
        use burn_cubecl::cubecl::prelude::*;

        /// `out[b, i, j] = Σ_k lhs[b, i, k]·rhs[b, k, j]` for matrix `b = first + CUBE_POS_Y`, outputs spread over the
        /// cubes along x; `rhs_shared` = 1 reads rhs matrix 0 for every b (a weight).
        #[cube(launch)]
        #[allow(clippy::too_many_arguments)]
        pub fn matmul_kernel<F: Float>(
            lhs: &Tensor<F>,
            rhs: &Tensor<F>,
            out: &mut Tensor<F>,
            m: u32,
            k: u32,
            n: u32,
            rhs_shared: u32,
            first: u32,
            #[define(F)] _dtype: StorageType,
        ) {
            let (m, k, n) = (m as usize, k as usize, n as usize);
            let b = first as usize + CUBE_POS_Y as usize;
            let a0 = b * m * k;
            let mut b0 = b * k * n;
            if rhs_shared == 1 {
                b0 = 0;
            }
            let o0 = b * m * n;
            let step = CUBE_COUNT_X as usize * CUBE_DIM_X as usize;
            let mut idx = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
            while idx < m * n {
                let i = idx / n;
                let j = idx % n;
                let mut acc = F::new(0.0);
                let mut kk = 0;
                while kk < k {
                    acc += lhs[a0 + i * k + kk] * rhs[b0 + kk * n + j];
                    kk += 1;
                }
                out[o0 + idx] = acc;
                idx += step;
            }
        }
    }

    impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> ExactMatmul for CubeBackend<R, F, I, BT> {
        fn exact_matmul<const D: usize>(lhs: Tensor<Self, D>, rhs: Tensor<Self, D>) -> Tensor<Self, D> {
            let (ld, rd) = (lhs.dims(), rhs.dims());
            let (m, k, n) = (ld[D - 2], ld[D - 1], rd[D - 1]);
            assert_eq!(rd[D - 2], k, "matmul of {ld:?} by {rd:?}: inner dimensions differ");
            // Leading dimensions broadcast as in burn; a weight shared by every matrix is read in place.
            let mut batch = [0usize; D];
            for i in 0..D - 2 {
                assert!(
                    ld[i] == rd[i] || ld[i] == 1 || rd[i] == 1,
                    "matmul of {ld:?} by {rd:?}: leading dimensions do not broadcast"
                );
                batch[i] = ld[i].max(rd[i]);
            }
            let matrices = batch[..D - 2].iter().product::<usize>();
            let rhs_shared = rd[..D - 2].iter().product::<usize>() == 1;
            let expand = |t: Tensor<Self, D>, rows: usize, cols: usize| {
                let mut shape = batch;
                shape[D - 2] = rows;
                shape[D - 1] = cols;
                match t.dims() == shape {
                    true => t,
                    false => t.expand(shape),
                }
            };
            let lhs = expand(lhs, m, k);
            let rhs = if rhs_shared { rhs } else { expand(rhs, k, n) };
            let mut out_shape = batch;
            out_shape[D - 2] = m;
            out_shape[D - 1] = n;
            let device = lhs.device();
            if matrices * m * n == 0 || k == 0 {
                return Tensor::zeros(out_shape, &device);
            }
            let (lhs, rhs) = (cube_tensor(lhs), cube_tensor(rhs));
            let out = cube_tensor(Tensor::<Self, D>::empty(out_shape, &device));
            let units = units_per_cube(&lhs);
            let cubes = (m * n).div_ceil(units as usize).clamp(1, MAX_CUBES);
            let dtype = lhs.dtype.into();
            // More matrices than the grid is high run as several launches.
            for first in (0..matrices).step_by(MAX_CUBES) {
                kernels::matmul_kernel::launch::<R>(
                    &lhs.client,
                    CubeCount::Static(cubes as u32, (matrices - first).min(MAX_CUBES) as u32, 1),
                    CubeDim::new_1d(units),
                    lhs.clone().into_tensor_arg(),
                    rhs.clone().into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    m as u32,
                    k as u32,
                    n as u32,
                    rhs_shared as u32,
                    first as u32,
                    dtype,
                );
            }
            from_cube(out)
        }

        fn own_matmul_kernel() -> bool {
            true
        }
    }
}
