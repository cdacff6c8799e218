"""import_dws: a folder of DWSNets ``.pth`` files (and its splits file) read, checked and written
as a one-view store."""

from __future__ import annotations

import numbers
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..arch import INRSpec
from ..errors import InrforgeError
from ..files import local_path
from ..store import (INRStore, ShardData, check_leftovers, create_store, is_store, prepare_output, remove_store,
                     replace_store)
from ..weights import Weights
from .coordinates import _swap_xy, _swaps_first_weight
from .labels import _label, _label_array
from .splits_file import _SPLITS, _from_splits_json, _recorded_arch, _recorded_grid
from .staging import _make_parent, _remove_empty, _staging_dir
from .state_dict import _flat, _load_state, arch_from_state


def import_dws(data_dir, out, splits_file=None, preset: str | None = None, w0: float | None = None,
               shard_objects: int = 1024, overwrite: bool = False, image_size: tuple[int, int] | None = None) -> INRStore:
    """Convert a folder of per-INR state dicts into a one-view store, keeping the splits.

    Without a splits file, every ``*.pth`` under ``data_dir`` (sorted) is imported, labels come
    from each file's ``label`` key, and the splits follow the path: ``test`` in it -> test,
    ``val`` -> val, else train.  ``image_size=(H, W)`` records the image grid the INRs were fitted
    on (``inrforge render`` needs it; the DWSNets MNIST INRs are 28 x 28).

    The arch is the one a splits file written by :func:`export_dws` records; ``preset`` and ``w0``
    (default ``siren-dwsnets`` and 30) are for files that record none, and contradicting a
    recorded arch is an error.  Every file is read and checked before anything is written, and
    the store is built beside ``out`` and renamed into place: a failed import leaves ``out`` as
    it was (with ``overwrite``, an existing store there is replaced only by a complete import).
    """
    data_dir = _import_folder(data_dir, image_size)
    splits_file = None if splits_file is None else local_path(splits_file)  # a file:// URL is its local path
    out = local_path(out)
    url = "://" in out
    prepare_output(out, overwrite)  # refuses a file, a non-empty folder, or a store without overwrite; deletes nothing

    paths, labels, wheres, splits, spec, splits_file = _collect_inputs(data_dir, splits_file)
    arch = _recorded_arch(spec, splits_file, preset, w0)
    grid = None if arch is None else _recorded_grid(spec, splits_file, arch)
    recorded_dtype = spec.get("label_dtype")
    if recorded_dtype not in (None, "int64", "float32"):
        raise InrforgeError(f"{splits_file}: 'label_dtype' must be 'int64' or 'float32', got {recorded_dtype!r}")

    staging, created, ok = None, [], False
    if not url:  # fail before reading every file when --out cannot be written
        check_leftovers(out.rstrip("/") or "/")
        created = _make_parent(Path(out), "a store at")
        staging = _staging_dir(Path(out), "a store at")
    try:
        arch, params, lab = _read_inrs(paths, labels, wheres, arch, preset, w0, recorded_dtype)
        if image_size is not None:
            grid = _image_grid(image_size, arch, grid, splits_file)
        # an export written before the swap existed records its arch but no label_dtype: its files
        # are already in inrforge's (row, col) order
        pre_swap_export = "arch" in spec and "label_dtype" not in spec
        if _swaps_first_weight(arch) and not pre_swap_export:  # DWSNets (x=col, y=row) -> inrforge (row, col)
            params = _swap_xy(Weights.from_flat(torch.from_numpy(params), arch)).flatten().numpy()
        source = {"name": "dws-import", "params": {"path": str(data_dir.resolve())}, "n_objects": len(paths),
                  "target_scaling": "unknown (imported)", "grid": grid, "label_names": None,
                  "label_shape": list(lab.shape[1:])}
        _write_store(out, None if url else str(staging / "store"), arch, params, lab, splits, source,
                     {"imported_from": str(data_dir.resolve())}, shard_objects)
        ok = True
    finally:  # the staging folder goes, holding at most a half-built store or the replaced one
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            _remove_empty(created)
    return INRStore(out, mode="r+")


def _import_folder(data_dir, image_size) -> Path:
    """``data_dir`` as a Path, refused unless it is a folder; ``image_size`` refused unless it is
    two positive integers (or None)."""
    if not str(data_dir).strip():  # Path("") is the current folder
        raise InrforgeError("import_dws needs a folder, got an empty path")
    data_dir = Path(local_path(data_dir))  # a file:// URL is its local path
    if not data_dir.is_dir():
        raise InrforgeError(f"no folder {data_dir}")
    if image_size is not None:
        if (len(image_size) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                                             for v in image_size)):
            raise InrforgeError(f"image size must be two positive integers (height, width), got {image_size!r}")
    return data_dir


def _collect_inputs(data_dir: Path, splits_file) -> tuple[list[Path], list, list[str], dict, dict, Path | None]:
    """What to import: (the INR files, their labels from the splits file (None: from the file),
    where each label came from, the splits, the splits file's contents, the splits file).

    The splits file defaults to ``data_dir/splits.json`` when that exists; without one, every
    ``*.pth`` under ``data_dir`` (sorted), split by its path.  Every file must exist, once."""
    if splits_file is None and (data_dir / "splits.json").exists():
        splits_file = data_dir / "splits.json"
    spec = {}
    if splits_file is not None:
        splits_file = Path(splits_file)
        paths, labels, wheres, splits, spec = _from_splits_json(splits_file)
    else:
        paths = sorted(data_dir.rglob("*.pth"))
        if not paths:
            raise InrforgeError(f"no .pth files under {data_dir}")
        labels = [None] * len(paths)
        wheres = [str(p) for p in paths]
        rel = [p.relative_to(data_dir).as_posix().lower() for p in paths]
        which = np.array(["test" if "test" in r else "val" if "val" in r else "train" for r in rel])
        splits = {name: np.flatnonzero(which == name) for name in _SPLITS}
    seen = {}
    for p in paths:
        if not p.is_file():
            raise InrforgeError(f"missing INR file {p}" if not p.exists() else f"{p} is not a file")
        key = os.path.realpath(p)
        if key in seen:
            raise InrforgeError(f"{splits_file}: {p} is listed twice (an INR belongs to one split, once)")
        seen[key] = p
    return paths, labels, wheres, splits, spec, splits_file


def _read_inrs(paths: list[Path], labels: list, wheres: list[str], arch: INRSpec | None, preset, w0,
               recorded_dtype) -> tuple[INRSpec, np.ndarray, np.ndarray]:
    """(the arch, the (N, P) float32 parameters as the files hold them, the label array) of every
    file, read and checked.  Without a recorded ``arch``, the first file's shapes give it
    (:func:`arch_from_state` with ``preset`` and ``w0``); a label not given in ``labels`` is the
    file's own ``label`` key."""
    what = "the arch recorded in the splits file" if arch is not None else "the first INR's arch"
    flats, found = [], []
    for k, p in enumerate(paths):
        state = _load_state(p)
        if arch is None:
            arch = arch_from_state(state, p, preset or "siren-dwsnets", 30.0 if w0 is None else w0)
        flats.append(_flat(state, arch, p, what))
        if labels[k] is not None:
            found.append(_label(labels[k], wheres[k]))
        elif "label" in state:
            found.append(_label(state["label"], f"{p} ('label')"))
        else:
            raise InrforgeError(f"{p}: no label (give a splits JSON or a 'label' key)")
    lab = _label_array(found, [str(p) if labels[k] is None else wheres[k] for k, p in enumerate(paths)],
                       recorded_dtype)
    return arch, np.stack(flats).astype(np.float32), lab


def _image_grid(image_size, arch: INRSpec, recorded: dict | None, splits_file) -> dict:
    """The image grid ``image_size=(H, W)`` describes, for INRs of 2-D coordinates and 1 or 3
    outputs; it must agree with a grid the splits file records."""
    if arch.in_features != 2:
        raise InrforgeError(f"--image-size is for INRs of 2-D image coordinates; these take "
                            f"{arch.in_features} input{'s' if arch.in_features != 1 else ''}")
    if arch.out_features not in (1, 3):
        raise InrforgeError(f"--image-size is for INRs of images, with 1 (gray) or 3 (RGB) outputs; these "
                            f"have {arch.out_features}")
    h, w = int(image_size[0]), int(image_size[1])
    if recorded is not None and (recorded["kind"], recorded.get("height"), recorded.get("width")) != ("image", h, w):
        raise InrforgeError(f"--image-size {h}x{w} contradicts the grid {splits_file} records "
                            f"({recorded.get('height')}x{recorded.get('width')})")
    return {"kind": "image", "height": h, "width": w, "channels": arch.out_features,
            "coords": "coords[r*W + c] = (linspace(-1,1,H)[r], linspace(-1,1,W)[c]), row-major"}


def _write_store(out: str, build: str | None, arch: INRSpec, params: np.ndarray, labels: np.ndarray, splits: dict,
                 source: dict, fit: dict, shard_objects: int) -> None:
    """Write the one-view store of ``params`` (N, P), every shard, at ``build`` and move it to
    ``out`` (:func:`~inrforge.store.replace_store`); with no ``build`` (``out`` is a URL, where
    nothing can be renamed) straight at ``out``, after removing a store there.  The PSNR and loss
    are NaN (unknown), the steps 0, and no INR is failed."""
    n = len(params)
    params = params[:, None]  # (N, 1, P)
    try:
        if build is None and is_store(out):
            remove_store(out)  # no rename on an object store: the old store goes first
        store = create_store(out if build is None else build, arch=arch, n_objects=n, views=1, labels=labels,
                             splits=splits, source=source, fit=fit, shard_objects=shard_objects)
        for k in range(store.n_shards):
            a, b = store.shard_range(k)
            unknown = np.full((b - a, 1), np.nan, np.float32)
            store.write_shard(ShardData(a, params[a:b], unknown, unknown, np.zeros((b - a, 1), np.int32),
                                        np.zeros((b - a, 1), bool)))
        if build is not None:
            replace_store(build, out)
    except OSError as e:
        raise InrforgeError(f"cannot write a store at {out}: {e.strerror or e}") from None
