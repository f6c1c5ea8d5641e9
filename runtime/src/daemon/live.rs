//! The daemon in wall time, for one robot or a fleet (`[[robot]]`): per robot, one zenoh subscriber per
//! input feature → decode → observation window on the time grid; a trigger (rate, driver queue report,
//! or new camera frame) hands the window to the inference thread of the robot's checkpoint, which runs
//! the windows due together as one wave; each chunk is timed against the clock and published under the
//! robot's namespace with its metadata. Robots with the same checkpoint and device share one worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use riptide_msgs::ros::{ChunkMeta, Float32MultiArray};
use riptide_msgs::topics;
use riptide_policies::PolicySpec;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::daemon::config::{DaemonConfig, OutputType, Resolved, TriggerMode};
use crate::daemon::setup::{sampling_of, warmup_window, Running};
use crate::daemon::setup::{FatalFault, PolicyLoader};
use crate::node::{now_s, Clock, Graph, Metrics, Publisher, RateLimitedLog, RobotMetrics, RosType, Shutdown};
use crate::pipeline::chunk::time_chunk;
use crate::pipeline::decode::decode;
use crate::pipeline::input::ResolvedInput;
use crate::pipeline::window::{Frame, WindowBuilder, WindowError};
use crate::pipeline::worker::{FaultEvent, FaultPolicy, Job, Loader, Outcome, WavePolicy, Worker};
use crate::pipeline::{chunk_meta, MetaTimings, Pipeline, StreamId};

/// What one robot's input, trigger and publishing tasks share.
struct Shared {
    metrics: RobotMetrics,
    log: Arc<RateLimitedLog>,
    clock: Clock,
    builder: Arc<Mutex<WindowBuilder>>,
    in_flight: Arc<AtomicBool>,
}

/// One robot served by the daemon.
struct Robot {
    shared: Shared,
    /// Its worker (index into the daemon's workers) and stream on that worker.
    worker: usize,
    stream: StreamId,
    /// When the first executable action of a window's chunk is due minus the execution latency,
    /// seconds after the window's observation time.
    deadline_after_obs_s: f64,
    dt_s: f64,
    next_id: u64,
}

/// Serve in wall time (or `use_sim_time`) until `shutdown`, with policies from `loader`. Stops with
/// [`FatalFault`] when a worker gives up on its policy.
pub async fn run_live(
    cfg: DaemonConfig,
    shutdown: Shutdown,
    on_ready: impl FnOnce(&Running),
    loader: PolicyLoader,
) -> Result<Arc<Metrics>> {
    let t_load = Instant::now();
    let configs = cfg.robot_configs()?;
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<(usize, Outcome)>();
    let (faults_tx, mut faults_rx) = mpsc::unbounded_channel::<FaultEvent>();
    let (mut workers, placement) = start_workers((&cfg, &configs), &loader, &results_tx, &faults_tx).await?;
    let metrics = Arc::new(Metrics::default());
    let ros2 = cfg.ros2.settings("daemon")?;
    let session = Graph::open(&cfg.zenoh, ros2.as_ref(), metrics.clone()).await?;
    let clock = if cfg.use_sim_time {
        Clock::sim(&session, &configs[0].topic(topics::CLOCK))?
    } else {
        Clock::Wall
    };
    let log = Arc::new(RateLimitedLog::default());
    let mut tasks = JoinSet::new();
    let (trigger_tx, mut trigger_rx) = mpsc::channel::<usize>(configs.len().max(1) * 2);
    let mut robots = Vec::new();
    let mut publishers = Vec::new();
    let mut tokens = Vec::new();
    for (r, (rcfg, (w, stream))) in configs.into_iter().zip(placement).enumerate() {
        let spec = workers[w].spec.clone();
        let resolved = Arc::new(rcfg.resolve(&spec)?);
        let shared = Shared {
            metrics: RobotMetrics::new(metrics.clone(), rcfg.namespace.trim_end_matches('/')),
            log: log.clone(),
            clock: clock.clone(),
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
        subscribe_inputs(&session, &rcfg, &resolved, &shared, (r, &trigger_tx), &mut tasks)?;
        spawn_trigger(&session, &rcfg, &resolved, &shared, (r, trigger_tx.clone()), &mut tasks)?;
        publishers.push(ChunkPublisher::declare(&session, &rcfg, &resolved, spec.clone())?);
        // Declared before the liveliness token: a peer that sees the daemon alive can query it.
        if rcfg.remote_inference {
            let key = rcfg.topic(topics::INFER);
            let (m, l) = (shared.metrics.clone(), log.clone());
            let worker = (workers[w].queries(), stream);
            crate::daemon::remote::serve(&session, key, worker, spec.clone(), m, l, &mut tasks).await?;
        }
        tokens.push(
            session
                .liveliness()
                .declare_token(resolved.alive_topic.clone())
                .await
                .map_err(|e| anyhow!("liveliness token {}: {e}", resolved.alive_topic))?,
        );
        let first_due = (spec.exec_start as f64 + 1.0 - spec.n_obs_steps as f64) * resolved.dt_s;
        robots.push(Robot {
            deadline_after_obs_s: first_due - rcfg.exec_latency_ms / 1e3,
            dt_s: resolved.dt_s,
            shared,
            worker: w,
            stream,
            next_id: 0,
        });
    }
    tracing::info!(
        "{} robot(s) on {} worker(s) ready in {:.1} s",
        robots.len(),
        workers.len(),
        t_load.elapsed().as_secs_f64()
    );
    spawn_metrics(&cfg, &metrics, &mut tasks).await?;
    on_ready(&Running {
        metrics: metrics.clone(),
        spec: workers[0].spec.clone(),
    });
    let mut fatal = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(ev) = faults_rx.recv() => match ev {
                FaultEvent::Fault { reason, .. } => metrics.inc("policy_faults_total", &[("reason", reason.label())]),
                FaultEvent::Recovered => metrics.inc("policy_reloads_total", &[]),
                FaultEvent::Fatal(why) => {
                    tracing::error!("stopping: {why}");
                    fatal = Some(why);
                    break;
                }
            },
            Some(r) = trigger_rx.recv() => submit(&mut robots[r], &workers),
            Some((r, out)) = results_rx.recv() => {
                let robot = &robots[r];
                robot.shared.in_flight.store(false, Ordering::Release);
                robot.shared.metrics.set("inference_in_flight", &[], 0.0);
                publishers[r].publish(&out, &robot.shared).await;
            }
        }
    }
    tracing::info!("shutting down");
    tasks.abort_all();
    workers.iter_mut().for_each(Worker::shutdown);
    drop(tokens);
    drop(publishers);
    session
        .session()
        .close()
        .await
        .map_err(|e| anyhow!("closing the zenoh session: {e}"))?;
    match fatal {
        Some(why) => Err(FatalFault(why).into()),
        None => Ok(metrics),
    }
}

/// One inference thread per distinct (checkpoint, device): it loads the policy (a GPU context lives
/// there) with one stream per robot. Returns the workers and each robot's (worker, stream).
async fn start_workers(
    (top, configs): (&DaemonConfig, &[DaemonConfig]),
    loader: &PolicyLoader,
    results: &mpsc::UnboundedSender<(usize, Outcome)>,
    faults: &mpsc::UnboundedSender<FaultEvent>,
) -> Result<(Vec<Worker>, Vec<(usize, StreamId)>)> {
    let waves = WavePolicy {
        batch_window: top.batch_window()?,
    };
    let mut groups: Vec<(std::path::PathBuf, String, Vec<usize>)> = Vec::new();
    for (r, c) in configs.iter().enumerate() {
        match groups.iter_mut().find(|g| g.0 == c.checkpoint && g.1 == c.device) {
            Some(g) => g.2.push(r),
            None => groups.push((c.checkpoint.clone(), c.device.clone(), vec![r])),
        }
    }
    let mut placement = vec![(0, 0); configs.len()];
    let mut workers = Vec::new();
    for (w, (checkpoint, _, members)) in groups.into_iter().enumerate() {
        let device = configs[members[0]].device()?;
        let streams: Vec<_> = members
            .iter()
            .map(|&r| (sampling_of(&configs[r]), configs[r].fps.map_or(1.0, |f| 1.0 / f)))
            .collect();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let (cp, loader) = (checkpoint.clone(), loader.clone());
        let load: Loader = Arc::new(move || {
            let policy = loader(&cp, device)?;
            let mut streams = streams.iter().cloned();
            // Warm starts shift by control periods; without fps the config check says so.
            let (sampling, dt_s) = streams.next().expect("a worker serves at least one robot");
            let mut pipeline = Pipeline::new(policy, sampling, dt_s)?;
            for (sampling, dt_s) in streams {
                pipeline.add_stream(sampling, dt_s)?;
            }
            Ok(pipeline)
        });
        let fault_policy = FaultPolicy {
            max_consecutive: top.worker.max_consecutive_faults,
            events: faults.clone(),
        };
        let (worker, warm) = Worker::start(load, configs[members[0]].warmup, warmup_window, waves, fault_policy, tx)
            .await
            .with_context(|| format!("loading {}", checkpoint.display()))?;
        tracing::info!(
            "{} on {} for {} robot(s); {} warm-up inferences, last {:.1} ms",
            worker.spec.kind,
            worker.spec.backend,
            members.len(),
            warm.runs,
            warm.last_s * 1e3
        );
        // Route each outcome to its robot.
        let (results, members2) = (results.clone(), members.clone());
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                if results.send((members2[out.stream], out)).is_err() {
                    break;
                }
            }
        });
        for (stream, &r) in members.iter().enumerate() {
            placement[r] = (w, stream);
        }
        workers.push(worker);
    }
    Ok((workers, placement))
}

/// Build the robot's window for now and hand it to its inference thread.
fn submit(robot: &mut Robot, workers: &[Worker]) {
    let shared = &robot.shared;
    let t = Instant::now();
    let now = shared.clock.now_s();
    // Every window the trigger asks for ends as a chunk, or superseded, blocked, over budget, an error
    // or a fault (the soak checks the sum).
    shared.metrics.inc("windows_total", &[]);
    let built = shared.builder.lock().expect("window lock").build(now);
    match built {
        Ok(window) => {
            let window_s = t.elapsed().as_secs_f64();
            shared.metrics.all.window.record(window_s);
            shared.in_flight.store(true, Ordering::Release);
            shared.metrics.set("inference_in_flight", &[], 1.0);
            let job = Job {
                id: robot.next_id,
                stream: robot.stream,
                submitted: Instant::now(),
                deadline: Some(Instant::now() + until_next_due(window.t_obs_s, robot, now)),
                window,
                window_s,
            };
            robot.next_id += 1;
            if workers[robot.worker].submit(job) {
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
                .warn(&format!("{}:window:{reason}", shared.metrics.robot()), || {
                    format!("{}: no inference: {e}", shared.metrics.robot())
                });
        }
    }
}

/// How long until the chunk's next action (on the window's time grid) is due, less the execution
/// latency: a wave never waits past it, as waiting longer would drop that action.
fn until_next_due(t_obs_s: f64, robot: &Robot, now: f64) -> Duration {
    let first = t_obs_s + robot.deadline_after_obs_s;
    let missed = ((now - first) / robot.dt_s).ceil().max(0.0);
    let until = first + missed * robot.dt_s - now;
    Duration::try_from_secs_f64(until).unwrap_or_default()
}

/// One subscriber per input feature: decode, push into the window, and trigger on new camera frames.
fn subscribe_inputs(
    session: &Graph,
    cfg: &DaemonConfig,
    resolved: &Resolved,
    shared: &Shared,
    (robot, trigger): (usize, &mpsc::Sender<usize>),
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    let on_frame = cfg.trigger.mode == TriggerMode::OnFrame;
    for input in resolved.inputs.iter().cloned() {
        let ty = input.msg_type.ros_type();
        let (sub, samples) = session.subscribe_fifo(input.declared(), &ty)?;
        let frame_trigger = (on_frame && input.feature == resolved.trigger_feature)
            .then(|| (trigger.clone(), shared.in_flight.clone()));
        tracing::info!("{} ← {}", input.feature, session.describe(input.declared(), &ty));
        let (metrics, builder, log, clock) = (
            shared.metrics.clone(),
            shared.builder.clone(),
            shared.log.clone(),
            shared.clock.clone(),
        );
        tasks.spawn(async move {
            let _sub = sub;
            while let Ok(sample) = samples.recv_async().await {
                let fresh = on_input(&input, &sample.payload().to_bytes(), &clock, &builder, &metrics, &log);
                if let Some((tx, in_flight)) = &frame_trigger {
                    if fresh && !in_flight.load(Ordering::Acquire) {
                        let _ = tx.try_send(robot);
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
    metrics: &RobotMetrics,
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
            metrics.all.decode.record(t.elapsed().as_secs_f64());
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
fn spawn_trigger(
    session: &Graph,
    cfg: &DaemonConfig,
    resolved: &Resolved,
    shared: &Shared,
    (robot, tx): (usize, mpsc::Sender<usize>),
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
                    let _ = tx.try_send(robot);
                }
            });
            tracing::info!("triggering at {:.2} Hz", resolved.rate_hz);
        }
        TriggerMode::OnDemand => {
            let (sub, samples) =
                session.subscribe_fifo(resolved.queue_topic.clone(), &RosType::of::<Float32MultiArray>())?;
            let threshold = cfg.trigger.queue_threshold_s;
            let (metrics, in_flight) = (shared.metrics.clone(), shared.in_flight.clone());
            tasks.spawn(async move {
                let _sub = sub;
                while let Ok(sample) = samples.recv_async().await {
                    match riptide_msgs::decode::<Float32MultiArray>(&sample.payload().to_bytes()) {
                        Ok(m) if m.data.first().is_some_and(|q| q.is_finite()) => {
                            if (m.data[0] as f64) < threshold && !in_flight.load(Ordering::Acquire) {
                                let _ = tx.try_send(robot);
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
    chunk: Publisher,
    meta: Publisher,
    spec: PolicySpec,
    resolved: Resolved,
    output_type: OutputType,
    exec_latency_s: f64,
}

impl ChunkPublisher {
    fn declare(session: &Graph, cfg: &DaemonConfig, resolved: &Resolved, spec: PolicySpec) -> Result<Self> {
        let chunk_type = cfg.output.msg_type.ros_type();
        let meta_type = RosType::of::<ChunkMeta>();
        tracing::info!(
            "publishing chunks on {} (metadata on {})",
            session.describe(resolved.chunk_declared(), &chunk_type),
            session.describe(resolved.meta_declared(), &meta_type)
        );
        Ok(Self {
            chunk: session.publisher(resolved.chunk_declared(), &chunk_type)?,
            meta: session.publisher(resolved.meta_declared(), &meta_type)?,
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
            // Counted once per fault by the daemon; nothing is published (the driver's watchdog holds).
            Err(_) if out.fault.is_some() => return,
            Err(e) => {
                metrics.inc("inference_errors_total", &[]);
                log.warn(&format!("{}:inference", metrics.robot()), || {
                    format!("{}: inference {} failed: {e}", metrics.robot(), out.id)
                });
                return;
            }
        };
        let inference_s = inf.inference_s();
        metrics.all.inference.record(inference_s);
        let t = Instant::now();
        let now = shared.clock.now_s();
        let r = &self.resolved;
        let deadline = now + self.exec_latency_s;
        let Some(timed) = time_chunk(&inf.chunk, self.spec.n_obs_steps, out.t_obs_s, r.dt_s, deadline) else {
            metrics.inc("over_budget_total", &[]);
            log.warn(&format!("{}:over_budget", metrics.robot()), || {
                format!(
                    "{}: inference {} took {:.1} ms (wave of {}): every action of the chunk was already due; \
                     nothing published",
                    metrics.robot(),
                    out.id,
                    inference_s * 1e3,
                    out.wave
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
        if let Err(e) = self.chunk.put(payload) {
            log.warn("put", || format!("publishing chunk {} failed: {e}", out.id));
            return;
        }
        let publish_s = t.elapsed().as_secs_f64();
        metrics.all.publish.record(publish_s);
        // End to end in wall time; under a simulated clock, from the window's assembly instead.
        let total_s = if shared.clock.is_sim() {
            out.window_s + out.submitted.elapsed().as_secs_f64()
        } else {
            now_s() - out.t_obs_s
        };
        metrics.all.end_to_end.record(total_s);
        metrics.inc("chunks_total", &[]);
        let meta = chunk_meta(
            inf,
            MetaTimings {
                decode_s: metrics.all.decode.percentile(50.0).unwrap_or(0.0),
                window_s: out.window_s,
                publish_s,
                total_s,
            },
        );
        if let Ok(p) = riptide_msgs::encode(&meta) {
            let _ = self.meta.put(p);
        }
    }
}
