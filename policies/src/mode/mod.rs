//! MoDE — Mixture of Denoising Experts (Reuss et al., ICLR 2025) for state-vector observations.
//!
//! A diffusion transformer whose feed-forward layers are mixtures of SwiGLU experts routed by the
//! noise level only, wrapped in EDM preconditioning (σ_d = 0.5) and sampled with σ-space DDIM on an
//! exponential σ grid through the shared [`crate::sampler::sample`] loop. Because routing sees only σ,
//! each step's top-k experts are fused into one MLP once per policy and step count ([`MoDEPolicy`]'s
//! expert cache); the uncached path routes on every call and gives the same actions.

pub mod model;
pub mod policy;
pub mod train;

pub use model::{edm_scalings, exponential_sigmas, MoDE, MoDEConfig};
pub use policy::{load, load_named, named_tensors, ExpertPath, MoDEPolicy};
pub use train::{init_model, train_mode, untrained_policy, MoDETrainConfig, TrainRouting};
