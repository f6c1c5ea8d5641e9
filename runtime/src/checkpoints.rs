//! Where checkpoints are found. A shipped policy is looked up by name along a search path, first hit
//! wins: `$RIPTIDE_POLICY_DIR`, then `./policies/shipped` (a checkout), then
//! `<exe dir>/../share/riptide/policies` (an installed binary). `--checkpoint DIR` bypasses the search.
//! Weights are never compiled into the binary, and no build-machine path is used at run time.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// Environment variable naming a folder of shipped policies (searched first).
pub const POLICY_DIR_ENV: &str = "RIPTIDE_POLICY_DIR";

/// The folders searched for shipped policies, in order.
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(POLICY_DIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("policies/shipped"));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../share/riptide/policies"));
    }
    dirs
}

/// Whether `dir` holds a checkpoint riptide can load (LeRobot's config.json, or riptide.json for
/// riptide-only kinds).
fn is_checkpoint(dir: &Path) -> bool {
    dir.join("config.json").is_file() || dir.join("riptide.json").is_file()
}

/// The shipped policy called `name` (e.g. `arm-reach`): the first folder of [`search_path`] that has it;
/// a miss lists every path tried.
pub fn shipped_checkpoint(name: &str) -> Result<PathBuf> {
    let tried: Vec<PathBuf> = search_path().into_iter().map(|d| d.join(name)).collect();
    tried.iter().find(|p| is_checkpoint(p)).cloned().ok_or_else(|| {
        anyhow!(
            "no shipped policy {name:?}; looked in {}. Pass --checkpoint DIR, set {POLICY_DIR_ENV} to a folder \
             of policies, or run from a riptide checkout",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `explicit` if given (it must be a checkpoint), else the shipped policy `name`.
pub fn checkpoint_or_shipped(explicit: Option<&Path>, name: &str) -> Result<PathBuf> {
    match explicit {
        Some(dir) if is_checkpoint(dir) => Ok(dir.to_path_buf()),
        Some(dir) => Err(anyhow!(
            "--checkpoint {}: not a checkpoint folder (no config.json or riptide.json)",
            dir.display()
        )),
        None => shipped_checkpoint(name),
    }
}

/// The `environment_state` layout the shipped policy for `env` takes (what a sim node publishes when
/// not told otherwise, so `riptide sim` + `riptide daemon` work together out of the box).
pub fn default_env_state_width(env: &str) -> Option<usize> {
    env_state_width(&shipped_checkpoint(env).ok()?).ok().flatten()
}

/// Width of the checkpoint's `observation.environment_state` input, if any: from LeRobot's config.json
/// `input_features`, or riptide.json's `inputs` for kinds without a config.json (MoDE).
pub fn env_state_width(dir: &Path) -> Result<Option<usize>> {
    let read = |name: &str| -> Result<serde_json::Value> {
        let path = dir.join(name);
        serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?)
            .with_context(|| format!("{}", path.display()))
    };
    let product = |s: &serde_json::Value| {
        s.as_array()
            .map(|s| s.iter().filter_map(|d| d.as_u64()).product::<u64>() as usize)
    };
    if dir.join("config.json").exists() {
        let v = read("config.json")?;
        return Ok(v
            .pointer("/input_features/observation.environment_state/shape")
            .and_then(product));
    }
    let v = read("riptide.json")?;
    Ok(v.get("inputs")
        .and_then(|i| i.as_array())
        .and_then(|i| {
            i.iter()
                .find(|f| f.get("name").and_then(|n| n.as_str()) == Some("observation.environment_state"))
        })
        .and_then(|f| f.get("shape"))
        .and_then(product))
}
