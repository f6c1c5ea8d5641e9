#!/usr/bin/env python3
"""PyTorch baselines for riptide's GPU benchmarks: LeRobot's conditional U-Net and RGB encoder rebuilt in plain torch (the GPU
machine has torch but not LeRobot) from a checkpoint's model.safetensors, and the same DDIM loop riptide runs.

  check DIR                  compare with LeRobot's own module on this machine (needs lerobot): one pass at
                             several timesteps and the whole DDIM loop with the same noise.
  bench DIR [--batch 1,8]    median of 100 after 10 warm-up, result copied to the host: eager, and CUDA-graph
                             replay (torch.cuda.CUDAGraph) of the whole DDIM loop; one JSON line per case.
  write-pusht DIR OUT        a checkpoint like DIR with a PushT-size U-Net (down_dims 512/1024/2048, step
                             embedding 128; LeRobot's PushT config), and a ResNet18 encoder when DIR's config
                             has a camera (scripts/pusht-image: LeRobot's PushT image policy), random weights
                             from seed 0, for riptide.

TF32 is off (exact f32, as riptide runs). Nothing is downloaded.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time

import struct

import torch
from torch import nn

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def load_file(path):
    """A safetensors file's tensors as f32 (the GPU machine has torch but no safetensors package)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[v["dtype"]]
        a, b = v["data_offsets"]
        t = torch.frombuffer(bytearray(raw[8 + n + a : 8 + n + b]), dtype=dtype).reshape(v["shape"])
        out[k] = t.to(torch.float32)
    return out


def save_file(tensors, path):
    header, offset, blobs = {}, 0, []
    for k, t in tensors.items():
        b = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


class PosEmb(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        f = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        e = t[:, None] * f[None, :]
        return torch.cat((e.sin(), e.cos()), dim=-1)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k, groups):
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2), nn.GroupNorm(groups, cout), nn.Mish())

    def forward(self, x):
        return self.block(x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, cond, k, groups, scale):
        super().__init__()
        self.scale, self.cout = scale, cout
        self.conv1 = ConvBlock(cin, cout, k, groups)
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond, cout * 2 if scale else cout))
        self.conv2 = ConvBlock(cout, cout, k, groups)
        self.residual_conv = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cond):
        h = self.conv1(x)
        c = self.cond_encoder(cond).unsqueeze(-1)
        h = h * c[:, : self.cout] + c[:, self.cout :] if self.scale else h + c
        return self.conv2(h) + self.residual_conv(x)


class Unet(nn.Module):
    def __init__(self, action_dim, global_cond, down_dims, k, groups, dsed, scale):
        super().__init__()
        self.diffusion_step_encoder = nn.Sequential(PosEmb(dsed), nn.Linear(dsed, dsed * 4), nn.Mish(), nn.Linear(dsed * 4, dsed))
        cond = dsed + global_cond
        dims = [action_dim] + list(down_dims)
        io = list(zip(dims[:-1], dims[1:]))
        self.down_modules = nn.ModuleList(
            nn.ModuleList([
                ResBlock(a, b, cond, k, groups, scale),
                ResBlock(b, b, cond, k, groups, scale),
                nn.Conv1d(b, b, 3, 2, 1) if i < len(io) - 1 else nn.Identity(),
            ])
            for i, (a, b) in enumerate(io))
        m = down_dims[-1]
        self.mid_modules = nn.ModuleList([ResBlock(m, m, cond, k, groups, scale) for _ in range(2)])
        self.up_modules = nn.ModuleList(
            nn.ModuleList([ResBlock(b * 2, a, cond, k, groups, scale), ResBlock(a, a, cond, k, groups, scale),
                           nn.ConvTranspose1d(a, a, 4, 2, 1)])
            for a, b in reversed(io[1:]))
        self.final_conv = nn.Sequential(ConvBlock(down_dims[0], down_dims[0], k, 8), nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x, t, gc):
        x = x.transpose(1, 2)
        cond = torch.cat([self.diffusion_step_encoder(t), gc], dim=-1)
        skips = []
        for r0, r1, ds in self.down_modules:
            x = r1(r0(x, cond), cond)
            skips.append(x)
            x = ds(x)
        for m in self.mid_modules:
            x = m(x, cond)
        for r0, r1, us in self.up_modules:
            x = torch.cat((x, skips.pop()), dim=1)
            x = us(r1(r0(x, cond), cond))
        return self.final_conv(x).transpose(1, 2)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, its parameter names kept (LeRobot's checkpoints use them)."""

    def __init__(self, cin, cout, stride, norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class RgbEncoder(nn.Module):
    """LeRobot's DiffusionRgbEncoder (eval): center crop, ResNet18 trunk without avgpool/fc (GroupNorm C/16
    or BatchNorm), SpatialSoftmax keypoints, Linear + ReLU."""

    def __init__(self, image_hw, crop, group_norm, kp):
        super().__init__()
        norm = (lambda c: nn.GroupNorm(c // 16, c)) if group_norm else nn.BatchNorm2d
        layer = lambda a, b, s: nn.Sequential(BasicBlock(a, b, s, norm), BasicBlock(b, b, 1, norm))
        self.backbone = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), norm(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                                      layer(64, 64, 1), layer(64, 128, 2), layer(128, 256, 2), layer(256, 512, 2))
        h, w = crop or image_hw
        self.crop = None if crop is None else (int(round((image_hw[0] - h) / 2)), int(round((image_hw[1] - w) / 2)), h, w)
        with torch.no_grad():
            fh, fw = self.backbone(torch.zeros(1, 3, h, w)).shape[2:]
        self.pool = nn.Module()
        self.pool.nets = nn.Conv2d(512, kp, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, fh), torch.linspace(-1, 1, fw), indexing="ij")
        self.pool.register_buffer("pos_grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], 1))
        self.out = nn.Linear(2 * kp, 2 * kp)

    def forward(self, x):
        if self.crop is not None:
            t, l, h, w = self.crop
            x = x[:, :, t:t + h, l:l + w]
        f = self.pool.nets(self.backbone(x))
        n, k = f.shape[:2]
        kp = torch.softmax(f.reshape(n * k, -1), -1) @ self.pool.pos_grid
        return torch.relu(self.out(kp.reshape(n, 2 * k)))


def cameras(c):
    return [k for k, v in c["input_features"].items() if v["type"] == "VISUAL"]


def state_dim(c):
    return sum(v["shape"][0] for v in c["input_features"].values() if v["type"] in ("STATE", "ENV"))


def load(d, device="cpu"):
    c = json.load(open(os.path.join(d, "config.json")))
    sd = {k[len("diffusion.unet."):]: v for k, v in load_file(os.path.join(d, "model.safetensors")).items()
          if k.startswith("diffusion.unet.")}
    dsed = c["diffusion_step_embed_dim"]
    gc = sd["down_modules.0.0.cond_encoder.1.weight"].shape[1] - dsed
    action_dim = sd["final_conv.1.weight"].shape[0]
    net = Unet(action_dim, gc, c["down_dims"], c["kernel_size"], c["n_groups"], dsed, c["use_film_scale_modulation"])
    net.load_state_dict(sd, strict=True)
    return net.to(device).eval(), c, gc


def load_encoder(d, c, device="cpu"):
    """The checkpoint's shared RGB encoder, or None for a state policy (one encoder per camera: not built)."""
    cams = cameras(c)
    if not cams:
        return None
    assert not c.get("use_separate_rgb_encoder_per_camera"), "one shared encoder only"
    hw = c["input_features"][cams[0]]["shape"][1:]
    enc = RgbEncoder(hw, c.get("crop_shape"), c["use_group_norm"], c["spatial_softmax_num_keypoints"])
    sd = {k[len("diffusion.rgb_encoder."):]: v for k, v in load_file(os.path.join(d, "model.safetensors")).items()
          if k.startswith("diffusion.rgb_encoder.")}
    enc.load_state_dict(sd, strict=True)
    return enc.to(device).eval()


def ddim(c, n, ts=None):
    """diffusers' DDIMScheduler (leading spacing, set_alpha_to_one, eta 0): per step (t, a_t, a_prev);
    `ts`: explicit timesteps (riptide's truncated and consistency kinds)."""
    T = c["num_train_timesteps"]
    if c["beta_schedule"] == "squaredcos_cap_v2":
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    elif c["beta_schedule"] == "linear":
        betas = [c["beta_start"] + (c["beta_end"] - c["beta_start"]) * i / (T - 1) for i in range(T)]
    else:
        s, e = math.sqrt(c["beta_start"]), math.sqrt(c["beta_end"])
        betas = [(s + (e - s) * i / (T - 1)) ** 2 for i in range(T)]
    ac, p = [], 1.0
    for b in betas:
        p *= 1 - b
        ac.append(p)
    if ts is not None:
        return [(t, ac[t], ac[ts[i + 1]] if i + 1 < len(ts) else 1.0) for i, t in enumerate(ts)]
    ts = [i * (T // n) for i in range(n)][::-1]
    return [(t, ac[t], ac[t - T // n] if t - T // n >= 0 else 1.0) for t in ts]


def riptide_kind(d):
    """(rows per observation, timesteps or None) of riptide's kinds: truncated diffusion denoises its
    anchors as one batch, the consistency student runs its own timesteps."""
    p = os.path.join(d, "riptide.json")
    r = json.load(open(p)) if os.path.exists(p) else {}
    if r.get("kind") == "truncated":
        return r["truncated"]["n_anchors"], r["truncated"]["timesteps"]
    if r.get("kind") == "consistency":
        return 1, r["consistency"]["timesteps"]
    return 1, None


def sample(net, c, gc, x, steps):
    clip = c.get("clip_sample_range", 1.0) if c.get("clip_sample", True) else None
    eps_pred = c["prediction_type"] == "epsilon"
    b = x.shape[0]
    for t, a, ap in steps:
        out = net(x, torch.full((b,), t, device=x.device, dtype=torch.float32), gc)
        if eps_pred:
            x0 = (x - math.sqrt(1 - a) * out) / math.sqrt(a)
            eps = out
        else:
            x0 = out
            eps = (x - math.sqrt(a) * out) / math.sqrt(1 - a)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * eps
    return x


def check(d):
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    ref = DiffusionPolicy.from_pretrained(d).eval()
    net, c, g = load(d)
    h, a = c["horizon"], net.final_conv[1].weight.shape[0]
    torch.manual_seed(0)
    x, gc = torch.randn(3, h, a), torch.randn(3, g)
    worst = 0.0
    with torch.no_grad():
        for t in [0, 10, 50, 99]:
            tt = torch.full((3,), t, dtype=torch.long)
            e = (net(x, tt.float(), gc) - ref.diffusion.unet(x, tt, global_cond=gc)).abs().max().item()
            worst = max(worst, e)
        ref.diffusion.noise_scheduler.set_timesteps(c["num_inference_steps"])
        want = ref.diffusion.conditional_sample(3, global_cond=gc, generator=None, noise=x.clone())
        got = sample(net, c, gc, x.clone(), ddim(c, c["num_inference_steps"]))
    loop = (got - want).abs().max().item()
    row = {"check": d, "unet_max_abs": worst, "ddim_loop_max_abs": loop}
    enc = load_encoder(d, c)
    if enc is not None:
        hw = c["input_features"][cameras(c)[0]]["shape"][1:]
        imgs = torch.randn(4, 3, *hw)
        with torch.no_grad():
            row["encoder_max_abs"] = (enc(imgs) - ref.diffusion.rgb_encoder(imgs)).abs().max().item()
        assert row["encoder_max_abs"] < 1e-4, "the plain-torch RGB encoder differs from LeRobot's"
    print(json.dumps(row))
    assert worst < 1e-4 and loop < 1e-4, "the plain-torch U-Net or DDIM loop differs from LeRobot's"


def bench(d, batches, iters=100, warm=10, dev="cuda"):
    net, c, g = load(d, dev)
    enc = load_encoder(d, c, dev)
    h, a = c["horizon"], net.final_conv[1].weight.shape[0]
    rows, ts = riptide_kind(d)
    steps = ddim(c, c["num_inference_steps"], ts)
    for b in batches:
        x0 = torch.randn(b * rows, h, a, device=dev)
        gc0 = torch.randn(b * rows, g, device=dev)
        if enc is not None:
            # An image policy's chunk encodes its observation window first: every frame of every camera.
            to, cams = c["n_obs_steps"], cameras(c)
            hw = c["input_features"][cams[0]]["shape"][1:]
            state = torch.randn(b, to, state_dim(c), device=dev)
            imgs = torch.randn(b * to * len(cams), 3, *hw, device=dev)

        def cond():
            if enc is None:
                return gc0
            feats = enc(imgs).reshape(b, to, -1)
            return torch.cat([state, feats], -1).reshape(b, -1).repeat_interleave(rows, 0)

        def chunk(x):
            return sample(net, c, cond(), x, steps)

        with torch.no_grad():
            def eager():
                return chunk(x0.clone()).cpu()
            for _ in range(warm):
                eager()
            lat = []
            for _ in range(iters):
                t = time.perf_counter()
                eager()
                lat.append((time.perf_counter() - t) * 1e3)
            params = sum(p.numel() for p in net.parameters()) + (0 if enc is None else sum(p.numel() for p in enc.parameters()))
            row = {"net": os.path.basename(d.rstrip("/")), "device": dev, "batch": b, "rows": b * rows, "nfe": len(steps),
                   "eager_ms": statistics.median(lat), "params": params, "image_encoder": enc is not None}
            if dev != "cuda":
                print(json.dumps(row), flush=True)
                continue
            # The whole DDIM loop captured once, replayed.
            static_x = x0.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    out = chunk(static_x.clone())
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = chunk(static_x.clone())
            for _ in range(warm):
                graph.replay()
                out.cpu()
            lat = []
            for _ in range(iters):
                t = time.perf_counter()
                graph.replay()
                out.cpu()
                lat.append((time.perf_counter() - t) * 1e3)
            row["graph_ms"] = statistics.median(lat)
        print(json.dumps(row), flush=True)


def write_pusht(d, out):
    """A PushT-size checkpoint like the template `d`: LeRobot's PushT U-Net dims, and for an image template
    (a camera in its config) a fresh ResNet18 encoder too; random weights from seed 0."""
    c = json.load(open(os.path.join(d, "config.json")))
    c = dict(c, down_dims=[512, 1024, 2048], diffusion_step_embed_dim=128)
    torch.manual_seed(0)
    a = c["output_features"]["action"]["shape"][0]
    tensors = {}
    cams = cameras(c)
    if cams:
        assert not c.get("use_separate_rgb_encoder_per_camera"), "one shared encoder only"
        kp = c["spatial_softmax_num_keypoints"]
        enc = RgbEncoder(c["input_features"][cams[0]]["shape"][1:], c.get("crop_shape"), c["use_group_norm"], kp)
        tensors.update({"diffusion.rgb_encoder." + k: v for k, v in enc.state_dict().items()})
        g = c["n_obs_steps"] * (state_dim(c) + 2 * kp * len(cams))
    else:
        _, _, g = load(d)
    net = Unet(a, g, c["down_dims"], c["kernel_size"], c["n_groups"], 128, c["use_film_scale_modulation"])
    tensors.update({"diffusion.unet." + k: v for k, v in net.state_dict().items()})
    shutil.copytree(d, out, dirs_exist_ok=True)
    for f in ["riptide.json", "MODEL_CARD.md", "README.md"]:
        p = os.path.join(out, f)
        if os.path.exists(p):
            os.remove(p)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "model.safetensors"))
    json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=2)
    print(json.dumps({"wrote": out, "params": sum(v.numel() for v in tensors.values()), "image_encoder": bool(cams)}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["check", "bench", "write-pusht"])
    ap.add_argument("dir")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test (no graph replay)")
    args = ap.parse_args()
    if args.cmd == "check":
        check(args.dir)
    elif args.cmd == "bench":
        bench(args.dir, [int(b) for b in args.batch.split(",")], args.iters, dev=args.device)
    else:
        write_pusht(args.dir, args.out)
