#!/usr/bin/env bash
# CPU benchmark: riptide (burn-flex, burn-ndarray) vs LeRobot PyTorch eager, same machine, same run,
# batch 1, after warm-up. Prints one JSON line per measurement; BENCHMARKS.md records the table.
#   scripts/bench-cpu.sh [PUSHT_DIR]   (PUSHT_DIR from: make_lerobot_fixtures.py --only none --pusht-size DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/riptide
[ -x "$bin" ] || cargo build --release -p riptide-runtime
py=.venv/bin/python
small=tests/fixtures/lerobot/state_env_ddim_eps
pusht=${1:-}
one() { echo "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d))'; }
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for dev in flex ndarray; do
  one "$($bin bench --checkpoint $small --device $dev --iters 200 --warmup 20)"
done
one "$($bin bench --checkpoint $small --device flex --iters 200 --warmup 20 --no-cpu-fusion)"
$py scripts/bench_lerobot.py $small --threads 2 --iters 100 --warmup 10
if [ -n "$pusht" ]; then
  # ndarray is left out here: ~10x slower than flex on the small model already.
  one "$($bin bench --checkpoint $pusht/pusht_ddim10 --device flex --iters 10 --warmup 2)"
  one "$($bin bench --checkpoint $pusht/pusht_ddim10 --device flex --iters 5 --warmup 1 --no-cpu-fusion)"
  $py scripts/bench_lerobot.py $pusht/pusht_ddim10 --threads 2 --iters 10 --warmup 2
  one "$($bin bench --checkpoint $pusht/pusht_ddpm100 --device flex --iters 3 --warmup 1)"
  $py scripts/bench_lerobot.py $pusht/pusht_ddpm100 --threads 2 --iters 3 --warmup 1
fi
