"""Throughput of the weight-space augmentations on CPU.

Prints, for each of ``--threads`` (torch.set_num_threads; default 1 and 2):
* samples/s of Compose([Permute(), SirenNegate()]) at batch 256 (2->32->32->1 SIREN, float32);
* aligned-MixUp pairs/s (MixUp(mode="align"), batch 256, same arch: each sample is mixed with a
  partner aligned to it), and bare weight_matching pairs/s on unrelated pairs.
The INRs are siren-dwsnets inits with noise added (alignment has real work to do).  Each rate is
calls x batch over at least ``--seconds`` of repeated calls (``time.perf_counter``), after one
untimed call.  No baseline: these are absolute rates.

Usage: python benchmarks/bench_augment.py [--seconds 2.0] [--batch 256] [--threads 1,2]
"""

from __future__ import annotations

import time

import torch

from _common import setting
from inrforge.align import weight_matching
from inrforge.arch import make_arch
from inrforge.augment import Compose, MixUp, Permute, SirenNegate
from inrforge.script import ArgumentParser, HelpAsWritten, int_at_least, positive_float, positive_ints
from inrforge.weights import Weights


def rate(fn, items_per_call: int, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n * items_per_call / elapsed


def main() -> None:
    ap = ArgumentParser(description=__doc__, formatter_class=HelpAsWritten)
    ap.add_argument("--seconds", type=positive_float, default=2.0, help="time per measurement")
    ap.add_argument("--batch", type=int_at_least(2), default=256, help="INRs per call")
    ap.add_argument("--threads", type=positive_ints, default="1,2", help="comma-separated torch thread counts to measure at")
    args = ap.parse_args()
    thread_counts = args.threads

    arch = make_arch("siren-dwsnets")  # 2 -> 32 -> 32 -> 1
    b = args.batch
    pool = Weights.from_flat(arch.init_flat(range(4 * b)), arch)
    # Trained INRs are not at init: spread the weights a bit so alignment has real work to do.
    g = torch.Generator().manual_seed(0)
    flat = pool.flatten()
    pool = Weights.from_flat(flat + 0.5 * flat.std() * torch.randn(flat.shape, generator=g), arch)
    w, other = pool[:b], pool[b : 2 * b]

    sym = Compose([Permute(), SirenNegate()])
    mix = MixUp(mode="align", num_classes=10)
    labels = torch.arange(b) % 10
    gen = torch.Generator().manual_seed(1)

    print(f"# bench_augment: {setting()}; arch {list(arch.widths)}, batch {b}, {args.seconds} s per rate")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        r_sym = rate(lambda: sym(w, generator=gen), b, args.seconds)
        r_mix = rate(lambda: mix(w, labels, generator=gen), b, args.seconds)
        r_wm = rate(lambda: weight_matching(w, other, generator=gen), b, args.seconds)
        print(
            f"threads={threads}: Permute+SirenNegate {r_sym:,.0f} samples/s | "
            f"MixUp(align) {r_mix:,.0f} pairs/s | weight_matching {r_wm:,.0f} pairs/s"
        )


if __name__ == "__main__":
    main()
