//! `riptide drive`: a driver node. Chunks in over zenoh (`JointTrajectory` or `MultiDOFJointTrajectory`),
//! a control loop at the driver's own rate on a dedicated OS thread (interpolation, chunk switching,
//! safety envelope, watchdog, e-stop: `riptide-drivers`), commands out to a back-end, executed commands
//! on `<ns>/action` and the queue length on `<ns>/driver/queue` so the daemon can trigger on demand.
//!
//! Topics (namespace `riptide` by default):
//! - in: `action/chunk` (the daemon's chunks), `estop` (any payload latches the e-stop), `estop/reset`,
//!   `driver/engage`, `driver/disengage` (any payload);
//! - out: `action` (`sensor_msgs/JointState`, one per control step: the command after the envelope),
//!   `driver/queue` (`std_msgs/Float32MultiArray`, data[0] = seconds of commands still queued),
//!   `driver/status` (`std_msgs/String`, the supervisor state, on change and at 1 Hz).
//!
//! With `[ros2]` (or `--ros2`) every topic is declared on the rmw_zenoh graph (`crate::node::ros2`), and the
//! `jtc` back-end ([`jtc`]) drives a ros2_control JointTrajectoryController.

pub mod cmd;
pub mod jtc;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use riptide_drivers::{Chunk, ChunkPoint, Command, Driver, DriverConfig, DriverCounters, SupervisorState};
use riptide_msgs::ros::{
    Empty, Float32MultiArray, Header, JointState, JointTrajectory, MultiDOFJointTrajectory, StringMsg, Time,
};
use riptide_msgs::topics;
use serde::Deserialize;

use crate::node::metrics::Metrics;
use crate::node::now_s;
use crate::node::{Graph, Publisher, Ros2Config, RosType, Subscription, Topic, ZenohConfig};

/// A driver node's configuration (`driver.toml`); unknown keys are errors that name the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    /// Replaces `riptide` in every topic.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Control loop rate (e.g. 500 for an arm, 50 for a drone).
    pub rate_hz: f64,
    /// How often the queue length is reported on `driver/queue`.
    #[serde(default = "default_queue_hz")]
    pub queue_report_hz: f64,
    /// Which chunk message to expect on `action/chunk`.
    #[serde(default)]
    pub chunk_type: ChunkType,
    /// Engage by itself as soon as a chunk arrives and the device position is known. Off by default:
    /// a real robot is engaged by an operator (`driver/engage`).
    #[serde(default)]
    pub auto_engage: bool,
    /// Zenoh session; a driver connects to the daemon's default endpoint unless told otherwise.
    #[serde(default = "default_zenoh")]
    pub zenoh: ZenohConfig,
    /// Executor, safety envelope, supervisor.
    pub driver: DriverConfig,
    pub backend: BackendConfig,
    /// ROS 2 mode (rmw_zenoh): node `riptide_driver` unless `node_name` says otherwise.
    #[serde(default)]
    pub ros2: Ros2Config,
    /// Whether the file had a `[zenoh]` table (ROS 2 mode then keeps it instead of joining rmw_zenohd).
    #[serde(skip)]
    pub zenoh_explicit: bool,
}

fn default_namespace() -> String {
    "riptide".into()
}
fn default_queue_hz() -> f64 {
    20.0
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChunkType {
    /// Arms: positions = the action vector.
    #[default]
    JointTrajectory,
    /// Drones: transforms[0] translation + yaw → [x, y, z, yaw] (ENU).
    MultiDofJointTrajectory,
}

/// Where commands go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// Joint targets to a hardware node over zenoh.
    Zenoh {
        /// Topic the hardware node reads commands from.
        command_topic: String,
        /// `joint_state` (one target per control step) or `joint_trajectory` (a one-point trajectory).
        #[serde(default)]
        message: CommandMessage,
        /// `sensor_msgs/JointState` topic with the device's measured positions (needed to engage).
        state_topic: Option<String>,
        /// Joint names put in the commands (default j0, j1, …).
        #[serde(default)]
        joint_names: Vec<String>,
    },
    /// No device: commands are only published on `action` (dry runs, tests, and the in-process sim
    /// which reads `action`). Engages from `initial_position`.
    Loopback { initial_position: Vec<f64> },
    /// ros2_control: the chunk, after the safety envelope, as `trajectory_msgs/JointTrajectory` on
    /// `/<controller>/joint_trajectory` for a JointTrajectoryController; the measured position from
    /// `sensor_msgs/JointState` on `joint_states_topic`, read by joint name (see [`jtc`]).
    Jtc {
        /// The controller's name (`joint_trajectory_controller`, `arm_controller`, …).
        controller: String,
        /// The controller's joints, in the order of the action vector.
        joint_names: Vec<String>,
        /// ROS 2 name of the measured joint states.
        #[serde(default = "jtc::default_joint_states_topic")]
        joint_states_topic: String,
        /// Also send velocities (finite differences of the enveloped points).
        #[serde(default)]
        velocities: bool,
        /// Spacing of the points sent, seconds (default: the chunk's own).
        #[serde(default)]
        point_period_s: Option<f64>,
        /// How far ahead the hold trajectory's single point lies, seconds.
        #[serde(default = "jtc::default_hold_after_s")]
        hold_after_s: f64,
    },
    /// Drones: MAVLink offboard control of a PX4/ArduPilot vehicle (`[backend.mavlink]`: connection,
    /// ids, setpoint rate, and whether riptide may arm / switch to offboard itself — off by default).
    /// Commands must be `[x, y, z, yaw]` ENU; the driver engages from the vehicle's reported pose.
    Mavlink { mavlink: riptide_drivers::MavlinkConfig },
    /// The sim crate's robot as the device (`env = "arm-reach"` or `"quadrotor"`): the driver steps it
    /// at the env's control rate with its current command and publishes the env's observations and
    /// position as `riptide sim` does (wall time), so a daemon closes the loop through this driver
    /// alone. Engages from the sim's position; a finished episode starts the next seed (the driver
    /// disengages; re-engage as for a real robot, or set `auto_engage`).
    Sim {
        env: String,
        /// Episode i uses seed `seed + i`.
        #[serde(default)]
        seed: u64,
        /// Publish camera frames (costs time; only image policies need them).
        #[serde(default)]
        render: bool,
        /// Width of the `observation.environment_state` layout to publish (default: the one the shipped
        /// policy for `env` takes).
        #[serde(default)]
        env_state_width: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandMessage {
    #[default]
    JointState,
    JointTrajectory,
}

impl DriveConfig {
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg: Self =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        cfg.zenoh_explicit = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("zenoh"));
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks everything a driver needs before it starts; errors name the key.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [("rate_hz", self.rate_hz), ("queue_report_hz", self.queue_report_hz)] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{key} = {v} must be a positive number");
            }
        }
        self.driver.validate().map_err(|e| anyhow!("driver.{e}"))?;
        let dim = self.driver.safety.dim();
        if self.chunk_type == ChunkType::MultiDofJointTrajectory && !(3..=4).contains(&dim) {
            bail!("chunk_type = \"multi_dof_joint_trajectory\" gives [x, y, z(, yaw)] but driver.safety has {dim} dimensions");
        }
        match &self.backend {
            BackendConfig::Zenoh { joint_names, .. } if !joint_names.is_empty() && joint_names.len() != dim => {
                bail!(
                    "backend.joint_names has {} names but driver.safety has {dim} dimensions",
                    joint_names.len()
                )
            }
            BackendConfig::Loopback { initial_position } if initial_position.len() != dim => bail!(
                "backend.initial_position has {} values but driver.safety has {dim} dimensions",
                initial_position.len()
            ),
            BackendConfig::Sim {
                env, env_state_width, ..
            } => {
                let e = sim_env(env, *env_state_width)?;
                let want = e.spec().action_dim;
                if want != dim {
                    bail!("backend.env = {env:?} takes {want}-D commands but driver.safety has {dim} dimensions");
                }
                Ok(())
            }
            BackendConfig::Jtc {
                controller,
                joint_names,
                joint_states_topic,
                point_period_s,
                hold_after_s,
                ..
            } => jtc::validate(
                controller,
                joint_names,
                joint_states_topic,
                *point_period_s,
                *hold_after_s,
                dim,
            ),
            BackendConfig::Mavlink { mavlink } => {
                if dim != 4 {
                    bail!("backend.type = \"mavlink\" takes [x, y, z, yaw] setpoints but driver.safety has {dim} dimensions");
                }
                mavlink.validate().map_err(|e| anyhow!("backend.mavlink.{e}"))
            }
            _ => Ok(()),
        }
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.namespace.trim_end_matches('/'))
    }
}

/// Turn a chunk message into the executor's chunk; errors say what is wrong.
pub fn chunk_from_joint_trajectory(jt: &JointTrajectory, dim: usize) -> Result<Chunk, String> {
    if jt.points.is_empty() {
        return Err("no points".into());
    }
    let mut points = Vec::with_capacity(jt.points.len());
    for (i, p) in jt.points.iter().enumerate() {
        if p.positions.len() != dim {
            return Err(format!(
                "point {i} has {} positions, the driver has {dim}",
                p.positions.len()
            ));
        }
        points.push(ChunkPoint {
            time_from_start_s: p.time_from_start.as_secs_f64(),
            position: p.positions.clone(),
        });
    }
    Ok(Chunk {
        t0_s: jt.header.stamp.as_secs_f64(),
        points,
    })
}

/// Drone chunks: `[x, y, z]` or `[x, y, z, yaw]` from the first transform of each point (ENU).
pub fn chunk_from_multi_dof(m: &MultiDOFJointTrajectory, dim: usize) -> Result<Chunk, String> {
    if m.points.is_empty() {
        return Err("no points".into());
    }
    let mut points = Vec::with_capacity(m.points.len());
    for (i, p) in m.points.iter().enumerate() {
        let Some(tf) = p.transforms.first() else {
            return Err(format!("point {i} has no transform"));
        };
        let (t, q) = (&tf.translation, &tf.rotation);
        let yaw = (2.0 * (q.w * q.z + q.x * q.y)).atan2(1.0 - 2.0 * (q.y * q.y + q.z * q.z));
        let mut position = vec![t.x, t.y, t.z, yaw];
        position.truncate(dim);
        points.push(ChunkPoint {
            time_from_start_s: p.time_from_start.as_secs_f64(),
            position,
        });
    }
    Ok(Chunk {
        t0_s: m.header.stamp.as_secs_f64(),
        points,
    })
}

enum Event {
    Chunk(Chunk),
    EStop,
    EStopReset,
    Engage,
    Disengage,
    DevicePosition(Vec<f64>),
    /// The device's last state message lacked a joint: engaging must wait for a complete one.
    DevicePositionUnknown,
}

/// The `sim` back-end: an env stepped at its own control rate by the driver loop, publishing what
/// `riptide sim` publishes (wall-time stamps on the env's grid).
struct SimDevice {
    env: Box<dyn riptide_sim::Env>,
    out: crate::simnode::Outputs,
    name: String,
    seed: u64,
    episode: usize,
    render: bool,
    dt_s: f64,
    /// When the next env step is due (wall time).
    next_s: f64,
    /// Since the last reset the driver's hold refers to the previous episode's pose: until it engages
    /// again the robot holds where it is.
    awaiting_engage: bool,
}

/// The sim back-end's env, publishing `env_state_width` (default: the shipped policy's layout); errors
/// name the config key at fault.
fn sim_env(name: &str, env_state_width: Option<usize>) -> Result<Box<dyn riptide_sim::Env>> {
    let width = env_state_width.or_else(|| crate::checkpoints::default_env_state_width(name));
    riptide_sim::make_env_for(name, width).map_err(|e| match e {
        riptide_sim::SimError::UnknownEnv { .. } => anyhow!("backend.env: {e}"),
        riptide_sim::SimError::EnvStateWidth { .. } => anyhow!("backend.env_state_width: {e}"),
    })
}

impl SimDevice {
    fn start(
        name: &str,
        env_state_width: Option<usize>,
        seed: u64,
        render: bool,
        graph: &Graph,
        ns: &str,
        now: f64,
    ) -> Result<Self> {
        let env = sim_env(name, env_state_width)?;
        let dt_s = 1.0 / env.spec().fps;
        let mut dev = Self {
            env,
            out: crate::simnode::Outputs::declare(graph, ns)?,
            name: name.to_string(),
            seed,
            episode: 0,
            render,
            dt_s,
            next_s: now,
            awaiting_engage: false,
        };
        dev.begin_episode(now)?;
        Ok(dev)
    }

    fn episode_seed(&self) -> u64 {
        self.seed + self.episode as u64
    }

    fn begin_episode(&mut self, now: f64) -> Result<()> {
        let seed = self.episode_seed();
        let mut obs = self.env.reset(seed);
        if !self.render {
            obs.image = None;
        }
        let position = self.env.position();
        self.out.announce(&crate::simnode::EpisodeEvent::Start {
            episode: self.episode,
            seed,
            env: self.name.clone(),
            position: position.clone(),
            fps: self.env.spec().fps,
        })?;
        self.out.publish(now, &obs, &position, false)?;
        self.next_s = now + self.dt_s;
        Ok(())
    }

    /// Step the env if a step is due, with `cmd` while the driver is `following` (else the robot holds
    /// its own position). Returns whether a new episode began.
    fn tick(&mut self, now: f64, cmd: Option<&[f64]>, following: bool) -> Result<bool> {
        if following {
            self.awaiting_engage = false;
        }
        if now < self.next_s {
            return Ok(false);
        }
        let t = self.next_s;
        // Fell far behind (a stalled process): resume on the grid from now rather than catching up.
        self.next_s = if now - t > 5.0 * self.dt_s {
            now + self.dt_s
        } else {
            t + self.dt_s
        };
        let action = match cmd {
            Some(c) if !self.awaiting_engage => c.to_vec(),
            _ => self.env.position(),
        };
        let mut obs = if self.render {
            self.env.step(&action)
        } else {
            self.env.step_no_render(&action)
        };
        if !self.render {
            obs.image = None;
        }
        self.out.publish(t, &obs, &self.env.position(), false)?;
        if !self.env.done() {
            return Ok(false);
        }
        self.out.announce(&crate::simnode::EpisodeEvent::End {
            episode: self.episode,
            seed: self.episode_seed(),
            success: self.env.success(),
            score: self.env.score(),
            steps: self.env.steps(),
        })?;
        tracing::info!(
            "sim episode {} (seed {}): {}",
            self.episode,
            self.episode_seed(),
            if self.env.success() { "success" } else { "failure" }
        );
        self.episode += 1;
        self.awaiting_engage = true;
        self.begin_episode(now)?;
        Ok(true)
    }
}

/// A running driver node; `stop()` ends the control loop and closes the session.
pub struct DriveNode {
    stop: crate::node::Shutdown,
    /// The driver's own counters (steps, envelope violations, watchdog, e-stops), refreshed at 1 Hz and at stop.
    pub counters: Arc<std::sync::Mutex<DriverCounters>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    graph: Graph,
    pub metrics: Arc<Metrics>,
}

impl DriveNode {
    pub async fn stop(mut self) -> Result<Arc<Metrics>> {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await?
                .map_err(|_| anyhow!("the control loop panicked"))??;
        }
        self.graph
            .session()
            .close()
            .await
            .map_err(|e| anyhow!("closing the zenoh session: {e}"))?;
        Ok(self.metrics)
    }
}

fn decode_or_count<T: serde::de::DeserializeOwned>(bytes: &[u8], metrics: &Metrics, what: &str) -> Option<T> {
    match riptide_msgs::decode::<T>(bytes) {
        Ok(v) => Some(v),
        Err(_) => {
            metrics.inc("rejected_total", &[("reason", what)]);
            None
        }
    }
}

/// Start a driver node (subscribers, publishers, control thread).
pub async fn start(cfg: DriveConfig) -> Result<DriveNode> {
    cfg.validate()?;
    let dim = cfg.driver.safety.dim();
    let driver = Driver::new(cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
    let ros2 = cfg.ros2.settings("driver")?;
    let metrics = Arc::new(Metrics::default());
    let graph = Graph::open(&cfg.zenoh, ros2.as_ref(), metrics.clone()).await?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut subs = subscribe_control(&graph, &cfg, dim, &tx, &metrics)?;
    let backend = Backend::open(&graph, &cfg, dim, &tx, &metrics, &mut subs)?;
    let outputs = Outputs {
        action: graph.publisher(cfg.topic(topics::ACTION), &RosType::of::<JointState>())?,
        queue: graph.publisher(cfg.topic(topics::DRIVER_QUEUE), &RosType::of::<Float32MultiArray>())?,
        status: graph.publisher(cfg.topic(topics::DRIVER_STATUS), &RosType::of::<StringMsg>())?,
    };
    let token = graph
        .liveliness()
        .declare_token(cfg.topic(topics::ALIVE_DRIVER))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let stop = crate::node::Shutdown::new();
    let counters = Arc::new(std::sync::Mutex::new(driver.counters()));
    let mut control = ControlLoop {
        driver,
        backend,
        outputs,
        metrics: metrics.clone(),
        counters: counters.clone(),
        auto_engage: cfg.auto_engage,
        queue_every: (cfg.rate_hz / cfg.queue_report_hz).round().max(1.0) as u64,
        status_every: cfg.rate_hz.round().max(1.0) as u64,
        tick: 0,
        last_state: None,
        buf: Vec::new(),
        rate_hz: cfg.rate_hz,
    };
    let (stop2, period) = (stop.clone(), Duration::from_secs_f64(1.0 / cfg.rate_hz));
    let thread = std::thread::Builder::new()
        .name("riptide-drive".into())
        .spawn(move || -> Result<()> {
            // The subscriptions and the liveliness token live as long as the loop.
            let _keep = (subs, token);
            control.run(&rx, &stop2, period)
        })?;
    Ok(DriveNode {
        stop,
        counters,
        thread: Some(thread),
        graph,
        metrics,
    })
}

/// Chunks on `action/chunk`, and the e-stop and engage topics (any payload).
fn subscribe_control(
    graph: &Graph,
    cfg: &DriveConfig,
    dim: usize,
    tx: &mpsc::Sender<Event>,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Subscription>> {
    let mut subs = Vec::new();
    let (chunk_tx, m) = (tx.clone(), metrics.clone());
    let chunk_type = cfg.chunk_type;
    let chunk_ros_type = match chunk_type {
        ChunkType::JointTrajectory => RosType::of::<JointTrajectory>(),
        ChunkType::MultiDofJointTrajectory => RosType::of::<MultiDOFJointTrajectory>(),
    };
    subs.push(
        graph.subscribe(cfg.topic(topics::ACTION_CHUNK), &chunk_ros_type, move |s| {
            let bytes = s.payload().to_bytes();
            let chunk = match chunk_type {
                ChunkType::JointTrajectory => decode_or_count::<JointTrajectory>(&bytes, &m, "malformed")
                    .map(|jt| chunk_from_joint_trajectory(&jt, dim)),
                ChunkType::MultiDofJointTrajectory => {
                    decode_or_count::<MultiDOFJointTrajectory>(&bytes, &m, "malformed")
                        .map(|jt| chunk_from_multi_dof(&jt, dim))
                }
            };
            match chunk {
                Some(Ok(c)) => {
                    let _ = chunk_tx.send(Event::Chunk(c));
                }
                Some(Err(why)) => {
                    m.inc("rejected_total", &[("reason", "shape")]);
                    tracing::warn!("rejected a chunk: {why}");
                }
                None => {}
            }
        })?,
    );
    for (rest, make) in [
        (topics::ESTOP, (|| Event::EStop) as fn() -> Event),
        (topics::ESTOP_RESET, || Event::EStopReset),
        (topics::DRIVER_ENGAGE, || Event::Engage),
        (topics::DRIVER_DISENGAGE, || Event::Disengage),
    ] {
        let tx = tx.clone();
        // Any payload in plain mode; `std_msgs/msg/Empty` on a ROS 2 graph.
        subs.push(graph.subscribe(cfg.topic(rest), &RosType::of::<Empty>(), move |_| {
            let _ = tx.send(make());
        })?);
    }
    Ok(subs)
}

/// Where the commands go, and where the device's position comes from.
struct Backend {
    device_position: Option<Vec<f64>>,
    command_pub: Option<Publisher>,
    joint_names: Vec<String>,
    command_message: CommandMessage,
    mavlink: Option<riptide_drivers::MavlinkLink>,
    sim: Option<SimDevice>,
    jtc: Option<jtc::JtcBackend>,
    /// Loopback: the device is wherever it was commanded.
    loopback: bool,
}

impl Backend {
    fn open(
        graph: &Graph,
        cfg: &DriveConfig,
        dim: usize,
        tx: &mpsc::Sender<Event>,
        metrics: &Arc<Metrics>,
        subs: &mut Vec<Subscription>,
    ) -> Result<Self> {
        let mut b = Backend {
            device_position: None,
            command_pub: None,
            joint_names: (0..dim).map(|i| format!("j{i}")).collect(),
            command_message: CommandMessage::JointState,
            mavlink: None,
            sim: None,
            jtc: None,
            loopback: false,
        };
        match &cfg.backend {
            BackendConfig::Zenoh {
                command_topic,
                message,
                state_topic,
                joint_names,
            } => {
                if !joint_names.is_empty() {
                    b.joint_names = joint_names.clone();
                }
                b.command_message = *message;
                let ty = match message {
                    CommandMessage::JointState => RosType::of::<JointState>(),
                    CommandMessage::JointTrajectory => RosType::of::<JointTrajectory>(),
                };
                b.command_pub = Some(
                    graph
                        .publisher(command_topic.clone(), &ty)
                        .map_err(|e| anyhow!("backend.command_topic: {e}"))?,
                );
                if let Some(topic) = state_topic {
                    subs.push(subscribe_state(graph, topic, dim, tx, metrics)?);
                }
            }
            BackendConfig::Loopback { initial_position } => {
                b.device_position = Some(initial_position.clone());
                b.loopback = true;
            }
            BackendConfig::Sim {
                env,
                seed,
                render,
                env_state_width,
            } => {
                let dev = SimDevice::start(env, *env_state_width, *seed, *render, graph, &cfg.namespace, now_s())?;
                b.device_position = Some(dev.env.position());
                b.sim = Some(dev);
            }
            BackendConfig::Jtc {
                controller,
                joint_names,
                joint_states_topic,
                velocities,
                point_period_s,
                hold_after_s,
            } => {
                b.joint_names = joint_names.clone();
                let device = tx.clone();
                let (backend, sub) = jtc::JtcBackend::open(
                    graph,
                    jtc::JtcSettings {
                        controller: controller.clone(),
                        joint_names: joint_names.clone(),
                        joint_states_topic: joint_states_topic.clone(),
                        velocities: *velocities,
                        point_period_s: *point_period_s,
                        hold_after_s: *hold_after_s,
                    },
                    metrics.clone(),
                    move |p| {
                        let _ = device.send(p.map_or(Event::DevicePositionUnknown, Event::DevicePosition));
                    },
                )?;
                subs.push(sub);
                b.jtc = Some(backend);
            }
            BackendConfig::Mavlink { mavlink } => {
                b.mavlink = Some(
                    riptide_drivers::MavlinkLink::connect(mavlink.clone())
                        .map_err(|e| anyhow!("backend.mavlink: {e}"))?,
                );
            }
        }
        Ok(b)
    }
}

/// The device's measured joint positions (`backend.state_topic`), where the driver engages from.
fn subscribe_state(
    graph: &Graph,
    topic: &str,
    dim: usize,
    tx: &mpsc::Sender<Event>,
    metrics: &Arc<Metrics>,
) -> Result<Subscription> {
    let (tx, m) = (tx.clone(), metrics.clone());
    graph.subscribe(Topic::from(topic), &RosType::of::<JointState>(), move |s| {
        if let Some(js) = decode_or_count::<JointState>(&s.payload().to_bytes(), &m, "state") {
            if js.position.len() == dim && js.position.iter().all(|v| v.is_finite()) {
                let _ = tx.send(Event::DevicePosition(js.position));
            } else {
                m.inc("rejected_total", &[("reason", "state")]);
            }
        }
    })
}

/// The node's own publishers.
struct Outputs {
    action: Publisher,
    queue: Publisher,
    status: Publisher,
}

/// The control loop's state, owned by its thread.
struct ControlLoop {
    driver: Driver,
    backend: Backend,
    outputs: Outputs,
    metrics: Arc<Metrics>,
    counters: Arc<std::sync::Mutex<DriverCounters>>,
    auto_engage: bool,
    queue_every: u64,
    status_every: u64,
    tick: u64,
    last_state: Option<SupervisorState>,
    buf: Vec<u8>,
    rate_hz: f64,
}

impl ControlLoop {
    /// Step at `period` until `stop`; late steps are counted, never caught up with a burst.
    fn run(&mut self, rx: &mpsc::Receiver<Event>, stop: &crate::node::Shutdown, period: Duration) -> Result<()> {
        let mut next = Instant::now();
        while !stop.is_triggered() {
            self.step(rx, now_s())?;
            next += period;
            let now_i = Instant::now();
            if next > now_i {
                std::thread::sleep(next - now_i);
            } else {
                self.metrics.inc("late_steps_total", &[]);
                next = now_i;
            }
        }
        if let Some(link) = self.backend.mavlink.take() {
            let mc = link.shutdown();
            tracing::info!(
                "mavlink: {} setpoints sent, {} not executed",
                mc.setpoints_sent,
                mc.setpoints_not_executed
            );
        }
        let c = self.driver.counters();
        *self.counters.lock().expect("counters lock") = c;
        tracing::info!("driver stopped after {} steps: {c:?}", c.steps);
        Ok(())
    }

    fn step(&mut self, rx: &mpsc::Receiver<Event>, now: f64) -> Result<()> {
        if let Some(link) = &self.backend.mavlink {
            // The vehicle's pose is where the driver engages from.
            if let Some(p) = link.vehicle_state().pose_enu() {
                self.backend.device_position = Some(p.to_vec());
            }
        }
        while let Ok(ev) = rx.try_recv() {
            self.on_event(ev, now);
        }
        if let Some(jtc) = &mut self.backend.jtc {
            let measured = self.backend.device_position.as_deref();
            jtc.step(&self.driver, now, self.rate_hz, measured);
        }
        let cmd = self.driver.step(now);
        self.drive_backends(&cmd, now);
        if let Some(p) = cmd.position() {
            self.publish_command(p, &cmd, now)?;
        }
        self.report(now)?;
        self.tick += 1;
        Ok(())
    }

    fn engage(&mut self, now: f64) {
        match &self.backend.device_position {
            Some(p) => match self.driver.engage(p, now) {
                Ok(()) => {
                    if let Some(jtc) = &mut self.backend.jtc {
                        jtc.on_engage();
                    }
                }
                Err(e) => {
                    self.metrics.inc("engage_refused_total", &[("reason", "driver")]);
                    tracing::warn!("cannot engage: {e}");
                }
            },
            None => {
                self.metrics
                    .inc("engage_refused_total", &[("reason", "position_unknown")]);
                tracing::warn!(
                    "cannot engage: the device's position is not known (no complete joint state received yet)"
                )
            }
        }
    }

    fn on_event(&mut self, ev: Event, now: f64) {
        match ev {
            Event::Chunk(c) => {
                self.metrics.inc("chunks_total", &[]);
                match self.driver.on_chunk(&c, now) {
                    Ok(_) => {
                        if let Some(jtc) = &mut self.backend.jtc {
                            jtc.on_chunk(&c);
                        }
                    }
                    Err(e) => {
                        self.metrics.inc("chunks_rejected_total", &[]);
                        tracing::warn!("chunk rejected: {e}");
                    }
                }
                if self.auto_engage
                    && self.driver.state() == SupervisorState::Disengaged
                    && self.backend.device_position.is_some()
                {
                    self.engage(now);
                }
            }
            Event::EStop => {
                self.metrics.inc("estops_total", &[]);
                self.driver.estop();
                tracing::warn!("E-STOP latched (reset on estop/reset)");
            }
            Event::EStopReset => self.driver.estop_reset(),
            Event::Engage => self.engage(now),
            Event::Disengage => self.driver.disengage(),
            Event::DevicePosition(p) => self.backend.device_position = Some(p),
            Event::DevicePositionUnknown => self.backend.device_position = None,
        }
    }

    /// The sim and MAVLink back-ends take the command directly.
    fn drive_backends(&mut self, cmd: &Command, now: f64) {
        if let Some(sim) = &mut self.backend.sim {
            let following = matches!(
                self.driver.state(),
                SupervisorState::Engaging | SupervisorState::Engaged
            );
            match sim.tick(now, cmd.position(), following) {
                Ok(new_episode) => {
                    self.backend.device_position = Some(sim.env.position());
                    if new_episode {
                        // The robot was reset elsewhere: engage again from where it is now.
                        self.driver.disengage();
                    }
                }
                Err(e) => {
                    self.metrics.inc("backend_errors_total", &[]);
                    tracing::warn!("sim: {e}");
                }
            }
        }
        if let Some(link) = &self.backend.mavlink {
            match link.apply(cmd) {
                Ok(riptide_drivers::VehicleGate::Executing) => {}
                Ok(gate) => self
                    .metrics
                    .inc("vehicle_not_executing_total", &[("gate", &format!("{gate:?}"))]),
                Err(e) => {
                    self.metrics.inc("backend_errors_total", &[]);
                    tracing::debug!("mavlink: {e}");
                }
            }
        }
    }

    /// The executed command on `action`, and to the zenoh back-end's command topic.
    fn publish_command(&mut self, p: &[f64], cmd: &Command, now: f64) -> Result<()> {
        let b = &self.backend;
        let js = JointState {
            header: Header {
                stamp: Time::from_secs_f64(now),
                frame_id: String::new(),
            },
            name: b.joint_names.clone(),
            position: p.to_vec(),
            ..Default::default()
        };
        self.buf.clear();
        riptide_msgs::encode_into(&js, &mut self.buf)?;
        let _ = self.outputs.action.put(self.buf.clone());
        if let Some(cp) = &b.command_pub {
            let payload = match b.command_message {
                CommandMessage::JointState => self.buf.clone(),
                CommandMessage::JointTrajectory => riptide_msgs::encode(&JointTrajectory {
                    header: js.header.clone(),
                    joint_names: b.joint_names.clone(),
                    points: vec![riptide_msgs::ros::JointTrajectoryPoint {
                        positions: p.to_vec(),
                        ..Default::default()
                    }],
                })?,
            };
            let _ = cp.put(payload);
        }
        if b.loopback {
            self.backend.device_position = Some(p.to_vec());
        }
        let kind = match cmd {
            Command::Position(_) => "position",
            Command::Hold(_) => "hold",
            Command::Land { .. } => "land",
            Command::Idle => "idle",
        };
        self.metrics.inc("commands_total", &[("kind", kind)]);
        Ok(())
    }

    /// The queue length (for on-demand triggering) and the supervisor state (on change and at 1 Hz).
    fn report(&mut self, now: f64) -> Result<()> {
        if self.tick.is_multiple_of(self.queue_every) {
            let q = Float32MultiArray {
                data: vec![self.driver.queued_s(now) as f32],
                ..Default::default()
            };
            let _ = self.outputs.queue.put(riptide_msgs::encode(&q)?);
            self.metrics
                .set("driver_queued_seconds", &[], self.driver.queued_s(now));
        }
        let state = self.driver.state();
        if self.last_state != Some(state) || self.tick.is_multiple_of(self.status_every) {
            if self.last_state != Some(state) {
                tracing::info!("driver: {state:?}");
            }
            self.last_state = Some(state);
            *self.counters.lock().expect("counters lock") = self.driver.counters();
            let s = StringMsg {
                data: format!("{state:?}"),
            };
            let _ = self.outputs.status.put(riptide_msgs::encode(&s)?);
        }
        Ok(())
    }
}

fn default_zenoh() -> ZenohConfig {
    crate::node::network::node_zenoh(vec![])
}
