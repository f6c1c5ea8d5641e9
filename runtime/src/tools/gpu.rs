//! The GPU knobs every inference command shares (`bench`, `infer`, `eval`): which kernels, which
//! precision, and where compiled kernels persist.

use anyhow::{Context, Result};
use riptide_policies::kernel_cache::{self, KernelCache};
use riptide_policies::{Kernels, LoadOptions, Precision};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GpuArgs {
    /// On GPU devices (cuda, wgpu): riptide's fused kernels, or burn's op by op (the baseline).
    #[arg(long, default_value = "fused")]
    pub kernels: Kernels,
    /// Numeric precision: f32 (exact f32 on every device; no reduced precision is offered).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Compiled kernels and autotune results across processes: a directory, or off
    /// (default `$XDG_CACHE_HOME/riptide/kernels`).
    #[arg(long)]
    pub kernel_cache: Option<KernelCache>,
}

impl GpuArgs {
    /// The cache these arguments name.
    pub fn cache(&self) -> KernelCache {
        self.kernel_cache.clone().unwrap_or_default()
    }

    /// Configure the kernel cache (before any GPU use) and the loader's options.
    pub fn apply(&self) -> Result<LoadOptions> {
        setup_kernel_cache(&self.cache())?;
        riptide_policies::backend::set_default_kernels(self.kernels);
        Ok(LoadOptions {
            kernels: self.kernels,
            ..LoadOptions::default()
        })
    }
}

/// Point cubecl's compiled-kernel and autotune caches at `cache` for this process.
pub fn setup_kernel_cache(cache: &KernelCache) -> Result<()> {
    let set = kernel_cache::configure(cache).context("kernel cache")?;
    if set {
        tracing::debug!(kernel_cache = %cache, "kernel cache");
    }
    Ok(())
}

/// Seconds since this process started (the OS's start time where it tells, else the first call).
pub fn since_process_start_s() -> f64 {
    static FIRST: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    if let Some(s) = linux_process_age_s() {
        return s;
    }
    FIRST.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
}

/// `/proc/uptime` minus the process's start time (`/proc/self/stat` field 22, in clock ticks).
fn linux_process_age_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = 100.0; // USER_HZ: 100 on every Linux ABI riptide targets.
    Some((uptime - start_ticks / hz).max(0.0))
}
