//! Simulations: physics invariants, determinism, experts, recording, the EADP model.
//!
//! One test binary per crate: the test files are modules of it, so cargo links one binary instead of
//! one per file, and the long tests of one file run beside the short ones of the others.

mod determinism;
mod eadp_model;
mod env_state_layouts;
mod experts;
mod physics;
mod record;
