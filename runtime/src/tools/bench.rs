//! `riptide bench`: full inferences on random observations, timed after warm-up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use riptide_policies::{load_policy_with, DeviceSpec, LoadOptions, SampleRequest};

use crate::pipeline::tensors::random_window;

#[derive(Debug, serde::Serialize)]
pub struct BenchReport {
    pub checkpoint: String,
    pub backend: String,
    pub kind: String,
    pub batch: usize,
    pub nfe: usize,
    /// Chunks sampled per inference (consensus sampling; 1 = one).
    pub candidates: usize,
    pub iters: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
    pub chunks_per_s: f64,
    pub median_denoise_ms: f64,
    pub median_encode_ms: f64,
}

/// `riptide bench`: latency of full inferences after warm-up (warm-up excluded from the numbers).
pub fn bench(c: &BenchCmd) -> Result<BenchReport> {
    let BenchCmd {
        checkpoint,
        device,
        batch,
        iters,
        warmup,
        steps,
        candidates,
        no_cpu_fusion,
    } = c;
    let (device, batch, iters, warmup, steps, candidates) = (*device, *batch, *iters, *warmup, *steps, *candidates);
    let opts = LoadOptions {
        cpu_fusion: !no_cpu_fusion,
    };
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let mut policy = load_policy_with(checkpoint, device, opts)?;
    let obs = random_window(policy.as_ref(), batch, 0);
    let mut lat = Vec::new();
    let mut den = Vec::new();
    let mut enc = Vec::new();
    let mut nfe = 0;
    for i in 0..warmup + iters {
        let req = SampleRequest {
            seed: Some(i as u64),
            num_inference_steps: steps,
            candidates,
            ..Default::default()
        };
        let t = Instant::now();
        let c = policy.predict(&obs, &req, None)?;
        let dt = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            lat.push(dt);
            den.push(c.meta.timings.denoise_s * 1e3);
            enc.push(c.meta.timings.encode_s * 1e3);
            nfe = c.meta.nfe;
        }
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let median = q(&mut lat, 0.5);
    Ok(BenchReport {
        checkpoint: checkpoint.display().to_string(),
        backend: policy.spec().backend.clone(),
        kind: policy.spec().label(),
        batch,
        nfe,
        candidates: policy.spec().candidates_for(candidates, true)?,
        iters,
        median_ms: median,
        p90_ms: q(&mut lat, 0.9),
        min_ms: q(&mut lat, 0.0),
        chunks_per_s: 1e3 / median,
        median_denoise_ms: q(&mut den, 0.5),
        median_encode_ms: q(&mut enc, 0.5),
    })
}

/// `riptide bench`: its arguments and entry point.
#[derive(clap::Args, Debug)]
pub struct BenchCmd {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 50)]
    pub iters: usize,
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    #[arg(long)]
    pub steps: Option<usize>,
    /// Consensus sampling: chunks per inference (default: the checkpoint's).
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Disable the fused host epilogue on CPU backends (for before/after measurements).
    #[arg(long)]
    pub no_cpu_fusion: bool,
}

impl BenchCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let r = bench(&self)?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        Ok(())
    }
}
