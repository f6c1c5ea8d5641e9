//! The daemon in wall time: one zenoh subscriber per input feature → decode → observation window on
//! the time grid; a trigger (rate, driver queue report, or new camera frame) hands the window to the
//! inference thread, which runs the pipeline; the chunk is timed against the clock and published
//! with its metadata.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use riptide_msgs::ros::Float32MultiArray;
use riptide_msgs::topics;
use riptide_policies::PolicySpec;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::daemon::config::{DaemonConfig, OutputType, Resolved, TriggerMode};
use crate::daemon::setup::{sampling_of, warmup_window, Running};
use crate::node::{now_s, Clock, Metrics, RateLimitedLog, Shutdown};
use crate::pipeline::chunk::time_chunk;
use crate::pipeline::decode::decode;
use crate::pipeline::input::ResolvedInput;
use crate::pipeline::window::{Frame, WindowBuilder, WindowError};
use crate::pipeline::worker::{Job, Outcome, Worker};
use crate::pipeline::{chunk_meta, MetaTimings, Pipeline};

/// What the input, trigger and publishing tasks share.
struct Shared {
    metrics: Arc<Metrics>,
    log: Arc<RateLimitedLog>,
    clock: Clock,
    builder: Arc<Mutex<WindowBuilder>>,
    in_flight: Arc<AtomicBool>,
}

/// Serve in wall time (or `use_sim_time`) until `shutdown`.
pub async fn run_live(cfg: DaemonConfig, shutdown: Shutdown, on_ready: impl FnOnce(&Running)) -> Result<Arc<Metrics>> {
    let t_load = Instant::now();
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<Outcome>();
    let (mut worker, warm) = start_worker(&cfg, results_tx).await?;
    let spec = worker.spec.clone();
    let resolved = Arc::new(cfg.resolve(&spec)?);
    tracing::info!(
        "{} on {} loaded in {:.1} s; {} warm-up inferences, last {:.1} ms",
        spec.kind,
        spec.backend,
        t_load.elapsed().as_secs_f64(),
        warm.runs,
        warm.last_s * 1e3
    );
    let session = crate::node::network::open(&cfg.zenoh).await?;
    let clock = if cfg.use_sim_time {
        Clock::sim(&session, &cfg.topic(topics::CLOCK)).await?
    } else {
        Clock::Wall
    };
    let shared = Shared {
        metrics: Arc::new(Metrics::default()),
        log: Arc::new(RateLimitedLog::default()),
        clock,
        builder: Arc::new(Mutex::new(WindowBuilder::new(
            spec.n_obs_steps,
            resolved.dt_s,
            resolved
                .inputs
                .iter()
                .map(|i| (i.feature.clone(), i.shape.clone(), i.max_age_s)),
        ))),
        in_flight: Arc::new(AtomicBool::new(false)),
    };
    let mut tasks = JoinSet::new();
    let (trigger_tx, mut trigger_rx) = mpsc::channel::<()>(1);
    subscribe_inputs(&session, &cfg, &resolved, &shared, &trigger_tx, &mut tasks).await?;
    spawn_trigger(&session, &cfg, &resolved, &shared, trigger_tx, &mut tasks).await?;
    let publisher = ChunkPublisher::declare(&session, &cfg, &resolved, spec.clone()).await?;
    let _alive = session
        .liveliness()
        .declare_token(resolved.alive_topic.clone())
        .await
        .map_err(|e| anyhow!("liveliness token {}: {e}", resolved.alive_topic))?;
    spawn_metrics(&cfg, &shared.metrics, &mut tasks).await?;
    on_ready(&Running {
        metrics: shared.metrics.clone(),
        spec: spec.clone(),
    });
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(()) = trigger_rx.recv() => submit(&shared, &worker, &mut next_id),
            Some(out) = results_rx.recv() => {
                shared.in_flight.store(false, Ordering::Release);
                shared.metrics.set("inference_in_flight", &[], 0.0);
                publisher.publish(&out, &shared).await;
            }
        }
    }
    tracing::info!("shutting down");
    tasks.abort_all();
    worker.shutdown();
    drop(_alive);
    session
        .close()
        .await
        .map_err(|e| anyhow!("closing the zenoh session: {e}"))?;
    Ok(shared.metrics)
}

/// The inference thread: it loads the policy (a GPU context lives there) and runs the pipeline.
async fn start_worker(
    cfg: &DaemonConfig,
    results: mpsc::UnboundedSender<Outcome>,
) -> Result<(Worker, crate::pipeline::WarmUp)> {
    let device = cfg.device()?;
    let checkpoint = cfg.checkpoint.clone();
    let sampling = sampling_of(cfg);
    let fps = cfg.fps;
    Worker::start(
        move || {
            let policy = riptide_policies::load_policy(&checkpoint, device)?;
            // Warm starts shift by control periods; without fps the config check below says so.
            let dt_s = fps.map_or(1.0, |f| 1.0 / f);
            Pipeline::new(policy, sampling, dt_s)
        },
        cfg.warmup,
        warmup_window,
        results,
    )
    .await
    .with_context(|| format!("loading {}", cfg.checkpoint.display()))
}

/// Build the window for now and hand it to the inference thread.
fn submit(shared: &Shared, worker: &Worker, next_id: &mut u64) {
    let t = Instant::now();
    let built = shared.builder.lock().expect("window lock").build(shared.clock.now_s());
    match built {
        Ok(window) => {
            let window_s = t.elapsed().as_secs_f64();
            shared.metrics.window.record(window_s);
            shared.in_flight.store(true, Ordering::Release);
            shared.metrics.set("inference_in_flight", &[], 1.0);
            let job = Job {
                id: *next_id,
                window,
                submitted: Instant::now(),
                window_s,
            };
            *next_id += 1;
            if worker.submit(job) {
                shared.metrics.inc("superseded_total", &[]);
            }
        }
        Err(e) => {
            let reason = match &e {
                WindowError::Missing(_) => "missing",
                WindowError::Stale { .. } => "stale",
            };
            shared.metrics.inc("blocked_total", &[("reason", reason)]);
            shared
                .log
                .warn(&format!("window:{reason}"), || format!("no inference: {e}"));
        }
    }
}

/// One subscriber per input feature: decode, push into the window, and trigger on new camera frames.
async fn subscribe_inputs(
    session: &zenoh::Session,
    cfg: &DaemonConfig,
    resolved: &Resolved,
    shared: &Shared,
    trigger: &mpsc::Sender<()>,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    let on_frame = cfg.trigger.mode == TriggerMode::OnFrame;
    for input in resolved.inputs.iter().cloned() {
        let sub = session
            .declare_subscriber(input.topic.clone())
            .await
            .map_err(|e| anyhow!("subscribing to {}: {e}", input.topic))?;
        let frame_trigger = (on_frame && input.feature == resolved.trigger_feature)
            .then(|| (trigger.clone(), shared.in_flight.clone()));
        tracing::info!("{} ← {} ({:?})", input.feature, input.topic, input.msg_type);
        let (metrics, builder, log, clock) = (
            shared.metrics.clone(),
            shared.builder.clone(),
            shared.log.clone(),
            shared.clock.clone(),
        );
        tasks.spawn(async move {
            while let Ok(sample) = sub.recv_async().await {
                let fresh = on_input(&input, &sample.payload().to_bytes(), &clock, &builder, &metrics, &log);
                if let Some((tx, in_flight)) = &frame_trigger {
                    if fresh && !in_flight.load(Ordering::Acquire) {
                        let _ = tx.try_send(());
                    }
                }
            }
        });
    }
    Ok(())
}

/// One received message: true when it added a new frame to the window.
fn on_input(
    input: &ResolvedInput,
    bytes: &[u8],
    clock: &Clock,
    builder: &Mutex<WindowBuilder>,
    metrics: &Metrics,
    log: &RateLimitedLog,
) -> bool {
    let received_s = clock.now_s();
    let t = Instant::now();
    metrics.inc("messages_total", &[("feature", &input.feature)]);
    match decode(input, bytes) {
        Ok(d) => {
            let frame = Frame {
                stamp_s: d.stamp_s.unwrap_or(received_s),
                data: Arc::new(d.values),
            };
            let fresh = builder.lock().expect("window lock").push(&input.feature, frame);
            if !fresh {
                metrics.inc("rejected_total", &[("reason", "out_of_order")]);
            }
            metrics.decode.record(t.elapsed().as_secs_f64());
            fresh
        }
        Err((reason, detail)) => {
            metrics.inc("rejected_total", &[("reason", reason.label())]);
            log.warn(&format!("{}:{}", input.topic, reason.label()), || {
                format!("rejected a message on {} ({}): {detail}", input.topic, reason.label())
            });
            false
        }
    }
}

/// The rate trigger, or the driver's queue reports (`on_demand`); `on_frame` triggers from its input.
async fn spawn_trigger(
    session: &zenoh::Session,
    cfg: &DaemonConfig,
    resolved: &Resolved,
    shared: &Shared,
    tx: mpsc::Sender<()>,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    match cfg.trigger.mode {
        TriggerMode::OnFrame => {
            tracing::info!("triggering on each new frame of {}", resolved.trigger_feature);
        }
        TriggerMode::Rate => {
            let period = Duration::from_secs_f64(1.0 / resolved.rate_hz);
            tasks.spawn(async move {
                let mut iv = tokio::time::interval(period);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    iv.tick().await;
                    let _ = tx.try_send(());
                }
            });
            tracing::info!("triggering at {:.2} Hz", resolved.rate_hz);
        }
        TriggerMode::OnDemand => {
            let sub = session
                .declare_subscriber(resolved.queue_topic.clone())
                .await
                .map_err(|e| anyhow!("subscribing to {}: {e}", resolved.queue_topic))?;
            let threshold = cfg.trigger.queue_threshold_s;
            let (metrics, in_flight) = (shared.metrics.clone(), shared.in_flight.clone());
            tasks.spawn(async move {
                while let Ok(sample) = sub.recv_async().await {
                    match riptide_msgs::decode::<Float32MultiArray>(&sample.payload().to_bytes()) {
                        Ok(m) if m.data.first().is_some_and(|q| q.is_finite()) => {
                            if (m.data[0] as f64) < threshold && !in_flight.load(Ordering::Acquire) {
                                let _ = tx.try_send(());
                            }
                        }
                        _ => metrics.inc("rejected_total", &[("reason", "queue_report")]),
                    }
                }
            });
            tracing::info!(
                "triggering when {} reports < {threshold:.3} s queued",
                resolved.queue_topic
            );
        }
    }
    Ok(())
}

/// The Prometheus endpoint (when `[metrics] listen` is set) and the periodic summary line.
async fn spawn_metrics(cfg: &DaemonConfig, metrics: &Arc<Metrics>, tasks: &mut JoinSet<()>) -> Result<()> {
    if let Some(addr) = &cfg.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen = {addr}"))?;
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
        tasks.spawn(crate::node::metrics::serve(listener, metrics.clone()));
    }
    let summary = Duration::from_secs_f64(cfg.metrics.summary_period_s.max(0.1));
    let m = metrics.clone();
    tasks.spawn(async move {
        let mut iv = tokio::time::interval(summary);
        iv.tick().await;
        loop {
            iv.tick().await;
            tracing::info!("stats: {}", m.summary());
        }
    });
    Ok(())
}

/// The chunk and metadata publishers and what publishing needs to know.
struct ChunkPublisher {
    chunk: zenoh::pubsub::Publisher<'static>,
    meta: zenoh::pubsub::Publisher<'static>,
    spec: PolicySpec,
    resolved: Resolved,
    output_type: OutputType,
    exec_latency_s: f64,
}

impl ChunkPublisher {
    async fn declare(
        session: &zenoh::Session,
        cfg: &DaemonConfig,
        resolved: &Resolved,
        spec: PolicySpec,
    ) -> Result<Self> {
        let declare = |key: String| async move {
            session
                .declare_publisher(key.clone())
                .await
                .map_err(|e| anyhow!("publisher {key}: {e}"))
        };
        tracing::info!(
            "publishing chunks on {} (metadata on {})",
            resolved.chunk_topic,
            resolved.meta_topic
        );
        Ok(Self {
            chunk: declare(resolved.chunk_topic.clone()).await?,
            meta: declare(resolved.meta_topic.clone()).await?,
            spec,
            resolved: resolved.clone(),
            output_type: cfg.output.msg_type,
            exec_latency_s: cfg.exec_latency_ms / 1e3,
        })
    }

    /// Time the chunk against the clock, publish what is still in the future, then its metadata.
    async fn publish(&self, out: &Outcome, shared: &Shared) {
        let (metrics, log) = (&shared.metrics, &shared.log);
        let inf = match &out.result {
            Ok(inf) => inf,
            Err(e) => {
                metrics.inc("inference_errors_total", &[]);
                log.warn("inference", || format!("inference {} failed: {e}", out.id));
                return;
            }
        };
        let inference_s = inf.inference_s();
        metrics.inference.record(inference_s);
        let t = Instant::now();
        let now = shared.clock.now_s();
        let r = &self.resolved;
        let deadline = now + self.exec_latency_s;
        let Some(timed) = time_chunk(&inf.chunk, self.spec.n_obs_steps, out.t_obs_s, r.dt_s, deadline) else {
            metrics.inc("over_budget_total", &[]);
            log.warn("over_budget", || {
                format!(
                    "inference {} took {:.1} ms: every action of the chunk was already due; nothing published",
                    out.id,
                    inference_s * 1e3
                )
            });
            return;
        };
        if timed.dropped > 0 {
            metrics.inc("late_actions_dropped_total", &[]);
        }
        let payload = match self.output_type {
            OutputType::JointTrajectory => riptide_msgs::encode(&timed.joint_trajectory(&r.joint_names)),
            OutputType::MultiDofJointTrajectory => riptide_msgs::encode(&timed.multi_dof("base_link")),
        };
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                log.warn("encode", || format!("cannot encode chunk {}: {e}", out.id));
                return;
            }
        };
        if let Err(e) = self.chunk.put(payload).await {
            log.warn("put", || format!("publishing chunk {} failed: {e}", out.id));
            return;
        }
        let publish_s = t.elapsed().as_secs_f64();
        metrics.publish.record(publish_s);
        // End to end in wall time; under a simulated clock, from the window's assembly instead.
        let total_s = if shared.clock.is_sim() {
            out.window_s + out.submitted.elapsed().as_secs_f64()
        } else {
            now_s() - out.t_obs_s
        };
        metrics.end_to_end.record(total_s);
        metrics.inc("chunks_total", &[]);
        let meta = chunk_meta(
            inf,
            MetaTimings {
                decode_s: metrics.decode.percentile(50.0).unwrap_or(0.0),
                window_s: out.window_s,
                publish_s,
                total_s,
            },
        );
        if let Ok(p) = riptide_msgs::encode(&meta) {
            let _ = self.meta.put(p).await;
        }
    }
}
