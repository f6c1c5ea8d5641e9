//! The one `predict` every policy kind runs; kinds supply only what differs ([`KindModel`]).
//!
//! validate the window → check the request against the kind's [`crate::Capabilities`] → seed →
//! [`KindModel::plan`] (the request's schedule, caches) → start sample → [`KindModel::encode`] →
//! [`KindModel::sample`] (the shared sampler loop, RTI's warm passes, or the kind's own search) →
//! consensus over candidates → unnormalise, discrete dimensions, relative actions → [`ActionChunk`].
//!
//! Written once so that every kind reports the same metadata, refuses the same requests with the same
//! words, and a new backend (GPU kernels) or kind plugs in behind one seam.

use std::time::Instant;

use burn::prelude::*;

use crate::error::PolicyError;
use crate::normalize::FeatureNorm;
use crate::request::{SampleRequest, StepHook, WaveRow};
use crate::rti::{self, WarmStart};
use crate::sampler::{self, to_host, Denoiser, NoiseSource};
use crate::schedule::NoiseSchedule;
use crate::spec::{ActionChunk, Capability, ChunkMeta, ObservationWindow, PolicySpec, StageTimings};
use crate::tensor::HostTensor;

/// The per-kind part of an inference. [`predict`] calls these in order, once each.
pub trait KindModel<B: Backend> {
    /// Observation conditioning, computed once per inference.
    type Cond;
    /// What a request resolves to before any noise is drawn (its schedule, say).
    type Plan;

    fn spec(&self) -> &PolicySpec;

    /// Model space ↔ robot units of the actions.
    fn action_norm(&self) -> &FeatureNorm;

    /// Resolve the request's schedule and prepare caches for it; errors name the bad setting.
    fn plan(&mut self, req: &SampleRequest) -> Result<Self::Plan, PolicyError>;

    /// Whether rows of several streams may share a batch ([`predict_wave`]): every draw of the kind's
    /// sampling is one row per batch row, so each row's noise can come from its own seed.
    fn batches_rows(&self) -> bool {
        true
    }

    /// Whether a cold start begins from `SampleRequest::initial_noise` (or the stream's first draw) of
    /// shape [batch·candidates, horizon, action_dim]; false when the kind draws its own start.
    fn draws_start_noise(&self) -> bool {
        true
    }

    /// Conditioning for `batch` observations, each row repeated `candidates` times (consecutively).
    fn encode(&self, obs: &ObservationWindow, batch: usize, candidates: usize) -> Result<Self::Cond, PolicyError>;

    /// Run the reverse process to a normalised chunk [batch·candidates, horizon, action_dim].
    fn sample(
        &self,
        plan: &Self::Plan,
        cond: &Self::Cond,
        job: SampleJob<'_>,
        hook: Option<&mut dyn StepHook>,
    ) -> Result<Sampled<B>, PolicyError>;
}

/// Everything [`KindModel::sample`] may need about the inference in flight.
pub struct SampleJob<'a> {
    pub obs: &'a ObservationWindow,
    pub req: &'a SampleRequest,
    /// The warm start to run (re-expressed against this window's state for relative actions); None = cold.
    pub warm_start: Option<&'a WarmStart>,
    pub batch: usize,
    /// [batch·candidates, horizon, action_dim]
    pub shape: [usize; 3],
    /// When `predict` started (RTI's deadline is measured from here).
    pub started: Instant,
    pub noise: &'a mut NoiseSource,
    /// A cold start's x_T when [`KindModel::draws_start_noise`]; None otherwise.
    pub start: Option<HostTensor>,
}

/// What [`KindModel::sample`] returns.
pub struct Sampled<B: Backend> {
    /// The normalised sample, [batch·candidates, horizon, action_dim].
    pub x: Tensor<B, 3>,
    /// Denoiser evaluations used.
    pub nfe: usize,
    pub warm_started: bool,
}

/// The shared sampler loop over all of `schedule` from `x`, with the request's step noise (else the
/// seeded stream's next draws).
pub fn sample_all<B: Backend, D: Denoiser<B>>(
    denoiser: &D,
    cond: &D::Cond,
    schedule: &NoiseSchedule,
    x: Tensor<B, 3>,
    job: &mut SampleJob<'_>,
    hook: Option<&mut dyn StepHook>,
) -> Result<(Tensor<B, 3>, usize), PolicyError> {
    let (req, shape, noise) = (job.req, job.shape, &mut *job.noise);
    let mut step_noise = |k: usize| noise.take(req.step_noise.get(&k), shape, &format!("noise for step {k}"));
    sampler::sample(denoiser, cond, schedule, 0..schedule.nfe(), x, &mut step_noise, hook)
}

/// Chunks this request samples per observation, after checking it against the kind's capabilities.
pub fn candidates(spec: &PolicySpec, req: &SampleRequest, hooked: bool) -> Result<usize, PolicyError> {
    if req.warm_start.is_some() {
        spec.kind.require(Capability::WarmStarts)?;
    }
    if hooked {
        spec.kind.require(Capability::StepHooks)?;
    }
    let k = spec.candidates_for(req.candidates, req.warm_start.is_none() && !hooked)?;
    if k > 1 {
        spec.kind.require(Capability::Candidates)?;
        if req.warm_start.is_some() || hooked {
            return Err(PolicyError::Config(
                "candidates > 1 (consensus sampling) draws every chunk from noise: it does not combine with RTI \
                 warm starts or guidance hooks"
                    .into(),
            ));
        }
    }
    Ok(k)
}

/// One inference of any kind (module docs).
pub fn predict<B: Backend, M: KindModel<B>>(
    model: &mut M,
    obs: &ObservationWindow,
    req: &SampleRequest,
    hook: Option<&mut dyn StepHook>,
) -> Result<ActionChunk, PolicyError> {
    let t0 = Instant::now();
    let row = check_row(model.spec(), obs, req, hook.is_some())?;
    let rereferenced = match &req.warm_start {
        Some(w) if !row.reference.is_empty() => Some(rereference(model.spec(), model.action_norm(), w, &row.reference)),
        _ => None,
    };
    let plan = model.plan(req)?;
    let model = &*model;
    let spec = model.spec();
    let seed = req.seed.unwrap_or_else(rand::random);
    let mut noise = NoiseSource::new(seed);
    let shape = [row.batch * row.k, spec.horizon, spec.action_dim];
    let start = match req.warm_start {
        None if model.draws_start_noise() => Some(noise.take(req.initial_noise.as_ref(), shape, "initial noise")?),
        _ => None,
    };
    let job = SampleJob {
        obs,
        req,
        warm_start: rereferenced.as_ref().or(req.warm_start.as_ref()),
        batch: row.batch,
        shape,
        started: t0,
        noise: &mut noise,
        start,
    };
    let ran = run(model, &plan, obs, row.k, job, hook)?;
    Ok(finish(
        spec,
        model.action_norm(),
        req,
        ran.normalized,
        &row.reference,
        seed,
        ran.how,
    ))
}

/// A row's checks: its batch, candidates per observation and relative-action references.
struct RowCheck {
    batch: usize,
    k: usize,
    reference: Vec<Vec<f32>>,
}

fn check_row(
    spec: &PolicySpec,
    obs: &ObservationWindow,
    req: &SampleRequest,
    hooked: bool,
) -> Result<RowCheck, PolicyError> {
    let batch = obs.validate(spec)?;
    let k = candidates(spec, req, hooked)?;
    let reference = spec.relative_reference(obs)?;
    Ok(RowCheck { batch, k, reference })
}

/// What [`run`] gives: the normalised chunk [batch, horizon, action_dim] and how it was sampled.
struct Ran {
    normalized: HostTensor,
    how: How,
}

/// How a batch was sampled (shared by its rows).
#[derive(Clone, Copy)]
struct How {
    nfe: usize,
    warm_started: bool,
    timings: StageTimings,
}

/// Encode, sample and keep each observation's medoid.
fn run<B: Backend, M: KindModel<B>>(
    model: &M,
    plan: &M::Plan,
    obs: &ObservationWindow,
    k: usize,
    job: SampleJob<'_>,
    hook: Option<&mut dyn StepHook>,
) -> Result<Ran, PolicyError> {
    let spec = model.spec();
    let mut timings = StageTimings {
        preprocess_s: job.started.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let t1 = Instant::now();
    let cond = model.encode(obs, job.batch, k)?;
    timings.encode_s = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let out = model.sample(plan, &cond, job, hook)?;
    let mut normalized = to_host(out.x);
    if k > 1 {
        let exec = spec.exec_start..spec.exec_start + spec.n_action_steps;
        normalized = crate::consensus::select_medoids(&normalized, k, exec).0;
    }
    timings.denoise_s = t2.elapsed().as_secs_f64();
    Ok(Ran {
        normalized,
        how: How {
            nfe: out.nfe,
            warm_started: out.warm_started,
            timings,
        },
    })
}

/// The [`ActionChunk`] of one row (`normalized`, its part of the batch): unnormalised, with its metadata.
fn finish(
    spec: &PolicySpec,
    norm: &FeatureNorm,
    req: &SampleRequest,
    normalized: HostTensor,
    reference: &[Vec<f32>],
    seed: u64,
    how: How,
) -> ActionChunk {
    let mut timings = how.timings;
    let t3 = Instant::now();
    let actions = unnormalize(spec, norm, req, &normalized, reference);
    timings.postprocess_s = t3.elapsed().as_secs_f64();
    ActionChunk {
        actions,
        actions_normalized: normalized,
        exec_start: spec.exec_start,
        n_exec: spec.n_action_steps,
        meta: ChunkMeta {
            kind: spec.kind,
            nfe: how.nfe,
            seed,
            warm_started: how.warm_started,
            timings,
        },
    }
}

/// Whether a request can share a batch with other rows: a cold start whose noise all comes from its
/// seed (supplied noise and warm starts run alone).
fn batchable(req: &SampleRequest) -> bool {
    req.warm_start.is_none() && req.initial_noise.is_none() && req.step_noise.is_empty()
}

/// Every row of a wave, each the chunk [`predict`] gives for it alone. Rows with the same schedule and
/// candidates whose noise comes from their seeds run as one batch (one denoiser pass per step over all
/// rows, each row's noise from its own seed); the rest, and every row of a batch that fails, run alone,
/// so a bad row only loses itself.
pub fn predict_wave<B: Backend, M: KindModel<B>>(
    model: &mut M,
    rows: &[WaveRow<'_>],
) -> Vec<Result<ActionChunk, PolicyError>> {
    let mut out: Vec<Option<Result<ActionChunk, PolicyError>>> = (0..rows.len()).map(|_| None).collect();
    // Rows that can share a batch, by (steps, candidates): their indices with their checks.
    type Group = ((Option<usize>, usize), Vec<(usize, RowCheck)>);
    let mut groups: Vec<Group> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !model.batches_rows() || !batchable(r.req) {
            continue;
        }
        match check_row(model.spec(), r.obs, r.req, false) {
            Err(e) => out[i] = Some(Err(e)),
            Ok(c) => {
                let key = (r.req.num_inference_steps, c.k);
                match groups.iter_mut().find(|g| g.0 == key) {
                    Some(g) => g.1.push((i, c)),
                    None => groups.push((key, vec![(i, c)])),
                }
            }
        }
    }
    for (_, members) in groups {
        for part in batches_of(members) {
            if part.len() < 2 {
                continue;
            }
            if let Ok(chunks) = predict_batched(model, rows, &part) {
                for ((i, _), c) in part.iter().zip(chunks) {
                    out[*i] = Some(Ok(c));
                }
            }
        }
    }
    out.iter_mut()
        .zip(rows)
        .map(|(o, r)| o.take().unwrap_or_else(|| predict(model, r.obs, r.req, None)))
        .collect()
}

/// Sampled rows per batch at most; a wave of more runs as several batches. Past this a wider batch
/// stopped paying on the CPU (BENCHMARKS "Fleet": push-t's 8 candidates per robot, 64 robots = 512 rows
/// in one batch ran at 0.85× sequential, 16 robots = 128 rows at 1.00×, 8 = 64 rows at 1.05×).
const MAX_BATCH_ROWS: usize = 64;

/// `members` in order, cut into batches of at most [`MAX_BATCH_ROWS`] sampled rows (a member with more
/// is a batch of its own).
fn batches_of(members: Vec<(usize, RowCheck)>) -> Vec<Vec<(usize, RowCheck)>> {
    let mut out: Vec<Vec<(usize, RowCheck)>> = Vec::new();
    let mut rows = 0;
    for m in members {
        let n = m.1.batch * m.1.k;
        match out.last_mut() {
            Some(last) if rows + n <= MAX_BATCH_ROWS => {
                last.push(m);
                rows += n;
            }
            _ => {
                out.push(vec![m]);
                rows = n;
            }
        }
    }
    out
}

/// The rows `members` of a wave (checked, same schedule and candidates) as one batch.
fn predict_batched<B: Backend, M: KindModel<B>>(
    model: &mut M,
    rows: &[WaveRow<'_>],
    members: &[(usize, RowCheck)],
) -> Result<Vec<ActionChunk>, PolicyError> {
    let t0 = Instant::now();
    let first = rows[members[0].0].req;
    let k = members[0].1.k;
    let plan = model.plan(first)?;
    let model = &*model;
    let spec = model.spec();
    let seeds: Vec<u64> = members
        .iter()
        .map(|(i, _)| rows[*i].req.seed.unwrap_or_else(rand::random))
        .collect();
    let streams: Vec<(u64, usize)> = seeds.iter().zip(members).map(|(s, (_, c))| (*s, c.batch * k)).collect();
    let mut noise = NoiseSource::per_row(&streams);
    let batch: usize = members.iter().map(|(_, c)| c.batch).sum();
    let shape = [batch * k, spec.horizon, spec.action_dim];
    let start = model.draws_start_noise().then(|| noise.draw(shape));
    let names: Vec<&str> = spec.inputs.iter().map(|f| f.name.as_str()).collect();
    let obs = ObservationWindow::concat(members.iter().map(|(i, _)| rows[*i].obs), &names)?;
    let job = SampleJob {
        obs: &obs,
        req: first,
        warm_start: None,
        batch,
        shape,
        started: t0,
        noise: &mut noise,
        start,
    };
    let ran = run(model, &plan, &obs, k, job, None)?;
    let mut offset = 0;
    Ok(members
        .iter()
        .zip(seeds)
        .map(|((i, c), seed)| {
            let part = ran.normalized.narrow(0, offset, c.batch);
            offset += c.batch;
            finish(
                spec,
                model.action_norm(),
                rows[*i].req,
                part,
                &c.reference,
                seed,
                ran.how,
            )
        })
        .collect())
}

/// Robot-unit actions from the normalised chunk: discrete dimensions of a warm-start request at ±1
/// ([`rti::discrete_to_unit`]), unnormalised, relative dimensions made absolute again.
fn unnormalize(
    spec: &PolicySpec,
    norm: &FeatureNorm,
    req: &SampleRequest,
    normalized: &HostTensor,
    reference: &[Vec<f32>],
) -> HostTensor {
    let mut actions = normalized.clone();
    if let Some(warm) = &req.warm_start {
        rti::discrete_to_unit(&mut actions, &warm.config.discrete);
    }
    norm.unnormalize(&mut actions.data, 1);
    let per_row = spec.horizon * spec.action_dim;
    for (rows, r) in actions.data.chunks_exact_mut(per_row).zip(reference) {
        spec.add_reference(rows, r);
    }
    actions
}

/// A warm start's previous chunk, re-expressed against the new window's state: its offsets were
/// taken from the state it was made at. Without that window the warm start runs cold.
fn rereference(spec: &PolicySpec, norm: &FeatureNorm, warm: &WarmStart, reference: &[Vec<f32>]) -> WarmStart {
    let mut w = warm.clone();
    let (h, d) = (spec.horizon, spec.action_dim);
    let Some(p) = w.previous.as_mut() else { return w };
    let old = p.observation.as_ref().and_then(|o| spec.relative_reference(o).ok());
    match old {
        Some(old) if old.len() == reference.len() && p.actions_normalized.data.len() == old.len() * h * d => {
            let mut zero = vec![0.0f32; d];
            norm.normalize(&mut zero, 1);
            for (i, (was, now)) in old.iter().zip(reference).enumerate() {
                let mut delta = vec![0.0f32; d];
                for (j, &(a, _)) in spec.relative_actions.iter().enumerate() {
                    delta[a] = was[j] - now[j];
                }
                // Normalisation is affine per dim: a shift of x moves n by norm(Δ) − norm(0).
                norm.normalize(&mut delta, 1);
                for row in p.actions_normalized.data[i * h * d..(i + 1) * h * d].chunks_exact_mut(d) {
                    for a in 0..d {
                        row[a] += delta[a] - zero[a];
                    }
                }
            }
        }
        _ => {
            tracing::debug!("relative actions: previous chunk without its window; cold start");
            w.previous = None;
        }
    }
    w
}
