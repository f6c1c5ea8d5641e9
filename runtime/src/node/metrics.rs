//! A node's counters, gauges and latency histograms: OpenMetrics / Prometheus text exposition through
//! `prometheus-client` (every family typed, with help), percentile summaries for the log and `riptide run --stats`.
//!
//! Counters take any number of labels (`&[("robot", "arm1"), ("reason", "stale")]`). Label values
//! come from the wire (topic names, feature names), so they are escaped as the exposition format
//! requires (`\`, `"` and newlines), which `prometheus-client` leaves to its caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Help text of the counters and gauges riptide's nodes keep (names without the `riptide_` prefix
/// and, for counters, without `_total`).
const HELP: &[(&str, &str)] = &[
    ("messages", "Messages received per input feature"),
    (
        "rejected",
        "Messages rejected, by reason (malformed, shape, non_finite, out_of_order, ...)",
    ),
    (
        "blocked",
        "Inferences not started because the observation window was incomplete, by reason",
    ),
    (
        "superseded",
        "Queued windows replaced by a newer one before inference started",
    ),
    ("inference_errors", "Inferences that failed"),
    (
        "over_budget",
        "Chunks not published: every action was already due when inference finished",
    ),
    (
        "late_actions_dropped",
        "Chunks published with their first actions dropped (already due)",
    ),
    ("chunks", "Action chunks produced"),
    (
        "windows",
        "Observation windows the trigger asked for (each ends as a chunk, superseded, blocked, over budget, an error or a fault)",
    ),
    ("waves", "Lockstep waves: robots' steps served together"),
    ("wave_rows", "Rows of every lockstep wave (waves carrying several robots batch them)"),
    (
        "lockstep_stalled_waves",
        "Lockstep waves stepped without a robot whose step did not come within 1 s",
    ),
    (
        "chunks_rejected",
        "Chunks the driver refused (safety envelope, stale, malformed)",
    ),
    ("backend_errors", "Driver back-end errors"),
    ("estops", "Emergency stops"),
    ("late_steps", "Driver control steps that ran late"),
    (
        "vehicle_not_executing",
        "Setpoints the vehicle did not execute (not in offboard mode or not armed)",
    ),
    ("inference_in_flight", "1 while an inference is running"),
    (
        "policy_faults",
        "Policy faults (a panic in predict, a device error, device out of memory), by reason; each reloads the policy",
    ),
    ("policy_reloads", "Policies reloaded after a fault"),
    (
        "remote_queries",
        "Remote inference queries, by result (ok, malformed, busy, inference, stopped)",
    ),
    (
        "commands",
        "Commands the driver sent, by kind (position, hold, land, idle)",
    ),
    (
        "driver_queued_seconds",
        "Seconds of commands the driver still has queued",
    ),
    (
        "ros2_hash_mismatch",
        "ROS 2 samples whose key names the expected type with another type hash (another distro), per topic",
    ),
    (
        "ros2_sequence_gaps",
        "ROS 2 samples missed between publishers and this node (attachment sequence numbers), per topic",
    ),
    (
        "joint_states_missing_joint",
        "Joint states that lacked a configured joint (the position stays unknown: no engagement), per joint",
    ),
    (
        "engage_refused",
        "Engagements refused, by reason (position_unknown, driver)",
    ),
    (
        "jtc_trajectories",
        "Trajectories sent to the JointTrajectoryController",
    ),
    (
        "jtc_holds",
        "Hold trajectories sent to the JointTrajectoryController (the driver stopped following)",
    ),
];

fn help(name: &str) -> &'static str {
    HELP.iter()
        .find(|(n, _)| *n == name)
        .map_or("riptide counter", |(_, h)| h)
}

/// A label value escaped for the text exposition format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels = Vec<(String, Escaped)>;

fn labels(l: &[(&str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (k.to_string(), Escaped(v.to_string()))).collect()
}

/// `name{k="v",...}` as the counters are looked up by [`Metrics::get`] (values unescaped).
fn key(name: &str, l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// `name{k="v",...}` → name and label pairs (values as written; riptide's never hold `",`).
fn parse_key(key: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = key.split_once('{') else {
        return (key, Vec::new());
    };
    let inner = rest.strip_suffix('}').unwrap_or(rest);
    let pairs = inner
        .split("\",")
        .filter_map(|kv| kv.split_once("=\""))
        .map(|(k, v)| (k.trim().to_string(), v.trim_end_matches('"').to_string()))
        .collect();
    (name, pairs)
}

/// A node's metrics as one robot sees them: every counter and gauge it sets carries its `robot` label
/// (histograms are the node's).
#[derive(Clone)]
pub struct RobotMetrics {
    pub all: std::sync::Arc<Metrics>,
    robot: std::sync::Arc<str>,
}

impl RobotMetrics {
    pub fn new(all: std::sync::Arc<Metrics>, robot: &str) -> Self {
        Self {
            all,
            robot: robot.into(),
        }
    }

    pub fn robot(&self) -> &str {
        &self.robot
    }

    /// [`Metrics::inc`] with the robot label first.
    pub fn inc(&self, name: &str, l: &[(&str, &str)]) {
        let mut with = vec![("robot", &*self.robot)];
        with.extend_from_slice(l);
        self.all.inc(name, &with);
    }

    /// [`Metrics::set`] with the robot label first.
    pub fn set(&self, name: &str, l: &[(&str, &str)], value: f64) {
        let mut with = vec![("robot", &*self.robot)];
        with.extend_from_slice(l);
        self.all.set(name, &with, value);
    }
}

/// Log-spaced bucket upper bounds, seconds (50 µs … ~13 s).
fn bounds() -> Vec<f64> {
    (0..37).map(|i| 50e-6 * 2f64.powf(i as f64 / 2.0)).collect()
}

const RECENT: usize = 4096;

/// A latency histogram (exported) with exact recent samples for percentiles.
pub struct Histogram {
    exported: prometheus_client::metrics::histogram::Histogram,
    count: std::sync::atomic::AtomicU64,
    recent: Mutex<Vec<f64>>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            exported: prometheus_client::metrics::histogram::Histogram::new(bounds()),
            count: Default::default(),
            recent: Mutex::new(Vec::new()),
        }
    }
}

impl Histogram {
    pub fn record(&self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        self.exported.observe(secs);
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() < RECENT {
            r.push(secs);
        } else {
            r[(n as usize) % RECENT] = secs;
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Percentile (0–100) over the most recent samples, seconds.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut v = self.recent.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Some(v[((v.len() - 1) as f64 * p / 100.0).round() as usize])
    }
}

/// One counter series as [`Metrics::get`] matches it.
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    count: u64,
}

#[derive(Default)]
struct Families {
    registry: Registry,
    counters: BTreeMap<String, Family<Labels, Counter>>,
    gauges: BTreeMap<String, Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>>,
    /// Plain values by [`key`], for [`Metrics::get`] and the summary line.
    values: BTreeMap<String, Series>,
}

/// Every counter, gauge and histogram of a node.
pub struct Metrics {
    families: Mutex<Families>,
    pub decode: Histogram,
    pub window: Histogram,
    pub inference: Histogram,
    pub publish: Histogram,
    pub end_to_end: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            families: Mutex::new(Families {
                registry: Registry::with_prefix("riptide"),
                ..Default::default()
            }),
            decode: Histogram::default(),
            window: Histogram::default(),
            inference: Histogram::default(),
            publish: Histogram::default(),
            end_to_end: Histogram::default(),
        }
    }
}

impl Metrics {
    fn families(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Increment counter `name` (ending in `_total`) with these labels.
    pub fn inc(&self, name: &str, l: &[(&str, &str)]) {
        self.inc_by(name, l, 1);
    }

    /// Add `n` to counter `name` (ending in `_total`) with these labels.
    pub fn inc_by(&self, name: &str, l: &[(&str, &str)], n: u64) {
        let mut f = self.families();
        let base = name.strip_suffix("_total").unwrap_or(name).to_string();
        if !f.counters.contains_key(&base) {
            let family = Family::<Labels, Counter>::default();
            f.registry.register(base.clone(), help(&base), family.clone());
            f.counters.insert(base.clone(), family);
        }
        f.counters[&base].get_or_create(&labels(l)).inc_by(n);
        let series = || Series {
            name: name.to_string(),
            labels: l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            count: 0,
        };
        f.values.entry(key(name, l)).or_insert_with(series).count += n;
    }

    /// Set gauge `name` with these labels.
    pub fn set(&self, name: &str, l: &[(&str, &str)], value: f64) {
        let mut f = self.families();
        if !f.gauges.contains_key(name) {
            let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            f.registry.register(name, help(name), family.clone());
            f.gauges.insert(name.to_string(), family);
        }
        f.gauges[name].get_or_create(&labels(l)).set(value);
    }

    /// A counter's value by `name` or `name{k="v",...}`: the sum of every series of `name` that has
    /// those labels (and maybe others: `chunks_total` counts every robot's), 0 if never counted.
    pub fn get(&self, key: &str) -> u64 {
        let (name, want) = parse_key(key);
        self.families()
            .values
            .values()
            .filter(|s| s.name == name && want.iter().all(|w| s.labels.contains(w)))
            .map(|s| s.count)
            .sum()
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.families()
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.count))
            .collect()
    }

    fn stages(&self) -> [(&'static str, &Histogram, &'static str); 5] {
        [
            ("decode", &self.decode, "Decoding one message"),
            ("window", &self.window, "Assembling one observation window"),
            ("inference", &self.inference, "One inference (policy predict)"),
            ("publish", &self.publish, "Encoding and publishing one chunk"),
            ("end_to_end", &self.end_to_end, "Observation to published chunk"),
        ]
    }

    /// Prometheus / OpenMetrics text exposition.
    pub fn prometheus(&self) -> String {
        let f = self.families();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &f.registry);
        let mut stages = Registry::with_prefix("riptide");
        for (name, h, help) in self.stages() {
            stages.register_with_unit(
                name,
                help,
                prometheus_client::registry::Unit::Seconds,
                h.exported.clone(),
            );
        }
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &stages);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        without_empty_label_sets(&out)
    }

    /// One line: counters and p50/p99 per stage.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.counters().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (name, h, _) in self.stages() {
            if let (Some(p50), Some(p99)) = (h.percentile(50.0), h.percentile(99.0)) {
                parts.push(format!("{name} p50 {:.2} ms p99 {:.2} ms", p50 * 1e3, p99 * 1e3));
            }
        }
        parts.join(", ")
    }

    /// Table of p50/p90/p99 per stage (for `riptide run --stats`).
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<12} {:>8} {:>10} {:>10} {:>10}\n",
            "stage", "count", "p50 ms", "p90 ms", "p99 ms"
        );
        for (name, h, _) in self.stages() {
            let p = |q| {
                h.percentile(q)
                    .map(|v| format!("{:.3}", v * 1e3))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                s,
                "{:<12} {:>8} {:>10} {:>10} {:>10}",
                name,
                h.count(),
                p(50.0),
                p(90.0),
                p(99.0)
            );
        }
        s
    }
}

/// `name{} 3` → `name 3`: a series without labels is written without braces, as Prometheus' own
/// clients write it (both forms parse; only the first `{` of a sample line can open its label set).
fn without_empty_label_sets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match (line.find('{'), line.find("{} ")) {
            (Some(a), Some(b)) if a == b && !line.starts_with('#') => {
                out.push_str(&line[..a]);
                out.push_str(&line[a + 2..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Serve [`Metrics::prometheus`] over HTTP/1.1 on `listener` (loopback by default) until dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = m.prometheus();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_percentiles() {
        let m = Metrics::default();
        for i in 1..=100 {
            m.inference.record(i as f64 * 1e-3);
        }
        let h = &m.inference;
        assert_eq!(h.count(), 100);
        assert!((h.percentile(50.0).unwrap() - 0.050).abs() < 1.5e-3);
        assert!((h.percentile(99.0).unwrap() - 0.099).abs() < 1.5e-3);
        let s = m.prometheus();
        assert!(s.contains("riptide_inference_seconds_bucket{le=\"+Inf\"} 100"), "{s}");
        assert!(s.contains("riptide_inference_seconds_count 100"), "{s}");
        assert!(s.contains("# TYPE riptide_inference_seconds histogram"), "{s}");
        m.inc("chunks_total", &[]);
        assert!(m.prometheus().contains("\nriptide_chunks_total 1\n"));
    }

    #[test]
    fn counters_take_many_labels_and_escape_values() {
        let m = Metrics::default();
        m.inc("rejected_total", &[("robot", "arm1"), ("reason", "stale")]);
        m.inc("rejected_total", &[("robot", "arm1"), ("reason", "stale")]);
        m.inc("messages_total", &[("feature", "a\"b\\c\nd")]);
        assert_eq!(m.get("rejected_total{robot=\"arm1\",reason=\"stale\"}"), 2);
        let s = m.prometheus();
        assert!(s.contains("# TYPE riptide_rejected counter"), "{s}");
        assert!(
            s.contains("riptide_rejected_total{robot=\"arm1\",reason=\"stale\"} 2"),
            "{s}"
        );
        assert!(s.contains(r#"riptide_messages_total{feature="a\"b\\c\nd"} 1"#), "{s}");
    }
}
