//! `--device wgpu`: burn's wgpu backend, in CI on the CPU Vulkan driver (mesa lavapipe), so the GPU code path
//! is proven without a GPU. LeRobot's fixtures match LeRobot within the CPU's tolerance, and every shipped
//! policy matches burn-flex on the same observations and noise.
//!
//! Without an adapter (or a build without the `wgpu` feature) these print SKIPPED, and fail instead when
//! `RIPTIDE_REQUIRE_WGPU=1` (`.ci/run` sets it), so CI never skips them silently.

use riptide_policies::{load_policy, DeviceSpec, LoadOptions, SampleRequest};
use riptide_tests::fixtures_dir;

const TOL: f32 = 1e-4;

/// Whether a wgpu adapter is there to test on.
fn wgpu_or_skip() -> bool {
    let adapters = riptide_policies::wgpu_device::adapters();
    let why = if !riptide_policies::WGPU_COMPILED {
        "this build has no wgpu feature (`--features cuda,wgpu`)".to_string()
    } else if adapters.is_empty() {
        "no wgpu adapter: install `mesa-vulkan-drivers libvulkan1` (the CPU Vulkan driver) and set XDG_RUNTIME_DIR"
            .into()
    } else {
        println!("wgpu adapters: {adapters:?}");
        return true;
    };
    assert!(
        std::env::var("RIPTIDE_REQUIRE_WGPU").as_deref() != Ok("1"),
        "RIPTIDE_REQUIRE_WGPU=1 but {why}"
    );
    println!("SKIPPED: {why}");
    false
}

#[test]
fn lerobot_fixtures_match_lerobot_on_wgpu() {
    if !wgpu_or_skip() {
        return;
    }
    let n = crate::lerobot_parity::run_all(
        &fixtures_dir().join("lerobot"),
        DeviceSpec::Wgpu(None),
        LoadOptions::default(),
    );
    assert!(n >= 5, "expected the committed fixtures, found {n}");
}

#[test]
fn shipped_policies_match_burn_flex_on_wgpu() {
    if !wgpu_or_skip() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/shipped");
    let mut checked = 0;
    for name in [
        "arm-reach",
        "arm-reach-consistency",
        "arm-reach-truncated",
        "arm-reach-mode",
        "push-t",
        "quadrotor",
        "quadrotor-truncated",
    ] {
        let dir = root.join(name);
        if !dir.exists() {
            continue;
        }
        let mut cpu = load_policy(&dir, DeviceSpec::Cpu).unwrap();
        let mut gpu = load_policy(&dir, DeviceSpec::Wgpu(None)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let obs = riptide_runtime::pipeline::tensors::random_window_for(cpu.spec(), 2, 11);
        let req = SampleRequest {
            seed: Some(5),
            candidates: Some(1),
            ..Default::default()
        };
        let a = cpu.predict(&obs, &req, None).unwrap();
        let b = gpu
            .predict(&obs, &req, None)
            .unwrap_or_else(|e| panic!("{name} on wgpu: {e}"));
        let err = a.actions_normalized.max_abs_diff(&b.actions_normalized).unwrap();
        println!("{name:<24} wgpu vs burn-flex: max|Δ| normalised {err:.2e}");
        assert!(
            err <= TOL,
            "{name}: wgpu and burn-flex differ by {err} on normalised actions"
        );
        checked += 1;
    }
    assert!(checked >= 6, "{checked} shipped policies checked");
}
