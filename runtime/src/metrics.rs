//! Counters and latency histograms, a Prometheus text endpoint, and percentile summaries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Log-spaced bucket upper bounds, seconds (50 µs … ~13 s).
fn bounds() -> Vec<f64> {
    (0..37).map(|i| 50e-6 * 2f64.powf(i as f64 / 2.0)).collect()
}

/// A latency histogram with exact recent samples for percentiles.
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
    recent: Mutex<Vec<f64>>,
}

const RECENT: usize = 4096;

impl Default for Histogram {
    fn default() -> Self {
        let bounds = bounds();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds,
            counts,
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            recent: Mutex::new(Vec::new()),
        }
    }
}

impl Histogram {
    pub fn record(&self, secs: f64) {
        let secs = secs.max(0.0);
        let i = self.bounds.partition_point(|b| *b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add((secs * 1e9) as u64, Ordering::Relaxed);
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let mut r = self.recent.lock().expect("histogram lock");
        if r.len() < RECENT {
            r.push(secs);
        } else {
            r[(n as usize) % RECENT] = secs;
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Percentile (0–100) over the most recent samples, seconds.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let mut v = self.recent.lock().expect("histogram lock").clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        Some(v[((v.len() - 1) as f64 * p / 100.0).round() as usize])
    }

    fn prometheus(&self, name: &str, out: &mut String) {
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{le=\"{b:.6}\"}} {cum}\n"));
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {cum}\n"));
        out.push_str(&format!(
            "{name}_sum {:.9}\n",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        ));
        out.push_str(&format!("{name}_count {}\n", self.count()));
    }
}

/// Every counter and histogram of the daemon.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    pub decode: Histogram,
    pub window: Histogram,
    pub inference: Histogram,
    pub publish: Histogram,
    pub end_to_end: Histogram,
}

impl Metrics {
    /// Increment `name` (with optional label, rendered as `name{label="value"}`).
    pub fn inc(&self, name: &str, label: Option<(&str, &str)>) {
        let key = match label {
            Some((k, v)) => format!("{name}{{{k}=\"{v}\"}}"),
            None => name.to_string(),
        };
        *self.counters.lock().expect("metrics lock").entry(key).or_default() += 1;
    }

    pub fn get(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .expect("metrics lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.lock().expect("metrics lock").clone()
    }

    fn stages(&self) -> [(&'static str, &Histogram); 5] {
        [
            ("decode", &self.decode),
            ("window", &self.window),
            ("inference", &self.inference),
            ("publish", &self.publish),
            ("end_to_end", &self.end_to_end),
        ]
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.counters() {
            out.push_str(&format!("riptide_{k} {v}\n"));
        }
        for (name, h) in self.stages() {
            h.prometheus(&format!("riptide_{name}_seconds"), &mut out);
        }
        out
    }

    /// One line: counters and p50/p99 per stage.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self.counters().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (name, h) in self.stages() {
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
        for (name, h) in self.stages() {
            let p = |q| {
                h.percentile(q)
                    .map(|v| format!("{:.3}", v * 1e3))
                    .unwrap_or_else(|| "-".into())
            };
            s.push_str(&format!(
                "{:<12} {:>8} {:>10} {:>10} {:>10}\n",
                name,
                h.count(),
                p(50.0),
                p(90.0),
                p(99.0)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_percentiles() {
        let h = Histogram::default();
        for i in 1..=100 {
            h.record(i as f64 * 1e-3);
        }
        assert_eq!(h.count(), 100);
        assert!((h.percentile(50.0).unwrap() - 0.050).abs() < 1.5e-3);
        assert!((h.percentile(99.0).unwrap() - 0.099).abs() < 1.5e-3);
        let mut s = String::new();
        h.prometheus("x", &mut s);
        assert!(s.contains("x_bucket{le=\"+Inf\"} 100"));
        assert!(s.contains("x_count 100"));
    }
}
