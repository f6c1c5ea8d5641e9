//! Truncated diffusion with anchors: k-means anchors of the training chunks, two DDIM steps from
//! noised anchors batched over all anchors in one pass, a score head that picks the mode. On a task
//! with two modes (unobservable) and an observable offset, the anchors must sit on the modes, the
//! denoiser must add the offset the anchors lack, and the picked candidates must be modes, never
//! their average.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::train::{CpuTrainBackend, Hooks, RunMeta, TrainConfig, Trainer, TrainingSet};
use riptide_policies::{
    load_policy_with, DeviceSpec, FeatureKind, HostTensor, InputFeature, LoadOptions, ObservationWindow, Policy,
    SampleRequest,
};

type TB = CpuTrainBackend;
const MODE: f32 = 0.6;
const SLOPE: f32 = 0.3;
const N: usize = 64;
const STEPS: usize = 600;

fn features() -> Vec<InputFeature> {
    vec![
        InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![1],
        },
        InputFeature {
            name: "observation.environment_state".into(),
            kind: FeatureKind::Env,
            shape: vec![1],
        },
    ]
}

/// Per episode a hidden sign (±MODE, alternating) and a state s held constant; actions = sign·MODE + SLOPE·s.
fn data(episodes: usize) -> TrainingSet {
    let mut rng = StdRng::seed_from_u64(5);
    let mut set = TrainingSet::new(features(), 1).unwrap();
    for e in 0..episodes {
        let sign = if e % 2 == 0 { 1.0 } else { -1.0 };
        let s: f32 = rng.random_range(-1.0..1.0);
        let len = 16;
        set.push_episode(
            &[vec![vec![s]; len], vec![vec![0.0]; len]],
            &vec![vec![sign * MODE + SLOPE * s]; len],
        )
        .unwrap();
    }
    set
}

fn config(select: &str) -> TrainConfig {
    TrainConfig::from_toml_str(&format!(
        r#"
seed = 4
steps = {STEPS}
batch_size = 32

[model]
n_obs_steps = 1
horizon = 4
n_action_steps = 4
down_dims = [16, 32]
kernel_size = 3
n_groups = 4
diffusion_step_embed_dim = 16

[normalization]
ACTION = "IDENTITY"
STATE = "IDENTITY"
ENV = "IDENTITY"

[optim]
lr = 3e-3
warmup_steps = 10

[truncated]
n_anchors = 2
trunc_timestep = 10
select = "{select}"
"#
    ))
    .unwrap()
}

fn window(states: &[f32]) -> ObservationWindow {
    let n = states.len();
    let mut w = ObservationWindow::default();
    w.features.insert(
        "observation.state".into(),
        HostTensor::new(vec![n, 1, 1], states.to_vec()).unwrap(),
    );
    w.features.insert(
        "observation.environment_state".into(),
        HostTensor::new(vec![n, 1, 1], vec![0.0; n]).unwrap(),
    );
    w
}

fn req(seed: u64) -> SampleRequest {
    SampleRequest {
        seed: Some(seed),
        ..Default::default()
    }
}

#[test]
fn anchors_modes_offsets_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<TB>::new(config("sample"), data(24), RunMeta::default(), Default::default()).unwrap();
    t.run(Some(dir.path()), &mut Hooks::default()).unwrap();
    let mut p = t.policy().unwrap();
    assert_eq!(p.spec().kind, "truncated");
    // k-means anchors sit on the two modes (the offset averages out over episodes).
    let anchors = &p.truncated.as_ref().unwrap().anchors;
    let mut means: Vec<f32> = anchors.data.chunks(4).map(|c| c.iter().sum::<f32>() / 4.0).collect();
    means.sort_by(|a, b| a.total_cmp(b));
    println!("anchor means {means:?}");
    assert!(
        (means[0] + MODE).abs() < 0.15 && (means[1] - MODE).abs() < 0.15,
        "{means:?}"
    );

    let mut rng = StdRng::seed_from_u64(9);
    let states: Vec<f32> = (0..N).map(|_| rng.random_range(-1.0..1.0)).collect();
    let c = p.predict(&window(&states), &req(1), None).unwrap();
    assert_eq!(c.meta.nfe, 2, "all anchors in one batched pass per step");
    let (mut pos, mut neg, mut err, mut anchor_err) = (0, 0, 0.0f32, 0.0f32);
    for (i, s) in states.iter().enumerate() {
        let m = c.actions.data[i * 4..(i + 1) * 4].iter().sum::<f32>() / 4.0;
        let sign = if m >= 0.0 { 1.0 } else { -1.0 };
        if m > 0.0 {
            pos += 1
        } else {
            neg += 1
        };
        err += (m - (sign * MODE + SLOPE * s)).abs();
        anchor_err += (SLOPE * s).abs();
    }
    let (err, anchor_err) = (err / N as f32, anchor_err / N as f32);
    println!("modes +{pos} −{neg}; |chunk − demonstration of its mode| {err:.3} (anchor alone {anchor_err:.3})");
    assert!(
        pos >= N / 5 && neg >= N / 5,
        "sampled mode selection must cover both modes: +{pos} −{neg}"
    );
    assert!(
        err < 0.5 * anchor_err,
        "the denoiser must add the observed offset: {err} vs anchor {anchor_err}"
    );

    // Round trip: kind, anchors and score head come back; same actions bit for bit.
    let ckpt = dir.path().join(format!("checkpoints/{STEPS:06}/pretrained_model"));
    assert!(ckpt.join("truncated.safetensors").exists());
    let mut loaded = load_policy_with(
        &ckpt,
        DeviceSpec::Cpu,
        LoadOptions {
            cpu_fusion: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.spec().kind, "truncated");
    let again = loaded.predict(&window(&states), &req(1), None).unwrap();
    assert_eq!(again.actions.data, c.actions.data);
    // A different step count is an error, not a silent change of algorithm.
    let e = loaded
        .predict(
            &window(&states),
            &SampleRequest {
                num_inference_steps: Some(5),
                ..req(1)
            },
            None,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    // A damaged parts file names the tensor.
    let mut m = riptide_policies::read_safetensors(&ckpt.join("truncated.safetensors")).unwrap();
    m.remove("anchors");
    riptide_policies::write_safetensors(&ckpt.join("truncated.safetensors"), &m).unwrap();
    let e = riptide_policies::load_policy(&ckpt, DeviceSpec::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("anchors"), "{e}");
}

#[test]
fn argmax_selection_returns_a_mode_never_the_average() {
    let mut t = Trainer::<TB>::new(config("argmax"), data(24), RunMeta::default(), Default::default()).unwrap();
    t.run(None, &mut Hooks::default()).unwrap();
    let mut p = t.policy().unwrap();
    let states: Vec<f32> = (0..N).map(|i| -1.0 + 2.0 * i as f32 / N as f32).collect();
    let c = p.predict(&window(&states), &req(2), None).unwrap();
    let near_mode = c
        .actions
        .data
        .chunks(4)
        .zip(&states)
        .filter(|(a, s)| {
            let m = a.iter().sum::<f32>() / 4.0;
            (m - (MODE + SLOPE * *s)).abs() < 0.2 || (m - (-MODE + SLOPE * *s)).abs() < 0.2
        })
        .count();
    println!("{near_mode}/{N} argmax chunks on a mode");
    assert!(near_mode >= N * 9 / 10, "argmax chunks must be modes: {near_mode}/{N}");
}

/// Truncated diffusion with relative actions (`[data] relative_actions`): the anchors are k-means over
/// the offsets from the newest state, so on data whose action is the state plus ±MODE they sit on ±MODE
/// exactly, and inference adds the state back — the chunk follows the state without the network having
/// to learn it. The checkpoint carries the pairs.
#[test]
fn relative_actions_anchor_the_offsets_and_add_the_state_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(6);
    let mut set = TrainingSet::new(features(), 1).unwrap();
    for e in 0..24 {
        let sign = if e % 2 == 0 { 1.0 } else { -1.0 };
        let s: f32 = rng.random_range(-1.0..1.0);
        set.push_episode(
            &[vec![vec![s]; 16], vec![vec![0.0]; 16]],
            &vec![vec![sign * MODE + s]; 16],
        )
        .unwrap();
    }
    let mut cfg = config("sample");
    cfg.steps = 200;
    cfg.data.relative_actions = vec![[0, 0]];
    let mut t = Trainer::<TB>::new(cfg, set, RunMeta::default(), Default::default()).unwrap();
    t.run(Some(dir.path()), &mut Hooks::default()).unwrap();
    let ckpt = dir.path().join("checkpoints/000200/pretrained_model");
    let mut p = load_policy_with(
        &ckpt,
        DeviceSpec::Cpu,
        LoadOptions {
            cpu_fusion: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(p.spec().relative_actions, vec![(0, 0)]);
    let trained = t.policy().unwrap();
    let anchors = &trained.truncated.as_ref().unwrap().anchors;
    let mut means: Vec<f32> = anchors.data.chunks(4).map(|c| c.iter().sum::<f32>() / 4.0).collect();
    means.sort_by(|a, b| a.total_cmp(b));
    assert!(
        (means[0] + MODE).abs() < 0.02 && (means[1] - MODE).abs() < 0.02,
        "anchors must be the offsets ±{MODE}: {means:?}"
    );
    let states: Vec<f32> = (0..N).map(|_| rng.random_range(-1.0..1.0)).collect();
    let c = p.predict(&window(&states), &req(2), None).unwrap();
    let mut err = 0.0f32;
    for (i, s) in states.iter().enumerate() {
        let m = c.actions.data[i * 4..(i + 1) * 4].iter().sum::<f32>() / 4.0;
        let offset = m - s;
        err += (offset.abs() - MODE).abs();
    }
    let err = err / N as f32;
    println!("|chunk − state| vs MODE: {err:.3}");
    assert!(err < 0.1, "chunks must be the state ± {MODE}: mean error {err}");
}

/// A truncated run resumed from a checkpoint repeats the uninterrupted run: the anchors, the score
/// head and its optimiser moments come back with the U-Net. A checkpoint without the head's training
/// state (older riptide) still resumes from the head's saved weights: the first resumed step's loss,
/// taken before any update, is the uninterrupted run's.
#[test]
fn a_resumed_run_repeats_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        steps: 40,
        checkpoint_every: 20,
        ..config("sample")
    };
    let mut a = Trainer::<TB>::new(cfg, data(24), RunMeta::default(), Default::default()).unwrap();
    a.run(Some(dir.path()), &mut Hooks::default()).unwrap();
    let mid = dir.path().join("checkpoints/000020");
    for f in ["score_head.mpk", "score_head_optimizer.mpk"] {
        assert!(mid.join("training_state").join(f).exists(), "{f} missing");
    }
    let mut b = Trainer::<TB>::resume(&mid, data(24), Default::default()).unwrap();
    assert_eq!(b.step_index(), 20);
    b.run(None, &mut Hooks::default()).unwrap();
    assert_eq!(b.losses(), a.losses(), "resumed truncated run diverged");
    let states: Vec<f32> = (0..8).map(|i| -1.0 + i as f32 / 4.0).collect();
    let pa = a.policy().unwrap().predict(&window(&states), &req(3), None).unwrap();
    let pb = b.policy().unwrap().predict(&window(&states), &req(3), None).unwrap();
    assert_eq!(pa.actions, pb.actions);

    for f in ["score_head.mpk", "score_head_optimizer.mpk"] {
        std::fs::remove_file(mid.join("training_state").join(f)).unwrap();
    }
    let mut c = Trainer::<TB>::resume(&mid, data(24), Default::default()).unwrap();
    c.train_step().unwrap();
    assert_eq!(
        c.losses()[..21],
        a.losses()[..21],
        "the head must resume from its saved weights"
    );
    // Other data is refused: the anchors are the run's.
    let e = Trainer::<TB>::resume(&mid, data(30), Default::default())
        .err()
        .expect("resume on other data must fail");
    assert!(e.to_string().contains("differs"), "{e}");
}
