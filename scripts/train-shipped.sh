#!/usr/bin/env bash
# Reproduce a shipped policy: record expert demos, train, evaluate in closed loop next to the expert.
#   scripts/train-shipped.sh ENV [STEPS] [EPISODES] [EXTEND_TO]   (ENV: arm-reach | quadrotor | push-t)
# Writes policies/shipped/ENV (the final EMA checkpoint) and prints the closed-loop success rates.
# EXTEND_TO resumes the finished STEPS-step run to that many steps: the cosine schedule is recomputed for
# the new length, so the learning rate restarts at its value for step STEPS of EXTEND_TO (a warm restart).
# The shipped arm-reach policy: scripts/train-shipped.sh arm-reach 9000 1000 18000
# The shipped quadrotor policy: scripts/train-shipped.sh quadrotor 8000 400 16000, resumed to 24000 steps,
# then DART_STEPS=6000 (a fine-tune on the clean demos plus as many perturbed ones; the third leg to 24000
# steps is `riptide train --resume .../016000 --steps 24000`, see its MODEL_CARD.md).
# Recordings hold the newest observation.environment_state layout (arm-reach 12 values, quadrotor 22), so a
# policy trained here takes that layout; the shipped arm-reach policy was trained on the original 5 values
# (docs/sim-recording-replay.md, "environment_state layouts"), which the sim still serves it; the shipped quadrotor policy on the 22.
set -euo pipefail
cd "$(dirname "$0")/.."
env=${1:?usage: scripts/train-shipped.sh ENV [STEPS] [EPISODES] [EXTEND_TO]}
steps=${2:-4000}
episodes=${3:-200}
extend=${4:-}
bin=${RIPTIDE:-target/release/riptide}
[ -x "$bin" ] || cargo build --release -p riptide-runtime
work=${WORK:-/tmp/riptide-train}
rm -rf "$work/$env" && mkdir -p "$work/$env"
# Training demos: seeds 0..EPISODES-1. Evaluation: seeds 10000..10099 (disjoint).
# arm-reach demos hold 1 s past success, so the policy learns to arrive and stop (HOLD_S overrides).
hold=${HOLD_S:-$([ "$env" = arm-reach ] && echo 1.0 || echo 0)}
"$bin" record --env "$env" --episodes "$episodes" --seed 0 --hold-s "$hold" --out "$work/$env/data"
# The quadrotor learns its position setpoints relative to the drone (train-quadrotor-relative.toml).
config=policies/shipped/train-state.toml
[ "$env" = quadrotor ] && config=policies/shipped/train-quadrotor-relative.toml
"$bin" train --data "$work/$env/data" --config "$config" --steps "$steps" \
  --out "$work/$env/run"
if [ -n "$extend" ]; then
  "$bin" train --data "$work/$env/data" --resume "$work/$env/run/checkpoints/$(printf %06d "$steps")" \
    --steps "$extend" --out "$work/$env/run"
fi
last=$(ls -d "$work/$env/run/checkpoints/"[0-9]* | sort | tail -1)
# DART_STEPS: fine-tune on the clean demos plus as many perturbed ones (quadrotor only: the env executes the
# expert's setpoint plus a held random offset, the demo keeps the expert's setpoint).
if [ -n "${DART_STEPS:-}" ]; then
  [ "$env" = quadrotor ] || { echo "DART_STEPS: only the quadrotor has a DART config" >&2; exit 2; }
  "$bin" record --env "$env" --episodes "$episodes" --seed "$episodes" --perturb 0.4,0.4,0.2,0 \
    --out "$work/$env/dart"
  mkdir -p "$work/$env/mixed" && ln -sf "$work/$env/data/"*.mcap "$work/$env/dart/"*.mcap "$work/$env/mixed/"
  "$bin" train --data "$work/$env/mixed" --config policies/shipped/finetune-quadrotor-dart.toml \
    --init-from "$last/pretrained_model" --steps "$DART_STEPS" --out "$work/$env/dart-run"
  last=$(ls -d "$work/$env/dart-run/checkpoints/"[0-9]* | sort | tail -1)
fi
# Copy over the checkpoint files only, so the committed MODEL_CARD.md stays.
mkdir -p "policies/shipped/$env" && cp "$last/pretrained_model/"* "policies/shipped/$env/"
"$bin" record --env "$env" --episodes 100 --seed 10000 --out "$work/$env/eval"
"$bin" replay "$work/$env/eval" --checkpoint "policies/shipped/$env" --closed-loop --out "$work/$env/report"
python3 - "$work/$env/report/replay.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
e = d["closed_loop"]
print(f"policy {sum(x['success'] for x in e)}/{len(e)}, expert {sum(bool(x['recorded_success']) for x in e)}/{len(e)}")
PY
