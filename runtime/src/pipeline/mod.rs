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
use riptide_policies::{ActionChunk, ObservationWindow, Policy, PolicyError, PolicySpec, SampleRequest, WaveRow};

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

/// What one stream of inferences (a robot) keeps between chunks: its sampling settings, seed rule,
/// RTI's previous chunk and the EADP guidance model.
struct Stream {
    sampling: Sampling,
    dt_s: f64,
    warm: Option<WarmStarter>,
    eadp: Option<(EadpGuidance, FeatureNorm)>,
    seeds: SeedRule,
    /// Inferences since the last reset (the seed rule's k).
    episode_inferences: u64,
    next_id: u64,
}

impl Stream {
    /// The request for the stream's next inference on a window observed at `t_obs_s`.
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
}

/// The policy and the streams of inferences it serves (one per robot; remote queries keep none).
/// Owned by the thread that runs the policy (a GPU context lives there).
pub struct Pipeline {
    policy: Box<dyn Policy>,
    spec: PolicySpec,
    streams: Vec<Stream>,
}

/// Which stream a window belongs to ([`Pipeline::add_stream`]; the first is 0).
pub type StreamId = usize;

/// A remote query of a wave: the stream whose settings it runs with, its observations and request.
pub type WaveQuery<'a> = (StreamId, &'a ObservationWindow, SampleRequest);

/// What a wave gives: one result per window, then one per query.
pub type WaveResults = (
    Vec<Result<Inference, PolicyError>>,
    Vec<Result<ActionChunk, PolicyError>>,
);

impl Pipeline {
    /// The policy with its first stream: `sampling` checked against the policy (RTI against its
    /// schedule, EADP against its action space) for a control period of `dt_s`.
    pub fn new(policy: Box<dyn Policy>, sampling: Sampling, dt_s: f64) -> anyhow::Result<Self> {
        let spec = policy.spec().clone();
        let mut p = Self {
            policy,
            spec,
            streams: Vec::new(),
        };
        p.add_stream(sampling, dt_s)?;
        Ok(p)
    }

    /// Another stream (robot) on the same policy, with its own settings and state.
    pub fn add_stream(&mut self, sampling: Sampling, dt_s: f64) -> anyhow::Result<StreamId> {
        let spec = &self.spec;
        if let Some(rti) = &sampling.rti {
            rti.validate(spec, sampling.inference_steps.unwrap_or(spec.default_nfe))?;
        }
        let eadp = match &sampling.eadp {
            Some(e) => {
                let norm =
                    EadpHook::check(spec, self.policy.action_norm()).map_err(|e| anyhow::anyhow!("eadp: {e}"))?;
                let guidance = EadpGuidance::new(e.clone()).map_err(|e| anyhow::anyhow!("eadp.{e}"))?;
                Some((guidance, norm.clone()))
            }
            None => None,
        };
        self.streams.push(Stream {
            warm: sampling.rti.clone().map(|r| WarmStarter::new(r, dt_s)),
            sampling,
            dt_s,
            eadp,
            seeds: SeedRule::Fresh,
            episode_inferences: 0,
            next_id: 0,
        });
        Ok(self.streams.len() - 1)
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The first stream's sampling settings.
    pub fn sampling(&self) -> &Sampling {
        &self.streams[0].sampling
    }

    /// Chunks each inference of the first stream samples (consensus sampling), as the policy will decide it.
    pub fn candidates(&self) -> usize {
        let s = &self.streams[0].sampling;
        let plain = s.rti.is_none() && s.eadp.is_none();
        self.spec.candidates_for(s.candidates, plain).unwrap_or(1)
    }

    /// Start a new stream of the first stream's robot (episode, re-engage): forget the previous chunk,
    /// restart the seed rule.
    pub fn reset(&mut self, seeds: SeedRule) {
        self.reset_stream(0, seeds);
    }

    /// [`Pipeline::reset`] of stream `id`.
    pub fn reset_stream(&mut self, id: StreamId, seeds: SeedRule) {
        let s = &mut self.streams[id];
        s.seeds = seeds;
        s.episode_inferences = 0;
        if let Some(w) = &mut s.warm {
            w.reset();
        }
    }

    /// `runs` inferences shaped like the first stream's (steps, candidates) on `window`, so JIT and
    /// autotune costs are paid before the first real chunk and a request the policy refuses fails
    /// start-up. Touches no stream state.
    pub fn warm_up(&mut self, window: &ObservationWindow, runs: usize) -> Result<WarmUp, PolicyError> {
        let mut last_s = 0.0;
        let s = &self.streams[0].sampling;
        for i in 0..runs {
            let req = SampleRequest {
                seed: Some(i as u64),
                num_inference_steps: s.inference_steps,
                candidates: s.candidates,
                ..Default::default()
            };
            let t = Instant::now();
            self.policy.predict(window, &req, None)?;
            last_s = t.elapsed().as_secs_f64();
        }
        Ok(WarmUp { runs, last_s })
    }

    /// Run the policy on the first stream's `window` (see [`Pipeline::infer_wave`]).
    pub fn infer(&mut self, window: &TimedWindow) -> Result<Inference, PolicyError> {
        self.infer_wave(&[(0, window)]).pop().expect("one result per window")
    }

    /// Run the policy on windows of several streams due together (a wave); see [`Pipeline::run_wave`].
    pub fn infer_wave(&mut self, windows: &[(StreamId, &TimedWindow)]) -> Vec<Result<Inference, PolicyError>> {
        self.run_wave(windows, Vec::new()).0
    }

    /// Streams this pipeline serves.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// One wave: windows of several streams and remote queries due together. Each stream's request (seed
    /// rule, warm start), the queries as cold starts with their stream's settings, one batched
    /// `predict_wave` over every row that can share a batch (guided rows run alone with their stream's
    /// hook), and what each stream's next warm start needs. Results in order.
    pub fn run_wave(&mut self, windows: &[(StreamId, &TimedWindow)], queries: Vec<WaveQuery<'_>>) -> WaveResults {
        let (reqs, ids): (Vec<SampleRequest>, Vec<u64>) = windows
            .iter()
            .map(|(id, w)| {
                let s = &mut self.streams[*id];
                let req = s.request(w.t_obs_s);
                s.episode_inferences += 1;
                s.next_id += 1;
                (req, s.next_id - 1)
            })
            .unzip();
        // Per window: its chunk, EADP cost and when its inference started.
        type Row = Result<(ActionChunk, Option<f64>, Instant), PolicyError>;
        let mut out: Vec<Option<Row>> = (0..windows.len()).map(|_| None).collect();
        // Guided rows: each with its stream's hook.
        for (i, (id, w)) in windows.iter().enumerate() {
            if let Some((g, norm)) = &self.streams[*id].eadp {
                let t = Instant::now();
                let dt_s = self.streams[*id].dt_s;
                let r = EadpHook::new(g, &self.spec, norm, &w.window, dt_s)
                    .map_err(|e| PolicyError::Input(format!("eadp: {e}")))
                    .and_then(|mut hook| self.policy.predict(&w.window, &reqs[i], Some(&mut hook)))
                    .map(|chunk| {
                        let cost = chunk_cost(g, &self.spec, &w.window, &chunk.actions, dt_s);
                        (chunk, cost, t)
                    });
                out[i] = Some(r);
            }
        }
        let asks: Vec<SampleRequest> = queries
            .iter()
            .map(|(id, _, r)| {
                let s = &self.streams[(*id).min(self.streams.len() - 1)].sampling;
                SampleRequest {
                    num_inference_steps: s.inference_steps,
                    candidates: s.candidates,
                    ..r.clone()
                }
            })
            .collect();
        let plain: Vec<usize> = (0..windows.len()).filter(|i| out[*i].is_none()).collect();
        let rows: Vec<WaveRow<'_>> = plain
            .iter()
            .map(|&i| WaveRow {
                obs: &windows[i].1.window,
                req: &reqs[i],
            })
            .chain(queries.iter().zip(&asks).map(|((_, obs, _), req)| WaveRow { obs, req }))
            .collect();
        let started = Instant::now();
        let mut results = if rows.is_empty() {
            Vec::new()
        } else {
            self.policy.predict_wave(&rows)
        };
        let answers = results.split_off(plain.len());
        for (i, r) in plain.into_iter().zip(results) {
            out[i] = Some(r.map(|c| (c, None, started)));
        }
        let finished = Instant::now();
        let inferences = windows
            .iter()
            .zip(out)
            .zip(ids)
            .map(|(((stream, w), r), id)| {
                let (chunk, eadp_cost, started) = r.expect("every row answered")?;
                if let Some(warm) = &mut self.streams[*stream].warm {
                    warm.record(&chunk, &w.window, w.t_obs_s);
                }
                Ok(Inference {
                    id,
                    t_obs_s: w.t_obs_s,
                    chunk,
                    started,
                    finished,
                    eadp_cost,
                })
            })
            .collect();
        (inferences, answers)
    }
}
