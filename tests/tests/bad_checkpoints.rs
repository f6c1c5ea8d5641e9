//! Broken checkpoints and inputs get errors that name the problem; nothing panics.

use std::path::{Path, PathBuf};

use riptide_policies::{
    load_policy, read_safetensors, write_safetensors, DeviceSpec, HostTensor, ObservationWindow, SampleRequest,
};
use riptide_tests::fixtures_dir;

fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = fixtures_dir().join("lerobot").join(name);
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (tmp, dst)
}

fn load_err(dir: &Path) -> String {
    match load_policy(dir, DeviceSpec::Cpu) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_tensors(path: &Path, f: impl FnOnce(&mut std::collections::BTreeMap<String, HostTensor>)) {
    let mut t = read_safetensors(path).unwrap();
    f(&mut t);
    write_safetensors(path, &t).unwrap();
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

const FIX: &str = "state_env_ddim_eps";

#[test]
fn missing_and_unexpected_weights_are_listed_by_name() {
    let (_t, dir) = copy_fixture(FIX);
    edit_tensors(&dir.join("model.safetensors"), |t| {
        assert!(t.remove("diffusion.unet.final_conv.1.bias").is_some());
        assert!(t
            .remove("diffusion.unet.down_modules.0.1.conv2.block.1.weight")
            .is_some());
        t.insert("diffusion.unet.bogus_layer.weight".into(), HostTensor::zeros(vec![3]));
    });
    let e = load_err(&dir);
    assert!(e.contains("missing"), "{e}");
    assert!(e.contains("diffusion.unet.final_conv.1.bias"), "{e}");
    assert!(
        e.contains("diffusion.unet.down_modules.0.1.conv2.block.1.weight"),
        "{e}"
    );
    assert!(e.contains("unexpected") && e.contains("bogus_layer"), "{e}");
}

#[test]
fn shape_mismatch_between_config_and_weights_is_reported() {
    let (_t, dir) = copy_fixture(FIX);
    edit_config(&dir, |c| {
        c.insert("kernel_size".into(), serde_json::json!(3));
    });
    let e = load_err(&dir);
    assert!(e.to_lowercase().contains("mismatch"), "{e}");
    assert!(e.contains("conv"), "{e}");
}

#[test]
fn config_without_a_required_field_names_it() {
    let (_t, dir) = copy_fixture(FIX);
    edit_config(&dir, |c| {
        c.remove("horizon");
    });
    let e = load_err(&dir);
    assert!(e.contains("\"horizon\""), "{e}");
    let (_t, dir) = copy_fixture(FIX);
    edit_config(&dir, |c| {
        c.insert("beta_schedule".into(), serde_json::json!("cosine"));
    });
    let e = load_err(&dir);
    assert!(e.contains("beta_schedule") && e.contains("squaredcos_cap_v2"), "{e}");
}

fn stats_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(".safetensors")
        })
        .unwrap_or_else(|| panic!("no {prefix}*.safetensors in {}", dir.display()))
}

#[test]
fn missing_or_non_finite_stats_are_errors() {
    let (_t, dir) = copy_fixture(FIX);
    edit_tensors(&stats_file(&dir, "policy_postprocessor_step_"), |t| {
        t.remove("action.max");
    });
    let e = load_err(&dir);
    assert!(e.contains("\"action\"") && e.contains("\"max\""), "{e}");

    let (_t, dir) = copy_fixture(FIX);
    edit_tensors(&stats_file(&dir, "policy_preprocessor_step_"), |t| {
        let s = t.get_mut("observation.state.min").expect("state min stat");
        s.data[0] = f32::INFINITY;
    });
    let e = load_err(&dir);
    assert!(e.contains("non-finite") && e.contains("observation.state"), "{e}");
}

#[test]
fn missing_directory_or_files_say_what_a_checkpoint_holds() {
    let e = load_err(Path::new("/nonexistent/riptide-checkpoint"));
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn bad_observations_are_rejected_before_the_policy_runs() {
    let dir = fixtures_dir().join("lerobot").join(FIX);
    let mut policy = load_policy(&dir, DeviceSpec::Cpu).unwrap();
    let inputs = read_safetensors(&dir.join("inputs.safetensors")).unwrap();
    let spec = policy.spec().clone();
    let mut obs = ObservationWindow::default();
    for f in &spec.inputs {
        obs.features.insert(f.name.clone(), inputs[&f.name].clone());
    }
    let req = SampleRequest {
        seed: Some(1),
        ..Default::default()
    };
    assert!(policy.predict(&obs, &req, None).is_ok());

    let mut nan = obs.clone();
    nan.features.get_mut("observation.state").unwrap().data[3] = f32::NAN;
    let e = policy.predict(&nan, &req, None).unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("observation.state"), "{e}");

    let mut short = obs.clone();
    let s = short.features.get_mut("observation.state").unwrap();
    *s = s.narrow(1, 0, 1);
    let e = policy.predict(&short, &req, None).unwrap_err().to_string();
    assert!(e.contains("shape") && e.contains("observation.state"), "{e}");

    let mut missing = obs.clone();
    missing.features.remove("observation.environment_state");
    let e = policy.predict(&missing, &req, None).unwrap_err().to_string();
    assert!(e.contains("observation.environment_state"), "{e}");

    let bad_noise = SampleRequest {
        initial_noise: Some(HostTensor::zeros(vec![1, 2, 3])),
        ..Default::default()
    };
    let e = policy.predict(&obs, &bad_noise, None).unwrap_err().to_string();
    assert!(e.contains("initial noise"), "{e}");
}

#[test]
fn cuda_request_without_cuda_build_explains_how_to_rebuild() {
    if riptide_policies::CUDA_COMPILED {
        return; // covered on GPU machines by scripts/gpu-check.sh
    }
    let dir = fixtures_dir().join("lerobot").join(FIX);
    let e = load_policy(&dir, DeviceSpec::Cuda(0))
        .err()
        .expect("no CUDA in this build")
        .to_string();
    assert!(e.contains("--features cuda"), "{e}");
}

/// A CUDA build on a machine without the driver (CI), or asked for a device it does not have, gets an
/// error that says what to do; burn-cuda's own panic never reaches the caller.
#[test]
fn cuda_without_a_driver_or_device_is_an_error_not_a_crash() {
    if !riptide_policies::CUDA_COMPILED {
        return; // the build without CUDA is the test above
    }
    let dir = fixtures_dir().join("lerobot").join(FIX);
    let e = load_policy(&dir, DeviceSpec::Cuda(99))
        .err()
        .expect("no machine has cuda:99")
        .to_string();
    assert!(e.contains("cuda:99") && e.contains("--device cpu"), "{e}");
}
