//! Coherent sampling: draw several candidate chunks for one observation in a single batched call and
//! execute the one that agrees best with the plan already under way.
//!
//! A diffusion policy samples each chunk afresh; when consecutive chunks come from different draws the
//! robot can change its mind at every chunk boundary (jerks, cutting corners, switching sides of an
//! obstacle). Bidirectional Decoding (Liu et al. 2024, "backward coherence") samples `n` candidates
//! and keeps the one closest to the previous chunk over their overlap. The previous chunk is aligned
//! as for RTI warm starts ([`crate::rti::shift_chunk`]: shifted by the number of actions executed
//! since it was made); only its real, unpadded actions are compared, in the policy's normalised
//! action space. Without a previous chunk (first chunk, after a reset) the medoid of the candidates
//! is kept: the one with the least total (Euclidean) distance to the others, a typical sample rather than an
//! outlier. All candidates share one denoising pass, so the cost is one batched inference.

use crate::error::PolicyError;
use crate::policy::{ActionChunk, ObservationWindow, Policy, SampleRequest, StepHook};
use crate::tensor::HostTensor;

/// The previous chunk to stay coherent with.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// Its normalised actions ([`ActionChunk::actions_normalized`]), [1, H, A].
    pub actions_normalized: &'a HostTensor,
    /// Control periods since its observation (actions executed since it was made).
    pub shift: usize,
}

/// `obs` (batch 1) repeated `n` times along the batch.
fn repeat_batch(obs: &ObservationWindow, n: usize) -> Result<ObservationWindow, PolicyError> {
    let mut out = ObservationWindow::default();
    for (name, t) in &obs.features {
        if t.shape.first() != Some(&1) {
            return Err(PolicyError::Input(format!(
                "coherent sampling takes one observation (batch 1); {name} has shape {:?}",
                t.shape
            )));
        }
        let mut shape = t.shape.clone();
        shape[0] = n;
        let data = (0..n).flat_map(|_| t.data.iter().copied()).collect();
        out.features.insert(name.clone(), HostTensor { shape, data });
    }
    Ok(out)
}

/// Squared distance between rows `i` and `j` of `[n, H, A]` tensors `x` and `y` over the first `len`
/// horizon steps.
fn dist2(x: &HostTensor, i: usize, y: &HostTensor, j: usize, len: usize) -> f64 {
    let (h, a) = (x.shape[1], x.shape[2]);
    let xi = &x.data[i * h * a..i * h * a + len * a];
    let yj = &y.data[j * h * a..j * h * a + len * a];
    xi.iter().zip(yj).map(|(p, q)| ((p - q) as f64).powi(2)).sum()
}

/// Which of the `n` candidates (rows of `cands`, [n, H, A], normalised) to keep: the closest to
/// `previous` over its unpadded overlap, or the medoid when there is none (or nothing overlaps).
pub fn pick(cands: &HostTensor, previous: Option<Previous<'_>>) -> usize {
    let (n, h) = (cands.shape[0], cands.shape[1]);
    let argmin = |score: &dyn Fn(usize) -> f64| {
        (0..n)
            .map(|i| (i, score(i)))
            .fold(
                (0, f64::INFINITY),
                |best, (i, s)| if s < best.1 { (i, s) } else { best },
            )
            .0
    };
    if let Some(p) = previous {
        let shape_ok = p.actions_normalized.shape.len() == 3
            && p.actions_normalized.shape[1..] == cands.shape[1..]
            && p.actions_normalized.shape[0] >= 1;
        if shape_ok && p.shift < h {
            let prev = p.actions_normalized;
            // Candidate step k is the previous chunk's step k + shift.
            let shifted = crate::rti::shift_chunk(&prev.narrow(0, 0, 1), p.shift).expect("shift < H");
            let len = h - p.shift;
            return argmin(&|i| dist2(cands, i, &shifted, 0, len));
        }
    }
    argmin(&|i| (0..n).map(|j| dist2(cands, i, cands, j, h).sqrt()).sum())
}

/// [`Policy::predict`] with `n` candidates for the single observation `obs`, keeping the one [`pick`]
/// chooses. `n = 1` is a plain `predict`. The returned chunk has batch 1 and the call's metadata (its
/// NFE counts batched passes, which is what the `n` candidates cost on a parallel device).
pub fn predict_coherent(
    policy: &mut dyn Policy,
    obs: &ObservationWindow,
    req: &SampleRequest,
    hook: Option<&mut dyn StepHook>,
    n: usize,
    previous: Option<Previous<'_>>,
) -> Result<ActionChunk, PolicyError> {
    if n <= 1 {
        return policy.predict(obs, req, hook);
    }
    if req.warm_start.is_some() || req.initial_noise.is_some() || !req.step_noise.is_empty() {
        return Err(PolicyError::Config(
            "coherent sampling draws its own candidates: it does not combine with RTI warm starts or supplied noise"
                .into(),
        ));
    }
    let batch = repeat_batch(obs, n)?;
    let chunk = policy.predict(&batch, req, hook)?;
    let i = pick(&chunk.actions_normalized, previous);
    Ok(ActionChunk {
        actions: chunk.actions.narrow(0, i, 1),
        actions_normalized: chunk.actions_normalized.narrow(0, i, 1),
        ..chunk
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(rows: &[&[f32]]) -> HostTensor {
        let h = rows[0].len();
        HostTensor {
            shape: vec![rows.len(), h, 1],
            data: rows.iter().flat_map(|r| r.iter().copied()).collect(),
        }
    }

    #[test]
    fn keeps_the_candidate_that_continues_the_previous_plan() {
        // The previous plan climbs 0, 1, …, 5; two actions were executed since, so the new chunk
        // should start at 2, 3, 4, 5 (the last two slots are padding and are not compared).
        let prev = chunk(&[&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]);
        let cands = chunk(&[
            &[2.0, 1.0, 0.0, -1.0, -2.0, -3.0], // turns back
            &[2.1, 3.1, 3.9, 5.2, 9.0, 9.0],    // continues (differs only in the padded tail)
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],    // repeats the old chunk without the shift
        ]);
        let p = Previous {
            actions_normalized: &prev,
            shift: 2,
        };
        assert_eq!(pick(&cands, Some(p)), 1);
        // With shift 0 the unshifted copy matches exactly.
        assert_eq!(pick(&cands, Some(Previous { shift: 0, ..p })), 2);
    }

    #[test]
    fn without_a_previous_chunk_the_medoid_is_kept() {
        let cands = chunk(&[&[0.0, 0.0], &[1.0, 1.0], &[1.1, 1.1], &[0.9, 0.9], &[8.0, 8.0]]);
        assert_eq!(pick(&cands, None), 1);
        // A previous chunk whose shift leaves nothing to compare falls back to the medoid too.
        let prev = chunk(&[&[5.0, 5.0]]);
        let p = Previous {
            actions_normalized: &prev,
            shift: 2,
        };
        assert_eq!(pick(&cands, Some(p)), 1);
    }
}
