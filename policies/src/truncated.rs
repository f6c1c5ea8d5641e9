//! Truncated diffusion with anchors (DiffusionDrive, Liao et al. 2025; user guide: docs/policies.md,
//! "Kinds"), on the diffusion policy's U-Net: k-means over the training action chunks gives `K` anchors (stored with the
//! checkpoint); training noises the anchor nearest to the demonstration only up to a small timestep
//! and asks the U-Net for the demonstration itself (prediction type "sample"); a score head on the
//! observation conditioning learns which anchor's mode applies. Inference noises every anchor to the
//! truncation step, denoises all of them in one batch in two DDIM steps, and the score head picks one.
//!
//! Differences from DiffusionDrive, on purpose: the decoder is the U-Net (no BEV cross-attention), the
//! score head sees the observation only (one logit per anchor), the noise level the model is told is
//! the one the anchors were noised to (DiffusionDrive tells its decoder 10 while noising to 8), and the
//! output is the scheduler's final sample (which, with x0 prediction, is the last x0 estimate).

use std::collections::BTreeMap;
use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::mish;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;
use crate::tensor::{read_safetensors, write_safetensors, HostTensor};

/// How the score head's logits choose the executed candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSelect {
    /// The most likely anchor (DiffusionDrive).
    #[default]
    Argmax,
    /// Draw an anchor from softmax(logits) with the request's seed (covers every mode in proportion).
    Sample,
}

/// What `riptide.json` says about a truncated-diffusion checkpoint (kind "truncated").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruncatedSampling {
    /// Anchors are noised to this training timestep before denoising.
    pub trunc_timestep: usize,
    /// Denoising timesteps, descending, starting at `trunc_timestep` (two by default).
    pub timesteps: Vec<usize>,
    pub n_anchors: usize,
    #[serde(default)]
    pub select: ModeSelect,
}

impl TruncatedSampling {
    pub fn new(trunc_timestep: usize, n_anchors: usize) -> Self {
        Self {
            trunc_timestep,
            timesteps: vec![trunc_timestep, trunc_timestep / 2],
            n_anchors,
            select: ModeSelect::Argmax,
        }
    }
}

/// Observation conditioning → one logit per anchor.
#[derive(Module, Debug)]
pub struct ScoreHead<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> ScoreHead<B> {
    pub fn new(cond_dim: usize, hidden: usize, n_anchors: usize, device: &B::Device) -> Self {
        Self {
            fc1: LinearConfig::new(cond_dim, hidden).init(device),
            fc2: LinearConfig::new(hidden, n_anchors).init(device),
        }
    }

    /// Logits [B, K] from the global conditioning [B, G].
    pub fn forward(&self, global_cond: Tensor<B, 2>) -> Tensor<B, 2> {
        self.fc2.forward(mish(self.fc1.forward(global_cond)))
    }

    fn tensors(&self) -> BTreeMap<String, HostTensor> {
        let mut m = BTreeMap::new();
        let host = |t: Tensor<B, 2>| crate::sampler::to_host(t);
        let host1 = |t: Tensor<B, 1>| crate::sampler::to_host(t);
        m.insert("score_head.fc1.weight".into(), host(self.fc1.weight.val()));
        m.insert("score_head.fc2.weight".into(), host(self.fc2.weight.val()));
        if let Some(b) = &self.fc1.bias {
            m.insert("score_head.fc1.bias".into(), host1(b.val()));
        }
        if let Some(b) = &self.fc2.bias {
            m.insert("score_head.fc2.bias".into(), host1(b.val()));
        }
        m
    }
}

/// The anchors and score head of a loaded truncated-diffusion policy.
#[derive(Debug, Clone)]
pub struct TruncatedParts<B: Backend> {
    pub sampling: TruncatedSampling,
    /// Normalised anchors, [K, H, A].
    pub anchors: HostTensor,
    pub score_head: ScoreHead<B>,
}

pub const PARTS_FILE: &str = "truncated.safetensors";

/// Write the anchors and score head next to the U-Net's weights.
pub fn save_parts<B: Backend>(dir: &Path, anchors: &HostTensor, head: &ScoreHead<B>) -> Result<(), PolicyError> {
    let mut m = head.tensors();
    m.insert("anchors".into(), anchors.clone());
    write_safetensors(&dir.join(PARTS_FILE), &m)
}

/// Read `truncated.safetensors`; a missing or misshapen tensor is an error that names it.
pub fn load_parts<B: Backend>(
    dir: &Path,
    sampling: TruncatedSampling,
    cond_dim: usize,
    horizon: usize,
    action_dim: usize,
    device: &B::Device,
) -> Result<TruncatedParts<B>, PolicyError> {
    let path = dir.join(PARTS_FILE);
    let mut m = read_safetensors(&path)?;
    let k = sampling.n_anchors;
    let anchors = take(&mut m, &path, "anchors", Some(vec![k, horizon, action_dim]))?;
    // The score head's hidden width is whatever was trained: read it from its first weight.
    let w1 = take(&mut m, &path, "score_head.fc1.weight", None)?;
    let hidden = w1.shape.get(1).copied().unwrap_or(0);
    if w1.shape != [cond_dim, hidden] || hidden == 0 {
        return Err(PolicyError::Config(format!(
            "{}: score_head.fc1.weight has shape {:?}, expected [{cond_dim}, hidden]",
            path.display(),
            w1.shape
        )));
    }
    let b1 = take(&mut m, &path, "score_head.fc1.bias", Some(vec![hidden]))?;
    let w2 = take(&mut m, &path, "score_head.fc2.weight", Some(vec![hidden, k]))?;
    let b2 = take(&mut m, &path, "score_head.fc2.bias", Some(vec![k]))?;
    if !m.is_empty() {
        return Err(PolicyError::Config(format!(
            "{}: unexpected tensors {:?}",
            path.display(),
            m.keys().collect::<Vec<_>>()
        )));
    }
    let mut head = ScoreHead::<B>::new(cond_dim, hidden, k, device);
    head.fc1.weight = head.fc1.weight.map(|_| crate::sampler::to_device(&w1, device));
    head.fc1.bias = head.fc1.bias.map(|b| b.map(|_| crate::sampler::to_device(&b1, device)));
    head.fc2.weight = head.fc2.weight.map(|_| crate::sampler::to_device(&w2, device));
    head.fc2.bias = head.fc2.bias.map(|b| b.map(|_| crate::sampler::to_device(&b2, device)));
    Ok(TruncatedParts {
        sampling,
        anchors,
        score_head: head,
    })
}

fn take(
    m: &mut BTreeMap<String, HostTensor>,
    path: &Path,
    name: &str,
    shape: Option<Vec<usize>>,
) -> Result<HostTensor, PolicyError> {
    let t = m
        .remove(name)
        .ok_or_else(|| PolicyError::Config(format!("{}: missing tensor {name:?}", path.display())))?;
    match shape {
        Some(s) if t.shape != s => Err(PolicyError::Config(format!(
            "{}: {name:?} has shape {:?}, expected {s:?}",
            path.display(),
            t.shape
        ))),
        _ => Ok(t),
    }
}

/// Lloyd's k-means with k-means++ seeding (seeded), on row vectors `data` [n, d]. Returns [k, d]
/// centres; fewer distinct rows than `k` is an error.
pub fn kmeans(data: &[f32], d: usize, k: usize, iters: usize, seed: u64) -> Result<Vec<f32>, PolicyError> {
    let n = data.len() / d.max(1);
    if k == 0 || n < k {
        return Err(PolicyError::Input(format!(
            "k-means: {n} action chunks cannot give {k} anchors (record more episodes or lower n_anchors)"
        )));
    }
    let row = |i: usize| &data[i * d..(i + 1) * d];
    let dist = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centres: Vec<f32> = row(rng.random_range(0..n)).to_vec();
    let mut best: Vec<f32> = (0..n).map(|i| dist(row(i), &centres[..d])).collect();
    while centres.len() < k * d {
        let total: f64 = best.iter().map(|v| *v as f64).sum();
        if total <= 0.0 {
            return Err(PolicyError::Input(format!(
                "k-means: the action chunks have fewer than {k} distinct values; lower n_anchors"
            )));
        }
        let mut r = rng.random_range(0.0..total);
        let mut pick = n - 1;
        for (i, v) in best.iter().enumerate() {
            r -= *v as f64;
            if r <= 0.0 {
                pick = i;
                break;
            }
        }
        centres.extend_from_slice(row(pick));
        let c = centres.len() / d - 1;
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(dist(row(i), &centres[c * d..(c + 1) * d]));
        }
    }
    let mut assign = vec![0usize; n];
    for _ in 0..iters {
        let mut changed = false;
        for (i, slot) in assign.iter_mut().enumerate() {
            let a = nearest(row(i), &centres, d);
            changed |= a != *slot;
            *slot = a;
        }
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[assign[i]] += 1;
            for (j, v) in row(i).iter().enumerate() {
                sums[assign[i] * d + j] += *v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centres[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(centres)
}

/// Index of the centre nearest to `x` (squared L2).
pub fn nearest(x: &[f32], centres: &[f32], d: usize) -> usize {
    centres
        .chunks(d)
        .map(|c| c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_separated_clusters() {
        let mut data = Vec::new();
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..300 {
            let c = [(-1.0, -1.0), (1.0, 0.0), (0.0, 2.0)][i % 3];
            data.push(c.0 + rng.random_range(-0.1..0.1));
            data.push(c.1 + rng.random_range(-0.1..0.1));
        }
        let c = kmeans(&data, 2, 3, 50, 0).unwrap();
        for want in [[-1.0f32, -1.0], [1.0, 0.0], [0.0, 2.0]] {
            let i = nearest(&want, &c, 2);
            assert!(
                ((c[i * 2] - want[0]).abs() + (c[i * 2 + 1] - want[1]).abs()) < 0.05,
                "{c:?}"
            );
        }
        assert!(kmeans(&data[..4], 2, 3, 10, 0).is_err());
    }
}
