"""The store format's constants, and the check of a store's attributes when it is opened.

What the format fixes (its version, the standard metrics, the fill values of a lost chunk, the
attributes every store carries and the marker of a store being built), and the validation that
turns a missing or malformed attribute into one :class:`InrforgeError` naming the store.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..arch import INRSpec
from ..checks import whole_number
from ..errors import InrforgeError
from ..fit import LR_SCHEDULES
from ..version import __version__

FORMAT_VERSION = 1
METRICS = ("psnr", "loss", "steps", "failed")
MISSING = {"int64": -1, "float32": np.nan}  # fill values of labels and splits: what a lost chunk reads as
ATTRIBUTES = ("arch", "layout", "source", "fit", "n_objects", "views", "shard_objects", "chunk_objects")
# The attribute a group carries from its first write until create_store finishes it (the finished
# store has ``inrforge`` instead): what marks a leftover ``OUT.tmp-PID`` folder as inrforge's own.
BUILDING = "inrforge-building"


def _check_format(path: str, meta) -> None:
    """An :class:`InrforgeError` unless ``meta`` (the ``inrforge`` attribute) marks a store of the
    format this code reads."""
    if not isinstance(meta, dict) or "format" not in meta:
        raise InrforgeError(f"{path} is a Zarr group but not an inrforge store")
    fmt = meta["format"]
    if isinstance(fmt, bool) or not isinstance(fmt, int):
        raise InrforgeError(f"{path} has a malformed format marker {fmt!r} (inrforge.format must be an integer)")
    if fmt > FORMAT_VERSION:
        raise InrforgeError(f"{path} has store format {fmt}, newer than this inrforge {__version__} reads "
                            f"(format {FORMAT_VERSION}): upgrade inrforge to read it")
    if fmt != FORMAT_VERSION:
        raise InrforgeError(f"{path} has store format {fmt}; this inrforge reads format {FORMAT_VERSION}")


def _check_attributes(path: str, attrs: dict) -> tuple[INRSpec, int, int, int]:
    """``(arch, n_objects, views, shard_objects)`` from a store's attributes; an
    :class:`InrforgeError` naming ``path`` when one is missing or malformed, or when the layout is
    not the arch's (the reader builds weights from the arch)."""
    missing = [k for k in ATTRIBUTES if k not in attrs]
    if missing:
        raise InrforgeError(f"{path} is a damaged inrforge store: missing attribute{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)}")
    for key in ("source", "fit"):
        if not isinstance(attrs[key], dict):
            raise InrforgeError(f"{path}: attribute {key} must be a JSON object, got {type(attrs[key]).__name__}")
    try:
        arch = INRSpec.from_dict(attrs["arch"])
        n, views, shard, _ = (whole_number(attrs[k], k) for k in ATTRIBUTES[4:])
    except InrforgeError as e:
        raise InrforgeError(f"{path}: {e}") from None
    for where, key, ok, what in _RECORDED:
        value = attrs[where].get(key, None) if isinstance(attrs[where], dict) else None
        if key in attrs[where] and not ok(value):
            raise InrforgeError(f"{path}: attribute {where}.{key} must be {what}, got {json.dumps(value)[:60]} "
                                f"(a hand-edited or damaged store?)")
    grid = attrs["source"].get("grid")
    if grid is not None and not _valid_grid(grid):
        raise InrforgeError(f"{path}: attribute source.grid is malformed, got {json.dumps(grid)[:80]} "
                            f"(a hand-edited or damaged store?)")
    if attrs["layout"] != arch.layout_dicts():
        raise InrforgeError(f"{path}: the stored layout does not match its arch "
                            f"({_layout_difference(attrs['layout'], arch.layout_dicts())})")
    return arch, n, views, shard


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_versions(v) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


# The recorded fit settings that commands read, where present (an import records none): (part, key,
# test, what it must be).  The rest of ``fit`` and ``source`` is information, shown as it is.
_RECORDED = (
    ("fit", "steps", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("fit", "lr", lambda v: _is_num(v) and v > 0, "a positive number"),
    ("fit", "lr_schedule", lambda v: v in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
    ("fit", "first_layer_lr", lambda v: _is_num(v) and math.isfinite(v) and v > 0, "a positive number"),
    ("fit", "shared_init", lambda v: isinstance(v, bool), "true or false"),
    ("fit", "seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    ("fit", "batch_size", lambda v: _is_int(v) and v >= 1, "a positive integer"),
    ("fit", "target_psnr", lambda v: v is None or _is_num(v), "a number or null"),
    ("fit", "compile", lambda v: isinstance(v, bool), "true or false"),
    ("fit", "device", lambda v: isinstance(v, str), "a device name"),
    ("fit", "versions", _is_versions, "an object of version strings"),
    ("fit", "resumed_with", lambda v: isinstance(v, list) and all(_is_versions(x) for x in v),
     "a list of objects of version strings"),
)


def _valid_grid(grid) -> bool:
    """Whether a recorded ``source.grid`` holds what rebuilding its coordinates reads."""
    if not isinstance(grid, dict):
        return False
    kind = grid.get("kind")
    if kind == "image":
        return all(_is_int(grid.get(k)) and grid[k] >= 1 for k in ("height", "width"))
    if kind == "interval":
        return _is_int(grid.get("n_points")) and grid["n_points"] >= 1 and all(_is_num(grid.get(k)) for k in ("lo", "hi"))
    return isinstance(kind, str)  # another kind (a classifier zoo's): not drawn as coordinates


def _layout_difference(got, want: list[dict]) -> str:
    if not isinstance(got, list):
        return f"a {type(got).__name__}, not a list"
    for i, w in enumerate(want):
        if i >= len(got) or got[i] != w:
            return f"entry {i} is {got[i] if i < len(got) else 'missing'}, the arch gives {w}"
    return f"{len(got)} entries, the arch gives {len(want)}"
