#!/usr/bin/env python3
"""Store a checkpoint's model.safetensors in float16 (half the bytes); riptide and LeRobot upcast on load.

    scripts/half-weights.py CHECKPOINT_DIR [--out DIR]

Only `model.safetensors` is converted (the normalizer stats stay float32: they are tiny and their min/max
set the action range exactly). Standard library only (no numpy/torch needed). Fails, naming the tensor,
if a value does not fit float16 (|x| > 65504); reports the largest relative rounding error.
"""
import argparse
import array
import json
import shutil
import struct
import sys
from pathlib import Path


def read_safetensors(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return header, raw[8 + n :]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--out", type=Path, help="write here (default: convert in place)")
    args = ap.parse_args()
    src = args.checkpoint / "model.safetensors"
    if not src.is_file():
        sys.exit(f"error: {src} not found (pass a checkpoint folder holding model.safetensors)")
    size_before = src.stat().st_size
    header, data = read_safetensors(src)
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset, worst = {}, [], 0, 0.0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        lo, hi = info["data_offsets"]
        blob = data[lo:hi]
        dtype = info["dtype"]
        if dtype == "F32":
            values = array.array("f")
            values.frombytes(blob)
            if sys.byteorder != "little":
                values.byteswap()
            try:
                blob = struct.pack(f"<{len(values)}e", *values)
            except OverflowError:
                sys.exit(f"error: tensor {name!r} has values beyond float16's range (±65504); keep it float32")
            back = struct.unpack(f"<{len(values)}e", blob)
            scale = max((abs(v) for v in values), default=0.0) or 1.0
            worst = max(worst, max((abs(a - b) / scale for a, b in zip(values, back)), default=0.0))
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    if meta is not None:
        out_header["__metadata__"] = meta
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes
    dst_dir = args.out or args.checkpoint
    if args.out:
        shutil.copytree(args.checkpoint, args.out, dirs_exist_ok=True)
    dst = dst_dir / "model.safetensors"
    dst.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))
    print(f"{dst}: {size_before} -> {dst.stat().st_size} bytes; "
          f"worst rounding error {worst:.2e} of a tensor's max |x|")


if __name__ == "__main__":
    main()
