"""export_dws: a store's usable INRs written as DWSNets ``.pth`` files and a ``splits.json`` that
records what import_dws needs to rebuild the store; exportable: which INRs those are."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import InrforgeError
from ..files import move_into_place, output_path, write_json
from ..store import INRStore, open_store
from ..weights import Weights
from .coordinates import _dws_fourier_matrix, _swap_xy, _swaps_first_weight
from .export_files import _is_export
from .splits_file import _SPLITS
from .staging import _make_parent, _remove_dead_staging, _remove_empty, _staging_dir


def exportable(store: INRStore, view: int = 0) -> tuple[np.ndarray, str]:
    """(the objects :func:`export_dws` writes for ``view``: fitted, and that view not failed; what
    it leaves out, in words such as ``"3 not fitted and 1 failed"``, or ``""``)."""
    view = store.check_view(view)
    done = store.done()
    usable = store.usable(done)[:, view]
    counts = ((int((~done).sum()), "not fitted"), (int((done & ~usable).sum()), "failed"))
    return np.flatnonzero(usable), " and ".join(f"{n} {what}" for n, what in counts if n)


_IN_PLACE = "export"  # staging folders inside an empty out_dir are named after this (.export.PID-...)


def export_dws(store, out_dir, view: int = 0, overwrite: bool = False) -> Path:
    """Write one ``seq.{i}.weight``/``seq.{i}.bias`` state dict (plus ``label``) per object and a
    DWSNets ``splits.json``; returns the splits file.  Objects not fitted, and those whose
    ``view`` failed, are left out (:func:`exportable`); a store with no INR left to export is
    refused before anything is written.

    ``out_dir`` must be absent or an empty folder (with ``overwrite``, a folder an earlier export
    wrote, holding nothing else, is replaced).  The export is built in a hidden folder beside a new
    ``out_dir`` (renamed into place at the end) or inside an empty one (its contents moved up at the
    end, ``splits.json`` last).  A failed export leaves nothing behind; what an export killed with
    SIGKILL left is deleted by the next export to the same place.  The splits file also records the
    ``arch``, ``label_dtype``, the coordinate ``grid`` and, for Fourier-feature archs, the
    ``fourier_matrix``, so that :func:`import_dws` rebuilds the store exactly.
    """
    store = store if isinstance(store, INRStore) else open_store(store)
    view = store.check_view(view)  # before creating anything
    usable, left_out = exportable(store, view)
    if len(usable) == 0:  # an export without INRs is a folder import_dws refuses
        raise InrforgeError(f"nothing to export: {store.path} has no usable INR of view {view} "
                            f"(of {len(store)} objects, {left_out})")
    # a file:// URL is its local path; only --overwrite replaces the folder (an empty one is filled in place)
    out_dir = Path(output_path(out_dir, "the export folder", replaced=overwrite))
    _check_export_folder(out_dir, overwrite)
    in_place = out_dir.is_dir() and not any(out_dir.iterdir())  # an empty folder is filled where it is
    created = [] if in_place else _make_parent(out_dir, "an export to")
    # built hidden (inside the empty folder, or beside a new one), then moved into place
    staging = _staging_dir(out_dir / _IN_PLACE if in_place else out_dir, "an export to")
    build = staging / "export"
    ok = False
    try:
        build.mkdir()
        spec = {name: _export_split(store, name, usable, view, build) for name in _SPLITS}
        spec.update(_export_records(store))
        write_json(build / "splits.json", spec, indent=None)  # last, whole: the export is complete
        if in_place:
            for name in (*_SPLITS, "splits.json"):  # splits.json last: the export is complete
                os.replace(build / name, out_dir / name)
        else:
            move_into_place(build, out_dir, aside=staging / "replaced")
        ok = True
    except OSError as e:
        raise InrforgeError(f"cannot write an export to {out_dir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not ok:
            if in_place:  # the folder was empty: everything moved into it is ours
                _remove_export_files(out_dir)
            _remove_empty(created)
    return out_dir / "splits.json"


def _check_export_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that is a file, or a folder that is neither empty nor (with
    ``overwrite``) an earlier export (:func:`_is_export`); what a killed export into that empty
    folder left inside it is deleted first."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InrforgeError(f"{out_dir} is a file; choose an empty folder")
    _remove_dead_staging(out_dir / _IN_PLACE)  # what an export into this empty folder left when killed
    if any(out_dir.iterdir()) and not (overwrite and _is_export(out_dir)):
        hint = (" (overwrite replaces only an earlier export-dws folder)" if overwrite
                else " or pass --overwrite to replace this earlier export" if _is_export(out_dir) else "")
        raise InrforgeError(f"{out_dir} is not empty; choose an empty folder{hint}")


def _export_split(store: INRStore, name: str, usable: np.ndarray, view: int, build: Path) -> dict:
    """Write split ``name``'s usable INRs (view ``view``) as ``build/name/NNNNNNN.pth`` state dicts
    (:func:`_state_dict`, in DWSNets' coordinate order, :func:`_swap_xy`), 1,024 at a time;
    returns the split's entry of ``splits.json`` (``path``, ``label``, ``index``)."""
    idx = store.split(name)
    idx = idx[np.isin(idx, usable)]  # a failed fit is not exported as a good one
    entries = {"path": [], "label": [], "index": []}
    (build / name).mkdir()
    for lo in range(0, len(idx), 1024):
        part = idx[lo: lo + 1024]
        weights, labels = store.read(part, view)
        if _swaps_first_weight(store.arch):
            weights = _swap_xy(weights)  # inrforge (row, col) -> DWSNets (x=col, y=row)
        for j, i in enumerate(part):
            label = labels[j].tolist()
            rel = f"{name}/{int(i):07d}.pth"
            torch.save(_state_dict(weights, j, label), build / rel)
            entries["path"].append(rel)
            entries["label"].append(label)
            entries["index"].append(int(i))
    return entries


def _state_dict(weights: Weights, j: int, label) -> dict:
    """INR ``j`` of ``weights`` as DWSNets stores one: ``seq.{i}.weight`` (out, in) and
    ``seq.{i}.bias`` (out,), each in its own storage (a view would save the whole batch), and
    ``label``."""
    state = {}
    for layer, (w, b) in enumerate(zip(weights.weights, weights.biases)):
        state[f"seq.{layer}.weight"] = w[j].clone()
        state[f"seq.{layer}.bias"] = b[j].clone()
    state["label"] = torch.tensor(label)
    return state


def _export_records(store: INRStore) -> dict:
    """What an export's ``splits.json`` records besides the splits, for :func:`import_dws`: the
    ``arch``, ``label_dtype``, the image or interval ``grid``, and a Fourier-feature arch's
    ``fourier_matrix`` (in DWSNets' coordinate order)."""
    arch = store.arch
    records = {"arch": arch.to_dict(),
               "label_dtype": "int64" if np.issubdtype(store.labels.dtype, np.integer) else "float32"}
    grid = store.source.get("grid")
    if isinstance(grid, dict) and grid.get("kind") in ("image", "interval"):
        records["grid"] = grid
    if arch.fourier is not None:
        records["fourier_matrix"] = _dws_fourier_matrix(arch).tolist()
    return records


def _remove_export_files(out_dir: Path) -> None:
    """Delete what a failed export moved into the empty folder ``out_dir``: its train/val/test
    folders and ``splits.json`` (the folder was empty, so they are the export's)."""
    for name in (*_SPLITS, "splits.json"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()

