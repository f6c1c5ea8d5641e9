//! Remote inference: an independent client (Python zenoh `get` with a timeout, tests/tests/remote_query.py)
//! queries the live daemon's `<ns>/infer` while a robot stream is being served. Each row of a LeRobot
//! fixture sent as its own query comes back as LeRobot's actions for that row; malformed queries get error
//! replies naming the problem; the robot's chunks keep flowing and the daemon keeps answering.

use std::time::Duration;

use riptide_policies::read_safetensors;
use riptide_runtime::daemon::config::DaemonConfig;
use riptide_runtime::node::Shutdown;
use riptide_tests::{client, fixtures_dir, free_port, python_with, vector};
use serde_json::Value;

const FIX: &str = "state_env_ddim_eps";

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        v => panic!("not a number: {v}"),
    }
}

fn err_of<'a>(out: &'a Value, case: &str) -> &'a str {
    out[case]["err"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: expected an error reply, got {}", out[case]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_queries_match_lerobot_and_bad_ones_get_error_replies() {
    let Some(python) = python_with("zenoh, safetensors, numpy") else {
        return;
    };
    let port = free_port();
    let ns = format!("rq{}", std::process::id());
    let fixture = fixtures_dir().join("lerobot").join(FIX);
    let mut cfg = DaemonConfig::for_checkpoint(fixture.clone());
    cfg.fps = Some(30.0);
    cfg.namespace = ns.clone();
    cfg.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    cfg.trigger.rate_hz = Some(10.0);
    cfg.warmup = 1;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(riptide_runtime::daemon::run(
        cfg,
        Shutdown::when(async move {
            let _ = stop_rx.await;
        }),
        |_| {},
    ));

    // A robot stream served at the same time (observations at 30 Hz, chunks counted).
    let session = client(port).await;
    riptide_runtime::node::wait_alive(&session, &format!("{ns}/alive/daemon"), Duration::from_secs(120))
        .await
        .expect("daemon alive");
    let chunks = session.declare_subscriber(format!("{ns}/action/chunk")).await.unwrap();
    let state = session
        .declare_publisher(format!("{ns}/observation/state"))
        .await
        .unwrap();
    let env = session
        .declare_publisher(format!("{ns}/observation/environment_state"))
        .await
        .unwrap();
    let robot = tokio::spawn(async move {
        let mut i = 0u32;
        loop {
            let x = (i as f32 * 0.1).sin();
            state.put(vector(&[x, -x])).await.unwrap();
            env.put(vector(&[x, 0.5, -0.5, 0.1, 0.2, x])).await.unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(33)).await;
        }
    });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/remote_query.py");
    let (ns2, fix2) = (ns.clone(), fixture.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(ns2)
            .arg(fix2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    robot.abort();
    assert!(
        out.status.success(),
        "remote_query.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Each row, queried alone with its own noise, is LeRobot's output for that row.
    let expected = read_safetensors(&fixture.join("expected.safetensors")).unwrap();
    let want = &expected["action"];
    let (rows, h, d) = (want.shape[0], want.shape[1], want.shape[2]);
    let range: Vec<f32> = (0..d)
        .map(|j| {
            let col = want.data.iter().skip(j).step_by(d);
            col.clone().fold(f32::MIN, |a, b| a.max(*b)) - col.fold(f32::MAX, |a, b| a.min(*b))
        })
        .collect();
    let replies = out["rows"].as_array().unwrap();
    assert_eq!(replies.len(), rows);
    for (i, r) in replies.iter().enumerate() {
        assert!(r.get("ok").is_some(), "row {i}: {r}");
        assert_eq!(r["shapes"]["action"], serde_json::json!([1, h, d]), "row {i}");
        let got = flat(&r["ok"]["action"]);
        let row = &want.data[i * h * d..(i + 1) * h * d];
        for (k, (g, w)) in got.iter().zip(row).enumerate() {
            let err = (*g as f32 - w).abs() / range[k % d].max(1e-6);
            assert!(err <= 1e-4, "row {i} element {k}: {g} vs LeRobot's {w}");
        }
        let exec = flat(&r["ok"]["action.executed"]);
        assert_eq!(exec.len(), 8 * d, "row {i}: executed slice");
        assert_eq!(exec[..], got[d..9 * d], "row {i}: executed slice is steps 1..9");
        let meta = &r["chunk_meta"];
        assert_eq!(meta["policy_kind"], "diffusion", "row {i}: {meta}");
        assert_eq!(meta["nfe"], 10, "row {i}: {meta}");
        assert_eq!(meta["warm_started"], false, "row {i}: {meta}");
        assert_eq!(
            meta["seed"],
            100 + i as u64,
            "row {i}: the metadata seed is used: {meta}"
        );
        assert_eq!(r["key"], format!("{ns}/infer"));
    }
    assert!(err_of(&out, "garbage").contains("not a safetensors file"));
    assert!(err_of(&out, "empty").contains("no payload"));
    assert!(err_of(&out, "batch").contains("batch 1"));
    assert!(err_of(&out, "missing").contains("observation.state"));
    assert!(err_of(&out, "nan").contains("non-finite"));
    assert!(err_of(&out, "bad_seed").contains("metadata seed"));
    assert!(out["after"].get("ok").is_some(), "still answering: {}", out["after"]);

    // The robot's stream went on while the queries ran.
    let mut n = 0;
    while chunks.try_recv().ok().flatten().is_some() {
        n += 1;
    }
    assert!(n >= 1, "no robot chunks while queries were answered");
    stop_tx.send(()).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("clean shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(
        m.get("remote_queries_total{result=\"ok\"}"),
        rows as u64 + 1,
        "{}",
        m.summary()
    );
    assert_eq!(
        m.get("remote_queries_total{result=\"malformed\"}"),
        6,
        "{}",
        m.summary()
    );
    assert_eq!(m.get("inference_errors_total"), 0, "{}", m.summary());
    session.close().await.unwrap();
}
