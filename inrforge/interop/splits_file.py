"""Reading a DWSNets ``splits.json``: its train/val/test paths and labels (an export's back in their
objects' order), and what an export-dws splits file records besides: the arch and the grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..arch import INRSpec, make_arch
from ..errors import InrforgeError
from .coordinates import _dws_fourier_matrix
from .labels import _is_integer

_SPLITS = ("train", "val", "test")


def _from_splits_json(splits_file: Path) -> tuple[list[Path], list, list[str], dict, dict]:
    """(paths, labels (None: read from the file), where each label came from, splits, spec)."""
    try:
        spec = json.loads(splits_file.read_text())
    except (OSError, ValueError) as e:
        raise InrforgeError(f"cannot read splits file {splits_file}: {e}") from None
    if not isinstance(spec, dict):
        raise InrforgeError(f"{splits_file}: expected a JSON object {{'train': {{'path': [...], 'label': [...]}}, ...}}, "
                            f"got a {type(spec).__name__}")
    paths, labels, wheres, splits, numbers = [], [], [], {}, []
    for name in _SPLITS:
        part = spec.get(name)
        if part is None:
            continue
        if not isinstance(part, dict) or "path" not in part:
            raise InrforgeError(f"{splits_file}: split {name!r} must be {{'path': [...], 'label': [...]}}")
        p = part["path"]
        lab = part.get("label", [None] * len(p) if isinstance(p, list) else None)
        if not isinstance(p, list) or not all(isinstance(q, str) for q in p):
            raise InrforgeError(f"{splits_file}: split {name!r}: 'path' must be a list of file names")
        if not isinstance(lab, list):
            raise InrforgeError(f"{splits_file}: split {name!r}: 'label' must be a list (one label per path)")
        if len(lab) != len(p):
            raise InrforgeError(f"{splits_file}: split {name!r} has {len(p)} paths but {len(lab)} labels")
        splits[name] = np.arange(len(paths), len(paths) + len(p))
        index = part.get("index")  # export-dws: the object numbers in the exported store
        ok = isinstance(index, list) and len(index) == len(p) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and _is_integer(v) for v in index)
        numbers = numbers + [int(v) for v in index] if ok and numbers is not None else None
        for k, q in enumerate(p):
            q = Path(q)
            paths.append(q if q.is_absolute() else splits_file.parent / q)
            wheres.append(f"{splits_file} ({name} entry {k})")
        labels += lab
    if not paths:
        raise InrforgeError(f"{splits_file} lists no INRs")
    if numbers is not None and sorted(numbers) == list(range(len(paths))):
        # an export of a whole store: every object goes back to its own number
        order = np.argsort(numbers)
        paths, labels, wheres = ([seq[j] for j in order] for seq in (paths, labels, wheres))
        where = np.asarray(numbers)
        splits = {name: np.sort(where[idx]) for name, idx in splits.items()}
    return paths, labels, wheres, splits, spec


def _recorded_arch(spec: dict, splits_file, preset, w0) -> INRSpec | None:
    """The arch an export recorded in its splits file (checked against ``preset``/``w0`` if given)."""
    if "arch" not in spec:
        return None
    if not isinstance(spec["arch"], dict):
        raise InrforgeError(f"{splits_file}: 'arch' must be an object (as export-dws writes it)")
    try:
        arch = INRSpec.from_dict(spec["arch"])
    except InrforgeError as e:
        raise InrforgeError(f"{splits_file}: {e}") from None
    name = arch.init + ("-fourier" if arch.fourier is not None else "")  # the preset it was made with
    if preset is not None:
        want = make_arch(preset, w0=arch.w0)
        if (want.family, want.init, want.output_offset, want.fourier is None) != \
                (arch.family, arch.init, arch.output_offset, arch.fourier is None):
            raise InrforgeError(f"{splits_file} records a {name} arch ({arch.family}, output offset "
                                f"{arch.output_offset}{', Fourier features' if arch.fourier else ''}); it "
                                f"contradicts --arch {preset}: leave --arch out")
    if w0 is not None and arch.family != "siren":
        raise InrforgeError(f"{splits_file} records a {name} arch, which has no w0: leave --w0 out")
    if w0 is not None and float(w0) != arch.w0:
        raise InrforgeError(f"{splits_file} records w0={arch.w0:g}; it contradicts --w0 {float(w0):g}: leave --w0 out")
    if arch.fourier is not None:
        matrix = spec.get("fourier_matrix")
        try:
            matrix = np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError):
            matrix = None
        expected = _dws_fourier_matrix(arch)  # as an export records it
        if matrix is None or matrix.shape != expected.shape:
            raise InrforgeError(f"{splits_file}: a Fourier-feature arch needs 'fourier_matrix', a "
                                f"{expected.shape[0]} x {expected.shape[1]} list of lists")
        if not np.array_equal(matrix, expected):
            raise InrforgeError(f"{splits_file}: 'fourier_matrix' is not the matrix of the recorded Fourier "
                                f"features (seed {arch.fourier.seed}, sigma {arch.fourier.sigma})")
    return arch


def _recorded_grid(spec: dict, splits_file, arch: INRSpec) -> dict | None:
    grid = spec.get("grid")
    if grid is None:
        return None
    bad = InrforgeError(f"{splits_file}: 'grid' must be an image grid {{'kind': 'image', 'height', 'width', "
                        f"'channels'}} for INRs of 2-D coordinates or an interval grid for 1-D ones, "
                        f"matching the arch's {arch.in_features} inputs and {arch.out_features} outputs")
    if not isinstance(grid, dict):
        raise bad
    posint = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
    if grid.get("kind") == "image":
        if not (arch.in_features == 2 and posint(grid.get("height")) and posint(grid.get("width"))
                and grid.get("channels") == arch.out_features):
            raise bad
        return dict(grid)  # as recorded, descriptive keys included
    if grid.get("kind") == "interval":
        lo, hi = grid.get("lo"), grid.get("hi")
        if not (arch.in_features == 1 and posint(grid.get("n_points")) and isinstance(grid.get("endpoint", False), bool)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi))):
            raise bad
        return dict(grid)
    raise bad
