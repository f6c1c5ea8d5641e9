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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use riptide_drivers::{Chunk, ChunkPoint, Command, Driver, DriverConfig, DriverCounters, SupervisorState};
use riptide_msgs::ros::{
    Float32MultiArray, Header, JointState, JointTrajectory, MultiDOFJointTrajectory, StringMsg, Time,
};
use serde::Deserialize;
use zenoh::Wait;

use crate::config::{ZenohConfig, ZenohMode};
use crate::daemon::now_s;
use crate::metrics::Metrics;

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
    #[serde(default = "node_zenoh")]
    pub zenoh: ZenohConfig,
    /// Executor, safety envelope, supervisor.
    pub driver: DriverConfig,
    pub backend: BackendConfig,
}

fn default_namespace() -> String {
    "riptide".into()
}
fn default_queue_hz() -> f64 {
    20.0
}

/// Zenoh defaults for nodes other than the daemon: connect to the daemon, listen nowhere.
pub fn node_zenoh() -> ZenohConfig {
    ZenohConfig {
        mode: ZenohMode::Peer,
        listen: vec![],
        connect: vec![crate::config::DEFAULT_ENDPOINT.into()],
        ..ZenohConfig::default()
    }
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
        let cfg: Self =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
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
    let width = env_state_width.or_else(|| crate::demo::default_env_state_width(name));
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
        session: &zenoh::Session,
        ns: &str,
        now: f64,
    ) -> Result<Self> {
        let env = sim_env(name, env_state_width)?;
        let dt_s = 1.0 / env.spec().fps;
        let mut dev = Self {
            env,
            out: crate::simnode::Outputs::declare(session, ns)?,
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
    stop: Arc<AtomicBool>,
    /// The driver's own counters (steps, envelope violations, watchdog, e-stops), refreshed at 1 Hz and at stop.
    pub counters: Arc<std::sync::Mutex<DriverCounters>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    session: zenoh::Session,
    pub metrics: Arc<Metrics>,
}

impl DriveNode {
    pub async fn stop(mut self) -> Result<Arc<Metrics>> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await?
                .map_err(|_| anyhow!("the control loop panicked"))??;
        }
        self.session
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
            metrics.inc("rejected_total", Some(("reason", what)));
            None
        }
    }
}

/// Start a driver node (subscribers, publishers, control thread).
pub async fn start(cfg: DriveConfig) -> Result<DriveNode> {
    cfg.validate()?;
    let dim = cfg.driver.safety.dim();
    let mut driver = Driver::new(cfg.driver.clone()).map_err(|e| anyhow!("driver.{e}"))?;
    let zcfg = crate::daemon::zenoh_config_from(&cfg.zenoh)?;
    let session = zenoh::open(zcfg)
        .await
        .map_err(|e| anyhow!("cannot open the zenoh session: {e}"))?;
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = mpsc::channel::<Event>();

    let mut subs = Vec::new();
    {
        let (tx, m) = (tx.clone(), metrics.clone());
        let chunk_type = cfg.chunk_type;
        subs.push(
            session
                .declare_subscriber(cfg.topic("action/chunk"))
                .callback(move |s| {
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
                            let _ = tx.send(Event::Chunk(c));
                        }
                        Some(Err(why)) => {
                            m.inc("rejected_total", Some(("reason", "shape")));
                            tracing::warn!("rejected a chunk: {why}");
                        }
                        None => {}
                    }
                })
                .await
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    for (rest, make) in [
        ("estop", (|| Event::EStop) as fn() -> Event),
        ("estop/reset", || Event::EStopReset),
        ("driver/engage", || Event::Engage),
        ("driver/disengage", || Event::Disengage),
    ] {
        let tx = tx.clone();
        subs.push(
            session
                .declare_subscriber(cfg.topic(rest))
                .callback(move |_| {
                    let _ = tx.send(make());
                })
                .await
                .map_err(|e| anyhow!("{e}"))?,
        );
    }
    let mut device_position = None;
    let mut command_pub = None;
    let mut joint_names: Vec<String> = (0..dim).map(|i| format!("j{i}")).collect();
    let mut command_message = CommandMessage::JointState;
    let mut mavlink_link: Option<riptide_drivers::MavlinkLink> = None;
    let mut sim_device: Option<SimDevice> = None;
    match &cfg.backend {
        BackendConfig::Zenoh {
            command_topic,
            message,
            state_topic,
            joint_names: names,
        } => {
            if !names.is_empty() {
                joint_names = names.clone();
            }
            command_message = *message;
            command_pub = Some(
                session
                    .declare_publisher(command_topic.clone())
                    .await
                    .map_err(|e| anyhow!("backend.command_topic: {e}"))?,
            );
            if let Some(topic) = state_topic {
                let (tx, m) = (tx.clone(), metrics.clone());
                subs.push(
                    session
                        .declare_subscriber(topic.clone())
                        .callback(move |s| {
                            if let Some(js) = decode_or_count::<JointState>(&s.payload().to_bytes(), &m, "state") {
                                if js.position.len() == dim && js.position.iter().all(|v| v.is_finite()) {
                                    let _ = tx.send(Event::DevicePosition(js.position));
                                } else {
                                    m.inc("rejected_total", Some(("reason", "state")));
                                }
                            }
                        })
                        .await
                        .map_err(|e| anyhow!("{e}"))?,
                );
            }
        }
        BackendConfig::Loopback { initial_position } => device_position = Some(initial_position.clone()),
        BackendConfig::Sim {
            env,
            seed,
            render,
            env_state_width,
        } => {
            let dev = SimDevice::start(env, *env_state_width, *seed, *render, &session, &cfg.namespace, now_s())?;
            device_position = Some(dev.env.position());
            sim_device = Some(dev);
        }
        BackendConfig::Mavlink { mavlink } => {
            mavlink_link = Some(
                riptide_drivers::MavlinkLink::connect(mavlink.clone()).map_err(|e| anyhow!("backend.mavlink: {e}"))?,
            );
        }
    }
    let action_pub = session
        .declare_publisher(cfg.topic("action"))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let queue_pub = session
        .declare_publisher(cfg.topic("driver/queue"))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let status_pub = session
        .declare_publisher(cfg.topic("driver/status"))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let _token = session
        .liveliness()
        .declare_token(cfg.topic("alive/driver"))
        .await
        .map_err(|e| anyhow!("{e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(std::sync::Mutex::new(driver.counters()));
    let (stop2, m, counters2) = (stop.clone(), metrics.clone(), counters.clone());
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz);
    let queue_every = (cfg.rate_hz / cfg.queue_report_hz).round().max(1.0) as u64;
    let status_every = cfg.rate_hz.round().max(1.0) as u64;
    let auto_engage = cfg.auto_engage;
    let thread = std::thread::Builder::new()
        .name("riptide-drive".into())
        .spawn(move || -> Result<()> {
            let _subs = subs;
            let _token = _token;
            let mut next = Instant::now();
            let mut tick: u64 = 0;
            let mut last_state = None;
            let mut buf = Vec::new();
            while !stop2.load(Ordering::Acquire) {
                let now = now_s();
                if let Some(link) = &mavlink_link {
                    // The vehicle's pose is where the driver engages from.
                    if let Some(p) = link.vehicle_state().pose_enu() {
                        device_position = Some(p.to_vec());
                    }
                }
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        Event::Chunk(c) => {
                            m.inc("chunks_total", None);
                            if let Err(e) = driver.on_chunk(&c, now) {
                                m.inc("chunks_rejected_total", None);
                                tracing::warn!("chunk rejected: {e}");
                            }
                            if auto_engage && driver.state() == SupervisorState::Disengaged {
                                if let Some(p) = &device_position {
                                    if let Err(e) = driver.engage(p, now) {
                                        tracing::warn!("cannot engage: {e}");
                                    }
                                }
                            }
                        }
                        Event::EStop => {
                            m.inc("estops_total", None);
                            driver.estop();
                            tracing::warn!("E-STOP latched (reset on estop/reset)");
                        }
                        Event::EStopReset => driver.estop_reset(),
                        Event::Engage => match &device_position {
                            Some(p) => {
                                if let Err(e) = driver.engage(p, now) {
                                    tracing::warn!("cannot engage: {e}");
                                }
                            }
                            None => tracing::warn!("cannot engage: the device's position is not known yet"),
                        },
                        Event::Disengage => driver.disengage(),
                        Event::DevicePosition(p) => device_position = Some(p),
                    }
                }
                let cmd = driver.step(now);
                if let Some(sim) = &mut sim_device {
                    let following = matches!(driver.state(), SupervisorState::Engaging | SupervisorState::Engaged);
                    match sim.tick(now, cmd.position(), following) {
                        Ok(new_episode) => {
                            device_position = Some(sim.env.position());
                            if new_episode {
                                // The robot was reset elsewhere: engage again from where it is now.
                                driver.disengage();
                            }
                        }
                        Err(e) => {
                            m.inc("backend_errors_total", None);
                            tracing::warn!("sim: {e}");
                        }
                    }
                }
                if let Some(link) = &mavlink_link {
                    match link.apply(&cmd) {
                        Ok(riptide_drivers::VehicleGate::Executing) => {}
                        Ok(gate) => m.inc("vehicle_not_executing_total", Some(("gate", &format!("{gate:?}")))),
                        Err(e) => {
                            m.inc("backend_errors_total", None);
                            tracing::debug!("mavlink: {e}");
                        }
                    }
                }
                if let Some(p) = cmd.position() {
                    let stamp = Time::from_secs_f64(now);
                    let js = JointState {
                        header: Header {
                            stamp,
                            frame_id: String::new(),
                        },
                        name: joint_names.clone(),
                        position: p.to_vec(),
                        ..Default::default()
                    };
                    buf.clear();
                    riptide_msgs::encode_into(&js, &mut buf)?;
                    let _ = action_pub.put(buf.clone()).wait();
                    if let Some(cp) = &command_pub {
                        let payload = match command_message {
                            CommandMessage::JointState => buf.clone(),
                            CommandMessage::JointTrajectory => riptide_msgs::encode(&JointTrajectory {
                                header: js.header.clone(),
                                joint_names: joint_names.clone(),
                                points: vec![riptide_msgs::ros::JointTrajectoryPoint {
                                    positions: p.to_vec(),
                                    ..Default::default()
                                }],
                            })?,
                        };
                        let _ = cp.put(payload).wait();
                    }
                    if let BackendConfig::Loopback { .. } = cfg.backend {
                        device_position = Some(p.to_vec());
                    }
                    m.inc(
                        "commands_total",
                        Some((
                            "kind",
                            match cmd {
                                Command::Position(_) => "position",
                                Command::Hold(_) => "hold",
                                Command::Land { .. } => "land",
                                Command::Idle => "idle",
                            },
                        )),
                    );
                }
                if tick % queue_every == 0 {
                    let q = Float32MultiArray {
                        data: vec![driver.queued_s(now) as f32],
                        ..Default::default()
                    };
                    let _ = queue_pub.put(riptide_msgs::encode(&q)?).wait();
                }
                let state = driver.state();
                if last_state != Some(state) || tick % status_every == 0 {
                    if last_state != Some(state) {
                        tracing::info!("driver: {state:?}");
                    }
                    last_state = Some(state);
                    *counters2.lock().expect("counters lock") = driver.counters();
                    let s = StringMsg {
                        data: format!("{state:?}"),
                    };
                    let _ = status_pub.put(riptide_msgs::encode(&s)?).wait();
                }
                tick += 1;
                next += period;
                let now_i = Instant::now();
                if next > now_i {
                    std::thread::sleep(next - now_i);
                } else {
                    // Late: count it and do not try to catch up with a burst of steps.
                    m.inc("late_steps_total", None);
                    next = now_i;
                }
            }
            if let Some(link) = mavlink_link.take() {
                let mc = link.shutdown();
                tracing::info!(
                    "mavlink: {} setpoints sent, {} not executed",
                    mc.setpoints_sent,
                    mc.setpoints_not_executed
                );
            }
            let c = driver.counters();
            *counters2.lock().expect("counters lock") = c;
            tracing::info!("driver stopped after {} steps: {c:?}", c.steps);
            Ok(())
        })?;
    Ok(DriveNode {
        stop,
        counters,
        thread: Some(thread),
        session,
        metrics,
    })
}
