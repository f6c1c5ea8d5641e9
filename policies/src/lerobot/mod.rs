//! LeRobot's `DiffusionPolicy`, weight-compatible with its `pretrained_model/` checkpoints.

pub mod config;
pub mod fused;
pub mod host_unet;
pub mod loader;
pub mod model;
pub mod rgb;
pub mod unet;

pub use config::DiffusionConfig;
pub use loader::{load_diffusion, read_config, CheckpointFiles};
pub use model::{ConsistencySampling, DiffusionModel, DiffusionPolicy};
