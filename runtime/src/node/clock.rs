//! Time base of a node: the wall clock (UNIX seconds), or simulated time from `<ns>/clock`
//! (`rosgraph_msgs/Clock`, published by `riptide sim --lockstep`) so a whole evaluation runs as fast
//! as the CPU allows and is reproducible. As in ROS (`use_sim_time`), every stamp, staleness check
//! and deadline then uses the simulated clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use riptide_msgs::ros::Clock as ClockMsg;

/// Seconds since the Unix epoch: the time base of message stamps.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A node's clock; cheap to clone.
#[derive(Debug, Clone)]
pub enum Clock {
    Wall,
    /// Latest simulated time received (f64 bits); 0 until the first message.
    Sim(Arc<AtomicU64>),
}

impl Clock {
    pub fn now_s(&self) -> f64 {
        match self {
            Clock::Wall => now_s(),
            Clock::Sim(t) => f64::from_bits(t.load(Ordering::Acquire)),
        }
    }

    pub fn is_sim(&self) -> bool {
        matches!(self, Clock::Sim(_))
    }

    /// A simulated clock fed by `topic` (`/clock` on a ROS 2 graph); the subscription lives as long as
    /// the session. The sim is authoritative: an earlier time (a new episode) is taken as-is.
    pub fn sim(graph: &crate::node::Graph, topic: &str) -> Result<Self> {
        let t = Arc::new(AtomicU64::new(0f64.to_bits()));
        let t2 = t.clone();
        let sub = graph.subscribe(topic, &crate::node::RosType::of::<ClockMsg>(), move |s| {
            if let Ok(c) = riptide_msgs::decode::<ClockMsg>(&s.payload().to_bytes()) {
                let new = c.clock.as_secs_f64();
                if new.is_finite() {
                    t2.store(new.to_bits(), Ordering::Release);
                }
            }
        })?;
        graph.keep(sub);
        Ok(Clock::Sim(t))
    }

    /// Set the simulated time directly (in-process sim).
    pub fn set(&self, t_s: f64) {
        if let Clock::Sim(t) = self {
            t.store(t_s.to_bits(), Ordering::Release);
        }
    }
}
