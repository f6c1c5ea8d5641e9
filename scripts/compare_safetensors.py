#!/usr/bin/env python3
"""Max |a - b| per tensor between two safetensors files (f32 only), standard library only.

Used by scripts/device-check.sh on the GPU machine, which has no safetensors package:
    compare_safetensors.py GOT.safetensors WANT.safetensors [KEY ...]
Prints one JSON line: {"key": {"max_abs": .., "max_ref": ..}, ...}.
"""
import json
import struct
import sys
from array import array


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for key, meta in header.items():
        if key == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        v = array("f")
        v.frombytes(body[a:b])
        if sys.byteorder != "little":
            v.byteswap()
        out[key] = (meta["shape"], v)
    return out


def main():
    got, want = read(sys.argv[1]), read(sys.argv[2])
    keys = sys.argv[3:] or sorted(set(got) & set(want))
    res = {}
    for k in keys:
        (gs, g), (ws, w) = got[k], want[k]
        if gs != ws:
            res[k] = {"shape_mismatch": [gs, ws]}
            continue
        res[k] = {
            "max_abs": max((abs(x - y) for x, y in zip(g, w)), default=0.0),
            "max_ref": max((abs(y) for y in w), default=0.0),
        }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
