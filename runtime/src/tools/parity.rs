//! `riptide parity`: run LeRobot reference fixtures (a checkpoint with `inputs.safetensors` and LeRobot's
//! `expected.safetensors`) on a device and report how far riptide's chunks are from LeRobot's, every
//! fixture in one process (one device initialisation, one kernel cache, as a daemon would run). Any other
//! checkpoint (a shipped policy, a trained one) is compared with burn-flex, the CPU reference, on the same
//! seeded observations and noise.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use riptide_policies::{load_policy_with, read_safetensors, DeviceSpec, HostTensor, LoadOptions};
use serde::Serialize;

use crate::pipeline::tensors::request_from_tensors;

/// One fixture's distance from LeRobot.
#[derive(Debug, Clone, Serialize)]
pub struct Parity {
    pub name: String,
    /// What the policy says it ran on (backend and, on GPU devices, which kernels).
    pub backend: String,
    /// What it is compared with: `lerobot` (a fixture's recorded outputs) or `burn-flex` (the CPU).
    pub reference: &'static str,
    /// max |riptide − reference| on normalised actions.
    pub max_err_normalized: f32,
    /// max over dims of max |error| / action range of that dim, unnormalised.
    pub max_err_rel_range: f32,
    /// The same for the executable slice against LeRobot's `generate_actions` output.
    pub exec_err_rel_range: f32,
}

impl Parity {
    /// The largest of the three errors.
    pub fn worst(&self) -> f32 {
        self.max_err_normalized
            .max(self.max_err_rel_range)
            .max(self.exec_err_rel_range)
    }
}

fn tensor<'a>(t: &'a std::collections::BTreeMap<String, HostTensor>, key: &str, file: &Path) -> Result<&'a HostTensor> {
    t.get(key)
        .with_context(|| format!("{} has no `{key}` tensor", file.display()))
}

/// The last component of `dir` (the fixture's or checkpoint's name), or the whole path.
fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Run the fixture in `dir` on `device` with its recorded noise and compare with LeRobot's outputs.
pub fn check_fixture(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Result<Parity> {
    let name = dir_name(dir);
    let mut policy = load_policy_with(dir, device, opts).with_context(|| format!("{name}: load failed"))?;
    let (inputs_file, expected_file) = (dir.join("inputs.safetensors"), dir.join("expected.safetensors"));
    let inputs = read_safetensors(&inputs_file).with_context(|| format!("{name}: {}", inputs_file.display()))?;
    let expected = read_safetensors(&expected_file).with_context(|| format!("{name}: {}", expected_file.display()))?;
    let (obs, req) = request_from_tensors(policy.spec(), inputs, Some(0)).with_context(|| format!("{name}: inputs"))?;
    if req.initial_noise.is_none() {
        bail!(
            "{name}: {} lacks `noise`, so LeRobot's draw cannot be replayed",
            inputs_file.display()
        );
    }
    let chunk = policy
        .predict(&obs, &req, None)
        .with_context(|| format!("{name}: inference failed"))?;
    let want_n = tensor(&expected, "action.normalized", &expected_file)?;
    let want = tensor(&expected, "action", &expected_file)?;
    let want_exec = tensor(&expected, "action.executed", &expected_file)?;
    let max_err_normalized = chunk
        .actions_normalized
        .max_abs_diff(want_n)
        .with_context(|| format!("{name}: action.normalized"))?;
    let exec = chunk.executable();
    for (got, want, what) in [(&chunk.actions, want, "action"), (&exec, want_exec, "action.executed")] {
        if got.shape != want.shape {
            bail!("{name}: {what} has shape {:?}, LeRobot's {:?}", got.shape, want.shape);
        }
    }
    Ok(Parity {
        name,
        backend: policy.spec().backend.clone(),
        reference: "lerobot",
        max_err_normalized,
        max_err_rel_range: err_rel_range(want, &chunk.actions, want),
        exec_err_rel_range: err_rel_range(want_exec, &exec, want),
    })
}

/// Run the checkpoint in `dir` on `device` and on burn-flex with the same seeded observations (batch 2)
/// and noise, and compare the chunks.
pub fn check_against_cpu(dir: &Path, device: DeviceSpec, opts: LoadOptions) -> Result<Parity> {
    let name = dir_name(dir);
    let mut cpu = load_policy_with(dir, DeviceSpec::Cpu, opts).with_context(|| format!("{name}: load failed"))?;
    let mut dev = load_policy_with(dir, device, opts).with_context(|| format!("{name}: load on {device} failed"))?;
    let obs = crate::pipeline::tensors::random_window_for(cpu.spec(), 2, 11);
    let req = riptide_policies::SampleRequest {
        seed: Some(5),
        candidates: Some(1),
        ..Default::default()
    };
    let want = cpu
        .predict(&obs, &req, None)
        .with_context(|| format!("{name}: inference on the CPU failed"))?;
    let got = dev
        .predict(&obs, &req, None)
        .with_context(|| format!("{name}: inference on {device} failed"))?;
    let max_err_normalized = got
        .actions_normalized
        .max_abs_diff(&want.actions_normalized)
        .with_context(|| format!("{name}: normalised actions"))?;
    let (want_exec, got_exec) = (want.executable(), got.executable());
    for (g, w, what) in [
        (&got.actions, &want.actions, "action"),
        (&got_exec, &want_exec, "action.executed"),
    ] {
        if g.shape != w.shape {
            bail!(
                "{name}: {what} has shape {:?} on {device}, {:?} on the CPU",
                g.shape,
                w.shape
            );
        }
    }
    Ok(Parity {
        name,
        backend: dev.spec().backend.clone(),
        reference: "burn-flex",
        max_err_normalized,
        max_err_rel_range: err_rel_range(&want.actions, &got.actions, &want.actions),
        exec_err_rel_range: err_rel_range(&want_exec, &got_exec, &want.actions),
    })
}

/// max over action dims of max |want − got| / (range of that dim in `reference`).
fn err_rel_range(want: &HostTensor, got: &HostTensor, reference: &HostTensor) -> f32 {
    let d = want.shape.last().copied().unwrap_or(1).max(1);
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

#[derive(clap::Args, Debug)]
pub struct ParityCmd {
    /// Fixture directories: a LeRobot checkpoint with `inputs.safetensors` (observations and `noise`)
    /// and `expected.safetensors` (`action`, `action.normalized`, `action.executed`), checked against
    /// LeRobot's outputs; any other checkpoint directory is checked against burn-flex on the same
    /// observations and noise.
    #[arg(required = true)]
    pub fixtures: Vec<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// The largest error allowed (normalised actions, and unnormalised per action range).
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f32,
    #[command(flatten)]
    pub gpu: crate::tools::gpu::GpuArgs,
}

impl ParityCmd {
    /// One JSON line per fixture; fails (after every fixture ran) when one failed or exceeded `tol`.
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> Result<()> {
        let opts = self.gpu.apply()?;
        let mut bad = Vec::new();
        for dir in &self.fixtures {
            let checked = match dir.join("expected.safetensors").exists() {
                true => check_fixture(dir, self.device, opts),
                false => check_against_cpu(dir, self.device, opts),
            };
            match checked {
                Ok(p) => {
                    println!("{}", serde_json::to_string(&p)?);
                    if p.worst() > self.tol {
                        bad.push(format!("{}: {:.2e} > {:.0e}", p.name, p.worst(), self.tol));
                    }
                }
                Err(e) => {
                    println!("{}", serde_json::json!({ "fixture": dir, "error": format!("{e:#}") }));
                    bad.push(format!("{}: {e:#}", dir.display()));
                }
            }
        }
        if !bad.is_empty() {
            bail!(
                "{} of {} fixtures failed:\n  {}",
                bad.len(),
                self.fixtures.len(),
                bad.join("\n  ")
            );
        }
        Ok(())
    }
}
