#!/usr/bin/env python3
"""How arm-reach episodes fail: for each failed episode of a `riptide eval --env arm-reach --trace FILE` run,
the tool's lateral offset from the start→target line (m; the obstacle sits on that line, so the expert
passes it at ±(r + 0.08..0.14)), the commanded tool's offset, and the tool's clearance to the obstacle.
    scripts/arm-trace-sides.py FILE [STEPS]"""
import json
import math
import sys

LINKS = [0.40, 0.30, 0.20]  # sim/src/arm_reach.rs LINK_LENGTHS_M
TOOL_RADIUS_M = 0.02


def tip(q):
    x = y = a = 0.0
    for length, qi in zip(LINKS, q):
        a += qi
        x += length * math.cos(a)
        y += length * math.sin(a)
    return x, y


def main():
    eps = json.load(open(sys.argv[1]))
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 26
    for e in eps:
        if e["success"]:
            continue
        tx, ty, ox, oy, r = e["first_env_state"][:5]
        x0, y0 = tip(e["positions"][0])
        dx, dy = tx - x0, ty - y0
        n = math.hypot(dx, dy)

        def lateral(q):
            x, y = tip(q)
            return round((dx * (y - y0) - dy * (x - x0)) / n, 3)

        def clearance(q):
            x, y = tip(q)
            return round(math.hypot(x - ox, y - oy) - r - TOOL_RADIUS_M, 3)

        print(f"seed {e['seed']}: {e['steps']} steps, obstacle r {r:.3f} m")
        print("  tool lateral   ", [lateral(q) for q in e["positions"][:steps]])
        print("  command lateral", [lateral(q) for q in e["commands"][:steps]])
        print("  clearance      ", [clearance(q) for q in e["positions"][:steps]])


if __name__ == "__main__":
    main()
