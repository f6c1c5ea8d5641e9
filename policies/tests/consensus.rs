//! Consensus sampling (`riptide_policies::consensus`) through the real policies on the committed
//! LeRobot fixtures: K candidates in one batch are the same chunks K separate inferences produce from
//! the same noise, and the one returned is their medoid, recomputed here by hand; the checkpoint
//! default in riptide.json; and the requests it refuses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use riptide_policies::backend::FlexBackend;
use riptide_policies::lerobot::load_diffusion;
use riptide_policies::rti::{RtiConfig, WarmStart};
use riptide_policies::sampler::NoiseSource;
use riptide_policies::{read_safetensors, HostTensor, ObservationWindow, Policy, SampleRequest};

type B = FlexBackend;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/lerobot")
        .join(name)
}

fn obs(dir: &Path) -> ObservationWindow {
    let mut inputs = read_safetensors(&dir.join("inputs.safetensors")).unwrap();
    inputs.remove("noise");
    ObservationWindow { features: inputs }
}

/// Rows `b·k + j` of `t` for every observation b: candidate j's noise as a plain batch.
fn rows_of(t: &HostTensor, k: usize, j: usize) -> HostTensor {
    let per: usize = t.shape[1..].iter().product();
    let batch = t.shape[0] / k;
    let mut data = Vec::new();
    for b in 0..batch {
        let r = b * k + j;
        data.extend_from_slice(&t.data[r * per..(r + 1) * per]);
    }
    HostTensor {
        shape: [vec![batch], t.shape[1..].to_vec()].concat(),
        data,
    }
}

/// Index with the least summed Euclidean distance to the others over timesteps `steps`.
fn medoid_by_hand(chunks: &[Vec<f32>], action_dim: usize, steps: std::ops::Range<usize>) -> usize {
    let cut = |c: &Vec<f32>| c[steps.start * action_dim..steps.end * action_dim].to_vec();
    let cost: Vec<f64> = chunks
        .iter()
        .map(|a| {
            chunks
                .iter()
                .map(|b| {
                    cut(a)
                        .iter()
                        .zip(cut(b))
                        .map(|(x, y)| ((x - y) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .sum()
        })
        .collect();
    (0..chunks.len()).min_by(|&i, &j| cost[i].total_cmp(&cost[j])).unwrap()
}

fn check_batched_candidates_are_separate_samples_and_the_medoid_is_kept(name: &str) {
    let dir = fixture(name);
    let mut policy = load_diffusion::<B>(&dir, "cpu", &Default::default()).unwrap();
    let obs = obs(&dir);
    let spec = policy.spec().clone();
    let batch = obs.validate(&spec).unwrap();
    let (k, h, a) = (6, spec.horizon, spec.action_dim);
    let steps = policy.schedule().nfe();
    // All randomness supplied: initial noise and per-step (DDPM) noise for the K·batch rows.
    let mut src = NoiseSource::new(7);
    let x_t = src.draw([batch * k, h, a]);
    let step_noise: BTreeMap<usize, HostTensor> = (0..steps).map(|s| (s, src.draw([batch * k, h, a]))).collect();
    let req = SampleRequest {
        seed: Some(1),
        initial_noise: Some(x_t.clone()),
        step_noise: step_noise.clone(),
        candidates: Some(k),
        ..Default::default()
    };
    let chunk = policy.predict(&obs, &req, None).unwrap();
    assert_eq!(chunk.actions_normalized.shape, vec![batch, h, a]);
    // The reference: K single-sample inferences, candidate j from rows b·K + j of the same noise.
    let singles: Vec<HostTensor> = (0..k)
        .map(|j| {
            let r = SampleRequest {
                seed: Some(1),
                initial_noise: Some(rows_of(&x_t, k, j)),
                step_noise: step_noise.iter().map(|(s, n)| (*s, rows_of(n, k, j))).collect(),
                ..Default::default()
            };
            policy.predict(&obs, &r, None).unwrap().actions_normalized
        })
        .collect();
    let per = h * a;
    let exec = spec.exec_start..spec.exec_start + spec.n_action_steps;
    for b in 0..batch {
        let cands: Vec<Vec<f32>> = singles
            .iter()
            .map(|s| s.data[b * per..(b + 1) * per].to_vec())
            .collect();
        // The candidates really differ, so picking the medoid is a real choice.
        let spread = cands[0]
            .iter()
            .zip(&cands[1])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(spread > 1e-2, "{name}: candidates 0 and 1 differ by only {spread}");
        let pick = medoid_by_hand(&cands, a, exec.clone());
        let got = &chunk.actions_normalized.data[b * per..(b + 1) * per];
        let err = got
            .iter()
            .zip(&cands[pick])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(
            err < 1e-4,
            "{name}: observation {b}: returned chunk is {err} from candidate {pick}"
        );
    }
}

#[test]
fn batched_candidates_equal_separate_samples_and_the_medoid_is_kept_ddim() {
    check_batched_candidates_are_separate_samples_and_the_medoid_is_kept("state_env_ddim_eps");
}

#[test]
fn batched_candidates_equal_separate_samples_and_the_medoid_is_kept_ddpm() {
    check_batched_candidates_are_separate_samples_and_the_medoid_is_kept("state_env_ddpm_eps");
}

/// A copy of checkpoint `dir` with `riptide.json` = `sidecar`.
fn with_sidecar(dir: &Path, sidecar: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    std::fs::write(tmp.path().join("riptide.json"), sidecar).unwrap();
    tmp
}

#[test]
fn the_checkpoints_default_applies_to_cold_starts_and_requests_override_it() {
    let name = "state_env_ddim_eps";
    let tmp = with_sidecar(
        &fixture(name),
        r#"{"format": 1, "kind": "diffusion", "sampling": {"candidates": 4}}"#,
    );
    let mut with_default = load_diffusion::<B>(tmp.path(), "cpu", &Default::default()).unwrap();
    let mut plain = load_diffusion::<B>(&fixture(name), "cpu", &Default::default()).unwrap();
    assert_eq!(with_default.spec().default_candidates, 4);
    assert_eq!(plain.spec().default_candidates, 1);
    let obs = obs(&fixture(name));
    let seeded = |k: Option<usize>| SampleRequest {
        seed: Some(3),
        candidates: k,
        ..Default::default()
    };
    let default_run = with_default.predict(&obs, &seeded(None), None).unwrap().actions;
    let asked_for_4 = plain.predict(&obs, &seeded(Some(4)), None).unwrap().actions;
    let one = plain.predict(&obs, &seeded(None), None).unwrap().actions;
    let forced_one = with_default.predict(&obs, &seeded(Some(1)), None).unwrap().actions;
    assert!(default_run.max_abs_diff(&asked_for_4).unwrap() < 1e-6);
    assert!(forced_one.max_abs_diff(&one).unwrap() < 1e-6);
    assert!(
        default_run.max_abs_diff(&one).unwrap() > 1e-3,
        "the default changed nothing"
    );
    // A warm start cannot take candidates: the default steps aside, an explicit request is refused.
    let warm = |k: Option<usize>| SampleRequest {
        seed: Some(3),
        candidates: k,
        warm_start: Some(WarmStart {
            config: RtiConfig::new(8),
            previous: None,
        }),
        ..Default::default()
    };
    with_default.predict(&obs, &warm(None), None).unwrap();
    let e = with_default
        .predict(&obs, &warm(Some(4)), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("warm starts"), "{e}");
}

#[test]
fn bad_candidate_settings_are_named_errors() {
    let name = "state_env_ddim_eps";
    for (sidecar, want) in [
        (
            r#"{"kind": "diffusion", "sampling": {"candidates": 0}}"#,
            "candidates = 0",
        ),
        (
            r#"{"kind": "diffusion", "sampling": {"candidate": 4}}"#,
            "unknown field `candidate`",
        ),
    ] {
        let tmp = with_sidecar(&fixture(name), sidecar);
        let e = load_diffusion::<B>(tmp.path(), "cpu", &Default::default())
            .err()
            .expect("a bad sampling section loads")
            .to_string();
        assert!(e.contains("riptide.json: sampling") && e.contains(want), "{e}");
    }
    // Truncated diffusion picks among anchors with its score head: a candidates default is refused.
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shipped/arm-reach-truncated");
    let mut sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("riptide.json")).unwrap()).unwrap();
    sidecar["sampling"] = serde_json::json!({"candidates": 4});
    let tmp = with_sidecar(&shipped, &sidecar.to_string());
    let e = load_diffusion::<B>(tmp.path(), "cpu", &Default::default())
        .err()
        .expect("a truncated policy with a candidates default loads")
        .to_string();
    assert!(e.contains("sampling") && e.contains("truncated"), "{e}");

    let mut plain = load_diffusion::<B>(&fixture(name), "cpu", &Default::default()).unwrap();
    let obs = obs(&fixture(name));
    let too_many = SampleRequest {
        candidates: Some(riptide_policies::consensus::MAX_CANDIDATES + 1),
        ..Default::default()
    };
    let e = plain.predict(&obs, &too_many, None).unwrap_err().to_string();
    assert!(e.contains("candidates"), "{e}");
    // Supplied noise must have a row per candidate.
    let short = SampleRequest {
        candidates: Some(3),
        initial_noise: Some(NoiseSource::new(0).draw([1, 16, 2])),
        ..Default::default()
    };
    let e = plain.predict(&obs, &short, None).unwrap_err().to_string();
    assert!(e.contains("initial noise") && e.contains("shape"), "{e}");
}
