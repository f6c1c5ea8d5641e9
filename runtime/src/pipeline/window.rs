//! Observation windows on a time grid.
//!
//! Each feature keeps a short ring buffer of time-stamped frames. A window is `n_obs_steps` frames
//! `dt` apart ending at the newest common timestamp (the oldest of the features' newest stamps); each
//! feature contributes its last frame at or before each grid time. Before a feature has history
//! that reaches back far enough, its earliest frame is repeated, as LeRobot fills its queue at start.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use riptide_policies::{HostTensor, ObservationWindow};

/// One decoded frame of a feature.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Seconds on the daemon's time base (header stamp if present, else receive time).
    pub stamp_s: f64,
    pub data: Arc<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WindowError {
    /// A feature has not been received yet.
    Missing(String),
    /// A feature's newest frame is older than its `max_age_s`.
    Stale {
        feature: String,
        age_s: f64,
        max_age_s: f64,
    },
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(n) => write!(f, "no {n} received yet"),
            Self::Stale {
                feature,
                age_s,
                max_age_s,
            } => write!(
                f,
                "{feature} is stale: newest frame {:.0} ms old (max_age_ms {:.0})",
                age_s * 1e3,
                max_age_s * 1e3
            ),
        }
    }
}

struct FeatureBuffer {
    /// Frame shape (without batch/time).
    shape: Vec<usize>,
    max_age_s: f64,
    frames: VecDeque<Frame>,
}

/// Per-feature ring buffers and the window they make.
pub struct WindowBuilder {
    n_obs_steps: usize,
    dt_s: f64,
    capacity: usize,
    buffers: BTreeMap<String, FeatureBuffer>,
}

/// A window and the time it describes.
#[derive(Debug, Clone)]
pub struct TimedWindow {
    pub window: ObservationWindow,
    /// Time of the newest grid point (the "current" observation).
    pub t_obs_s: f64,
}

impl WindowBuilder {
    /// `features`: (name, frame shape, max_age_s).
    pub fn new(n_obs_steps: usize, dt_s: f64, features: impl IntoIterator<Item = (String, Vec<usize>, f64)>) -> Self {
        let buffers = features
            .into_iter()
            .map(|(name, shape, max_age_s)| {
                (
                    name,
                    FeatureBuffer {
                        shape,
                        max_age_s,
                        frames: VecDeque::new(),
                    },
                )
            })
            .collect();
        // Enough history for the grid even when a sensor runs a few times faster than the policy.
        let capacity = 8 * n_obs_steps + 8;
        Self {
            n_obs_steps,
            dt_s,
            capacity,
            buffers,
        }
    }

    /// Add a frame; out-of-order frames (older than the newest) are dropped and reported as false.
    pub fn push(&mut self, feature: &str, frame: Frame) -> bool {
        let Some(buf) = self.buffers.get_mut(feature) else {
            return false;
        };
        if let Some(last) = buf.frames.back() {
            if frame.stamp_s < last.stamp_s {
                return false;
            }
        }
        if buf.frames.len() == self.capacity {
            buf.frames.pop_front();
        }
        buf.frames.push_back(frame);
        true
    }

    /// Newest stamp of every feature, if all have frames.
    pub fn newest_common_stamp(&self) -> Option<f64> {
        self.buffers
            .values()
            .map(|b| b.frames.back().map(|f| f.stamp_s))
            .try_fold(f64::INFINITY, |m, s| s.map(|s| m.min(s)))
    }

    /// Check freshness at `now_s` and build the window.
    pub fn build(&self, now_s: f64) -> Result<TimedWindow, WindowError> {
        for (name, b) in &self.buffers {
            let newest = b.frames.back().ok_or_else(|| WindowError::Missing(name.clone()))?;
            let age_s = now_s - newest.stamp_s;
            if age_s > b.max_age_s {
                return Err(WindowError::Stale {
                    feature: name.clone(),
                    age_s,
                    max_age_s: b.max_age_s,
                });
            }
        }
        let t_obs_s = self.newest_common_stamp().expect("all features have frames");
        let mut window = ObservationWindow::default();
        for (name, b) in &self.buffers {
            let frame_len: usize = b.shape.iter().product();
            let mut data = Vec::with_capacity(frame_len * self.n_obs_steps);
            for i in 0..self.n_obs_steps {
                let grid_t = t_obs_s - (self.n_obs_steps - 1 - i) as f64 * self.dt_s;
                // Last frame at or before the grid time (tolerating float noise), else the earliest.
                let f = b
                    .frames
                    .iter()
                    .rev()
                    .find(|f| f.stamp_s <= grid_t + 1e-9)
                    .unwrap_or(&b.frames[0]);
                data.extend_from_slice(&f.data);
            }
            let mut shape = vec![1, self.n_obs_steps];
            shape.extend(&b.shape);
            window.features.insert(name.clone(), HostTensor { shape, data });
        }
        Ok(TimedWindow { window, t_obs_s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: f64, v: f32) -> Frame {
        Frame {
            stamp_s: t,
            data: Arc::new(vec![v]),
        }
    }

    fn builder() -> WindowBuilder {
        WindowBuilder::new(
            2,
            0.1,
            [("a".to_string(), vec![1], 0.5), ("b".to_string(), vec![1], 0.5)],
        )
    }

    #[test]
    fn window_ends_at_newest_common_stamp_and_samples_the_grid() {
        let mut w = builder();
        for (i, t) in [0.0, 0.05, 0.1, 0.15, 0.2].iter().enumerate() {
            w.push("a", frame(*t, i as f32));
        }
        w.push("b", frame(0.08, 10.0));
        w.push("b", frame(0.18, 11.0));
        let tw = w.build(0.2).unwrap();
        assert!((tw.t_obs_s - 0.18).abs() < 1e-12);
        // grid: 0.08, 0.18 → a takes frames at 0.05 and 0.15
        assert_eq!(tw.window.features["a"].data, vec![1.0, 3.0]);
        assert_eq!(tw.window.features["b"].data, vec![10.0, 11.0]);
        assert_eq!(tw.window.features["a"].shape, vec![1, 2, 1]);
    }

    #[test]
    fn first_frame_is_repeated_until_history_exists() {
        let mut w = builder();
        w.push("a", frame(1.0, 5.0));
        w.push("b", frame(1.0, 6.0));
        let tw = w.build(1.0).unwrap();
        assert_eq!(tw.window.features["a"].data, vec![5.0, 5.0]);
    }

    #[test]
    fn missing_and_stale_features_block_the_window() {
        let mut w = builder();
        w.push("a", frame(1.0, 5.0));
        assert_eq!(w.build(1.0).unwrap_err(), WindowError::Missing("b".into()));
        w.push("b", frame(1.0, 6.0));
        w.push("a", frame(1.7, 5.0));
        match w.build(1.7).unwrap_err() {
            WindowError::Stale { feature, .. } => assert_eq!(feature, "b"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn out_of_order_frames_are_dropped() {
        let mut w = builder();
        assert!(w.push("a", frame(1.0, 1.0)));
        assert!(!w.push("a", frame(0.5, 2.0)));
        assert!(!w.push("nope", frame(2.0, 2.0)));
    }
}
