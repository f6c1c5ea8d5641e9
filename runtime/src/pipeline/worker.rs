//! The policy runs on its own OS thread (a GPU context lives there); the async side hands it windows
//! and never blocks on it. Each stream (robot) has one slot: a newer window supersedes one still
//! waiting, so there is never a backlog. Windows due together run as one wave (one batched inference,
//! [`Pipeline::infer_wave`]): the thread waits at most the batch window for the other streams, never past
//! the earliest member's deadline. Remote inference queries wait in a short queue of their own and join
//! the next wave.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use riptide_policies::{ActionChunk, ObservationWindow, PolicyError, PolicySpec, SampleRequest};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::window::TimedWindow;
use crate::pipeline::{Inference, Pipeline, StreamId, WarmUp, WaveQuery, WaveResults};

/// A window to run.
pub struct Job {
    pub id: u64,
    /// The worker's stream (robot) the window belongs to.
    pub stream: StreamId,
    pub window: TimedWindow,
    /// When the job was handed over (for queueing latency and the batch window).
    pub submitted: Instant,
    /// When the chunk is needed at the latest (its first executable action minus the execution
    /// latency): a wave never waits for other streams past it.
    pub deadline: Option<Instant>,
    /// Time spent building the window, seconds (reported in the chunk metadata).
    pub window_s: f64,
}

/// What came back for a job.
pub struct Outcome {
    /// The job's id (the daemon's count of submitted windows).
    pub id: u64,
    pub stream: StreamId,
    pub t_obs_s: f64,
    pub submitted: Instant,
    pub window_s: f64,
    /// Rows in the wave the job ran in (streams and queries).
    pub wave: usize,
    /// Set when the wave faulted (counted in `policy_faults_total`, not as an inference error).
    pub fault: Option<FaultReason>,
    pub result: Result<Inference, PolicyError>,
}

/// A remote inference query: a cold start on the caller's observations (no stream state), answered
/// on `reply` with the chunk and the time the policy took, seconds.
pub struct Query {
    /// Whose sampling settings (steps, candidates) it runs with; none of that stream's state.
    pub stream: StreamId,
    pub window: ObservationWindow,
    pub request: SampleRequest,
    pub reply: oneshot::Sender<Result<(ActionChunk, f64), PolicyError>>,
}

/// Queries waiting beyond this are refused as busy (each holds a caller's observations).
pub const MAX_QUEUED_QUERIES: usize = 32;

/// Queries that join one wave at most (the rest wait for the next).
const QUERIES_PER_WAVE: usize = 8;

#[derive(Default)]
struct Slot {
    /// One per stream.
    jobs: Vec<Option<Job>>,
    queries: VecDeque<Query>,
    shutdown: bool,
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

fn lock(shared: &(Mutex<Slot>, Condvar)) -> MutexGuard<'_, Slot> {
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands remote inference queries to the worker (cheap to clone; one per answering task).
#[derive(Clone)]
pub struct QueryHandle {
    shared: Shared,
}

impl QueryHandle {
    /// Queue `query`; false (and the query dropped) when the queue is full or the worker has stopped.
    pub fn submit(&self, query: Query) -> bool {
        let mut slot = lock(&self.shared);
        if slot.shutdown || slot.queries.len() >= MAX_QUEUED_QUERIES {
            return false;
        }
        slot.queries.push_back(query);
        self.shared.1.notify_one();
        true
    }
}

/// How the worker forms waves.
#[derive(Debug, Clone, Copy, Default)]
pub struct WavePolicy {
    /// How long the first window of a wave waits for the other streams' (0 = run what is there).
    pub batch_window: Duration,
}

/// Builds the pipeline on the inference thread; called again for a fresh one after a fault.
pub type Loader = Arc<dyn Fn() -> anyhow::Result<Pipeline> + Send + Sync>;

/// Why the policy faulted: the `reason` label of `riptide_policy_faults_total`. Request errors (a bad
/// window, a refused setting) are not faults: they count in `inference_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultReason {
    /// `predict` panicked.
    Panic,
    /// The device (or its thread) failed.
    Device,
    /// The device ran out of memory.
    Oom,
}

impl FaultReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Device => "device",
            Self::Oom => "oom",
        }
    }

    /// A policy error that is a fault, and which.
    fn of(e: &PolicyError) -> Option<Self> {
        match e {
            PolicyError::Device(m) => {
                let m = m.to_ascii_lowercase();
                Some(
                    if m.contains("out of memory") || m.contains("out_of_memory") || m.contains("outofmemory") {
                        Self::Oom
                    } else {
                        Self::Device
                    },
                )
            }
            _ => None,
        }
    }
}

/// What the worker tells the daemon about faults.
#[derive(Debug, Clone)]
pub enum FaultEvent {
    /// Counted and logged; the policy is being reloaded.
    Fault { reason: FaultReason, detail: String },
    /// Serving resumed on a reloaded policy.
    Recovered,
    /// `max_consecutive` faults in a row, or a reload that failed: the worker stopped.
    Fatal(String),
}

/// How the worker handles faults.
#[derive(Debug, Clone)]
pub struct FaultPolicy {
    /// Faults in a row (without a served wave between them) before the worker gives up.
    pub max_consecutive: usize,
    pub events: mpsc::UnboundedSender<FaultEvent>,
}

/// Handle to the inference thread.
pub struct Worker {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
    pub spec: PolicySpec,
}

impl Worker {
    /// Start the thread: `load` builds the pipeline (policy and every stream) on that thread, then
    /// `warmup` inferences shaped like the served ones run on `warmup_window`, so JIT/autotune costs
    /// are paid before the first real chunk and a request the policy refuses fails start-up. After a
    /// fault (a panic, a device error) the thread loads a fresh pipeline the same way and serves on.
    pub async fn start(
        load: Loader,
        warmup: usize,
        warmup_window: fn(&PolicySpec) -> TimedWindow,
        waves: WavePolicy,
        faults: FaultPolicy,
        results: mpsc::UnboundedSender<Outcome>,
    ) -> anyhow::Result<(Self, WarmUp)> {
        let shared: Shared = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<(PolicySpec, WarmUp)>>();
        let thread_shared = shared.clone();
        let fresh = move || -> anyhow::Result<(Pipeline, WarmUp)> {
            let mut pipeline = load()?;
            let w = warmup_window(pipeline.spec());
            let warm = pipeline.warm_up(&w.window, warmup)?;
            Ok((pipeline, warm))
        };
        let thread = std::thread::Builder::new()
            .name("riptide-inference".into())
            .spawn(move || {
                let mut pipeline = match fresh() {
                    Ok((p, warm)) => {
                        lock(&thread_shared).jobs = (0..p.streams()).map(|_| None).collect();
                        if ready_tx.send(Ok((p.spec().clone(), warm))).is_err() {
                            return;
                        }
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                supervise(&thread_shared, &mut pipeline, &fresh, waves, &faults, &results);
            })
            .map_err(|e| PolicyError::Device(format!("cannot start the inference thread: {e}")))?;
        let (spec, warm) = ready_rx
            .await
            .map_err(|_| PolicyError::Device("the inference thread died while loading the policy".into()))??;
        Ok((
            Self {
                shared,
                thread: Some(thread),
                spec,
            },
            warm,
        ))
    }

    /// Queue a job on its stream's slot; returns true when it replaced a job that had not started yet.
    pub fn submit(&self, job: Job) -> bool {
        let mut slot = lock(&self.shared);
        let Some(place) = slot.jobs.get_mut(job.stream) else {
            tracing::error!("a window for stream {} the worker does not have", job.stream);
            return false;
        };
        let replaced = place.replace(job).is_some();
        self.shared.1.notify_one();
        replaced
    }

    /// A handle for remote inference queries.
    pub fn queries(&self) -> QueryHandle {
        QueryHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stop accepting work, drop queued jobs (queued queries get no answer: their callers see an error
    /// reply), let an in-flight inference finish, join the thread.
    pub fn shutdown(&mut self) {
        {
            let mut slot = lock(&self.shared);
            slot.shutdown = true;
            slot.jobs.iter_mut().for_each(|j| *j = None);
            slot.queries.clear();
            self.shared.1.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The next wave: every stream's waiting window and the first queries, after waiting (at most the
/// batch window from the oldest waiting window, never past the earliest deadline) for streams that
/// have none yet. None at shutdown.
fn next_wave(shared: &(Mutex<Slot>, Condvar), waves: WavePolicy) -> Option<(Vec<Job>, Vec<Query>)> {
    let mut slot = lock(shared);
    loop {
        if slot.shutdown {
            return None;
        }
        let waiting = slot.jobs.iter().filter(|j| j.is_some()).count();
        if waiting == 0 && slot.queries.is_empty() {
            slot = shared.1.wait(slot).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        if waiting > 0 && waiting < slot.jobs.len() && !waves.batch_window.is_zero() {
            let jobs = slot.jobs.iter().flatten();
            let oldest = jobs.clone().map(|j| j.submitted).min().expect("a waiting job");
            let mut until = oldest + waves.batch_window;
            if let Some(d) = jobs.filter_map(|j| j.deadline).min() {
                until = until.min(d);
            }
            let now = Instant::now();
            if now < until {
                slot = shared
                    .1
                    .wait_timeout(slot, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
        }
        let jobs: Vec<Job> = slot.jobs.iter_mut().filter_map(Option::take).collect();
        let n = slot.queries.len().min(QUERIES_PER_WAVE);
        let queries: Vec<Query> = slot.queries.drain(..n).collect();
        return Some((jobs, queries));
    }
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A fault and what it said.
type Fault = (FaultReason, String);

/// Serve waves; after a fault, load a fresh pipeline and serve on, until shutdown or
/// `max_consecutive` faults in a row (then report it as fatal and stop taking work).
fn supervise(
    shared: &(Mutex<Slot>, Condvar),
    pipeline: &mut Pipeline,
    fresh: &dyn Fn() -> anyhow::Result<(Pipeline, WarmUp)>,
    waves: WavePolicy,
    faults: &FaultPolicy,
    results: &mpsc::UnboundedSender<Outcome>,
) {
    let mut in_a_row = 0usize;
    let mut fault = serve(shared, pipeline, waves, results, &mut in_a_row);
    while let Some((reason, detail)) = fault {
        in_a_row += 1;
        tracing::error!("policy fault ({}): {detail}", reason.label());
        let _ = faults.events.send(FaultEvent::Fault {
            reason,
            detail: detail.clone(),
        });
        let fatal = |why: String| {
            let _ = faults.events.send(FaultEvent::Fatal(why));
            lock(shared).shutdown = true;
        };
        if in_a_row >= faults.max_consecutive.max(1) {
            return fatal(format!(
                "{in_a_row} policy faults in a row (worker.max_consecutive_faults = {}); the last: {} ({detail})",
                faults.max_consecutive,
                reason.label()
            ));
        }
        // A reload (with its warm-up) that panics is one more fault in a row.
        fault = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(fresh)) {
            Ok(Ok((p, _))) => {
                *pipeline = p;
                tracing::info!("policy reloaded; serving resumes");
                let _ = faults.events.send(FaultEvent::Recovered);
                serve(shared, pipeline, waves, results, &mut in_a_row)
            }
            Ok(Err(e)) => {
                return fatal(format!(
                    "the policy could not be reloaded after a {} fault: {e:#}",
                    reason.label()
                ))
            }
            Err(p) => Some((
                FaultReason::Panic,
                format!("reloading the policy: {}", panic_message(p.as_ref())),
            )),
        };
    }
}

/// One try at a wave: a panic or a device error is a fault.
fn run_caught(
    pipeline: &mut Pipeline,
    windows: &[(StreamId, &TimedWindow)],
    asks: Vec<WaveQuery<'_>>,
) -> Result<WaveResults, Fault> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.run_wave(windows, asks)))
        .map_err(|p| (FaultReason::Panic, panic_message(p.as_ref())))?;
    let errors = r.0.iter().filter_map(|x| x.as_ref().err());
    let errors = errors.chain(r.1.iter().filter_map(|x| x.as_ref().err()));
    match errors
        .filter_map(|e| FaultReason::of(e).map(|f| (f, e.to_string())))
        .next()
    {
        Some(f) => Err(f),
        None => Ok(r),
    }
}

/// The queries as rows of a wave.
fn asks(queries: &[Query]) -> Vec<WaveQuery<'_>> {
    queries
        .iter()
        .map(|q| (q.stream, &q.window, q.request.clone()))
        .collect()
}

/// A wave, and after a fault the same rows one by one (once): a row that faults again is the fault.
fn run_wave_retried(pipeline: &mut Pipeline, jobs: &[Job], queries: &[Query]) -> Result<WaveResults, Fault> {
    let windows: Vec<(StreamId, &TimedWindow)> = jobs.iter().map(|j| (j.stream, &j.window)).collect();
    match run_caught(pipeline, &windows, asks(queries)) {
        Ok(r) => return Ok(r),
        Err((reason, detail)) => {
            tracing::warn!(
                "a wave of {} rows faulted ({}): {detail}; retrying row by row",
                windows.len() + queries.len(),
                reason.label()
            );
        }
    }
    let mut out: WaveResults = (Vec::new(), Vec::new());
    for w in &windows {
        out.0
            .extend(run_caught(pipeline, std::slice::from_ref(w), Vec::new())?.0);
    }
    for q in queries.chunks(1) {
        out.1.extend(run_caught(pipeline, &[], asks(q))?.1);
    }
    Ok(out)
}

/// Serve waves until shutdown (None) or a fault (its reason and message). A faulted wave publishes
/// nothing: its windows come back as faults, its queries get an error reply.
fn serve(
    shared: &(Mutex<Slot>, Condvar),
    pipeline: &mut Pipeline,
    waves: WavePolicy,
    results: &mpsc::UnboundedSender<Outcome>,
    in_a_row: &mut usize,
) -> Option<Fault> {
    while let Some((jobs, queries)) = next_wave(shared, waves) {
        let wave = jobs.len() + queries.len();
        let t = Instant::now();
        // The previous chunks live in the pipeline, next to the policy: the async side never sees them.
        let (inferences, answers, fault) = match run_wave_retried(pipeline, &jobs, &queries) {
            Ok((i, a)) => (i.into_iter().map(Some).collect(), a, None),
            Err(f) => (
                jobs.iter().map(|_| None).collect::<Vec<_>>(),
                queries
                    .iter()
                    .map(|_| Err(PolicyError::Device(format!("policy fault ({}): {}", f.0.label(), f.1))))
                    .collect(),
                Some(f),
            ),
        };
        let query_s = t.elapsed().as_secs_f64();
        for (q, a) in queries.into_iter().zip(answers) {
            // The caller may have given up (timeout): nothing to do then.
            let _ = q.reply.send(a.map(|c| (c, query_s)));
        }
        for (job, result) in jobs.iter().zip(inferences) {
            let outcome = Outcome {
                id: job.id,
                stream: job.stream,
                t_obs_s: job.window.t_obs_s,
                submitted: job.submitted,
                window_s: job.window_s,
                wave,
                fault: fault.as_ref().map(|f| f.0),
                result: result.unwrap_or_else(|| Err(PolicyError::Device("policy fault".into()))),
            };
            if results.send(outcome).is_err() {
                return None;
            }
        }
        if fault.is_some() {
            return fault;
        }
        *in_a_row = 0;
    }
    None
}
