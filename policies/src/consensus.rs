//! Consensus sampling: draw K chunks for one observation and keep their medoid.
//!
//! A diffusion policy's samples scatter around each mode of the action distribution; executing one
//! sample executes its scatter too. The medoid — the sample with the least summed distance to the
//! others — lies in the densest region of the K draws, so it stays inside one mode (an average of
//! samples from two modes would fall between them) while shedding most of the scatter. The distance
//! is taken over the actions that will be executed, in the model's normalised space.

use crate::error::PolicyError;
use crate::tensor::HostTensor;

/// Most candidates a request may ask for: the cost is K denoiser rows per evaluation.
pub const MAX_CANDIDATES: usize = 64;

/// Checks a requested candidate count; returns K (1 when none was asked for).
pub fn candidates(requested: Option<usize>) -> Result<usize, PolicyError> {
    match requested {
        None => Ok(1),
        Some(k) if (1..=MAX_CANDIDATES).contains(&k) => Ok(k),
        Some(k) => Err(PolicyError::Config(format!(
            "candidates = {k}: expected 1 to {MAX_CANDIDATES} samples per observation"
        ))),
    }
}

/// Index of the medoid of `k` chunks `rows` ([k, horizon, action_dim] flattened), measured over
/// timesteps `steps`. Ties go to the lower index.
pub fn medoid(rows: &[f32], k: usize, horizon: usize, action_dim: usize, steps: std::ops::Range<usize>) -> usize {
    let per = horizon * action_dim;
    let slice = |i: usize| &rows[i * per + steps.start * action_dim..i * per + steps.end * action_dim];
    let mut cost = vec![0.0f64; k];
    for i in 0..k {
        for j in i + 1..k {
            let d = slice(i)
                .iter()
                .zip(slice(j))
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            cost[i] += d;
            cost[j] += d;
        }
    }
    (0..k).fold(0, |best, i| if cost[i] < cost[best] { i } else { best })
}

/// Keeps each observation's medoid of `cands` [batch·k, horizon, action_dim] (rows `b·k .. b·k + k`
/// belong to observation b), returning [batch, horizon, action_dim] and the picked indices.
pub fn select_medoids(cands: &HostTensor, k: usize, steps: std::ops::Range<usize>) -> (HostTensor, Vec<usize>) {
    let (rows, horizon, action_dim) = (cands.shape[0], cands.shape[1], cands.shape[2]);
    let per = horizon * action_dim;
    let batch = rows / k;
    let steps = steps.start.min(horizon)..steps.end.min(horizon);
    let mut data = Vec::with_capacity(batch * per);
    let mut picks = Vec::with_capacity(batch);
    for b in 0..batch {
        let group = &cands.data[b * k * per..(b + 1) * k * per];
        let pick = medoid(group, k, horizon, action_dim, steps.clone());
        data.extend_from_slice(&group[pick * per..(pick + 1) * per]);
        picks.push(pick);
    }
    (
        HostTensor {
            shape: vec![batch, horizon, action_dim],
            data,
        },
        picks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(v: &[f32]) -> Vec<f32> {
        // horizon 2, action_dim 1
        v.to_vec()
    }

    #[test]
    fn medoid_is_the_point_with_least_summed_distance() {
        // Three points on a line at 0, 1, 10 (over both timesteps): sums 11, 10, 19 → index 1.
        let rows: Vec<f32> = [chunk(&[0.0, 0.0]), chunk(&[1.0, 1.0]), chunk(&[10.0, 10.0])].concat();
        assert_eq!(medoid(&rows, 3, 2, 1, 0..2), 1);
        // Measured over timestep 1 only, where the third point sits at the cluster's centre.
        let rows: Vec<f32> = [chunk(&[0.0, -1.0]), chunk(&[0.0, 1.0]), chunk(&[99.0, 0.0])].concat();
        assert_eq!(medoid(&rows, 3, 2, 1, 1..2), 2);
        assert_eq!(medoid(&rows, 3, 2, 1, 0..2), 0);
    }

    #[test]
    fn a_bimodal_draw_keeps_a_member_of_the_larger_mode_not_the_mean() {
        // Four samples near +1, three near −1: the mean (≈ 0.14) is no sample; the medoid is one at +1.
        let vals = [1.0, 1.1, 0.9, 1.05, -1.0, -0.95, -1.05];
        let rows: Vec<f32> = vals.iter().flat_map(|&v| [v, v]).collect();
        let i = medoid(&rows, vals.len(), 2, 1, 0..2);
        assert!(vals[i] > 0.8, "picked {}", vals[i]);
    }

    #[test]
    fn selection_is_per_observation_and_keeps_whole_chunks() {
        let k = 3;
        // Observation 0: medoid index 1; observation 1: medoid index 0.
        let data: Vec<f32> = [[0.0, 5.0], [1.0, 6.0], [3.0, 7.0], [2.0, 2.0], [2.5, 2.5], [-9.0, -9.0]].concat();
        let t = HostTensor {
            shape: vec![2 * k, 2, 1],
            data,
        };
        let (out, picks) = select_medoids(&t, k, 0..2);
        assert_eq!(picks, vec![1, 0]);
        assert_eq!(out.shape, vec![2, 2, 1]);
        assert_eq!(out.data, vec![1.0, 6.0, 2.0, 2.0]);
        // One candidate is the identity.
        let (same, _) = select_medoids(&t, 1, 0..2);
        assert_eq!(same.data, t.data);
    }

    #[test]
    fn candidate_counts_out_of_range_are_config_errors() {
        assert_eq!(candidates(None).unwrap(), 1);
        assert_eq!(candidates(Some(8)).unwrap(), 8);
        for bad in [0, MAX_CANDIDATES + 1] {
            let e = candidates(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("candidates"), "{e}");
        }
    }
}
