//! The MAVLink back-end against a vehicle played by the `mavlink` crate itself (runs without Python; the
//! independent pymavlink peer is in `mavlink_peer.rs`), and the link's API contract.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use mavlink::dialects::common::{
    MavAutopilot, MavFrame, MavMessage, MavModeFlag, MavState, MavType, HEARTBEAT_DATA, LOCAL_POSITION_NED_DATA,
};
use mavlink::{Connectable, Connection, MavConnection, MavHeader, UdpConfig, UdpMode};
use riptide_drivers::mavlink::{MavlinkConfig, MavlinkError, MavlinkLink, VehicleGate, POSITION_YAW_TYPE_MASK};
use riptide_drivers::Command;

/// A `udpin` vehicle endpoint on a free loopback port.
fn vehicle() -> (Connection<MavMessage>, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let conn = UdpConfig::from_socket(socket, UdpMode::Udpin)
        .unwrap()
        .read_timeout(Duration::from_millis(20))
        .connect::<MavMessage>()
        .unwrap();
    (conn, port)
}

fn px4_heartbeat(armed: bool, main_mode: u32) -> MavMessage {
    let mut base = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED;
    if armed {
        base |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
    }
    MavMessage::HEARTBEAT(HEARTBEAT_DATA {
        custom_mode: main_mode << 16,
        mavtype: MavType::MAV_TYPE_QUADROTOR,
        autopilot: MavAutopilot::MAV_AUTOPILOT_PX4,
        base_mode: base,
        system_status: MavState::MAV_STATE_ACTIVE,
        mavlink_version: 3,
    })
}

const VEHICLE: MavHeader = MavHeader {
    system_id: 1,
    component_id: 1,
    sequence: 0,
};

#[test]
fn streams_to_a_rust_vehicle_and_reads_its_state() {
    let (vehicle, port) = vehicle();
    let mut config = MavlinkConfig::with_connection(format!("udpout:127.0.0.1:{port}"));
    config.setpoint_rate_hz = 50.0;
    let link = MavlinkLink::connect(config).unwrap();
    link.set_setpoint_enu([1.0, 2.0, 3.0, 0.0]).unwrap();

    let start = Instant::now();
    let (mut setpoints, mut heartbeats) = (Vec::new(), 0);
    let mut last_sent = None;
    while start.elapsed() < Duration::from_millis(1500) {
        if let Ok((header, msg)) = vehicle.recv() {
            assert_eq!((header.system_id, header.component_id), (245, 191));
            match msg {
                MavMessage::SET_POSITION_TARGET_LOCAL_NED(m) => setpoints.push((start.elapsed(), m)),
                MavMessage::HEARTBEAT(h) => {
                    assert_eq!(h.mavtype, MavType::MAV_TYPE_ONBOARD_CONTROLLER);
                    heartbeats += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Reply (udpin: to the last sender) every 100 ms: armed, offboard, hovering 3 m up facing north.
        if last_sent.is_none_or(|t: Instant| t.elapsed() > Duration::from_millis(100)) && heartbeats > 0 {
            last_sent = Some(Instant::now());
            vehicle.send(&VEHICLE, &px4_heartbeat(true, 6)).unwrap();
            let position = LOCAL_POSITION_NED_DATA {
                time_boot_ms: 0,
                x: 2.0,
                y: 1.0,
                z: -3.0,
                vx: 0.0,
                vy: 0.0,
                vz: -0.5,
            };
            vehicle
                .send(&VEHICLE, &MavMessage::LOCAL_POSITION_NED(position))
                .unwrap();
        }
    }
    let state = link.vehicle_state();
    let counters = link.shutdown();

    // 50 Hz for 1.5 s.
    assert!((65..=85).contains(&setpoints.len()), "{} setpoints", setpoints.len());
    let span = setpoints.last().unwrap().0 - setpoints[0].0;
    let rate = (setpoints.len() - 1) as f64 / span.as_secs_f64();
    assert!((rate - 50.0).abs() < 5.0, "{rate} Hz");
    for (_, m) in &setpoints {
        assert_eq!((m.x, m.y, m.z), (2.0, 1.0, -3.0));
        assert_eq!(m.yaw, std::f32::consts::FRAC_PI_2);
        assert_eq!(m.type_mask.bits(), POSITION_YAW_TYPE_MASK);
        assert_eq!(m.coordinate_frame, MavFrame::MAV_FRAME_LOCAL_NED);
        assert_eq!((m.target_system, m.target_component), (1, 1));
    }
    assert!(heartbeats >= 1);
    assert!(state.connected && state.armed && state.offboard, "{state:?}");
    assert_eq!(state.gate(), VehicleGate::Executing);
    assert_eq!(state.position_enu_m, Some([1.0, 2.0, 3.0]));
    assert_eq!(state.velocity_enu_m_s, Some([0.0, 0.0, 0.5]));
    assert_eq!(state.pose_enu(), None, "no ATTITUDE yet");
    assert_eq!((counters.arm_requests, counters.offboard_requests), (0, 0));
    assert_eq!(counters.vehicle_connected, 1);
}

#[test]
fn commands_map_onto_the_link() {
    let (_vehicle, port) = vehicle();
    let link = MavlinkLink::connect(MavlinkConfig::with_connection(format!("udpout:127.0.0.1:{port}"))).unwrap();
    // Position and Hold stream; nothing is executed without a vehicle.
    assert_eq!(
        link.apply(&Command::Position(vec![0.0, 0.0, 1.0, 0.0])).unwrap(),
        VehicleGate::NotConnected
    );
    assert_eq!(
        link.apply(&Command::Hold(vec![0.0, 0.0, 1.0, 0.0])).unwrap(),
        VehicleGate::NotConnected
    );
    assert!(matches!(
        link.apply(&Command::Position(vec![0.0, 0.0])),
        Err(MavlinkError::Dimension(2))
    ));
    assert!(matches!(
        link.set_setpoint_enu([0.0, f64::NAN, 1.0, 0.0]),
        Err(MavlinkError::NonFinite(_))
    ));
    std::thread::sleep(Duration::from_millis(200));
    let sent = link.counters().setpoints_sent;
    assert!(sent >= 2, "{sent}");
    // Idle stops the stream.
    link.apply(&Command::Idle).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let sent = link.counters().setpoints_sent;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(link.counters().setpoints_sent, sent);
    // Land: one command at once, then every setpoint is refused.
    link.apply(&Command::Land {
        position: vec![0.0, 0.0, 0.9, 0.0],
        descent_rate: 0.5,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(link.counters().land_commands, 1);
    assert!(matches!(link.set_setpoint_enu([0.0; 4]), Err(MavlinkError::Landing)));
    assert_eq!(link.vehicle_state().gate(), VehicleGate::Landing);
    let c = link.counters();
    assert_eq!((c.setpoints_rejected, c.setpoints_not_executed), (1, c.setpoints_sent));
    // Shutdown joins both threads promptly.
    let t = Instant::now();
    link.shutdown();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn connect_reports_bad_config_and_busy_ports() {
    let e = MavlinkLink::connect(MavlinkConfig {
        setpoint_rate_hz: 1.0,
        ..MavlinkConfig::default()
    })
    .unwrap_err();
    match e {
        MavlinkError::Config(c) => {
            assert_eq!(c.key, "setpoint_rate_hz");
            assert!(c.message.contains("PX4"), "{c}");
        }
        other => panic!("{other}"),
    }
    let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let e = MavlinkLink::connect(MavlinkConfig::with_connection(format!("udpin:127.0.0.1:{port}"))).unwrap_err();
    assert!(matches!(e, MavlinkError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[test]
fn udpin_sends_nothing_before_it_hears_someone() {
    let link = MavlinkLink::connect(MavlinkConfig::with_connection("udpin:127.0.0.1:0")).unwrap();
    link.set_setpoint_enu([0.0, 0.0, 1.0, 0.0]).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let c = link.shutdown();
    assert_eq!((c.setpoints_sent, c.heartbeats_sent), (0, 0));
    assert!(c.sends_without_peer >= 2);
}
