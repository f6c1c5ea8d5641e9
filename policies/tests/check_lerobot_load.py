#!/usr/bin/env python3
"""Load a riptide-trained checkpoint with LeRobot and sample it with a given initial noise.

    check_lerobot_load.py CHECKPOINT_DIR INPUTS.safetensors OUT.safetensors

CHECKPOINT_DIR is a `pretrained_model/` directory written by riptide's trainer. INPUTS holds the raw
(unnormalised) observation window of every input feature, `[B, n_obs_steps, ...]`, and `noise`
`[B, horizon, action_dim]`. The policy is loaded with `strict=True` (every LeRobot parameter must be in
model.safetensors and nothing else), the processors from the saved processor files; OUT gets
`action` (unnormalised, full horizon) and `action.normalized`.

Prints `SKIPPED: <why>` and exits 0 when LeRobot is not importable, unless RIPTIDE_REQUIRE_PY_TOOLS=1.
Only DDIM checkpoints are supported (DDPM would need its per-step noise replayed too).
"""

from __future__ import annotations

import os
import sys


def skip(why: str) -> None:
    if os.environ.get("RIPTIDE_REQUIRE_PY_TOOLS") == "1":
        print(f"FAILED: {why}", file=sys.stderr)
        sys.exit(2)
    print(f"SKIPPED: {why}")
    sys.exit(0)


def main() -> None:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    ckpt, inputs_path, out_path = sys.argv[1:]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from safetensors.torch import load_file, save_file

        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
        from lerobot.policies.factory import make_pre_post_processors
    except Exception as e:  # noqa: BLE001 - any import failure means the tool stack is absent
        skip(f"LeRobot is not importable ({type(e).__name__}: {e})")

    torch.set_num_threads(1)
    policy = DiffusionPolicy.from_pretrained(ckpt, strict=True)
    policy.eval()
    cfg = policy.config
    if cfg.noise_scheduler_type != "DDIM":
        print("only DDIM checkpoints are supported", file=sys.stderr)
        sys.exit(2)
    pre, post = make_pre_post_processors(cfg, pretrained_path=ckpt)
    raw = load_file(inputs_path)
    noise = raw.pop("noise")
    with torch.no_grad():
        processed = pre({k: v.clone() for k, v in raw.items()})
        batch = {"observation.state": processed["observation.state"]}
        if cfg.env_state_feature is not None:
            batch["observation.environment_state"] = processed["observation.environment_state"]
        if cfg.image_features:
            batch["observation.images"] = torch.stack([processed[k] for k in cfg.image_features], dim=-4)
        diff = policy.diffusion
        global_cond = diff._prepare_global_conditioning(batch)
        sample = diff.conditional_sample(noise.shape[0], global_cond=global_cond, noise=noise.clone())
        action = post(sample.clone())
    save_file(
        {"action": action.contiguous(), "action.normalized": sample.contiguous()},
        out_path,
    )
    print(f"OK: {ckpt} loaded strictly by LeRobot; sampled {tuple(sample.shape)}")


if __name__ == "__main__":
    main()
