//! Relative actions (riptide.json `relative_actions`): the network predicts offsets from the newest
//! observed state; chunks come out absolute, and RTI warm starts carry absolute targets across a moved
//! state. Checked on a committed LeRobot fixture against the same network run as an absolute policy.

use std::path::PathBuf;

use riptide_policies::backend::FlexBackend;
use riptide_policies::lerobot::{load_diffusion, DiffusionPolicy};
use riptide_policies::rti::{PreviousChunk, RtiConfig, WarmStart};
use riptide_policies::{read_safetensors, HostTensor, ObservationWindow, Policy, SampleRequest};

type B = FlexBackend;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lerobot/state_env_ddim_eps")
}

fn policy(relative: bool) -> DiffusionPolicy<B> {
    let p = load_diffusion::<B>(&fixture(), "cpu (burn-flex)", &Default::default()).unwrap();
    if relative {
        p.with_relative_actions(vec![(0, 0), (1, 1)]).unwrap()
    } else {
        p
    }
}

/// The fixture's observation window and its initial noise.
fn inputs() -> (ObservationWindow, HostTensor) {
    let mut t = read_safetensors(&fixture().join("inputs.safetensors")).unwrap();
    let noise = t.remove("noise").expect("fixture noise");
    (ObservationWindow { features: t }, noise)
}

/// `observation.state[b, newest, s]`.
fn newest_state(obs: &ObservationWindow, b: usize, s: usize) -> f32 {
    let t = &obs.features["observation.state"];
    let (n, d) = (t.shape[1], t.shape[2]);
    t.data[(b * n + n - 1) * d + s]
}

fn cold_req(noise: &HostTensor) -> SampleRequest {
    SampleRequest {
        seed: Some(0),
        initial_noise: Some(noise.clone()),
        ..Default::default()
    }
}

#[test]
fn relative_policy_adds_the_newest_state_back() {
    let (obs, noise) = inputs();
    let abs = policy(false).predict(&obs, &cold_req(&noise), None).unwrap();
    let rel = policy(true).predict(&obs, &cold_req(&noise), None).unwrap();
    // Same network, same noise: the same normalised sample; only the post-processing differs.
    assert_eq!(abs.actions_normalized.data, rel.actions_normalized.data);
    let [b, h, a] = abs.actions.shape[..] else {
        panic!("shape")
    };
    let mut moved = 0.0f32;
    for bi in 0..b {
        for k in 0..h {
            for ai in 0..a {
                let i = (bi * h + k) * a + ai;
                let want = abs.actions.data[i] + newest_state(&obs, bi, ai);
                assert!((rel.actions.data[i] - want).abs() <= 1e-5, "[{bi},{k},{ai}]");
                moved = moved.max((rel.actions.data[i] - abs.actions.data[i]).abs());
            }
        }
    }
    assert!(
        moved > 1e-3,
        "the fixture's states must be nonzero for this test to mean anything"
    );
}

#[test]
fn warm_start_keeps_absolute_targets_when_the_state_moves() {
    let (obs1, noise) = inputs();
    let mut p = policy(true);
    let first = p.predict(&obs1, &cold_req(&noise), None).unwrap();
    // The robot moved: every state frame shifted by (0.3, -0.2).
    let mut obs2 = obs1.clone();
    let st = obs2.features.get_mut("observation.state").unwrap();
    for row in st.data.chunks_exact_mut(2) {
        row[0] += 0.3;
        row[1] -= 0.2;
    }
    let n = p.spec().default_nfe;
    // Entering at step N runs no denoiser: the output is the shifted previous chunk itself.
    let req = SampleRequest {
        seed: Some(1),
        warm_start: Some(WarmStart {
            config: RtiConfig::new(n),
            previous: Some(PreviousChunk {
                shift: 1,
                ..PreviousChunk::new(first.actions_normalized.clone(), &obs1)
            }),
        }),
        ..Default::default()
    };
    let second = p.predict(&obs2, &req, None).unwrap();
    assert!(second.meta.warm_started);
    assert_eq!(second.meta.nfe, 0);
    let [b, h, a] = first.actions.shape[..] else {
        panic!("shape")
    };
    for bi in 0..b {
        for k in 0..h {
            let j = (k + 1).min(h - 1);
            for ai in 0..a {
                let got = second.actions.data[(bi * h + k) * a + ai];
                let want = first.actions.data[(bi * h + j) * a + ai];
                // Without re-referencing every target would move with the robot, by 0.3 / 0.2.
                assert!((got - want).abs() <= 1e-4, "[{bi},{k},{ai}]: {got} vs {want}");
            }
        }
    }

    // A previous chunk without its window cannot be re-referenced: the warm start runs cold.
    let req = SampleRequest {
        seed: Some(1),
        warm_start: Some(WarmStart {
            config: RtiConfig::new(n),
            previous: Some(PreviousChunk {
                actions_normalized: first.actions_normalized.clone(),
                observation: None,
                shift: 1,
            }),
        }),
        ..Default::default()
    };
    let third = p.predict(&obs2, &req, None).unwrap();
    assert!(!third.meta.warm_started);
    assert_eq!(third.meta.nfe, n);
}

#[test]
fn out_of_range_pairs_are_refused() {
    let p = load_diffusion::<B>(&fixture(), "cpu (burn-flex)", &Default::default()).unwrap();
    let e = p
        .with_relative_actions(vec![(0, 5)])
        .err()
        .expect("state index 5 is out of range")
        .to_string();
    assert!(e.contains("relative_actions") && e.contains("[0, 5]"), "{e}");
}
