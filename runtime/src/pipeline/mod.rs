//! The one inference pipeline every closed loop runs: the live daemon, its lockstep mode, and the
//! in-process runs of `eval`, `replay --closed-loop` and `record --policy`.
//!
//! decode ([`decode`]) → observation window on the time grid ([`window`]) → request: seed rule, RTI
//! warm start ([`warm`]), EADP guidance ([`guidance`]) → `Policy::predict` → timed chunk ([`chunk`]) →
//! chunk metadata. [`worker`] runs it on its own thread for the live daemon.

pub mod chunk;
pub mod decode;
pub mod guidance;
pub mod input;
pub mod tensors;
pub mod warm;
pub mod window;
pub mod worker;

use std::time::Instant;

use riptide_drivers::{EadpConfig, EadpGuidance};
use riptide_msgs::ros::{ChunkMeta, Time};
use riptide_policies::normalize::FeatureNorm;
use riptide_policies::rti::RtiConfig;
use riptide_policies::{ActionChunk, ObservationWindow, Policy, PolicyError, PolicySpec, SampleRequest};

use crate::pipeline::guidance::{chunk_cost, EadpHook};
use crate::pipeline::warm::WarmStarter;
use crate::pipeline::window::TimedWindow;

/// How each chunk is sampled: the daemon keys `inference_steps`, `candidates`, `[rti]` and `[eadp]`
/// (and the same flags of `riptide eval`).
#[derive(Debug, Clone, Default)]
pub struct Sampling {
    /// Override of the checkpoint's number of denoising steps.
    pub inference_steps: Option<usize>,
    /// RTI warm starts from the previous chunk of the stream.
    pub rti: Option<RtiConfig>,
    /// EADP guidance from the hosted drone driver's controller model ([`guidance`]).
    pub eadp: Option<EadpConfig>,
    /// Consensus sampling: this many chunks per inference, keeping their medoid.
    pub candidates: Option<usize>,
}

/// Where an inference's seed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedRule {
    /// A fresh seed per inference, reported in the chunk metadata (the live daemon).
    Fresh,
    /// Reproducible runs (lockstep): the episode's k-th inference uses
    /// `episode_seed · 0x9E3779B97F4A7C15 + k` (wrapping), so an episode replays exactly.
    Episode(u64),
}

/// One inference's result, with when it ran.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Counts every inference of this pipeline from 0.
    pub id: u64,
    /// Observation time of the window (its newest frame), seconds.
    pub t_obs_s: f64,
    pub chunk: ActionChunk,
    pub started: Instant,
    pub finished: Instant,
    /// With EADP: the controller model's tracking cost of the chunk as sampled.
    pub eadp_cost: Option<f64>,
}

impl Inference {
    pub fn inference_s(&self) -> f64 {
        self.finished.duration_since(self.started).as_secs_f64()
    }
}

/// Stage latencies reported with a chunk, seconds (0 where a path has no such stage).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaTimings {
    pub decode_s: f64,
    pub window_s: f64,
    pub publish_s: f64,
    pub total_s: f64,
}

/// The chunk metadata published next to every chunk, the same on every path.
pub fn chunk_meta(inf: &Inference, t: MetaTimings) -> ChunkMeta {
    ChunkMeta {
        inference_id: inf.id,
        policy_kind: inf.chunk.meta.kind.to_string(),
        nfe: inf.chunk.meta.nfe as u32,
        warm_started: inf.chunk.meta.warm_started,
        seed: inf.chunk.meta.seed,
        obs_stamp: Time::from_secs_f64(inf.t_obs_s),
        decode_s: t.decode_s,
        window_s: t.window_s,
        inference_s: inf.inference_s(),
        publish_s: t.publish_s,
        total_s: t.total_s,
    }
}

/// Statistics of the warm-up inferences run before serving (not part of live statistics).
#[derive(Debug, Clone, Copy, Default)]
pub struct WarmUp {
    pub runs: usize,
    pub last_s: f64,
}

/// The policy and everything one stream of inferences keeps between chunks: the sampling settings,
/// the seed rule, RTI's previous chunk and the EADP guidance model. Owned by the thread that runs the
/// policy (a GPU context lives there).
pub struct Pipeline {
    policy: Box<dyn Policy>,
    spec: PolicySpec,
    sampling: Sampling,
    dt_s: f64,
    warm: Option<WarmStarter>,
    eadp: Option<(EadpGuidance, FeatureNorm)>,
    seeds: SeedRule,
    /// Inferences since the last [`Pipeline::reset`] (the seed rule's k).
    episode_inferences: u64,
    next_id: u64,
}

impl Pipeline {
    /// Check `sampling` against the policy (RTI against its schedule, EADP against its action space)
    /// for a stream with control period `dt_s`.
    pub fn new(policy: Box<dyn Policy>, sampling: Sampling, dt_s: f64) -> anyhow::Result<Self> {
        let spec = policy.spec().clone();
        if let Some(rti) = &sampling.rti {
            rti.validate(&spec, sampling.inference_steps.unwrap_or(spec.default_nfe))?;
        }
        let eadp = match &sampling.eadp {
            Some(e) => {
                let norm = EadpHook::check(&spec, policy.action_norm()).map_err(|e| anyhow::anyhow!("eadp: {e}"))?;
                let guidance = EadpGuidance::new(e.clone()).map_err(|e| anyhow::anyhow!("eadp.{e}"))?;
                Some((guidance, norm.clone()))
            }
            None => None,
        };
        Ok(Self {
            warm: sampling.rti.clone().map(|r| WarmStarter::new(r, dt_s)),
            policy,
            spec,
            sampling,
            dt_s,
            eadp,
            seeds: SeedRule::Fresh,
            episode_inferences: 0,
            next_id: 0,
        })
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// Chunks each inference samples (consensus sampling), as the policy will decide it.
    pub fn candidates(&self) -> usize {
        let plain = self.sampling.rti.is_none() && self.sampling.eadp.is_none();
        self.spec.candidates_for(self.sampling.candidates, plain).unwrap_or(1)
    }

    /// Start a new stream (episode, re-engage): forget the previous chunk, restart the seed rule.
    pub fn reset(&mut self, seeds: SeedRule) {
        self.seeds = seeds;
        self.episode_inferences = 0;
        if let Some(w) = &mut self.warm {
            w.reset();
        }
    }

    /// The request for the next inference on a window observed at `t_obs_s`.
    fn request(&self, t_obs_s: f64) -> SampleRequest {
        let seed = match self.seeds {
            SeedRule::Fresh => None,
            SeedRule::Episode(s) => Some(
                s.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(self.episode_inferences),
            ),
        };
        let req = SampleRequest {
            seed,
            num_inference_steps: self.sampling.inference_steps,
            candidates: self.sampling.candidates,
            ..Default::default()
        };
        match &self.warm {
            Some(w) => w.request(req, t_obs_s),
            None => req,
        }
    }

    /// `runs` inferences shaped like the served ones (steps, candidates) on `window`, so JIT and
    /// autotune costs are paid before the first real chunk and a request the policy refuses fails
    /// start-up. Touches no stream state.
    pub fn warm_up(&mut self, window: &ObservationWindow, runs: usize) -> Result<WarmUp, PolicyError> {
        let mut last_s = 0.0;
        for i in 0..runs {
            let req = SampleRequest {
                seed: Some(i as u64),
                num_inference_steps: self.sampling.inference_steps,
                candidates: self.sampling.candidates,
                ..Default::default()
            };
            let t = Instant::now();
            self.policy.predict(window, &req, None)?;
            last_s = t.elapsed().as_secs_f64();
        }
        Ok(WarmUp { runs, last_s })
    }

    /// Run the policy on `window`: the request (seed rule, warm start), guidance, predict, and what the
    /// next warm start needs.
    pub fn infer(&mut self, window: &TimedWindow) -> Result<Inference, PolicyError> {
        let req = self.request(window.t_obs_s);
        self.episode_inferences += 1;
        let id = self.next_id;
        self.next_id += 1;
        let started = Instant::now();
        let (chunk, eadp_cost) = match &self.eadp {
            Some((g, norm)) => {
                let mut hook = EadpHook::new(g, &self.spec, norm, &window.window, self.dt_s)
                    .map_err(|e| PolicyError::Input(format!("eadp: {e}")))?;
                let chunk = self.policy.predict(&window.window, &req, Some(&mut hook))?;
                let cost = chunk_cost(g, &self.spec, &window.window, &chunk.actions, self.dt_s);
                (chunk, cost)
            }
            None => (self.policy.predict(&window.window, &req, None)?, None),
        };
        let finished = Instant::now();
        if let Some(w) = &mut self.warm {
            w.record(&chunk, &window.window, window.t_obs_s);
        }
        Ok(Inference {
            id,
            t_obs_s: window.t_obs_s,
            chunk,
            started,
            finished,
            eadp_cost,
        })
    }
}
