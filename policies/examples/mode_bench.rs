//! MoDE inference latency on burn-flex (CPU): cached fused experts vs routing every call (uncached)
//! vs a dense MoE that evaluates every expert.
//!
//! `cargo run -p riptide-policies --example mode_bench [-- <iterations> [shipped|large]]`; prints one JSON
//! object.

use std::collections::BTreeMap;
use std::time::Instant;

use riptide_policies::mode::{untrained_policy, ExpertPath, MoDEConfig, MoDEPolicy};
use riptide_policies::train::TrainingSet;
use riptide_policies::{FeatureKind, HostTensor, InputFeature, ObservationWindow, Policy, SampleRequest};

type B = burn::backend::Flex;

const STATE: usize = 7;
const ENV: usize = 2;
const ACTION: usize = 7;

fn data() -> TrainingSet {
    let features = vec![
        InputFeature {
            name: "observation.state".into(),
            kind: FeatureKind::State,
            shape: vec![STATE],
        },
        InputFeature {
            name: "observation.environment_state".into(),
            kind: FeatureKind::Env,
            shape: vec![ENV],
        },
    ];
    let mut set = TrainingSet::new(features, ACTION).expect("feature layout");
    let len = 32;
    let f = |i: usize, j: usize| ((i * 7 + j * 3) as f32 * 0.37).sin();
    let obs = vec![
        (0..len).map(|i| (0..STATE).map(|j| f(i, j)).collect()).collect(),
        (0..len).map(|i| (0..ENV).map(|j| f(i, j + 11)).collect()).collect(),
    ];
    let actions: Vec<Vec<f32>> = (0..len).map(|i| (0..ACTION).map(|j| f(i, j + 5)).collect()).collect();
    set.push_episode(&obs, &actions).expect("episode");
    set
}

fn window(n_obs: usize) -> ObservationWindow {
    let mut features = BTreeMap::new();
    features.insert(
        "observation.state".to_string(),
        HostTensor::new(vec![1, n_obs, STATE], vec![0.1; n_obs * STATE]).unwrap(),
    );
    features.insert(
        "observation.environment_state".to_string(),
        HostTensor::new(vec![1, n_obs, ENV], vec![0.2; n_obs * ENV]).unwrap(),
    );
    ObservationWindow { features }
}

/// Mean and minimum seconds per inference over `iters` runs after `warmup` runs.
fn time(p: &mut MoDEPolicy<B>, obs: &ObservationWindow, warmup: usize, iters: usize) -> (f64, f64) {
    let req = SampleRequest {
        seed: Some(0),
        ..Default::default()
    };
    for _ in 0..warmup {
        p.predict(obs, &req, None).expect("inference");
    }
    let mut all = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        p.predict(obs, &req, None).expect("inference");
        all.push(t.elapsed().as_secs_f64());
    }
    (
        all.iter().sum::<f64>() / iters as f64,
        all.iter().cloned().fold(f64::INFINITY, f64::min),
    )
}

/// Time the three expert paths of one network shape, interleaved so machine load affects them alike.
fn bench(name: &str, config: MoDEConfig, iters: usize) -> serde_json::Value {
    let t = Instant::now();
    let mut p = untrained_policy::<B>(config.clone(), &data(), 0, &Default::default()).expect("policy");
    let build_s = t.elapsed().as_secs_f64();
    let obs = window(config.n_obs_steps);
    let paths = [ExpertPath::Cached, ExpertPath::Routed, ExpertPath::Dense];
    let mut times: Vec<Vec<(f64, f64)>> = vec![Vec::new(); paths.len()];
    for round in 0..2 {
        for (i, &path) in paths.iter().enumerate() {
            p.set_expert_path(path);
            times[i].push(time(&mut p, &obs, if round == 0 { 3 } else { 1 }, iters / 2));
        }
    }
    let mean = |v: &[(f64, f64)]| v.iter().map(|x| x.0).sum::<f64>() / v.len() as f64;
    let min = |v: &[(f64, f64)]| v.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
    let (c, u, d) = (mean(&times[0]), mean(&times[1]), mean(&times[2]));
    serde_json::json!({
        "name": name,
        "config": {"d_model": config.d_model, "n_layers": config.n_layers, "n_heads": config.n_heads,
                   "n_experts": config.n_experts, "top_k": config.top_k, "horizon": config.horizon,
                   "num_inference_steps": config.num_inference_steps, "batch": 1},
        "num_parameters": p.spec().num_parameters,
        "policy_build_and_cache_s": build_s,
        "iterations_per_path": 2 * (iters / 2),
        "cached_ms": c * 1e3,
        "uncached_ms": u * 1e3,
        "dense_moe_ms": d * 1e3,
        "cached_min_ms": min(&times[0]) * 1e3,
        "uncached_min_ms": min(&times[1]) * 1e3,
        "dense_moe_min_ms": min(&times[2]) * 1e3,
        "ratio_cached_over_uncached": c / u,
        "ratio_cached_over_dense_moe": c / d,
    })
}

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let base = MoDEConfig::new(ACTION, STATE + ENV)
        .with_horizon(16)
        .with_n_action_steps(8);
    // The shape riptide ships (`policies/shipped/train-mode.toml`), then a 40 M-parameter one.
    let shipped = base
        .clone()
        .with_n_obs_steps(2)
        .with_d_model(64)
        .with_n_layers(3)
        .with_n_heads(4);
    let large = base
        .with_n_obs_steps(1)
        .with_d_model(256)
        .with_n_layers(6)
        .with_n_heads(8)
        .with_n_experts(8)
        .with_top_k(2);
    // An optional second argument runs one shape only.
    let only = std::env::args().nth(2);
    let runs: Vec<_> = [("shipped", shipped, iters * 5), ("large", large, iters)]
        .into_iter()
        .filter(|(name, _, _)| only.as_deref().is_none_or(|o| o == *name))
        .map(|(name, config, n)| bench(name, config, n))
        .collect();
    let out = serde_json::json!({"backend": "flex (cpu)", "runs": runs});
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
