"""The benchmark scripts run end to end (at toy sizes, so their figures mean nothing here) and
print the figures docs/benchmarks.md quotes: a script that rots is caught here, not by the next
person who measures."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(name: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_bench_fit_prints_both_rates_and_their_ratio():
    out = run_bench("bench_fit", "--steps", "5", "--rounds", "2", "--loop-inrs", "1", "--batch", "2", "--no-compile",
                    "--threads", "1")
    assert len(re.findall(r"^round \d +: loop +[\d.]+ INR/s, batched +[\d.]+ INR/s, ratio +[\d.]+x$", out, re.M)) == 2
    assert re.search(r"^ratio +: median [\d.]+x, range [\d.]+-[\d.]+x", out, re.M), out
    assert "agree within 0.5 dB: yes" in out, out  # the same optimisation, INR for INR


def test_bench_augment_prints_each_rate_per_thread_count():
    out = run_bench("bench_augment", "--seconds", "0.05", "--batch", "8")
    for threads in (1, 2):
        assert re.search(rf"^threads={threads}: Permute\+SirenNegate [\d,]+ samples/s \| MixUp\(align\) [\d,]+ pairs/s "
                         rf"\| weight_matching [\d,]+ pairs/s$", out, re.M), out


def test_bench_dwsnet_compares_with_the_reference_only_at_its_batch():
    out = run_bench("bench_dwsnet", "--threads", "1", "--steps", "1", "--warmup", "0", "--batch", "8")
    assert re.search(r"^DWSNet .* params +370,890 +step +[\d.]+ ms", out, re.M), out
    assert re.search(r"^FlatMLP .* params +437,770 +step +[\d.]+ ms", out, re.M), out
    assert "reference" not in out  # the reference's 7.4 s is a batch-512 figure


@pytest.mark.filterwarnings("ignore")
def test_bench_loader_prints_every_pipeline():
    out = run_bench("bench_loader", "--n", "64", "--batch", "16", "--batches", "2", "--threads", "1")
    for cache in ("True", "False"):
        for aug in ("none", "perm+neg", "mixup", "mixup-perm", "mixup-align"):
            for workers in (0, 2):
                assert re.search(rf"^WeightDataset cache={cache} +{re.escape(aug)} +workers={workers}: +\d+ samples/s",
                                 out, re.M), (cache, aug, workers, out)


def test_bench_dask_stores_agree_bit_for_bit():
    pytest.importorskip("distributed")
    out = run_bench("bench_dask", "--objects", "8", "--steps", "3", "--shard", "4", "--workers", "2",
                    "--overhead-shards", "2", "--repeat", "1")
    assert re.search(r"dask LocalCluster, 2 workers x 1 thread +[\d.]+ s +[\d.]+ INR/s", out), out
    assert "dask store bit-identical to the single-process store: True" in out, out
