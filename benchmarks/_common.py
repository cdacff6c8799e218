"""What every benchmark script shares: argument types that refuse nonsense with a one-line error,
and the line that states the setting a figure was measured in.

The scripts are run as ``python benchmarks/bench_*.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows the script's docstring as written and every option's default (where it has one)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def count(minimum: int = 1):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


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

