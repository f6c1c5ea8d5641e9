//! The driver node over real zenoh sessions: chunks in, a command stream to the "hardware" topic that
//! follows the chunk inside the safety envelope; the watchdog holds; the e-stop latches until reset;
//! the queue length is reported for the daemon's on-demand trigger; bad chunks are counted.

use std::sync::Arc;
use std::time::Duration;

use riptide_msgs::ros::{Float32MultiArray, JointState, JointTrajectory, JointTrajectoryPoint, StringMsg};
use riptide_runtime::drive::{start, DriveConfig};
use riptide_runtime::node::now_s;
use riptide_tests::client;
use tokio::sync::Mutex;

fn config(port: u16, ns: &str) -> DriveConfig {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/arm-driver.toml")).unwrap();
    let mut cfg: DriveConfig = toml::from_str(&text).expect("the example driver config parses");
    cfg.validate().expect("the example driver config is valid");
    cfg.namespace = ns.into();
    cfg.rate_hz = 200.0;
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    cfg.zenoh.connect = vec![];
    if let riptide_runtime::drive::BackendConfig::Zenoh {
        command_topic,
        state_topic,
        ..
    } = &mut cfg.backend
    {
        *command_topic = format!("{ns}/hw/command");
        *state_topic = Some(format!("{ns}/hw/state"));
    }
    cfg
}

async fn wait_alive(s: &zenoh::Session, key: &str) {
    riptide_runtime::node::wait_alive(s, key, Duration::from_secs(60))
        .await
        .expect("driver alive");
}

fn encode<T: riptide_msgs::RosMessage>(v: &T) -> Vec<u8> {
    riptide_msgs::encode(v).unwrap()
}

/// A straight-line chunk from `from` to `to` over `n` points `dt` apart, first point due at `t0`.
fn line(t0: f64, dt: f64, n: usize, from: [f64; 2], to: [f64; 2]) -> JointTrajectory {
    let mut jt = JointTrajectory::default();
    jt.header.stamp = riptide_msgs::ros::Time::from_secs_f64(t0);
    jt.joint_names = vec!["shoulder".into(), "elbow".into()];
    for k in 0..n {
        let a = k as f64 / (n - 1) as f64;
        jt.points.push(JointTrajectoryPoint {
            positions: vec![from[0] + a * (to[0] - from[0]), from[1] + a * (to[1] - from[1])],
            time_from_start: riptide_msgs::ros::Duration::from_secs_f64(k as f64 * dt),
            ..Default::default()
        });
    }
    jt
}

/// Received vectors with their arrival times.
type Stamped = Arc<Mutex<Vec<(f64, Vec<f64>)>>>;
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn driver_node_follows_chunks_safely_holds_and_latches_the_estop() {
    let ns = format!("dr{}", std::process::id());
    let node = start(config(17_481, &ns)).await.unwrap();
    let s = client(17_481).await;
    wait_alive(&s, &format!("{ns}/alive/driver")).await;

    let commands: Stamped = Arc::default();
    let c2 = commands.clone();
    let hw = s.declare_subscriber(format!("{ns}/hw/command")).await.unwrap();
    tokio::spawn(async move {
        while let Ok(x) = hw.recv_async().await {
            let js: JointState = riptide_msgs::decode(&x.payload().to_bytes()).unwrap();
            c2.lock().await.push((now_s(), js.position));
        }
    });
    let queue: Arc<Mutex<Vec<f32>>> = Arc::default();
    let q2 = queue.clone();
    let qs = s.declare_subscriber(format!("{ns}/driver/queue")).await.unwrap();
    tokio::spawn(async move {
        while let Ok(x) = qs.recv_async().await {
            let m: Float32MultiArray = riptide_msgs::decode(&x.payload().to_bytes()).unwrap();
            q2.lock().await.push(m.data[0]);
        }
    });
    let status: Arc<Mutex<Vec<String>>> = Arc::default();
    let st2 = status.clone();
    let ss = s.declare_subscriber(format!("{ns}/driver/status")).await.unwrap();
    tokio::spawn(async move {
        while let Ok(x) = ss.recv_async().await {
            let m: StringMsg = riptide_msgs::decode(&x.payload().to_bytes()).unwrap();
            st2.lock().await.push(m.data);
        }
    });
    let hw_state = s.declare_publisher(format!("{ns}/hw/state")).await.unwrap();
    let chunk_pub = s.declare_publisher(format!("{ns}/action/chunk")).await.unwrap();
    let engage = s.declare_publisher(format!("{ns}/driver/engage")).await.unwrap();
    let estop = s.declare_publisher(format!("{ns}/estop")).await.unwrap();
    let reset = s.declare_publisher(format!("{ns}/estop/reset")).await.unwrap();

    // Nothing is commanded before the operator engages.
    chunk_pub
        .put(encode(&line(now_s(), 0.1, 8, [0.0, 0.0], [0.1, 0.1])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(commands.lock().await.is_empty(), "commands before engage");

    // The device reports where it is; engage; a chunk that asks for a far, out-of-limits target fast.
    let js = JointState {
        position: vec![0.0, 0.0],
        ..Default::default()
    };
    hw_state.put(encode(&js)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    engage.put(vec![]).await.unwrap();
    let t0 = now_s() + 0.05;
    chunk_pub
        .put(encode(&line(t0, 0.1, 8, [0.0, 0.0], [2.0, -0.7])))
        .await
        .unwrap();
    // A malformed chunk and a wrong-dimension chunk are counted, not executed.
    chunk_pub.put(b"\x00\x01\x00\x00junk".to_vec()).await.unwrap();
    let mut bad = line(t0, 0.1, 3, [0.0, 0.0], [0.1, 0.1]);
    bad.points[1].positions.push(9.0);
    chunk_pub.put(encode(&bad)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;

    let cmds = commands.lock().await.clone();
    assert!(cmds.len() > 50, "{} commands in 0.9 s at 200 Hz", cmds.len());
    // Envelope: within limits, and never faster than max_velocity (1.5/s; the chunk asks for 2.9/s) over
    // any 20 control steps (100 ms; 30 ms of slack for receive-time jitter).
    for c in &cmds {
        assert!(c.1.iter().all(|v| (-1.0..=1.0).contains(v)), "limit: {:?}", c.1);
    }
    for w in cmds.windows(21) {
        let (a, b) = (&w[0], &w[20]);
        for j in 0..2 {
            let moved = (b.1[j] - a.1[j]).abs();
            assert!(moved <= 1.5 * (b.0 - a.0 + 0.03), "moved {moved} in {:.3} s", b.0 - a.0);
        }
    }
    let last = cmds.last().unwrap().1.clone();
    assert!(last[0] > 0.3, "the arm moved toward the target: {last:?}");
    assert!(!queue.lock().await.is_empty(), "queue length reported");

    // Watchdog: the chunk ended (t0 + 0.7 s) and nothing new came for hold_after_ms (300 ms): holding.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        status.lock().await.iter().any(|s| s == "Holding"),
        "{:?}",
        status.lock().await
    );
    let held = commands.lock().await.last().unwrap().1.clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        commands.lock().await.last().unwrap().1,
        held,
        "holding means the same command"
    );

    // E-stop latches: a new chunk does not move the arm until reset + engage.
    estop.put(vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    chunk_pub
        .put(encode(&line(now_s(), 0.1, 8, [held[0], held[1]], [0.0, 0.0])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<_> = commands
        .lock()
        .await
        .iter()
        .rev()
        .take(20)
        .map(|c| c.1.clone())
        .collect();
    assert!(after.iter().all(|p| p == &held), "moved while e-stopped");
    assert!(status.lock().await.iter().any(|s| s == "EStopped"));
    reset.put(vec![]).await.unwrap();
    let js = JointState {
        position: held.clone(),
        ..Default::default()
    };
    hw_state.put(encode(&js)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    engage.put(vec![]).await.unwrap();
    chunk_pub
        .put(encode(&line(now_s() + 0.05, 0.1, 8, [held[0], held[1]], [0.0, 0.0])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let now_at = commands.lock().await.last().unwrap().1.clone();
    assert!(
        now_at[0] < held[0] - 0.2,
        "moves again after reset + engage: {now_at:?} from {held:?}"
    );

    let counters = *node.counters.lock().unwrap();
    let m = node.stop().await.unwrap();
    assert!(m.get("rejected_total{reason=\"malformed\"}") >= 1, "{}", m.summary());
    assert!(m.get("rejected_total{reason=\"shape\"}") >= 1, "{}", m.summary());
    assert!(counters.supervisor.estops >= 1);
    assert!(counters.safety.total() > 0, "the fast chunk was clamped: {counters:?}");
    s.close().await.unwrap();
}

#[test]
fn example_driver_configs_validate_and_errors_name_the_key() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    for f in [
        "arm-driver.toml",
        "drone-driver.toml",
        "sim-arm-driver.toml",
        "sim-drone-driver.toml",
        "jtc-arm-driver.toml",
    ] {
        DriveConfig::from_file(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
    }
    let arm = std::fs::read_to_string(dir.join("arm-driver.toml")).unwrap();
    let typo: Result<DriveConfig, _> = toml::from_str(&arm.replace("queue_report_hz", "queue_report_hzz"));
    assert!(typo.unwrap_err().to_string().contains("queue_report_hzz"));
    let mut bad: DriveConfig = toml::from_str(&arm).unwrap();
    bad.rate_hz = 0.0;
    assert!(bad.validate().unwrap_err().to_string().contains("rate_hz"));
    let drone = std::fs::read_to_string(dir.join("drone-driver.toml")).unwrap();
    let slow: DriveConfig =
        toml::from_str(&drone.replace("setpoint_rate_hz = 20.0", "setpoint_rate_hz = 1.0")).unwrap();
    let e = slow.validate().unwrap_err().to_string();
    assert!(e.contains("setpoint_rate_hz"), "{e}");
    // The sim back-end checks the env name and that its action size matches the envelope.
    let sim = std::fs::read_to_string(dir.join("sim-arm-driver.toml")).unwrap();
    let e = toml::from_str::<DriveConfig>(&sim.replace("env = \"arm-reach\"", "env = \"arm-rech\""))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("backend.env") && e.contains("arm-rech"), "{e}");
    let e = toml::from_str::<DriveConfig>(&sim.replace("env = \"arm-reach\"", "env = \"quadrotor\""))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("backend.env") && e.contains("4-D"), "{e}");
    // An environment_state layout the env does not have is refused with the ones it has.
    let e =
        toml::from_str::<DriveConfig>(&sim.replace("env = \"arm-reach\"", "env = \"arm-reach\"\nenv_state_width = 7"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
    assert!(e.contains("backend.env_state_width") && e.contains("5 or 12"), "{e}");
}

/// The `sim` back-end: the driver node steps the sim's arm with its command stream and publishes the
/// sim's observations, so the joints (the sim's servo physics, not the driver) follow a chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sim_backend_steps_the_sim_arm_with_the_commands() {
    let ns = format!("ds{}", std::process::id());
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sim-arm-driver.toml")).unwrap();
    let mut cfg: DriveConfig = toml::from_str(&text).unwrap();
    cfg.namespace = ns.clone();
    cfg.zenoh.listen = vec!["tcp/127.0.0.1:17483".into()];
    cfg.zenoh.connect = vec![];
    let node = start(cfg).await.unwrap();
    let s = client(17_483).await;
    wait_alive(&s, &format!("{ns}/alive/driver")).await;

    let states: Stamped = Arc::default();
    let st = states.clone();
    let sub = s.declare_subscriber(format!("{ns}/observation/state")).await.unwrap();
    tokio::spawn(async move {
        while let Ok(x) = sub.recv_async().await {
            let js: JointState = riptide_msgs::decode(&x.payload().to_bytes()).unwrap();
            st.lock().await.push((js.header.stamp.as_secs_f64(), js.position));
        }
    });
    // Wait for the sim's 10 Hz stream, then read where the arm starts.
    let start_q = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some((_, q)) = states.lock().await.last() {
            break q.clone();
        }
    };
    assert_eq!(start_q.len(), 3);
    // Nothing commanded yet: the arm holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = states.lock().await.last().unwrap().1.clone();
    for j in 0..3 {
        assert!((held[j] - start_q[j]).abs() < 1e-6, "joint {j} moved before any chunk");
    }
    // A chunk that moves every joint by +0.3 rad over 0.6 s (auto-engage on the first chunk).
    let target: Vec<f64> = start_q.iter().map(|q| q + 0.3).collect();
    let mut jt = JointTrajectory::default();
    jt.header.stamp = riptide_msgs::ros::Time::from_secs_f64(now_s() + 0.05);
    jt.joint_names = vec!["j0".into(), "j1".into(), "j2".into()];
    for k in 0..=6 {
        let a = k as f64 / 6.0;
        jt.points.push(JointTrajectoryPoint {
            positions: start_q.iter().zip(&target).map(|(s, t)| s + a * (t - s)).collect(),
            time_from_start: riptide_msgs::ros::Duration::from_secs_f64(0.1 * k as f64),
            ..Default::default()
        });
    }
    let chunk_pub = s.declare_publisher(format!("{ns}/action/chunk")).await.unwrap();
    chunk_pub.put(encode(&jt)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let got = states.lock().await.clone();
    let last = &got.last().unwrap().1;
    for j in 0..3 {
        assert!(
            (last[j] - target[j]).abs() < 0.03,
            "joint {j}: {:.3} after the chunk, commanded {:.3} (start {:.3})",
            last[j],
            target[j],
            start_q[j]
        );
    }
    // Stamps on the sim's 10 Hz grid, strictly increasing.
    for w in got.windows(2) {
        let dt = w[1].0 - w[0].0;
        assert!(
            (dt - 0.1).abs() < 1e-6 || dt > 0.1,
            "stamps {:.4} → {:.4}",
            w[0].0,
            w[1].0
        );
    }
    node.stop().await.unwrap();
}
