//! `riptide bench`: full inferences on random observations, timed after warm-up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use riptide_policies::{load_policy_with, DeviceSpec, LoadOptions, SampleRequest};

use crate::pipeline::tensors::{random_window, random_window_for};
use crate::pipeline::window::TimedWindow;
use crate::pipeline::{Pipeline, Sampling};

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
    /// Process start → first chunk returned (loading, kernel compilation and the first inference).
    pub first_chunk_s: f64,
    /// Where compiled kernels persist (a directory, or `off`).
    pub kernel_cache: String,
    /// `fused` or `burn` (GPU devices; the CPU runs its own host pass either way).
    pub kernels: String,
    pub precision: String,
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
        robots: _,
        gpu,
    } = c;
    let (device, batch, iters, warmup, steps, candidates) = (*device, *batch, *iters, *warmup, *steps, *candidates);
    let opts = LoadOptions {
        cpu_fusion: !no_cpu_fusion,
        ..gpu.apply()?
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
    let mut first_chunk_s = None;
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
        first_chunk_s.get_or_insert_with(crate::tools::gpu::since_process_start_s);
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
        first_chunk_s: first_chunk_s.unwrap_or(f64::NAN),
        kernel_cache: gpu.cache().to_string(),
        kernels: gpu.kernels.to_string(),
        precision: gpu.precision.to_string(),
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
    /// Run the U-Net through burn's tensor ops instead of the host pass on CPU backends (for
    /// before/after measurements).
    #[arg(long)]
    pub no_cpu_fusion: bool,
    /// Fleet: N robots' windows due at the same instant on one worker, batched (one wave per round)
    /// against sequential (waves of one); a list (`1,2,4,8`) prints one JSON line per N.
    #[arg(long, value_delimiter = ',')]
    pub robots: Vec<usize>,
    #[command(flatten)]
    pub gpu: crate::tools::gpu::GpuArgs,
}

impl BenchCmd {
    pub fn run(self, _rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        if !self.robots.is_empty() {
            return fleet(&self, |line| {
                println!("{}", serde_json::to_string(line).unwrap_or_default())
            });
        }
        let r = bench(&self)?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        Ok(())
    }
}

/// One line of `riptide bench --robots`.
#[derive(Debug, serde::Serialize)]
pub struct FleetReport {
    pub robots: usize,
    pub checkpoint: String,
    pub backend: String,
    pub kind: String,
    pub nfe: usize,
    pub candidates: usize,
    /// Rounds timed (each: every robot's window due at once).
    pub iters: usize,
    pub batched_chunks_per_s: f64,
    pub sequential_chunks_per_s: f64,
    /// batched / sequential throughput.
    pub ratio: f64,
    /// A robot's latency from the round's start to its chunk.
    pub batched_p50_ms: f64,
    pub batched_p99_ms: f64,
    pub sequential_p50_ms: f64,
    pub sequential_p99_ms: f64,
    /// One robot alone on the worker, same run.
    pub single_p99_ms: f64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Per robot latencies (ms) and the rounds' total seconds, `waves` robots at a time per wave.
fn rounds(pipeline: &mut Pipeline, windows: &[TimedWindow], rounds: usize, wave: usize) -> Result<(Vec<f64>, f64)> {
    let mut lat = Vec::with_capacity(rounds * windows.len());
    let t_all = Instant::now();
    for _ in 0..rounds {
        let t0 = Instant::now();
        for (start, part) in windows.chunks(wave).enumerate() {
            let jobs: Vec<(usize, &TimedWindow)> =
                part.iter().enumerate().map(|(i, w)| (start * wave + i, w)).collect();
            for r in pipeline.infer_wave(&jobs) {
                r?;
            }
            let done = t0.elapsed().as_secs_f64() * 1e3;
            lat.extend(std::iter::repeat_n(done, part.len()));
        }
    }
    Ok((lat, t_all.elapsed().as_secs_f64()))
}

/// `riptide bench --robots`: batched against sequential waves for each N, one report per N.
pub fn fleet(c: &BenchCmd, mut line: impl FnMut(&FleetReport)) -> Result<()> {
    if c.iters == 0 || c.robots.contains(&0) {
        bail!("--iters and every --robots value must be at least 1");
    }
    let opts = LoadOptions {
        cpu_fusion: !c.no_cpu_fusion,
        ..c.gpu.apply()?
    };
    let policy = load_policy_with(&c.checkpoint, c.device, opts)?;
    let spec = policy.spec().clone();
    let sampling = Sampling {
        inference_steps: c.steps,
        candidates: c.candidates,
        ..Default::default()
    };
    let mut pipeline = Pipeline::new(policy, sampling.clone(), 0.1)?;
    let most = c.robots.iter().copied().max().unwrap_or(1);
    for _ in 1..most {
        pipeline.add_stream(sampling.clone(), 0.1)?;
    }
    let windows: Vec<TimedWindow> = (0..most)
        .map(|i| TimedWindow {
            window: random_window_for(&spec, c.batch, i as u64),
            t_obs_s: 0.0,
        })
        .collect();
    // Warm-up: every wave size this run uses.
    for &n in &c.robots {
        rounds(&mut pipeline, &windows[..n], c.warmup.max(1), n)?;
    }
    let probe = pipeline.infer(&windows[0])?;
    let (mut single, _) = rounds(&mut pipeline, &windows[..1], c.iters, 1)?;
    let single_p99_ms = percentile(&mut single, 0.99);
    for &n in &c.robots {
        let (mut b, b_s) = rounds(&mut pipeline, &windows[..n], c.iters, n)?;
        let (mut s, s_s) = rounds(&mut pipeline, &windows[..n], c.iters, 1)?;
        let chunks = (n * c.iters) as f64;
        line(&FleetReport {
            robots: n,
            checkpoint: c.checkpoint.display().to_string(),
            backend: spec.backend.clone(),
            kind: spec.label(),
            nfe: probe.chunk.meta.nfe,
            candidates: pipeline.candidates(),
            iters: c.iters,
            batched_chunks_per_s: chunks / b_s,
            sequential_chunks_per_s: chunks / s_s,
            ratio: s_s / b_s,
            batched_p50_ms: percentile(&mut b, 0.5),
            batched_p99_ms: percentile(&mut b, 0.99),
            sequential_p50_ms: percentile(&mut s, 0.5),
            sequential_p99_ms: percentile(&mut s, 0.99),
            single_p99_ms,
        });
    }
    Ok(())
}
