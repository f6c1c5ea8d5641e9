//! One-step consistency distillation: a diffusion teacher trained on a two-mode task, a student
//! distilled from it (`[consistency]` in the train config). The student must reproduce the teacher's
//! DDIM solution from the same noise in one network evaluation, keep both modes (not average them),
//! save and load as kind "consistency", and refine in more steps on request.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use riptide_policies::train::{CpuTrainBackend, Hooks, RunMeta, TrainConfig, Trainer, TrainingSet};
use riptide_policies::{
    load_policy, load_policy_with, DeviceSpec, FeatureKind, HostTensor, InputFeature, LoadOptions, ObservationWindow,
    Policy, SampleRequest,
};

type TB = CpuTrainBackend;
const MODE: f32 = 0.8;
const N: usize = 64;
const TEACHER_STEPS: usize = 1200;

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

/// Episodes whose state says nothing about the mode: each one holds its actions at +MODE or −MODE
/// (with a little jitter), 50/50 over episodes. A policy that averages outputs ≈ 0.
fn two_mode_data(episodes: usize) -> TrainingSet {
    let mut rng = StdRng::seed_from_u64(3);
    let mut set = TrainingSet::new(features(), 2).unwrap();
    for e in 0..episodes {
        let sign = if e % 2 == 0 { 1.0 } else { -1.0 };
        let len = 20;
        let states: Vec<Vec<f32>> = (0..len)
            .map(|_| (0..2).map(|_| rng.random_range(-0.1..0.1)).collect())
            .collect();
        let actions: Vec<Vec<f32>> = (0..len)
            .map(|_| (0..2).map(|_| sign * MODE + rng.random_range(-0.02..0.02)).collect())
            .collect();
        let env = vec![vec![0.5, -0.5]; len];
        set.push_episode(&[states, env], &actions).unwrap();
    }
    set
}

fn config(steps: usize, extra: &str) -> TrainConfig {
    TrainConfig::from_toml_str(&format!(
        r#"
seed = 11
steps = {steps}
batch_size = 32

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
{extra}
"#
    ))
    .unwrap()
}

fn window(n: usize) -> ObservationWindow {
    let mut w = ObservationWindow::default();
    w.features.insert(
        "observation.state".into(),
        HostTensor::new(vec![n, 2, 2], vec![0.0; n * 4]).unwrap(),
    );
    w.features.insert(
        "observation.environment_state".into(),
        HostTensor::new(vec![n, 2, 2], [0.5, -0.5].repeat(n * 2)).unwrap(),
    );
    w
}

fn noise(n: usize) -> HostTensor {
    let mut rng = StdRng::seed_from_u64(77);
    HostTensor::new(
        vec![n, 8, 2],
        (0..n * 16).map(|_| StandardNormal.sample(&mut rng)).collect(),
    )
    .unwrap()
}

fn request(n: usize, steps: Option<usize>) -> SampleRequest {
    SampleRequest {
        seed: Some(1),
        initial_noise: Some(noise(n)),
        num_inference_steps: steps,
        ..Default::default()
    }
}

/// Per sample: mean action over the chunk → (near +MODE, near −MODE, near 0) counts.
fn modes(actions: &HostTensor) -> (usize, usize, usize) {
    let per = actions.numel() / actions.shape[0];
    let (mut pos, mut neg, mut mid) = (0, 0, 0);
    for c in actions.data.chunks(per) {
        let m = c.iter().sum::<f32>() / per as f32;
        if (m - MODE).abs() < 0.25 {
            pos += 1;
        } else if (m + MODE).abs() < 0.25 {
            neg += 1;
        } else if m.abs() < 0.4 {
            mid += 1;
        }
    }
    (pos, neg, mid)
}

fn mean_abs_diff(a: &HostTensor, b: &HostTensor) -> f32 {
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.numel() as f32
}

#[test]
fn distilled_student_matches_its_teacher_in_one_step_and_keeps_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_mode_data(16);

    // Teacher: a small DDIM-10 diffusion policy.
    let teacher_dir = dir.path().join("teacher");
    let mut t = Trainer::<TB>::new(
        config(TEACHER_STEPS, ""),
        data.clone(),
        RunMeta::default(),
        Default::default(),
    )
    .unwrap();
    t.run(Some(&teacher_dir), &mut Hooks::default()).unwrap();
    let teacher_ckpt = teacher_dir.join(format!("checkpoints/{TEACHER_STEPS:06}/pretrained_model"));
    let mut teacher = load_policy(&teacher_ckpt, DeviceSpec::Cpu).unwrap();
    let obs = window(N);
    let tc = teacher.predict(&obs, &request(N, None), None).unwrap();
    let (tp, tn, tmid) = modes(&tc.actions);
    println!(
        "teacher (NFE {}): modes +{tp} −{tn} (near 0: {tmid}) of {N}",
        tc.meta.nfe
    );
    assert!(
        tp >= N / 5 && tn >= N / 5,
        "the teacher itself must be bimodal: +{tp} −{tn}"
    );

    // Student: distilled from the teacher's DDIM trajectories.
    let extra = format!(
        "[consistency]\nteacher = {:?}\npool_size = 512\n",
        teacher_ckpt.display().to_string()
    );
    let student_dir = dir.path().join("student");
    let mut s = Trainer::<TB>::new(config(400, &extra), data, RunMeta::default(), Default::default()).unwrap();
    // Before distillation the student is the teacher's ε-network read as a consistency model.
    let before = s.policy().unwrap().predict(&obs, &request(N, None), None).unwrap();
    s.run(Some(&student_dir), &mut Hooks::default()).unwrap();
    let mut student = s.policy().unwrap();
    let one = student.predict(&obs, &request(N, None), None).unwrap();
    assert_eq!(one.meta.nfe, 1);
    assert_eq!(one.meta.kind, "consistency");
    let (e_before, e_after) = (
        mean_abs_diff(&before.actions, &tc.actions),
        mean_abs_diff(&one.actions, &tc.actions),
    );
    let (sp, sn, smid) = modes(&one.actions);
    println!(
        "student one step: |student − teacher| {e_before:.3} before → {e_after:.3} after distillation; \
         modes +{sp} −{sn} (near 0: {smid}) of {N}"
    );
    // The same noise must land in the same mode as the teacher's 10-step solution, in one step.
    assert!(
        e_after < 0.2,
        "one-step student is {e_after} away from the teacher's solution"
    );
    assert!(
        e_after < 0.5 * e_before,
        "distillation did not move the student towards the teacher"
    );
    assert!(sp >= N / 5 && sn >= N / 5, "student lost a mode: +{sp} −{sn}");
    assert!(smid <= N / 10, "student averages the modes: {smid} samples near 0");

    // Saved as kind "consistency": loads and samples identically, one step by default.
    let ckpt = student_dir.join("checkpoints/000400/pretrained_model");
    let riptide: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("riptide.json")).unwrap()).unwrap();
    assert_eq!(riptide["kind"], "consistency");
    // Host fusion off: the trainer's policy runs the plain tensor path, and bit-exactness needs the same.
    let mut loaded = load_policy_with(
        &ckpt,
        DeviceSpec::Cpu,
        LoadOptions {
            cpu_fusion: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.spec().kind, "consistency");
    assert_eq!(loaded.spec().default_nfe, 1);
    let again = loaded.predict(&obs, &request(N, None), None).unwrap();
    assert_eq!(
        again.actions.data, one.actions.data,
        "save/load changed the student's output"
    );

    // Multistep refinement on request: two evaluations, still near the teacher.
    let two = loaded.predict(&obs, &request(N, Some(2)), None).unwrap();
    assert_eq!(two.meta.nfe, 2);
    let e_two = mean_abs_diff(&two.actions, &tc.actions);
    println!("student two steps: |student − teacher| {e_two:.3}");
    assert!(e_two < 0.3, "two-step refinement drifted: {e_two}");
}

#[test]
fn distillation_config_errors_name_the_problem() {
    let data = two_mode_data(4);
    let bad = config(10, "[consistency]\nteacher = \"/nonexistent/teacher\"\n");
    let e = Trainer::<TB>::new(bad, data, RunMeta::default(), Default::default())
        .err()
        .expect("missing teacher must fail")
        .to_string();
    assert!(e.contains("consistency.teacher"), "{e}");
    let e = TrainConfig::from_toml_str("[consistency]\nteacher = \"x\"\nsigma_data = -1.0\n")
        .and_then(|c| c.validate())
        .expect_err("negative sigma_data must fail")
        .to_string();
    assert!(e.contains("sigma_data"), "{e}");
}

/// A student predicts in its teacher's action space: a teacher trained on relative actions hands its
/// pairs to the student (riptide.json and the loaded policy carry them, so inference adds the state back),
/// and a config that contradicts them is refused with both lists.
#[test]
fn a_student_adopts_its_teachers_relative_actions() {
    let dir = tempfile::tempdir().unwrap();
    let data = two_mode_data(8);
    let teacher_dir = dir.path().join("teacher");
    let rel = "[data]\nrelative_actions = [[0, 0]]\n";
    let mut t = Trainer::<TB>::new(config(20, rel), data.clone(), RunMeta::default(), Default::default()).unwrap();
    t.run(Some(&teacher_dir), &mut Hooks::default()).unwrap();
    let teacher_ckpt = teacher_dir.join("checkpoints/000020/pretrained_model");

    let consistency = format!(
        "[consistency]\nteacher = {:?}\npool_size = 64\n",
        teacher_ckpt.display().to_string()
    );
    let student_dir = dir.path().join("student");
    let mut s = Trainer::<TB>::new(
        config(10, &consistency),
        data.clone(),
        RunMeta::default(),
        Default::default(),
    )
    .unwrap();
    s.run(Some(&student_dir), &mut Hooks::default()).unwrap();
    let ckpt = student_dir.join("checkpoints/000010/pretrained_model");
    let riptide: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("riptide.json")).unwrap()).unwrap();
    assert_eq!(riptide["kind"], "consistency");
    assert_eq!(riptide["relative_actions"], serde_json::json!([[0, 0]]));
    let student = load_policy(&ckpt, DeviceSpec::Cpu).unwrap();
    assert_eq!(student.spec().relative_actions, vec![(0, 0)]);

    let contradicting = format!("{consistency}\n[data]\nrelative_actions = [[1, 1]]\n");
    let e = Trainer::<TB>::new(config(10, &contradicting), data, RunMeta::default(), Default::default())
        .err()
        .expect("contradicting pairs must fail")
        .to_string();
    assert!(e.contains("[[1, 1]]") && e.contains("[[0, 0]]"), "{e}");
}
