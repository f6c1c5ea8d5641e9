#!/usr/bin/env bash
# RTI warm starts vs cold DDIM in closed loop (in-process lockstep), same seeds, one run:
#   scripts/eval-rti.sh [CHECKPOINT] [ENV] [EPISODES]
# Prints one line per configuration: success, NFE per inference and per control step, latency.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:-policies/shipped/arm-reach}
env=${2:-arm-reach}
n=${3:-100}
bin=${RIPTIDE:-target/release/riptide}
[ -x "$bin" ] || cargo build --release -p riptide-runtime
out=${OUT:-bench/rti}
mkdir -p "$out"
run() {
  name=$1; shift
  "$bin" eval --checkpoint "$ckpt" --env "$env" --episodes "$n" --seed 10000 "$@" --out "$out/$name.json" >/dev/null 2>&1
  python3 - "$out/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<28} success {d['successes']:>3}/{d['episodes']} (expert {d['expert_successes']}) "
      f"NFE/inference {d['nfe_per_inference']:.2f} NFE/step {d['nfe_per_control_step']:.3f} "
      f"warm {d['warm_starts']}/{d['inferences']} p50 {d['latency_ms_p50']:.1f} ms")
PY
}
run cold-ddim10
run cold-ddim2 --inference-steps 2
run rti-k8 --rti-start-step 8
run rti-k9 --rti-start-step 9
run rti-k8-cold1 --rti-start-step 8 --rti-cold-steps 1
run rti-k8-cold2 --rti-start-step 8 --rti-cold-steps 2
run rti-k8-cold3 --rti-start-step 8 --rti-cold-steps 3
run rti-k8-noise --rti-start-step 8 --rti-noise
run rti-k8-replan4 --rti-start-step 8 --queue-threshold-s 0.4
run cold-ddim10-replan4 --queue-threshold-s 0.4
