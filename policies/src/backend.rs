//! Run-time backend choice: the policy contract is backend-free, so one binary can serve CPU and GPU.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::PolicyError;
use crate::lerobot::load_diffusion;
use crate::policy::Policy;

/// burn's pure-Rust CPU backends. `Cpu` is the default (picked by measurement, see BENCHMARKS.md).
pub type FlexBackend = burn::backend::Flex;
pub type NdArrayBackend = burn::backend::NdArray;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// Where a policy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The default CPU backend.
    Cpu,
    /// burn-flex explicitly.
    Flex,
    /// burn-ndarray explicitly.
    NdArray,
    /// CUDA device index (needs the `cuda` build feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "flex" | "cpu-flex" => Ok(Self::Flex),
            "ndarray" | "cpu-ndarray" => Ok(Self::NdArray),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(PolicyError::Device(format!(
                    "unknown device {s:?}: use cpu, cuda, cuda:N (or flex / ndarray to pick a CPU backend)"
                ))),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Flex => write!(f, "flex"),
            Self::NdArray => write!(f, "ndarray"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Whether this build can run on CUDA.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// Knobs for loading a policy.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Run the U-Net's inference passes in host memory on CPU backends (`riptide_kernels`; default on;
    /// ignored on GPU).
    pub cpu_fusion: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { cpu_fusion: true }
    }
}

/// Load the checkpoint in `dir` onto `device`.
pub fn load_policy(dir: &Path, device: DeviceSpec) -> Result<Box<dyn Policy>, PolicyError> {
    load_policy_with(dir, device, LoadOptions::default())
}

/// [`load_policy`] with explicit options.
pub fn load_policy_with(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Result<Box<dyn Policy>, PolicyError> {
    // riptide-only kinds say so in riptide.json; LeRobot checkpoints (no sidecar) are diffusion.
    if let Some((crate::spec::PolicyKind::Mode, _)) = crate::lerobot::loader::read_riptide_kind(dir)? {
        return load_mode(dir, device);
    }
    match device {
        DeviceSpec::Cpu | DeviceSpec::Flex => {
            let mut p = load_diffusion::<FlexBackend>(dir, "cpu (burn-flex)", &Default::default())?;
            p.set_host_fusion(opts.cpu_fusion);
            Ok(Box::new(p))
        }
        DeviceSpec::NdArray => {
            let mut p = load_diffusion::<NdArrayBackend>(dir, "cpu (burn-ndarray)", &Default::default())?;
            p.set_host_fusion(opts.cpu_fusion);
            Ok(Box::new(p))
        }
        DeviceSpec::Cuda(i) => load_cuda(dir, i),
    }
}

fn load_mode(dir: &Path, device: DeviceSpec) -> Result<Box<dyn Policy>, PolicyError> {
    match device {
        DeviceSpec::Cpu | DeviceSpec::Flex => Ok(Box::new(crate::mode::load::<FlexBackend>(dir, &Default::default())?)),
        DeviceSpec::NdArray => Ok(Box::new(crate::mode::load::<NdArrayBackend>(dir, &Default::default())?)),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => on_cuda(i, || {
            Ok(Box::new(crate::mode::load::<burn::backend::Cuda>(
                dir,
                &burn::backend::cuda::CudaDevice::new(i),
            )?))
        }),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => load_cuda(dir, 0),
    }
}

#[cfg(feature = "cuda")]
fn load_cuda(dir: &Path, index: usize) -> Result<Box<dyn Policy>, PolicyError> {
    on_cuda(index, || {
        let device = burn::backend::cuda::CudaDevice::new(index);
        Ok(Box::new(load_diffusion::<CudaBackend>(
            dir,
            &format!("cuda:{index} (burn-cuda)"),
            &device,
        )?))
    })
}

/// Run `load` on CUDA device `index`, or say why it cannot run there. burn-cuda panics (on its device
/// thread, then in the caller) when the machine has no CUDA driver or no such device; neither may take
/// the daemon down.
#[cfg(feature = "cuda")]
fn on_cuda(
    index: usize,
    load: impl FnOnce() -> Result<Box<dyn Policy>, PolicyError>,
) -> Result<Box<dyn Policy>, PolicyError> {
    if !cuda_driver_present() {
        return Err(PolicyError::Device(format!(
            "cuda:{index}: no CUDA driver on this machine (libcuda.so could not be loaded); install the NVIDIA \
             driver, put its library on LD_LIBRARY_PATH, or run with --device cpu"
        )));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("the CUDA runtime panicked");
        Err(PolicyError::Device(format!(
            "cuda:{index} could not be initialised ({why}); check the device index (`nvidia-smi -L`) or run \
             with --device cpu"
        )))
    })
}

/// Whether the CUDA driver library can be loaded (what burn-cuda needs before anything else).
#[cfg(feature = "cuda")]
fn cuda_driver_present() -> bool {
    ["libcuda.so.1", "libcuda.so", "nvcuda.dll"].into_iter().any(|name| {
        // SAFETY: loading the driver library runs only its initialisers, as burn-cuda's own loader would.
        unsafe { libloading::Library::new(name) }.is_ok()
    })
}

#[cfg(not(feature = "cuda"))]
fn load_cuda(_dir: &Path, _index: usize) -> Result<Box<dyn Policy>, PolicyError> {
    Err(PolicyError::Device(
        "this riptide was built without CUDA support; rebuild with `cargo build --release --features cuda` \
         (needs an NVIDIA driver and NVRTC at run time) or run with --device cpu"
            .into(),
    ))
}
