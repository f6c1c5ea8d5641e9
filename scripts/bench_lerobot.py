#!/usr/bin/env python
"""Time LeRobot's PyTorch-eager DiffusionPolicy sampler on a fixture / checkpoint directory.

    .venv/bin/python scripts/bench_lerobot.py tests/fixtures/lerobot/state_env_ddim_eps
    .venv/bin/python scripts/bench_lerobot.py /tmp/pusht/pusht_ddim10 --threads 2 --iters 20
    .venv/bin/python scripts/bench_lerobot.py DIR --device cuda          # GPU, synchronised timing

The directory must hold a LeRobot checkpoint (config.json + model.safetensors, loaded offline with
DiffusionPolicy.from_pretrained) and an inputs.safetensors written by tests/fixtures/make_lerobot_fixtures.py
(raw observation window [B, n_obs_steps, ...]; only batch element 0 is used, so batch = 1). If processor
files are present, the observations are normalised with the saved preprocessor first (outside the timing).

Timed region: policy.diffusion.generate_actions(batch) = observation encoding + the full sampler
(num_inference_steps U-Net passes + scheduler steps) + the executed-slice extraction. Warm-up iterations
are not timed. Prints one JSON line: {name, median_ms, p90_ms, mean_ms, min_ms, chunks_per_s, n, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy  # noqa: E402
from lerobot.policies.factory import make_pre_post_processors  # noqa: E402

OBS_STATE = "observation.state"
OBS_ENV = "observation.environment_state"
OBS_IMAGES = "observation.images"


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark LeRobot DiffusionPolicy.generate_actions")
    ap.add_argument("dir", type=Path, help="fixture/checkpoint directory")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", "-n", type=int, default=20, help="timed iterations (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up iterations (default 3)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--name", default=None, help="name in the JSON output (default: directory name)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    policy = DiffusionPolicy.from_pretrained(args.dir)
    policy.config.device = args.device
    policy.to(device)
    policy.eval()
    cfg = policy.config

    inputs = load_file(str(args.dir / "inputs.safetensors"))
    obs_keys = [k for k in list(cfg.input_features) if k in inputs]
    raw = {k: inputs[k][:1].clone() for k in obs_keys}  # batch 1

    if (args.dir / "policy_preprocessor.json").exists():
        pre, _post = make_pre_post_processors(cfg, pretrained_path=str(args.dir))
        normed = pre(raw)
        normed = {k: normed[k] for k in obs_keys}
    else:  # legacy / bare checkpoint: timing does not depend on the normalisation
        normed = raw

    batch = {OBS_STATE: normed[OBS_STATE].to(device)}
    if cfg.env_state_feature is not None:
        batch[OBS_ENV] = normed[OBS_ENV].to(device)
    if cfg.image_features:
        batch[OBS_IMAGES] = torch.stack([normed[k] for k in cfg.image_features], dim=-4).to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times_ms = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            sync()
            t0 = time.perf_counter()
            actions = policy.diffusion.generate_actions(batch)
            sync()
            dt = (time.perf_counter() - t0) * 1e3
            if i >= args.warmup:
                times_ms.append(dt)

    times_ms.sort()
    median = statistics.median(times_ms)
    p90 = times_ms[min(len(times_ms) - 1, int(round(0.9 * (len(times_ms) - 1))))]
    n_params = sum(p.numel() for p in policy.parameters())
    print(
        json.dumps(
            {
                "name": args.name or args.dir.name,
                "median_ms": round(median, 3),
                "p90_ms": round(p90, 3),
                "mean_ms": round(statistics.fmean(times_ms), 3),
                "min_ms": round(times_ms[0], 3),
                "chunks_per_s": round(1e3 / median, 3),
                "n": len(times_ms),
                "warmup": args.warmup,
                "threads": args.threads,
                "device": args.device,
                "scheduler": cfg.noise_scheduler_type,
                "num_inference_steps": policy.diffusion.num_inference_steps,
                "horizon": cfg.horizon,
                "action_shape": list(actions.shape),
                "params_m": round(n_params / 1e6, 3),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
