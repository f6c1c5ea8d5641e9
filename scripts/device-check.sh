#!/usr/bin/env bash
# Everything riptide checks on a lent GPU machine, in one call (the device time is short and every start
# costs minutes): GPU training of the state policies until DEADLINE_S, then CUDA parity against LeRobot's
# reference outputs, latency per policy kind and closed-loop success on CUDA (cold DDIM vs RTI) until
# END_S. Training comes first: the first run of this script (2026-11-30, bench/gpu/) spent its whole call
# on the checks, because every burn-cuda process pays ~25-70 s of kernel compilation and autotuning
# before its first result; each check below gets a slot that cannot overrun END_S.
#   scripts/device-check.sh BIN OUT [DEADLINE_S] [END_S]
# BIN: a `--features cuda-train` release riptide. OUT: where results go (results.tar.gz with parity, bench
# and eval outputs; one ckpt-NAME.tar.gz per training run). DEADLINE_S: seconds from start by which
# training stops.
set -u
cd "$(dirname "$0")/.."
bin=$1
out=$2
deadline=${3:-330}
end=${4:-560}
# SMOKE=1 RIPTIDE_DEVICE=flex: a quick run of the whole script on the CPU (few episodes), to test it here.
dev=${RIPTIDE_DEVICE:-cuda}
eps() { if [ -n "${SMOKE:-}" ]; then echo 10; else echo "$1"; fi; }
t0=$(date +%s)
now() { echo $(($(date +%s) - t0)); }
log() { echo "== [$(now)s] $*"; }
# Seconds a check may take: at most $1, never past END_S (0 skips it: `timeout 0` would not limit).
slot() { local left=$((end - $(now))); [ "$left" -gt 5 ] && echo $((left < $1 ? left : $1)) || echo 1; }
work=/tmp/riptide-device
res=$work/results
rm -rf "$work" && mkdir -p "$res/parity" "$res/bench" "$res/eval" "$res/train"
export RUST_LOG=warn

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
nproc
# burn-cuda loads libcuda and NVRTC at run time; point the loader at wherever this image keeps NVRTC.
if ! ldconfig -p | grep -q libnvrtc; then
  nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | head -1)
  [ -n "$nvrtc" ] && export LD_LIBRARY_PATH=$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-} && echo "NVRTC: $nvrtc"
fi
"$bin" --version

# Training data: recording is CPU work of seconds. Same seeds and settings as the shipped runs.
log "recording training data"
("$bin" record --env arm-reach --episodes "$(eps 1000)" --seed 0 --hold-s 1.0 --out "$work/arm-reach/data" \
  >"$work/rec-arm-reach.log" 2>&1) &
rec_arm=$!
("$bin" record --env quadrotor --episodes "$(eps 400)" --seed 0 --hold-s 0 --out "$work/quadrotor/data" \
  >"$work/rec-quadrotor.log" 2>&1) &
rec_quad=$!
("$bin" record --env push-t --episodes "$(eps 500)" --seed 0 --hold-s 0 --out "$work/push-t/data" \
  >"$work/rec-push-t.log" 2>&1) &
rec_pusht=$!

for p in $rec_arm $rec_quad $rec_pusht; do wait "$p" || echo "recording $p failed"; done
tail -n 2 "$work"/rec-*.log

# GPU training: a 300-step leg (20 with SMOKE) measures throughput with all runs sharing the GPU, then each run is
# resumed to as many steps as fit before the deadline (the cosine schedule is laid out for that length).
train_run() {
  name=$1
  data=$work/$2/data
  cfg=$3
  d=$work/runs/$name
  mkdir -p "$d"
  first=$(if [ -n "${SMOKE:-}" ]; then echo 20; else echo 300; fi)
  "$bin" train --data "$data" --config "$cfg" --device $dev --steps "$first" --out "$d/run" >"$d/train1.log" 2>&1 ||
    { echo "$name: first leg failed"; tail -5 "$d/train1.log"; return; }
  sps=$(tr '\r' '\n' <"$d/train1.log" | grep -o '[0-9.]* samples/s' | tail -1 | cut -d' ' -f1)
  batch=$(grep -o '^batch_size *= *[0-9]*' "$cfg" | grep -o '[0-9]*$')
  # The second process pays burn-cuda's start-up again (~60 s measured), hence the margin.
  left=$((deadline - $(now) - 90))
  steps=$(python3 -c "print(max($first, min(40000, $first + int(float('${sps:-0}') / $batch * $left * 0.9) // 100 * 100)))")
  echo "$name: ${sps:-?} samples/s at batch $batch, $left s left -> $steps steps"
  [ "$steps" -gt "$first" ] || return
  timeout $((deadline - $(now) + 30)) "$bin" train --data "$data" --resume "$d/run/checkpoints/$(printf %06d "$first")" \
    --device $dev --steps "$steps" --out "$d/run" \
    >"$d/train2.log" 2>&1 || { echo "$name: second leg failed"; tail -5 "$d/train2.log"; }
  tr '\r' '\n' <"$d/train2.log" | grep -v '^\s*$' | tail -2
}
# name, recorded env, config
runs="arm-reach:arm-reach:policies/shipped/train-state-gpu.toml
quadrotor-rel:quadrotor:policies/shipped/train-quadrotor-relative-gpu.toml
push-t:push-t:policies/shipped/train-state-gpu.toml
push-t-rel:push-t:policies/shipped/train-push-t-relative-gpu.toml"
if [ "$(now)" -lt $((deadline - 120)) ]; then
  log "training on cuda until ${deadline}s"
  pids=""
  for r in $runs; do
    IFS=: read -r name env cfg <<<"$r"
    train_run "$name" "$env" "$cfg" >"$work/train-$name.out" 2>&1 &
    pids="$pids $!"
  done
  wait $pids
  cat "$work"/train-*.out
else
  log "no time left for training"
fi

log "parity: LeRobot fixtures on cuda and flex (same inputs and noise)"
for d in tests/fixtures/lerobot/*/; do
  n=$(basename "$d")
  for pd in $dev flex; do
    timeout "$(slot 90)" "$bin" infer --checkpoint "$d" --inputs "$d/inputs.safetensors" --device $pd \
      --out "$res/parity/$n.$pd.safetensors" >/dev/null 2>"$res/parity/$n.$pd.log" || echo "$n $pd: failed"
    echo "$n $pd vs LeRobot: $(python3 scripts/compare_safetensors.py "$res/parity/$n.$pd.safetensors" \
      "$d/expected.safetensors" action action.executed 2>&1)"
  done
  echo "$n $dev vs flex: $(python3 scripts/compare_safetensors.py "$res/parity/$n.$dev.safetensors" \
    "$res/parity/$n.flex.safetensors" action 2>&1)"
done | tee "$res/parity/summary.txt"

log "latency per kind on cuda (batch 1; warm-up excluded)"
bench() {
  name=$1
  shift
  timeout "$(slot 90)" "$bin" bench "$@" >"$res/bench/$name.json" 2>"$res/bench/$name.log" || echo "$name: failed"
  echo "$name $(cat "$res/bench/$name.json")"
}
for ck in arm-reach quadrotor push-t arm-reach-consistency arm-reach-mode arm-reach-truncated; do
  bench "$ck-$dev" --checkpoint "policies/shipped/$ck" --device $dev --iters "$(eps 100)" --warmup 5
done
# Shipped push-t samples 8 candidates per inference (one K-row batch): its one-sample cost beside it.
bench push-t-$dev-k1 --checkpoint policies/shipped/push-t --device $dev --candidates 1 --iters "$(eps 100)" --warmup 5
bench arm-reach-$dev-ddim2 --checkpoint policies/shipped/arm-reach --device $dev --iters "$(eps 100)" --warmup 5 --steps 2
bench arm-reach-$dev-ddpm100 --checkpoint policies/shipped/arm-reach --device $dev --iters "$(eps 30)" --warmup 3 --steps 100
for b in 16 256; do
  bench "arm-reach-$dev-batch$b" --checkpoint policies/shipped/arm-reach --device $dev --batch $b --iters "$(eps 50)" --warmup 5
done
# The same run's CPU numbers (this machine's cores), for the side-by-side ratio.
bench arm-reach-flex --checkpoint policies/shipped/arm-reach --device flex --iters "$(eps 50)" --warmup 5
bench push-t-flex --checkpoint policies/shipped/push-t --device flex --iters "$(eps 50)" --warmup 5

log "closed loop on cuda: arm-reach, seeds 10000-10099, cold DDIM-10 vs RTI (k = 8, first chunk DDIM-3)"
evalrun() {
  name=$1
  shift
  timeout "$(slot 150)" "$bin" eval --checkpoint policies/shipped/arm-reach --env arm-reach --episodes "$(eps 100)" --seed 10000 \
    --device $dev "$@" --out "$res/eval/$name.json" >/dev/null 2>"$res/eval/$name.log" || echo "$name: failed"
  python3 - "$res/eval/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<22} success {d['successes']:>3}/{d['episodes']} NFE/step {d['nfe_per_control_step']:.3f} "
      f"p50 {d['latency_ms_p50']:.2f} ms p99 {d['latency_ms_p99']:.2f} ms")
PY
}
evalrun cold-ddim10
evalrun rti-k8-cold3 --rti-start-step 8 --rti-cold-steps 3

log "packing"
for r in $runs; do
  name=${r%%:*}
  d=$work/runs/$name/run
  [ -d "$d/checkpoints" ] || continue
  last=$(ls -d "$d/checkpoints/"[0-9]* | sort | tail -1)
  mkdir -p "$res/train/$name"
  cp "$work/runs/$name/"train*.log "$res/train/$name/" 2>/dev/null
  # One tarball per checkpoint keeps each returned file well under the 16 MiB limit.
  tar -C "$last" -czf "$out/ckpt-$name.tar.gz" pretrained_model && echo "$name: $last"
done
tar -C "$work" -czf "$out/results.tar.gz" results
ls -la "$out"
log "done"
