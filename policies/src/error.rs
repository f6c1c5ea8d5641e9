//! Errors of the policies crate. Every message says what is wrong and, where it can, how to fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint config: {0}")]
    Config(String),
    #[error("checkpoint weights do not match the model built from config.json:\n{0}")]
    Weights(String),
    #[error("normalization stats: {0}")]
    Stats(String),
    #[error("bad input: {0}")]
    Input(String),
    #[error("device: {0}")]
    Device(String),
    #[error("safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
}

impl PolicyError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Run `load`, turning a panic of a GPU runtime (burn-cuda and cubecl panic when a device cannot be opened) into
/// a device error: `fail(why)` says what to do about it. No device may take the daemon down.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) fn catch_device_panic<T>(
    load: impl FnOnce() -> Result<T, PolicyError>,
    fail: impl FnOnce(&str) -> String,
) -> Result<T, PolicyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
        .unwrap_or_else(|panic| Err(PolicyError::Device(fail(panic_text(panic.as_ref())))))
}

/// What a GPU runtime's panic said.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("the GPU runtime panicked")
}
