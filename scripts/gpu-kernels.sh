#!/usr/bin/env bash
# The GPU issue's measurements in one call (≤ 6 min): CUDA parity of the LeRobot fixtures on the fused and
# burn kernels, first_chunk_s cold and warm (kernel cache), latency at batch 1 and 8 of the shipped
# arm-reach diffusion / consistency / truncated nets and of a PushT-size image model, riptide --kernels fused and
# --kernels burn beside PyTorch eager and PyTorch CUDA-graph replay of the same network, weights and DDIM
# loop (scripts/torch_unet.py, plain torch: the machine has no LeRobot), and the CPU in the same run.
# Each check has its own time slot and appends its result under OUT as it goes.
#   scripts/gpu-kernels.sh BIN OUT [END_S]
# BIN: a release riptide built with `--features cuda,wgpu`. OUT: where results go.
# Parity runs before the timings, all fixtures and shipped policies in one `riptide parity` process per kernel set.
# Smoke test without a GPU: DEV=wgpu TORCH_DEV=cpu ITERS=3 scripts/gpu-kernels.sh target/release/riptide /tmp/out
set -u
cd "$(dirname "$0")/.."
bin=$1
out=$2
end=${3:-350}
dev=${DEV:-cuda}
tdev=${TORCH_DEV:-cuda}
iters=${ITERS:-100}
warm=$(( iters < 10 ? 1 : 10 ))
py=${PYTHON:-python3}
mkdir -p "$out"
t0=$(date +%s)
now() { echo $(($(date +%s) - t0)); }
log() { echo "== [$(now)s] $*" | tee -a "$out/log.txt"; }
# Seconds a check may take: at most $1, never past END_S.
slot() { local left=$((end - $(now))); [ "$left" -gt 5 ] && echo $((left < $1 ? left : $1)) || echo 1; }
work=$(mktemp -d)
kc=$work/kernels
export RUST_LOG=warn

log "machine"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true; nproc; "$bin" --version;
  "$bin" devices) | tee -a "$out/log.txt"
if ! ldconfig -p 2>/dev/null | grep -q libnvrtc; then
  nvrtc=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | head -1)
  [ -n "$nvrtc" ] && export LD_LIBRARY_PATH=$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}
fi

bench() { # name, args...: one JSON line into bench.jsonl
  local name=$1
  shift
  local r
  r=$(timeout "$(slot 60)" "$bin" bench --kernel-cache "$kc" "$@" 2>"$work/$name.err") || r="{\"failed\": \"$(tail -c 300 "$work/$name.err" | tr '\n"' ' .')\"}"
  echo "{\"case\": \"$name\", \"report\": $(echo "$r" | tr -d '\n')}" | tee -a "$out/bench.jsonl"
}

log "first_chunk_s: cold (empty kernel cache), then warm"
bench first-cold --checkpoint policies/shipped/arm-reach --device $dev --iters 1 --warmup 0
bench first-warm --checkpoint policies/shipped/arm-reach --device $dev --iters 1 --warmup 0

# Image fixtures, when generated on the machine (they need LeRobot wheels), are picked up beside the state ones.
# The shipped policies (no LeRobot outputs) are checked against burn-flex on the same observations and noise.
fixtures=$(ls -d tests/fixtures/lerobot/*/ tests/fixtures/generated/*/ policies/shipped/*/ 2>/dev/null)
parity() { # kernels: every fixture and shipped policy in one process, one JSON line each
  timeout "$(slot 90)" "$bin" parity $fixtures --device $dev --kernels $1 --kernel-cache "$kc" 2>"$work/parity.$1.err" |
    sed "s/^/$1 /" | tee -a "$out/parity.txt"
  tail -c 600 "$work/parity.$1.err" | tee -a "$out/parity.txt"
}
log "parity: every LeRobot fixture (vs LeRobot's outputs) and shipped policy (vs burn-flex) on $dev in one process, fused kernels"
parity fused

log "PushT-size image model (LeRobot's PushT config: ResNet18 GroupNorm encoder, 96x96 crop 84, U-Net 512/1024/2048; random weights from seed 0)"
timeout "$(slot 60)" $py scripts/torch_unet.py write-pusht scripts/pusht-image "$work/pusht-size" | tee -a "$out/log.txt"

# Most important first: every slot that runs out only costs the checks after it (burn's kernels autotune for
# tens of seconds per process on CUDA, so they come last).
latency() { # kernels
  for ck in arm-reach arm-reach-consistency arm-reach-truncated pusht-size; do
    dir=policies/shipped/$ck
    [ "$ck" = pusht-size ] && dir=$work/pusht-size
    for b in 1 8; do
      bench "$ck-$1-b$b" --checkpoint "$dir" --device $dev --kernels "$1" --batch $b --iters "$iters" --warmup "$warm"
    done
  done
}
log "latency: riptide --kernels fused, batch 1 and 8"
latency fused

log "latency: PyTorch eager and CUDA-graph replay, same networks and weights"
for ck in arm-reach arm-reach-consistency arm-reach-truncated pusht-size; do
  dir=policies/shipped/$ck
  [ "$ck" = pusht-size ] && dir=$work/pusht-size
  timeout "$(slot 60)" $py scripts/torch_unet.py bench "$dir" --batch 1,8 --iters "$iters" --device $tdev 2>&1 |
    grep '^{' | tee -a "$out/torch.jsonl"
done

log "latency: riptide --kernels burn (the baseline), batch 1 and 8"
latency burn

log "parity on burn's kernels (the baseline), one process"
parity burn

log "the CPU in the same run (burn-flex host pass)"
bench arm-reach-cpu --checkpoint policies/shipped/arm-reach --device cpu --iters "$iters" --warmup "$warm"
rm -rf "$work"
log "done"
