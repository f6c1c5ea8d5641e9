//! riptide's Diffusion Policy against LeRobot's outputs for the same checkpoint, inputs and noise.
//! Fixtures: tests/fixtures/make_lerobot_fixtures.py (LeRobot + diffusers from PyPI).

use riptide_policies::{DeviceSpec, LoadOptions};
use riptide_tests::{check_fixture, fixture_dirs, fixtures_dir};

const TOL: f32 = 1e-4;

pub(crate) fn run_all(root: &std::path::Path, device: DeviceSpec, opts: LoadOptions) -> usize {
    let dirs = fixture_dirs(root);
    for dir in &dirs {
        let p = check_fixture(dir, device, opts);
        println!(
            "{:<36} {} (cpu fusion {}): max|Δ| normalised {:.2e}, unnormalised/range {:.2e}, executed slice/range {:.2e}",
            p.name, p.backend, opts.cpu_fusion, p.max_err_normalized, p.max_err_rel_range, p.exec_err_rel_range
        );
        if matches!(device, DeviceSpec::Wgpu(_) | DeviceSpec::Cuda(_)) {
            let kernels = format!("{} kernels", opts.kernels);
            assert!(
                p.backend.contains(&kernels),
                "{}: ran on {}, not {kernels}",
                p.name,
                p.backend
            );
        }
        assert!(
            p.max_err_normalized <= TOL,
            "{}: normalised actions differ by {}",
            p.name,
            p.max_err_normalized
        );
        assert!(
            p.max_err_rel_range <= TOL,
            "{}: unnormalised actions differ by {} of the range",
            p.name,
            p.max_err_rel_range
        );
        assert!(
            p.exec_err_rel_range <= TOL,
            "{}: executed slice differs by {} of the range",
            p.name,
            p.exec_err_rel_range
        );
    }
    dirs.len()
}

#[test]
fn small_state_env_models_match_lerobot() {
    let n = run_all(&fixtures_dir().join("lerobot"), DeviceSpec::Cpu, LoadOptions::default());
    assert!(n >= 5, "expected the committed fixtures, found {n}");
}

/// The unfused tensor path is what GPU backends run: prove it on the CPU too.
#[test]
fn small_models_match_lerobot_without_cpu_fusion() {
    run_all(
        &fixtures_dir().join("lerobot"),
        DeviceSpec::Cpu,
        LoadOptions {
            cpu_fusion: false,
            ..Default::default()
        },
    );
}

#[test]
fn small_models_match_lerobot_on_ndarray_too() {
    run_all(
        &fixtures_dir().join("lerobot"),
        DeviceSpec::NdArray,
        LoadOptions::default(),
    );
}

/// The resnet18 image models are generated, not committed (≈46 MB each): `.ci/run` builds them.
#[test]
fn image_models_match_lerobot() {
    let root = fixtures_dir().join("generated");
    let n = if root.exists() {
        run_all(&root, DeviceSpec::Cpu, LoadOptions::default())
    } else {
        0
    };
    if n > 0 {
        run_all(
            &root,
            DeviceSpec::Cpu,
            LoadOptions {
                cpu_fusion: false,
                ..Default::default()
            },
        );
    }
    if n == 0 {
        let msg = "image fixtures not generated: run `.venv/bin/python tests/fixtures/make_lerobot_fixtures.py \
                   --only image --out tests/fixtures/generated` (see .ci/run)";
        if std::env::var_os("RIPTIDE_REQUIRE_IMAGE_FIXTURES").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
}

/// Checkpoints stored in half precision (f16 or bf16 `model.safetensors`, as LeRobot users save them to
/// halve downloads) load (they are upcast to f32) and stay close to LeRobot's f32 outputs: the only
/// difference is the weights' rounding.
#[test]
fn half_precision_checkpoints_load_and_stay_close() {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let dirs = fixture_dirs(&fixtures_dir().join("lerobot"));
    assert!(!dirs.is_empty());
    for dir in dirs {
        for (dtype, tol) in [(Dtype::F16, 1e-2f32), (Dtype::BF16, 6e-2)] {
            let tmp = tempfile::tempdir().unwrap();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
            }
            let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
                .tensors()
                .into_iter()
                .map(|(name, v)| {
                    if v.dtype() != Dtype::F32 {
                        return (name, v.dtype(), v.shape().to_vec(), v.data().to_vec());
                    }
                    let half: Vec<u8> = v
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .flat_map(|x| match dtype {
                            Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                            _ => half::bf16::from_f32(x).to_le_bytes(),
                        })
                        .collect();
                    (name, dtype, v.shape().to_vec(), half)
                })
                .collect();
            let views = tensors
                .iter()
                .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
            std::fs::write(
                tmp.path().join("model.safetensors"),
                safetensors::serialize(views, None).unwrap(),
            )
            .unwrap();
            let p = check_fixture(tmp.path(), DeviceSpec::Cpu, LoadOptions::default());
            println!(
                "{:<36} {dtype:?}: max|Δ| normalised {:.2e}, unnormalised/range {:.2e}",
                dir.file_name().unwrap().to_string_lossy(),
                p.max_err_normalized,
                p.max_err_rel_range
            );
            let name = dir.file_name().unwrap().to_string_lossy();
            assert!(
                p.max_err_normalized <= tol,
                "{name} {dtype:?}: {}",
                p.max_err_normalized
            );
            assert!(p.max_err_rel_range <= tol, "{name} {dtype:?}: {}", p.max_err_rel_range);
        }
    }
}
