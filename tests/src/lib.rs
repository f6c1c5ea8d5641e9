//! Cross-crate integration tests (in `tests/`) and the helpers they share: fixture discovery and
//! parity checks against LeRobot's reference outputs.

use std::path::{Path, PathBuf};

use riptide_policies::{DeviceSpec, LoadOptions};

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

pub use riptide_runtime::tools::parity::Parity;

/// Run a fixture on `device` and compare with LeRobot's outputs (`riptide parity`'s check).
pub fn check_fixture(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Parity {
    riptide_runtime::tools::parity::check_fixture(dir, device, opts).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Run a checkpoint on `device` and on burn-flex with the same observations and noise (`riptide parity`'s
/// check for a directory without LeRobot's outputs).
pub fn check_against_cpu(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Parity {
    riptide_runtime::tools::parity::check_against_cpu(dir, device, opts).unwrap_or_else(|e| panic!("{e:#}"))
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
