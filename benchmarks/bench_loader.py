"""Loader throughput: inrforge's batched WeightDataset vs the usual per-file, per-sample pipeline.

The per-sample baseline is what weight-space code usually does: one ``.pth`` state dict per INR,
``torch.load`` per item, the augmentation applied per sample in Python, default collate.  Both
run in this process on the same INRs (2->32->32->1 SIREN, random values: speed does not depend
on them), batch 256, workers 0 and 2.  Prints samples/s (pairs/s for MixUp) per configuration
and the ratio to the baseline with the same augmentation and workers.  Each rate counts
``--batches`` batches (a quarter of them, at least 3, for the slow baseline; 5 for aligned MixUp)
after an untimed first batch; when an epoch ends, starting the next one (new workers) and its first
batch are not timed either, so every figure is a steady-state rate.  The synthetic store and the
per-file export live in a new folder inside ``--tmp`` (default: the system's temporary folder; the
"from Zarr" figures depend on that disk), removed at the end.

    python benchmarks/bench_loader.py [--n 8192] [--batch 256] [--batches 20] [--threads 2] [--tmp DIR]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from _common import setting
from inrforge.arch import make_arch
from inrforge.augment import Compose, MixUp, Permute, SirenNegate
from inrforge.data import WeightDataset
from inrforge.interop import export_dws
from inrforge.script import ArgumentParser, HelpAsWritten, positive_int
from inrforge.store import ShardData, create_store


def synthetic_store(path, n, views=2):
    arch = make_arch()
    rng = np.random.default_rng(0)
    s = create_store(path, arch=arch, n_objects=n, views=views, labels=np.arange(n) % 10,
                     splits={"train": np.arange(n)}, source={"name": "synthetic", "params": {}}, fit={},
                     shard_objects=1024, chunk_objects=16)
    for k in range(s.n_shards):
        a, b = s.shard_range(k)
        p = (rng.standard_normal((b - a, views, arch.param_count)) * 0.1).astype(np.float32)
        ok = np.full((b - a, views), 30.0, np.float32)
        s.write_shard(ShardData(a, p, ok, ok, np.ones((b - a, views), np.int32), np.zeros((b - a, views), bool)))
    return s


class PerFileDataset(Dataset):
    """The usual approach: torch.load one state dict per item, augment it alone, in Python."""

    def __init__(self, files, labels, augment):
        self.files, self.labels, self.augment = files, labels, augment

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        state = torch.load(self.files[i], weights_only=True)
        ws = [state[f"seq.{k}.weight"] for k in range(3)]
        bs = [state[f"seq.{k}.bias"] for k in range(3)]
        if self.augment:
            for k in range(2):  # hidden layers: permute then negate neurons
                p = torch.randperm(ws[k].shape[0])
                s = torch.randint(0, 2, (ws[k].shape[0],)).float() * 2 - 1
                ws[k], bs[k] = ws[k][p] * s[:, None], bs[k][p] * s
                ws[k + 1] = ws[k + 1][:, p] * s[None, :]
        flat = torch.cat([t.reshape(-1) for pair in zip(ws, bs) for t in pair])
        return flat, self.labels[i]


def rate(loader, batches):
    """Samples/s over ``batches`` batches, each epoch's start (worker start, first read) untimed."""
    elapsed, n = 0.0, 0
    while True:
        it = iter(loader)
        next(it)  # warm-up (worker start, first read)
        t = time.perf_counter()
        for w, _ in it:
            n += len(w)
            batches -= 1
            if batches == 0:
                return n / (elapsed + time.perf_counter() - t)
        elapsed += time.perf_counter() - t


def main():
    p = ArgumentParser(description=__doc__, formatter_class=HelpAsWritten)
    p.add_argument("--n", type=positive_int, default=8192, help="INRs in the synthetic store")
    p.add_argument("--batch", type=positive_int, default=256, help="INRs per batch")
    p.add_argument("--batches", type=positive_int, default=20, help="timed batches per configuration")
    p.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)), help="torch threads")
    p.add_argument("--tmp", help="where to write the store and the per-file export (default: the system's)")
    a = p.parse_args()
    if a.tmp is not None and not os.path.isdir(a.tmp):
        p.error(f"--tmp {a.tmp} is not a folder")
    if a.n < 2 * a.batch:
        p.error(f"--n ({a.n}) must be at least twice --batch ({a.batch}): an epoch's first batch is not timed")
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_", dir=a.tmp))
    try:
        bench(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(a, tmp):
    store = synthetic_store(tmp / "s.zarr", a.n)
    print(f"# bench_loader: {setting()}; {a.n} INRs (2->32->32->1), batch {a.batch}, {a.threads} threads, "
          f"{a.batches} timed batches, store in {tmp}")

    export_dws(store, tmp / "files")
    files = sorted((tmp / "files" / "train").glob("*.pth"))
    labels = torch.from_numpy(store.labels)
    base = {}
    for workers in (0, 2):
        for aug in (False, True):
            dl = DataLoader(PerFileDataset(files, labels, aug), batch_size=a.batch, shuffle=True, num_workers=workers)
            base[(aug, workers)] = rate(dl, max(3, a.batches // 4))
            print(f"per-file baseline   aug={'perm+neg' if aug else 'none':8s} workers={workers}: "
                  f"{base[(aug, workers)]:10.0f} samples/s")

    configs = {
        "none": None,
        "perm+neg": Compose([Permute(), SirenNegate()]),
        "mixup": MixUp("vanilla", num_classes=10),
        "mixup-perm": MixUp("perm", num_classes=10),
        "mixup-align": MixUp("align", num_classes=10),
    }
    for cache in (True, False):
        for name, t in configs.items():
            for workers in (0, 2):
                ds = WeightDataset(store, "train", transform=t, cache=cache)
                r = rate(ds.loader(a.batch, num_workers=workers), a.batches if "align" not in name else 5)
                ref = base[(name == "perm+neg", workers)] if name in ("none", "perm+neg") else None
                ratio = f"  ({r / ref:.0f}x per-file)" if ref else ""
                print(f"WeightDataset cache={str(cache):5s} {name:11s} workers={workers}: {r:10.0f} samples/s{ratio}")

if __name__ == "__main__":
    main()
