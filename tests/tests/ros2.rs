//! riptide's nodes on an rmw_zenoh graph. A zenoh router configured as `rmw_zenohd` is (no failover
//! brokering between peers), on a port picked at run time, stands in for it; every node is its client.
//!
//! - A lockstep episode end to end in ROS 2 mode (sim node → daemon with its hosted driver → sim) gives the
//!   episodes of the plain mode (the in-process closed loop, which the plain zenoh path equals:
//!   `lockstep.rs`), on rmw_zenoh keys only, with attachments; the graph's tokens are there while the nodes
//!   run and gone once their sessions close.
//! - An independent rmw_zenoh-style peer in Python (eclipse-zenoh + rosbags, `ros2_peer.py`) feeds the live
//!   daemon and the `jtc` driver and checks their keys, payloads, attachments and tokens byte by byte;
//!   what it sends wrong on purpose is counted by reason.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use riptide_msgs::ros::JointState;
use riptide_msgs::ros2::{type_hash, Attachment};
use riptide_runtime::node::{Ros2Config, ZenohConfig, ZenohMode};
use riptide_tests::free_port;

/// A zenoh router as `rmw_zenohd` runs (`peers_failover_brokering: false`) on `port`.
async fn rmw_zenohd_stand_in(port: u16) -> zenoh::Session {
    let mut c = riptide_runtime::node::network::zenoh_config_from(&ZenohConfig {
        mode: ZenohMode::Router,
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        ..ZenohConfig::default()
    })
    .unwrap();
    c.insert_json5("routing/router/peers_failover_brokering", "false")
        .unwrap();
    zenoh::open(c).await.unwrap()
}

fn client_of(port: u16) -> ZenohConfig {
    ZenohConfig {
        mode: ZenohMode::Client,
        listen: vec![],
        connect: vec![format!("tcp/127.0.0.1:{port}")],
        ..ZenohConfig::default()
    }
}

fn ros2(domain: u32) -> Ros2Config {
    Ros2Config {
        enabled: true,
        distro: Some("jazzy".into()),
        domain_id: Some(domain),
        ..Ros2Config::default()
    }
}

/// Every liveliness token under `@ros2_lv/<domain>/`.
async fn tokens(session: &zenoh::Session, domain: u32) -> BTreeSet<String> {
    let session = session.clone();
    tokio::task::spawn_blocking(move || tokens_now(&session, domain))
        .await
        .unwrap()
}

/// Every `T` that arrives on `key`, decoded, while the returned subscriber lives.
async fn collect<T: riptide_msgs::RosMessage + Send + 'static>(
    session: &zenoh::Session,
    key: String,
) -> (zenoh::pubsub::Subscriber<()>, Arc<Mutex<Vec<T>>>) {
    let got: Arc<Mutex<Vec<T>>> = Arc::default();
    let g2 = got.clone();
    let sub = session
        .declare_subscriber(key)
        .callback(move |s| {
            g2.lock()
                .unwrap()
                .push(riptide_msgs::decode(&s.payload().to_bytes()).expect("a decodable sample"))
        })
        .await
        .unwrap();
    (sub, got)
}

/// [`tokens`] on a blocking thread (inside a sim node's callback).
fn tokens_now(session: &zenoh::Session, domain: u32) -> BTreeSet<String> {
    use zenoh::Wait;
    let replies = session
        .liveliness()
        .get(format!("@ros2_lv/{domain}/**"))
        .timeout(Duration::from_secs(2))
        .wait()
        .unwrap();
    let mut out = BTreeSet::new();
    while let Ok(r) = replies.recv() {
        if let Ok(s) = r.result() {
            out.insert(s.key_expr().as_str().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lockstep_episode_in_ros2_mode_equals_the_plain_mode_on_rmw_zenoh_keys_with_tokens() {
    use riptide_runtime::daemon::config::LockstepSection;
    use riptide_runtime::simnode::{run_sim, SimNodeConfig};
    use riptide_runtime::tools::eval::{driver_config_for, sim_daemon_config, ClosedLoop};

    let (port, domain) = (free_port(), 17);
    let router = rmw_zenohd_stand_in(port).await;
    let ns = format!("ros{}", std::process::id());
    let checkpoint = riptide_runtime::checkpoints::shipped_checkpoint("arm-reach").unwrap();
    let policy = riptide_policies::load_policy(&checkpoint, riptide_policies::DeviceSpec::Cpu).unwrap();
    let env_spec = riptide_sim::make_env("arm-reach").unwrap().spec().clone();
    let mut cfg = sim_daemon_config(&checkpoint, &env_spec, policy.spec());
    cfg.zenoh = client_of(port);
    cfg.namespace = ns.clone();
    cfg.warmup = 1;
    cfg.ros2 = ros2(domain);
    cfg.lockstep = Some(LockstepSection {
        delay_ms: 0.0,
        queue_threshold_s: 0.0,
        driver: driver_config_for(&env_spec),
    });
    let stop = riptide_runtime::node::Shutdown::new();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(cfg, stop.clone(), |_| {}));

    // A bystander on the graph: what an `ros2 topic echo /<ns>/action` would receive.
    let probe = riptide_runtime::node::network::open(&client_of(port)).await.unwrap();
    riptide_runtime::node::wait_alive(&probe, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
        .await
        .unwrap();
    let hash = type_hash::<JointState>().unwrap();
    let action_key = format!("{domain}/{ns}/action/sensor_msgs::msg::dds_::JointState_/{hash}");
    let seen: Arc<Mutex<Vec<Attachment>>> = Arc::default();
    let s2 = seen.clone();
    let _echo = probe
        .declare_subscriber(action_key.clone())
        .callback(move |s| {
            let a = Attachment::parse(&s.attachment().expect("every sample has an attachment").to_bytes())
                .expect("a 33-byte attachment");
            riptide_msgs::decode::<JointState>(&s.payload().to_bytes()).expect("a JointState");
            s2.lock().unwrap().push(a);
        })
        .await
        .unwrap();
    let plain: Arc<Mutex<Vec<String>>> = Arc::default();
    let p2 = plain.clone();
    let _plain = probe
        .declare_subscriber(format!("{ns}/**"))
        .callback(move |s| p2.lock().unwrap().push(s.key_expr().to_string()))
        .await
        .unwrap();

    let (seed, episodes) = (41_000u64, 2usize);
    let sim = SimNodeConfig {
        env: "arm-reach".into(),
        namespace: ns.clone(),
        lockstep: true,
        episodes,
        seed,
        render: false,
        command_timeout_s: 20.0,
        zenoh: client_of(port),
        record_dir: None,
        env_state_width: riptide_runtime::checkpoints::env_state_width(&checkpoint).unwrap(),
        publish_hz: None,
        ros2: ros2(domain).settings("sim").unwrap(),
    };
    let sim_session = riptide_runtime::node::network::open(&sim.zenoh).await.unwrap();
    let (during, results) = {
        let (probe, sim_session) = (probe.clone(), sim_session.clone());
        let sim_stop = riptide_runtime::node::Shutdown::new();
        tokio::task::spawn_blocking(move || {
            // The graph while both nodes run: after the first episode.
            let mut during = None;
            let results = run_sim(&sim, &sim_session, &sim_stop, |_| {
                if during.is_none() {
                    during = Some(tokens_now(&probe, domain));
                }
            });
            (during.unwrap_or_default(), results)
        })
        .await
        .unwrap()
    };
    sim_session.close().await.unwrap();
    stop.trigger();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();

    let results =
        results.unwrap_or_else(|e| panic!("the sim's episodes in ROS 2 mode: {e:#}; daemon: {}", m.summary()));
    // The episodes of the plain mode.
    let mut cl = ClosedLoop::new(&checkpoint, riptide_policies::DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
    assert_eq!(results.len(), episodes);
    for (k, e) in results.iter().enumerate() {
        let want = cl.episode(seed + k as u64).unwrap();
        assert_eq!(
            (e.seed, e.success, e.steps, e.score),
            (want.seed, want.success, want.steps, want.score),
            "ROS 2 mode vs plain mode, seed {}",
            e.seed
        );
    }
    // Commands went out on the rmw_zenoh key, numbered from 1 by one publisher; nothing on riptide's keys.
    let seen = seen.lock().unwrap().clone();
    let steps: usize = results.iter().map(|e| e.steps).sum();
    assert!(seen.len() >= steps, "{} commands seen for {steps} steps", seen.len());
    let seq: Vec<i64> = seen.iter().map(|a| a.sequence_number).collect();
    assert_eq!(seq, (1..=seen.len() as i64).collect::<Vec<_>>());
    assert!(seen.iter().all(|a| a.source_gid == seen[0].source_gid));
    assert!(
        plain.lock().unwrap().is_empty(),
        "plain keys used: {:?}",
        plain.lock().unwrap()
    );
    assert_eq!(m.get("rejected_total"), 0, "{}", m.summary());

    // Tokens: the two nodes, the daemon's command publisher and state subscription, the sim's clock.
    let has = |pattern: &[&str]| during.iter().any(|t| pattern.iter().all(|p| t.contains(p)));
    assert!(has(&["/NN/%/%/riptide_daemon"]), "{during:#?}");
    assert!(has(&["/NN/%/%/riptide_sim"]), "{during:#?}");
    let qos = "::,10:,:,:,,";
    assert!(
        has(&[&format!(
            "/MP/%/%/riptide_daemon/%{ns}%action/sensor_msgs::msg::dds_::JointState_/{hash}/{qos}"
        )]),
        "{during:#?}"
    );
    assert!(
        has(&[&format!(
            "/MS/%/%/riptide_daemon/%{ns}%observation%state/sensor_msgs::msg::dds_::JointState_/{hash}"
        )]),
        "{during:#?}"
    );
    assert!(
        has(&[&format!(
            "/MP/%/%/riptide_sim/%{ns}%clock/rosgraph_msgs::msg::dds_::Clock_/RIHS01_"
        )]),
        "{during:#?}"
    );
    // …and gone with the sessions.
    let after = tokens(&probe, domain).await;
    assert!(after.is_empty(), "tokens left after the nodes stopped: {after:#?}");
    probe.close().await.unwrap();
    router.close().await.unwrap();
}

/// One node's publisher to another's subscription across the router: attachments numbered from 1, and
/// what an rmw_zenoh peer may send wrong counted by reason: another type on the topic (dropped), another
/// distro's hash (decoded, counted), a malformed attachment (dropped), lost samples (counted), no
/// attachment (accepted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_samples_cross_the_router_and_bad_ones_are_counted_by_reason() {
    use riptide_runtime::node::{Graph, Metrics, RosType};
    let (port, domain) = (free_port(), 23);
    let router = rmw_zenohd_stand_in(port).await;
    let settings = ros2(domain).settings("test").unwrap().unwrap();
    let metrics = Arc::new(Metrics::default());
    let rx = Graph::open(&client_of(port), Some(&settings), metrics.clone())
        .await
        .unwrap();
    let tx = Graph::open(&client_of(port), Some(&settings), Default::default())
        .await
        .unwrap();
    let ty = RosType::of::<JointState>();
    let got: Arc<Mutex<Vec<Vec<f64>>>> = Arc::default();
    let g2 = got.clone();
    let _sub = rx
        .subscribe("rt/joint_states", &ty, move |s| {
            let js: JointState = riptide_msgs::decode(&s.payload().to_bytes()).unwrap();
            g2.lock().unwrap().push(js.position);
        })
        .unwrap();
    let publisher = tx.publisher("rt/joint_states", &ty).unwrap();
    let msg = |x: f64| {
        riptide_msgs::encode(&JointState {
            position: vec![x],
            ..Default::default()
        })
        .unwrap()
    };
    // Wait until the subscription is routed.
    for _ in 0..200 {
        publisher.put(msg(0.0)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        if !got.lock().unwrap().is_empty() {
            break;
        }
    }
    assert!(!got.lock().unwrap().is_empty(), "nothing crossed the router");
    let raw = tx.session();
    let key = |ty: &str, hash: &str| format!("{domain}/rt/joint_states/{ty}/{hash}");
    let js_type = "sensor_msgs::msg::dds_::JointState_";
    let attachment = |seq: i64| {
        Attachment {
            sequence_number: seq,
            source_timestamp_ns: 1,
            source_gid: [7; 16],
        }
        .encode()
        .to_vec()
    };
    let put = |k: String, payload: Vec<u8>, a: Option<Vec<u8>>| async move {
        let b = raw.put(k, payload);
        match a {
            Some(a) => b.attachment(a).await.unwrap(),
            None => b.await.unwrap(),
        }
    };
    put(key(js_type, &ty.hash), msg(1.0), Some(attachment(1))).await;
    put(key(js_type, &ty.hash), msg(2.0), Some(attachment(5))).await; // 3 lost
    put(key(js_type, "TypeHashNotSupported"), msg(3.0), Some(attachment(6))).await; // Humble
    put(key(js_type, &ty.hash), msg(4.0), Some(vec![1, 2, 3])).await; // malformed: dropped
    put(
        key("std_msgs::msg::dds_::String_", "RIHS01_00"),
        msg(5.0),
        Some(attachment(7)),
    )
    .await; // dropped
    put(key(js_type, &ty.hash), msg(6.0), None).await; // accepted
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !got.lock().unwrap().iter().any(|p| p == &[6.0]) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let values: Vec<f64> = got.lock().unwrap().iter().map(|p| p[0]).filter(|x| *x > 0.0).collect();
    assert_eq!(values, vec![1.0, 2.0, 3.0, 6.0], "{}", metrics.summary());
    assert_eq!(metrics.get("rejected_total{reason=\"ros2_attachment\"}"), 1);
    assert_eq!(metrics.get("rejected_total{reason=\"ros2_type\"}"), 1);
    assert_eq!(metrics.get("ros2_hash_mismatch_total{topic=\"/rt/joint_states\"}"), 1);
    assert_eq!(metrics.get("ros2_sequence_gaps_total{topic=\"/rt/joint_states\"}"), 3);
    drop(publisher);
    tx.session().close().await.unwrap();
    rx.session().close().await.unwrap();
    router.close().await.unwrap();
}

/// The live daemon and the `jtc` driver in ROS 2 mode against an independent rmw_zenoh-style peer in Python
/// (`ros2_peer.py`): it feeds observations and `/joint_states`, decodes the chunks and the controller's
/// trajectories, and checks keys, attachments and tokens byte by byte; what it sends wrong on purpose is
/// counted by reason; `record` in ROS 2 mode writes its camera frames under their ROS name. When the
/// observations stop, the driver's watchdog sends one hold trajectory at the measured position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_rmw_zenoh_peer_in_python_feeds_the_daemon_and_the_jtc_driver_and_decodes_what_they_send() {
    use riptide_msgs::ros::JointTrajectory;
    use riptide_runtime::drive::DriveConfig;
    use riptide_runtime::tools::eval::{driver_config_for, sim_daemon_config};
    let Some(python) = riptide_tests::python_with("zenoh, rosbags, numpy") else {
        return;
    };
    let (port, domain) = (free_port(), 31);
    let router = rmw_zenohd_stand_in(port).await;
    let checkpoint = riptide_runtime::checkpoints::shipped_checkpoint("arm-reach").unwrap();
    let policy = riptide_policies::load_policy(&checkpoint, riptide_policies::DeviceSpec::Cpu).unwrap();
    let width = riptide_runtime::checkpoints::env_state_width(&checkpoint).unwrap();
    let mut env = riptide_sim::make_env_for("arm-reach", width).unwrap();
    let env_spec = env.spec().clone();
    let obs = env.reset(7);
    let position = env.position();

    // The daemon, live, on the wall clock.
    let mut cfg = sim_daemon_config(&checkpoint, &env_spec, policy.spec());
    cfg.zenoh = client_of(port);
    cfg.warmup = 1;
    cfg.ros2 = ros2(domain);
    cfg.remote_inference = false;
    let stop = riptide_runtime::node::Shutdown::new();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(cfg, stop.clone(), |_| {}));

    // The driver: the policy's chunks to a JointTrajectoryController.
    let joint_names = ["shoulder", "elbow", "wrist"].map(String::from).to_vec();
    let mut dcfg: DriveConfig = toml::from_str(&format!(
        "rate_hz = 100.0\nauto_engage = true\n[driver.safety]\nposition_min = [-1, -1, -1]\nposition_max = [1, 1, 1]\n\
         max_velocity = [1, 1, 1]\n[driver.supervisor]\nhold_after_ms = 1500\n[backend]\ntype = \"jtc\"\n\
         controller = \"arm_controller\"\njoint_names = {joint_names:?}\nvelocities = true\n"
    ))
    .unwrap();
    dcfg.driver = driver_config_for(&env_spec);
    // Longer than the 0.8 s between chunks: the watchdog fires only once the peer stops.
    dcfg.driver.supervisor.hold_after_ms = 1500;
    dcfg.zenoh = client_of(port);
    dcfg.ros2 = ros2(domain);
    dcfg.validate().unwrap();
    let driver = riptide_runtime::drive::start(dcfg).await.unwrap();

    // The recorder: the peer's camera by its ROS name.
    let dir = tempfile::tempdir().unwrap();
    let mcap = dir.path().join("camera.mcap");
    let rec_graph = riptide_runtime::node::Graph::open(
        &client_of(port),
        ros2(domain).settings("record").unwrap().as_ref(),
        Default::default(),
    )
    .await
    .unwrap();
    let (rec_stop_tx, rec_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let recorder = {
        let (graph, mcap) = (rec_graph.clone(), mcap.clone());
        tokio::spawn(async move {
            let topics = [("/camera/image_raw".to_string(), "sensor_msgs/msg/Image".to_string())];
            riptide_runtime::episodes::record_live(&graph, &topics, &mcap, async {
                let _ = rec_stop_rx.await;
            })
            .await
        })
    };

    // What the controller receives, seen from the graph.
    let probe = riptide_runtime::node::network::open(&client_of(port)).await.unwrap();
    let traj_key = format!(
        "{domain}/arm_controller/joint_trajectory/trajectory_msgs::msg::dds_::JointTrajectory_/{}",
        type_hash::<JointTrajectory>().unwrap()
    );
    let (_traj, trajectories) = collect::<JointTrajectory>(&probe, traj_key).await;

    let limits = &driver_config_for(&env_spec).safety;
    let final_position: Vec<f64> = position.iter().map(|p| p + 0.01).collect();
    let peer_cfg = serde_json::json!({
        "port": port,
        "domain": domain,
        "state": obs.state.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        "env_state": obs.env_state.iter().map(|v| *v as f64).collect::<Vec<_>>(),
        "position": position,
        "final_position": final_position,
        "joint_names": joint_names,
        "controller": "arm_controller",
        "position_min": limits.position_min,
        "position_max": limits.position_max,
        "chunk_meta_msg": concat!(env!("CARGO_MANIFEST_DIR"), "/../msgs/ros/riptide_msgs/msg/ChunkMeta.msg"),
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ros2_peer.py");
    let out = tokio::task::spawn_blocking(move || {
        // Its progress goes to the test's output as it happens.
        std::process::Command::new(python)
            .arg(script)
            .arg(peer_cfg.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(out.status.success(), "the peer's checks failed: {:#}", report["errors"]);

    // The watchdog's hold: one point at the measured position.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while driver.metrics.get("jtc_holds_total") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dm = driver.metrics.clone();
    assert_eq!(dm.get("jtc_holds_total"), 1, "{}", dm.summary());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hold = trajectories.lock().unwrap().last().cloned().expect("trajectories");
    assert_eq!(hold.points.len(), 1, "{hold:?}");
    assert_eq!(hold.points[0].positions, final_position);
    assert!((hold.points[0].time_from_start.as_secs_f64() - 0.1).abs() < 1e-6);
    assert_eq!(hold.joint_names, joint_names);
    assert!(dm.get("jtc_trajectories_total") >= 3, "{}", dm.summary());
    assert_eq!(
        dm.get("joint_states_missing_joint_total{joint=\"wrist\"}"),
        1,
        "{}",
        dm.summary()
    );

    let _ = rec_stop_tx.send(());
    let recorded = recorder.await.unwrap().unwrap();
    stop.trigger();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();
    let _ = driver.stop().await.unwrap();
    rec_graph.session().close().await.unwrap();

    check_counted_mistakes(&m);
    assert!(recorded >= 2);
    check_recording(&mcap, &report);

    // Gone from the graph with their sessions.
    let after = tokens(&probe, domain).await;
    assert!(
        !after.iter().any(|t| t.contains("/riptide_")),
        "riptide tokens left: {after:#?}"
    );
    probe.close().await.unwrap();
    router.close().await.unwrap();
}

/// What the peer sent wrong on purpose, counted by the daemon by reason.
fn check_counted_mistakes(m: &riptide_runtime::node::Metrics) {
    let state = "/riptide/observation/state";
    for (key, at_least) in [
        ("rejected_total{reason=\"ros2_attachment\"}".to_string(), 1),
        ("rejected_total{reason=\"ros2_type\"}".to_string(), 1),
        ("rejected_total{reason=\"malformed\"}".to_string(), 1),
        (format!("ros2_hash_mismatch_total{{topic=\"{state}\"}}"), 1),
        (format!("ros2_sequence_gaps_total{{topic=\"{state}\"}}"), 4),
    ] {
        assert!(m.get(&key) >= at_least, "{key}: {}", m.summary());
    }
    assert!(m.get("chunks_total") >= 3, "{}", m.summary());
}

/// The recording holds the peer's camera frames byte for byte, on a channel named by the ROS name.
fn check_recording(mcap: &std::path::Path, report: &serde_json::Value) {
    let ep = riptide_msgs::mcap::McapEpisode::open(mcap).unwrap();
    let sent: BTreeSet<String> = report["images_sha256"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let frames: Vec<String> = ep
        .messages_on("/camera/image_raw")
        .map(|m| sha256_hex(m.data))
        .collect();
    assert!(
        frames.len() >= 2 && frames.iter().all(|f| sent.contains(f)),
        "{frames:?} vs {sent:?}"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `jtc` back-end in plain mode, on the keys `zenoh-bridge-ros2dds` gives the ROS names (`joint_states`,
/// `arm_controller/joint_trajectory`): a joint state that lacks a configured joint blocks engagement (counted);
/// a complete one, in another order and with an extra joint, lets it engage; the chunk then reaches the
/// controller's topic with every point in the future and inside the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jtc_back_end_on_bridge_keys_blocks_engagement_until_every_joint_is_measured() {
    use riptide_msgs::ros::{Duration as RosDuration, JointTrajectory, JointTrajectoryPoint, Time};
    use riptide_runtime::drive::DriveConfig;
    let port = free_port();
    let mut cfg: DriveConfig = toml::from_str(
        "rate_hz = 200.0\n[driver.safety]\nposition_min = [-1, -1]\nposition_max = [1, 1]\nmax_velocity = [2, 2]\n\
         [driver.supervisor]\nhold_after_ms = 2000\n[backend]\ntype = \"jtc\"\ncontroller = \"arm_controller\"\n\
         joint_names = [\"a\", \"b\"]\n",
    )
    .unwrap();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    cfg.zenoh.connect = vec![];
    let ns = cfg.namespace.clone();
    let node = riptide_runtime::drive::start(cfg).await.unwrap();
    let s = riptide_tests::client(port).await;
    riptide_runtime::node::wait_alive(&s, &format!("{ns}/alive/driver"), Duration::from_secs(60))
        .await
        .unwrap();
    let (_traj, got) = collect::<JointTrajectory>(&s, "arm_controller/joint_trajectory".into()).await;
    let joint_state = |names: &[&str], position: &[f64]| {
        riptide_msgs::encode(&JointState {
            name: names.iter().map(|n| n.to_string()).collect(),
            position: position.to_vec(),
            ..Default::default()
        })
        .unwrap()
    };
    let engage = || async { s.put(format!("{ns}/driver/engage"), vec![0u8]).await.unwrap() };
    let m = node.metrics.clone();
    let wait_for = |what: &'static str, f: Box<dyn Fn() -> bool + Send>| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    s.put("joint_states", joint_state(&["a", "x"], &[0.1, 9.0]))
        .await
        .unwrap();
    let m2 = m.clone();
    wait_for(
        "missing joint counted",
        Box::new(move || m2.get("joint_states_missing_joint_total{joint=\"b\"}") == 1),
    )
    .await;
    engage().await;
    let m2 = m.clone();
    wait_for(
        "engagement refused",
        Box::new(move || m2.get("engage_refused_total{reason=\"position_unknown\"}") == 1),
    )
    .await;

    s.put("joint_states", joint_state(&["x", "b", "a"], &[9.0, 0.2, 0.1]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    engage().await;
    let t0 = riptide_runtime::node::now_s() + 0.05;
    let chunk = JointTrajectory {
        header: riptide_msgs::ros::Header {
            stamp: Time::from_secs_f64(t0),
            frame_id: String::new(),
        },
        joint_names: vec!["a".into(), "b".into()],
        points: (0..8)
            .map(|k| JointTrajectoryPoint {
                positions: vec![0.1 + 0.02 * k as f64, 0.2 - 0.02 * k as f64],
                time_from_start: RosDuration::from_secs_f64(0.1 * k as f64),
                ..Default::default()
            })
            .collect(),
    };
    s.put(format!("{ns}/action/chunk"), riptide_msgs::encode(&chunk).unwrap())
        .await
        .unwrap();
    let g3 = got.clone();
    wait_for("a trajectory", Box::new(move || !g3.lock().unwrap().is_empty())).await;
    let jt = got.lock().unwrap()[0].clone();
    assert_eq!(jt.joint_names, vec!["a".to_string(), "b".into()]);
    let tfs: Vec<f64> = jt.points.iter().map(|p| p.time_from_start.as_secs_f64()).collect();
    assert!(tfs[0] > 0.0 && tfs.windows(2).all(|w| w[1] > w[0]), "{tfs:?}");
    assert!(jt.points.iter().all(|p| p.positions.iter().all(|x| x.abs() <= 1.0)));
    // The last point is the chunk's end (within the envelope's ramp from the measured position).
    let last = &jt.points.last().unwrap().positions;
    assert!(
        (last[0] - 0.24).abs() < 0.05 && (last[1] - 0.06).abs() < 0.05,
        "{last:?}"
    );
    assert_eq!(m.get("engage_refused_total"), 1, "{}", m.summary());
    let _ = node.stop().await.unwrap();
    s.close().await.unwrap();
}
