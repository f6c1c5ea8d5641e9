//! The daemon over real zenoh sessions on loopback: observations in, time-stamped chunks out; bad
//! payloads are counted and never reach the policy; a frozen input stops the chunks; shutdown is clean.

use std::sync::Arc;
use std::time::Duration;

use riptide_msgs::ros::JointTrajectory;
use riptide_runtime::daemon::config::DaemonConfig;
use riptide_runtime::daemon::run;
use riptide_runtime::node::now_s;
use riptide_runtime::node::Metrics;
use riptide_tests::{client, fixtures_dir, free_port, vector};
use tokio::sync::{oneshot, Mutex};

const FIX: &str = "state_env_ddim_eps";

fn config(port: u16, ns: &str) -> DaemonConfig {
    let mut cfg = DaemonConfig::for_checkpoint(fixtures_dir().join("lerobot").join(FIX));
    cfg.fps = Some(30.0);
    cfg.namespace = ns.into();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    cfg.trigger.rate_hz = Some(10.0);
    cfg.warmup = 1;
    cfg.inputs.insert(
        "observation.environment_state".into(),
        toml::from_str("max_age_ms = 300").unwrap(),
    );
    cfg
}

/// Wait until the daemon's liveliness token is visible (no sleeps guessing start-up time).
async fn wait_alive(s: &zenoh::Session, ns: &str) {
    riptide_runtime::node::wait_alive(s, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
        .await
        .expect("daemon alive");
}

struct Harness {
    ns: String,
    session: zenoh::Session,
    metrics: Arc<Mutex<Option<Arc<Metrics>>>>,
    stop: Option<oneshot::Sender<()>>,
    daemon: tokio::task::JoinHandle<anyhow::Result<Arc<Metrics>>>,
    chunks: Arc<Mutex<Vec<(f64, JointTrajectory)>>>,
}

async fn start(port: u16, tag: &str) -> Harness {
    start_with(port, tag, |_| {}).await
}

async fn start_with(port: u16, tag: &str, edit: impl FnOnce(&mut DaemonConfig)) -> Harness {
    let ns = format!("rt{}{tag}", std::process::id());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let metrics: Arc<Mutex<Option<Arc<Metrics>>>> = Arc::default();
    let m2 = metrics.clone();
    let mut cfg = config(port, &ns);
    edit(&mut cfg);
    let daemon = tokio::spawn(async move {
        run(
            cfg,
            riptide_runtime::node::Shutdown::when(async move {
                let _ = stop_rx.await;
            }),
            move |r| {
                *m2.try_lock().unwrap() = Some(r.metrics.clone());
            },
        )
        .await
    });
    let session = client(port).await;
    wait_alive(&session, &ns).await;
    let chunks: Arc<Mutex<Vec<(f64, JointTrajectory)>>> = Arc::default();
    let sub = session.declare_subscriber(format!("{ns}/action/chunk")).await.unwrap();
    let c2 = chunks.clone();
    tokio::spawn(async move {
        while let Ok(s) = sub.recv_async().await {
            let jt: JointTrajectory =
                riptide_msgs::decode(&s.payload().to_bytes()).expect("chunk decodes as JointTrajectory");
            c2.lock().await.push((now_s(), jt));
        }
    });
    Harness {
        ns,
        session,
        metrics,
        stop: Some(stop_tx),
        daemon,
        chunks,
    }
}

impl Harness {
    /// A publisher on `<namespace>/<rest>`.
    async fn publisher(&self, rest: &str) -> zenoh::pubsub::Publisher<'static> {
        self.session
            .declare_publisher(format!("{}/{rest}", self.ns))
            .await
            .unwrap()
    }

    async fn metrics(&self) -> Arc<Metrics> {
        self.metrics.lock().await.clone().expect("daemon ready")
    }

    async fn stop(mut self) -> Arc<Metrics> {
        self.stop.take().unwrap().send(()).unwrap();
        let m = tokio::time::timeout(Duration::from_secs(30), self.daemon)
            .await
            .expect("clean shutdown")
            .unwrap()
            .unwrap();
        self.session.close().await.unwrap();
        m
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunks_arrive_time_stamped_and_bad_payloads_are_counted() {
    let h = start_with(17_461, "a", |c| c.metrics.listen = Some("127.0.0.1:17471".into())).await;
    let state = h.publisher("observation/state").await;
    let env = h.publisher("observation/environment_state").await;
    let t_start = now_s();
    let period = Duration::from_secs_f64(1.0 / 30.0);
    for i in 0..60 {
        let x = (i as f32 * 0.1).sin();
        state.put(vector(&[x, -x])).await.unwrap();
        env.put(vector(&[x, 0.5, -0.5, 0.1, 0.2, x])).await.unwrap();
        if i % 10 == 3 {
            state.put(b"\x00\x01\x00\x00garbage".to_vec()).await.unwrap();
            state.put(vector(&[f32::NAN, 1.0])).await.unwrap();
            state.put(vector(&[1.0, 2.0, 3.0])).await.unwrap();
        }
        tokio::time::sleep(period).await;
    }
    let m = h.metrics().await;
    let chunks = h.chunks.lock().await.clone();
    assert!(chunks.len() >= 5, "only {} chunks in 2 s at 10 Hz", chunks.len());
    let dt = 1.0 / 30.0;
    for (received, jt) in &chunks {
        assert!(
            !jt.points.is_empty() && jt.points.len() <= 8,
            "{} points",
            jt.points.len()
        );
        assert_eq!(jt.joint_names, vec!["a0", "a1"]);
        let stamp = jt.header.stamp.as_secs_f64();
        // The first point is due at or after the observation it came from and not far in the future.
        assert!(
            stamp >= t_start && stamp <= received + 1.0,
            "stamp {stamp} vs received {received}"
        );
        for (k, p) in jt.points.iter().enumerate() {
            assert!(
                (p.time_from_start.as_secs_f64() - k as f64 * dt).abs() < 1e-6,
                "point {k} at {:?}",
                p.time_from_start
            );
            assert_eq!(p.positions.len(), 2);
            assert!(p.positions.iter().all(|v| v.is_finite()));
        }
    }
    assert!(m.get("rejected_total{reason=\"malformed\"}") >= 6, "{}", m.summary());
    assert!(m.get("rejected_total{reason=\"non_finite\"}") >= 6, "{}", m.summary());
    assert!(m.get("rejected_total{reason=\"shape\"}") >= 6, "{}", m.summary());
    assert_eq!(m.get("inference_errors_total"), 0);
    // The Prometheus endpoint serves the same counters.
    let body = tokio::task::spawn_blocking(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:17471").unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    // One robot's series carry its namespace as the `robot` label.
    assert!(
        body.contains(&format!("riptide_chunks_total{{robot=\"{}\"}} ", h.ns))
            && body.contains("riptide_inference_seconds_bucket"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "riptide_rejected_total{{robot=\"{}\",reason=\"malformed\"}}",
            h.ns
        )),
        "{body}"
    );
    // An independent parser (Python prometheus_client) reads the endpoint: every family typed, with help.
    let text = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if let Some(fams) = riptide_tests::parse_with_prometheus_client(text) {
        for (name, f) in &fams {
            assert!(f["type"] != "unknown" && f["help"] != "", "{name}: {f}");
        }
        assert_eq!(fams["riptide_rejected"]["type"], "counter");
        assert_eq!(fams["riptide_inference_seconds"]["type"], "histogram");
        assert_eq!(fams["riptide_inference_in_flight"]["type"], "gauge");
    }
    let m = h.stop().await;
    assert!(m.inference.count() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_input_stops_the_chunks() {
    let h = start(17_462, "b").await;
    let state = h.publisher("observation/state").await;
    let env = h.publisher("observation/environment_state").await;
    let period = Duration::from_secs_f64(1.0 / 30.0);
    for i in 0..30 {
        state.put(vector(&[0.1 * i as f32, 0.0])).await.unwrap();
        env.put(vector(&[0.0; 6])).await.unwrap();
        tokio::time::sleep(period).await;
    }
    assert!(
        !h.chunks.lock().await.is_empty(),
        "no chunks while both inputs were live"
    );
    // The environment "camera" freezes; state keeps coming. Within max_age (300 ms) + one trigger
    // period the chunks must stop.
    let frozen_at = now_s();
    for i in 0..45 {
        state.put(vector(&[0.1 * i as f32, 0.0])).await.unwrap();
        tokio::time::sleep(period).await;
    }
    let late: Vec<_> = h
        .chunks
        .lock()
        .await
        .iter()
        .filter(|(t, _)| *t > frozen_at + 0.6)
        .cloned()
        .collect();
    assert!(late.is_empty(), "{} chunks published from a frozen input", late.len());
    let m = h.metrics().await;
    assert!(m.get("blocked_total{reason=\"stale\"}") >= 5, "{}", m.summary());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_demand_trigger_follows_the_driver_queue() {
    let h = start_with(17_463, "c", |c| {
        c.trigger.mode = riptide_runtime::daemon::config::TriggerMode::OnDemand;
        c.trigger.queue_threshold_s = 0.2;
    })
    .await;
    let state = h.publisher("observation/state").await;
    let env = h.publisher("observation/environment_state").await;
    let queue = h.publisher("driver/queue").await;
    let period = Duration::from_secs_f64(1.0 / 30.0);
    // A full queue: no inference wanted.
    for _ in 0..20 {
        state.put(vector(&[0.0, 0.0])).await.unwrap();
        env.put(vector(&[0.0; 6])).await.unwrap();
        queue.put(vector(&[1.0])).await.unwrap();
        tokio::time::sleep(period).await;
    }
    assert!(
        h.chunks.lock().await.is_empty(),
        "chunks published while the driver queue was full"
    );
    // The queue drains below the threshold: chunks follow.
    for _ in 0..20 {
        state.put(vector(&[0.0, 0.0])).await.unwrap();
        env.put(vector(&[0.0; 6])).await.unwrap();
        queue.put(vector(&[0.05])).await.unwrap();
        tokio::time::sleep(period).await;
    }
    assert!(!h.chunks.lock().await.is_empty(), "no chunk after the queue drained");
    h.stop().await;
}

/// The generated image fixture (one 96×96 camera + 2-D state), or None (skipped) when not generated.
fn image_fixture() -> Option<std::path::PathBuf> {
    let dir = fixtures_dir().join("generated").join("image_state_ddim_gn");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    let msg = "image fixtures not generated: run `.venv/bin/python tests/fixtures/make_lerobot_fixtures.py \
               --only image --out tests/fixtures/generated` (see .ci/run)";
    if std::env::var_os("RIPTIDE_REQUIRE_IMAGE_FIXTURES").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

fn camera_frame(w: u32, h: u32, stamp_s: f64, shade: u8) -> Vec<u8> {
    riptide_msgs::encode(&riptide_msgs::ros::Image {
        header: riptide_msgs::ros::Header {
            stamp: riptide_msgs::ros::Time::from_secs_f64(stamp_s),
            frame_id: "front".into(),
        },
        height: h,
        width: w,
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: 3 * w,
        data: (0..3 * w * h)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(shade))
            .collect(),
    })
    .unwrap()
}

fn joint_state(stamp_s: f64, q: [f64; 2]) -> Vec<u8> {
    riptide_msgs::encode(&riptide_msgs::ros::JointState {
        header: riptide_msgs::ros::Header {
            stamp: riptide_msgs::ros::Time::from_secs_f64(stamp_s),
            frame_id: String::new(),
        },
        name: vec!["x".into(), "y".into()],
        position: q.to_vec(),
        ..Default::default()
    })
    .unwrap()
}

/// Camera + state at 30 Hz, stamped by the "robot", into the image policy: every chunk's metadata
/// names an observation stamp that was really sent, and its points are due on that observation's
/// time grid (t_obs + k·dt); frames of the wrong size are rejected when resizing is off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn camera_and_state_at_30_hz_give_chunks_on_the_observation_time_grid() {
    let Some(ckpt) = image_fixture() else { return };
    let fps = 10.0;
    let h = start_with(17_464, "d", |c| {
        c.checkpoint = ckpt;
        c.fps = Some(fps);
        c.inputs.clear();
        c.inputs.insert(
            "observation.state".into(),
            toml::from_str("type = \"joint_state\"\nmax_age_ms = 400").unwrap(),
        );
        c.inputs.insert(
            "observation.image".into(),
            toml::from_str("max_age_ms = 400\nresize = false").unwrap(),
        );
        c.trigger.mode = riptide_runtime::daemon::config::TriggerMode::OnFrame;
    })
    .await;
    let metas: Arc<Mutex<Vec<riptide_msgs::ros::ChunkMeta>>> = Arc::default();
    let meta_sub = h
        .session
        .declare_subscriber(format!("{}/action/chunk/meta", h.ns))
        .await
        .unwrap();
    let m2 = metas.clone();
    tokio::spawn(async move {
        while let Ok(s) = meta_sub.recv_async().await {
            m2.lock()
                .await
                .push(riptide_msgs::decode(&s.payload().to_bytes()).unwrap());
        }
    });
    let state = h.publisher("observation/state").await;
    let cam = h.publisher("observation/image").await;
    let period = Duration::from_secs_f64(1.0 / 30.0);
    let mut sent = Vec::new();
    for i in 0..90u32 {
        let t = now_s();
        sent.push(t);
        let x = (i as f64 * 0.05).sin();
        state.put(joint_state(t, [x, -x])).await.unwrap();
        cam.put(camera_frame(96, 96, t, i as u8)).await.unwrap();
        if i % 15 == 7 {
            // Wrong size with resizing off: rejected, never reaches the policy.
            cam.put(camera_frame(64, 48, now_s(), 0)).await.unwrap();
        }
        tokio::time::sleep(period).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = h.metrics().await;
    let chunks = h.chunks.lock().await.clone();
    let metas = metas.lock().await.clone();
    assert!(
        chunks.len() >= 3,
        "only {} chunks in 3 s; {}",
        chunks.len(),
        m.summary()
    );
    assert_eq!(chunks.len(), metas.len());
    let dt = 1.0 / fps;
    for ((_, jt), meta) in chunks.iter().zip(&metas) {
        let t_obs = meta.obs_stamp.as_secs_f64();
        assert!(
            sent.iter().any(|t| (t - t_obs).abs() < 1e-6),
            "obs stamp {t_obs} was never sent"
        );
        // n_action_steps = 8 from index n_obs_steps − 1: the first point is due at t_obs + k·dt, k ≥ 0.
        let k = (jt.header.stamp.as_secs_f64() - t_obs) / dt;
        assert!(
            k > -1e-6 && (k - k.round()).abs() < 1e-4,
            "first point at t_obs + {k}·dt"
        );
        assert_eq!(
            jt.points.len() + k.round() as usize,
            8,
            "dropped + published = n_action_steps"
        );
        for (j, p) in jt.points.iter().enumerate() {
            assert!((p.time_from_start.as_secs_f64() - j as f64 * dt).abs() < 1e-6);
            assert!(p.positions.iter().all(|v| v.is_finite()) && p.positions.len() == 2);
        }
        assert_eq!(meta.nfe, 10);
        assert!(meta.inference_s > 0.0 && meta.total_s >= meta.inference_s);
    }
    assert!(m.get("rejected_total{reason=\"shape\"}") >= 6, "{}", m.summary());
    assert_eq!(m.get("inference_errors_total"), 0);
    h.stop().await;
}

/// A policy that fails where `fails(call)` says (calls counted from 0 across reloads): a panic, or the
/// device error `oom` names.
struct Faulty {
    inner: Box<dyn riptide_policies::Policy>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    fails: fn(usize) -> Option<&'static str>,
}

impl riptide_policies::Policy for Faulty {
    fn spec(&self) -> &riptide_policies::PolicySpec {
        self.inner.spec()
    }

    fn predict(
        &mut self,
        obs: &riptide_policies::ObservationWindow,
        req: &riptide_policies::SampleRequest,
        hook: Option<&mut dyn riptide_policies::StepHook>,
    ) -> Result<riptide_policies::ActionChunk, riptide_policies::PolicyError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (self.fails)(n) {
            Some("panic") => panic!("injected fault at call {n}"),
            // A real device error: this window's batch needs buffers beyond the adapter's limit.
            Some("beyond the device's limit") => {
                let huge = riptide_runtime::pipeline::tensors::random_window_for(self.inner.spec(), 1 << 18, 3);
                self.inner.predict(&huge, req, hook)
            }
            Some(msg) => Err(riptide_policies::PolicyError::Device(msg.into())),
            None => self.inner.predict(obs, req, hook),
        }
    }

    fn action_norm(&self) -> Option<&riptide_policies::normalize::FeatureNorm> {
        self.inner.action_norm()
    }
}

/// The daemon on `fails`' policy, fed at 30 Hz; its metrics handle, the chunk count and the run's result.
async fn faulty_daemon(
    tag: &str,
    device: &str,
    fails: fn(usize) -> Option<&'static str>,
    watch: impl AsyncFnOnce(&Arc<Metrics>, &Arc<std::sync::atomic::AtomicUsize>),
) -> anyhow::Result<Arc<Metrics>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let port = free_port();
    let ns = format!("rt{}{tag}", std::process::id());
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let loader: riptide_runtime::daemon::PolicyLoader = Arc::new(move |dir, device| {
        let inner = riptide_policies::load_policy(dir, device)?;
        Ok(Box::new(Faulty {
            inner,
            calls: c2.clone(),
            fails,
        }) as Box<dyn riptide_policies::Policy>)
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handle: Arc<std::sync::Mutex<Option<Arc<Metrics>>>> = Arc::default();
    let h2 = handle.clone();
    let mut cfg = config(port, &ns);
    cfg.device = device.into();
    if device != "cpu" {
        // lavapipe takes ~250 ms an inference, longer than a 30 fps chunk lasts: slower control, so
        // chunks are still due when they come out.
        cfg.fps = Some(5.0);
        cfg.trigger.rate_hz = Some(2.0);
    }
    let daemon = tokio::spawn(riptide_runtime::daemon::run_with_loader(
        cfg,
        riptide_runtime::node::Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        move |r| *h2.lock().unwrap() = Some(r.metrics.clone()),
        loader,
    ));
    let session = client(port).await;
    wait_alive(&session, &ns).await;
    let chunks = Arc::new(AtomicUsize::new(0));
    let sub = session.declare_subscriber(format!("{ns}/action/chunk")).await.unwrap();
    let c3 = chunks.clone();
    let counting = tokio::spawn(async move {
        while sub.recv_async().await.is_ok() {
            c3.fetch_add(1, Ordering::SeqCst);
        }
    });
    let (state, env) = (
        session
            .declare_publisher(format!("{ns}/observation/state"))
            .await
            .unwrap(),
        session
            .declare_publisher(format!("{ns}/observation/environment_state"))
            .await
            .unwrap(),
    );
    let feeding = tokio::spawn(async move {
        for i in 0u32.. {
            let x = (i as f32 * 0.1).sin();
            state.put(vector(&[x, -x])).await.unwrap();
            env.put(vector(&[x, 0.5, -0.5, 0.1, 0.2, x])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    });
    let metrics = handle.lock().unwrap().clone().expect("daemon ready");
    watch(&metrics, &chunks).await;
    feeding.abort();
    counting.abort();
    let _ = stop_tx.send(());
    let r = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("the daemon stops")
        .unwrap();
    session.close().await.unwrap();
    r
}

/// Wait (up to 20 s) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fault in `predict` (a wave that fails, then fails again alone) is counted, the policy is reloaded
/// and chunks resume; one fault never stops the daemon. Calls 0 is the warm-up.
async fn check_one_fault_is_survived(tag: &str, kind: &'static str, reason: &str) {
    fn panics(n: usize) -> Option<&'static str> {
        (8..10).contains(&n).then_some("panic")
    }
    fn oom(n: usize) -> Option<&'static str> {
        (8..10)
            .contains(&n)
            .then_some("CUDA_ERROR_OUT_OF_MEMORY: out of memory")
    }
    fn beyond_limit(n: usize) -> Option<&'static str> {
        (6..8).contains(&n).then_some("beyond the device's limit")
    }
    let key = format!("policy_faults_total{{reason=\"{reason}\"}}");
    let device = if kind == "wgpu" { "wgpu" } else { "cpu" };
    let fails = match kind {
        "panic" => panics,
        "wgpu" => beyond_limit,
        _ => oom,
    };
    let m = faulty_daemon(tag, device, fails, async |m, chunks| {
        until("the fault", || m.get(&key) == 1).await;
        let at_fault = chunks.load(std::sync::atomic::Ordering::SeqCst);
        assert!(at_fault >= 3, "chunks before the fault: {at_fault}; {}", m.summary());
        until("chunks after the reload", || {
            chunks.load(std::sync::atomic::Ordering::SeqCst) >= at_fault + 5
        })
        .await;
    })
    .await
    .expect("one fault does not stop the daemon");
    assert_eq!(m.get(&key), 1, "{}", m.summary());
    assert_eq!(m.get("policy_faults_total"), 1, "{}", m.summary());
    assert_eq!(m.get("policy_reloads_total"), 1, "{}", m.summary());
    assert_eq!(
        m.get("inference_errors_total"),
        0,
        "faults are not request errors: {}",
        m.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_in_predict_is_counted_the_policy_reloaded_and_chunks_resume() {
    check_one_fault_is_survived("fp", "panic", "panic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_out_of_memory_is_counted_the_policy_reloaded_and_chunks_resume() {
    check_one_fault_is_survived("fo", "oom", "oom").await;
}

/// A real wgpu device error on lavapipe (a batch whose buffers exceed the adapter's limit, raised by cubecl
/// on its device thread) is a device fault: counted, the policy reloaded, chunks resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_wgpu_device_error_is_counted_the_policy_reloaded_and_chunks_resume() {
    if !riptide_policies::WGPU_COMPILED || riptide_policies::wgpu_device::adapters().is_empty() {
        assert!(
            std::env::var("RIPTIDE_REQUIRE_WGPU").as_deref() != Ok("1"),
            "RIPTIDE_REQUIRE_WGPU=1 but no wgpu adapter (or no wgpu feature)"
        );
        println!("SKIPPED: no wgpu adapter");
        return;
    }
    check_one_fault_is_survived("fw", "wgpu", "device").await;
}

/// A policy that faults on every call after the first chunks: the worker reloads it (its warm-up faults
/// too) until `max_consecutive_faults` (3) in a row, then the daemon stops with the cause (exit status 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_in_a_row_stop_the_daemon_with_the_cause() {
    fn always(n: usize) -> Option<&'static str> {
        (n >= 6).then_some("panic")
    }
    let seen: Arc<std::sync::Mutex<Option<Arc<Metrics>>>> = Arc::default();
    let s2 = seen.clone();
    let outcome = faulty_daemon("fa", "cpu", always, async move |m, _| {
        *s2.lock().unwrap() = Some(m.clone());
        until("three faults", || m.get("policy_faults_total") >= 3).await;
        // The daemon stops on its own: give it a moment before asking it to.
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await;
    let Err(err) = outcome else {
        panic!("the daemon kept running on a policy that always faults")
    };
    assert_eq!(riptide_runtime::daemon::exit_code(&err), 3, "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("3 policy faults in a row") && text.contains("injected fault"),
        "{text}"
    );
    let m = seen.lock().unwrap().clone().unwrap();
    assert_eq!(m.get("policy_faults_total{reason=\"panic\"}"), 3, "{}", m.summary());
}
