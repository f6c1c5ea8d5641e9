//! Rate-limited warnings: bad input must be visible in the log without flooding it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Logs at most once per period per key.
#[derive(Debug)]
pub struct RateLimitedLog {
    period: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new(Duration::from_secs(5))
    }
}

impl RateLimitedLog {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::default(),
        }
    }

    /// `tracing::warn!` the message unless `key` was logged within the period.
    pub fn warn(&self, key: &str, msg: impl FnOnce() -> String) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.get(key).is_none_or(|t| now.duration_since(*t) > self.period) {
            last.insert(key.to_string(), now);
            tracing::warn!("{}", msg());
        }
    }
}
