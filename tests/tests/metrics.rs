//! The metrics exposition read by an independent parser: Python `prometheus_client`'s own text parser
//! (`check_prometheus.py`) must see every family typed (counters, gauges, histograms) with its help,
//! counters with several labels, and label values escaped so they read back exactly.

use riptide_runtime::node::Metrics;
use riptide_tests::parse_with_prometheus_client;

#[test]
fn counters_gauges_and_histograms_are_typed_with_help_and_escaped_labels() {
    let m = Metrics::default();
    let weird = "cam \"left\"\\front\nrow";
    for _ in 0..3 {
        m.inc("rejected_total", &[("robot", "arm1"), ("reason", "stale")]);
    }
    m.inc("rejected_total", &[("robot", "arm2"), ("reason", "malformed")]);
    m.inc("messages_total", &[("feature", weird)]);
    m.inc("chunks_total", &[]);
    m.set("inference_in_flight", &[], 1.0);
    for i in 1..=10 {
        m.inference.record(i as f64 * 1e-3);
    }
    let Some(fams) = parse_with_prometheus_client(&m.prometheus()) else {
        return;
    };
    for (name, f) in &fams {
        assert_ne!(f["type"], "unknown", "{name} is untyped: {f}");
        assert!(!f["help"].as_str().unwrap_or("").is_empty(), "{name} has no help");
    }
    let rejected = &fams["riptide_rejected"];
    assert_eq!(rejected["type"], "counter");
    let samples = rejected["samples"].as_array().unwrap();
    let stale = samples
        .iter()
        .find(|s| s[0] == "riptide_rejected_total" && s[1]["robot"] == "arm1" && s[1]["reason"] == "stale")
        .expect("robot+reason sample");
    assert_eq!(stale[2], 3.0);
    let msgs = &fams["riptide_messages"]["samples"][0];
    assert_eq!(msgs[1]["feature"], weird, "label value must read back exactly");
    assert_eq!(fams["riptide_inference_in_flight"]["type"], "gauge");
    let h = &fams["riptide_inference_seconds"];
    assert_eq!(h["type"], "histogram");
    let samples = h["samples"].as_array().unwrap();
    let count = samples
        .iter()
        .find(|s| s[0] == "riptide_inference_seconds_count")
        .unwrap();
    assert_eq!(count[2], 10.0);
    assert!(
        samples
            .iter()
            .filter(|s| s[0] == "riptide_inference_seconds_bucket")
            .count()
            >= 30
    );
}
