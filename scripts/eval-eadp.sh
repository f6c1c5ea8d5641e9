#!/usr/bin/env bash
# EADP guidance vs none in the quadrotor sim (gusts on: each seed draws a mean wind and OU gusts), same
# seeds, one run:   scripts/eval-eadp.sh CHECKPOINT [EPISODES] [SCALES...]
# Prints success, tracking error (m, drone position after each step vs that step's setpoint) and the
# controller model's tracking cost J of the sampled chunks. Raw JSON in bench/eadp/.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:?usage: scripts/eval-eadp.sh CHECKPOINT [EPISODES] [SCALES...]}
n=${2:-50}
shift $(( $# >= 2 ? 2 : 1 ))
scales=${*:-0 0.5 1 1.5}
bin=${RIPTIDE:-target/release/riptide}
[ -x "$bin" ] || cargo build --release -p riptide-runtime
out=${OUT:-bench/eadp}
mkdir -p "$out"
for s in $scales; do
  "$bin" eval --checkpoint "$ckpt" --env quadrotor --episodes "$n" --seed 10000 --eadp-scale "$s" \
    --out "$out/scale-$s.json" >/dev/null 2>&1
  python3 - "$out/scale-$s.json" "$s" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
steps = sum(e["steps"] for e in d["per_episode"])
print(f"scale {sys.argv[2]:<4} success {d['successes']:>3}/{d['episodes']} (expert {d['expert_successes']}) "
      f"mean score {d['mean_score']:.3f} tracking error {d['mean_tracking_error']:.3f} m "
      f"model J {d['eadp_model_cost']:.3f} steps {steps} p50 {d['latency_ms_p50']:.1f} ms")
PY
done
