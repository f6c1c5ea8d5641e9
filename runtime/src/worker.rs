//! The policy runs on its own OS thread (a GPU context lives there); the async side hands it windows
//! and never blocks on it. A newer window supersedes one still waiting, so there is never a backlog.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use riptide_policies::{ActionChunk, Policy, PolicyError, PolicySpec, SampleRequest};
use tokio::sync::{mpsc, oneshot};

use crate::warm::WarmStarter;
use crate::window::TimedWindow;

/// A window to run.
pub struct Job {
    pub id: u64,
    pub window: TimedWindow,
    /// When the job was handed over (for queueing latency).
    pub submitted: Instant,
    /// Time spent building the window, seconds (reported in the chunk metadata).
    pub window_s: f64,
    pub request: SampleRequest,
}

/// What came back for a job.
pub struct Outcome {
    pub id: u64,
    pub t_obs_s: f64,
    pub submitted: Instant,
    pub window_s: f64,
    pub started: Instant,
    pub finished: Instant,
    pub result: Result<ActionChunk, PolicyError>,
}

#[derive(Default)]
struct Slot {
    job: Option<Job>,
    shutdown: bool,
}

/// Handle to the inference thread.
pub struct Worker {
    shared: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    pub spec: PolicySpec,
}

/// Statistics of the warm-up inferences run before the worker reports ready (not part of live stats).
#[derive(Debug, Clone)]
pub struct WarmUp {
    pub runs: usize,
    pub last_s: f64,
}

impl Worker {
    /// Start the thread: `load` builds the policy on that thread, then `warmup` inferences shaped like
    /// `request` (step count, candidates; its seed is replaced) run on `warmup_window`, so JIT/autotune
    /// costs are paid before the first real chunk and a request the policy refuses fails start-up.
    pub async fn start(
        load: impl FnOnce() -> Result<Box<dyn Policy>, PolicyError> + Send + 'static,
        warmup: usize,
        request: SampleRequest,
        warmup_window: impl FnOnce(&PolicySpec) -> TimedWindow + Send + 'static,
        results: mpsc::UnboundedSender<Outcome>,
        warm_starts: Option<WarmStarter>,
    ) -> Result<(Self, WarmUp), PolicyError> {
        let shared: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("riptide-inference".into())
            .spawn(move || {
                let mut policy = match load() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let spec = policy.spec().clone();
                let w = warmup_window(&spec);
                let mut last_s = 0.0;
                for i in 0..warmup {
                    let t = Instant::now();
                    let req = SampleRequest {
                        seed: Some(i as u64),
                        ..request.clone()
                    };
                    if let Err(e) = policy.predict(&w.window, &req, None) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    last_s = t.elapsed().as_secs_f64();
                }
                if ready_tx.send(Ok((spec, WarmUp { runs: warmup, last_s }))).is_err() {
                    return;
                }
                run(&thread_shared, policy.as_mut(), &results, warm_starts);
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

    /// Queue a job; returns true when it replaced a job that had not started yet.
    pub fn submit(&self, job: Job) -> bool {
        let (lock, cv) = &*self.shared;
        let mut slot = lock.lock().expect("inference slot poisoned");
        let replaced = slot.job.replace(job).is_some();
        cv.notify_one();
        replaced
    }

    /// Stop accepting work, drop a queued job, let an in-flight inference finish, join the thread.
    pub fn shutdown(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            let mut slot = lock.lock().expect("inference slot poisoned");
            slot.shutdown = true;
            slot.job = None;
            cv.notify_all();
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

fn run(
    shared: &(Mutex<Slot>, Condvar),
    policy: &mut dyn Policy,
    results: &mpsc::UnboundedSender<Outcome>,
    mut warm: Option<WarmStarter>,
) {
    let (lock, cv) = shared;
    loop {
        let job = {
            let mut slot = lock.lock().expect("inference slot poisoned");
            loop {
                if slot.shutdown {
                    return;
                }
                if let Some(job) = slot.job.take() {
                    break job;
                }
                slot = cv.wait(slot).expect("inference slot poisoned");
            }
        };
        let started = Instant::now();
        // The previous chunk lives here, next to the policy: the async side never sees it.
        let t_obs_s = job.window.t_obs_s;
        let request = match &warm {
            Some(w) => w.request(job.request, t_obs_s),
            None => job.request,
        };
        let result = policy.predict(&job.window.window, &request, None);
        if let (Some(w), Ok(chunk)) = (&mut warm, &result) {
            w.record(chunk, &job.window.window, t_obs_s);
        }
        let outcome = Outcome {
            id: job.id,
            t_obs_s: job.window.t_obs_s,
            submitted: job.submitted,
            window_s: job.window_s,
            started,
            finished: Instant::now(),
            result,
        };
        if results.send(outcome).is_err() {
            return;
        }
    }
}
