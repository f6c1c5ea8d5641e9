//! The whole loop in lockstep simulated time with the shipped arm-reach policy: sim node → zenoh →
//! daemon (policy + hosted driver) → zenoh → sim. It must reproduce, episode for episode, the in-process
//! closed loop (same lockstep pipeline, in-process transport) — so the wire path adds nothing and loses nothing — and the
//! recorded success count. Replay of the recording is deterministic (byte-identical JSON). Shipped push-t
//! runs its consensus-sampling default on that path too.

use std::path::PathBuf;

use riptide_policies::DeviceSpec;
use riptide_runtime::checkpoints::shipped_checkpoint;
use riptide_runtime::tools::demo::{demo, DemoArgs};
use riptide_runtime::tools::eval::ClosedLoop;
use riptide_runtime::tools::replay::{replay, ReplayArgs};

/// Seeds 10015..10018 (a mixed window: 2 of 4 succeed) with the shipped arm-reach policy, and the
/// successes measured when it was committed (update together with policies/shipped/arm-reach).
const SEEDS: u64 = 10015;
const EPISODES: usize = 4;
const RECORDED_SUCCESSES: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zenoh_lockstep_demo_matches_the_in_process_closed_loop_and_replays_deterministically() {
    let ckpt = shipped_checkpoint("arm-reach").expect("the shipped arm-reach policy");
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let report = demo(DemoArgs {
        env: "arm-reach".into(),
        episodes: EPISODES,
        seed: SEEDS,
        device: "cpu".into(),
        checkpoint: None,
        delay_ms: 0.0,
        record: Some(rec.clone()),
        rti_start_step: None,
    })
    .await
    .unwrap();
    assert_eq!(report.episodes.len(), EPISODES);

    let in_process = tokio::task::spawn_blocking(move || {
        let mut cl = ClosedLoop::new(&ckpt, DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
        (0..EPISODES as u64)
            .map(|i| cl.episode(SEEDS + i).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (z, p) in report.episodes.iter().zip(&in_process) {
        assert_eq!(z.seed, p.seed);
        assert_eq!(
            (z.success, z.steps, z.score),
            (p.success, p.steps, p.score),
            "seed {}: zenoh path and in-process closed loop differ",
            z.seed
        );
    }

    // The recording replays (open loop) deterministically, and its commands are the ones executed.
    let files: Vec<PathBuf> = {
        let mut v: Vec<_> = std::fs::read_dir(&rec).unwrap().map(|e| e.unwrap().path()).collect();
        v.retain(|p| p.extension().is_some_and(|e| e == "mcap"));
        v.sort();
        v
    };
    assert_eq!(files.len(), EPISODES);
    let ep0 = riptide_sim::dataset::read_episode(&files[0]).unwrap();
    let cmds: Vec<Vec<f32>> = in_process[0]
        .commands
        .iter()
        .map(|c| c.iter().map(|v| *v as f32).collect())
        .collect();
    assert_eq!(ep0.actions, cmds, "recorded commands = executed commands");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let make = |out: PathBuf| ReplayArgs {
        episodes: files.clone(),
        checkpoint: shipped_checkpoint("arm-reach").unwrap(),
        device: DeviceSpec::Cpu,
        closed_loop: false,
        delay_ms: 0.0,
        out,
    };
    let (args_a, args_b) = (make(a.clone()), make(b.clone()));
    tokio::task::spawn_blocking(move || {
        replay(&args_a, |_, _| {}).unwrap();
        replay(&args_b, |_, _| {}).unwrap();
    })
    .await
    .unwrap();
    let (ja, jb) = (
        std::fs::read(a.join("replay.json")).unwrap(),
        std::fs::read(b.join("replay.json")).unwrap(),
    );
    assert_eq!(ja, jb, "replay is deterministic");
    assert!(std::fs::read_to_string(a.join("replay.html")).unwrap().contains("<svg"));
    let successes = report.episodes.iter().filter(|e| e.success).count();
    println!("{successes} / {EPISODES} successful (seeds {SEEDS}..)");
    assert_eq!(
        successes, RECORDED_SUCCESSES,
        "the recorded success count of the shipped policy"
    );
}

/// RTI warm starts through the whole zenoh lockstep path (the daemon's `[rti]`) equal the in-process
/// closed loop with the same warm-start settings, and they really warm-start: far fewer denoiser
/// evaluations than the cold runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rti_warm_starts_over_zenoh_match_the_in_process_closed_loop() {
    use riptide_policies::rti::RtiConfig;
    use riptide_runtime::pipeline::Sampling;
    let ckpt = shipped_checkpoint("arm-reach").expect("the shipped arm-reach policy");
    let report = demo(DemoArgs {
        env: "arm-reach".into(),
        episodes: 2,
        seed: SEEDS,
        device: "cpu".into(),
        checkpoint: None,
        delay_ms: 0.0,
        record: None,
        rti_start_step: Some(8),
    })
    .await
    .unwrap();
    let (warm, cold) = tokio::task::spawn_blocking(move || {
        let warm_cfg = Sampling {
            inference_steps: None,
            rti: Some(RtiConfig::new(8)),
            ..Default::default()
        };
        let mut w = ClosedLoop::with_sampling(&ckpt, DeviceSpec::Cpu, "arm-reach", 0.0, 0.0, warm_cfg).unwrap();
        let mut c = ClosedLoop::new(&ckpt, DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
        let warm: Vec<_> = (0..2).map(|i| w.episode(SEEDS + i).unwrap()).collect();
        let cold: Vec<_> = (0..2).map(|i| c.episode(SEEDS + i).unwrap()).collect();
        (warm, cold)
    })
    .await
    .unwrap();
    for (z, p) in report.episodes.iter().zip(&warm) {
        assert_eq!(
            (z.success, z.steps, z.score),
            (p.success, p.steps, p.score),
            "seed {}: RTI over zenoh and in-process differ",
            z.seed
        );
    }
    for (w, c) in warm.iter().zip(&cold) {
        // Every chunk after the first of an episode continues its predecessor: 2 evaluations instead of 10.
        assert_eq!(w.warm_starts as usize, w.inferences - 1, "seed {}", w.seed);
        assert_eq!(w.nfe, 10 + 2 * (w.inferences as u64 - 1), "seed {}", w.seed);
        assert_eq!(c.nfe, 10 * c.inferences as u64);
    }
}

/// Every shipped kind runs through the demo's zenoh lockstep path (riptide-only checkpoints included).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_runs_every_shipped_kind() {
    // (env, shipped folder, NFE per chunk of its kind); quadrotor and push-t run the demo's default for the
    // env (push-t's weights are f16).
    for (env, name, kind_nfe) in [
        ("arm-reach", "arm-reach-consistency", 1),
        ("arm-reach", "arm-reach-mode", 10),
        ("arm-reach", "arm-reach-truncated", 2),
        ("quadrotor", "quadrotor", 10),
        ("quadrotor", "quadrotor-truncated", 2),
        ("push-t", "push-t", 10),
    ] {
        let ckpt = shipped_checkpoint(env).unwrap().with_file_name(name);
        let report = demo(DemoArgs {
            env: env.into(),
            episodes: 1,
            seed: SEEDS,
            device: "cpu".into(),
            checkpoint: (name != env).then(|| ckpt.clone()),
            delay_ms: 0.0,
            record: None,
            rti_start_step: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(report.episodes.len(), 1, "{name}");
        assert!(report.episodes[0].steps > 0, "{name}");
        let p = riptide_policies::load_policy(&ckpt, DeviceSpec::Cpu).unwrap();
        assert_eq!(p.spec().default_nfe, kind_nfe, "{name}");
    }
}

/// EADP guidance through the hosted-driver sampling path (`Sampling::eadp`) on the shipped quadrotor
/// policy, gusts on: from the same seeds, guided chunks cost the driver's controller model less than
/// unguided ones, and in the sim (full rigid-body physics, not the model) the drone ends each step
/// closer to its setpoint.
#[test]
fn eadp_guidance_lowers_tracking_cost_and_error_in_the_quadrotor_sim() {
    use riptide_drivers::EadpConfig;
    use riptide_runtime::pipeline::Sampling;
    let ckpt = shipped_checkpoint("quadrotor").expect("the shipped quadrotor policy");
    let run = |scale: f64| {
        let sampling = Sampling {
            inference_steps: None,
            rti: None,
            eadp: Some(EadpConfig {
                scale,
                ..Default::default()
            }),
            candidates: None,
        };
        let mut cl = ClosedLoop::with_sampling(&ckpt, DeviceSpec::Cpu, "quadrotor", 0.0, 0.0, sampling).unwrap();
        let eps: Vec<_> = (0..3).map(|i| cl.episode(SEEDS + i).unwrap()).collect();
        let costs = &cl.lockstep.stats().eadp_costs;
        let j = costs.iter().sum::<f64>() / costs.len() as f64;
        let track = eps.iter().map(|e| e.tracking_error).sum::<f64>() / eps.len() as f64;
        (j, track)
    };
    let (j0, track0) = run(0.0);
    let (j1, track1) = run(1.0);
    println!("model J {j0:.3} → {j1:.3}, sim tracking error {track0:.3} → {track1:.3} m");
    assert!(j1 < 0.7 * j0, "guided chunks cost {j1:.3}, unguided {j0:.3}");
    assert!(
        track1 < track0,
        "tracking error {track0:.3} m unguided, {track1:.3} m guided"
    );
}

/// A standalone sim node (`riptide sim`, the driver's sim back-end) publishes, by default, the
/// environment_state layout the shipped policy for its env was trained on, so `riptide sim` +
/// `riptide run` with a shipped policy work together without flags; and every shipped checkpoint's
/// layout (LeRobot config.json or MoDE's riptide.json) is one the env can serve.
#[test]
fn sim_nodes_default_to_the_shipped_policies_env_layout() {
    use riptide_runtime::checkpoints::{default_env_state_width, env_state_width};
    for env in riptide_sim::ENV_NAMES {
        let ckpt = shipped_checkpoint(env).unwrap();
        let policy = riptide_policies::load_policy(&ckpt, DeviceSpec::Cpu).unwrap();
        let want = riptide_runtime::tools::eval::policy_env_state_width(policy.spec());
        assert_eq!(default_env_state_width(env), want, "{env}");
        let sim = riptide_sim::make_env_for(env, default_env_state_width(env)).unwrap();
        assert_eq!(Some(sim.spec().env_state_dim), want, "{env}");
    }
    let shipped = shipped_checkpoint("arm-reach").unwrap();
    for kind in ["arm-reach-mode", "arm-reach-truncated", "arm-reach-consistency"] {
        let dir = shipped.with_file_name(kind);
        let policy = riptide_policies::load_policy(&dir, DeviceSpec::Cpu).unwrap();
        let w = env_state_width(&dir).unwrap();
        assert_eq!(
            w,
            riptide_runtime::tools::eval::policy_env_state_width(policy.spec()),
            "{kind}"
        );
        riptide_sim::make_env_for("arm-reach", w).unwrap();
    }
}

/// `riptide record --policy` (DAgger): the policy drives the episode exactly as in `riptide eval`, and
/// the file holds the states it visited labelled with the scripted expert's commands at those states —
/// checked against an independent re-execution of the policy's commands in a fresh env, asking the
/// expert at every step.
#[test]
fn dagger_recordings_follow_the_policy_and_hold_the_experts_labels() {
    use riptide_runtime::tools::eval::record_dagger_episode;
    use riptide_sim::dataset::read_episode;
    let ckpt = shipped_checkpoint("arm-reach").expect("the shipped arm-reach policy");
    let dir = tempfile::tempdir().unwrap();
    let mut plain = ClosedLoop::new(&ckpt, DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
    let mut rec = ClosedLoop::new(&ckpt, DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
    // Seeds 10015.. hold a failure and a success (RECORDED_SUCCESSES).
    for seed in [SEEDS, SEEDS + 1, SEEDS + 2] {
        let path = dir.path().join(format!("dagger-{seed}.mcap"));
        let run = plain.episode(seed).unwrap();
        let summary = record_dagger_episode(&mut rec, seed, &path, false, "shipped arm-reach").unwrap();
        assert_eq!(
            (summary.success, summary.steps, summary.score),
            (run.success, run.steps, run.score),
            "seed {seed}: recording changed the rollout"
        );
        let ep = read_episode(&path).unwrap();
        assert_eq!(ep.seed, Some(seed));
        assert_eq!(ep.success, Some(run.success));
        assert_eq!(ep.len(), run.commands.len(), "one expert label per policy step");

        let mut env = riptide_sim::make_env("arm-reach").unwrap();
        let mut state = env.reset(seed).state;
        let mut differs = 0usize;
        for (k, cmd) in run.commands.iter().enumerate() {
            assert_eq!(ep.state[k], state, "seed {seed} step {k}: not the policy's state");
            let expert: Vec<f32> = env.expert_action().iter().map(|v| *v as f32).collect();
            assert_eq!(ep.actions[k], expert, "seed {seed} step {k}: not the expert's command");
            let executed: Vec<f32> = cmd.iter().map(|v| *v as f32).collect();
            differs += (executed != expert) as usize;
            state = env.step_no_render(cmd).state;
        }
        assert!(differs > 0, "seed {seed}: the labels are the policy's own commands");
    }
    // push-t's expert replays a planned path open loop: its labels at the policy's states would be stale.
    let mut pt = ClosedLoop::new(&shipped_checkpoint("push-t").unwrap(), DeviceSpec::Cpu, "push-t", 0.0).unwrap();
    let e = record_dagger_episode(&mut pt, 1, &dir.path().join("pt.mcap"), false, "push-t")
        .unwrap_err()
        .to_string();
    assert!(e.contains("open loop") && e.contains("--perturb"), "{e}");
    assert!(!dir.path().join("pt.mcap").exists());
}

/// The shipped push-t policy samples 8 candidates per inference (riptide.json `sampling.candidates`) and
/// the demo's zenoh path runs that default: on seed 20055 it succeeds in 88 steps there and in process,
/// where one sample per inference runs to the 300-step limit (both recorded when the default was
/// committed, `bench/push-t/2026-11-30-consensus/rep-k8-20000.json`,
/// `bench/push-t/2026-11-30-resume/p4r28-16-s20000.json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_t_runs_its_consensus_default_through_the_zenoh_path() {
    use riptide_runtime::pipeline::Sampling;
    const SEED: u64 = 20055;
    let ckpt = shipped_checkpoint("push-t").unwrap();
    let report = demo(DemoArgs {
        env: "push-t".into(),
        episodes: 1,
        seed: SEED,
        device: "cpu".into(),
        checkpoint: None,
        delay_ms: 0.0,
        record: None,
        rti_start_step: None,
    })
    .await
    .unwrap();
    let z = &report.episodes[0];
    let (k8, k1) = tokio::task::spawn_blocking(move || {
        let run = |k: usize| {
            let sampling = Sampling {
                candidates: Some(k),
                ..Default::default()
            };
            let mut cl = ClosedLoop::with_sampling(&ckpt, DeviceSpec::Cpu, "push-t", 0.0, 0.0, sampling).unwrap();
            cl.episode(SEED).unwrap()
        };
        (run(8), run(1))
    })
    .await
    .unwrap();
    assert_eq!(
        (z.success, z.steps),
        (k8.success, k8.steps),
        "zenoh path vs in-process, 8 candidates"
    );
    assert_eq!((z.success, z.steps), (true, 88), "the recorded 8-candidate episode");
    assert_eq!((k1.success, k1.steps), (false, 300), "the recorded one-sample episode");
}
