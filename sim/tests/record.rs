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
