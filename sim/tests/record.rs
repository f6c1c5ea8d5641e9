//! Expert episodes recorded to MCAP read back, step for step, as what the expert did (compared with an
//! independent in-memory rollout of the same seed), with the metadata that makes them replayable.

use riptide_sim::dataset::{read_dir, read_episode};
use riptide_sim::record::record_expert_episode;
use riptide_sim::{make_env, run_expert_episode, ENV_NAMES};

#[test]
fn recorded_episodes_read_back_as_the_expert_rollout() {
    let dir = tempfile::tempdir().unwrap();
    for (i, name) in ENV_NAMES.iter().enumerate() {
        let render = *name == "arm-reach";
        let seed = 40 + i as u64;
        let path = dir.path().join(format!("{name}.mcap"));
        let mut env = make_env(name).unwrap();
        let summary = record_expert_episode(env.as_mut(), seed, &path, render).unwrap();
        let mut env2 = make_env(name).unwrap();
        let reference = run_expert_episode(env2.as_mut(), seed, render);
        assert_eq!(summary.steps, reference.steps);
        assert_eq!(summary.success, reference.success);

        let ep = read_episode(&path).unwrap();
        assert_eq!(ep.env.as_deref(), Some(*name));
        assert_eq!(ep.seed, Some(seed));
        assert_eq!(ep.success, Some(reference.success));
        assert_eq!(ep.fps, env.spec().fps);
        assert_eq!(ep.len(), reference.actions.len());
        for k in 0..ep.len() {
            let want: Vec<f32> = reference.actions[k].iter().map(|v| *v as f32).collect();
            assert_eq!(ep.actions[k], want, "{name} action {k}");
            assert_eq!(ep.state[k], reference.observations[k].state, "{name} state {k}");
            assert_eq!(
                ep.env_state[k], reference.observations[k].env_state,
                "{name} env_state {k}"
            );
            assert!((ep.times_s[k] - k as f64 / ep.fps).abs() < 1e-6);
        }
        if render {
            assert_eq!(ep.images.len(), ep.len());
            assert_eq!(Some(&ep.images[3]), reference.observations[3].image.as_ref());
        } else {
            assert!(ep.images.is_empty());
        }
    }
    assert_eq!(read_dir(dir.path()).unwrap().len(), ENV_NAMES.len());
}

#[test]
fn a_folder_without_episodes_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("no .mcap files"), "{e}");
}

/// Holding past success records the arrival: the same episode, then the expert holding its goal with
/// the tool tip inside the success radius, and coming to rest.
#[test]
fn holding_past_success_records_the_expert_arriving_and_stopping() {
    use riptide_sim::arm_reach::{forward_kinematics, SUCCESS_TOL_M};
    use riptide_sim::record::record_expert_episode_with_hold;
    let dir = tempfile::tempdir().unwrap();
    let (plain, held) = (dir.path().join("plain.mcap"), dir.path().join("held.mcap"));
    let mut env = make_env("arm-reach").unwrap();
    let a = record_expert_episode(env.as_mut(), 7, &plain, false).unwrap();
    let b = record_expert_episode_with_hold(env.as_mut(), 7, &held, false, 10).unwrap();
    assert!(a.success && b.success);
    let (pa, pb) = (read_episode(&plain).unwrap(), read_episode(&held).unwrap());
    assert_eq!(pb.len(), pa.len() + 10, "ten more steps after the success");
    assert_eq!(
        pb.actions[..pa.len()],
        pa.actions[..],
        "the episode itself is unchanged"
    );
    let target = [pb.env_state[0][0] as f64, pb.env_state[0][1] as f64];
    let tip = |k: usize| {
        let q = &pb.state[k];
        forward_kinematics(&[q[0] as f64, q[1] as f64, q[2] as f64])[3]
    };
    for k in pa.len()..pb.state.len() {
        let t = tip(k);
        let d = ((t[0] - target[0]).powi(2) + (t[1] - target[1]).powi(2)).sqrt();
        assert!(d < SUCCESS_TOL_M, "hold frame {k}: tip {d} m from the target");
    }
    let n = pb.state.len();
    let last_move: f32 = (0..3).map(|i| (pb.state[n - 1][i] - pb.state[n - 2][i]).abs()).sum();
    let arrive_move: f32 = (0..3)
        .map(|i| (pb.state[pa.len()][i] - pb.state[pa.len() - 1][i]).abs())
        .sum();
    assert!(
        last_move < 0.2 * arrive_move,
        "the arm comes to rest: {last_move} rad per step at the end vs {arrive_move} on arrival"
    );
    // No hold is the plain recording.
    let c = record_expert_episode_with_hold(env.as_mut(), 7, &dir.path().join("zero.mcap"), false, 0).unwrap();
    assert_eq!(c.steps, a.steps);
}

/// A DART-perturbed recording keeps the expert's commands while the env executes them plus the offsets:
/// re-executing the recorded commands plus the sampler's offsets (same seed) reproduces every recorded
/// state, re-executing them alone does not; a zero sigma records the unperturbed episode.
#[test]
fn perturbed_recordings_keep_the_experts_commands_and_execute_the_offsets() {
    use riptide_sim::record::{record_expert_episode_perturbed, Perturbation};
    let dir = tempfile::tempdir().unwrap();
    for name in ["arm-reach", "quadrotor"] {
        let mut env = make_env(name).unwrap();
        let n = env.spec().action_dim;
        let sigma = if name == "arm-reach" { 0.08 } else { 0.3 };
        let p = Perturbation {
            sigma: vec![sigma; n],
            hold_steps: 5,
            probability: 1.0,
        };
        let seed = 11;
        let path = dir.path().join(format!("{name}-dart.mcap"));
        record_expert_episode_perturbed(env.as_mut(), seed, &path, false, 0, Some(&p)).unwrap();
        let ep = read_episode(&path).unwrap();

        let rollout = |offsets: bool| {
            let mut env = make_env(name).unwrap();
            let mut obs = vec![env.reset(seed).state];
            let mut s = p.sampler(seed);
            for a in &ep.actions {
                let off = s.next_offset().to_vec();
                let cmd: Vec<f64> = a
                    .iter()
                    .zip(&off)
                    .map(|(a, o)| *a as f64 + if offsets { *o } else { 0.0 })
                    .collect();
                obs.push(env.step_no_render(&cmd).state);
            }
            obs
        };
        let with = rollout(true);
        for (k, recorded) in ep.state.iter().enumerate() {
            for (a, b) in recorded.iter().zip(&with[k]) {
                assert!((a - b).abs() < 1e-4, "{name} step {k}: recorded {a}, replayed {b}");
            }
        }
        let without = rollout(false);
        let last = ep.state.len() - 1;
        let moved = ep.state[last]
            .iter()
            .zip(&without[last])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "{name}: the offsets changed nothing ({moved})");

        let zero = Perturbation {
            sigma: vec![0.0; n],
            ..p.clone()
        };
        let (pz, pc) = (dir.path().join("zero.mcap"), dir.path().join("clean.mcap"));
        record_expert_episode_perturbed(env.as_mut(), seed, &pz, false, 0, Some(&zero)).unwrap();
        record_expert_episode(env.as_mut(), seed, &pc, false).unwrap();
        let (z, c) = (read_episode(&pz).unwrap(), read_episode(&pc).unwrap());
        assert_eq!(z.actions, c.actions, "{name}");
        assert_eq!(z.state, c.state, "{name}");
    }
}
