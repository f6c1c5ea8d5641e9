//! The `riptide` binary end to end: `infer` reproduces LeRobot's actions from a file, `inspect` reports
//! the checkpoint, and bad requests fail with a message instead of a panic.

use std::path::PathBuf;
use std::process::Command;

use riptide_policies::read_safetensors;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/lerobot")
        .join(name)
}

fn riptide(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn infer_writes_lerobots_actions() {
    infer_on("cpu");
}

/// `riptide infer --device wgpu --out` writes what the CPU writes (burn's wgpu backend on the CPU Vulkan
/// driver in CI; SKIPPED without an adapter unless RIPTIDE_REQUIRE_WGPU=1).
#[test]
fn infer_on_wgpu_writes_lerobots_actions_and_devices_lists_the_adapter() {
    let o = riptide(&["devices"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && s.starts_with("cpu "), "{s}");
    if !s.lines().any(|l| l.starts_with("wgpu:0 ")) {
        assert!(
            std::env::var("RIPTIDE_REQUIRE_WGPU").as_deref() != Ok("1"),
            "RIPTIDE_REQUIRE_WGPU=1 but `riptide devices` lists no wgpu adapter:\n{s}"
        );
        println!("SKIPPED: no wgpu adapter:\n{s}");
        return;
    }
    infer_on("wgpu:0");
    bench_on_wgpu_with_a_kernel_cache();
    let dir = fixture("state_env_ddpm_eps");
    let inputs = dir.join("inputs.safetensors");
    let o = riptide(&[
        "infer",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--device",
        "wgpu:99",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("wgpu:99") && e.contains("riptide devices"),
        "{e}"
    );
}

/// `riptide bench` on wgpu with both kernel sets: the report names the cache, the kernels and the
/// precision, times the first chunk from process start, and the cache directory is where cubecl writes.
fn bench_on_wgpu_with_a_kernel_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kernels");
    for kernels in ["fused", "burn"] {
        let o = riptide(&[
            "bench",
            "--checkpoint",
            fixture("state_env_ddim_eps").to_str().unwrap(),
            "--device",
            "wgpu:0",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--kernels",
            kernels,
            "--kernel-cache",
            cache.to_str().unwrap(),
        ]);
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(r["kernels"], kernels, "{s}");
        assert_eq!(r["precision"], "f32", "{s}");
        assert_eq!(r["kernel_cache"], cache.to_str().unwrap(), "{s}");
        assert!(
            r["backend"].as_str().unwrap().contains(&format!("{kernels} kernels")),
            "{s}"
        );
        let first = r["first_chunk_s"].as_f64().unwrap();
        assert!(first > 0.0 && first < 600.0, "{s}");
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    assert!(
        cache.join("autotune").is_dir(),
        "cubecl's autotune results belong under --kernel-cache"
    );
}

fn infer_on(device: &str) {
    let dir = fixture("state_env_ddpm_eps");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    let o = riptide(&[
        "infer",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--inputs",
        dir.join("inputs.safetensors").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        device,
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("NFE 20"), "{stdout}");
    let got = read_safetensors(&out).unwrap();
    let want = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    for key in ["action", "action.executed"] {
        let err = got[key]
            .max_abs_diff(&want[key])
            .unwrap_or_else(|| panic!("{key}: shape {:?}", got[key].shape));
        let range = want["action"].data.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(err <= 1e-4 * range, "{key}: max error {err}");
    }
}

/// `riptide parity` runs several fixtures in one process, one JSON line each, and fails (after running
/// them all) when one exceeds `--tol` or cannot run, naming it.
#[test]
fn parity_checks_every_fixture_in_one_process_and_names_the_failures() {
    let (a, b) = (fixture("state_env_ddim_eps"), fixture("state_env_ddpm_eps"));
    let o = riptide(&["parity", a.to_str().unwrap(), b.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in &lines {
        let err = l["max_err_normalized"].as_f64().unwrap();
        assert!(err > 0.0 && err <= 1e-4, "{l}");
        assert_eq!(l["backend"], "cpu (burn-flex)");
    }
    let missing = std::env::temp_dir().join("riptide-no-such-fixture");
    let o = riptide(&[
        "parity",
        a.to_str().unwrap(),
        missing.to_str().unwrap(),
        "--tol",
        "1e-9",
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("2 of 2 fixtures failed") && e.contains("state_env_ddim_eps: "),
        "{e}"
    );
    assert!(
        e.contains("riptide-no-such-fixture") && e.contains("config.json"),
        "{e}"
    );
}

/// A checkpoint without LeRobot's outputs (a shipped policy) is checked against burn-flex on the same
/// observations and noise: burn-ndarray agrees, to f32 rounding.
#[test]
fn parity_checks_a_shipped_policy_against_burn_flex() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/shipped/arm-reach-mode");
    let o = riptide(&["parity", dir.to_str().unwrap(), "--device", "ndarray"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let l: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(l["reference"], "burn-flex", "{l}");
    assert_eq!(l["backend"], "cpu (burn-ndarray)", "{l}");
    let err = l["max_err_normalized"].as_f64().unwrap();
    assert!(err <= 1e-4, "{l}");
}

#[test]
fn inspect_reports_the_checkpoint() {
    let o = riptide(&["inspect", fixture("state_env_ddim_eps").to_str().unwrap()]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}");
    for want in [
        "observation.environment_state",
        "DDIM 10 steps",
        "down_dims [32, 64]",
        "executes [1..9)",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
}

#[test]
fn bad_requests_fail_cleanly() {
    let dir = fixture("state_env_ddim_eps");
    let o = riptide(&[
        "infer",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--inputs",
        "/nonexistent.safetensors",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("/nonexistent.safetensors") && !e.contains("panicked"), "{e}");

    let o = riptide(&["inspect", dir.to_str().unwrap(), "--device", "tpu"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cuda:N"));

    // Inputs of another checkpoint: the missing feature is named.
    let other = fixture("state_env_ddim_sample_linear");
    let o = riptide(&[
        "infer",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--inputs",
        other.join("inputs.safetensors").to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("observation.") && !e.contains("panicked"),
        "{e}"
    );

    let out = tempfile::tempdir().unwrap();
    let o = riptide(&[
        "record",
        "--env",
        "arm-reach",
        "--episodes",
        "1",
        "--hold-s=-1",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("--hold-s") && !e.contains("panicked"),
        "{e}"
    );
}

#[test]
fn check_config_validates_against_the_checkpoint_and_names_bad_keys() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/robot.toml");
    let o = riptide(&["check-config", example.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        s.contains("riptide/observation/state") && s.contains("riptide/action/chunk"),
        "{s}"
    );

    // A fleet: every robot checked, its topics under its name.
    let fleet = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet.toml");
    let o = riptide(&["check-config", fleet.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        s.contains("arm1/action/chunk") && s.contains("arm2/observation/state"),
        "{s}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let ckpt = fixture("state_env_ddim_eps");
    let text = text.replace("../tests/fixtures/lerobot/state_env_ddim_eps", ckpt.to_str().unwrap());
    let cases = [
        (text.replace("rate_hz = 2.5", "rate_hzz = 2.5"), "rate_hzz"),
        (text.replace("fps = 10.0", ""), "fps is required"),
        (
            text.replace("[inputs.\"observation.state\"]", "[inputs.\"observation.stat\"]"),
            "observation.stat",
        ),
        (
            text.replace("joint_names = [\"x\", \"y\"]", "joint_names = [\"x\"]"),
            "joint_names",
        ),
        (
            text.replace("type = \"float32_multi_array\"", "type = \"image\""),
            "observation.state",
        ),
        (format!("precision = \"tf32\"\n{text}"), "exact f32"),
        (format!("kernels = \"cudnn\"\n{text}"), "kernels"),
        (format!("kernel_cache = \"\"\n{text}"), "kernel_cache"),
    ];
    // ROS 2 mode: topics by their ROS names, which must be legal; chunks never to a controller.
    let ros2 = text.replace("[trigger]", "[ros2]\nenabled = true\ndomain_id = 4\n\n[trigger]");
    let p = tmp.path().join("ros2.toml");
    std::fs::write(&p, &ros2).unwrap();
    let o = riptide(&["check-config", p.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{s}{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.contains("/riptide/action/chunk") && s.contains("domain 4"), "{s}");
    let cases = [
        cases.to_vec(),
        vec![
            (ros2.replace("namespace = \"riptide\"", "namespace = \"arm-1\""), "'-'"),
            (
                text.replace(
                    "joint_names = [\"x\", \"y\"]",
                    "topic = \"arm_controller/joint_trajectory\"",
                ),
                "jtc",
            ),
        ],
    ]
    .concat();
    for (i, (bad, want)) in cases.iter().enumerate() {
        let p = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, bad).unwrap();
        let o = riptide(&["check-config", p.to_str().unwrap()]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} should fail");
        assert!(e.contains(want) && !e.contains("panicked"), "case {i}: {e}");
    }
}

/// `riptide recover` finishes a recording cut by a crash: the copy is complete and holds every message of the
/// chunks written before the cut; it refuses to overwrite its input.
#[test]
fn recover_finishes_a_cut_recording() {
    use riptide_msgs::mcap::{McapEpisode, McapRecorder, RecorderOptions};
    use riptide_msgs::ros::{Clock, Time};

    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full.mcap");
    let mut rec = McapRecorder::create_with(
        &full,
        RecorderOptions {
            chunk_size: 512,
            max_chunk_age: None,
            sync: false,
        },
    )
    .unwrap();
    for i in 0..200u32 {
        let clock = Clock {
            clock: Time { sec: 0, nanosec: i },
        };
        rec.write("riptide/clock", u64::from(i), &clock).unwrap();
    }
    rec.finish().unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let cut = tmp.path().join("cut.mcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let kept = McapEpisode::open(&cut).unwrap();
    assert!(!kept.is_complete());
    assert!(kept.message_count() > 10, "{}", kept.message_count());

    let out = tmp.path().join("fixed.mcap");
    let o = riptide(&["recover", cut.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains(&format!("kept {} messages", kept.message_count())) && stdout.contains("dropped"),
        "{stdout}"
    );
    let fixed = McapEpisode::open(&out).unwrap();
    fixed.check_complete().unwrap();
    assert_eq!(fixed.message_count(), kept.message_count());
    assert!(fixed.messages().zip(kept.messages()).all(|(a, b)| a == b));

    // Default output next to the input.
    let o = riptide(&["recover", cut.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("cut.recovered.mcap").exists());

    // Never over its own input.
    let o = riptide(&["recover", cut.to_str().unwrap(), "--out", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("overwrite"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&cut).unwrap(), &bytes[..bytes.len() / 2]);
}

/// `riptide run` as a robot starts it: the daemon comes up on a shipped checkpoint, says it is ready,
/// and a SIGTERM stops it cleanly (exit status 0).
#[test]
fn run_serves_until_sigterm() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let checkpoint = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/shipped/arm-reach");
    let mut child = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args([
            "run",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--fps",
            "10",
            "--listen",
        ])
        .arg(format!("tcp/127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log to the end on a thread of its own: a closed pipe would fail the daemon's next write.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let ready = rx.iter().inspect(|l| log.push(l.clone())).any(|l| l.contains("ready:"));
    assert!(ready, "the daemon never said it was ready:\n{}", log.join("\n"));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    log.extend(rx.try_iter());
    assert!(status.success(), "exit {status:?} after SIGTERM:\n{}", log.join("\n"));
}
