//! Run-time backend choice: the policy contract is backend-free, so one binary can serve CPU and GPU.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::PolicyError;
pub use crate::lerobot::fused::{Kernels, Precision};
use crate::lerobot::load_diffusion;
use crate::policy::Policy;

/// burn's pure-Rust CPU backends. `Cpu` is the default (picked by measurement, see BENCHMARKS.md).
pub type FlexBackend = burn::backend::Flex;
pub type NdArrayBackend = burn::backend::NdArray;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
#[cfg(feature = "wgpu")]
pub use crate::wgpu_device::WgpuBackend;

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
    /// A wgpu adapter (needs the `wgpu` build feature): the N-th in `riptide devices` order, or None for the
    /// default adapter (a CPU adapter such as lavapipe when there is no GPU).
    Wgpu(Option<usize>),
}

impl FromStr for DeviceSpec {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "flex" | "cpu-flex" => Ok(Self::Flex),
            "ndarray" | "cpu-ndarray" => Ok(Self::NdArray),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            "wgpu" => Ok(Self::Wgpu(None)),
            _ => match (
                s.strip_prefix("cuda:").map(str::parse::<usize>),
                s.strip_prefix("wgpu:").map(str::parse::<usize>),
            ) {
                (Some(Ok(i)), _) => Ok(Self::Cuda(i)),
                (_, Some(Ok(i))) => Ok(Self::Wgpu(Some(i))),
                _ => Err(PolicyError::Device(format!(
                    "unknown device {s:?}: use cpu, cuda, cuda:N, wgpu, wgpu:N (`riptide devices` lists them; flex / \
                     ndarray pick a CPU backend)"
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
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
        }
    }
}

/// Whether this build can run on CUDA.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");
/// Whether this build can run on wgpu.
pub const WGPU_COMPILED: bool = cfg!(feature = "wgpu");

/// Knobs for loading a policy.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Run the U-Net's inference passes in host memory on CPU backends (`riptide_kernels`; default on;
    /// ignored on GPU).
    pub cpu_fusion: bool,
    /// Which kernels the GPU backends run (CUDA, wgpu): riptide's fused ones (default) or burn's.
    pub kernels: Kernels,
}

/// The kernels [`LoadOptions::default`] picks: fused unless the command line said `--kernels burn`.
static DEFAULT_KERNELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Make `kernels` this process's default (the CLI sets it once, from `--kernels`, so every loader
/// below it follows).
pub fn set_default_kernels(kernels: Kernels) {
    DEFAULT_KERNELS.store(kernels == Kernels::Burn, std::sync::atomic::Ordering::Relaxed);
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            cpu_fusion: true,
            kernels: match DEFAULT_KERNELS.load(std::sync::atomic::Ordering::Relaxed) {
                true => Kernels::Burn,
                false => Kernels::Fused,
            },
        }
    }
}

/// Load the checkpoint in `dir` onto `device`.
pub fn load_policy(dir: &Path, device: DeviceSpec) -> Result<Box<dyn Policy>, PolicyError> {
    // Defaults include the process's `--kernels`.
    load_policy_with(dir, device, LoadOptions::default())
}

/// [`load_policy`] with explicit options.
pub fn load_policy_with(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Result<Box<dyn Policy>, PolicyError> {
    // riptide-only kinds say so in riptide.json; LeRobot checkpoints (no sidecar) are diffusion.
    if let Some((crate::spec::PolicyKind::Mode, _)) = crate::lerobot::loader::read_riptide_kind(dir)? {
        return load_mode(dir, device, opts.kernels);
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
        DeviceSpec::Cuda(i) => load_cuda(dir, i, opts.kernels),
        DeviceSpec::Wgpu(n) => crate::wgpu_device::load(dir, n, opts.kernels),
    }
}

fn load_mode(dir: &Path, device: DeviceSpec, kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
    match device {
        DeviceSpec::Cpu | DeviceSpec::Flex => {
            let mut p = crate::mode::load::<FlexBackend>(dir, &Default::default())?;
            p.set_backend_name("cpu (burn-flex)".into());
            Ok(Box::new(p))
        }
        DeviceSpec::NdArray => {
            let mut p = crate::mode::load::<NdArrayBackend>(dir, &Default::default())?;
            p.set_backend_name("cpu (burn-ndarray)".into());
            Ok(Box::new(p))
        }
        // `--kernels fused`: burn's ops without fusion and riptide's exact f32 matmul (cubek's would run
        // TF32); `--kernels burn`: burn-cuda with fusion, as before.
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => on_cuda(i, || {
            let device = burn::backend::cuda::CudaDevice::new(i);
            Ok(match kernels {
                Kernels::Fused => {
                    let mut p = crate::mode::load::<CudaCubeBackend>(dir, &device)?;
                    p.set_backend_name(format!("cuda:{i} (burn-cuda), {}", crate::matmul::MODEL_KERNELS));
                    Box::new(p)
                }
                Kernels::Burn => {
                    let mut p = crate::mode::load::<burn::backend::Cuda>(dir, &device)?;
                    p.set_backend_name(format!("cuda:{i} (burn-cuda with fusion), burn kernels"));
                    Box::new(p)
                }
            })
        }),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => load_cuda(dir, 0, kernels),
        DeviceSpec::Wgpu(n) => crate::wgpu_device::load_mode(dir, n),
    }
}

/// CUDA without burn-fusion: the backend the fused kernels run on (`--kernels fused`).
#[cfg(feature = "cuda")]
pub type CudaCubeBackend = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// `--kernels fused` runs on CUDA without burn-fusion (the fused kernels are one launch per pass);
/// `--kernels burn` on burn-cuda with fusion, as before.
#[cfg(feature = "cuda")]
fn load_cuda(dir: &Path, index: usize, kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
    on_cuda(index, || {
        let device = burn::backend::cuda::CudaDevice::new(index);
        Ok(match kernels {
            Kernels::Fused => {
                let mut p = load_diffusion::<CudaCubeBackend>(dir, &format!("cuda:{index} (burn-cuda)"), &device)?;
                p.set_kernels(kernels)?;
                Box::new(p)
            }
            Kernels::Burn => Box::new(load_diffusion::<CudaBackend>(
                dir,
                &format!("cuda:{index} (burn-cuda with fusion), burn kernels"),
                &device,
            )?),
        })
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
    let guarded = || load().map(|p| Box::new(crate::device_guard::DeviceGuard(p)) as Box<dyn Policy>);
    crate::error::catch_device_panic(guarded, |why| {
        format!(
            "cuda:{index} could not be initialised ({why}); check the device index (`nvidia-smi -L`) or run \
             with --device cpu"
        )
    })
}

/// The CUDA devices the driver sees, by index (`cuda:N`), or why there are none to list.
#[cfg(feature = "cuda")]
pub fn cuda_devices() -> Result<Vec<String>, String> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Count = unsafe extern "C" fn(*mut i32) -> i32;
    type Get = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Name = unsafe extern "C" fn(*mut std::ffi::c_char, i32, i32) -> i32;
    let no_driver = || "no CUDA driver on this machine (libcuda.so could not be loaded)".to_string();
    // SAFETY: the driver API's documented signatures; the library stays loaded while its symbols are used,
    // and the name buffer is sized and NUL-terminated by the driver.
    unsafe {
        let lib = ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
            .into_iter()
            .find_map(|n| libloading::Library::new(n).ok())
            .ok_or_else(no_driver)?;
        let sym = |name: &[u8]| format!("the CUDA driver lacks {}", String::from_utf8_lossy(name));
        let init: libloading::Symbol<Init> = lib.get(b"cuInit").map_err(|_| sym(b"cuInit"))?;
        let count: libloading::Symbol<Count> = lib.get(b"cuDeviceGetCount").map_err(|_| sym(b"cuDeviceGetCount"))?;
        let get: libloading::Symbol<Get> = lib.get(b"cuDeviceGet").map_err(|_| sym(b"cuDeviceGet"))?;
        let name: libloading::Symbol<Name> = lib.get(b"cuDeviceGetName").map_err(|_| sym(b"cuDeviceGetName"))?;
        match init(0) {
            0 => {}
            e => return Err(format!("the CUDA driver did not initialise (CUresult {e})")),
        }
        let mut n = 0i32;
        if count(&mut n) != 0 {
            return Err("cuDeviceGetCount failed".into());
        }
        let mut out = Vec::new();
        for i in 0..n {
            let mut dev = 0i32;
            let mut buf = [0 as std::ffi::c_char; 256];
            let label = if get(&mut dev, i) == 0 && name(buf.as_mut_ptr(), buf.len() as i32, dev) == 0 {
                std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
            } else {
                format!("device {i}")
            };
            out.push(label);
        }
        Ok(out)
    }
}

/// Without the `cuda` feature there is nothing to list.
#[cfg(not(feature = "cuda"))]
pub fn cuda_devices() -> Result<Vec<String>, String> {
    Err("this build has no CUDA support: rebuild with `--features cuda`".into())
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
fn load_cuda(_dir: &Path, _index: usize, _kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
    Err(PolicyError::Device(
        "this riptide was built without CUDA support; rebuild with `cargo build --release --features cuda` \
         (needs an NVIDIA driver and NVRTC at run time) or run with --device cpu"
            .into(),
    ))
}
