#!/usr/bin/env python3
"""A minimal PX4-like MAVLink vehicle, an independent peer for riptide's MAVLink back-end tests.

It uses pymavlink (PyPI `pymavlink==2.4.50`), not riptide's Rust `mavlink` crate, so both ends of the wire are
checked against each other. It:

* opens a UDP endpoint on loopback (`--listen HOST:PORT`, port 0 = any free port, or `--connect HOST:PORT`) and
  prints `{"event": "ready", "port": N}` on its first stdout line;
* sends HEARTBEATs as a PX4 quadrotor (MAV_AUTOPILOT_PX4, armed flag in base_mode, PX4 main mode in custom_mode
  bits 16-23: 6 = offboard, 3 = position), and LOCAL_POSITION_NED / ATTITUDE;
* records every message it receives for `--duration` seconds after the first packet arrives, answers
  COMMAND_LONG with COMMAND_ACK (accepting ARM_DISARM, DO_SET_MODE and NAV_LAND with `--accept-commands`,
  denying them otherwise);
* prints one JSON report on its last stdout line (`--format toml`: one TOML line, `report = {...}`, NaN kept).
"""

import argparse
import json
import math
import os
import sys
import time

# MAVLink 2 and the common dialect, before pymavlink is imported.
os.environ["MAVLINK20"] = "1"
os.environ["MAVLINK_DIALECT"] = "common"

from pymavlink import mavutil  # noqa: E402

mav = mavutil.mavlink

PX4_MAIN_POSCTL = 3
PX4_MAIN_AUTO = 4
PX4_MAIN_OFFBOARD = 6
PX4_SUB_AUTO_LAND = 6


def json_safe(v):
    """NaN/inf (not JSON) become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def toml_value(v):
    """One-line TOML (inline tables), for readers without a JSON parser; None values are left out."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items() if x is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(v))


def emit(kind, body, fmt):
    if fmt == "toml":
        print(f"{kind} = {toml_value(body)}", flush=True)
    else:
        print(json.dumps(dict(event=kind, **json_safe(body))), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ep = ap.add_mutually_exclusive_group()
    ep.add_argument("--listen", default=None, help="udpin HOST:PORT (default 127.0.0.1:0)")
    ep.add_argument("--connect", default=None, help="udpout HOST:PORT")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds to record after the first packet")
    ap.add_argument("--wait", type=float, default=15.0, help="seconds to wait for the first packet")
    ap.add_argument("--sysid", type=int, default=1)
    ap.add_argument("--compid", type=int, default=1)
    ap.add_argument("--armed", action="store_true", help="start armed")
    ap.add_argument("--offboard", action="store_true", help="start in offboard mode")
    ap.add_argument("--accept-commands", action="store_true", help="obey ARM/DO_SET_MODE/NAV_LAND")
    ap.add_argument("--heartbeat-hz", type=float, default=2.0)
    ap.add_argument("--heartbeat-stop-after", type=float, default=None, help="go silent after this many seconds")
    ap.add_argument("--local-ned", type=float, nargs=3, default=[0.0, 0.0, 0.0], metavar=("X", "Y", "Z"))
    ap.add_argument("--velocity-ned", type=float, nargs=3, default=[0.0, 0.0, 0.0], metavar=("VX", "VY", "VZ"))
    ap.add_argument("--yaw-ned", type=float, default=0.0)
    ap.add_argument("--garbage", action="store_true", help="also send malformed packets")
    ap.add_argument("--format", choices=["json", "toml"], default="json", help="stdout format (one line each)")
    args = ap.parse_args()

    if args.connect:
        conn = mavutil.mavlink_connection(
            "udpout:" + args.connect, source_system=args.sysid, source_component=args.compid
        )
        port = int(args.connect.rsplit(":", 1)[1])
    else:
        conn = mavutil.mavlink_connection(
            "udpin:" + (args.listen or "127.0.0.1:0"), source_system=args.sysid, source_component=args.compid
        )
        port = conn.port.getsockname()[1]
    emit("ready", {"port": port}, args.format)

    state = {"armed": args.armed, "main": PX4_MAIN_OFFBOARD if args.offboard else PX4_MAIN_POSCTL, "sub": 0}

    def heartbeat():
        base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED | mav.MAV_MODE_FLAG_STABILIZE_ENABLED
        if state["armed"]:
            base |= mav.MAV_MODE_FLAG_SAFETY_ARMED
        custom = (state["main"] << 16) | (state["sub"] << 24)
        status = mav.MAV_STATE_ACTIVE if state["armed"] else mav.MAV_STATE_STANDBY
        conn.mav.heartbeat_send(mav.MAV_TYPE_QUADROTOR, mav.MAV_AUTOPILOT_PX4, base, custom, status)

    def can_send():
        # A udpin endpoint knows where to send only once something arrived.
        return args.connect is not None or bool(conn.clients)

    setpoints = []  # [t, x, y, z, yaw]
    sp_first = None
    sp_last = None
    sp_fields = set()
    hb = {"count": 0, "first_t": None, "last_t": None, "type": None, "autopilot": None, "src": None}
    commands = []
    received = {}
    bad_data = 0
    src_ids = set()
    land_t = None
    setpoints_after_land = 0

    t_first = None
    deadline = time.monotonic() + args.wait
    next_hb = time.monotonic()
    next_pos = time.monotonic()
    garbage_sent = False
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        t = None if t_first is None else now - t_first
        silent = args.heartbeat_stop_after is not None and t is not None and t >= args.heartbeat_stop_after
        if can_send() and not silent:
            if now >= next_hb:
                heartbeat()
                next_hb = now + 1.0 / args.heartbeat_hz
            if now >= next_pos:
                x, y, z = args.local_ned
                vx, vy, vz = args.velocity_ned
                boot_ms = int(now * 1000) & 0xFFFFFFFF
                conn.mav.local_position_ned_send(boot_ms, x, y, z, vx, vy, vz)
                conn.mav.attitude_send(boot_ms, 0.0, 0.0, args.yaw_ned, 0.0, 0.0, 0.0)
                next_pos = now + 0.1
            if args.garbage and not garbage_sent and t is not None and t > 0.2:
                garbage_sent = True
                addr = next(iter(conn.clients)) if args.connect is None else conn.destination_addr
                conn.port.sendto(b"\xfd\x09\x00\x00garbage-that-is-not-mavlink", addr)
                conn.port.sendto(bytes(range(256)), addr)
                # A well-formed frame whose HEARTBEAT carries an out-of-range MAV_TYPE (250): a parse error.
                conn.mav.heartbeat_send(250, mav.MAV_AUTOPILOT_PX4, 0, 0, mav.MAV_STATE_ACTIVE)
        msg = conn.recv_match(blocking=True, timeout=0.005)
        if msg is None:
            continue
        now = time.monotonic()
        if t_first is None:
            t_first = now
            deadline = now + args.duration
        t = now - t_first
        mtype = msg.get_type()
        if mtype == "BAD_DATA":
            bad_data += 1
            continue
        received[mtype] = received.get(mtype, 0) + 1
        src_ids.add((msg.get_srcSystem(), msg.get_srcComponent()))
        if mtype == "SET_POSITION_TARGET_LOCAL_NED":
            fields = {
                "time_boot_ms": msg.time_boot_ms,
                "target_system": msg.target_system,
                "target_component": msg.target_component,
                "frame": msg.coordinate_frame,
                "type_mask": msg.type_mask,
                "x": msg.x,
                "y": msg.y,
                "z": msg.z,
                "yaw": msg.yaw,
                "vx": msg.vx,
                "yaw_rate": msg.yaw_rate,
            }
            if sp_first is None:
                sp_first = fields
            sp_last = fields
            sp_fields.add((msg.coordinate_frame, msg.type_mask, msg.target_system, msg.target_component))
            setpoints.append([t, msg.x, msg.y, msg.z, msg.yaw])
            if land_t is not None:
                setpoints_after_land += 1
        elif mtype == "HEARTBEAT":
            hb["count"] += 1
            hb["first_t"] = t if hb["first_t"] is None else hb["first_t"]
            hb["last_t"] = t
            hb["type"] = msg.type
            hb["autopilot"] = msg.autopilot
            hb["src"] = [msg.get_srcSystem(), msg.get_srcComponent()]
        elif mtype == "COMMAND_LONG":
            params = [msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6, msg.param7]
            commands.append(
                {
                    "t": t,
                    "command": msg.command,
                    "confirmation": msg.confirmation,
                    "target_system": msg.target_system,
                    "target_component": msg.target_component,
                    "params": params,
                    "setpoints_before": len(setpoints),
                    "vehicle_armed": state["armed"],
                    "vehicle_main_mode": state["main"],
                }
            )
            result = mav.MAV_RESULT_DENIED
            if args.accept_commands:
                if msg.command == mav.MAV_CMD_COMPONENT_ARM_DISARM:
                    state["armed"] = msg.param1 == 1.0
                    result = mav.MAV_RESULT_ACCEPTED
                elif msg.command == mav.MAV_CMD_DO_SET_MODE:
                    state["main"], state["sub"] = int(msg.param2), int(msg.param3)
                    result = mav.MAV_RESULT_ACCEPTED
                elif msg.command == mav.MAV_CMD_NAV_LAND:
                    state["main"], state["sub"] = PX4_MAIN_AUTO, PX4_SUB_AUTO_LAND
                    result = mav.MAV_RESULT_ACCEPTED
                    land_t = t
            conn.mav.command_ack_send(
                msg.command, result, 0, 0, msg.get_srcSystem(), msg.get_srcComponent()
            )
            heartbeat()  # Report the new state at once.

    rate = None
    if len(setpoints) >= 2 and setpoints[-1][0] > setpoints[0][0]:
        rate = (len(setpoints) - 1) / (setpoints[-1][0] - setpoints[0][0])
    gaps = [b[0] - a[0] for a, b in zip(setpoints, setpoints[1:])]
    report = {
        "first_packet": t_first is not None,
        "duration_s": args.duration,
        "setpoints": {
            "count": len(setpoints),
            "rate_hz": rate,
            "max_gap_s": max(gaps) if gaps else None,
            "first": sp_first,
            "last": sp_last,
            "distinct_frame_mask_target": sorted(list(f) for f in sp_fields),
            "first_t": setpoints[0][0] if setpoints else None,
            "last_t": setpoints[-1][0] if setpoints else None,
            "after_land": setpoints_after_land,
        },
        "heartbeats": hb,
        "commands": commands,
        "received": received,
        "bad_data": bad_data,
        "sources": sorted(list(s) for s in src_ids),
        "final_state": {"armed": state["armed"], "main_mode": state["main"], "sub_mode": state["sub"]},
    }
    emit("report", report, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
