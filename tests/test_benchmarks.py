"""The benchmark scripts run end to end (at toy sizes, so their figures mean nothing here) and
print the figures docs/benchmarks.md quotes: a script that rots is caught here, not by the next
person who measures."""

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("bench_fit", "bench_augment", "bench_dask", "bench_dwsnet", "bench_loader")


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def run_bench(name: str, *args: str) -> str:
    res = run_script(name, *args)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def load_script(name: str, monkeypatch):
    """A benchmark script imported as a module (its folder on sys.path, as when it is run)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fit_prints_both_rates_and_their_ratio():
    out = run_bench("bench_fit", "--steps", "5", "--rounds", "2", "--loop-inrs", "1", "--batch", "3",
                    "--kernel", "native", "--threads", "1", "--peak-tflops", "0.001")
    # the setting, to paste with the figures
    assert re.search(r"^# bench_fit: .+, \d+ cores available, load average [\d.]+; Python [\d.]+, torch \S+; "
                     r"1 threads, device cpu, arch \[2, 32, 32, 1\], 784 points .*5 steps.*batched step: native$",
                     out, re.M), out
    assert len(re.findall(r"^round \d +: loop +[\d.]+ INR/s, native +[\d.]+ INR/s \( *[\d.]+x\)$", out, re.M)) == 2
    assert re.search(r"^ratio +: native: median [\d.]+x, range [\d.]+-[\d.]+x", out, re.M), out
    assert "agree within 0.5 dB: yes" in out, out  # the same optimisation, INR for INR
    # equal PSNR is judged on the same INRs: the batched median over the 2 the loop fitted, apart from all 3
    loop = re.search(r"^loop +: median +[\d.]+ INR/s +median PSNR ([\d.]+) dB \(its 2 INRs\)", out, re.M)
    batched = re.search(r"^native +: median +([\d.]+) INR/s +median PSNR ([\d.]+) dB \(the same 2 INRs\), "
                        r"[\d.]+ dB \(all 3\)", out, re.M)
    assert loop and batched, out
    assert abs(float(loop[1]) - float(batched[2])) <= 0.5
    # the matmul work rate is 6,592 FLOP x 784 points x 5 steps per INR
    flops = re.search(r"^matmul +: native: 6592 FLOP per point-step; batched ([\d.]+) GFLOP/s", out, re.M)
    assert flops, out
    assert float(flops[1]) == pytest.approx(6592 * 784 * 5 * float(batched[1]) / 1e9, rel=0.01, abs=0.01)
    # and as a fraction of the FP32 peak given
    peak = re.search(r"batched ([\d.]+) GFLOP/s, ([\d.]+)% of the 0.001 TFLOP/s FP32 peak \(--peak-tflops\)", out)
    assert peak, out
    assert float(peak[2]) == pytest.approx(100 * float(peak[1]), abs=0.6)  # GFLOP/s is printed to 0.01


def test_bench_fit_measures_several_steps_in_the_same_rounds():
    """``--kernel native,inductor`` fits the batch with each in every round; ``--no-compile`` is the
    eager step whatever --kernel says."""
    out = run_bench("bench_fit", "--steps", "3", "--rounds", "1", "--loop-inrs", "1", "--batch", "2",
                    "--no-compile", "--kernel", "native,inductor", "--threads", "1")
    assert re.search(r"^round 0 +: loop +[\d.]+ INR/s, eager +[\d.]+ INR/s \( *[\d.]+x\)$", out, re.M), out
    assert "native" not in out and "inductor" not in out


def test_bench_fit_flop_count_is_what_torch_counts(monkeypatch):
    """The FLOP formula of the % of peak: torch's own counter on the plain loop's forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from inrforge.arch import make_arch
    from inrforge.inr import image_grid

    bench_fit = load_script("bench_fit", monkeypatch)
    arch = make_arch()
    model = bench_fit.PlainSiren(arch, arch.init_flat([0])[0])
    with FlopCounterMode(display=False) as counter:
        (model(image_grid(28, 28)) - 0.5).square().mean().backward()
    assert bench_fit.matmul_flop(arch.widths) == 6592
    assert counter.get_total_flops() == 6592 * 784


@pytest.mark.parametrize("name, args, message", [
    ("bench_fit", ["--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
    ("bench_fit", ["--threads", "0"], "argument --threads: expected a positive integer, got '0'"),
    ("bench_fit", ["--device", "tpu"], "unknown device 'tpu'"),
    ("bench_fit", ["--kernel", "native,native"], "argument --kernel: expected one or more of native, inductor, "
                                                 "comma-separated, got 'native,native'"),
    ("bench_fit", ["--data", "/nonexistent", "--batch", "1", "--rounds", "1", "--loop-inrs", "1", "--threads", "1",
                   "--no-compile"], "/nonexistent"),
    ("bench_augment", ["--seconds", "0"], "argument --seconds: expected a positive number, got '0'"),
    ("bench_augment", ["--threads", "1,0"], "argument --threads: expected a comma list of positive integers"),
    ("bench_dwsnet", ["--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
    ("bench_dwsnet", ["--device", "tpu"], "unknown device 'tpu'"),
    ("bench_dwsnet", ["--allocator", "jemalloc"], "argument --allocator: invalid choice: 'jemalloc'"),
    ("bench_loader", ["--n", "0"], "argument --n: expected a positive integer, got '0'"),
    ("bench_dask", ["--objects", "0"], "argument --objects: expected a positive integer, got '0'"),
    ("bench_dask", ["--source", "nosuch"], "unknown source 'nosuch'"),
])
def test_bad_arguments_are_a_one_line_error(name, args, message, monkeypatch, capsys, one_thread):
    """In this process (the scripts' own argument handling; a subprocess only added torch's import,
    about 2 s a case): exit status 2 and one line on stderr naming the script."""
    if name == "bench_dask" and "--source" in args:
        pytest.importorskip("distributed")
    module = load_script(name, monkeypatch)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / f"{name}.py"), *args])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, (exit_info.value.code, out[-2000:], err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}.py: error: ") and message in lines[0], err


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_says_what_is_measured_and_the_defaults(name, monkeypatch, capsys):
    module = load_script(name, monkeypatch)  # each script also runs as a script in its own test below
    monkeypatch.setattr(sys, "argv", [str(ROOT / "benchmarks" / f"{name}.py"), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "(default: " in out and "python benchmarks/" in out, out


def test_bench_augment_prints_each_rate_per_thread_count():
    out = run_bench("bench_augment", "--seconds", "0.05", "--batch", "8")
    assert re.search(r"^# bench_augment: .+ cores available, .+ torch \S+; arch \[2, 32, 32, 1\], batch 8", out,
                     re.M), out
    for threads in (1, 2):
        assert re.search(rf"^threads={threads}: Permute\+SirenNegate [\d,]+ samples/s \| MixUp\(align\) [\d,]+ pairs/s "
                         rf"\| weight_matching [\d,]+ pairs/s$", out, re.M), out


def test_bench_dwsnet_compares_with_the_reference_only_at_its_batch():
    out = run_bench("bench_dwsnet", "--threads", "1", "--steps", "1", "--warmup", "0", "--batch", "8")
    assert re.search(r"^DWSNet \(hidden 32, 5 layers, mean pool\) +params +370,890 +step +[\d.]+ ms", out, re.M), out
    assert re.search(r"^FlatMLP .* params +437,770 +step +[\d.]+ ms", out, re.M), out
    assert "reference" not in out  # the reference's 7.4 s is a batch-512 figure
    expected = "glibc keeps freed memory" if platform.libc_ver()[0] == "glibc" else "unchanged (not glibc)"
    assert re.search(rf"^# bench_dwsnet: .*, allocator: {expected}$", out, re.M), out


@pytest.mark.filterwarnings("ignore")
def test_bench_loader_prints_every_pipeline(tmp_path):
    # not TMPDIR=tmp_path: a long TMPDIR breaks torch's shared-memory socket and the workers hang
    out = run_bench("bench_loader", "--n", "64", "--batch", "16", "--batches", "2", "--threads", "1",
                    "--tmp", str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # its store and per-file export are removed
    for cache in ("True", "False"):
        for aug in ("none", "perm+neg", "mixup", "mixup-perm", "mixup-align"):
            for workers in (0, 2):
                assert re.search(rf"^WeightDataset cache={cache} +{re.escape(aug)} +workers={workers}: +\d+ samples/s",
                                 out, re.M), (cache, aug, workers, out)


def test_bench_loader_rate_leaves_each_epochs_start_untimed(monkeypatch):
    """Starting an epoch (new workers, first read) is a warm-up, however many epochs are timed:
    on a fake clock, batches cost 1 s and an epoch's start 100 s, so the rate is 2 samples/s."""
    bench_loader = load_script("bench_loader", monkeypatch)
    clock = [0.0]

    class Loader:  # epochs of 3 batches of 2 samples
        def __iter__(self):
            clock[0] += 100.0
            for _ in range(3):
                clock[0] += 1.0
                yield torch.zeros(2), None

    monkeypatch.setattr(bench_loader, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    for batches in (1, 2, 3, 5):
        assert bench_loader.rate(Loader(), batches) == 2.0


def test_bench_dask_stores_agree_bit_for_bit():
    pytest.importorskip("distributed")
    out = run_bench("bench_dask", "--objects", "8", "--steps", "3", "--shard", "4", "--workers", "2",
                    "--overhead-shards", "2", "--repeat", "1")
    assert re.search(r"dask LocalCluster, 2 workers x 1 thread +[\d.]+ s +[\d.]+ INR/s", out), out
    assert "dask store bit-identical to the single-process store: True" in out, out
