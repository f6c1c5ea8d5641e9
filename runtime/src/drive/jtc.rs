//! The `jtc` back-end: a ros2_control JointTrajectoryController as the device.
//!
//! The controller's topic interface (`/<controller>/joint_trajectory`, `trajectory_msgs/JointTrajectory`)
//! replaces the future part of its active trajectory with every message it receives, drops points already in
//! the past and holds at the end. So the driver sends *what its own control loop would command*: on every
//! accepted chunk (and on engagement) a copy of the driver is stepped ahead at the control rate, through the
//! executor, supervisor and safety envelope (limits, rate limits, max jump, NaN guard), and the enveloped
//! positions at the chunk's spacing become the trajectory's points, all strictly in the future
//! (`header.stamp` = now, `time_from_start` > 0), with optional velocities. When the driver stops following
//! (watchdog, disengage, e-stop) one hold trajectory at the *measured* position is sent.
//!
//! The measured position comes from `sensor_msgs/JointState` on `joint_states_topic`, read by joint name:
//! order does not matter, joints not configured are ignored, and a message that lacks a configured joint
//! leaves the position unknown (engagement is refused, `joint_states_missing_joint_total{joint}`).

use std::sync::Arc;

use anyhow::{bail, Result};
use riptide_drivers::{Command, Driver, SupervisorState};
use riptide_msgs::ros::{Duration as RosDuration, Header, JointState, JointTrajectory, JointTrajectoryPoint, Time};

use crate::node::metrics::Metrics;
use crate::node::{Graph, Publisher, RosType, Subscription, Topic};

pub(crate) fn default_joint_states_topic() -> String {
    "/joint_states".into()
}

pub(crate) fn default_hold_after_s() -> f64 {
    0.1
}

/// Most points one trajectory carries (a long chunk at a fine spacing is resampled coarser).
const MAX_POINTS: usize = 256;

/// The controller's command topic for `controller`.
pub fn command_topic(controller: &str) -> String {
    format!("/{}/joint_trajectory", controller.trim_matches('/'))
}

/// A ROS 2 name as the topic a node declares: on a ROS 2 graph by that name; in plain mode under the key the
/// DDS bridge uses for it (the name without its leading `/`).
fn ros_topic(name: &str) -> Topic {
    Topic::with_ros_name(name.trim_start_matches('/'), Some(name.to_string()))
}

/// Checks of `[backend] type = "jtc"`; errors name the key.
pub(crate) fn validate(
    controller: &str,
    joint_names: &[String],
    joint_states_topic: &str,
    point_period_s: Option<f64>,
    hold_after_s: f64,
    dim: usize,
) -> Result<()> {
    riptide_msgs::ros2::validate_topic_name(&command_topic(controller))
        .map_err(|e| anyhow::anyhow!("backend.controller = {controller:?}: {e}"))?;
    riptide_msgs::ros2::validate_topic_name(joint_states_topic)
        .map_err(|e| anyhow::anyhow!("backend.joint_states_topic: {e}"))?;
    if joint_names.len() != dim {
        bail!(
            "backend.joint_names has {} names but driver.safety has {dim} dimensions (one per controller joint)",
            joint_names.len()
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for n in joint_names {
        if n.is_empty() || !seen.insert(n) {
            bail!("backend.joint_names: {n:?} is empty or given twice");
        }
    }
    if let Some(p) = point_period_s {
        if !(p.is_finite() && p > 0.0) {
            bail!("backend.point_period_s = {p} must be a positive number of seconds");
        }
    }
    if !(hold_after_s.is_finite() && hold_after_s > 0.0) {
        bail!("backend.hold_after_s = {hold_after_s} must be a positive number of seconds");
    }
    Ok(())
}

/// What `[backend] type = "jtc"` configures.
#[derive(Debug, Clone)]
pub struct JtcSettings {
    pub controller: String,
    pub joint_names: Vec<String>,
    pub joint_states_topic: String,
    pub velocities: bool,
    pub point_period_s: Option<f64>,
    pub hold_after_s: f64,
}

/// The back-end's state on the control thread.
pub struct JtcBackend {
    settings: JtcSettings,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    /// A trajectory is due: a chunk was accepted or the driver engaged.
    pending: bool,
    /// The controller is following a trajectory riptide sent (a hold is due when the driver stops).
    following: bool,
    /// Spacing of the last accepted chunk's points.
    chunk_period_s: Option<f64>,
}

impl JtcBackend {
    /// Declare the trajectory publisher and the joint-state subscription; `on_position` receives the
    /// measured position in `joint_names` order, or None when a message lacks a configured joint.
    pub fn open(
        graph: &Graph,
        settings: JtcSettings,
        metrics: Arc<Metrics>,
        on_position: impl Fn(Option<Vec<f64>>) + Send + Sync + 'static,
    ) -> Result<(Self, Subscription)> {
        let publisher = graph.publisher(
            ros_topic(&command_topic(&settings.controller)),
            &RosType::of::<JointTrajectory>(),
        )?;
        let names = settings.joint_names.clone();
        let m = metrics.clone();
        let sub = graph.subscribe(
            ros_topic(&settings.joint_states_topic),
            &RosType::of::<JointState>(),
            move |s| match riptide_msgs::decode::<JointState>(&s.payload().to_bytes()) {
                Ok(js) => match by_name(&js, &names) {
                    Ok(p) => on_position(Some(p)),
                    Err(JointStateError::Missing(joint)) => {
                        m.inc("joint_states_missing_joint_total", &[("joint", &joint)]);
                        on_position(None);
                    }
                    Err(JointStateError::Malformed) => m.inc("rejected_total", &[("reason", "state")]),
                },
                Err(_) => m.inc("rejected_total", &[("reason", "state")]),
            },
        )?;
        tracing::info!(
            "jtc: trajectories to {} for joints {:?}, measured positions from {}",
            command_topic(&settings.controller),
            settings.joint_names,
            settings.joint_states_topic
        );
        Ok((
            Self {
                settings,
                publisher,
                metrics,
                pending: false,
                following: false,
                chunk_period_s: None,
            },
            sub,
        ))
    }

    /// A chunk was accepted: its spacing sets the points', and a new trajectory is due.
    pub fn on_chunk(&mut self, chunk: &riptide_drivers::Chunk) {
        self.chunk_period_s = chunk
            .points
            .windows(2)
            .map(|w| w[1].time_from_start_s - w[0].time_from_start_s)
            .find(|d| d.is_finite() && *d > 0.0);
        self.pending = true;
    }

    /// The driver engaged: send what it follows now.
    pub fn on_engage(&mut self) {
        self.pending = true;
    }

    /// One control step, before the driver's own: send the previewed trajectory when one is due, or a
    /// hold at `measured` once the driver stops following (watchdog, disengage, e-stop).
    pub fn step(&mut self, driver: &Driver, now_s: f64, rate_hz: f64, measured: Option<&[f64]>) {
        let active = matches!(driver.state(), SupervisorState::Engaging | SupervisorState::Engaged);
        if self.pending && active {
            self.pending = false;
            let points = preview(driver, now_s, rate_hz, self.period_s(), driver.executor().queue_end_s());
            if !points.is_empty() {
                self.send(now_s, &points);
                self.following = true;
            }
            return;
        }
        if self.following && !active {
            self.following = false;
            match measured {
                Some(p) => {
                    let t = now_s + self.settings.hold_after_s;
                    self.send(now_s, &[(t, p.to_vec())]);
                    self.metrics.inc("jtc_holds_total", &[]);
                }
                None => tracing::warn!("jtc: the driver holds but the measured position is unknown; sent no hold"),
            }
        }
    }

    fn period_s(&self) -> f64 {
        self.settings.point_period_s.or(self.chunk_period_s).unwrap_or(0.05)
    }

    fn send(&self, stamp_s: f64, points: &[(f64, Vec<f64>)]) {
        let jt = trajectory(stamp_s, &self.settings.joint_names, points, self.settings.velocities);
        match riptide_msgs::encode(&jt)
            .map_err(anyhow::Error::from)
            .and_then(|b| self.publisher.put(b))
        {
            Ok(()) => self.metrics.inc("jtc_trajectories_total", &[]),
            Err(e) => {
                self.metrics.inc("backend_errors_total", &[]);
                tracing::warn!("jtc: {e}");
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum JointStateError {
    Missing(String),
    Malformed,
}

/// The positions of `names` in `js`, by name.
fn by_name(js: &JointState, names: &[String]) -> Result<Vec<f64>, JointStateError> {
    if js.name.len() != js.position.len() {
        return Err(JointStateError::Malformed);
    }
    names
        .iter()
        .map(|n| match js.name.iter().position(|m| m == n) {
            Some(i) if js.position[i].is_finite() => Ok(js.position[i]),
            Some(_) => Err(JointStateError::Malformed),
            None => Err(JointStateError::Missing(n.clone())),
        })
        .collect()
}

/// The driver's commands from `now_s` on, stepped on a copy at `rate_hz`, taken every `period_s` until
/// `until_s` (the executor's queue end): `(time, enveloped position)`, every time after `now_s`. Stops early
/// where the copy stops following (watchdog, hold): the controller then holds at the last point.
pub fn preview(driver: &Driver, now_s: f64, rate_hz: f64, period_s: f64, until_s: Option<f64>) -> Vec<(f64, Vec<f64>)> {
    let Some(until) = until_s.filter(|u| *u > now_s) else {
        return vec![];
    };
    let dt = 1.0 / rate_hz;
    let period = period_s.max(dt).max((until - now_s) / MAX_POINTS as f64);
    let mut copy = driver.clone();
    let mut out = Vec::new();
    let mut t = now_s;
    let mut next = now_s + period;
    while next <= until + 1e-9 {
        t = (t + dt).min(next);
        let cmd = copy.step(t);
        if t + 1e-12 >= next {
            match cmd {
                Command::Position(p) => out.push((t, p)),
                Command::Hold(p) => {
                    out.push((t, p));
                    break;
                }
                _ => break,
            }
            next += period;
        }
    }
    out
}

/// The message for `points` (absolute times) stamped `stamp_s`: `time_from_start` relative to it.
pub fn trajectory(
    stamp_s: f64,
    joint_names: &[String],
    points: &[(f64, Vec<f64>)],
    velocities: bool,
) -> JointTrajectory {
    let mut msg_points = Vec::with_capacity(points.len());
    for (i, (t, p)) in points.iter().enumerate() {
        let v = if velocities {
            // Central differences inside, one-sided at the ends; zero for a single (hold) point.
            let (a, b) = match (i.checked_sub(1), points.get(i + 1)) {
                (Some(j), Some(next)) => (&points[j], next),
                (None, Some(next)) => (&points[i], next),
                (Some(j), None) => (&points[j], &points[i]),
                (None, None) => (&points[i], &points[i]),
            };
            let dt = b.0 - a.0;
            a.1.iter()
                .zip(&b.1)
                .map(|(x0, x1)| if dt > 0.0 { (x1 - x0) / dt } else { 0.0 })
                .collect()
        } else {
            vec![]
        };
        msg_points.push(JointTrajectoryPoint {
            positions: p.clone(),
            velocities: v,
            time_from_start: RosDuration::from_secs_f64(t - stamp_s),
            ..Default::default()
        });
    }
    JointTrajectory {
        header: Header {
            stamp: Time::from_secs_f64(stamp_s),
            frame_id: String::new(),
        },
        joint_names: joint_names.to_vec(),
        points: msg_points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(names: &[&str], pos: &[f64]) -> JointState {
        JointState {
            name: names.iter().map(|s| s.to_string()).collect(),
            position: pos.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn joint_states_are_read_by_name() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            by_name(&js(&["b", "x", "a"], &[2.0, 9.0, 1.0]), &names),
            Ok(vec![1.0, 2.0])
        );
        assert_eq!(
            by_name(&js(&["a", "x"], &[1.0, 9.0]), &names),
            Err(JointStateError::Missing("b".into()))
        );
        assert_eq!(
            by_name(&js(&["a", "b"], &[1.0]), &names),
            Err(JointStateError::Malformed)
        );
        assert_eq!(
            by_name(&js(&["a", "b"], &[1.0, f64::NAN]), &names),
            Err(JointStateError::Malformed)
        );
    }

    #[test]
    fn trajectories_are_relative_to_their_stamp_with_finite_difference_velocities() {
        let names = vec!["a".to_string()];
        let jt = trajectory(
            10.0,
            &names,
            &[(10.1, vec![0.0]), (10.2, vec![1.0]), (10.3, vec![3.0])],
            true,
        );
        assert_eq!(jt.header.stamp.as_secs_f64(), 10.0);
        let tfs: Vec<f64> = jt.points.iter().map(|p| p.time_from_start.as_secs_f64()).collect();
        for (got, want) in tfs.iter().zip([0.1, 0.2, 0.3]) {
            assert!((got - want).abs() < 1e-6, "{tfs:?}");
        }
        let v: Vec<f64> = jt.points.iter().map(|p| p.velocities[0]).collect();
        for (got, want) in v.iter().zip([10.0, 15.0, 20.0]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
        let hold = trajectory(5.0, &names, &[(5.1, vec![0.5])], true);
        assert_eq!(hold.points[0].velocities, vec![0.0]);
        assert!(trajectory(5.0, &names, &[(5.1, vec![0.5])], false).points[0]
            .velocities
            .is_empty());
    }
}
