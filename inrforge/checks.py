"""Argument checks shared by every stage: each returns the clean value or raises an
:class:`~inrforge.errors.InrforgeError` whose one line names the argument and the value given.

A bool is never a number here (``True`` is an int to Python, never a sensible count or rate), and a
string is never converted: ``"8"`` is refused, not read as 8.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .errors import InrforgeError


def scalar(value):
    """A one-element, 0-d array or tensor (``torch.tensor(0.5)``, ``np.array(3)``) as its Python
    number; anything else as it is."""
    return value.item() if getattr(value, "ndim", None) == 0 and hasattr(value, "item") else value


def is_number(value) -> bool:
    """Whether ``value`` is a real number (int, float, numpy scalar), not a bool or a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def shown(value, limit: int = 40) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters (a 400-digit int is not read)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def record_differences(old: dict, new: dict, had: str = "was", skip=None, prefix: str = "") -> list[str]:
    """``key.sub: <had> A, now B`` for every differing leaf of two nested records (a store's
    identity, a training run's record), keys in sorted order; ``skip(key)`` (the dotted key) leaves
    one out.  Long values are shortened (:func:`brief`), two long strings that would look alike
    are shown around where they differ, and a long list names its differing entries (at most 3)."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if skip is not None and skip(path):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += record_differences(a, b, had, skip, f"{path}.")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and len(repr(a)) > 80:
            diffs += [f"{path}[{i}]: {had} {brief(x)}, now {brief(y)}"  # a long list: where it differs
                      for i, (x, y) in enumerate(zip(a, b)) if x != y][:3]
        elif a != b:
            pair = (brief(a), brief(b))
            if pair[0] == pair[1] and isinstance(a, str) and isinstance(b, str):
                pair = _around_difference(a, b)
            diffs.append(f"{path}: {had} {pair[0]}, now {pair[1]}")
    return diffs


def _around_difference(a: str, b: str, width: int = 30) -> tuple[str, str]:
    """Two long strings that :func:`brief` would show alike, shown around where they first differ."""
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - width)
    return tuple(f"{'...' if lo else ''}{t[lo:i + width]!r}{'...' if i + width < len(t) else ''}" for t in (a, b))


def brief(value, limit: int = 80) -> str:
    """``repr(value)``, shortened past ``limit`` characters (a list of 5,000 layer widths, a long
    path): a list keeps its first three entries, its last and its length."""
    if isinstance(value, (list, tuple)) and len(value) > 4 and len(repr(value)) > limit:
        head = ", ".join(brief(v, 20) for v in value[:3])
        return f"[{head}, ..., {brief(value[-1], 20)}] ({len(value)} entries)"
    return shown(value, limit)


def byte_size(nbytes: int) -> str:
    """``nbytes`` for a message: in GiB (one decimal), or in MiB below 1 GiB (not "0.0 GiB")."""
    return f"{nbytes / 2**30:,.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def number(value, what: str, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` (a :func:`scalar`) as a finite float, at least ``minimum`` (if given) and above 0
    (if ``positive``)."""
    value = scalar(value)
    if not is_number(value) or not _finite(value) or (minimum is not None and value < minimum) \
            or (positive and value <= 0):
        expects = ("a positive number" if positive else "a finite number" if minimum is None
                   else f"a number >= {minimum:g}")
        raise InrforgeError(f"{what} must be {expects}, got {shown(value)}")
    return float(value)


def whole_number(value, what: str, minimum: int | None = 1) -> int:
    """``value`` as an int (>= ``minimum`` unless it is None): an int or an integral float (``32.0``,
    as JSON may give); a bool, a string, ``2.5``, NaN or anything else is an :class:`InrforgeError`
    naming ``what`` (never truncated); 0-d arrays and tensors count as their :func:`scalar`.
    (:func:`check_count` is the stricter API check: no floats.)"""
    value = scalar(value)
    ok = isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and math.isfinite(value)
                                                  and float(value).is_integer())
    if isinstance(value, (bool, np.bool_)) or not ok or (minimum is not None and int(value) < minimum):
        expects = {None: "an integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise InrforgeError(f"{what} must be {expects}, got {shown(value)}")
    return int(value)


def check_count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool, not 2.0) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InrforgeError(f"{name} must be {what}, got {shown(value)}")
    return int(value)


def seed_value(value, what: str = "seed") -> int:
    """A random seed: an integer in [0, 2**63) (what torch and numpy generators take)."""
    n = check_count(what, value, minimum=0)
    if n >= 2**63:
        raise InrforgeError(f"{what} must be below 2**63, got {shown(value)}")
    return n


def probability(value, what: str, closed_top: bool = True) -> float:
    """``value`` (a :func:`scalar`) as a float in [0, 1] (or [0, 1) unless ``closed_top``)."""
    value = scalar(value)
    if not is_number(value) or not (0.0 <= value <= 1.0) or (not closed_top and value == 1.0):
        raise InrforgeError(f"{what} must be in [0, 1{']' if closed_top else ')'}, got {shown(value)}")
    return float(value)


def usable_cores() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_count(value, what: str, minimum: int = 1) -> int:
    """``value`` (a :func:`check_count`) processes or threads to start on this machine: more than
    4 per core (and more than 8 on a small machine) is refused, since that many would only fight
    over the cores, and a typo such as 100000 would take the machine down while they start."""
    n = check_count(what, value, minimum)
    cap = max(8, 4 * usable_cores())
    if n > cap:
        raise InrforgeError(f"{what} is {n}, more than this machine's {usable_cores()} cores can run "
                            f"(at most {cap}, 4 per core)")
    return n


def check_device(device: str, here: bool = True) -> torch.device:
    """``device`` as a torch device: ``cpu`` or ``cuda[:N]``, and (``here``) present in this process."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InrforgeError(f"unknown device {device!r}; use cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda"):
        raise InrforgeError(f"unsupported device {device!r}; use cpu or cuda[:N]")
    if here and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InrforgeError(f"device {device!r} requested but CUDA is not available here")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:  # torch would fail later: "invalid device ordinal"
            raise InrforgeError(f"device {device!r} requested but this host has {n} CUDA device{'s' * (n != 1)} "
                                f"(cuda:0 to cuda:{n - 1})")
    return dev
