//! MoDE: shapes and input checks, σ-only routing, cached ≡ uncached expert paths, bit-exact
//! checkpoints with named-key errors, and learning a two-mode action distribution.

use std::collections::BTreeMap;
use std::time::Instant;

use riptide_policies::mode::{
    edm_scalings, exponential_sigmas, load, named_tensors, train_mode, untrained_policy, ExpertPath, MoDEConfig,
    MoDEPolicy, MoDETrainConfig,
};
use riptide_policies::train::TrainingSet;
use riptide_policies::{
    read_safetensors, write_safetensors, FeatureKind, HostTensor, InputFeature, ObservationWindow, Policy,
    SampleRequest, StepHook, StepInfo,
};

type B = burn::backend::Flex;
type TB = burn::backend::Autodiff<burn::backend::Flex>;

const HORIZON: usize = 8;
const ACTION_DIM: usize = 2;

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
            shape: vec![1],
        },
    ]
}

fn config() -> MoDEConfig {
    MoDEConfig::new(ACTION_DIM, 3)
        .with_horizon(HORIZON)
        .with_n_action_steps(HORIZON)
        .with_d_model(32)
        .with_n_layers(2)
        .with_n_heads(4)
        .with_n_experts(4)
        .with_top_k(2)
}

/// Constant observation; every episode's actions sit at +1 or at −1 (half the episodes each): a
/// regression to the mean would answer 0, a diffusion policy must answer one of the modes.
fn bimodal_set() -> TrainingSet {
    let mut set = TrainingSet::new(features(), ACTION_DIM).unwrap();
    let len = 12;
    for e in 0..16 {
        let m = if e % 2 == 0 { 1.0 } else { -1.0 };
        let obs = vec![vec![vec![0.1, 0.2]; len], vec![vec![0.3]; len]];
        set.push_episode(&obs, &vec![vec![m; ACTION_DIM]; len]).unwrap();
    }
    set
}

/// A window of `batch` items; item i's state is shifted by `spread·i` (0 = identical observations).
fn window(batch: usize, spread: f32) -> ObservationWindow {
    let mut features = BTreeMap::new();
    let state: Vec<f32> = (0..batch)
        .flat_map(|i| [0.1 + spread * i as f32, 0.2 - spread * i as f32])
        .collect();
    features.insert(
        "observation.state".to_string(),
        HostTensor::new(vec![batch, 1, 2], state).unwrap(),
    );
    features.insert(
        "observation.environment_state".to_string(),
        HostTensor::new(vec![batch, 1, 1], vec![0.3; batch]).unwrap(),
    );
    ObservationWindow { features }
}

fn seeded(seed: u64) -> SampleRequest {
    SampleRequest {
        seed: Some(seed),
        ..Default::default()
    }
}

fn policy() -> MoDEPolicy<B> {
    untrained_policy::<B>(config(), &bimodal_set(), 7, &Default::default()).unwrap()
}

#[test]
fn shapes_metadata_and_hook() {
    struct Count(Vec<usize>);
    impl StepHook for Count {
        fn after_step(&mut self, info: StepInfo, sample: &mut HostTensor) {
            assert_eq!(sample.shape, vec![3, HORIZON, ACTION_DIM]);
            self.0.push(info.t);
        }
    }
    let mut p = policy();
    assert_eq!(p.spec().kind, "mode");
    assert_eq!(p.spec().default_nfe, 10);
    let mut hook = Count(Vec::new());
    let chunk = p.predict(&window(3, 0.05), &seeded(1), Some(&mut hook)).unwrap();
    assert_eq!(chunk.actions.shape, vec![3, HORIZON, ACTION_DIM]);
    assert!(chunk.actions.first_non_finite().is_none());
    assert!(chunk.actions_normalized.data.iter().all(|v| v.abs() <= 1.0));
    assert_eq!(chunk.meta.kind, "mode");
    assert_eq!(chunk.meta.nfe, 10);
    assert_eq!(chunk.meta.seed, 1);
    assert_eq!(hook.0, (0..10).collect::<Vec<_>>());
    let req = SampleRequest {
        num_inference_steps: Some(4),
        ..seeded(1)
    };
    assert_eq!(p.predict(&window(1, 0.0), &req, None).unwrap().meta.nfe, 4);
    // Same seed, same chunk; supplying the seed's own draw as initial noise changes nothing.
    let again = p.predict(&window(3, 0.05), &seeded(1), None).unwrap();
    assert_eq!(again.actions, chunk.actions);
}

#[test]
fn bad_inputs_are_errors() {
    let mut p = policy();
    let mut w = window(2, 0.0);
    w.features.get_mut("observation.state").unwrap().data[1] = f32::NAN;
    let e = p.predict(&w, &seeded(0), None).unwrap_err();
    assert!(e.to_string().contains("non-finite"), "{e}");
    let mut w = window(2, 0.0);
    w.features.insert(
        "observation.state".into(),
        HostTensor::new(vec![2, 1, 3], vec![0.0; 6]).unwrap(),
    );
    assert!(p.predict(&w, &seeded(0), None).is_err());
    let mut w = window(2, 0.0);
    w.features.remove("observation.environment_state");
    assert!(p.predict(&w, &seeded(0), None).is_err());
    let req = SampleRequest {
        initial_noise: Some(HostTensor::zeros(vec![2, HORIZON + 1, ACTION_DIM])),
        ..seeded(0)
    };
    assert!(p.predict(&window(2, 0.0), &req, None).is_err());
    let req = SampleRequest {
        num_inference_steps: Some(0),
        ..seeded(0)
    };
    assert!(p.predict(&window(2, 0.0), &req, None).is_err());
    assert!(MoDEConfig::new(2, 3)
        .with_d_model(30)
        .with_n_heads(4)
        .validate()
        .is_err());
    assert!(MoDEConfig::new(2, 3).with_top_k(5).validate().is_err());
}

#[test]
fn edm_scalings_and_sigma_grid() {
    for s in [1e-4, 0.1, 0.5, 3.0, 80.0] {
        let (c_skip, c_out, c_in) = edm_scalings(s, 0.5);
        // Unit-variance target and input for data of std σ_d.
        assert!((c_skip + c_out * c_out / 0.25 - 1.0).abs() < 1e-12);
        assert!((c_in * c_in * (s * s + 0.25) - 1.0).abs() < 1e-12);
    }
    // D(x, σ → 0) → x.
    let (c_skip, c_out, _) = edm_scalings(1e-8, 0.5);
    assert!((c_skip - 1.0).abs() < 1e-12 && c_out < 1e-7);
    let s = exponential_sigmas(80.0, 0.001, 10);
    assert_eq!((s[0], s[9], s[10]), (80.0, 0.001, 0.0));
    let want = [
        80.0, 22.82, 6.509, 1.857, 0.5296, 0.1511, 0.04309, 0.01229, 0.00351, 0.001, 0.0,
    ];
    for (a, b) in s.iter().zip(want) {
        assert!((a - b).abs() <= 2e-3 * b, "{s:?}");
    }
}

#[test]
fn routing_depends_only_on_sigma() {
    let mut p = policy();
    for step in [0, 4, 9] {
        let per_item = p.experts_per_item(&window(3, 0.3), 10, step).unwrap();
        let cached: Vec<Vec<usize>> = p
            .experts_at(10, step)
            .unwrap()
            .into_iter()
            .map(|l| l.into_iter().map(|(e, _)| e).collect())
            .collect();
        for item in &per_item {
            assert_eq!(item, &cached, "step {step}");
        }
    }
}

/// `policy()` with every norm gain and every bias set away from its initial 1 or 0, so the cache's
/// folds (gain into W_qkv, noise term into the Q, K, V bias) are exercised.
fn perturbed_policy(dir: &std::path::Path) -> MoDEPolicy<B> {
    policy().save(dir).unwrap();
    let path = dir.join("model.safetensors");
    let mut w = read_safetensors(&path).unwrap();
    for (i, (name, t)) in w.iter_mut().enumerate() {
        if name.contains("norm") || name.ends_with("bias") {
            for (j, v) in t.data.iter_mut().enumerate() {
                *v += 0.3 * ((i * 31 + j * 7) as f32).sin();
            }
        }
    }
    write_safetensors(&path, &w).unwrap();
    load::<B>(dir, &Default::default()).unwrap()
}

#[test]
fn cached_matches_uncached() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = perturbed_policy(dir.path());
    for n in [10, 3] {
        let req = SampleRequest {
            num_inference_steps: Some(n),
            ..seeded(42)
        };
        p.set_cached(true);
        let a = p.predict(&window(4, 0.2), &req, None).unwrap();
        for path in [ExpertPath::Routed, ExpertPath::Dense] {
            p.set_expert_path(path);
            let b = p.predict(&window(4, 0.2), &req, None).unwrap();
            let d = a.actions_normalized.max_abs_diff(&b.actions_normalized).unwrap();
            assert!(d < 1e-5, "n = {n}: cached vs {path:?} differ by {d}");
        }
    }
}

#[test]
fn checkpoint_round_trip_and_key_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = policy();
    p.save(dir.path()).unwrap();
    let mut q = load::<B>(dir.path(), &Default::default()).unwrap();
    assert_eq!(named_tensors(&p.model), named_tensors(&q.model));
    assert_eq!(p.stats(), q.stats());
    assert_eq!(p.config, q.config);
    let a = p.predict(&window(2, 0.1), &seeded(5), None).unwrap();
    let b = q.predict(&window(2, 0.1), &seeded(5), None).unwrap();
    assert_eq!(a.actions, b.actions);
    let names: Vec<String> = named_tensors(&p.model).into_keys().collect();
    assert!(
        names.contains(&"blocks.1.experts.2.proj.weight".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"blocks.0.router.fc2.bias".to_string()), "{names:?}");

    let path = dir.path().join("model.safetensors");
    let mut w = read_safetensors(&path).unwrap();
    w.remove("blocks.1.experts.2.proj.weight");
    w.insert("blocks.9.extra".into(), HostTensor::zeros(vec![1]));
    w.insert("head.bias".into(), HostTensor::zeros(vec![5]));
    write_safetensors(&path, &w).unwrap();
    let e = load::<B>(dir.path(), &Default::default()).err().unwrap().to_string();
    assert!(e.contains("missing (1): blocks.1.experts.2.proj.weight"), "{e}");
    assert!(e.contains("blocks.9.extra"), "{e}");
    assert!(e.contains("head.bias"), "{e}");
}

#[test]
fn training_is_deterministic() {
    let cfg = MoDETrainConfig {
        steps: 3,
        batch_size: 8,
        seed: 3,
        ..Default::default()
    };
    let (_, a) = train_mode::<TB>(config(), &cfg, &bimodal_set(), &Default::default()).unwrap();
    let (_, b) = train_mode::<TB>(config(), &cfg, &bimodal_set(), &Default::default()).unwrap();
    assert_eq!(a, b);
}

/// Fractions of chunks within 0.25 (every element) of +1, of −1 and of 0.
fn modes(p: &mut MoDEPolicy<B>) -> (f64, f64, f64) {
    let n = 64;
    let chunk = p.predict(&window(n, 0.0), &seeded(11), None).unwrap();
    let per = HORIZON * ACTION_DIM;
    let near = |m: f32| {
        chunk
            .actions
            .data
            .chunks(per)
            .filter(|c| c.iter().all(|v| (v - m).abs() < 0.25))
            .count() as f64
            / n as f64
    };
    (near(1.0), near(-1.0), near(0.0))
}

fn bimodal(f: (f64, f64, f64)) -> bool {
    f.0 >= 0.15 && f.1 >= 0.15 && f.2 <= 0.1
}

#[test]
fn learns_both_modes() {
    let data = bimodal_set();
    let mut untrained = untrained_policy::<B>(config(), &data, 0, &Default::default()).unwrap();
    let before = modes(&mut untrained);
    assert!(!bimodal(before), "an untrained model must fail the check: {before:?}");

    let t = Instant::now();
    let cfg = MoDETrainConfig {
        steps: 300,
        batch_size: 32,
        lr: 2e-3,
        seed: 0,
        ..Default::default()
    };
    let (mut p, losses) = train_mode::<TB>(config(), &cfg, &data, &Default::default()).unwrap();
    let head: f32 = losses[..20].iter().sum::<f32>() / 20.0;
    let tail: f32 = losses[losses.len() - 20..].iter().sum::<f32>() / 20.0;
    let after = modes(&mut p);
    eprintln!(
        "trained {} steps in {:.1}s: loss {head:.3} → {tail:.3}; near +1/−1/0: {after:?} (untrained {before:?})",
        cfg.steps,
        t.elapsed().as_secs_f64()
    );
    assert!(tail < head, "loss did not fall: {head} → {tail}");
    assert!(
        bimodal(after),
        "samples should cover both modes and avoid the mean: {after:?}"
    );
}

/// `riptide train` with a `[mode]` section writes a checkpoint that `load_policy` opens as kind "mode".
#[test]
fn train_config_mode_section_and_load_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = riptide_policies::TrainConfig::from_toml_str(
        "steps = 20\nbatch_size = 16\n[model]\nn_obs_steps = 1\nhorizon = 8\nn_action_steps = 8\n\
         [mode]\nd_model = 32\nn_layers = 1\nnum_inference_steps = 4\n",
    )
    .unwrap();
    let summary = riptide_policies::train(
        cfg,
        bimodal_set(),
        riptide_policies::RunMeta::default(),
        riptide_policies::DeviceSpec::Cpu,
        dir.path(),
        None,
        &mut riptide_policies::train::Hooks::default(),
    )
    .unwrap();
    assert!(summary.final_loss.is_finite());
    let ckpt = summary.checkpoint.unwrap().join("pretrained_model");
    let mut p = riptide_policies::load_policy(&ckpt, riptide_policies::DeviceSpec::Cpu).unwrap();
    assert_eq!(p.spec().kind, "mode");
    assert_eq!(p.spec().default_nfe, 4);
    let c = p.predict(&window(2, 0.0), &seeded(3), None).unwrap();
    assert_eq!(c.actions.shape, vec![2, HORIZON, ACTION_DIM]);
    assert_eq!(c.meta.nfe, 4);
    // Both kinds in one config is a named error.
    let e = riptide_policies::TrainConfig::from_toml_str("[mode]\n[consistency]\nteacher = \"t\"\n")
        .and_then(|c| c.validate())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[mode]"), "{e}");
}
