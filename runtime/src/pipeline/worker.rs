//! The policy runs on its own OS thread (a GPU context lives there); the async side hands it windows
//! and never blocks on it. A newer window supersedes one still waiting, so there is never a backlog.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use riptide_policies::{PolicyError, PolicySpec};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::window::TimedWindow;
use crate::pipeline::{Inference, Pipeline, WarmUp};

/// A window to run.
pub struct Job {
    pub id: u64,
    pub window: TimedWindow,
    /// When the job was handed over (for queueing latency).
    pub submitted: Instant,
    /// Time spent building the window, seconds (reported in the chunk metadata).
    pub window_s: f64,
}

/// What came back for a job.
pub struct Outcome {
    /// The job's id (the daemon's count of submitted windows).
    pub id: u64,
    pub t_obs_s: f64,
    pub submitted: Instant,
    pub window_s: f64,
    pub result: Result<Inference, PolicyError>,
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

impl Worker {
    /// Start the thread: `load` builds the pipeline (policy included) on that thread, then `warmup`
    /// inferences shaped like the served ones run on `warmup_window`, so JIT/autotune costs are paid
    /// before the first real chunk and a request the policy refuses fails start-up.
    pub async fn start(
        load: impl FnOnce() -> anyhow::Result<Pipeline> + Send + 'static,
        warmup: usize,
        warmup_window: impl FnOnce(&PolicySpec) -> TimedWindow + Send + 'static,
        results: mpsc::UnboundedSender<Outcome>,
    ) -> anyhow::Result<(Self, WarmUp)> {
        let shared: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
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
                run(&thread_shared, &mut pipeline, &results);
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

fn run(shared: &(Mutex<Slot>, Condvar), pipeline: &mut Pipeline, results: &mpsc::UnboundedSender<Outcome>) {
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
        // The previous chunk lives in the pipeline, next to the policy: the async side never sees it.
        let outcome = Outcome {
            id: job.id,
            t_obs_s: job.window.t_obs_s,
            submitted: job.submitted,
            window_s: job.window_s,
            result: pipeline.infer(&job.window),
        };
        if results.send(outcome).is_err() {
            return;
        }
    }
}
