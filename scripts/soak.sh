#!/usr/bin/env bash
# Soak: N wall-clock sim nodes (arm-reach, 10 fps, observations at 50 Hz) against one daemon serving them
# as [[robot]] tables (release build, shipped arm-reach policy, CPU, a chunk per control step), for
# DURATION seconds on an otherwise idle machine. Writes under OUT: the config, every node's log, the
# daemon's resident memory once a minute, its metrics after warm-up and at the end, and summary.json
# (per robot: windows = chunks + superseded + blocked + over_budget + errors (+ faults, + at most one in
# flight); memory growth after warm-up).
#
#   scripts/soak.sh [DURATION_S=1800] [ROBOTS=8]        (RIPTIDE=path/to/riptide, OUT=dir to override)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-1800}
n=${2:-8}
bin=${RIPTIDE:-target/release/riptide}
out=${OUT:-bench/soak/$(date -u +%F)}
warmup_s=${WARMUP_S:-60}
mkdir -p "$out"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
mport=$(free_port)

cfg="$out/fleet.toml"
{
  echo "# written by scripts/soak.sh"
  echo "checkpoint = \"$PWD/policies/shipped/arm-reach\""
  echo 'device = "cpu"'
  echo 'fps = 10.0'
  echo 'batch_window_ms = 2.0'
  echo '[zenoh]'
  echo "listen = [\"tcp/127.0.0.1:$port\"]"
  echo '[metrics]'
  echo "listen = \"127.0.0.1:$mport\""
  echo 'summary_period_s = 60.0'
  for i in $(seq 1 "$n"); do
    echo '[[robot]]'
    echo "name = \"arm$i\""
    echo 'exec_latency_ms = 20.0'
    echo '[robot.inputs."observation.state"]'
    echo 'type = "joint_state"'
    echo '[robot.inputs."observation.environment_state"]'
    echo 'type = "joint_state"'
    echo '[robot.trigger]'
    echo 'mode = "rate"'
    echo 'rate_hz = 10.0'
  done
} > "$cfg"

metrics() { python3 -c "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$mport/metrics', timeout=5).read().decode())"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

"$bin" run --config "$cfg" > "$out/daemon.log" 2>&1 &
daemon=$!
sims=()
cleanup() {
  for p in "${sims[@]}"; do kill "$p" 2>/dev/null || true; done
  kill -INT "$daemon" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  metrics > /dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { tail -20 "$out/daemon.log"; echo "the daemon exited" >&2; exit 1; }
  sleep 0.1
done
for i in $(seq 1 "$n"); do
  "$bin" sim --env arm-reach --namespace "arm$i" --episodes 1000000 --seed $((i * 100000)) \
    --connect "tcp/127.0.0.1:$port" --publish-hz 50 > "$out/sim$i.log" 2>&1 &
  sims+=($!)
done
start=$(date +%s)
echo "t_s,rss_kb" > "$out/rss.csv"
sleep "$warmup_s"
metrics > "$out/metrics-start.txt"
rss_start=$(rss_kb "$daemon")
while [ $(( $(date +%s) - start )) -lt "$dur" ]; do
  echo "$(( $(date +%s) - start )),$(rss_kb "$daemon")" >> "$out/rss.csv"
  left=$(( dur - ($(date +%s) - start) ))
  sleep $(( left < 60 ? (left > 0 ? left : 0) : 60 ))
done
metrics > "$out/metrics-end.txt"
rss_end=$(rss_kb "$daemon")
cleanup
trap - EXIT

python3 - "$out" "$n" "$rss_start" "$rss_end" "$dur" "$warmup_s" <<'EOF'
import json, re, sys
out, n, rss_start, rss_end, dur, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def parse(path):
    vals = {}
    for line in open(path):
        m = re.match(r'riptide_(\w+)\{([^}]*)\} (\S+)$', line.strip())
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            vals.setdefault(m.group(1), []).append((labels, float(m.group(3))))
        m = re.match(r'riptide_(\w+) (\S+)$', line.strip())
        if m:
            vals.setdefault(m.group(1), []).append(({}, float(m.group(2))))
    return vals
end = parse(f"{out}/metrics-end.txt")
def total(name, **want):
    return sum(v for labels, v in end.get(name, []) if all(labels.get(k) == w for k, w in want.items()))
faults = total("policy_faults_total")
robots = []
ok = True
for i in range(1, n + 1):
    r = f"arm{i}"
    row = {k: int(total(f"{k}_total", robot=r)) for k in
           ["windows", "chunks", "superseded", "blocked", "over_budget", "inference_errors", "late_actions_dropped", "messages"]}
    accounted = row["chunks"] + row["superseded"] + row["blocked"] + row["over_budget"] + row["inference_errors"]
    row["unaccounted"] = row["windows"] - accounted
    # At most one window per robot can be in flight when the metrics are read; faults are the worker's.
    row["balanced"] = 0 <= row["unaccounted"] <= 1 + faults
    ok &= row["balanced"]
    robots.append({"robot": r, **row})
summary = {
    "duration_s": dur, "robots": n, "warmup_s": warmup,
    "rss_kb_after_warmup": rss_start, "rss_kb_end": rss_end,
    "rss_growth": (rss_end - rss_start) / rss_start,
    "policy_faults": int(faults),
    "every_window_accounted": ok,
    "per_robot": robots,
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary))
EOF
