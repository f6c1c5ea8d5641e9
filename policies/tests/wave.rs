//! Waves (`Policy::predict_wave`): rows of several streams due together, run as one batch where the
//! kind can. On the CPU backends each row of a wave is bitwise the chunk `predict` gives for it alone (same
//! seed), for every shipped kind and the LeRobot fixtures; a bad row only loses itself.

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::{
    load_policy, ActionChunk, FeatureKind, HostTensor, ObservationWindow, Policy, PolicySpec, SampleRequest, WaveRow,
};

fn dir(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One observation (batch 1) that fits `spec`, drawn from `seed`.
fn window(spec: &PolicySpec, seed: u64) -> ObservationWindow {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        let mut shape = vec![1, spec.n_obs_steps];
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

fn bits(t: &HostTensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

fn assert_same(name: &str, row: usize, wave: &ActionChunk, alone: &ActionChunk) {
    assert_eq!(wave.actions.shape, alone.actions.shape, "{name} row {row}");
    assert!(
        bits(&wave.actions) == bits(&alone.actions)
            && bits(&wave.actions_normalized) == bits(&alone.actions_normalized),
        "{name} row {row}: the wave's chunk differs from the row alone by {:e}",
        wave.actions.max_abs_diff(&alone.actions).unwrap_or(f32::NAN)
    );
    assert_eq!(
        (wave.meta.seed, wave.meta.nfe, wave.meta.warm_started),
        (alone.meta.seed, alone.meta.nfe, alone.meta.warm_started),
        "{name} row {row}: metadata"
    );
}

/// `rows` streams of batch 1 (plus one stream of batch 2), each with its own seed, in one wave and
/// alone; then the same wave with one row's window broken.
fn check(rel: &str, candidates: Option<usize>, steps: Option<usize>) {
    let mut policy: Box<dyn Policy> = load_policy(&dir(rel), "cpu".parse().unwrap()).unwrap();
    let spec = policy.spec().clone();
    let mut windows: Vec<ObservationWindow> = (0..5).map(|i| window(&spec, 10 + i)).collect();
    // A stream may itself hold several observations.
    let names: Vec<&str> = spec.inputs.iter().map(|f| f.name.as_str()).collect();
    let pair = ObservationWindow::concat([&windows[2], &windows[3]], &names).unwrap();
    windows.push(pair);
    let reqs: Vec<SampleRequest> = (0..windows.len())
        .map(|i| SampleRequest {
            seed: Some(1000 + i as u64),
            candidates,
            num_inference_steps: steps,
            ..Default::default()
        })
        .collect();
    let alone: Vec<ActionChunk> = windows
        .iter()
        .zip(&reqs)
        .map(|(w, r)| policy.predict(w, r, None).unwrap())
        .collect();
    let rows: Vec<WaveRow<'_>> = windows
        .iter()
        .zip(&reqs)
        .map(|(obs, req)| WaveRow { obs, req })
        .collect();
    let wave = policy.predict_wave(&rows);
    assert_eq!(wave.len(), rows.len());
    for (i, (w, a)) in wave.iter().zip(&alone).enumerate() {
        assert_same(rel, i, w.as_ref().unwrap(), a);
    }
    // Rows really differ (different seeds and windows), so equality is not trivial.
    assert!(
        bits(&alone[0].actions) != bits(&alone[1].actions),
        "{rel}: rows 0 and 1 are equal"
    );

    // A NaN in one stream's window: that row fails with the policy's message, the others are unchanged.
    let mut broken = windows.clone();
    let first = spec.inputs[0].name.clone();
    broken[2].features.get_mut(&first).unwrap().data[0] = f32::NAN;
    let rows: Vec<WaveRow<'_>> = broken
        .iter()
        .zip(&reqs)
        .map(|(obs, req)| WaveRow { obs, req })
        .collect();
    let wave = policy.predict_wave(&rows);
    for (i, (w, a)) in wave.iter().zip(&alone).enumerate() {
        match (i, w) {
            (2, Err(e)) => assert!(e.to_string().contains("non-finite"), "{rel}: {e}"),
            (2, Ok(_)) => panic!("{rel}: the broken row was answered"),
            (_, w) => assert_same(rel, i, w.as_ref().unwrap(), a),
        }
    }
}

#[test]
fn wave_rows_equal_rows_alone_ddim_fixture() {
    check("../tests/fixtures/lerobot/state_env_ddim_eps", None, None);
}

#[test]
fn wave_rows_equal_rows_alone_ddpm_fixture() {
    // DDPM draws fresh noise every step: each row's comes from its own seed.
    check("../tests/fixtures/lerobot/state_env_ddpm_eps", None, Some(20));
}

#[test]
fn wave_rows_equal_rows_alone_shipped_kinds() {
    check("shipped/arm-reach", None, None);
    check("shipped/arm-reach-consistency", None, None);
    check("shipped/arm-reach-truncated", None, None);
    check("shipped/arm-reach-mode", None, None);
    check("shipped/quadrotor", None, None);
}

#[test]
fn wave_rows_equal_rows_alone_with_candidates() {
    // push-t: 8 candidates per observation, each row's medoid chosen from its own.
    check("shipped/push-t", None, None);
    check("shipped/arm-reach", Some(4), None);
}
