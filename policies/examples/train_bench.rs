//! Training throughput of the shipped state-only U-Net (`policies/shipped/train-state.toml`) on
//! burn-flex: wall time of `Trainer::train_step` at batch 64 on synthetic arm-reach-shaped data
//! (3 joints + 5 task values in, 3 joint targets out).
//!
//! `cargo run -p riptide-policies --example train_bench [-- <steps>]`; prints one JSON object.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use riptide_policies::train::{RunMeta, TrainConfig, Trainer, TrainingSet};
use riptide_policies::{FeatureKind, InputFeature};

type TB = burn::backend::Autodiff<burn::backend::Flex>;

fn data() -> TrainingSet {
    let features = vec![
        InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![3],
        },
        InputFeature {
            name: "observation.environment_state".into(),
            kind: FeatureKind::Env,
            shape: vec![5],
        },
    ];
    let mut set = TrainingSet::new(features, 3).expect("feature layout");
    let mut rng = StdRng::seed_from_u64(0);
    for _ in 0..64 {
        let len = 40;
        let task: Vec<f32> = (0..5).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut q = [0.0f32; 3];
        let (mut state, mut actions) = (Vec::new(), Vec::new());
        for _ in 0..len {
            state.push(q.to_vec());
            for (j, v) in q.iter_mut().enumerate() {
                *v += 0.1 * (task[j] - *v);
            }
            actions.push(q.to_vec());
        }
        set.push_episode(&[state, vec![task; len]], &actions).expect("episode");
    }
    set
}

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let toml = include_str!("../shipped/train-state.toml");
    let cfg = TrainConfig::from_toml_str(toml).expect("shipped config");
    let batch = cfg.batch_size;
    let mut trainer = Trainer::<TB>::new(cfg, data(), RunMeta::default(), Default::default()).expect("trainer");
    for _ in 0..3 {
        trainer.train_step().expect("warm-up step");
    }
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        trainer.train_step().expect("step");
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[steps / 2];
    let out = serde_json::json!({
        "backend": "flex (cpu), autodiff",
        "config": "policies/shipped/train-state.toml",
        "batch": batch,
        "steps": steps,
        "median_step_ms": median * 1e3,
        "mean_step_ms": times.iter().sum::<f64>() / steps as f64 * 1e3,
        "steps_per_s": 1.0 / median,
        "samples_per_s": batch as f64 / median,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
