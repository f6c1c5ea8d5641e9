//! Lockstep execution in simulated time: observation frames stamped t_k in, one command for t_k out,
//! with the same pieces the live path uses (window on the time grid, policy, chunk timing with the
//! inference delay, the driver's executor + safety envelope + supervisor). Deterministic: inference
//! seeds derive from the episode seed and the inference index, and nothing reads the wall clock.
//!
//! Used by closed-loop replay and evaluation (in-process) and by the daemon's lockstep mode (over
//! zenoh, with `riptide sim --lockstep`).

use std::time::Instant;

use anyhow::{anyhow, Result};
use riptide_drivers::{Chunk, ChunkPoint, Driver, DriverConfig, EadpConfig, EadpGuidance};
use riptide_policies::normalize::FeatureNorm;
use riptide_policies::rti::RtiConfig;
use riptide_policies::{Policy, PolicySpec, SampleRequest};

use crate::chunk::time_chunk;
use crate::guidance::{chunk_cost, EadpHook};
use crate::warm::WarmStarter;
use crate::window::{Frame, WindowBuilder};

/// Lockstep settings.
#[derive(Debug, Clone)]
pub struct LockstepConfig {
    /// Control period (1 / fps of the policy's data).
    pub dt_s: f64,
    /// Simulated inference delay: actions due before t_obs + delay are dropped and the previous chunk
    /// keeps running meanwhile (Chi's latency compensation).
    pub delay_s: f64,
    /// Infer when less than this much of the current chunk is left (seconds of simulated time). The
    /// default, 0, infers when the queue has run out (one chunk of n_action_steps at a time).
    pub queue_threshold_s: f64,
    pub driver: DriverConfig,
    pub sampling: Sampling,
}

/// How each chunk is sampled (the daemon's `inference_steps` and `[rti]`).
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    /// Override of the checkpoint's number of denoising steps.
    pub inference_steps: Option<usize>,
    /// RTI warm starts from the previous chunk of the episode.
    pub rti: Option<RtiConfig>,
    /// EADP guidance from the hosted drone driver's controller model (`crate::guidance`).
    pub eadp: Option<EadpConfig>,
    /// Consensus sampling: this many chunks per inference, keeping their medoid (`riptide_policies::consensus`).
    pub candidates: Option<usize>,
}

/// What happened at one step.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub inferred: bool,
    pub warm_started: bool,
    pub nfe: usize,
    pub inference_s: f64,
}

/// Policy + window + driver in simulated time.
pub struct Stepper {
    policy: Box<dyn Policy>,
    spec: PolicySpec,
    cfg: LockstepConfig,
    builder: WindowBuilder,
    driver: Driver,
    episode_seed: u64,
    inferences: u64,
    /// Wall-clock inference latencies of this stepper (all episodes).
    pub inference_s: Vec<f64>,
    pub nfe_total: u64,
    pub warm_starts: u64,
    warm: Option<WarmStarter>,
    /// Every chunk's full-horizon actions (batch 0) with the observation time they came from.
    pub chunks: Vec<(f64, Vec<Vec<f32>>)>,
    /// EADP guidance and the policy's action normalisation it works through.
    eadp: Option<(EadpGuidance, FeatureNorm)>,
    /// With `sampling.eadp`: the controller model's tracking cost of each chunk as sampled
    /// (batch 0, the executed part; `scale = 0` measures unguided chunks with the same model).
    pub eadp_costs: Vec<f64>,
}

impl Stepper {
    pub fn new(policy: Box<dyn Policy>, cfg: LockstepConfig) -> Result<Self> {
        let spec = policy.spec().clone();
        let builder = Self::builder(&spec, cfg.dt_s);
        let driver = Driver::new(cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        if let Some(rti) = &cfg.sampling.rti {
            let n = cfg.sampling.inference_steps.unwrap_or(spec.default_nfe);
            rti.validate(&spec, n)?;
        }
        let warm = cfg.sampling.rti.clone().map(|r| WarmStarter::new(r, cfg.dt_s));
        let eadp = match &cfg.sampling.eadp {
            Some(e) => {
                let norm = EadpHook::check(&spec, policy.action_norm()).map_err(|e| anyhow!("eadp: {e}"))?;
                let guidance = EadpGuidance::new(e.clone()).map_err(|e| anyhow!("eadp.{e}"))?;
                Some((guidance, norm.clone()))
            }
            None => None,
        };
        Ok(Self {
            policy,
            spec,
            cfg,
            builder,
            driver,
            episode_seed: 0,
            inferences: 0,
            inference_s: vec![],
            nfe_total: 0,
            warm_starts: 0,
            warm,
            chunks: vec![],
            eadp,
            eadp_costs: vec![],
        })
    }

    fn builder(spec: &PolicySpec, dt_s: f64) -> WindowBuilder {
        // Staleness cannot happen in lockstep (every frame is on the grid); keep the gate generous.
        WindowBuilder::new(
            spec.n_obs_steps,
            dt_s,
            spec.inputs.iter().map(|f| (f.name.clone(), f.shape.clone(), 1e9)),
        )
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// Start an episode: clear history, engage the driver at the device's position at time `t0_s`.
    pub fn reset(&mut self, episode_seed: u64, position: &[f64], t0_s: f64) -> Result<()> {
        self.builder = Self::builder(&self.spec, self.cfg.dt_s);
        self.driver = Driver::new(self.cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
        self.driver
            .engage(position, t0_s)
            .map_err(|e| anyhow!("cannot engage at {position:?}: {e}"))?;
        self.episode_seed = episode_seed;
        self.inferences = 0;
        if let Some(w) = &mut self.warm {
            w.reset();
        }
        Ok(())
    }

    /// Add one observation frame (already decoded to the feature's flat f32 layout).
    pub fn push(&mut self, feature: &str, stamp_s: f64, data: Vec<f32>) {
        self.builder.push(
            feature,
            Frame {
                stamp_s,
                data: std::sync::Arc::new(data),
            },
        );
    }

    /// The command for time `t_s` (after the frames stamped `t_s` were pushed); infers when needed.
    pub fn step(&mut self, t_s: f64) -> Result<(Vec<f64>, StepReport)> {
        let mut report = StepReport::default();
        if self.driver.queued_s(t_s) <= self.cfg.queue_threshold_s + 1e-9 {
            let tw = self
                .builder
                .build(t_s)
                .map_err(|e| anyhow!("window at t = {t_s:.3}: {e}"))?;
            let mut req = SampleRequest {
                seed: Some(
                    self.episode_seed
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(self.inferences),
                ),
                num_inference_steps: self.cfg.sampling.inference_steps,
                candidates: self.cfg.sampling.candidates,
                ..Default::default()
            };
            if let Some(w) = &self.warm {
                req = w.request(req, tw.t_obs_s);
            }
            self.inferences += 1;
            let t = Instant::now();
            let chunk = match &self.eadp {
                Some((g, norm)) => {
                    let mut hook = EadpHook::new(g, &self.spec, norm, &tw.window, self.cfg.dt_s)
                        .map_err(|e| anyhow!("eadp: {e}"))?;
                    let chunk = self.policy.predict(&tw.window, &req, Some(&mut hook))?;
                    if let Some(j) = chunk_cost(g, &self.spec, &tw.window, &chunk.actions, self.cfg.dt_s) {
                        self.eadp_costs.push(j);
                    }
                    chunk
                }
                None => self.policy.predict(&tw.window, &req, None)?,
            };
            report.inference_s = t.elapsed().as_secs_f64();
            report.inferred = true;
            report.nfe = chunk.meta.nfe;
            report.warm_started = chunk.meta.warm_started;
            self.warm_starts += chunk.meta.warm_started as u64;
            if let Some(w) = &mut self.warm {
                w.record(&chunk, &tw.window, tw.t_obs_s);
            }
            self.inference_s.push(report.inference_s);
            self.nfe_total += chunk.meta.nfe as u64;
            let d = self.spec.action_dim;
            let h = chunk.actions.shape[1];
            self.chunks.push((
                tw.t_obs_s,
                (0..h)
                    .map(|i| chunk.actions.data[i * d..(i + 1) * d].to_vec())
                    .collect(),
            ));
            // Simulated delay: what would be due before the chunk could arrive is dropped.
            if let Some(timed) = time_chunk(
                &chunk,
                self.spec.n_obs_steps,
                tw.t_obs_s,
                self.cfg.dt_s,
                tw.t_obs_s + self.cfg.delay_s - 1e-9,
            ) {
                let c = Chunk {
                    t0_s: timed.start_s,
                    points: timed
                        .points
                        .iter()
                        .map(|(dt, a)| ChunkPoint {
                            time_from_start_s: *dt,
                            position: a.iter().map(|v| *v as f64).collect(),
                        })
                        .collect(),
                };
                if let Err(e) = self.driver.on_chunk(&c, t_s) {
                    tracing::debug!("chunk rejected by the driver: {e}");
                }
            }
        }
        let cmd = self.driver.step(t_s);
        let p = cmd
            .position()
            .ok_or_else(|| anyhow!("the driver has no command at t = {t_s:.3} ({:?})", self.driver.state()))?;
        Ok((p.to_vec(), report))
    }

    pub fn driver(&self) -> &Driver {
        &self.driver
    }
}
