//! Training: the loss falls on a learnable task and the trained policy beats an untrained one; saved
//! checkpoints load (riptide bit-exactly, LeRobot strictly); resuming repeats the uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::train::{CpuTrainBackend, Hooks, RunMeta, TrainConfig, Trainer, TrainingSet};
use riptide_policies::{
    load_policy_with, write_safetensors, DeviceSpec, FeatureKind, HostTensor, InputFeature, LoadOptions,
    ObservationWindow, Policy, SampleRequest,
};

type TB = CpuTrainBackend;

const EP_LEN: usize = 24;
const GAIN: f32 = 0.25;

/// A point reaching for a goal: the action is the next position, x + GAIN·(goal − x). The chunk is a
/// deterministic function of the observed state and goal, so a policy can learn it exactly.
fn reach_episode(rng: &mut StdRng) -> (Vec<Vec<Vec<f32>>>, Vec<Vec<f32>>) {
    let mut x: Vec<f32> = (0..2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let g: Vec<f32> = (0..2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (mut states, mut goals, mut actions) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..EP_LEN {
        let a: Vec<f32> = x.iter().zip(&g).map(|(x, g)| x + GAIN * (g - x)).collect();
        states.push(x.clone());
        goals.push(g.clone());
        actions.push(a.clone());
        x = a;
    }
    (vec![states, goals], actions)
}

fn features() -> Vec<InputFeature> {
    vec![
        InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![2],
        },
        InputFeature {
            name: "observation.environment_state".into(),
            kind: FeatureKind::Env,
            shape: vec![2],
        },
    ]
}

fn dataset(episodes: usize, seed: u64) -> TrainingSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut set = TrainingSet::new(features(), 2).unwrap();
    for _ in 0..episodes {
        let (obs, actions) = reach_episode(&mut rng);
        set.push_episode(&obs, &actions).unwrap();
    }
    set
}

/// A tiny U-Net (16/32 channels) so a few hundred steps take seconds on two cores.
fn tiny_config(steps: usize, extra: &str) -> TrainConfig {
    TrainConfig::from_toml_str(&format!(
        r#"
seed = 7
steps = {steps}
batch_size = 32
{extra}

[model]
n_obs_steps = 2
horizon = 8
n_action_steps = 4
down_dims = [16, 32]
kernel_size = 3
n_groups = 4
diffusion_step_embed_dim = 16

[diffusion]
noise_scheduler_type = "DDIM"
num_inference_steps = 10

[optim]
lr = 3e-3
warmup_steps = 10
"#
    ))
    .unwrap()
}

/// Held-out windows (current step 5 of fresh episodes) and their true action chunks.
fn eval_windows(n: usize) -> (ObservationWindow, HostTensor) {
    let mut rng = StdRng::seed_from_u64(999);
    let (to, h, t) = (2, 8, 5);
    let (mut st, mut env, mut act) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (obs, actions) = reach_episode(&mut rng);
        for (s, e) in obs[0][t + 1 - to..=t].iter().zip(&obs[1][t + 1 - to..=t]) {
            st.extend(s);
            env.extend(e);
        }
        for a in &actions[t + 1 - to..t + 1 - to + h] {
            act.extend(a);
        }
    }
    let mut w = ObservationWindow::default();
    w.features
        .insert("observation.state".into(), HostTensor::new(vec![n, to, 2], st).unwrap());
    w.features.insert(
        "observation.environment_state".into(),
        HostTensor::new(vec![n, to, 2], env).unwrap(),
    );
    (w, HostTensor::new(vec![n, h, 2], act).unwrap())
}

fn mse(a: &HostTensor, b: &HostTensor) -> f64 {
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.numel() as f64
}

fn noise(n: usize, seed: u64) -> HostTensor {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = StdRng::seed_from_u64(seed);
    HostTensor::new(
        vec![n, 8, 2],
        (0..n * 16).map(|_| StandardNormal.sample(&mut rng)).collect(),
    )
    .unwrap()
}

fn request(n: usize) -> SampleRequest {
    SampleRequest {
        seed: Some(1),
        initial_noise: Some(noise(n, 5)),
        ..Default::default()
    }
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64
}

#[test]
fn training_lowers_loss_and_beats_an_untrained_policy() {
    let steps = 300;
    let mut trainer = Trainer::<TB>::new(
        tiny_config(steps, ""),
        dataset(24, 1),
        RunMeta::default(),
        Default::default(),
    )
    .unwrap();
    let (obs, truth) = eval_windows(16);
    let untrained = trainer.policy().unwrap().predict(&obs, &request(16), None).unwrap();
    let t0 = Instant::now();
    let summary = trainer.run(None, &mut Hooks::default()).unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let losses = trainer.losses();
    let (first, last) = (mean(&losses[..20]), mean(&losses[steps - 20..]));
    let mut policy = trainer.policy().unwrap();
    let trained = policy.predict(&obs, &request(16), None).unwrap();
    let (e0, e1) = (mse(&untrained.actions, &truth), mse(&trained.actions, &truth));
    println!(
        "{} parameters, {steps} steps in {wall:.1} s ({:.1} steps/s, {} train samples): loss {first:.4} → {last:.4} \
         (ratio {:.3}); action MSE untrained {e0:.4} → trained {e1:.5}; summary {summary:?}",
        policy.spec().num_parameters,
        steps as f64 / wall,
        trainer.num_train_samples(),
        last / first
    );
    assert_eq!(summary.steps, steps);
    // Measured (seeded, deterministic on the CPU): loss ratio 0.090 and action MSE 0.179 vs 0.858
    // (ratio 0.21) after 300 steps; this tiny model is still under-trained there (900 steps: loss
    // ratio 0.03, action MSE 0.0116, ratio 0.014), so the bounds leave about 2x margin.
    assert!(last / first < 0.2, "loss fell only from {first} to {last}");
    assert!(
        e1 < 0.4 * e0,
        "trained policy error {e1} is not well below the untrained {e0}"
    );
}

#[test]
fn saved_checkpoint_loads_bit_exactly_and_resume_repeats_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out_a = dir.path().join("a");
    let cfg = tiny_config(
        40,
        "checkpoint_every = 20\nval_every = 20\nval_max_batches = 2\n[data]\nval_fraction = 0.2",
    );
    let meta = RunMeta {
        fps: Some(10.0),
        env: Some("reach".into()),
        data: Some("synthetic".into()),
    };
    let mut a = Trainer::<TB>::new(cfg.clone(), dataset(10, 2), meta.clone(), Default::default()).unwrap();
    let mut events = Vec::new();
    let summary = {
        let mut hooks = Hooks {
            on_event: Some(Box::new(|ev: &riptide_policies::train::TrainEvent| {
                events.push(format!("{ev:?}").split_whitespace().next().unwrap_or("").to_string());
                riptide_policies::train::Control::Continue
            })),
            eval: None,
        };
        a.run(Some(&out_a), &mut hooks).unwrap()
    };
    assert_eq!(
        summary.checkpoint.as_deref(),
        Some(out_a.join("checkpoints/000040").as_path())
    );
    assert!(summary.final_val_loss.is_some());
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Checkpoint")).count(),
        2,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Validation")).count(),
        2,
        "{events:?}"
    );

    // riptide's loader reads the LeRobot layout back, and with the same noise gives the same bits as
    // the in-memory EMA model (on both CPU paths).
    let ckpt = out_a.join("checkpoints/last");
    for f in [
        "config.json",
        "model.safetensors",
        "policy_preprocessor.json",
        "policy_preprocessor_step_3_normalizer_processor.safetensors",
        "policy_postprocessor.json",
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
        "riptide.json",
    ] {
        assert!(ckpt.join("pretrained_model").join(f).exists(), "{f} missing");
    }
    let (obs, _) = eval_windows(4);
    for fusion in [false, true] {
        let mut mem = a.policy().unwrap();
        mem.set_host_fusion(fusion);
        let want = mem.predict(&obs, &request(4), None).unwrap();
        let mut loaded = load_policy_with(
            &ckpt,
            DeviceSpec::Cpu,
            LoadOptions {
                cpu_fusion: fusion,
                ..Default::default()
            },
        )
        .unwrap();
        let got = loaded.predict(&obs, &request(4), None).unwrap();
        assert_eq!(got.actions, want.actions, "fusion {fusion}: loaded checkpoint differs");
        assert_eq!(loaded.spec().num_parameters, mem.spec().num_parameters);
    }
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("pretrained_model/riptide.json")).unwrap()).unwrap();
    assert_eq!(sidecar["kind"], "diffusion");
    assert_eq!(sidecar["fps"], 10.0);
    assert_eq!(sidecar["training"]["steps"], 40);

    // Resume from the step-20 checkpoint: the remaining 20 steps repeat run A exactly.
    let mut b = Trainer::<TB>::resume(&out_a.join("checkpoints/000020"), dataset(10, 2), Default::default()).unwrap();
    assert_eq!(b.step_index(), 20);
    b.run(None, &mut Hooks::default()).unwrap();
    assert_eq!(
        b.losses(),
        a.losses(),
        "resumed run diverged from the uninterrupted one"
    );
    let pa = a.policy().unwrap().predict(&obs, &request(4), None).unwrap();
    let pb = b.policy().unwrap().predict(&obs, &request(4), None).unwrap();
    assert_eq!(pa.actions, pb.actions);
    assert_eq!(b.validation_loss().unwrap(), a.validation_loss().unwrap());

    // A different seed is a different run; other data is refused on resume.
    let mut c = Trainer::<TB>::new(
        TrainConfig { seed: 8, ..cfg.clone() },
        dataset(10, 2),
        meta,
        Default::default(),
    )
    .unwrap();
    c.train_step().unwrap();
    assert_ne!(c.losses()[0], a.losses()[0]);
    let e = Trainer::<TB>::resume(&out_a.join("checkpoints/000020"), dataset(10, 3), Default::default())
        .err()
        .expect("resume on other data must fail");
    assert!(e.to_string().contains("differs"), "{e}");
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("RIPTIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    p.exists().then_some(p)
}

fn skip_or_fail(why: &str) {
    if std::env::var("RIPTIDE_REQUIRE_PY_TOOLS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    println!("SKIPPED: {why}");
}

fn run_lerobot(py: &Path, ckpt: &Path, inputs: &Path, out: &Path) -> Option<String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/check_lerobot_load.py");
    let o = std::process::Command::new(py)
        .arg(&script)
        .arg(ckpt)
        .arg(inputs)
        .arg(out)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "check_lerobot_load.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIPPED")) {
        println!("{line}");
        return None;
    }
    Some(stdout)
}

/// LeRobot 0.4.4 loads a riptide-trained checkpoint (strictly: every parameter name right) with its
/// processors, and samples the same actions as riptide from the same initial noise.
#[test]
fn lerobot_loads_a_riptide_checkpoint() {
    let Some(py) = python() else {
        skip_or_fail("no Python with LeRobot (set RIPTIDE_PYTHON or create <workspace>/.venv)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<TB>::new(
        tiny_config(30, ""),
        dataset(8, 4),
        RunMeta::default(),
        Default::default(),
    )
    .unwrap();
    let summary = t.run(Some(dir.path()), &mut Hooks::default()).unwrap();
    let ckpt = summary.checkpoint.unwrap().join("pretrained_model");
    let (obs, _) = eval_windows(3);
    let mut inputs: BTreeMap<String, HostTensor> = obs.features.clone();
    inputs.insert("noise".into(), noise(3, 5));
    let inputs_path = dir.path().join("inputs.safetensors");
    write_safetensors(&inputs_path, &inputs).unwrap();
    let out = dir.path().join("lerobot.safetensors");
    let Some(stdout) = run_lerobot(&py, &ckpt, &inputs_path, &out) else {
        skip_or_fail("LeRobot is not importable");
        return;
    };
    print!("{stdout}");
    let theirs = riptide_policies::read_safetensors(&out).unwrap();
    let mut ours = load_policy_with(&ckpt, DeviceSpec::Cpu, LoadOptions::default()).unwrap();
    let got = ours.predict(&obs, &request(3), None).unwrap();
    let dn = got
        .actions_normalized
        .max_abs_diff(&theirs["action.normalized"])
        .unwrap();
    let da = got.actions.max_abs_diff(&theirs["action"]).unwrap();
    println!("riptide vs LeRobot: max|Δ| normalised {dn:.2e}, unnormalised {da:.2e}");
    assert!(dn <= 1e-4 && da <= 1e-4, "normalised Δ {dn}, unnormalised Δ {da}");
}

/// The camera path: a few steps on tiny random images (ResNet18 trunk, random crop in training),
/// then the checkpoint loads in riptide with the same bits and, when available, strictly in LeRobot.
#[test]
fn image_policy_trains_saves_and_loads() {
    let feats = vec![
        InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![2],
        },
        InputFeature {
            name: "observation.image".into(),
            kind: FeatureKind::Visual,
            shape: vec![3, 24, 24],
        },
    ];
    let mut rng = StdRng::seed_from_u64(3);
    let mut set = TrainingSet::new(feats, 2).unwrap();
    for _ in 0..2 {
        let n = 6;
        let states: Vec<Vec<f32>> = (0..n).map(|_| vec![rng.random(), rng.random()]).collect();
        let images: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..3 * 24 * 24).map(|_| rng.random()).collect())
            .collect();
        let actions = states.clone();
        set.push_episode(&[states, images], &actions).unwrap();
    }
    let mut cfg = tiny_config(3, "[data]\ndrop_n_last_frames = 0\n[ema]\nenabled = false");
    cfg.batch_size = 4;
    cfg.model.crop_shape = Some([20, 20]);
    cfg.model.spatial_softmax_num_keypoints = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::<TB>::new(cfg, set, RunMeta::default(), Default::default()).unwrap();
    let t0 = Instant::now();
    let summary = t.run(Some(dir.path()), &mut Hooks::default()).unwrap();
    println!(
        "3 image steps in {:.1} s, losses {:?}",
        t0.elapsed().as_secs_f64(),
        t.losses()
    );
    assert!(t.losses().iter().all(|l| l.is_finite()));
    let ckpt = summary.checkpoint.unwrap().join("pretrained_model");
    let names = riptide_policies::read_safetensors(&ckpt.join("model.safetensors")).unwrap();
    assert!(names.contains_key("diffusion.rgb_encoder.backbone.0.weight"));
    assert!(names.contains_key("diffusion.rgb_encoder.pool.pos_grid"));
    let stats =
        riptide_policies::read_safetensors(&ckpt.join("policy_preprocessor_step_3_normalizer_processor.safetensors"))
            .unwrap();
    assert_eq!(stats["observation.image.mean"].shape, vec![3, 1, 1]);

    let mut obs = ObservationWindow::default();
    obs.features.insert(
        "observation.state".into(),
        HostTensor::new(vec![1, 2, 2], vec![0.1, 0.2, 0.3, 0.4]).unwrap(),
    );
    obs.features.insert(
        "observation.image".into(),
        HostTensor::new(
            vec![1, 2, 3, 24, 24],
            (0..2 * 3 * 24 * 24).map(|_| rng.random()).collect(),
        )
        .unwrap(),
    );
    let want = t.policy().unwrap().predict(&obs, &request(1), None).unwrap();
    let mut loaded = load_policy_with(
        &ckpt,
        DeviceSpec::Cpu,
        LoadOptions {
            cpu_fusion: false,
            ..Default::default()
        },
    )
    .unwrap();
    let got = loaded.predict(&obs, &request(1), None).unwrap();
    assert_eq!(got.actions, want.actions);

    let Some(py) = python() else {
        skip_or_fail("no Python with LeRobot (set RIPTIDE_PYTHON or create <workspace>/.venv)");
        return;
    };
    let mut inputs: BTreeMap<String, HostTensor> = obs.features.clone();
    inputs.insert("noise".into(), noise(1, 5));
    let inputs_path = dir.path().join("inputs.safetensors");
    write_safetensors(&inputs_path, &inputs).unwrap();
    let out = dir.path().join("lerobot.safetensors");
    let Some(stdout) = run_lerobot(&py, &ckpt, &inputs_path, &out) else {
        skip_or_fail("LeRobot is not importable");
        return;
    };
    print!("{stdout}");
    let theirs = riptide_policies::read_safetensors(&out).unwrap();
    let dn = got
        .actions_normalized
        .max_abs_diff(&theirs["action.normalized"])
        .unwrap();
    println!("image policy, riptide vs LeRobot: max|Δ| normalised {dn:.2e}");
    assert!(dn <= 1e-4, "normalised Δ {dn}");
}

/// `[data] stats_from_init`: a fine-tune on data that reaches further (here every value ×3) starts from
/// exactly the function its starting checkpoint computes — it normalises with that checkpoint's stats —
/// while without the key the new data's wider ranges change what the same weights predict. The key
/// needs init_from.
#[test]
fn fine_tunes_can_keep_the_starting_checkpoints_normalisation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a");
    let mut a = Trainer::<TB>::new(
        tiny_config(2, ""),
        dataset(10, 2),
        RunMeta::default(),
        Default::default(),
    )
    .unwrap();
    a.run(Some(&out), &mut Hooks::default()).unwrap();
    let ckpt = out.join("checkpoints/last/pretrained_model");
    let wide = || {
        let mut rng = StdRng::seed_from_u64(3);
        let mut set = TrainingSet::new(features(), 2).unwrap();
        for _ in 0..10 {
            let (obs, actions) = reach_episode(&mut rng);
            let x3 = |v: &Vec<Vec<f32>>| {
                v.iter()
                    .map(|r| r.iter().map(|x| 3.0 * x).collect())
                    .collect::<Vec<_>>()
            };
            let obs: Vec<_> = obs.iter().map(x3).collect();
            set.push_episode(&obs, &x3(&actions)).unwrap();
        }
        set
    };
    let fine_tune = |extra: &str| {
        let mut cfg = tiny_config(2, extra);
        cfg.init_from = Some(ckpt.clone());
        Trainer::<TB>::new(cfg, wide(), RunMeta::default(), Default::default())
    };
    let kept = fine_tune("[data]\nstats_from_init = true").unwrap();
    let fresh = fine_tune("").unwrap();
    assert_eq!(kept.stats(), a.stats());
    assert_eq!(fresh.stats(), &wide().stats().unwrap());
    assert_ne!(fresh.stats(), a.stats());

    let (obs, _) = eval_windows(4);
    let want = load_policy_with(&ckpt, DeviceSpec::Cpu, LoadOptions::default())
        .unwrap()
        .predict(&obs, &request(4), None)
        .unwrap();
    let got = kept.policy().unwrap().predict(&obs, &request(4), None).unwrap();
    let moved = fresh.policy().unwrap().predict(&obs, &request(4), None).unwrap();
    assert!(
        mse(&got.actions, &want.actions) < 1e-10,
        "the fine-tune does not start where its checkpoint is"
    );
    assert!(mse(&moved.actions, &want.actions) > 1e-4, "new stats changed nothing");

    let mut cfg = tiny_config(2, "[data]\nstats_from_init = true");
    cfg.init_from = None;
    let e = Trainer::<TB>::new(cfg, dataset(10, 2), RunMeta::default(), Default::default())
        .err()
        .expect("stats_from_init without init_from");
    assert!(e.to_string().contains("stats_from_init"), "{e}");
}
