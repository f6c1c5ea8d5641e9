//! Where the GPU backends keep compiled kernels and autotune results across processes
//! (`kernel_cache`, `--kernel-cache DIR|off`), so a restarted daemon does not compile them again.
//!
//! cubecl reads its configuration once per process, on first GPU use; [`configure`] sets it in code
//! before that (no `cubecl.toml` needed, and autotune results no longer land in the nearest `target/`).
//! cubecl 0.10 persists compiled kernels for CUDA (PTX from NVRTC); wgpu compiles its WGSL at start-up
//! either way, and keeps only autotune results.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::PolicyError;

/// The kernel cache of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCache {
    /// Nothing persists: autotune results go to a directory of this process's own, removed by nobody but
    /// the OS's temporary-file cleaning.
    Off,
    Dir(PathBuf),
}

impl KernelCache {
    /// `$XDG_CACHE_HOME/riptide/kernels`, else `~/.cache/riptide/kernels`.
    pub fn default_dir() -> PathBuf {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("riptide").join("kernels")
    }

    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Off => None,
            Self::Dir(d) => Some(d),
        }
    }
}

impl Default for KernelCache {
    fn default() -> Self {
        Self::Dir(Self::default_dir())
    }
}

impl FromStr for KernelCache {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "" => Err(PolicyError::Config(
                "kernel_cache is empty: give a directory, or off".into(),
            )),
            d => Ok(Self::Dir(PathBuf::from(d))),
        }
    }
}

impl fmt::Display for KernelCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod imp {
    use burn_cubecl::cubecl::config::cache::CacheConfig;
    use burn_cubecl::cubecl::config::CubeClRuntimeConfig;
    use burn_cubecl::cubecl::config::RuntimeConfig;

    use super::*;

    pub type Config = CubeClRuntimeConfig;

    pub fn configure(cache: &KernelCache, tweak: impl FnOnce(&mut Config)) -> Result<bool, PolicyError> {
        let dir = match cache {
            KernelCache::Dir(d) => d.clone(),
            KernelCache::Off => std::env::temp_dir().join(format!("riptide-kernels-{}", std::process::id())),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            PolicyError::Config(format!(
                "kernel cache {}: cannot create it ({e}); give another with --kernel-cache DIR, or off",
                dir.display()
            ))
        })?;
        let mut config = Config::default();
        if let KernelCache::Dir(_) = cache {
            config.compilation.cache = Some(CacheConfig::File(dir.join("compiled")));
        }
        config.autotune.cache = CacheConfig::File(dir.join("autotune"));
        tweak(&mut config);
        let mut state = Config::storage().lock();
        if state.is_some() {
            // The GPU backend started first and read its defaults: keep them, say so.
            return Ok(false);
        }
        *state = Some(std::sync::Arc::new(config));
        Ok(true)
    }

    pub fn log_launches(config: &mut Config) {
        config.profiling = toml::from_str("[logger]\nlevel = \"minimal\"\nlog = \"info\"\n")
            .expect("cubecl's profiling config parses");
    }
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
mod imp {
    use super::*;

    /// No GPU backend in this build: nothing to configure.
    pub type Config = ();

    pub fn configure(_cache: &KernelCache, _tweak: impl FnOnce(&mut Config)) -> Result<bool, PolicyError> {
        Ok(false)
    }

    pub fn log_launches(_config: &mut Config) {}
}

pub use imp::Config;

/// Make cubecl report every kernel launch as a `log` record `Executing <kernel>` (for [`configure_with`]:
/// tests count launches with it; cubecl's runtime sends them from its logging task, in launch order).
pub fn log_launches(config: &mut Config) {
    imp::log_launches(config)
}

/// Set this process's kernel cache before any GPU use. Returns false when a GPU backend had already
/// started (its defaults stay: cubecl reads its configuration once) or the build has no GPU backend.
pub fn configure(cache: &KernelCache) -> Result<bool, PolicyError> {
    imp::configure(cache, |_| {})
}

/// [`configure`], with a last change to cubecl's configuration (tests turn on its launch log with this).
pub fn configure_with(cache: &KernelCache, tweak: impl FnOnce(&mut Config)) -> Result<bool, PolicyError> {
    imp::configure(cache, tweak)
}
