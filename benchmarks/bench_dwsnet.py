"""Benchmark: one training step of DWSNet vs the flat-MLP baseline on the MNIST INR arch (CPU).

On a CPU by default (``--device cuda`` for a GPU).  One step = forward + cross-entropy + backward + AdamW step at batch 512, arch 2->32->32->1,
DWSNet with 32 hidden channels and 5 equivariant layers.  Reports parameter counts and the median
(and min: the CPU may be shared) step time over a few steps after warm-up.  The DWSNets reference
implementation (552,650 params, max pooling, batch norm, attention set layers) takes ~7.4 s/step
on the 2-core CPU used here.

    python benchmarks/bench_dwsnet.py [--threads 2] [--steps 5] [--batch 512] [--variants]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from inrforge import Weights, make_arch
from inrforge.models import DWSNet, FlatMLP

REFERENCE_S = 7.4
REFERENCE_BATCH = 512  # the batch that time was measured at


def bench(model, w, y, steps, warmup):
    sync = torch.cuda.synchronize if w.device.type == "cuda" else (lambda: None)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=5e-4)
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(w), y)
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", action="store_true", help="also time max pooling + batch norm, attention")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = make_arch()  # 2 -> 32 -> 32 -> 1 SIREN, 1,185 params
    w = Weights.from_flat(torch.randn(args.batch, arch.param_count) * 0.1, arch).to(args.device)
    y = torch.randint(0, 10, (args.batch,)).to(args.device)

    models = [
        ("DWSNet (hidden 32, 5 layers, mean pool)", DWSNet(arch, 10, hidden=32, depth=5)),
    ]
    if args.variants:
        models += [
            ("DWSNet (max pool + batch norm)", DWSNet(arch, 10, hidden=32, depth=5, pool="max", norm="batch")),
            ("DWSNet (attention pooling + batch norm)",
             DWSNet(arch, 10, hidden=32, depth=5, set_layer="attention", norm="batch")),
        ]
    models.append(("FlatMLP (256, 256, 256)", FlatMLP(arch, 10, hidden=(256, 256, 256))))

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, batch {args.batch}, arch {list(arch.widths)}")
    for name, model in models:
        model.to(args.device)
        n = sum(p.numel() for p in model.parameters())
        t, t_min = bench(model, w, y, args.steps, args.warmup)
        extra = ""
        if name.startswith("DWSNet") and args.batch == REFERENCE_BATCH:  # the reference was timed at 512 only
            extra = f"  ({REFERENCE_S / t:.1f}x faster than the reference ~{REFERENCE_S} s)"
        print(f"{name:45s} params {n:9,d}   step {t * 1000:8.1f} ms (min {t_min * 1000:.1f}){extra}")


if __name__ == "__main__":
    main()
