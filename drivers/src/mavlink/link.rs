//! [`MavlinkLink`]: the connection, its sender and receiver threads, and the shared vehicle state.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::mavlink::dialects::common::{
    MavAutopilot, MavCmd, MavFrame, MavMessage, MavModeFlag, MavResult, MavState, MavType, PositionTargetTypemask,
    COMMAND_LONG_DATA, HEARTBEAT_DATA, SET_POSITION_TARGET_LOCAL_NED_DATA,
};
use ::mavlink::error::MessageReadError;
use ::mavlink::{Connectable, Connection, MavConnection, MavHeader, Message, UdpConfig, UdpMode};
use serde::Serialize;

use crate::chunk::Command;
use crate::mavlink::config::{HeartbeatType, MavlinkConfig};
use crate::mavlink::error::MavlinkError;
use crate::mavlink::frames::{enu_to_ned, ned_to_enu_vec, wrap_pi};
use crate::mavlink::modes::{heartbeat_armed, heartbeat_offboard, offboard_mode_params};

/// How long a blocking read waits before the receiver checks for shutdown.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// Setpoints must have been streaming this long (with the vehicle connected) before arming / a mode change is
/// requested: PX4 refuses offboard mode without a live setpoint stream.
const WARMUP: Duration = Duration::from_secs(1);
/// A request (arm, mode, land) without the wanted effect or an ACK is repeated after this long.
const RETRY: Duration = Duration::from_secs(1);
/// At most this many attempts per request.
const MAX_ATTEMPTS: u8 = 5;

/// Position + yaw only: ignore velocity, acceleration and yaw rate.
fn position_yaw_type_mask() -> PositionTargetTypemask {
    PositionTargetTypemask::POSITION_TARGET_TYPEMASK_VX_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_VY_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_VZ_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AX_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AY_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_AZ_IGNORE
        | PositionTargetTypemask::POSITION_TARGET_TYPEMASK_YAW_RATE_IGNORE
}

/// The `type_mask` riptide sends: position and yaw used, velocity, acceleration and yaw rate ignored (2552).
pub const POSITION_YAW_TYPE_MASK: u16 = 0b1001_1111_1000;

/// Why the vehicle is (not) executing riptide's setpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VehicleGate {
    /// No HEARTBEAT from the vehicle within `vehicle_timeout_ms`.
    NotConnected,
    /// Connected but disarmed.
    NotArmed,
    /// Armed but not in offboard (PX4) / GUIDED (ArduPilot) mode: someone else flies it.
    NotOffboard,
    /// [`MavlinkLink::land`] was called: the autopilot lands by itself.
    Landing,
    /// Connected, armed, offboard: setpoints are being followed.
    Executing,
}

/// What the link knows about the vehicle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VehicleState {
    /// A HEARTBEAT arrived within `vehicle_timeout_ms`.
    pub connected: bool,
    /// `MAV_MODE_FLAG_SAFETY_ARMED` in the last HEARTBEAT.
    pub armed: bool,
    /// The last HEARTBEAT says offboard (PX4 main mode 6) or GUIDED (ArduCopter).
    pub offboard: bool,
    /// [`MavlinkLink::land`] was called.
    pub landing: bool,
    /// `MAV_AUTOPILOT` of the last HEARTBEAT (12 = PX4, 3 = ArduPilot).
    pub autopilot: Option<u8>,
    /// `MAV_TYPE` of the last HEARTBEAT.
    pub mav_type: Option<u8>,
    /// `base_mode` of the last HEARTBEAT.
    pub base_mode: u8,
    /// `custom_mode` of the last HEARTBEAT.
    pub custom_mode: u32,
    /// `system_status` (MAV_STATE) of the last HEARTBEAT.
    pub system_status: u8,
    /// Local position from LOCAL_POSITION_NED, in ENU `[east, north, up]`, m.
    pub position_enu_m: Option<[f64; 3]>,
    /// Local velocity from LOCAL_POSITION_NED, in ENU, m/s.
    pub velocity_enu_m_s: Option<[f64; 3]>,
    /// Yaw from ATTITUDE, ENU (counter-clockwise from east), rad in (−π, π].
    pub yaw_enu_rad: Option<f64>,
    /// When the last HEARTBEAT from the vehicle arrived.
    pub last_heartbeat: Option<Instant>,
    /// When the last message of any kind from the vehicle's system arrived.
    pub last_heard: Option<Instant>,
}

impl VehicleState {
    /// Whether riptide's setpoints are being executed, and if not, why.
    pub fn gate(&self) -> VehicleGate {
        if self.landing {
            VehicleGate::Landing
        } else if !self.connected {
            VehicleGate::NotConnected
        } else if !self.armed {
            VehicleGate::NotArmed
        } else if !self.offboard {
            VehicleGate::NotOffboard
        } else {
            VehicleGate::Executing
        }
    }

    /// Shorthand for `gate() == Executing`.
    pub fn executing(&self) -> bool {
        self.gate() == VehicleGate::Executing
    }

    /// Measured `[x, y, z, yaw]` ENU (e.g. for [`Driver::engage`](crate::Driver::engage)), once both position and
    /// attitude were heard.
    pub fn pose_enu(&self) -> Option<[f64; 4]> {
        let p = self.position_enu_m?;
        Some([p[0], p[1], p[2], self.yaw_enu_rad?])
    }
}

/// Link counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MavlinkCounters {
    /// HEARTBEATs sent.
    pub heartbeats_sent: u64,
    /// SET_POSITION_TARGET_LOCAL_NED sent.
    pub setpoints_sent: u64,
    /// Setpoints sent while the vehicle was not executing them (not connected, disarmed, not offboard).
    pub setpoints_not_executed: u64,
    /// Setpoints refused by [`MavlinkLink::set_setpoint_enu`] (non-finite); never sent.
    pub setpoints_rejected: u64,
    /// MAV_CMD_COMPONENT_ARM_DISARM (arm) sent.
    pub arm_requests: u64,
    /// MAV_CMD_DO_SET_MODE (offboard/GUIDED) sent.
    pub offboard_requests: u64,
    /// MAV_CMD_NAV_LAND sent.
    pub land_commands: u64,
    /// COMMAND_ACKs received for riptide's commands.
    pub command_acks: u64,
    /// COMMAND_ACKs that refused a command (not ACCEPTED or IN_PROGRESS).
    pub commands_refused: u64,
    /// Sends that failed (I/O error).
    pub send_errors: u64,
    /// Sends skipped because a `udpin` link has not heard anyone yet (it replies to the last sender).
    pub sends_without_peer: u64,
    /// Messages received, all systems.
    pub received: u64,
    /// Messages received by MAVLink message id.
    pub received_by_id: BTreeMap<u32, u64>,
    /// Frames with a valid checksum that failed to parse (e.g. an out-of-range enum). Bytes that are not a frame
    /// with a valid checksum are skipped by the `mavlink` crate's decoder and not seen here.
    pub parse_errors: u64,
    /// Read errors other than the read timeout.
    pub read_errors: u64,
    /// Times the vehicle's HEARTBEAT was first heard, or heard again after it was lost.
    pub vehicle_connected: u64,
    /// Times the vehicle was lost (no HEARTBEAT for `vehicle_timeout_ms`).
    pub vehicle_lost: u64,
}

/// One request (arm, offboard, land) and its retries.
#[derive(Debug, Clone, Copy, Default)]
struct Request {
    attempts: u8,
    last_sent: Option<Instant>,
    /// Accepted (ACK), or its effect seen in a HEARTBEAT: no more attempts.
    done: bool,
    /// Refused by the vehicle, or out of attempts: no more attempts.
    given_up: bool,
}

impl Request {
    fn due(&self, now: Instant) -> bool {
        !self.done && !self.given_up && self.attempts < MAX_ATTEMPTS && self.last_sent.is_none_or(|t| now >= t + RETRY)
    }
}

#[derive(Debug, Default)]
struct Inner {
    setpoint_enu: Option<[f64; 4]>,
    land_called: bool,
    vehicle: VehicleState,
    /// Since when setpoints have been streaming with the vehicle connected.
    streaming_since: Option<Instant>,
    arm: Request,
    offboard: Request,
    land: Request,
    /// Autopilot and vehicle type of the last HEARTBEAT.
    identity: Option<(MavAutopilot, MavType)>,
    counters: MavlinkCounters,
}

impl Inner {
    /// Updates `connected` from the last heartbeat; counts a loss.
    fn refresh_connection(&mut self, now: Instant, timeout: Duration) {
        let alive = self
            .vehicle
            .last_heartbeat
            .is_some_and(|t| now.duration_since(t) <= timeout);
        if self.vehicle.connected && !alive {
            self.vehicle.connected = false;
            self.counters.vehicle_lost += 1;
            self.streaming_since = None;
        }
    }
}

struct Shared {
    config: MavlinkConfig,
    start: Instant,
    stop: AtomicBool,
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the link down with it: the data is plain state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn vehicle_timeout(&self) -> Duration {
        Duration::from_millis(self.config.vehicle_timeout_ms)
    }

    fn header(&self) -> MavHeader {
        MavHeader {
            system_id: u32::from(self.config.system_id),
            component_id: self.config.component_id,
            sequence: 0,
        }
    }
}

/// A MAVLink offboard link to one vehicle. Dropping it stops its threads like [`shutdown`](Self::shutdown).
pub struct MavlinkLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MavlinkLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MavlinkLink")
            .field("connection", &self.shared.config.connection)
            .finish_non_exhaustive()
    }
}

impl MavlinkLink {
    /// Validates `config`, opens the connection and starts the sender and receiver threads. Heartbeats start at
    /// once; setpoints once [`set_setpoint_enu`](Self::set_setpoint_enu) gives one.
    pub fn connect(config: MavlinkConfig) -> Result<Self, MavlinkError> {
        config.validate()?;
        let connection = open(&config.connection).map_err(|source| MavlinkError::Connect {
            connection: config.connection.clone(),
            source,
        })?;
        let connection = Arc::new(connection);
        let shared = Arc::new(Shared {
            config,
            start: Instant::now(),
            stop: AtomicBool::new(false),
            inner: Mutex::new(Inner::default()),
            wake: Condvar::new(),
        });
        let mut link = MavlinkLink {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let (s, c) = (shared.clone(), connection.clone());
        let rx = std::thread::Builder::new()
            .name("riptide-mavlink-rx".into())
            .spawn(move || receive_loop(&s, &c))
            .map_err(|source| MavlinkError::Spawn {
                which: "receiver",
                source,
            })?;
        link.threads.push(rx);
        let tx = std::thread::Builder::new()
            .name("riptide-mavlink-tx".into())
            .spawn(move || send_loop(&shared, &connection))
            .map_err(|source| MavlinkError::Spawn {
                which: "sender",
                source,
            })?;
        link.threads.push(tx);
        Ok(link)
    }

    /// The configuration.
    pub fn config(&self) -> &MavlinkConfig {
        &self.shared.config
    }

    /// Stream this ENU `[x, y, z, yaw]` setpoint (m, rad) from now on. Returns whether the vehicle executes it:
    /// anything but [`VehicleGate::Executing`] means it does not. Non-finite values are refused (the previous
    /// setpoint keeps streaming); after [`land`](Self::land) every setpoint is refused.
    pub fn set_setpoint_enu(&self, setpoint_enu: [f64; 4]) -> Result<VehicleGate, MavlinkError> {
        let mut inner = self.shared.lock();
        if inner.land_called {
            return Err(MavlinkError::Landing);
        }
        if setpoint_enu.iter().any(|v| !v.is_finite()) {
            inner.counters.setpoints_rejected += 1;
            return Err(MavlinkError::NonFinite(setpoint_enu));
        }
        inner.setpoint_enu = Some(setpoint_enu);
        inner.refresh_connection(Instant::now(), self.shared.vehicle_timeout());
        Ok(inner.vehicle.gate())
    }

    /// Stop streaming setpoints (PX4 then applies its offboard-loss failsafe if it was in offboard mode).
    pub fn stop_setpoints(&self) {
        let mut inner = self.shared.lock();
        inner.setpoint_enu = None;
        inner.streaming_since = None;
    }

    /// Land: send MAV_CMD_NAV_LAND once (repeated only if the vehicle does not acknowledge it, up to 5 attempts
    /// 1 s apart), stop streaming setpoints and never request arming or a mode again. Idempotent.
    pub fn land(&self) {
        let mut inner = self.shared.lock();
        if !inner.land_called {
            inner.land_called = true;
            inner.vehicle.landing = true;
            inner.setpoint_enu = None;
            inner.streaming_since = None;
            drop(inner);
            self.shared.wake.notify_all();
        }
    }

    /// Sends a driver [`Command`]: `Position`/`Hold` stream the position (hover = keep streaming the held
    /// position), `Land` calls [`land`](Self::land) (the autopilot lands by itself; the supervisor's descent
    /// setpoints are not streamed), `Idle` stops the stream. Returns the vehicle gate.
    pub fn apply(&self, command: &Command) -> Result<VehicleGate, MavlinkError> {
        match command {
            Command::Position(p) | Command::Hold(p) => {
                let p: [f64; 4] = p.as_slice().try_into().map_err(|_| MavlinkError::Dimension(p.len()))?;
                self.set_setpoint_enu(p)
            }
            Command::Land { .. } => {
                self.land();
                Ok(VehicleGate::Landing)
            }
            Command::Idle => {
                self.stop_setpoints();
                Ok(self.vehicle_state().gate())
            }
        }
    }

    /// A snapshot of the vehicle state.
    pub fn vehicle_state(&self) -> VehicleState {
        let mut inner = self.shared.lock();
        inner.refresh_connection(Instant::now(), self.shared.vehicle_timeout());
        inner.vehicle.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> MavlinkCounters {
        self.shared.lock().counters.clone()
    }

    /// Seconds since the link started (the `time_boot_ms` of riptide's setpoints, in s).
    pub fn uptime_s(&self) -> f64 {
        self.shared.start.elapsed().as_secs_f64()
    }

    /// Stops and joins both threads (within about 50 ms) and returns the final counters.
    pub fn shutdown(mut self) -> MavlinkCounters {
        self.stop();
        self.counters()
    }

    fn stop(&mut self) {
        {
            let _guard = self.shared.lock();
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MavlinkLink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens a UDP connection with a read timeout, so the receiver can notice shutdown.
fn open(connection: &str) -> io::Result<Connection<MavMessage>> {
    let (scheme, address) = connection
        .split_once(':')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no transport"))?;
    let mode = match scheme {
        "udpin" => UdpMode::Udpin,
        "udpout" => UdpMode::Udpout,
        "udpbcast" => UdpMode::UdpBroadcast,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported transport `{other}`"),
            ))
        }
    };
    let mut conn = UdpConfig::new(address.to_string(), mode)
        .read_timeout(READ_TIMEOUT)
        .connect::<MavMessage>()?;
    // Send MAVLink 2; accept 1 and 2 (some links start in MAVLink 1).
    conn.set_allow_recv_any_version(true);
    Ok(conn)
}

fn receive_loop(shared: &Shared, conn: &Connection<MavMessage>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match conn.recv() {
            Ok((header, msg)) => on_message(shared, header, &msg),
            Err(MessageReadError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            }
            Err(MessageReadError::Io(_)) => {
                shared.lock().counters.read_errors += 1;
                // E.g. ICMP port unreachable reported on a udpout socket: do not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(MessageReadError::Parse(_)) => shared.lock().counters.parse_errors += 1,
        }
    }
}

fn on_message(shared: &Shared, header: MavHeader, msg: &MavMessage) {
    let now = Instant::now();
    let config = &shared.config;
    let mut inner = shared.lock();
    let inner = &mut *inner;
    inner.counters.received += 1;
    *inner.counters.received_by_id.entry(msg.message_id()).or_default() += 1;
    if header.system_id != u32::from(config.target_system) {
        return;
    }
    inner.vehicle.last_heard = Some(now);
    let from_autopilot = config.target_component == 0 || header.component_id == config.target_component;
    match msg {
        MavMessage::HEARTBEAT(hb) if from_autopilot && hb.autopilot != MavAutopilot::MAV_AUTOPILOT_INVALID => {
            let v = &mut inner.vehicle;
            let base_mode = hb.base_mode.bits();
            v.armed = heartbeat_armed(base_mode);
            v.offboard = heartbeat_offboard(hb.autopilot, hb.mavtype, base_mode, hb.custom_mode);
            v.autopilot = Some(hb.autopilot as u8);
            v.mav_type = Some(hb.mavtype as u8);
            v.base_mode = base_mode;
            v.custom_mode = hb.custom_mode;
            v.system_status = hb.system_status as u8;
            v.last_heartbeat = Some(now);
            inner.identity = Some((hb.autopilot, hb.mavtype));
            if !v.connected {
                v.connected = true;
                inner.counters.vehicle_connected += 1;
            }
            // A wanted state seen once is never requested again (the pilot may change it back).
            if v.armed {
                inner.arm.done = true;
            }
            if v.offboard {
                inner.offboard.done = true;
            }
        }
        MavMessage::LOCAL_POSITION_NED(p) => {
            inner.vehicle.position_enu_m = Some(ned_to_enu_vec([p.x.into(), p.y.into(), p.z.into()]));
            inner.vehicle.velocity_enu_m_s = Some(ned_to_enu_vec([p.vx.into(), p.vy.into(), p.vz.into()]));
        }
        MavMessage::ATTITUDE(a) => {
            inner.vehicle.yaw_enu_rad = Some(wrap_pi(std::f64::consts::FRAC_PI_2 - f64::from(a.yaw)));
        }
        MavMessage::COMMAND_ACK(ack) => {
            let request = match ack.command {
                MavCmd::MAV_CMD_COMPONENT_ARM_DISARM => &mut inner.arm,
                MavCmd::MAV_CMD_DO_SET_MODE => &mut inner.offboard,
                MavCmd::MAV_CMD_NAV_LAND => &mut inner.land,
                _ => return,
            };
            if request.attempts == 0 {
                return; // Not ours.
            }
            inner.counters.command_acks += 1;
            match ack.result {
                MavResult::MAV_RESULT_ACCEPTED => request.done = true,
                MavResult::MAV_RESULT_IN_PROGRESS => {}
                _ => {
                    request.given_up = true;
                    inner.counters.commands_refused += 1;
                }
            }
        }
        _ => {}
    }
}

/// Next deadline of a periodic task: one period later, or one period from now after falling behind.
fn advance(next: Instant, period: Duration, now: Instant) -> Instant {
    let n = next + period;
    if n < now {
        now + period
    } else {
        n
    }
}

fn send_loop(shared: &Shared, conn: &Connection<MavMessage>) {
    let config = &shared.config;
    let setpoint_period = Duration::from_secs_f64(1.0 / config.setpoint_rate_hz);
    let heartbeat_period = Duration::from_secs_f64(1.0 / config.heartbeat_rate_hz);
    let timeout = shared.vehicle_timeout();
    let header = shared.header();
    let mut next_heartbeat = Instant::now();
    let mut next_setpoint = Instant::now();
    let mut out: Vec<(Kind, MavMessage)> = Vec::new();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        {
            let mut guard = shared.lock();
            let inner = &mut *guard;
            inner.refresh_connection(now, timeout);
            if now >= next_heartbeat {
                out.push((Kind::Heartbeat, heartbeat(config.heartbeat_type)));
                next_heartbeat = advance(next_heartbeat, heartbeat_period, now);
            }
            if now >= next_setpoint {
                next_setpoint = advance(next_setpoint, setpoint_period, now);
                if let Some(sp) = inner.setpoint_enu {
                    let time_boot_ms = now.duration_since(shared.start).as_millis() as u32;
                    out.push((Kind::Setpoint, setpoint_message(config, sp, time_boot_ms)));
                    if inner.vehicle.connected {
                        inner.streaming_since.get_or_insert(now);
                    }
                }
                requests(config, inner, now, &mut out);
            }
            if inner.land_called && inner.land.due(now) {
                inner.land.attempts += 1;
                inner.land.last_sent = Some(now);
                let confirmation = inner.land.attempts - 1;
                // Yaw, latitude, longitude, altitude: NaN = keep / current position.
                let p = [0.0, 0.0, 0.0, f32::NAN, f32::NAN, f32::NAN, f32::NAN];
                out.push((
                    Kind::Land,
                    command_long(config, MavCmd::MAV_CMD_NAV_LAND, p, confirmation),
                ));
            }
        }
        for (kind, msg) in out.drain(..) {
            let result = conn.send(&header, &msg);
            let mut inner = shared.lock();
            let c = &mut inner.counters;
            match result {
                Ok(0) => c.sends_without_peer += 1,
                Ok(_) => match kind {
                    Kind::Heartbeat => c.heartbeats_sent += 1,
                    Kind::Setpoint => {
                        c.setpoints_sent += 1;
                        if inner.vehicle.gate() != VehicleGate::Executing {
                            inner.counters.setpoints_not_executed += 1;
                        }
                    }
                    Kind::Arm => c.arm_requests += 1,
                    Kind::Offboard => c.offboard_requests += 1,
                    Kind::Land => c.land_commands += 1,
                },
                Err(_) => c.send_errors += 1,
            }
        }
        let deadline = next_heartbeat.min(next_setpoint);
        let guard = shared.lock();
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now);
        // Checked under the lock that `land` and `stop` take: no wake-up is lost.
        let busy = shared.stop.load(Ordering::SeqCst) || (guard.land_called && guard.land.due(now));
        if !wait.is_zero() && !busy {
            let _ = shared.wake.wait_timeout(guard, wait);
        }
    }
}

/// What a queued message is, for the counters.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Heartbeat,
    Setpoint,
    Arm,
    Offboard,
    Land,
}

/// Arm / offboard requests, if configured and the vehicle is connected with setpoints streaming for [`WARMUP`].
fn requests(config: &MavlinkConfig, inner: &mut Inner, now: Instant, out: &mut Vec<(Kind, MavMessage)>) {
    let v = &inner.vehicle;
    let warm = inner.streaming_since.is_some_and(|t| now.duration_since(t) >= WARMUP);
    if inner.land_called || !v.connected || inner.setpoint_enu.is_none() || !warm {
        return;
    }
    if config.set_offboard_mode && !v.offboard && inner.offboard.due(now) {
        if let Some(params) = inner.identity.and_then(|(a, t)| offboard_mode_params(a, t)) {
            let mut base = params[0] as u8;
            if v.armed {
                base |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED.bits();
            }
            let confirmation = inner.offboard.attempts;
            inner.offboard.attempts += 1;
            inner.offboard.last_sent = Some(now);
            let p = [f32::from(base), params[1], params[2], 0.0, 0.0, 0.0, 0.0];
            out.push((
                Kind::Offboard,
                command_long(config, MavCmd::MAV_CMD_DO_SET_MODE, p, confirmation),
            ));
        }
    }
    // Arm only in offboard mode: an armed vehicle in another mode would not follow riptide.
    if config.arm && v.offboard && !v.armed && inner.arm.due(now) {
        let confirmation = inner.arm.attempts;
        inner.arm.attempts += 1;
        inner.arm.last_sent = Some(now);
        let p = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        out.push((
            Kind::Arm,
            command_long(config, MavCmd::MAV_CMD_COMPONENT_ARM_DISARM, p, confirmation),
        ));
    }
}

fn heartbeat(kind: HeartbeatType) -> MavMessage {
    MavMessage::HEARTBEAT(HEARTBEAT_DATA {
        custom_mode: 0,
        mavtype: match kind {
            HeartbeatType::OnboardController => MavType::MAV_TYPE_ONBOARD_CONTROLLER,
            HeartbeatType::Gcs => MavType::MAV_TYPE_GCS,
        },
        autopilot: MavAutopilot::MAV_AUTOPILOT_INVALID,
        base_mode: MavModeFlag::empty(),
        system_status: MavState::MAV_STATE_ACTIVE,
        mavlink_version: 3,
    })
}

/// SET_POSITION_TARGET_LOCAL_NED for an ENU `[x, y, z, yaw]` setpoint.
pub(crate) fn setpoint_message(config: &MavlinkConfig, enu: [f64; 4], time_boot_ms: u32) -> MavMessage {
    let ned = enu_to_ned(enu);
    MavMessage::SET_POSITION_TARGET_LOCAL_NED(SET_POSITION_TARGET_LOCAL_NED_DATA {
        time_boot_ms,
        x: ned[0] as f32,
        y: ned[1] as f32,
        z: ned[2] as f32,
        vx: 0.0,
        vy: 0.0,
        vz: 0.0,
        afx: 0.0,
        afy: 0.0,
        afz: 0.0,
        yaw: ned[3] as f32,
        yaw_rate: 0.0,
        type_mask: position_yaw_type_mask(),
        target_system: config.target_system,
        target_component: config.target_component,
        coordinate_frame: MavFrame::MAV_FRAME_LOCAL_NED,
    })
}

fn command_long(config: &MavlinkConfig, command: MavCmd, p: [f32; 7], confirmation: u8) -> MavMessage {
    MavMessage::COMMAND_LONG(COMMAND_LONG_DATA {
        param1: p[0],
        param2: p[1],
        param3: p[2],
        param4: p[3],
        param5: p[4],
        param6: p[5],
        param7: p[6],
        command,
        target_system: config.target_system,
        target_component: config.target_component,
        confirmation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_mask_is_position_and_yaw() {
        assert_eq!(position_yaw_type_mask().bits(), POSITION_YAW_TYPE_MASK);
        assert_eq!(POSITION_YAW_TYPE_MASK, 2552);
    }

    #[test]
    fn setpoint_message_is_ned() {
        let config = MavlinkConfig::default();
        let MavMessage::SET_POSITION_TARGET_LOCAL_NED(m) = setpoint_message(&config, [1.5, -2.25, 3.0, 0.0], 7) else {
            panic!()
        };
        assert_eq!((m.x, m.y, m.z), (-2.25, 1.5, -3.0));
        assert_eq!(m.yaw, std::f32::consts::FRAC_PI_2);
        assert_eq!(m.coordinate_frame, MavFrame::MAV_FRAME_LOCAL_NED);
        assert_eq!((m.target_system, m.target_component, m.time_boot_ms), (1, 1, 7));
    }

    #[test]
    fn gate_order() {
        let mut v = VehicleState::default();
        assert_eq!(v.gate(), VehicleGate::NotConnected);
        v.connected = true;
        assert_eq!(v.gate(), VehicleGate::NotArmed);
        v.armed = true;
        assert_eq!(v.gate(), VehicleGate::NotOffboard);
        v.offboard = true;
        assert!(v.executing());
        v.landing = true;
        assert_eq!(v.gate(), VehicleGate::Landing);
    }
}
