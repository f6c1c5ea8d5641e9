"""An independent remote-inference client (Python zenoh + safetensors), used by tests/tests/remote.rs.

Connects as a zenoh client to the daemon at tcp/127.0.0.1:PORT, waits for its liveliness token, and sends
`NS/infer` queries with `session.get` (with a timeout): each row of a LeRobot fixture's inputs as its own
query, then malformed ones. Prints one JSON object: for each good query the reply's tensors and chunk
metadata (read from the safetensors header by hand), for each bad one the error reply's text.

usage: remote_query.py PORT NS FIXTURE_DIR
"""
import json
import struct
import sys
import time

import numpy as np
import zenoh
from safetensors.numpy import load, load_file, save

port, ns, fixture = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conf = zenoh.Config()
conf.insert_json5("mode", '"client"')
conf.insert_json5("connect/endpoints", json.dumps([f"tcp/127.0.0.1:{port}"]))
conf.insert_json5("scouting/multicast/enabled", "false")


def header_metadata(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]).get("__metadata__", {})


def ask(session, payload: bytes) -> dict:
    replies = list(session.get(f"{ns}/infer", payload=payload, timeout=60.0))
    if len(replies) != 1:
        return {"replies": len(replies)}
    reply = replies[0]
    if reply.ok is not None:
        data = reply.ok.payload.to_bytes()
        tensors = load(data)
        meta = header_metadata(data)
        return {
            "ok": {k: v.astype(np.float64).tolist() for k, v in tensors.items()},
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "chunk_meta": json.loads(meta["chunk_meta"]),
            "key": str(reply.ok.key_expr),
        }
    return {"err": reply.err.payload.to_bytes().decode("utf-8")}


with zenoh.open(conf) as session:
    deadline = time.time() + 60
    while not list(session.liveliness().get(f"{ns}/alive/daemon", timeout=2.0)):
        if time.time() > deadline:
            sys.exit("the daemon's liveliness token never appeared")
    inputs = load_file(f"{fixture}/inputs.safetensors")
    rows = inputs["noise"].shape[0]
    out = {"rows": []}
    for i in range(rows):
        one = {k: np.ascontiguousarray(v[i : i + 1]) for k, v in inputs.items()}
        out["rows"].append(ask(session, save(one, metadata={"seed": str(100 + i)})))
    out["garbage"] = ask(session, b"\x00\x01 this is not a safetensors file")
    out["empty"] = ask(session, b"")
    out["batch"] = ask(session, save({k: np.ascontiguousarray(v) for k, v in inputs.items()}))
    missing = {k: np.ascontiguousarray(v[:1]) for k, v in inputs.items() if k != "observation.state"}
    out["missing"] = ask(session, save(missing))
    nan = {k: np.ascontiguousarray(v[:1]).copy() for k, v in inputs.items()}
    nan["observation.state"][0, 0, 0] = np.nan
    out["nan"] = ask(session, save(nan))
    out["bad_seed"] = ask(session, save({k: np.ascontiguousarray(v[:1]) for k, v in inputs.items()}, metadata={"seed": "soon"}))
    # Still answering after the bad ones.
    out["after"] = ask(session, save({k: np.ascontiguousarray(v[:1]) for k, v in inputs.items()}))
json.dump(out, sys.stdout)
