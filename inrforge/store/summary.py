"""One-line text about a store, from :meth:`INRStore.info` (what the commands and pipelines print),
and object numbers written as ranges for messages."""

from __future__ import annotations

import math

import numpy as np


def psnr_summary(info: dict, p5: bool = False) -> str:
    """``median PSNR 40.23 dB`` (with ``p5``: ``... (p5 40.02)``) from :meth:`INRStore.info`, or
    ``median PSNR none recorded`` when no finished INR has one (nothing fitted yet, all failed,
    imported INRs)."""
    if math.isnan(info["psnr_median"]):
        return "median PSNR none recorded"
    return f"median PSNR {info['psnr_median']:.2f} dB" + (f" (p5 {info['psnr_p5']:.2f})" if p5 else "")


def summary_line(path: str, info: dict) -> str:
    """``PATH: N objects x V views, median PSNR ... (p5 ...); splits {...}`` from
    :meth:`INRStore.info`: what a pipeline prints about the store it trains on."""
    return (f"{path}: {info['objects']} objects x {info['views']} views, {psnr_summary(info, p5=True)}; "
            f"splits {info['splits']}")


def _ranges(objects) -> str:
    """``0-15, 32, 40-47`` for sorted object numbers (the first eight runs, then how many in all)."""
    objects = np.unique(np.asarray(objects, dtype=np.int64))
    cuts = np.flatnonzero(np.diff(objects) != 1) + 1
    runs = [f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in np.split(objects, cuts)]
    more = f", ... ({len(objects)} objects in all)" if len(runs) > 8 else ""
    return ", ".join(runs[:8]) + more
