//! Action chunk → time-stamped trajectory messages.
//!
//! Time base (as in Chi's Diffusion Policy): action i of the horizon is due at
//! `t_obs + (i − (n_obs_steps − 1))·dt`. Actions already due before `now + exec_latency` are dropped;
//! the header stamp is when the first published point is due.

use riptide_msgs::ros::{
    Duration, Header, JointTrajectory, JointTrajectoryPoint, MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint,
    Quaternion, Time, Transform, Vector3,
};
use riptide_policies::ActionChunk;

/// The timed points of one chunk (batch element 0), before choosing a message type.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedChunk {
    /// When the first point is due, seconds.
    pub start_s: f64,
    /// (offset from start_s, action values)
    pub points: Vec<(f64, Vec<f32>)>,
    /// Actions dropped because they were already due.
    pub dropped: usize,
}

/// Select the executable actions still in the future. None when every one is already due.
pub fn time_chunk(
    chunk: &ActionChunk,
    n_obs_steps: usize,
    t_obs_s: f64,
    dt_s: f64,
    deadline_s: f64,
) -> Option<TimedChunk> {
    let d = chunk.actions.shape[2];
    let mut points = Vec::new();
    let mut dropped = 0;
    let mut start_s = None;
    for i in chunk.exec_start..chunk.exec_start + chunk.n_exec {
        let due = t_obs_s + (i as f64 - (n_obs_steps as f64 - 1.0)) * dt_s;
        if due < deadline_s {
            dropped += 1;
            continue;
        }
        let s = *start_s.get_or_insert(due);
        points.push((due - s, chunk.actions.data[i * d..(i + 1) * d].to_vec()));
    }
    start_s.map(|start_s| TimedChunk {
        start_s,
        points,
        dropped,
    })
}

impl TimedChunk {
    /// The chunk as a hosted driver takes it (positions in f64, times from `start_s`).
    pub fn driver_chunk(&self) -> riptide_drivers::Chunk {
        riptide_drivers::Chunk {
            t0_s: self.start_s,
            points: self
                .points
                .iter()
                .map(|(dt, a)| riptide_drivers::ChunkPoint {
                    time_from_start_s: *dt,
                    position: a.iter().map(|v| *v as f64).collect(),
                })
                .collect(),
        }
    }

    pub fn joint_trajectory(&self, joint_names: &[String]) -> JointTrajectory {
        JointTrajectory {
            header: Header {
                stamp: Time::from_secs_f64(self.start_s),
                frame_id: String::new(),
            },
            joint_names: joint_names.to_vec(),
            points: self
                .points
                .iter()
                .map(|(t, a)| JointTrajectoryPoint {
                    positions: a.iter().map(|v| *v as f64).collect(),
                    time_from_start: Duration::from_secs_f64(*t),
                    ..Default::default()
                })
                .collect(),
        }
    }

    /// Drone setpoints: actions are [x, y, z] or [x, y, z, yaw] (ENU, radians).
    pub fn multi_dof(&self, frame: &str) -> MultiDOFJointTrajectory {
        MultiDOFJointTrajectory {
            header: Header {
                stamp: Time::from_secs_f64(self.start_s),
                frame_id: "map".into(),
            },
            joint_names: vec![frame.to_string()],
            points: self
                .points
                .iter()
                .map(|(t, a)| {
                    let yaw = a.get(3).copied().unwrap_or(0.0) as f64;
                    MultiDOFJointTrajectoryPoint {
                        transforms: vec![Transform {
                            translation: Vector3 {
                                x: a[0] as f64,
                                y: a[1] as f64,
                                z: a[2] as f64,
                            },
                            rotation: Quaternion {
                                x: 0.0,
                                y: 0.0,
                                z: (yaw / 2.0).sin(),
                                w: (yaw / 2.0).cos(),
                            },
                        }],
                        time_from_start: Duration::from_secs_f64(*t),
                        ..Default::default()
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_policies::{ChunkMeta, HostTensor, StageTimings};

    fn chunk() -> ActionChunk {
        // horizon 6, dim 1: value = index
        let a = HostTensor::new(vec![1, 6, 1], (0..6).map(|i| i as f32).collect()).unwrap();
        ActionChunk {
            actions: a.clone(),
            actions_normalized: a,
            exec_start: 1,
            n_exec: 4,
            meta: ChunkMeta {
                kind: riptide_policies::PolicyKind::Diffusion,
                nfe: 1,
                seed: 0,
                warm_started: false,
                timings: StageTimings::default(),
            },
        }
    }

    #[test]
    fn points_are_due_from_the_observation_time() {
        // n_obs_steps 2: index 1 is "now" = t_obs.
        let c = time_chunk(&chunk(), 2, 100.0, 0.1, 0.0).unwrap();
        assert_eq!(c.dropped, 0);
        assert!((c.start_s - 100.0).abs() < 1e-9);
        let times: Vec<f64> = c.points.iter().map(|p| (p.0 * 1e6).round() / 1e6).collect();
        assert_eq!(times, vec![0.0, 0.1, 0.2, 0.3]);
        assert_eq!(c.points[0].1, vec![1.0]);
        let jt = c.joint_trajectory(&["j".into()]);
        assert_eq!(jt.header.stamp, Time { sec: 100, nanosec: 0 });
        assert_eq!(jt.points[3].positions, vec![4.0]);
    }

    #[test]
    fn late_points_are_dropped_and_all_late_is_none() {
        let c = time_chunk(&chunk(), 2, 100.0, 0.1, 100.15).unwrap();
        assert_eq!(c.dropped, 2);
        assert_eq!(c.points[0].1, vec![3.0]);
        assert!((c.start_s - 100.2).abs() < 1e-9);
        assert!(time_chunk(&chunk(), 2, 100.0, 0.1, 101.0).is_none());
    }
}
