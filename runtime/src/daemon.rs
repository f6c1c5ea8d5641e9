//! `riptide run`: observations in over zenoh, time-stamped action chunks out.
//!
//! Data flows one way: zenoh subscriber → decode → observation window → inference thread → chunk →
//! publisher. One shutdown path: the caller's shutdown future (Ctrl-C / SIGTERM) stops the triggers,
//! drops a queued window, lets an in-flight inference finish without publishing it, and closes the
//! session.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use riptide_msgs::ros::{ChunkMeta, Float32MultiArray, Time};
use riptide_policies::{load_policy, PolicySpec, SampleRequest};
use tokio::sync::mpsc;

use crate::chunk::time_chunk;
use crate::config::{DaemonConfig, OutputType, Resolved, ZenohMode};
use crate::decode::decode;
use crate::metrics::Metrics;
use crate::window::{Frame, TimedWindow, WindowBuilder, WindowError};
use crate::worker::{Job, Outcome, Worker};

/// Seconds since the Unix epoch: the time base of message stamps.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Wait until `session` sees the liveliness token `key` (a node is up and, since nodes declare their
/// subscribers first, ready to receive); an error after `timeout`.
pub async fn wait_alive(session: &zenoh::Session, key: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let replies = session.liveliness().get(key).await.map_err(|e| anyhow!("{e}"))?;
        if matches!(replies.recv_async().await, Ok(r) if r.result().is_ok()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("{key} never became visible within {:.0} s", timeout.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Build a zenoh config: loopback-only peer by default, no multicast scouting.
pub fn zenoh_config(cfg: &DaemonConfig) -> Result<zenoh::Config> {
    zenoh_config_from(&cfg.zenoh)
}

/// The zenoh config of any riptide node from its `[zenoh]` table.
pub fn zenoh_config_from(z: &crate::config::ZenohConfig) -> Result<zenoh::Config> {
    let mut c = match &z.config_file {
        Some(p) => zenoh::Config::from_file(p).map_err(|e| anyhow!("zenoh.config_file {}: {e}", p.display()))?,
        None => zenoh::Config::default(),
    };
    let mode = match z.mode {
        ZenohMode::Peer => "peer",
        ZenohMode::Client => "client",
        ZenohMode::Router => "router",
    };
    let set = |c: &mut zenoh::Config, k: &str, v: String| {
        c.insert_json5(k, &v)
            .map_err(|e| anyhow!("zenoh config {k} = {v}: {e}"))
    };
    set(&mut c, "mode", format!("{mode:?}"))?;
    set(&mut c, "listen/endpoints", serde_json::to_string(&z.listen)?)?;
    set(&mut c, "connect/endpoints", serde_json::to_string(&z.connect)?)?;
    set(&mut c, "scouting/multicast/enabled", z.multicast_scouting.to_string())?;
    set(&mut c, "transport/shared_memory/enabled", z.shared_memory.to_string())?;
    Ok(c)
}

/// Random observations that fit `spec` (for warm-up).
pub fn warmup_window(spec: &PolicySpec) -> TimedWindow {
    TimedWindow {
        window: crate::cli::random_window_for(spec, 1, 0),
        t_obs_s: 0.0,
    }
}

/// A running daemon's handles for tests and the CLI.
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub spec: PolicySpec,
}

/// Logs at most once per period per key (bad input must not flood the log).
struct RateLimitedLog {
    last: Mutex<std::collections::HashMap<String, Instant>>,
}

impl RateLimitedLog {
    fn warn(&self, key: &str, msg: impl FnOnce() -> String) {
        let mut last = self.last.lock().expect("log lock");
        let now = Instant::now();
        if last
            .get(key)
            .is_none_or(|t| now.duration_since(*t) > Duration::from_secs(5))
        {
            last.insert(key.to_string(), now);
            tracing::warn!("{}", msg());
        }
    }
}

/// Load the policy, resolve the config, and serve until `shutdown` completes.
pub async fn run(
    cfg: DaemonConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Running),
) -> Result<Arc<Metrics>> {
    if let Some(section) = cfg.lockstep.clone() {
        return crate::daemon_lockstep::run_lockstep(cfg, section, shutdown, on_ready).await;
    }
    let device = cfg.device()?;
    let checkpoint = cfg.checkpoint.clone();
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<Outcome>();
    let t_load = Instant::now();
    let request = SampleRequest {
        num_inference_steps: cfg.inference_steps,
        candidates: cfg.candidates,
        ..Default::default()
    };
    let (mut worker, warm) = Worker::start(
        move || load_policy(&checkpoint, device),
        cfg.warmup,
        request.clone(),
        warmup_window,
        results_tx,
        cfg.rti
            .clone()
            .zip(cfg.fps)
            .map(|(rti, fps)| crate::warm::WarmStarter::new(rti, 1.0 / fps)),
    )
    .await
    .with_context(|| format!("loading {}", cfg.checkpoint.display()))?;
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

    let session = zenoh::open(zenoh_config(&cfg)?)
        .await
        .map_err(|e| anyhow!("cannot open the zenoh session: {e}"))?;
    let clock = if cfg.use_sim_time {
        crate::clock::Clock::sim(&session, &cfg.topic("clock")).await?
    } else {
        crate::clock::Clock::Wall
    };
    let metrics = Arc::new(Metrics::default());
    let log = Arc::new(RateLimitedLog { last: Mutex::default() });
    let builder = Arc::new(Mutex::new(WindowBuilder::new(
        spec.n_obs_steps,
        resolved.dt_s,
        resolved
            .inputs
            .iter()
            .map(|i| (i.feature.clone(), i.shape.clone(), i.max_age_s)),
    )));
    let mut tasks = tokio::task::JoinSet::new();
    let in_flight = Arc::new(AtomicBool::new(false));
    let (trigger_tx, mut trigger_rx) = mpsc::channel::<()>(1);
    let on_frame = cfg.trigger.mode == crate::config::TriggerMode::OnFrame;

    // Inputs: one subscriber per feature.
    for input in resolved.inputs.iter().cloned() {
        let sub = session
            .declare_subscriber(input.topic.clone())
            .await
            .map_err(|e| anyhow!("subscribing to {}: {e}", input.topic))?;
        let (metrics, builder, log, clock) = (metrics.clone(), builder.clone(), log.clone(), clock.clone());
        let frame_trigger =
            (on_frame && input.feature == resolved.trigger_feature).then(|| (trigger_tx.clone(), in_flight.clone()));
        tracing::info!("{} ← {} ({:?})", input.feature, input.topic, input.msg_type);
        tasks.spawn(async move {
            while let Ok(sample) = sub.recv_async().await {
                let received_s = clock.now_s();
                let t = Instant::now();
                let bytes = sample.payload().to_bytes();
                metrics.inc("messages_total", Some(("feature", &input.feature)));
                match decode(&input, &bytes) {
                    Ok(d) => {
                        let frame = Frame {
                            stamp_s: d.stamp_s.unwrap_or(received_s),
                            data: Arc::new(d.values),
                        };
                        let fresh = builder.lock().expect("window lock").push(&input.feature, frame);
                        if !fresh {
                            metrics.inc("rejected_total", Some(("reason", "out_of_order")));
                        }
                        metrics.decode.record(t.elapsed().as_secs_f64());
                        if let Some((tx, in_flight)) = &frame_trigger {
                            if fresh && !in_flight.load(Ordering::Acquire) {
                                let _ = tx.try_send(());
                            }
                        }
                    }
                    Err((reason, detail)) => {
                        metrics.inc("rejected_total", Some(("reason", reason.label())));
                        log.warn(&format!("{}:{}", input.topic, reason.label()), || {
                            format!("rejected a message on {} ({}): {detail}", input.topic, reason.label())
                        });
                    }
                }
            }
        });
    }

    // Outputs.
    let chunk_pub = session
        .declare_publisher(resolved.chunk_topic.clone())
        .await
        .map_err(|e| anyhow!("publisher {}: {e}", resolved.chunk_topic))?;
    let meta_pub = session
        .declare_publisher(resolved.meta_topic.clone())
        .await
        .map_err(|e| anyhow!("publisher {}: {e}", resolved.meta_topic))?;

    // Triggers.
    let next_id = Arc::new(AtomicU64::new(0));
    match cfg.trigger.mode {
        crate::config::TriggerMode::OnFrame => {
            tracing::info!("triggering on each new frame of {}", resolved.trigger_feature);
        }
        crate::config::TriggerMode::Rate => {
            let period = Duration::from_secs_f64(1.0 / resolved.rate_hz);
            let tx = trigger_tx.clone();
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
        crate::config::TriggerMode::OnDemand => {
            let sub = session
                .declare_subscriber(resolved.queue_topic.clone())
                .await
                .map_err(|e| anyhow!("subscribing to {}: {e}", resolved.queue_topic))?;
            let (threshold, tx, metrics, in_flight) = (
                cfg.trigger.queue_threshold_s,
                trigger_tx.clone(),
                metrics.clone(),
                in_flight.clone(),
            );
            tasks.spawn(async move {
                while let Ok(sample) = sub.recv_async().await {
                    match riptide_msgs::decode::<Float32MultiArray>(&sample.payload().to_bytes()) {
                        Ok(m) if m.data.first().is_some_and(|q| q.is_finite()) => {
                            if (m.data[0] as f64) < threshold && !in_flight.load(Ordering::Acquire) {
                                let _ = tx.try_send(());
                            }
                        }
                        _ => metrics.inc("rejected_total", Some(("reason", "queue_report"))),
                    }
                }
            });
            tracing::info!(
                "triggering when {} reports < {:.3} s queued",
                resolved.queue_topic,
                threshold
            );
        }
    }
    drop(trigger_tx);

    let _alive = session
        .liveliness()
        .declare_token(resolved.alive_topic.clone())
        .await
        .map_err(|e| anyhow!("liveliness token {}: {e}", resolved.alive_topic))?;
    tracing::info!(
        "publishing chunks on {} (metadata on {})",
        resolved.chunk_topic,
        resolved.meta_topic
    );

    let running = Running {
        metrics: metrics.clone(),
        spec: spec.clone(),
    };
    if let Some(addr) = &cfg.metrics.listen {
        let addr = addr.clone();
        let m = metrics.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("metrics.listen = {addr}"))?;
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
        tasks.spawn(async move { serve_metrics(listener, m).await });
    }
    let summary = Duration::from_secs_f64(cfg.metrics.summary_period_s.max(0.1));
    {
        let m = metrics.clone();
        tasks.spawn(async move {
            let mut iv = tokio::time::interval(summary);
            iv.tick().await;
            loop {
                iv.tick().await;
                tracing::info!("stats: {}", m.summary());
            }
        });
    }
    on_ready(&running);

    let exec_latency_s = cfg.exec_latency_ms / 1e3;
    let output_type = cfg.output.msg_type;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = trigger_rx.recv() => {
                let t = Instant::now();
                let built = builder.lock().expect("window lock").build(clock.now_s());
                match built {
                    Ok(window) => {
                        let window_s = t.elapsed().as_secs_f64();
                        metrics.window.record(window_s);
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        in_flight.store(true, Ordering::Release);
                        let job = Job { id, window, submitted: Instant::now(), window_s, request: request.clone() };
                        if worker.submit(job) {
                            metrics.inc("superseded_total", None);
                        }
                    }
                    Err(e) => {
                        let reason = match &e { WindowError::Missing(_) => "missing", WindowError::Stale { .. } => "stale" };
                        metrics.inc("blocked_total", Some(("reason", reason)));
                        log.warn(&format!("window:{reason}"), || format!("no inference: {e}"));
                    }
                }
            }
            Some(out) = results_rx.recv() => {
                in_flight.store(false, Ordering::Release);
                publish(&out, &spec, &resolved, output_type, exec_latency_s, &chunk_pub, &meta_pub, &metrics, &log, &clock).await;
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
    Ok(metrics)
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    out: &Outcome,
    spec: &PolicySpec,
    r: &Resolved,
    output_type: OutputType,
    exec_latency_s: f64,
    chunk_pub: &zenoh::pubsub::Publisher<'_>,
    meta_pub: &zenoh::pubsub::Publisher<'_>,
    metrics: &Metrics,
    log: &RateLimitedLog,
    clock: &crate::clock::Clock,
) {
    let chunk = match &out.result {
        Ok(c) => c,
        Err(e) => {
            metrics.inc("inference_errors_total", None);
            log.warn("inference", || format!("inference {} failed: {e}", out.id));
            return;
        }
    };
    let inference_s = out.finished.duration_since(out.started).as_secs_f64();
    metrics.inference.record(inference_s);
    let t = Instant::now();
    let now = clock.now_s();
    let Some(timed) = time_chunk(chunk, spec.n_obs_steps, out.t_obs_s, r.dt_s, now + exec_latency_s) else {
        metrics.inc("over_budget_total", None);
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
        metrics.inc("late_actions_dropped_total", None);
    }
    let payload = match output_type {
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
    if let Err(e) = chunk_pub.put(payload).await {
        log.warn("put", || format!("publishing chunk {} failed: {e}", out.id));
        return;
    }
    let publish_s = t.elapsed().as_secs_f64();
    metrics.publish.record(publish_s);
    // End to end in wall time; under a simulated clock, from the window's assembly instead.
    let total_s = if clock.is_sim() {
        out.window_s + out.submitted.elapsed().as_secs_f64()
    } else {
        now_s() - out.t_obs_s
    };
    metrics.end_to_end.record(total_s);
    metrics.inc("chunks_total", None);
    let meta = ChunkMeta {
        inference_id: out.id,
        policy_kind: chunk.meta.kind.to_string(),
        nfe: chunk.meta.nfe as u32,
        warm_started: chunk.meta.warm_started,
        seed: chunk.meta.seed,
        obs_stamp: Time::from_secs_f64(out.t_obs_s),
        decode_s: metrics.decode.percentile(50.0).unwrap_or(0.0),
        window_s: out.window_s,
        inference_s,
        publish_s,
        total_s,
    };
    if let Ok(p) = riptide_msgs::encode(&meta) {
        let _ = meta_pub.put(p).await;
    }
}

/// Minimal HTTP/1.1 server for the Prometheus text endpoint (loopback by default).
async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = m.prometheus();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
