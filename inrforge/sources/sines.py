"""Synthetic 1-D sine waves ``f(x) = a * sin(b * x)`` (the DWSNets self-supervised INR experiment).

``x_k = -pi + 2 pi k / n_points`` for ``k = 0 .. n_points - 1`` (float64, stored as float32 coords).
``a ~ U(a_range)`` then ``b ~ U(b_range)`` are drawn (n each, in that order) from
``numpy.random.default_rng(seed)`` and rounded to float32 (the labels); with ``fixed_amplitude``
``a`` is that constant (``a`` is still drawn and discarded, so a seed gives the same ``b`` either
way) and the label is ``b`` alone.  Targets are computed on demand in float64 from the float32
``a, b`` and float64 ``x`` and rounded to float32: they are raw values, not in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InrforgeError
from .base import Source, check_memory, float_option, int_option


def parse_range(value, name: str) -> tuple[float, float]:
    """``(lo, hi)``, ``[lo, hi]`` or ``"lo,hi"`` -> finite floats (float32-representable) with lo <= hi."""
    bad = InrforgeError(f"option {name} must be two numbers lo,hi (e.g. 0,10), got {value!r}")
    if isinstance(value, str):
        value = value.strip().strip("()[]").split(",")
    try:
        items = list(value)
    except TypeError:
        raise bad from None
    if len(items) != 2 or any(isinstance(v, (bool, np.bool_)) for v in items):
        raise bad
    try:
        lo, hi = (float(v) for v in items)
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InrforgeError(f"option {name} must be finite with lo <= hi, got ({lo}, {hi})")
    if max(abs(lo), abs(hi)) > float(np.finfo(np.float32).max):
        raise InrforgeError(f"option {name} must fit in float32 (|value| <= 3.4e38), got ({lo}, {hi})")
    return lo, hi


def _positive_int(value, name: str) -> int:
    return int_option(value, name, minimum=1)


def sine_grid(n_points: int) -> np.ndarray:
    """(n_points,) float64 ``x_k = -pi + 2 pi k / n_points``, computed in place (the same operations
    in the same order as ``-np.pi + 2.0 * np.pi * k / n_points``, hence the same bits), so that a
    large grid takes its own 8 bytes a point and no temporaries as large."""
    x = np.arange(n_points, dtype=np.float64)
    x *= 2.0 * np.pi
    x /= n_points
    x += -np.pi
    return x


class SinesSource(Source):
    target_scaling = "raw values a*sin(b*x)"
    unit_targets = False  # amplitudes above 1: an MSE above 1 (a PSNR below 0 dB) is possible

    def __init__(self, n: int = 10000, a_range=(0.0, 10.0), b_range=(0.0, 10.0), fixed_amplitude=None,
                 n_points: int = 2000, seed: int = 0):
        n = _positive_int(n, "n")
        n_points = _positive_int(n_points, "n_points")
        a_range = parse_range(a_range, "a_range")
        b_range = parse_range(b_range, "b_range")
        seed = int_option(seed, "seed", minimum=0)
        if fixed_amplitude is not None:
            fixed_amplitude = float_option(fixed_amplitude, "fixed_amplitude", float32=True)
        # a, b, the labels (float32) and numpy's float64 draws; the grid: float64 x + float32 coords
        check_memory(n * (4 + 4 + 8 + 8) + n_points * (8 + 4), f"sines with n={n}, n_points={n_points}")

        rng = np.random.default_rng(seed)
        a = rng.uniform(a_range[0], a_range[1], size=n).astype(np.float32)
        b = rng.uniform(b_range[0], b_range[1], size=n).astype(np.float32)
        if fixed_amplitude is not None:
            a = np.full(n, fixed_amplitude, dtype=np.float32)
            self.labels = b[:, None].copy()
            self.label_names = ["b"]
        else:
            self.labels = np.stack([a, b], axis=1)
            self.label_names = ["a", "b"]
        self.name = "sines"
        self.a, self.b = a, b
        self.official_test = np.zeros(0, dtype=np.int64)
        self.n_points = n_points
        self._x = sine_grid(n_points)
        self._coords = torch.from_numpy(self._x.astype(np.float32)[:, None])
        self.params = {"n": n, "a_range": list(a_range), "b_range": list(b_range),
                       "fixed_amplitude": fixed_amplitude, "n_points": n_points, "seed": seed}

    @property
    def coords(self) -> torch.Tensor:
        return self._coords

    @property
    def out_features(self) -> int:
        return 1

    def targets(self, indices) -> torch.Tensor:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        a = self.a[idx].astype(np.float64)[:, None]
        b = self.b[idx].astype(np.float64)[:, None]
        y = (a * np.sin(b * self._x[None, :])).astype(np.float32)
        return torch.from_numpy(y[..., None])

    def grid(self) -> dict:
        return {"kind": "interval", "lo": -math.pi, "hi": math.pi, "n_points": self.n_points,
                "endpoint": False, "coords": "x[k] = -pi + 2*pi*k/n_points, k = 0..n_points-1"}

    def _limit(self, n: int) -> None:
        super()._limit(n)
        self.a = self.a[:n]
        self.b = self.b[:n]


def load_sines_source(n=10000, a_range=(0.0, 10.0), b_range=(0.0, 10.0), fixed_amplitude=None,
                      n_points=2000, seed=0) -> SinesSource:
    return SinesSource(n=n, a_range=a_range, b_range=b_range, fixed_amplitude=fixed_amplitude,
                       n_points=n_points, seed=seed)
