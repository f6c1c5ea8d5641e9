#!/bin/bash
cd /work/main; source /work/env.sh
out=/tmp/ab2/raw.jsonl; : > $out
for r in 1 2 3; do
  for mode in per-layer one-launch; do
    if [ $mode = per-layer ]; then ck=push-t; export RIPTIDE_FUSED_LAUNCH=per-layer; it=2; else ck=arm-reach; unset RIPTIDE_FUSED_LAUNCH; it=15; fi
    for b in 1 8; do
      for v in rows8 rows1; do
        x=$(/work/bins/riptide-dbg-$v bench --checkpoint policies/shipped/$ck --device wgpu --batch $b --iters $it --warmup 1 2>/dev/null | tr -d '\n')
        echo "{\"round\":$r,\"bin\":\"$v\",\"mode\":\"$mode\",\"checkpoint\":\"$ck\",\"batch\":$b,\"report\":$x}" >> $out
      done
    done
  done
done
echo done >> /tmp/ab2/status
