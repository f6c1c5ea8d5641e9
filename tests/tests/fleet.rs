//! One daemon, several robots (`[[robot]]` tables) over real zenoh on loopback: each robot's topics
//! under its name, one shared worker, per-robot metrics, and isolation: a robot sending garbage or
//! nothing loses only its own chunks. And `riptide eval --robots N`: N simulated robots through one
//! batching pipeline give every episode exactly as one robot alone does.

use std::time::Duration;

use riptide_msgs::ros::JointTrajectory;
use riptide_runtime::daemon::config::DaemonConfig;
use riptide_runtime::node::Shutdown;
use riptide_tests::{client, fixtures_dir, free_port, vector};

/// Publish good observations for `robot` at 30 Hz until aborted.
fn feed(session: &zenoh::Session, robot: String) -> tokio::task::JoinHandle<()> {
    let session = session.clone();
    tokio::spawn(async move {
        let state = session
            .declare_publisher(format!("{robot}/observation/state"))
            .await
            .unwrap();
        let env = session
            .declare_publisher(format!("{robot}/observation/environment_state"))
            .await
            .unwrap();
        for i in 0u32.. {
            let x = (i as f32 * 0.1).sin();
            state.put(vector(&[x, -x])).await.unwrap();
            env.put(vector(&[x, 0.5, -0.5, 0.1, 0.2, x])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    })
}

async fn count(sub: &zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>) -> usize {
    let mut n = 0;
    while let Ok(Some(s)) = sub.try_recv() {
        let jt: JointTrajectory = riptide_msgs::decode(&s.payload().to_bytes()).expect("a JointTrajectory");
        assert!(jt.points.iter().all(|p| p.positions.iter().all(|v| v.is_finite())));
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn robots_get_their_own_chunks_and_a_bad_robot_loses_only_its_own() {
    let port = free_port();
    let (a, b) = (format!("fa{}", std::process::id()), format!("fb{}", std::process::id()));
    let checkpoint = fixtures_dir().join("lerobot/state_env_ddim_eps");
    let robot = |name: &str| {
        format!(
            "[[robot]]\nname = \"{name}\"\n[robot.trigger]\nrate_hz = 10\n\
             [robot.inputs.\"observation.environment_state\"]\nmax_age_ms = 300\n"
        )
    };
    let text = format!(
        "checkpoint = {:?}\nfps = 30\nwarmup = 1\n[zenoh]\nlisten = [\"tcp/127.0.0.1:{port}\"]\n{}{}",
        checkpoint.display().to_string(),
        robot(&a),
        robot(&b)
    );
    let cfg = DaemonConfig::from_toml(&text).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(
        cfg,
        Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        |_| {},
    ));
    let session = client(port).await;
    for ns in [&a, &b] {
        riptide_runtime::node::wait_alive(&session, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
            .await
            .expect("each robot's liveliness token");
    }
    let chunks_a = session.declare_subscriber(format!("{a}/action/chunk")).await.unwrap();
    let chunks_b = session.declare_subscriber(format!("{b}/action/chunk")).await.unwrap();

    // Robot a is well; robot b sends garbage and NaNs, then goes silent.
    let feeding_a = feed(&session, a.clone());
    let bad = session
        .declare_publisher(format!("{b}/observation/state"))
        .await
        .unwrap();
    for _ in 0..30 {
        bad.put(vector(&[f32::NAN, 1.0])).await.unwrap();
        bad.put(b"\x00\x01\x00\x00garbage".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (got_a, got_b) = (count(&chunks_a).await, count(&chunks_b).await);
    assert!(
        got_a >= 8,
        "robot a got {got_a} chunks in 2 s at 10 Hz beside a bad robot"
    );
    assert_eq!(got_b, 0, "robot b sent no valid observation but got chunks");

    // Robot b recovers: good observations give it chunks too, robot a keeps its own.
    let feeding_b = feed(&session, b.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (got_a, got_b) = (count(&chunks_a).await, count(&chunks_b).await);
    feeding_a.abort();
    feeding_b.abort();
    assert!(got_a >= 5 && got_b >= 5, "both robots served: a {got_a}, b {got_b}");

    stop_tx.send(()).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();
    let get = |k: &str| m.get(k);
    assert!(
        get(&format!("rejected_total{{robot=\"{b}\",reason=\"non_finite\"}}")) >= 30,
        "{}",
        m.summary()
    );
    assert!(
        get(&format!("rejected_total{{robot=\"{b}\",reason=\"malformed\"}}")) >= 30,
        "{}",
        m.summary()
    );
    assert!(get(&format!("blocked_total{{robot=\"{b}\"}}")) >= 5, "{}", m.summary());
    assert_eq!(get(&format!("rejected_total{{robot=\"{a}\"}}")), 0, "{}", m.summary());
    assert!(get(&format!("chunks_total{{robot=\"{a}\"}}")) >= 13, "{}", m.summary());
    assert_eq!(
        get("chunks_total"),
        get(&format!("chunks_total{{robot=\"{a}\"}}")) + get(&format!("chunks_total{{robot=\"{b}\"}}"))
    );
    assert_eq!(get("inference_errors_total"), 0, "{}", m.summary());
    // The Prometheus exposition names each robot's series.
    let text = m.prometheus();
    assert!(
        text.contains(&format!("riptide_chunks_total{{robot=\"{a}\"}}")),
        "{text}"
    );
    session.close().await.unwrap();
}

/// Every `per_episode` entry's seed, success, steps and score with N robots equals one robot's.
fn check_eval_robots(env: &str, shipped: &str, episodes: usize, robots: usize) {
    use riptide_runtime::tools::eval::{evaluate, EvalArgs};
    let args = |robots| EvalArgs {
        checkpoint: riptide_runtime::checkpoints::shipped_checkpoint(shipped).unwrap(),
        device: riptide_policies::DeviceSpec::Cpu,
        env: env.into(),
        seed: 20_000,
        episodes,
        delay_s: 0.0,
        queue_threshold_s: 0.0,
        sampling: Default::default(),
        robots,
    };
    let one = evaluate(&args(1), |_, _, _| {}).unwrap();
    let many = evaluate(&args(robots), |_, _, _| {}).unwrap();
    let key = |e: &riptide_runtime::tools::eval::ClosedLoopEpisode| (e.seed, e.success, e.steps, e.score.to_bits());
    assert_eq!(
        one.per_episode.iter().map(key).collect::<Vec<_>>(),
        many.per_episode.iter().map(key).collect::<Vec<_>>(),
        "{shipped}: {robots} robots in waves vs one robot"
    );
    assert_eq!(
        (one.successes, one.inferences),
        (many.successes, many.inferences),
        "{shipped}"
    );
    assert_eq!(many.robots, Some(robots));
    assert_eq!(many.per_robot.len(), robots);
    assert_eq!(many.per_robot.iter().map(|r| r.episodes).sum::<usize>(), episodes);
    assert!(many.per_robot.iter().all(|r| r.episodes >= 1), "{:?}", many.per_robot);
    assert!(many.per_episode.iter().all(|e| e.robot.is_some()) && one.per_episode.iter().all(|e| e.robot.is_none()));
    // One robot's JSON is today's: no fleet keys.
    let v = serde_json::to_value(&one).unwrap();
    assert!(v.get("robots").is_none() && v.get("per_robot").is_none());
}

#[test]
fn eval_with_four_robots_gives_one_robots_episodes_arm_reach() {
    check_eval_robots("arm-reach", "arm-reach", 8, 4);
}

#[test]
fn eval_with_four_robots_gives_one_robots_episodes_push_t_candidates() {
    // push-t samples 8 candidates per inference: 8 rows per robot in each wave.
    check_eval_robots("push-t", "push-t", 4, 4);
}

/// The site topology over a zenoh router (as `zenohd` would run it): a router on a port picked at run
/// time, one lockstep daemon serving two `[[robot]]` tables and two sim nodes as its clients (one per
/// robot's namespace), peers found by liveliness. The robots step in waves (one batched inference for
/// both when both need a chunk); every episode equals the in-process closed loop's for its seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lockstep_robots_of_one_daemon_through_a_zenoh_router_with_every_node_a_client() {
    use riptide_runtime::daemon::config::{LockstepSection, RobotSection};
    use riptide_runtime::node::{ZenohConfig, ZenohMode};
    use riptide_runtime::simnode::{run_sim, SimNodeConfig};
    use riptide_runtime::tools::eval::{driver_config_for, sim_daemon_config, ClosedLoop};

    let port = free_port();
    let router_cfg = ZenohConfig {
        mode: ZenohMode::Router,
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        ..ZenohConfig::default()
    };
    let router = riptide_runtime::node::network::open(&router_cfg).await.unwrap();
    let as_client = || ZenohConfig {
        mode: ZenohMode::Client,
        listen: vec![],
        connect: vec![format!("tcp/127.0.0.1:{port}")],
        ..ZenohConfig::default()
    };
    let checkpoint = riptide_runtime::checkpoints::shipped_checkpoint("arm-reach").unwrap();
    let policy = riptide_policies::load_policy(&checkpoint, riptide_policies::DeviceSpec::Cpu).unwrap();
    let env_spec = riptide_sim::make_env("arm-reach").unwrap().spec().clone();
    let (episodes, seeds) = (2usize, [31_000u64, 32_000]);
    let names: Vec<String> = (0..2).map(|i| format!("site{}r{i}", std::process::id())).collect();
    let mut cfg = sim_daemon_config(&checkpoint, &env_spec, policy.spec());
    cfg.zenoh = as_client();
    cfg.warmup = 1;
    cfg.robots = names
        .iter()
        .map(|name| RobotSection {
            name: name.clone(),
            checkpoint: None,
            inputs: cfg.inputs.clone(),
            output: None,
            trigger: None,
            exec_latency_ms: None,
            rti: None,
            candidates: None,
            lockstep: Some(LockstepSection {
                delay_ms: 0.0,
                queue_threshold_s: 0.0,
                driver: driver_config_for(&env_spec),
            }),
        })
        .collect();
    cfg.inputs.clear();
    cfg.lockstep = None;
    let stop = riptide_runtime::node::Shutdown::new();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(cfg, stop.clone(), |_| {}));
    let mut sims = Vec::new();
    for (ns, seed) in names.iter().zip(seeds) {
        let session = riptide_runtime::node::network::open(&as_client()).await.unwrap();
        riptide_runtime::node::wait_alive(&session, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
            .await
            .expect("the daemon's robot is visible through the router");
        let sim = SimNodeConfig {
            env: "arm-reach".into(),
            namespace: ns.clone(),
            lockstep: true,
            episodes,
            seed,
            render: false,
            command_timeout_s: 120.0,
            zenoh: as_client(),
            record_dir: None,
            // The environment_state layout the shipped policy was trained on.
            env_state_width: riptide_runtime::checkpoints::env_state_width(&checkpoint).unwrap(),
            publish_hz: None,
            ros2: None,
        };
        sims.push((sim, session));
    }
    // Both sims start together, so their steps meet in waves.
    let sims: Vec<_> = sims
        .into_iter()
        .map(|(sim, session)| {
            let sim_stop = riptide_runtime::node::Shutdown::new();
            tokio::task::spawn_blocking(move || {
                let r = run_sim(&sim, &session, &sim_stop, |_| {});
                (r, session)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for s in sims {
        let (r, session) = s.await.unwrap();
        outcomes.push(r);
        session.close().await.unwrap();
    }
    stop.trigger();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();
    router.close().await.unwrap();
    let results: Vec<_> = outcomes
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("sim episodes through the router: {e:#}; daemon: {}", m.summary())))
        .collect();

    let mut cl = ClosedLoop::new(&checkpoint, riptide_policies::DeviceSpec::Cpu, "arm-reach", 0.0).unwrap();
    for (seed, got) in seeds.iter().zip(&results) {
        assert_eq!(got.len(), episodes);
        for (k, e) in got.iter().enumerate() {
            let want = cl.episode(seed + k as u64).unwrap();
            assert_eq!(
                (e.seed, e.success, e.steps),
                (want.seed, want.success, want.steps),
                "episode of seed {} through the router vs in-process",
                e.seed
            );
        }
    }
    let get = |k: &str| m.get(k);
    for name in &names {
        assert!(get(&format!("chunks_total{{robot=\"{name}\"}}")) > 0, "{}", m.summary());
    }
    assert!(
        get("wave_rows_total") > get("waves_total"),
        "some waves carry both robots' rows: {}",
        m.summary()
    );
}

/// A CA and one certificate per name, made at run time with openssl (no private key is committed):
/// `<dir>/ca.pem`, `<dir>/<name>.pem` and `<dir>/<name>.key`, valid for localhost / 127.0.0.1.
fn certificates(dir: &std::path::Path, names: &[&str]) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=riptide-test-ca",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    for n in names {
        let (key, csr, pem, subj) = (
            format!("{n}.key"),
            format!("{n}.csr"),
            format!("{n}.pem"),
            format!("/CN={n}"),
        );
        run(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "leaf.cnf",
        ]);
    }
}

/// A zenoh client of `tls/localhost:port` with `name`'s certificate.
fn tls_client(dir: &std::path::Path, port: u16, name: &str) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    let p = |f: String| serde_json::to_string(&dir.join(f)).unwrap();
    for (k, v) in [
        ("mode", "\"client\"".to_string()),
        ("connect/endpoints", format!("[\"tls/localhost:{port}\"]")),
        ("listen/endpoints", "[]".into()),
        ("scouting/multicast/enabled", "false".into()),
        ("transport/link/tls/root_ca_certificate", p("ca.pem".into())),
        ("transport/link/tls/connect_private_key", p(format!("{name}.key"))),
        ("transport/link/tls/connect_certificate", p(format!("{name}.pem"))),
        // Without it the client never presents its certificate.
        ("transport/link/tls/enable_mtls", "true".into()),
    ] {
        c.insert_json5(k, &v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    c
}

/// Robots, router and daemon over mTLS, robots told apart by certificate common name in the router's
/// ACL (`examples/zenoh-router-acl.json5`): a listed robot's observations reach the daemon and its chunks
/// reach it; an unlisted robot's do not; a listed robot can neither publish another robot's topics nor
/// subscribe to its chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_and_acl_keep_each_robot_to_its_own_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    certificates(dir, &["router", "daemon", "arm1", "arm2", "intruder"]);
    let port = free_port();
    let pid = std::process::id();
    let (r1, r2, r3) = (format!("acl{pid}a"), format!("acl{pid}b"), format!("acl{pid}c"));
    // The shipped example ACL, with this run's robot names.
    let acl = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/zenoh-router-acl.json5"),
    )
    .unwrap()
    .replace("\"arm1/**\"", &format!("\"{r1}/**\""))
    .replace("\"arm2/**\"", &format!("\"{r2}/**\""));
    let mut router = zenoh::Config::from_json5(&acl).unwrap();
    let p = |f: &str| serde_json::to_string(&dir.join(f)).unwrap();
    for (k, v) in [
        ("listen/endpoints", format!("[\"tls/localhost:{port}\"]")),
        ("transport/link/tls/root_ca_certificate", p("ca.pem")),
        ("transport/link/tls/listen_private_key", p("router.key")),
        ("transport/link/tls/listen_certificate", p("router.pem")),
    ] {
        router.insert_json5(k, &v).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    let router = zenoh::open(router).await.unwrap();

    // The daemon: three robots, a TLS client of the router through its zenoh config file.
    let daemon_zenoh = dir.join("daemon-zenoh.json5");
    std::fs::write(
        &daemon_zenoh,
        format!(
            "{{ transport: {{ link: {{ tls: {{ root_ca_certificate: {}, connect_private_key: {}, connect_certificate: {}, \
             enable_mtls: true }} }} }} }}",
            p("ca.pem"),
            p("daemon.key"),
            p("daemon.pem")
        ),
    )
    .unwrap();
    let robot = |name: &str| {
        format!(
            "[[robot]]\nname = \"{name}\"\n[robot.trigger]\nrate_hz = 10\n\
             [robot.inputs.\"observation.environment_state\"]\nmax_age_ms = 300\n"
        )
    };
    let text = format!(
        "checkpoint = {:?}\nfps = 30\nwarmup = 1\n[zenoh]\nmode = \"client\"\nlisten = []\nconnect = [\"tls/localhost:{port}\"]\n\
         config_file = {:?}\n{}{}{}",
        fixtures_dir().join("lerobot/state_env_ddim_eps").display().to_string(),
        daemon_zenoh.display().to_string(),
        robot(&r1),
        robot(&r2),
        robot(&r3)
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(
        DaemonConfig::from_toml(&text).unwrap(),
        Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        |_| {},
    ));
    // An operator session with the daemon's certificate sees every robot's token through the router.
    let operator = zenoh::open(tls_client(dir, port, "daemon")).await.unwrap();
    for ns in [&r1, &r2, &r3] {
        riptide_runtime::node::wait_alive(&operator, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
            .await
            .expect("the daemon is up behind the router");
    }

    let arm1 = zenoh::open(tls_client(dir, port, "arm1")).await.unwrap();
    let arm2 = zenoh::open(tls_client(dir, port, "arm2")).await.unwrap();
    let intruder = zenoh::open(tls_client(dir, port, "intruder")).await.unwrap();
    let own_chunks_1 = arm1.declare_subscriber(format!("{r1}/action/chunk")).await.unwrap();
    let own_chunks_2 = arm2.declare_subscriber(format!("{r2}/action/chunk")).await.unwrap();
    let stolen_chunks = arm1.declare_subscriber(format!("{r2}/action/chunk")).await.unwrap();
    let feeders = [
        feed(&arm1, r1.clone()),
        feed(&arm2, r2.clone()),
        feed(&intruder, r3.clone()),
    ];
    // arm1 also tries to write into arm2's stream.
    let forged = arm1.declare_publisher(format!("{r2}/observation/state")).await.unwrap();
    for _ in 0..60 {
        forged.put(b"\x00\x01\x00\x00forged".to_vec()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let (got1, got2, stolen) = (
        count(&own_chunks_1).await,
        count(&own_chunks_2).await,
        count(&stolen_chunks).await,
    );
    feeders.iter().for_each(|f| f.abort());
    stop_tx.send(()).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();
    let get = |k: String| m.get(&k);
    assert!(
        get(format!("messages_total{{robot=\"{r1}\"}}")) >= 30,
        "{}",
        m.summary()
    );
    assert!(got1 >= 5 && got2 >= 5, "listed robots get their chunks: {got1}, {got2}");
    assert_eq!(
        get(format!("messages_total{{robot=\"{r3}\"}}")),
        0,
        "unlisted robot got through: {}",
        m.summary()
    );
    assert_eq!(get(format!("chunks_total{{robot=\"{r3}\"}}")), 0, "{}", m.summary());
    assert_eq!(
        get(format!("rejected_total{{robot=\"{r2}\"}}")),
        0,
        "arm1 forged arm2's observations: {}",
        m.summary()
    );
    assert_eq!(stolen, 0, "arm1 received arm2's chunks");
    for s in [arm1, arm2, intruder, operator, router] {
        s.close().await.unwrap();
    }
}
