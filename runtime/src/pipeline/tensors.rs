//! Observation windows and sampling requests from host tensors: a safetensors inputs file laid out
//! as `riptide infer --inputs` takes it (observations `[batch, n_obs_steps, ...]`, optional `noise`
//! and `noise.step.K`), and random windows for warm-up and benchmarks.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::{FeatureKind, HostTensor, ObservationWindow, Policy, SampleRequest};

/// Split an inputs file into the observation window and the sampler's noise.
pub fn request_from_tensors(
    spec: &riptide_policies::PolicySpec,
    mut tensors: BTreeMap<String, HostTensor>,
    seed: Option<u64>,
) -> Result<(ObservationWindow, SampleRequest)> {
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        let t = tensors.remove(&f.name).with_context(|| {
            format!(
                "the inputs file lacks {:?} (shape [batch, {}, {}]); the policy needs: {}",
                f.name,
                spec.n_obs_steps,
                f.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                spec.inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        obs.features.insert(f.name.clone(), t);
    }
    let mut req = SampleRequest {
        seed,
        initial_noise: tensors.remove("noise"),
        ..Default::default()
    };
    for (k, v) in std::mem::take(&mut tensors) {
        if let Some(i) = k.strip_prefix("noise.step.") {
            let i: usize = i
                .parse()
                .with_context(|| format!("tensor {k:?}: expected noise.step.<integer>"))?;
            req.step_noise.insert(i, v);
        } else {
            tensors.insert(k, v);
        }
    }
    if !tensors.is_empty() {
        tracing::warn!(
            "ignoring tensors the policy does not use: {}",
            tensors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok((obs, req))
}

/// Random observations that fit the policy (uniform in a plausible range; images in [0, 1]).
pub fn random_window(policy: &dyn Policy, batch: usize, seed: u64) -> ObservationWindow {
    random_window_for(policy.spec(), batch, seed)
}

/// [`random_window`] from a spec.
pub fn random_window_for(spec: &riptide_policies::PolicySpec, batch: usize, seed: u64) -> ObservationWindow {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        let mut shape = vec![batch, spec.n_obs_steps];
        shape.extend(&f.shape);
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                if f.kind == FeatureKind::Visual {
                    rng.random::<f32>()
                } else {
                    rng.random_range(-1.0..1.0)
                }
            })
            .collect();
        obs.features.insert(f.name.clone(), HostTensor { shape, data });
    }
    obs
}
