//! The project's Python for the independent checks: `RIPTIDE_PYTHON`, else `<workspace>/.venv/bin/python`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter if it can import `imports` (a Python import list, e.g. `"mcap, mcap_ros2.decoder"`).
/// `None` (after printing SKIPPED) if unavailable, unless `RIPTIDE_REQUIRE_PY_TOOLS=1` (CI): then a failure,
/// so that an independent check is never skipped silently there.
pub fn python_with(imports: &str) -> Option<PathBuf> {
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
    let python = match std::env::var_os("RIPTIDE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    };
    if !python.exists() && std::env::var_os("RIPTIDE_PYTHON").is_none() {
        return skip(format!("no Python interpreter at {}", python.display()));
    }
    match Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .output()
    {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => skip(format!(
            "{} cannot import {imports}: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        )),
        Err(e) => skip(format!("cannot run {}: {e}", python.display())),
    }
}
