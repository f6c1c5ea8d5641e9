//! Cross-crate integration tests (in `tests/`) and the helpers they share: fixture discovery and
//! parity checks against LeRobot's reference outputs.

use std::path::{Path, PathBuf};

use riptide_policies::{load_policy_with, read_safetensors, DeviceSpec, HostTensor, LoadOptions};
use riptide_runtime::pipeline::tensors::request_from_tensors;

/// `tests/fixtures` of the workspace.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Fixture directories (each a LeRobot checkpoint plus inputs/expected) under `root`, sorted.
pub fn fixture_dirs(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("expected.safetensors").exists())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Result of running one fixture through riptide.
pub struct Parity {
    pub name: String,
    /// max |riptide − LeRobot| on normalised actions.
    pub max_err_normalized: f32,
    /// max over dims of max |error| / action range of that dim, unnormalised.
    pub max_err_rel_range: f32,
    /// The same for the executable slice against LeRobot's `generate_actions` output.
    pub exec_err_rel_range: f32,
    /// What the policy says it ran on (backend and, on GPU devices, which kernels).
    pub backend: String,
}

/// Run a fixture on `device` and compare with LeRobot's outputs.
pub fn check_fixture(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Parity {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut policy = load_policy_with(dir, device, opts).unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
    let inputs = read_safetensors(&dir.join("inputs.safetensors")).unwrap();
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    let (obs, req) = request_from_tensors(policy.spec(), inputs, Some(0)).unwrap();
    assert!(req.initial_noise.is_some(), "{name}: fixture lacks `noise`");
    let chunk = policy
        .predict(&obs, &req, None)
        .unwrap_or_else(|e| panic!("{name}: predict failed: {e}"));
    let want_n = &expected["action.normalized"];
    let want = &expected["action"];
    let max_err_normalized = chunk
        .actions_normalized
        .max_abs_diff(want_n)
        .expect("shape of action.normalized");
    let max_err_rel_range = err_rel_range(want, &chunk.actions, want);
    let exec = chunk.executable();
    let want_exec = &expected["action.executed"];
    assert_eq!(exec.shape, want_exec.shape, "{name}: executable slice shape");
    let exec_err_rel_range = err_rel_range(want_exec, &exec, want);
    Parity {
        name,
        backend: policy.spec().backend.clone(),
        max_err_normalized,
        max_err_rel_range,
        exec_err_rel_range,
    }
}

/// max over action dims of max |want − got| / (range of that dim in `reference`).
fn err_rel_range(want: &HostTensor, got: &HostTensor, reference: &HostTensor) -> f32 {
    let d = *want.shape.last().unwrap();
    let col = |t: &HostTensor, j: usize| t.data.iter().skip(j).step_by(d).copied().collect::<Vec<f32>>();
    (0..d)
        .map(|j| {
            let r = col(reference, j);
            let range = r.iter().fold(f32::MIN, |a, b| a.max(*b)) - r.iter().fold(f32::MAX, |a, b| a.min(*b));
            let err = col(want, j)
                .iter()
                .zip(col(got, j))
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            err / range.max(1e-6)
        })
        .fold(0f32, f32::max)
}

/// A free loopback TCP port, picked at run time.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A `std_msgs/Float32MultiArray` holding `v`, CDR-encoded (an observation vector on the wire).
pub fn vector(v: &[f32]) -> Vec<u8> {
    riptide_msgs::encode(&riptide_msgs::ros::Float32MultiArray {
        data: v.to_vec(),
        ..Default::default()
    })
    .expect("a vector encodes")
}

/// A zenoh peer that connects to `tcp/127.0.0.1:PORT` only (no listening, no scouting).
pub async fn client(port: u16) -> zenoh::Session {
    let mut c = zenoh::Config::default();
    c.insert_json5("mode", "\"peer\"").unwrap();
    c.insert_json5("listen/endpoints", "[]").unwrap();
    c.insert_json5("connect/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    c.insert_json5("scouting/multicast/enabled", "false").unwrap();
    zenoh::open(c).await.unwrap()
}

/// The project's Python (`RIPTIDE_PYTHON`, else `<workspace>/.venv/bin/python`) if it can import
/// `modules` (comma separated). Without it: `None` after printing SKIPPED, or a failure when
/// `RIPTIDE_REQUIRE_PY_TOOLS=1` (CI), so an independent check is never silently skipped there.
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let required = std::env::var("RIPTIDE_REQUIRE_PY_TOOLS").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        let msg = format!(
            "{why}; install with `python3 -m venv .venv && .venv/bin/pip install -r tests/py-tools-requirements.txt` \
             or set RIPTIDE_PYTHON"
        );
        assert!(!required, "RIPTIDE_REQUIRE_PY_TOOLS=1 but {msg}");
        println!("SKIPPED: {msg}");
        None
    };
    let python = std::env::var_os("RIPTIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    match std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => skip(format!(
            "{} cannot import {modules}: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )),
        Err(e) => skip(format!("cannot run {}: {e}", python.display())),
    }
}

/// Families as prometheus_client parses `text`: {name: {type, help, samples}}.
pub fn parse_with_prometheus_client(text: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let python = python_with("prometheus_client")?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_prometheus.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run check_prometheus.py");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap() {
        serde_json::Value::Object(m) => Some(m),
        v => panic!("unexpected parser output {v}"),
    }
}
