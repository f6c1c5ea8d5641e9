"""An independent rmw_zenoh-style ROS 2 peer (eclipse-zenoh + rosbags), used by tests/tests/ros2.rs.

It does what an rmw_zenoh node does, from the contract in rmw_zenoh's docs/design.md, without riptide's code:
a zenoh client of the router; data keys `<domain>/<name>/<pkg>::msg::dds_::<Type>_/RIHS01_<hash>` with hashes
from rosbags' type store (riptide_msgs/ChunkMeta registered from the colcon package's .msg file); the 33-byte
attachment (i64 LE sequence number, i64 LE ns timestamp, 0x10, 16-byte GID) on every sample; CDR from rosbags.

1. Waits for riptide's nodes on the graph and checks their liveliness tokens byte by byte (node tokens, and the
   publisher/subscription tokens of the topics below with the QoS field of reliable/volatile/keep-last 10).
2. Publishes observations for the daemon (/riptide/observation/{state,environment_state}), /joint_states for the
   jtc driver (names shuffled, one extra joint) and a camera image (/camera/image_raw) for the recorder.
3. Receives the daemon's chunks (/riptide/action/chunk, .../meta) and the driver's trajectories
   (/<controller>/joint_trajectory), and checks key, attachment and payload of each.
4. Sends what a peer may get wrong: another distro's hash, a malformed attachment, another type on the topic,
   a sequence gap, a truncated payload, a joint state that lacks a joint.

usage: ros2_peer.py CONFIG_JSON  (port, domain, state, env_state, position, joint_names, controller,
position_min, position_max, chunk_meta_msg). Prints one JSON object; exits 1 if any check failed.
"""
import hashlib
import json
import os
import re
import struct
import sys
import time

import numpy as np
import zenoh
from rosbags.typesys import Stores, get_types_from_msg, get_typestore



def main():
    cfg = json.loads(sys.argv[1])
    port, domain = cfg["port"], cfg["domain"]
    store = get_typestore(Stores.ROS2_JAZZY)
    with open(cfg["chunk_meta_msg"]) as f:
        store.register(get_types_from_msg(f.read(), "riptide_msgs/msg/ChunkMeta"))
    T = store.types
    errors = []


    def log(*a):
        print(*a, file=sys.stderr, flush=True)


    def check(ok, what):
        if not ok:
            errors.append(what)
        return ok


    def dds(type_name):
        pkg, _, name = type_name.split("/")
        return f"{pkg}::msg::dds_::{name}_"


    def data_key(name, type_name, hash_=None):
        return f"{domain}/{name[1:]}/{dds(type_name)}/{hash_ or store.hash_rihs01(type_name)}"


    def mangle(field):
        return field.replace("/", "%") if field else "%"


    QOS = "::,10:,:,:,,"  # reliable, volatile, keep-last 10: only what differs from rmw_zenoh's defaults


    def endpoint_token_re(kind, node, name, type_name):
        return re.compile(
            rf"^@ros2_lv/{domain}/[0-9a-f]+/(\d+)/(\d+)/{kind}/%/%/{node}/{re.escape(mangle(name))}/"
            rf"{re.escape(dds(type_name))}/{re.escape(store.hash_rihs01(type_name))}/{re.escape(QOS)}$"
        )


    def attachment(seq, gid):
        return struct.pack("<qqB16s", seq, time.time_ns(), 16, gid)


    def parse_attachment(raw):
        if not check(raw is not None and len(raw) == 33, f"attachment of 33 bytes, got {None if raw is None else len(raw)}"):
            return None
        seq, ts, n, gid = struct.unpack("<qqB16s", raw)
        check(n == 16, f"GID length byte 0x10, got {n:#x}")
        check(abs(ts - time.time_ns()) < 10e9, f"source timestamp near now: {ts}")
        return seq, gid


    def stamp_now():
        t = time.time()
        return T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int((t % 1) * 1e9))


    def header():
        return T["std_msgs/msg/Header"](stamp=stamp_now(), frame_id="")


    def joint_state(names, values):
        return T["sensor_msgs/msg/JointState"](
            header=header(),
            name=list(names),
            position=np.array(values, dtype=np.float64),
            velocity=np.array([], dtype=np.float64),
            effort=np.array([], dtype=np.float64),
        )


    conf = zenoh.Config()
    conf.insert_json5("mode", '"client"')
    conf.insert_json5("connect/endpoints", json.dumps([f"tcp/127.0.0.1:{port}"]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    session = zenoh.open(conf)
    zid = str(session.info.zid())

    # 1. riptide on the graph.
    wanted_nodes = {"riptide_daemon", "riptide_driver", "riptide_record"}
    JS, JT, IMG = "sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory", "sensor_msgs/msg/Image"
    META, EMPTY = "riptide_msgs/msg/ChunkMeta", "std_msgs/msg/Empty"
    traj_topic = f"/{cfg['controller']}/joint_trajectory"
    expected_endpoints = [
        ("MS", "riptide_daemon", "/riptide/observation/state", JS),
        ("MS", "riptide_daemon", "/riptide/observation/environment_state", JS),
        ("MP", "riptide_daemon", "/riptide/action/chunk", JT),
        ("MP", "riptide_daemon", "/riptide/action/chunk/meta", META),
        ("MS", "riptide_driver", "/riptide/action/chunk", JT),
        ("MS", "riptide_driver", "/riptide/estop", EMPTY),
        ("MS", "riptide_driver", "/joint_states", JS),
        ("MP", "riptide_driver", traj_topic, JT),
        ("MS", "riptide_record", "/camera/image_raw", IMG),
    ]
    t_start = time.time()
    deadline = t_start + 60
    tokens = []
    while time.time() < deadline:
        tokens = [str(r.ok.key_expr) for r in session.liveliness().get(f"@ros2_lv/{domain}/**", timeout=2.0) if r.ok]
        nodes = {t.rsplit("/", 1)[1] for t in tokens if "/NN/" in t}
        if wanted_nodes <= nodes and all(any(endpoint_token_re(*e).match(t) for t in tokens) for e in expected_endpoints):
            break
        time.sleep(0.2)
    log(f"graph: {len(tokens)} tokens after {time.time() - t_start:.1f} s")
    for t in sorted(tokens):
        log("  ", t)
    node_re = re.compile(rf"^@ros2_lv/{domain}/[0-9a-f]+/(\d+)/(\d+)/NN/%/%/(riptide_\w+)$")
    for n in wanted_nodes:
        m = [node_re.match(t) for t in tokens if t.endswith(f"/NN/%/%/{n}")]
        check(len(m) == 1 and m[0] and m[0].group(1) == m[0].group(2), f"one node token for {n} with nid twice: {tokens}")
    for e in expected_endpoints:
        check(any(endpoint_token_re(*e).match(t) for t in tokens), f"token {e} among {tokens}")

    # Our own presence, as an rmw_zenoh node: node token, and a token per publisher.
    my_gid = hashlib.sha256(zid.encode()).digest()[:16]
    live = [session.liveliness().declare_token(f"@ros2_lv/{domain}/{zid}/0/0/NN/%/%/py_peer")]
    for i, (name, t) in enumerate(
        [
            ("/riptide/observation/state", JS),
            ("/riptide/observation/environment_state", JS),
            ("/joint_states", JS),
            ("/camera/image_raw", IMG),
        ]
    ):
        live.append(
            session.liveliness().declare_token(
                f"@ros2_lv/{domain}/{zid}/0/{i + 1}/MP/%/%/py_peer/{mangle(name)}/{dds(t)}/{store.hash_rihs01(t)}/{QOS}"
            )
        )

    # 3. What riptide sends.
    received = {"chunk": [], "meta": [], "traj": []}


    def on(kind, type_name, expected_key):
        def cb(sample):
            check(str(sample.key_expr) == expected_key, f"{kind} key {sample.key_expr}")
            a = parse_attachment(sample.attachment.to_bytes() if sample.attachment is not None else None)
            try:
                msg = store.deserialize_cdr(sample.payload.to_bytes(), type_name)
            except Exception as e:  # noqa: BLE001
                check(False, f"{kind}: rosbags cannot decode the payload: {e}")
                return
            received[kind].append((a, msg))

        return cb


    subs = [
        session.declare_subscriber(data_key("/riptide/action/chunk", JT), on("chunk", JT, data_key("/riptide/action/chunk", JT))),
        session.declare_subscriber(
            data_key("/riptide/action/chunk/meta", META), on("meta", META, data_key("/riptide/action/chunk/meta", META))
        ),
        session.declare_subscriber(data_key(traj_topic, JT), on("traj", JT, data_key(traj_topic, JT))),
    ]
    time.sleep(0.5)

    # 2. Observations, joint states and camera frames.
    seq = {}


    def put(name, type_name, msg, hash_=None, att=None, payload=None):
        seq[name] = seq.get(name, 0) + 1
        data = bytes(payload if payload is not None else store.serialize_cdr(msg, type_name))
        session.put(data_key(name, type_name, hash_), data, attachment=att if att is not None else attachment(seq[name], my_gid))
        return data


    names = cfg["joint_names"]
    shuffled = ["gripper_joint", names[2], names[0], names[1]]
    position = cfg["position"]
    images = []
    deadline = time.time() + 90
    k = 0
    while time.time() < deadline:
        put("/riptide/observation/environment_state", JS, joint_state([], cfg["env_state"]))
        put("/riptide/observation/state", JS, joint_state([], cfg["state"]))
        put("/joint_states", JS, joint_state(shuffled, [0.5, position[2], position[0], position[1]]))
        if k % 5 == 0:
            pixels = np.arange(4 * 3 * 3, dtype=np.uint8) + k % 200
            img = T[IMG](header=header(), height=3, width=4, encoding="rgb8", is_bigendian=0, step=12, data=pixels)
            images.append(hashlib.sha256(put("/camera/image_raw", IMG, img)).hexdigest())
        k += 1
        if len(received["chunk"]) >= 3 and len(received["meta"]) >= 2 and len(received["traj"]) >= 2 and len(images) >= 2:
            break
        time.sleep(0.05)

    log(f"received: {[(k, len(v)) for k, v in received.items()]}, {len(images)} images, {k} rounds")
    # 4. Wrong on purpose (each counted by riptide, none fatal).
    state = joint_state([], cfg["state"])
    put("/riptide/observation/state", JS, state, hash_="TypeHashNotSupported")  # a Humble peer
    put("/riptide/observation/state", JS, state, att=b"\x01\x02\x03")  # malformed attachment
    string_msg = T["std_msgs/msg/String"](data="not a joint state")
    session.put(
        f"{domain}/riptide/observation/state/{dds('std_msgs/msg/String')}/{store.hash_rihs01('std_msgs/msg/String')}",
        bytes(store.serialize_cdr(string_msg, "std_msgs/msg/String")),
        attachment=attachment(1, my_gid),
    )  # another type on the topic
    seq["/riptide/observation/state"] += 4  # four samples "lost"
    put("/riptide/observation/state", JS, state)
    put("/riptide/observation/state", JS, None, payload=bytes(store.serialize_cdr(state, JS))[:10])  # truncated
    put("/joint_states", JS, joint_state([names[0], names[1]], [position[0], position[1]]))  # lacks a joint
    time.sleep(0.2)
    put("/joint_states", JS, joint_state(names, cfg["final_position"]))  # where the arm is when riptide stops
    time.sleep(1.0)

    # Checks on what arrived.
    for kind in ("chunk", "meta", "traj"):
        got = received[kind]
        seqs = [a[0] for a, _ in got if a]
        check(len(got) >= 2, f"{kind}: {len(got)} samples")
        check(seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False, f"{kind}: sequence {seqs}")
        check(len({a[1] for a, _ in got if a}) == 1, f"{kind}: one GID")
    for _, jt in received["chunk"]:
        check(len(jt.points) > 0 and all(len(p.positions) == len(names) for p in jt.points), "chunk points")
    for _, m in received["meta"]:
        check(m.nfe > 0 and m.policy_kind != "", f"meta {m}")
    lo, hi = cfg["position_min"], cfg["position_max"]
    trajectories = []
    for _, jt in received["traj"]:
        check(list(jt.joint_names) == names, f"trajectory joint names {jt.joint_names}")
        stamp = jt.header.stamp.sec + jt.header.stamp.nanosec * 1e-9
        check(abs(stamp - time.time()) < 30, f"trajectory stamp {stamp}")
        tfs = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in jt.points]
        check(len(tfs) > 0 and tfs[0] > 0 and all(b > a for a, b in zip(tfs, tfs[1:])), f"time_from_start {tfs}")
        for p in jt.points:
            check(
                all(lo[d] - 1e-9 <= p.positions[d] <= hi[d] + 1e-9 and np.isfinite(p.positions[d]) for d in range(len(names))),
                f"point {list(p.positions)} inside the envelope",
            )
        trajectories.append({"points": len(tfs), "first_s": tfs[0] if tfs else None, "last_s": tfs[-1] if tfs else None})

    print(
        json.dumps(
            {
                "tokens": len(tokens),
                "chunks": len(received["chunk"]),
                "metas": len(received["meta"]),
                "trajectories": trajectories,
                "images_sha256": images,
                "errors": errors,
            }
        )
    )
    for s in subs:
        s.undeclare()
    for t in live:
        t.undeclare()
    session.close()
    sys.stdout.flush()
    os._exit(1 if errors else 0)


try:
    main()
except Exception:  # noqa: BLE001 -- report and exit at once (a zenoh session must not hold the exit)
    import traceback

    traceback.print_exc()
    print(json.dumps({"errors": ["the peer crashed: " + traceback.format_exc().splitlines()[-1]]}), flush=True)
    os._exit(1)
