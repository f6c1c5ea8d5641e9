//! The MAVLink back-end against an independent peer: `mavlink_vehicle.py`, a pymavlink (PyPI `pymavlink==2.4.50`)
//! PX4-like vehicle on loopback UDP, which records what riptide sends and reports it.
//!
//! Python: env `RIPTIDE_PYTHON`, else `<workspace>/.venv/bin/python`. Without it or without pymavlink each test
//! prints `SKIPPED: ...` and passes, unless `RIPTIDE_REQUIRE_PY_TOOLS=1`.

use std::f64::consts::FRAC_PI_2;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use riptide_drivers::mavlink::{MavlinkConfig, MavlinkError, MavlinkLink, VehicleGate, POSITION_YAW_TYPE_MASK};
use toml::Value;

const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install -r tests/py-tools-requirements.txt \
                       (or set RIPTIDE_PYTHON to an interpreter with pymavlink==2.4.50)";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The interpreter, if it exists and imports pymavlink; otherwise `SKIPPED` (or a panic when required).
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("RIPTIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    let why = match Command::new(&py)
        .args(["-c", "import pymavlink"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => return Some(py),
        Ok(_) => format!("{} cannot import pymavlink", py.display()),
        Err(e) => format!("no Python interpreter at {} ({e})", py.display()),
    };
    if std::env::var("RIPTIDE_REQUIRE_PY_TOOLS").as_deref() == Ok("1") {
        panic!("RIPTIDE_REQUIRE_PY_TOOLS=1 but {why}; install with: {INSTALL}");
    }
    println!("SKIPPED: {why}; install with: {INSTALL}");
    None
}

/// The vehicle peer as a child process.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Peer {
    /// Starts `mavlink_vehicle.py` with `args` and waits for its `ready` line.
    fn start(py: &Path, args: &[&str]) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mavlink_vehicle.py");
        let mut child = Command::new(py)
            .arg(script)
            .args(["--format", "toml"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the vehicle peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = Peer { child, lines, port: 0 };
        let ready = peer.line("ready", Duration::from_secs(20));
        peer.port = ready["port"].as_integer().unwrap() as u16;
        peer
    }

    /// The next stdout line `kind = {...}`, parsed.
    fn line(&mut self, kind: &str, timeout: Duration) -> toml::Table {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let mut table: toml::Table = line.parse().unwrap_or_else(|e| panic!("peer line {line:?}: {e}"));
                    if let Some(Value::Table(t)) = table.remove(kind) {
                        return t;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!("no `{kind}` line from the vehicle peer: {e}");
                }
            }
        }
    }

    /// Waits for the final report.
    fn report(mut self) -> toml::Table {
        let report = self.line("report", Duration::from_secs(30));
        let _ = self.child.wait();
        report
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a Value {
    let mut v: Option<&Value> = None;
    for key in path.split('.') {
        v = Some(
            match v {
                None => t.get(key),
                Some(Value::Table(x)) => x.get(key),
                Some(other) => panic!("{path}: {key} of a non-table {other:?}"),
            }
            .unwrap_or_else(|| panic!("report has no `{path}`: {t:#?}")),
        );
    }
    v.unwrap()
}

fn f(t: &toml::Table, path: &str) -> f64 {
    match get(t, path) {
        Value::Float(x) => *x,
        Value::Integer(i) => *i as f64,
        other => panic!("{path} = {other:?} is not a number"),
    }
}

fn i(t: &toml::Table, path: &str) -> i64 {
    get(t, path)
        .as_integer()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

fn commands(t: &toml::Table) -> Vec<toml::Table> {
    get(t, "commands")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_table().unwrap().clone())
        .collect()
}

const MAV_CMD_NAV_LAND: i64 = 21;
const MAV_CMD_DO_SET_MODE: i64 = 176;
const MAV_CMD_COMPONENT_ARM_DISARM: i64 = 400;

/// A link that sends to the peer (`udpout`).
fn link_to(peer: &Peer, tweak: impl FnOnce(&mut MavlinkConfig)) -> MavlinkLink {
    let mut config = MavlinkConfig::with_connection(format!("udpout:127.0.0.1:{}", peer.port));
    config.heartbeat_rate_hz = 2.0;
    tweak(&mut config);
    MavlinkLink::connect(config).unwrap()
}

/// An ENU setpoint whose NED form is exact in f32: east 1.5, north −2.25, up 3, yaw 0.25 rad.
const SETPOINT_ENU: [f64; 4] = [1.5, -2.25, 3.0, 0.25];

#[test]
fn streams_ned_setpoints_at_rate_and_never_arms_by_default() {
    let Some(py) = python() else { return };
    let peer = Peer::start(
        &py,
        &[
            "--duration",
            "3",
            "--heartbeat-hz",
            "5",
            "--local-ned",
            "2",
            "1",
            "-3",
            "--velocity-ned",
            "0.5",
            "0",
            "0",
            "--yaw-ned",
            "0.5",
        ],
    );
    let link = link_to(&peer, |_| {});
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    eprintln!("report: {report:#?}\ncounters: {counters:#?}");

    // Rate: > 2 Hz (PX4's minimum) and within 10 % of the configured 20 Hz.
    let rate = f(&report, "setpoints.rate_hz");
    assert!(rate > 2.0 && (rate - 20.0).abs() < 2.0, "setpoint rate {rate} Hz");
    assert!(f(&report, "setpoints.max_gap_s") < 0.25, "a gap in the stream");
    assert!(i(&report, "setpoints.count") >= 50);
    // Every setpoint: LOCAL_NED (1), position + yaw, to the vehicle.
    assert_eq!(
        get(&report, "setpoints.distinct_frame_mask_target"),
        &Value::Array(vec![Value::Array(vec![
            Value::Integer(1),
            Value::Integer(i64::from(POSITION_YAW_TYPE_MASK)),
            Value::Integer(1),
            Value::Integer(1)
        ])])
    );
    assert_eq!(POSITION_YAW_TYPE_MASK, 0b1001_1111_1000);
    // NED, exactly: north = y_enu, east = x_enu, down = −z_enu, yaw = π/2 − yaw_enu (as f32 on the wire).
    for which in ["first", "last"] {
        assert_eq!(f(&report, &format!("setpoints.{which}.x")), -2.25);
        assert_eq!(f(&report, &format!("setpoints.{which}.y")), 1.5);
        assert_eq!(f(&report, &format!("setpoints.{which}.z")), -3.0);
        let yaw = f(&report, &format!("setpoints.{which}.yaw"));
        assert_eq!(yaw, f64::from((FRAC_PI_2 - 0.25) as f32));
    }
    // riptide's heartbeat: onboard controller (18), autopilot invalid (8), from 245/191, about 2 Hz.
    assert!(i(&report, "heartbeats.count") >= 5);
    assert_eq!(i(&report, "heartbeats.type"), 18);
    assert_eq!(i(&report, "heartbeats.autopilot"), 8);
    assert_eq!(
        get(&report, "sources"),
        &Value::Array(vec![Value::Array(vec![245.into(), 191.into()])])
    );
    // No arm (or any) command: not configured.
    assert!(commands(&report).is_empty(), "commands sent: {:?}", commands(&report));
    assert_eq!(
        (
            counters.arm_requests,
            counters.offboard_requests,
            counters.land_commands
        ),
        (0, 0, 0)
    );

    // The vehicle as riptide saw it: connected, disarmed, position mode: nothing is executed.
    assert!(state.connected && !state.armed && !state.offboard, "{state:?}");
    assert_eq!(state.autopilot, Some(12));
    assert_eq!(state.gate(), VehicleGate::NotArmed);
    assert_eq!(counters.setpoints_not_executed, counters.setpoints_sent);
    assert!(counters.setpoints_sent >= 50);
    // LOCAL_POSITION_NED (2, 1, −3) and ATTITUDE yaw 0.5 → ENU.
    assert_eq!(state.position_enu_m, Some([1.0, 2.0, 3.0]));
    assert_eq!(state.velocity_enu_m_s, Some([0.0, 0.5, 0.0]));
    let yaw = state.yaw_enu_rad.unwrap();
    assert!((yaw - (FRAC_PI_2 - 0.5)).abs() < 1e-7, "{yaw}");
    assert_eq!(state.pose_enu().unwrap()[..3], [1.0, 2.0, 3.0]);
    assert!(counters.received_by_id[&0] >= 10, "heartbeats received");
    assert!(counters.received_by_id[&32] >= 10, "LOCAL_POSITION_NED received");
    assert!(counters.received_by_id[&30] >= 10, "ATTITUDE received");
    assert_eq!(counters.parse_errors, 0);
    assert_eq!(counters.vehicle_connected, 1);
}

#[test]
fn requests_offboard_then_arm_when_configured() {
    let Some(py) = python() else { return };
    let peer = Peer::start(&py, &["--duration", "3", "--accept-commands", "--heartbeat-hz", "2"]);
    let link = link_to(&peer, |c| {
        c.arm = true;
        c.set_offboard_mode = true;
    });
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    eprintln!("report: {report:#?}\ncounters: {counters:#?}");

    let cmds = commands(&report);
    assert_eq!(cmds.len(), 2, "{cmds:#?}");
    // First offboard (PX4 main mode 6), after about a second of setpoints (PX4 refuses offboard without them).
    let mode = &cmds[0];
    assert_eq!(i(mode, "command"), MAV_CMD_DO_SET_MODE);
    assert_eq!(param(mode, 0), 1.0, "custom mode enabled");
    assert_eq!(param(mode, 1), 6.0, "PX4 offboard main mode");
    assert!(i(mode, "setpoints_before") >= 15, "{mode:?}");
    assert_eq!((i(mode, "target_system"), i(mode, "target_component")), (1, 1));
    // Then arm, once the vehicle reports offboard.
    let arm = &cmds[1];
    assert_eq!(i(arm, "command"), MAV_CMD_COMPONENT_ARM_DISARM);
    assert_eq!(param(arm, 0), 1.0);
    assert_eq!(i(arm, "vehicle_main_mode"), 6);
    assert_eq!(get(&report, "final_state.armed"), &Value::Boolean(true));
    assert_eq!(i(&report, "final_state.main_mode"), 6);

    assert!(state.armed && state.offboard, "{state:?}");
    assert_eq!(state.gate(), VehicleGate::Executing);
    assert_eq!((counters.offboard_requests, counters.arm_requests), (1, 1));
    assert_eq!((counters.command_acks, counters.commands_refused), (2, 0));
    assert!(counters.setpoints_not_executed < counters.setpoints_sent);
}

/// A table's `params.N` is an array element; `get` handles tables only, so read arrays here.
fn param(cmd: &toml::Table, n: usize) -> f64 {
    get(cmd, "params").as_array().unwrap()[n].as_float().unwrap()
}

#[test]
fn refused_commands_are_not_repeated() {
    let Some(py) = python() else { return };
    // The vehicle refuses everything: one DO_SET_MODE, no retry, no arm (not offboard).
    let peer = Peer::start(&py, &["--duration", "2.5"]);
    let link = link_to(&peer, |c| {
        c.arm = true;
        c.set_offboard_mode = true;
    });
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let report = peer.report();
    let counters = link.shutdown();
    let cmds = commands(&report);
    assert_eq!(cmds.len(), 1, "{cmds:#?}");
    assert_eq!(i(&cmds[0], "command"), MAV_CMD_DO_SET_MODE);
    assert_eq!(param(&cmds[0], 1), 6.0);
    assert_eq!((counters.commands_refused, counters.arm_requests), (1, 0));
}

#[test]
fn parses_an_armed_offboard_vehicle_over_udpin() {
    let Some(py) = python() else { return };
    // PX4's usual offboard setup: riptide listens, the vehicle sends first.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = MavlinkLink::connect(MavlinkConfig::with_connection(format!("udpin:127.0.0.1:{port}"))).unwrap();
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let peer = Peer::start(
        &py,
        &[
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "2",
            "--armed",
            "--offboard",
            "--heartbeat-hz",
            "5",
        ],
    );
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    eprintln!("report: {report:#?}\ncounters: {counters:#?}");
    assert!(state.connected && state.armed && state.offboard, "{state:?}");
    assert_eq!(state.custom_mode >> 16 & 0xff, 6);
    assert_eq!(state.gate(), VehicleGate::Executing);
    // Replies reached the vehicle.
    let rate = f(&report, "setpoints.rate_hz");
    assert!((rate - 20.0).abs() < 2.0, "{rate}");
    assert_eq!(f(&report, "setpoints.last.x"), -2.25);
    assert!(i(&report, "heartbeats.count") >= 1);
    assert!(commands(&report).is_empty());
    // Once the vehicle was heard every setpoint is executed; before that none was sent (no peer yet).
    assert!(counters.setpoints_not_executed <= 1, "{counters:?}");
}

#[test]
fn land_sends_nav_land_once_and_stops_streaming() {
    let Some(py) = python() else { return };
    let peer = Peer::start(
        &py,
        &[
            "--duration",
            "3",
            "--armed",
            "--offboard",
            "--accept-commands",
            "--heartbeat-hz",
            "5",
        ],
    );
    // arm/offboard configured: they must not be requested (the vehicle already is), nor after the landing.
    let link = link_to(&peer, |c| {
        c.arm = true;
        c.set_offboard_mode = true;
    });
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // The driver's Command::Land, every step: one command.
    for _ in 0..10 {
        let gate = link
            .apply(&riptide_drivers::Command::Land {
                position: vec![1.5, -2.25, 2.9, 0.25],
                descent_rate: 0.5,
            })
            .unwrap();
        assert_eq!(gate, VehicleGate::Landing);
    }
    assert!(matches!(
        link.set_setpoint_enu(SETPOINT_ENU),
        Err(MavlinkError::Landing)
    ));
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    eprintln!("report: {report:#?}\ncounters: {counters:#?}");
    let cmds = commands(&report);
    assert_eq!(cmds.len(), 1, "{cmds:#?}");
    assert_eq!(i(&cmds[0], "command"), MAV_CMD_NAV_LAND);
    assert!(
        param(&cmds[0], 4).is_nan() && param(&cmds[0], 5).is_nan(),
        "land where it is"
    );
    assert!(
        i(&report, "setpoints.after_land") <= 1,
        "setpoints kept streaming after the land command"
    );
    assert!(i(&report, "setpoints.count") >= 15);
    assert_eq!(
        (i(&report, "final_state.main_mode"), i(&report, "final_state.sub_mode")),
        (4, 6)
    );
    assert_eq!(counters.land_commands, 1);
    assert_eq!(counters.command_acks, 1);
    assert_eq!((counters.arm_requests, counters.offboard_requests), (0, 0));
    assert!(state.landing && !state.offboard);
    assert_eq!(state.gate(), VehicleGate::Landing);
}

#[test]
fn malformed_packets_are_counted_and_the_link_survives() {
    let Some(py) = python() else { return };
    let peer = Peer::start(&py, &["--duration", "2", "--garbage", "--heartbeat-hz", "5"]);
    let link = link_to(&peer, |_| {});
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    eprintln!("report: {report:#?}\ncounters: {counters:#?}");
    // The HEARTBEAT with MAV_TYPE 250 has a valid checksum but does not parse; garbage bytes are skipped.
    assert_eq!(counters.parse_errors, 1);
    assert!(state.connected, "valid heartbeats after the garbage still count");
    assert!(counters.received_by_id[&0] >= 5);
    let rate = f(&report, "setpoints.rate_hz");
    assert!((rate - 20.0).abs() < 2.0, "{rate}");
}

#[test]
fn a_silent_vehicle_is_lost() {
    let Some(py) = python() else { return };
    let peer = Peer::start(
        &py,
        &[
            "--duration",
            "2.5",
            "--armed",
            "--offboard",
            "--heartbeat-hz",
            "10",
            "--heartbeat-stop-after",
            "1",
        ],
    );
    let link = link_to(&peer, |c| c.vehicle_timeout_ms = 400);
    link.set_setpoint_enu(SETPOINT_ENU).unwrap();
    let report = peer.report();
    let state = link.vehicle_state();
    let counters = link.shutdown();
    assert!(i(&report, "heartbeats.count") > 0);
    assert!(!state.connected, "{state:?}");
    assert_eq!(state.gate(), VehicleGate::NotConnected);
    assert_eq!((counters.vehicle_connected, counters.vehicle_lost), (1, 1));
    // Setpoints keep streaming (PX4 decides its own failsafe); they are reported as not executed.
    assert!(counters.setpoints_not_executed > 0);
    assert!(counters.setpoints_not_executed < counters.setpoints_sent);
}
