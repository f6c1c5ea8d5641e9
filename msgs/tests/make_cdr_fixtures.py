#!/usr/bin/env python3
"""Generate CDR golden fixtures for riptide-msgs with an independent encoder.

Encoder: the pure-Python `rosbags` package (fixtures generated with rosbags 0.11.9, see requirements.txt),
via its typestore API: `get_typestore(Stores.ROS2_HUMBLE).serialize_cdr(msg, typename)` (CDR_LE with the
4-byte encapsulation header 00 01 00 00, XCDR1 alignment as used by ROS 2 / rmw_zenoh). The ros2msg schema
text comes from `typestore.generate_msgdef(typename, ros_version=2)`, i.e. what rosbags writes into MCAP.

Writes tests/fixtures/cdr_fixtures.json: {"cases": {name: {type, value, cdr_hex}}, "schemas": {type: text}}. The Rust test
tests/cdr_roundtrip.rs builds the same values by hand and checks encode/decode against the bytes.

    python3 -m venv /tmp/cdrvenv && /tmp/cdrvenv/bin/pip install -r msgs/tests/requirements.txt
    /tmp/cdrvenv/bin/python msgs/tests/make_cdr_fixtures.py
"""

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from rosbags.typesys.base import Nodetype

# Keep in sync with `ChunkMeta::MSG_DEFINITION` in src/ros.rs.
CHUNK_META_MSG = """\
uint64 inference_id
string policy_kind
uint32 nfe
bool warm_started
uint64 seed
builtin_interfaces/Time obs_stamp
float64 decode_s
float64 window_s
float64 inference_s
float64 publish_s
float64 total_s
"""

DTYPES = {
    "bool": np.bool_,
    "byte": np.uint8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}

store = get_typestore(Stores.ROS2_HUMBLE)
store.register(get_types_from_msg(CHUNK_META_MSG, "riptide_msgs/msg/ChunkMeta"))


def build(typename, value):
    """Turn a JSON-like dict into a rosbags message object, checking every field is given."""
    _, fields = store.fielddefs[typename]
    names = [name for name, _ in fields]
    assert sorted(names) == sorted(value), (typename, names, list(value))
    kwargs = {}
    for name, (kind, spec) in fields:
        v = value[name]
        if kind == Nodetype.NAME:
            kwargs[name] = build(spec, v)
        elif kind == Nodetype.BASE:
            kwargs[name] = v
        elif kind in (Nodetype.SEQUENCE, Nodetype.ARRAY):
            (ekind, espec), _ = spec
            if ekind == Nodetype.NAME:
                kwargs[name] = [build(espec, e) for e in v]
            elif espec[0] == "string":
                kwargs[name] = list(v)
            else:
                kwargs[name] = np.array(v, dtype=DTYPES[espec[0]])
        else:
            raise TypeError(f"unhandled field kind {kind} for {typename}.{name}")
    return store.types[typename](**kwargs)


def time(sec, nanosec):
    return {"sec": sec, "nanosec": nanosec}


def header(sec, nanosec, frame_id):
    return {"stamp": time(sec, nanosec), "frame_id": frame_id}


def vec3(x, y, z):
    return {"x": x, "y": y, "z": z}


def quat(x, y, z, w):
    return {"x": x, "y": y, "z": z, "w": w}


POINT = vec3(1.25, -2.5, 3.0)
QUAT = quat(0.0, 0.0, 0.7071067811865476, 0.7071067811865476)
POSE = {"position": POINT, "orientation": QUAT}
TWIST = {"linear": vec3(0.1, 0.0, -0.2), "angular": vec3(0.0, 0.5, 1.5)}
TRANSFORM = {"translation": vec3(0.3, -0.1, 0.45), "rotation": quat(1.0, 0.0, 0.0, 0.0)}
UNICODE_FRAME = "cámara_ü/🤖"

CASES = [
    ("time", "builtin_interfaces/msg/Time", time(1_700_000_000, 123_456_789)),
    ("time_negative", "builtin_interfaces/msg/Time", time(-5, 999_999_999)),
    ("duration", "builtin_interfaces/msg/Duration", time(2, 500_000_000)),
    ("header", "std_msgs/msg/Header", header(1_700_000_001, 5, UNICODE_FRAME)),
    ("header_empty_frame", "std_msgs/msg/Header", header(0, 0, "")),
    ("string", "std_msgs/msg/String", {"data": "hello, riptide ✓"}),
    ("string_empty", "std_msgs/msg/String", {"data": ""}),
    ("clock", "rosgraph_msgs/msg/Clock", {"clock": time(42, 7)}),
    (
        "multi_array_dimension",
        "std_msgs/msg/MultiArrayDimension",
        {"label": "dof", "size": 7, "stride": 7},
    ),
    (
        "multi_array_layout",
        "std_msgs/msg/MultiArrayLayout",
        {"dim": [{"label": "x", "size": 3, "stride": 3}], "data_offset": 1},
    ),
    (
        "float32_multi_array",
        "std_msgs/msg/Float32MultiArray",
        {
            "layout": {
                "dim": [
                    {"label": "chunk", "size": 16, "stride": 112},
                    {"label": "dof", "size": 7, "stride": 7},
                ],
                "data_offset": 3,
            },
            "data": [1.5, -0.25, 3.140625, 0.0, -1024.0],
        },
    ),
    (
        "float32_multi_array_empty",
        "std_msgs/msg/Float32MultiArray",
        {"layout": {"dim": [], "data_offset": 0}, "data": []},
    ),
    (
        "image_rgb8",
        "sensor_msgs/msg/Image",
        {
            "header": header(1_700_000_002, 250_000_000, UNICODE_FRAME),
            "height": 2,
            "width": 3,
            "encoding": "rgb8",
            "is_bigendian": 0,
            "step": 9,
            "data": list(range(0, 18 * 13, 13)),
        },
    ),
    (
        "image_mono8_padded",
        "sensor_msgs/msg/Image",
        {
            "header": header(10, 20, "wrist_cam"),
            "height": 2,
            "width": 3,
            "encoding": "mono8",
            "is_bigendian": 0,
            "step": 4,
            "data": [0, 127, 255, 0, 1, 2, 3, 0],
        },
    ),
    (
        # 3-char encoding: string ends mid-word, then a u8, then a u32 that needs alignment padding.
        "image_odd_encoding",
        "sensor_msgs/msg/Image",
        {
            "header": header(0, 1, "a"),
            "height": 0,
            "width": 0,
            "encoding": "bgr",
            "is_bigendian": 1,
            "step": 0,
            "data": [],
        },
    ),
    (
        "joint_state",
        "sensor_msgs/msg/JointState",
        {
            "header": header(1_700_000_003, 999_999_999, "base_link"),
            "name": ["joint_1", "j2", "gripper"],
            "position": [0.1, -1.5707963267948966, 0.04],
            "velocity": [],
            "effort": [0.5],
        },
    ),
    ("point", "geometry_msgs/msg/Point", POINT),
    ("quaternion", "geometry_msgs/msg/Quaternion", QUAT),
    ("pose", "geometry_msgs/msg/Pose", POSE),
    ("pose_stamped", "geometry_msgs/msg/PoseStamped", {"header": header(3, 4, "map"), "pose": POSE}),
    ("vector3", "geometry_msgs/msg/Vector3", vec3(-0.5, 0.25, 1e-9)),
    ("twist", "geometry_msgs/msg/Twist", TWIST),
    ("twist_stamped", "geometry_msgs/msg/TwistStamped", {"header": header(5, 6, "tool0"), "twist": TWIST}),
    ("transform", "geometry_msgs/msg/Transform", TRANSFORM),
    (
        "joint_trajectory_point",
        "trajectory_msgs/msg/JointTrajectoryPoint",
        {
            "positions": [0.0, 1.0, 2.0],
            "velocities": [0.5],
            "accelerations": [],
            "effort": [-0.125, 0.25],
            "time_from_start": time(0, 33_333_333),
        },
    ),
    (
        "joint_trajectory",
        "trajectory_msgs/msg/JointTrajectory",
        {
            "header": header(1_700_000_004, 1, "base"),
            "joint_names": ["shoulder", "elbow"],
            "points": [
                {
                    "positions": [0.1, 0.2],
                    "velocities": [],
                    "accelerations": [],
                    "effort": [],
                    "time_from_start": time(0, 0),
                },
                {
                    "positions": [0.15, 0.25],
                    "velocities": [0.5, 0.5],
                    "accelerations": [0.0, -0.1],
                    "effort": [1.0],
                    "time_from_start": time(0, 100_000_000),
                },
            ],
        },
    ),
    (
        "joint_trajectory_empty",
        "trajectory_msgs/msg/JointTrajectory",
        {"header": header(0, 0, ""), "joint_names": [], "points": []},
    ),
    (
        "multi_dof_joint_trajectory_point",
        "trajectory_msgs/msg/MultiDOFJointTrajectoryPoint",
        {
            "transforms": [TRANSFORM],
            "velocities": [TWIST, TWIST],
            "accelerations": [],
            "time_from_start": time(1, 5),
        },
    ),
    (
        "multi_dof_joint_trajectory",
        "trajectory_msgs/msg/MultiDOFJointTrajectory",
        {
            "header": header(7, 8, "odom"),
            "joint_names": ["virtual_joint"],
            "points": [
                {"transforms": [TRANSFORM], "velocities": [], "accelerations": [], "time_from_start": time(0, 1)},
                {"transforms": [], "velocities": [TWIST], "accelerations": [TWIST], "time_from_start": time(2, 0)},
            ],
        },
    ),
    (
        "chunk_meta",
        "riptide_msgs/msg/ChunkMeta",
        {
            "inference_id": (1 << 40) + 3,
            "policy_kind": "flow_matching",
            "nfe": 10,
            "warm_started": True,
            "seed": 0xDEADBEEFCAFEF00D,
            "obs_stamp": time(1_700_000_005, 123),
            "decode_s": 0.0015,
            "window_s": 0.00025,
            "inference_s": 0.042,
            "publish_s": 0.0001,
            "total_s": 0.04385,
        },
    ),
    (
        "chunk_meta_cold",
        "riptide_msgs/msg/ChunkMeta",
        {
            "inference_id": 0,
            "policy_kind": "ddim",
            "nfe": 1,
            "warm_started": False,
            "seed": 18446744073709551615,
            "obs_stamp": time(0, 0),
            "decode_s": 0.0,
            "window_s": 0.0,
            "inference_s": 0.0,
            "publish_s": 0.0,
            "total_s": 0.0,
        },
    ),
]


def main():
    out = {
        "_generator": f"msgs/tests/make_cdr_fixtures.py with rosbags {version('rosbags')}",
        "cases": {},
        "schemas": {},
    }
    for name, typename, value in CASES:
        msg = build(typename, value)
        cdr = bytes(store.serialize_cdr(msg, typename))
        back = store.deserialize_cdr(cdr, typename)
        assert bytes(store.serialize_cdr(back, typename)) == cdr, name
        out["cases"][name] = {"type": typename, "value": value, "cdr_hex": cdr.hex()}
        out["schemas"][typename], _md5 = store.generate_msgdef(typename, ros_version=2)
    path = Path(__file__).resolve().parent / "fixtures" / "cdr_fixtures.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main()
