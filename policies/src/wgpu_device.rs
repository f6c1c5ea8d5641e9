//! `--device wgpu` / `wgpu:N`: burn's wgpu backend (Vulkan on NVIDIA/AMD/Intel/Jetson, Metal on macOS, the
//! CPU Vulkan driver lavapipe where there is no GPU) and the adapters it can see, in the order `riptide
//! devices` prints and `wgpu:N` counts. A build without the `wgpu` feature says how to rebuild.

use std::path::Path;

use crate::error::PolicyError;
use crate::lerobot::fused::Kernels;
use crate::policy::Policy;

/// One wgpu adapter as `riptide devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu`, `Other`.
    pub kind: String,
    /// `Vulkan`, `Metal`, …
    pub api: String,
    pub driver: String,
}

/// burn's wgpu backend without fusion: one kernel per op (the default bodies of the fused path).
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn_wgpu::CubeBackend<burn_wgpu::WgpuRuntime, f32, i32, u32>;

#[cfg(feature = "wgpu")]
mod imp {
    use super::*;
    use burn_wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn_wgpu::WgpuDevice;

    use super::WgpuBackend;
    use crate::lerobot::load_diffusion;

    /// Every adapter of the graphics API burn-wgpu uses here, in its enumeration order.
    fn raw_adapters() -> Vec<wgpu::AdapterInfo> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::all(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        block_on(instance.enumerate_adapters(AutoGraphicsApi::backend().into()))
            .into_iter()
            .map(|a| a.get_info())
            .collect()
    }

    pub fn adapters() -> Vec<Adapter> {
        raw_adapters()
            .into_iter()
            .map(|i| Adapter {
                name: i.name,
                kind: format!("{:?}", i.device_type),
                api: format!("{:?}", i.backend),
                driver: [i.driver, i.driver_info]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect()
    }

    /// The burn device of `wgpu` (None: the default adapter, else a CPU one) or `wgpu:N`, and a description.
    pub fn select(n: Option<usize>) -> Result<(WgpuDevice, String), PolicyError> {
        let all = raw_adapters();
        let describe = |i: &wgpu::AdapterInfo| format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend);
        if all.is_empty() {
            return Err(PolicyError::Device(
                "wgpu: no adapter (no Vulkan/Metal driver): install the GPU's driver, or on a machine without a GPU \
                 the CPU Vulkan driver (`apt-get install mesa-vulkan-drivers libvulkan1`); `riptide devices` lists \
                 what is visible"
                    .into(),
            ));
        }
        let index_among_its_kind = |k: usize| all[..k].iter().filter(|i| i.device_type == all[k].device_type).count();
        let pick = match n {
            Some(k) if k >= all.len() => {
                return Err(PolicyError::Device(format!(
                    "wgpu:{k}: there are {} wgpu adapters (wgpu:0..wgpu:{}); `riptide devices` lists them",
                    all.len(),
                    all.len() - 1
                )))
            }
            Some(k) => k,
            // The default: the first GPU; else a CPU adapter, said in the log.
            None => match all.iter().position(|i| i.device_type != wgpu::DeviceType::Cpu) {
                Some(k) => k,
                None => {
                    tracing::warn!("wgpu: no GPU adapter; running on the CPU adapter {}", describe(&all[0]));
                    0
                }
            },
        };
        let info = &all[pick];
        let device = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(index_among_its_kind(pick)),
            wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(index_among_its_kind(pick)),
            wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(index_among_its_kind(pick)),
            wgpu::DeviceType::Cpu => WgpuDevice::Cpu,
            wgpu::DeviceType::Other => {
                return Err(PolicyError::Device(format!(
                    "wgpu adapter {} has an unknown device type; pick another with wgpu:N",
                    describe(info)
                )))
            }
        };
        Ok((device, describe(info)))
    }

    /// Run `load` on the device, or say why it cannot run there: cubecl panics when an adapter cannot be
    /// opened; that may not take the daemon down.
    fn guarded(
        load: impl FnOnce() -> Result<Box<dyn Policy>, PolicyError>,
        what: &str,
    ) -> Result<Box<dyn Policy>, PolicyError> {
        let guarded = || load().map(|p| Box::new(crate::device_guard::DeviceGuard(p)) as Box<dyn Policy>);
        crate::error::catch_device_panic(guarded, |why| {
            format!(
                "{what} could not be initialised ({why}); `riptide devices` lists the adapters, or run with \
                 --device cpu"
            )
        })
    }

    pub fn load(dir: &Path, n: Option<usize>, kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
        let (device, what) = select(n)?;
        let name = format!("wgpu: {what}");
        guarded(
            || {
                let mut p = load_diffusion::<WgpuBackend>(dir, &name, &device)?;
                p.set_kernels(kernels)?;
                Ok(Box::new(p))
            },
            &name,
        )
    }

    pub fn load_mode(dir: &Path, n: Option<usize>) -> Result<Box<dyn Policy>, PolicyError> {
        let (device, what) = select(n)?;
        guarded(
            || {
                let mut p = crate::mode::load::<WgpuBackend>(dir, &device)?;
                // burn's ops, its matmuls riptide's exact kernel (wgpu has no burn-fusion here, so
                // `--kernels` has no other path to choose).
                p.set_backend_name(format!("wgpu: {what}, {}", crate::matmul::MODEL_KERNELS));
                Ok(Box::new(p))
            },
            &format!("wgpu: {what}"),
        )
    }

    /// Drive a future that completes without an executor (wgpu's adapter enumeration on native targets).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::sync::Arc;
        use std::task::{Context, Poll, Wake};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(v) => return v,
                Poll::Pending => std::thread::park(),
            }
        }
    }
}

#[cfg(not(feature = "wgpu"))]
mod imp {
    use super::*;

    fn not_built() -> PolicyError {
        PolicyError::Device(
            "this riptide was built without wgpu support; rebuild with `cargo build --release --features wgpu` \
             (or `--features cuda,wgpu`), or run with --device cpu"
                .into(),
        )
    }

    pub fn adapters() -> Vec<Adapter> {
        Vec::new()
    }

    pub fn load(_dir: &Path, _n: Option<usize>, _kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
        Err(not_built())
    }

    pub fn load_mode(_dir: &Path, _n: Option<usize>) -> Result<Box<dyn Policy>, PolicyError> {
        Err(not_built())
    }
}

/// The wgpu adapters this build can see (empty without the `wgpu` feature), in `wgpu:N` order.
pub fn adapters() -> Vec<Adapter> {
    imp::adapters()
}

/// The burn device of `wgpu` / `wgpu:N` and a description of its adapter.
#[cfg(feature = "wgpu")]
pub fn select(n: Option<usize>) -> Result<(burn_wgpu::WgpuDevice, String), PolicyError> {
    imp::select(n)
}

pub(crate) fn load(dir: &Path, n: Option<usize>, kernels: Kernels) -> Result<Box<dyn Policy>, PolicyError> {
    imp::load(dir, n, kernels)
}

pub(crate) fn load_mode(dir: &Path, n: Option<usize>) -> Result<Box<dyn Policy>, PolicyError> {
    imp::load_mode(dir, n)
}
