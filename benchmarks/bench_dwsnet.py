"""Benchmark: one training step of DWSNet vs the flat-MLP baseline on the MNIST INR arch.

On a CPU by default (``--device cuda`` for a GPU).  One step = forward + cross-entropy + backward
+ AdamW step at batch 512 on random weights and labels (speed does not depend on them), arch
2->32->32->1, DWSNet with 32 hidden channels and 5 equivariant layers.  Reports parameter counts
and the median (and min: the CPU may be shared) step time over ``--steps`` steps after
``--warmup`` untimed ones, timed with ``time.perf_counter`` (after a CUDA synchronisation on a GPU).
``--allocator keep`` (the default) sets glibc's malloc as inrforge's training loops do
(:func:`inrforge.memory.keep_freed_memory`); ``--allocator default`` leaves glibc's own settings, under
which each step page-faults its activations in again (a separate run: the setting is per process).

The DWSNets reference implementation (552,650 params, max pooling, batch norm, attention set
layers) took ~7.4 s per step at batch 512 on the 2-core CPU of docs/benchmarks.md, measured
earlier, not in this run; the ratio to it is printed only for a CPU run at batch 512.

    python benchmarks/bench_dwsnet.py [--threads 2] [--steps 5] [--batch 512] [--hidden 32] [--depth 5]
                                      [--variants] [--allocator keep|default] [--device cpu]
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from _common import setting
from inrforge import Weights, make_arch
from inrforge.errors import InrforgeError
from inrforge.checks import check_device
from inrforge.memory import keep_freed_memory
from inrforge.models import DWSNet, FlatMLP
from inrforge.script import ArgumentParser, HelpAsWritten, nonnegative_int, positive_int

REFERENCE_S = 7.4
REFERENCE_BATCH = 512  # the batch that time was measured at


def bench(model, w, y, steps, warmup):
    sync = (lambda: torch.cuda.synchronize(w.device)) if w.device.type == "cuda" else (lambda: None)  # that GPU
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
    ap = ArgumentParser(description=__doc__, formatter_class=HelpAsWritten)
    ap.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    ap.add_argument("--steps", type=positive_int, default=5, help="timed steps per model")
    ap.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed steps before them")
    ap.add_argument("--batch", type=positive_int, default=512, help="INRs per step")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--hidden", type=positive_int, default=32, help="DWSNet channels")
    ap.add_argument("--depth", type=positive_int, default=5, help="DWSNet layers")
    ap.add_argument("--variants", action="store_true", help="also time max pooling + batch norm, attention")
    ap.add_argument("--allocator", choices=("keep", "default"), default="keep",
                    help="keep: glibc keeps freed memory for reuse, as the training loops set it; default: glibc's own")
    args = ap.parse_args()
    try:
        check_device(args.device)
    except InrforgeError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.allocator == "keep" else False
    torch.manual_seed(0)
    arch = make_arch()  # 2 -> 32 -> 32 -> 1 SIREN, 1,185 params
    w = Weights.from_flat(torch.randn(args.batch, arch.param_count) * 0.1, arch).to(args.device)
    y = torch.randint(0, 10, (args.batch,)).to(args.device)

    h, d = args.hidden, args.depth
    models = [
        (f"DWSNet (hidden {h}, {d} layers, mean pool)", DWSNet(arch, 10, hidden=h, depth=d)),
    ]
    if args.variants:
        models += [
            ("DWSNet (max pool + batch norm)", DWSNet(arch, 10, hidden=h, depth=d, pool="max", norm="batch")),
            ("DWSNet (attention pooling + batch norm)",
             DWSNet(arch, 10, hidden=h, depth=d, set_layer="attention", norm="batch")),
        ]
    models.append(("FlatMLP (256, 256, 256)", FlatMLP(arch, 10, hidden=(256, 256, 256))))

    print(f"# bench_dwsnet: {setting(args.device)}; device {args.device}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}, arch {list(arch.widths)}, {args.warmup} warm-up + {args.steps} timed steps, "
          f"allocator: {'glibc keeps freed memory' if kept else 'glibc default' if args.allocator == 'default' else 'unchanged (not glibc)'}")
    for name, model in models:
        model.to(args.device)
        n = sum(p.numel() for p in model.parameters())
        t, t_min = bench(model, w, y, args.steps, args.warmup)
        extra = ""
        if name.startswith("DWSNet") and args.batch == REFERENCE_BATCH and (h, d) == (32, 5) and w.device.type == "cpu":
            # the reference was timed on a CPU at batch 512 only (its own model size), in an earlier run
            extra = f"  ({REFERENCE_S / t:.1f}x faster than the reference's ~{REFERENCE_S} s, measured earlier)"
        print(f"{name:45s} params {n:9,d}   step {t * 1000:8.1f} ms (min {t_min * 1000:.1f}){extra}")


if __name__ == "__main__":
    main()
