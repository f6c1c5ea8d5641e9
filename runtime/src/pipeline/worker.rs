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
use crate::pipeline::{Inference, Pipeline, StreamId, WarmUp, WaveQuery};

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

/// Handle to the inference thread.
pub struct Worker {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
    pub spec: PolicySpec,
}

impl Worker {
    /// Start the thread: `load` builds the pipeline (policy and every stream) on that thread, then
    /// `warmup` inferences shaped like the served ones run on `warmup_window`, so JIT/autotune costs
    /// are paid before the first real chunk and a request the policy refuses fails start-up.
    pub async fn start(
        load: impl FnOnce() -> anyhow::Result<Pipeline> + Send + 'static,
        warmup: usize,
        warmup_window: impl FnOnce(&PolicySpec) -> TimedWindow + Send + 'static,
        waves: WavePolicy,
        results: mpsc::UnboundedSender<Outcome>,
    ) -> anyhow::Result<(Self, WarmUp)> {
        let shared: Shared = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<(PolicySpec, WarmUp)>>();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("riptide-inference".into())
            .spawn(move || {
                let mut pipeline = match load() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                lock(&thread_shared).jobs = (0..pipeline.streams()).map(|_| None).collect();
                let spec = pipeline.spec().clone();
                let w = warmup_window(&spec);
                match pipeline.warm_up(&w.window, warmup) {
                    Ok(warm) => {
                        if ready_tx.send(Ok((spec, warm))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                }
                run(&thread_shared, &mut pipeline, waves, &results);
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

fn run(
    shared: &(Mutex<Slot>, Condvar),
    pipeline: &mut Pipeline,
    waves: WavePolicy,
    results: &mpsc::UnboundedSender<Outcome>,
) {
    while let Some((jobs, queries)) = next_wave(shared, waves) {
        let wave = jobs.len() + queries.len();
        let windows: Vec<(StreamId, &TimedWindow)> = jobs.iter().map(|j| (j.stream, &j.window)).collect();
        let asks: Vec<WaveQuery<'_>> = queries
            .iter()
            .map(|q| (q.stream, &q.window, q.request.clone()))
            .collect();
        let t = Instant::now();
        // The previous chunks live in the pipeline, next to the policy: the async side never sees them.
        let (inferences, answers) = pipeline.run_wave(&windows, asks);
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
                result,
            };
            if results.send(outcome).is_err() {
                return;
            }
        }
    }
}
