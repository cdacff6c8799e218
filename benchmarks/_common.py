"""The line that states the setting a benchmark figure was measured in (the scripts' argument
parsing is inrforge.script's: one-line errors, defaults in --help).

The scripts are run as ``python benchmarks/bench_*.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import os
import platform

import torch


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def setting(device: str = "cpu") -> str:
    """Machine, cores, load, Python and torch versions (and the GPU on ``cuda``), to paste with a figure."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    gpu = ""
    if torch.device(device).type == "cuda":
        gpu = (f", GPU {torch.cuda.get_device_name(device)} (float32 matmul precision "
               f"{torch.get_float32_matmul_precision()})")
    return (f"{cpu_name()}, {cores} cores available{load}{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")

