"""The on-disk format (v1): a self-describing, sharded, resumable Zarr v3 group of fitted INRs.

Layout (see docs/format.md for the full description)::

    attrs   inrforge {format, version}, arch, layout, source, fit, n_objects, views,
            shard_objects, chunk_objects (all checked on opening)
    params          float32 (N, V, P)  chunks (c, V, P), shards (S, V, P); NaN = not fitted
    labels          int64 (N,) or float32 (N, K)
    metrics/psnr    float32 (N, V)     NaN = not fitted or failed
    metrics/loss    float32 (N, V)
    metrics/steps   int32   (N, V)
    metrics/failed  bool    (N, V)
    metrics/NAME            (N, V)     extra metrics a store is created with (a zoo's accuracy)
    done            bool    (N,)       chunks of S: one chunk per shard
    splits/train|val|test int64 indices
    fourier_matrix  float32 (m, in)    only for Fourier-feature archs

Objects ``[k S, (k+1) S)`` form shard ``k``: the unit of fitting and writing.  One writer fills a
shard's params, then its metrics, then its ``done`` chunk; a shard whose ``done`` chunk is unset
is refitted on resume, so a run killed at any point loses at most the shards in flight.
(A store whose labels come with its fit, a classifier zoo, also writes the shard's labels before
its ``done`` chunk.)
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import zarr

from .arch import INRSpec
from .checks import whole_number
from .errors import InrforgeError, StoreReplacedError, first_line
from .files import (enclosing_store, is_url, jsonable, local_path, move_into_place, process_alive,
                    refuse_unsafe_output)
from .fit import LEGACY_FIT, LR_SCHEDULES, with_legacy
from .version import __version__
from .weights import Weights

FORMAT_VERSION = 1
METRICS = ("psnr", "loss", "steps", "failed")
MISSING = {"int64": -1, "float32": np.nan}  # fill values of labels and splits: what a lost chunk reads as
ATTRIBUTES = ("arch", "layout", "source", "fit", "n_objects", "views", "shard_objects", "chunk_objects")
# The attribute a group carries from its first write until create_store finishes it (the finished
# store has ``inrforge`` instead): what marks a leftover ``OUT.tmp-PID`` folder as inrforge's own.
BUILDING = "inrforge-building"
_PARTIAL_FILE = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr's local store writes NAME.<uuid>.partial first


@dataclass(frozen=True)
class ShardData:
    """Everything one shard writes: objects [start, stop) x all views.

    ``labels`` (optional): the shard's rows of ``labels`` ((n,) or (n, K)), for a store whose labels
    are known only once its objects are fitted (a classifier zoo's accuracy).  The labels array is
    one chunk, so only stores with one writer at a time may set them.  ``extra_metrics``: rows
    (n, V) of extra metric arrays the store was created with (``create_store(extra_metrics=...)``),
    e.g. ``{"accuracy": acc}``.
    """

    start: int
    params: np.ndarray  # (n, V, P) float32
    psnr: np.ndarray  # (n, V) float32
    loss: np.ndarray  # (n, V) float32
    steps: np.ndarray  # (n, V) int32
    failed: np.ndarray  # (n, V) bool
    labels: np.ndarray | None = None  # (n,) or (n, K)
    extra_metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, V)


def _leftovers(final: str) -> list[str]:
    """Sibling folders an interrupted create/overwrite of ``final`` left: ``final.tmp-PID``
    (a store being built) and ``final.old-PID`` (a store set aside to be replaced)."""
    parent, name = os.path.split(final.rstrip("/"))
    try:
        names = os.listdir(parent or ".")
    except OSError:
        return []
    return sorted(os.path.join(parent, n) for n in names
                  if n.startswith(name + ".") and n[len(name) + 1:].split("-")[0] in ("tmp", "old")
                  and n.rsplit("-", 1)[-1].isdigit())


def is_own_build(folder, fitted: bool = False) -> bool:
    """True when ``folder`` is recognisably a group that :func:`create_store` was building, or had
    just finished, when its process died, so that deleting it loses nothing anyone else made: a real
    folder (not a link) that is empty or holds only Zarr's half-written ``*.partial`` files, or whose
    ``zarr.json`` is an inrforge group (the ``inrforge-building`` marker create_store writes with
    it, or the finished ``inrforge`` marker) and which holds nothing but Zarr metadata and chunk
    files, and no links.  Unless ``fitted``, it must also hold no ``params`` or ``done`` chunk (no
    fitted INR; a store being created has none)."""
    folder = str(folder)
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    only_partial = True
    for dirpath, dirs, files in os.walk(folder):
        if any(os.path.islink(os.path.join(dirpath, n)) for n in dirs + files):
            return False
        rel = [] if dirpath == folder else os.path.relpath(dirpath, folder).split(os.sep)
        for name in files:
            if _PARTIAL_FILE.search(name):
                continue
            only_partial = False
            if name == "zarr.json":
                continue
            # a chunk: ARRAY/c/i/j/k, where ARRAY may be nested (metrics/psnr)
            chunk = "c" in rel and name.isdigit() and all(x.isdigit() for x in rel[rel.index("c") + 1:])
            if not chunk or (not fitted and rel[0] in ("params", "done")):
                return False
    try:
        with open(os.path.join(folder, "zarr.json")) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return only_partial  # killed before its first file was complete
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("node_type") != "group" or not isinstance(doc.get("attributes"), dict):
        return False
    return BUILDING in doc["attributes"] or "inrforge" in doc["attributes"]


def check_leftovers(final: str) -> None:
    """Before a store is written at ``final``: delete the ``final.tmp-PID`` folders of processes that
    are gone that hold what :func:`create_store` was building there (:func:`is_own_build`); any other
    folder of that name is left alone.  Refuse to go on while ``final.old-PID`` holds a store that
    an interrupted ``--overwrite`` set aside and never got to delete (its data may be all there is),
    or while the ``final.old-PID`` of this process's own PID, where a replaced store would be set
    aside, holds anything.  This process's own PID counts as gone (a container restarted under the
    same PID): it has not started building yet."""
    me = os.getpid()
    for left in _leftovers(final):
        pid = int(left.rsplit("-", 1)[-1])
        if pid != me and process_alive(pid):
            continue
        if ".tmp-" in os.path.basename(left):
            if is_own_build(left):
                shutil.rmtree(left, ignore_errors=True)
        elif is_store(left):
            raise InrforgeError(f"{left} holds a store an interrupted --overwrite of {final} set aside; "
                                f"move it back to {final} or delete it, then re-run")
    aside = f"{final}.old-{me}"
    if os.path.lexists(aside) and is_store(final):  # only a store at final is set aside
        raise InrforgeError(f"{aside} is in the way: inrforge sets the store it replaces aside there (a name made "
                            f"from this process's id); move it elsewhere and re-run")


def create_store(path, *, arch: INRSpec, n_objects: int, views: int, labels: np.ndarray,
                 splits: dict[str, np.ndarray], source: dict, fit: dict, shard_objects: int = 256,
                 chunk_objects: int = 16, extra_attrs: dict | None = None,
                 extra_metrics: dict[str, tuple[str, object]] | None = None, overwrite: bool = False) -> "INRStore":
    """Create an empty store with every array sized up front; returns it opened for writing.

    ``extra_metrics``: name -> (dtype, fill value) of further ``metrics/NAME`` arrays, (N, V) with
    the chunks of the standard metrics (S, V), written by :meth:`INRStore.write_shard` from
    :attr:`ShardData.extra_metrics` and read by :meth:`INRStore.metric` (a classifier zoo's
    ``{"accuracy": ("float32", nan)}``).  A standard metric's name is not one of them.

    On a local filesystem the group is built in a temporary sibling folder and renamed into
    place, so a store is either complete or absent.  An existing store at ``path`` is replaced
    only with ``overwrite``, and only once the new one is complete: if anything fails before,
    the old store is untouched.  Anything else at ``path`` (a file, a non-empty folder) is refused.
    Leftover ``path.tmp-PID`` folders are deleted only when they are inrforge's own half-built
    stores (:func:`check_leftovers`); a foreign folder at the name this process builds in is refused.
    """
    path = local_path(path)
    if not is_url(path) and os.path.islink(path.rstrip("/")):
        refuse_unsafe_output(path, "a store at", replaced=True)  # a link to nothing is refused, not followed
        path = os.path.realpath(path)  # a link to a store: the store it points to is replaced
    prepare_output(path, overwrite)
    if n_objects <= 0 or views <= 0:
        raise InrforgeError(f"nothing to store: {n_objects} objects x {views} views")
    extra_metrics = dict(extra_metrics or {})
    bad = [name for name in extra_metrics if name in METRICS or not re.fullmatch(r"[A-Za-z0-9_]+", str(name))]
    if bad:
        raise ValueError(f"extra metrics {bad} clash with the standard ones or are not plain names")
    shard_objects = max(1, min(int(shard_objects), n_objects))
    chunk_objects = max(1, min(int(chunk_objects), shard_objects))
    while shard_objects % chunk_objects:  # a shard must hold whole chunks
        chunk_objects -= 1
    final = dest = path
    if is_url(final):  # no rename on object stores: the old store goes first
        if is_store(final):
            remove_store(final)
        tmp = final
    else:
        dest = os.path.abspath(final)  # the folder itself, also for "dir/" and "dir/."
        check_leftovers(dest)
        tmp = f"{dest}.tmp-{os.getpid()}"
        if os.path.lexists(tmp):  # not a build of ours (check_leftovers deleted those): left alone
            raise InrforgeError(f"{tmp} is in the way: inrforge builds the new store there (a name made from this "
                                f"process's id) and it is not a store being built; move it elsewhere and re-run")
    try:
        _build_group(tmp, arch, n_objects, views, labels, splits, shard_objects, chunk_objects, extra_metrics, {
            "arch": arch.to_dict(),
            "layout": arch.layout_dicts(),
            "source": source,
            "fit": fit,
            "n_objects": int(n_objects),
            "views": int(views),
            "shard_objects": shard_objects,
            "chunk_objects": chunk_objects,
            **(extra_attrs or {}),
        })
        if tmp != dest:
            replace_store(tmp, dest)
    except BaseException as e:  # the half-built folder goes; an old store at final stays
        if tmp != dest:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise InrforgeError(f"cannot write a store at {final}: {e.strerror or e}") from None
        if is_url(final) and isinstance(e, (ImportError, ValueError)):  # fsspec: no such protocol, or
            raise InrforgeError(f"cannot write a store at {final}: {first_line(e)}") from None  # its package missing
        raise
    return INRStore(final, mode="r+")


def replace_store(new: str, final: str) -> None:
    """Move the finished local store ``new`` to ``final`` (:func:`move_into_place`); a store there
    is set aside as ``final.old-PID`` (where :func:`check_leftovers` finds it if this process dies)
    and deleted once the new one is in place.  A failure to delete it is a warning: nothing is lost."""
    old = move_into_place(new, final, aside=f"{str(final).rstrip('/')}.old-{os.getpid()}")
    if old is not None:
        try:
            shutil.rmtree(old)
        except OSError as e:
            warnings.warn(f"the store {final} replaced is left at {old} ({e.strerror or e}); delete it by hand")


def _build_group(path: str, arch: INRSpec, n_objects: int, views: int, labels, splits: dict,
                 shard_objects: int, chunk_objects: int, extra_metrics: dict, attrs: dict) -> None:
    """Write the empty group of :func:`create_store` at ``path``: its first file carries the
    ``inrforge-building`` marker (:func:`is_own_build`), its last write swaps it for the format marker."""
    p = arch.param_count
    root = zarr.open_group(path, mode="w", attributes={BUILDING: {"pid": os.getpid()}})
    zarr.create_array(root.store, name="params", shape=(n_objects, views, p), dtype="float32",
                      chunks=(chunk_objects, views, p), shards=(shard_objects, views, p), fill_value=np.nan)
    labels = np.asarray(labels)
    ldtype = "int64" if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer) else "float32"
    # Fill values no real label or index takes: zarr writes no chunk that equals the fill value, so
    # with 0 a lost chunk would read as (legitimate-looking) zeros; -1 / NaN are refused on reading.
    root.create_array("labels", shape=labels.shape, dtype=ldtype, chunks=labels.shape or (1,),
                      fill_value=MISSING[ldtype])[...] = labels
    metrics = root.create_group("metrics")
    for name, dtype, fill in (("psnr", "float32", np.nan), ("loss", "float32", np.nan),
                              ("steps", "int32", 0), ("failed", "bool", False),
                              *((name, dtype, fill) for name, (dtype, fill) in extra_metrics.items())):
        metrics.create_array(name, shape=(n_objects, views), dtype=dtype, chunks=(shard_objects, views),
                             fill_value=fill)
    root.create_array("done", shape=(n_objects,), dtype="bool", chunks=(shard_objects,), fill_value=False)
    sp = root.create_group("splits")
    for name in ("train", "val", "test"):
        idx = np.asarray(splits.get(name, []), dtype=np.int64)
        sp.create_array(name, shape=idx.shape, dtype="int64", chunks=(max(1, len(idx)),),
                        fill_value=MISSING["int64"])[...] = idx
    if arch.fourier is not None:
        m = arch.fourier.matrix().numpy()
        root.create_array("fourier_matrix", shape=m.shape, dtype="float32", chunks=m.shape)[...] = m
    root.attrs.update(jsonable(attrs))
    # The format marker goes last, in place of the building one: a group without it was never finished.
    final = {k: v for k, v in root.attrs.asdict().items() if k != BUILDING}
    root.attrs.put({**final, "inrforge": {"format": FORMAT_VERSION, "version": __version__}})


def is_store(path) -> bool:
    """True when ``path`` holds a finished inrforge group (of any format version)."""
    try:
        return "inrforge" in zarr.open_group(local_path(path), mode="r").attrs
    except Exception:
        return False


class INRStore:
    """An opened store.  ``len(store)`` objects, ``store.views`` views each, ``store.arch``."""

    def __init__(self, path, mode: str = "r"):
        if mode not in ("r", "r+"):  # zarr's "w"/"a"/"x" would create or empty the group
            raise InrforgeError(f"open a store with mode 'r' (read) or 'r+' (read and write), not {mode!r}")
        self.path = local_path(path)
        if not is_url(self.path) and not os.path.exists(self.path):
            aside = [p for p in _leftovers(self.path) if ".old-" in os.path.basename(p) and is_store(p)]
            hint = f" ({aside[0]} holds the store an interrupted --overwrite set aside)" if aside else ""
            raise InrforgeError(f"no store at {self.path}{hint}")
        try:
            self.root = zarr.open_group(self.path, mode=mode)
        except Exception as e:
            outer = None if is_url(self.path) else enclosing_store(self.path)
            if outer is not None:
                raise InrforgeError(f"{self.path} lies inside the store {outer}; give the store's own path") from None
            raise InrforgeError(f"{self.path} is not a readable Zarr store: {first_line(e)}") from None
        if self.root.metadata.zarr_format != 3:
            raise InrforgeError(f"{self.path} is a Zarr v{self.root.metadata.zarr_format} group, not an inrforge "
                                f"store (inrforge stores are Zarr v3)")
        self.attrs = self.root.attrs.asdict()
        _check_format(self.path, self.attrs.get("inrforge"))
        self.arch, n, self.views, self.shard_objects = _check_attributes(self.path, self.attrs)
        self.params = self._array("params")
        want = (n, self.views, self.arch.param_count)
        if self.params.shape != want or self.params.dtype != np.float32:
            raise InrforgeError(f"{self.path}: params has shape {self.params.shape} and dtype {self.params.dtype}, "
                                f"but its attributes give {want} float32 (n_objects, views, param_count)")
        self.mode = mode
        self._labels = None
        self._known_failed = None  # (N, V) done & failed, as last read by _check_fitted
        self.memo: dict = {}  # what readers derive from this opened store and keep (normalisation statistics)

    def __len__(self) -> int:
        return int(self.attrs["n_objects"])

    def __repr__(self) -> str:
        return f"INRStore({self.path!r}, {len(self)} objects x {self.views} views, widths={list(self.arch.widths)})"

    # ----- metadata ---------------------------------------------------------------------
    @property
    def source(self) -> dict:
        return self.attrs["source"]

    @property
    def fit_settings(self) -> dict:
        return self.attrs["fit"]

    def add_fit_record(self, key: str, entry) -> None:
        """Append ``entry`` (JSON) to the list ``fit[key]`` of the store's attributes, unless it is
        there already: a record of how the store was fitted that is not part of what a resume
        compares (e.g. ``resumed_with``, the software of a resume).  Written at once; call it
        before shards are handed to other processes, which check the attributes they were given."""
        fit = dict(self.attrs.get("fit") or {})
        entries = list(fit.get(key) or [])
        entry = jsonable(entry)
        if entry in entries:
            return
        fit[key] = [*entries, entry]
        self.root.attrs["fit"] = fit
        self.attrs["fit"] = fit

    @property
    def labels(self) -> np.ndarray:
        """(N,) or (N, K) labels, read once.  A class id below 0, or a NaN label of a finished
        object with a usable view, is an error: what a lost chunk reads as (a store's labels are
        filled with -1 / NaN; a classifier zoo's unfinished or failed members have NaN labels)."""
        if self._labels is None:
            arr = self._array("labels")
            if arr.ndim not in (1, 2) or arr.shape[0] != len(self):
                raise InrforgeError(f"{self.path}: labels has shape {arr.shape}, not one row per object "
                                    f"({len(self)} objects)")
            labels = self._read(arr)
            if labels.dtype.kind == "f":
                lost = np.isnan(labels.reshape(len(self), -1)).any(axis=1) & self.usable().any(axis=1)
            else:
                lost = labels < 0
            if lost.any():
                raise InrforgeError(f"{self.path}: the labels of {int(lost.sum())} object(s) are missing or invalid "
                                    f"(object {int(np.flatnonzero(lost)[0])} first); the store is damaged (a chunk "
                                    f"of labels/ lost in a copy?)")
            self._labels = labels
        return self._labels

    def split(self, name: str) -> np.ndarray:
        """The split's object indices, as stored (sorted); an index outside [0, N) (-1: a lost
        chunk) or twice in the split is an error naming the store."""
        if name not in ("train", "val", "test"):
            raise InrforgeError(f"unknown split {name!r}; choose train, val or test")
        idx = self._read(self._array(f"splits/{name}", (None,)))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self) or len(np.unique(idx)) != len(idx)):
            what = ("indices missing (a chunk of splits/ lost in a copy?)" if idx.min() < 0 else
                    f"indices outside [0, {len(self)})" if idx.max() >= len(self) else "an index twice")
            raise InrforgeError(f"{self.path}: split {name!r} has {what}; the store is damaged")
        return idx

    def done(self) -> np.ndarray:
        """(N,) bool: the object's shard is fully written.  Only these objects' params and metrics
        are final; the others hold the fill values (NaN params: never fitted) or what a killed writer
        left (refitted on resume)."""
        return self._read(self._array("done", (len(self),)))

    def metric(self, name: str) -> np.ndarray:
        """(N, V) metric ``name``: psnr, loss, steps, failed, or an extra one the store holds (a
        classifier zoo's ``accuracy``), as stored (see :meth:`done` for which entries are final)."""
        if name not in METRICS:
            extra = sorted(set(self._metric_names()) - set(METRICS))
            if name not in extra:
                raise InrforgeError(f"unknown metric {name!r}; choose one of {', '.join(METRICS + tuple(extra))}")
        return self._read(self._array(f"metrics/{name}", (len(self), self.views)))

    def saved_stats(self, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The normalisation statistics ``(mean, std)`` kept under ``stats/<mode>`` (docs/format.md),
        or None: never saved, saved without the ``complete`` mark (an interrupted save), or not
        readable as two finite float32 vectors of the arch's size with ``std > 0`` (a damaged or
        hand-edited cache, which the caller then computes again and saves over)."""
        try:
            group = self.root["stats"][mode]
            if group.attrs.get("complete", False) is not True:
                return None
            mean, std = (np.asarray(group[name][...]) for name in ("mean", "std"))
        except Exception:  # missing, or unreadable chunks or metadata: a cache, so computed again
            return None
        p = self.arch.param_count
        if not all(a.shape == (p,) and a.dtype == np.float32 and np.isfinite(a).all() for a in (mean, std)):
            return None
        return (mean, std) if (std > 0).all() else None

    def save_stats(self, mode: str, mean: np.ndarray, std: np.ndarray) -> bool:
        """Keep ``(mean, std)``, each float32 (P,), under ``stats/<mode>``, marked ``complete`` last.
        Only a finished store's statistics are final (a resumed fit changes them): the caller decides.
        False, and nothing kept, where the store cannot be written (opened read-only, or its files)."""
        if self.mode != "r+":
            return False
        try:
            group = self.root.require_group("stats").require_group(mode)
            if group.attrs.get("complete") is not None:  # saved over (a damaged cache): incomplete until done
                group.attrs["complete"] = False
            for name, arr in (("mean", mean), ("std", std)):
                group.create_array(name, shape=arr.shape, dtype="float32", chunks=arr.shape, overwrite=True)[...] = arr
            group.attrs.update({"split": "train", "complete": True})
        except Exception:  # a cache, best effort: any storage that refuses the write (read-only files, an
            return False  # fsspec backend without writes) leaves them in memory; "complete" marks a whole save
        return True

    def usable(self, done: np.ndarray | None = None) -> np.ndarray:
        """(N, V) bool: view v of object i is a fitted INR, i.e. its shard is done and the view did not
        fail.  ``done``: a :meth:`done` read to use instead of reading it now (a store still being fitted
        finishes shards meanwhile; a failed flag is final once its shard is done)."""
        done = self.done() if done is None else done
        return done[:, None] & ~self.metric("failed")

    def _array(self, name: str, shape: tuple | None = None, group: bool = False):
        """The array (or with ``group``, the group) ``name``; an :class:`InrforgeError` when it is
        missing, unreadable or not of ``shape`` (None entries match any size)."""
        try:
            node = self.root[name]
        except Exception:
            node = None
        if not isinstance(node, zarr.Group if group else zarr.Array):
            raise InrforgeError(f"{self.path} has no readable {'group' if group else 'array'} {name!r} (a damaged store?)")
        if shape is not None and (node.ndim != len(shape) or any(w not in (None, g) for g, w in zip(node.shape, shape))):
            want = ", ".join("any" if w is None else str(w) for w in shape)
            raise InrforgeError(f"{self.path}: {name} has shape {node.shape}, expected ({want}{',' * (len(shape) == 1)})")
        return node

    def _metric_names(self) -> list[str]:
        """The arrays of the ``metrics`` group, sorted; one whose metadata cannot be parsed is an
        :class:`InrforgeError` (listing them parses every one)."""
        group = self._array("metrics", group=True)
        try:
            return sorted(group.array_keys())
        except Exception as e:
            raise InrforgeError(f"{self.path}: cannot list the metrics arrays: {first_line(e)} (a damaged "
                                f"metrics/*/zarr.json?)") from None

    def _read(self, arr, selection=Ellipsis, orthogonal: bool = False) -> np.ndarray:
        """``arr[selection]`` (an orthogonal selection with ``orthogonal``); a chunk that cannot be
        decoded (a damaged file) is an :class:`InrforgeError`."""
        try:
            return arr.get_orthogonal_selection(selection) if orthogonal else arr[selection]
        except MemoryError:
            raise
        except Exception as e:
            _quiet_abandoned_reads()
            raise InrforgeError(f"cannot read {arr.path} of {self.path}: {first_line(e)} (a damaged chunk?)") from None

    # ----- shards -----------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return -(-len(self) // self.shard_objects)

    def shard_range(self, k: int) -> tuple[int, int]:
        """Objects ``[start, stop)`` of shard ``k`` (0 <= k < n_shards; anything else is an error)."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.n_shards:
            raise InrforgeError(f"shard {k!r} out of range: the store has {self.n_shards} shard"
                                f"{'' if self.n_shards == 1 else 's'} (0 to {self.n_shards - 1})")
        start = int(k) * self.shard_objects
        return start, min(start + self.shard_objects, len(self))

    def pending_shards(self, done: np.ndarray | None = None) -> list[int]:
        """Shards whose ``done`` chunk is not fully set (in ``done``, when given: a :meth:`done` read)."""
        done = self.done() if done is None else done
        return [k for k in range(self.n_shards) if not done[slice(*self.shard_range(k))].all()]

    def check_writable(self) -> None:
        """An :class:`InrforgeError` unless every folder of a local store may be written (a resume
        finds out before it fits anything, not when it writes the first shard)."""
        if is_url(self.path):
            return
        for folder, _, _ in os.walk(self.path):
            if not os.access(folder, os.W_OK):
                raise InrforgeError(f"{self.path} is read-only here ({folder}); cannot resume the fit into it")

    def identity(self) -> str:
        """This store's attributes as canonical JSON.  Another run's store at the same path (an
        ``--overwrite`` with other arguments) has other attributes."""
        return json.dumps(self.attrs, sort_keys=True)

    def check_unreplaced(self, identity: str | None = None) -> None:
        """A :class:`StoreReplacedError` unless the store now at ``self.path`` is the one opened here
        (or the one whose :meth:`identity` is given): a run that is still fitting must not write
        into a store another run has put in its place."""
        try:
            now = json.dumps(zarr.open_group(self.path, mode="r").attrs.asdict(), sort_keys=True)
        except Exception:
            now = None
        if now != (self.identity() if identity is None else identity):
            raise StoreReplacedError(f"the store at {self.path} was replaced or removed by another run since this one "
                                f"started (--overwrite with other arguments?); nothing more is written there")

    def write_shard(self, data: ShardData) -> None:
        """Write one whole shard: params, metrics (the extra ones too), its labels when ``data``
        has them, and last its ``done`` flags.  Refused (nothing written) when another run has
        replaced the store meanwhile (:meth:`check_unreplaced`), or when the store lacks an extra
        metric of ``data``."""
        start, stop = data.start, data.start + len(data.params)
        if start % self.shard_objects or (stop != len(self) and stop - start != self.shard_objects):
            raise ValueError(f"objects [{start}, {stop}) are not one whole shard")
        clash = sorted(set(data.extra_metrics) & set(METRICS))
        if clash:
            raise ValueError(f"{clash} are standard metrics, not extra ones")
        self.check_unreplaced()
        extra = {name: self._array(f"metrics/{name}", (len(self), self.views)) for name in data.extra_metrics}
        labels = None if data.labels is None else self._array("labels")
        self.params[start:stop] = data.params
        m = self.root["metrics"]
        m["psnr"][start:stop] = data.psnr
        m["loss"][start:stop] = data.loss
        m["steps"][start:stop] = data.steps
        m["failed"][start:stop] = data.failed
        for name, arr in extra.items():
            arr[start:stop] = data.extra_metrics[name]
        if labels is not None:
            labels[start:stop] = data.labels
            self._labels = None  # read again when next asked for
        self.root["done"][start:stop] = np.ones(stop - start, dtype=bool)

    # ----- reading ----------------------------------------------------------------------
    def object_indices(self, indices) -> np.ndarray:
        """``indices`` (an int, a sequence, numpy array or torch tensor of ints, a bool mask of length
        N, or a slice) as an int64 array of object numbers in [0, N), in the given order, duplicates
        kept; negative numbers count from the end; an array of more dimensions is flattened.  Other
        types, numbers out of range and malformed slices are an :class:`InrforgeError`."""
        if isinstance(indices, slice):
            rows = self._rows(indices)
            return np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)
        arr = np.asarray(indices)
        if arr.dtype == bool:
            if arr.shape != (len(self),):
                raise InrforgeError(f"a boolean mask must have one entry per object ({len(self)}), got shape {arr.shape}")
            return np.flatnonzero(arr)
        if arr.dtype == object and arr.size and all(isinstance(v, int) and not isinstance(v, bool) for v in arr.flat):
            raise InrforgeError(f"object index out of range for a store of {len(self)} objects")  # beyond int64
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InrforgeError(f"object indices must be integers, got {arr.dtype}")
        if arr.size and (arr.min() < -len(self) or arr.max() >= len(self)):  # before a cast can wrap
            raise InrforgeError(f"object index out of range for a store of {len(self)} objects")
        idx = arr.astype(np.int64).reshape(-1)
        return idx % len(self) if len(idx) else idx

    def _rows(self, indices: slice) -> range:
        """The objects a slice selects, or an :class:`InrforgeError` for a malformed slice."""
        try:
            return range(len(self))[indices]
        except (TypeError, ValueError) as e:
            raise InrforgeError(f"bad slice of objects {indices!r}: {e}") from None

    def read_flat(self, indices, view: int | None = 0) -> np.ndarray:
        """Flat parameters (n, P) of ``view`` (or (n, V, P) for ``view=None``) of the objects
        ``indices`` (see :meth:`object_indices`), read in sorted order (:meth:`_read_rows`) and
        returned in the given one.
        Parameters are returned as stored (NaN for objects not fitted), except that an INR marked
        done and not failed whose parameters are not finite (a chunk missing from a partial copy
        reads as NaN) is an :class:`InrforgeError` naming the objects (:meth:`_check_fitted`)."""
        if view is not None:
            view = self.check_view(view)
        if isinstance(indices, slice) and self._rows(indices).step == 1:  # a contiguous read
            rows = self._rows(indices)
            sel = self._read(self.params, slice(rows.start, rows.stop))
            sel = sel if view is None else sel[:, view]
            self._check_fitted(np.arange(rows.start, rows.stop), sel, view)
            return sel
        idx = self.object_indices(indices)
        if len(idx) == 0:
            return np.empty((0,) + self.params.shape[1 if view is None else 2:], dtype=np.float32)
        uniq, inverse = np.unique(idx, return_inverse=True)
        block = self._read_rows(uniq, slice(None) if view is None else view)
        self._check_fitted(uniq, block, view)
        if len(uniq) == len(idx) and (np.diff(idx) > 0).all():
            return block  # already sorted and unique: no second copy
        return block[inverse.reshape(-1)]  # one copy in the given order (duplicates repeated)

    def _read_rows(self, rows: np.ndarray, views) -> np.ndarray:
        """``params[rows, views]`` for sorted unique ``rows``.  A shard whose selected rows are dense
        (at least a quarter of the span they cover) is read as one contiguous slice and the rows
        taken from it; the sparse rest goes in one orthogonal selection.  Zarr's orthogonal
        selection of thousands of rows takes 5x the time of a slice and holds several times the
        output in memory while it runs (16,000 of 20,000 objects x 10 views: 8.5 s and 2.7 GB for
        723 MB, against 1.6 s and 1.0 GB as a slice), which made a cached dataset of a large
        split run out of memory."""
        shard = rows // self.shard_objects
        cuts = np.flatnonzero(np.diff(shard)) + 1
        starts, stops = np.r_[0, cuts], np.r_[cuts, len(rows)]
        dense = np.zeros(len(rows), dtype=bool)
        out = None
        for a, b in zip(starts, stops):
            lo, hi = int(rows[a]), int(rows[b - 1]) + 1
            if 4 * (b - a) < hi - lo:
                continue
            part = self._read(self.params, (slice(lo, hi), views))[rows[a:b] - lo]
            if out is None:
                out = np.empty((len(rows),) + part.shape[1:], dtype=part.dtype)
            out[a:b] = part
            dense[a:b] = True
        if not dense.all():
            part = self._read(self.params, (rows[~dense], views, slice(None)), orthogonal=True)
            if out is None:
                return part
            out[~dense] = part
        return out

    def _check_fitted(self, objects: np.ndarray, block: np.ndarray, view: int | None) -> None:
        """An :class:`InrforgeError` when one of the INRs just read (``block``: the parameters of
        ``objects`` at ``view``, or at every view for None) is marked done and not failed but is
        not finite.  Costs one pass over the block; ``done`` and ``failed`` are read only when some
        INR is not finite (not fitted, failed or damaged), and a known failed INR, being final, does
        not make them be read again."""
        bad = ~np.isfinite(block).all(axis=-1)
        if not bad.any():
            return
        bad = bad.reshape(len(objects), -1)  # (n, V) or (n, 1)
        views = slice(None) if view is None else [view]
        if self._known_failed is not None and not (bad & ~self._known_failed[objects][:, views]).any():
            return
        done, failed = self.done(), self.metric("failed")
        self._known_failed = done[:, None] & failed
        damaged = bad & done[objects][:, None] & ~failed[objects][:, views]
        if damaged.any():
            raise InrforgeError(_damage_message(self.path, objects[damaged.any(axis=1)],
                                                "not finite (a missing chunk reads as NaN)"))

    def check_view(self, view: int) -> int:
        """``view`` as an int, or an :class:`InrforgeError` when the store has no such view."""
        if isinstance(view, bool) or not isinstance(view, (int, np.integer)):
            raise InrforgeError(f"a view is an integer, got {view!r}")
        if not 0 <= int(view) < self.views:
            raise InrforgeError(f"view {view} out of range: the store has {self.views} view"
                                f"{'' if self.views == 1 else 's'} (0 to {self.views - 1})")
        return int(view)

    def read(self, indices, view: int = 0) -> tuple[Weights, torch.Tensor]:
        """``(weights, labels)`` for the objects ``indices`` at one view (see :meth:`object_indices`;
        a single int gives a batch of one).  The parameters are returned as stored, finished or not:
        :meth:`done` and ``metric("failed")`` say which are usable (:meth:`usable`)."""
        if view is None:
            raise InrforgeError("read gives one view (a Weights batch holds one INR per object); "
                                "use read_flat(indices, view=None) for all views")
        idx = self.object_indices(indices)
        flat = torch.from_numpy(np.ascontiguousarray(self.read_flat(idx, view)))
        return Weights.from_flat(flat, self.arch), torch.from_numpy(np.asarray(self.labels[idx]))

    # ----- summary ----------------------------------------------------------------------
    def fit_summary(self) -> dict:
        """How the INRs were fitted, as recorded in the store (for experiment reports): everything
        that decides their numbers besides the source and the arch (``fit_*`` keys, so that they do
        not collide with a report's training settings), and the versions of the first fit."""
        fit = self.fit_settings
        return {"n_points": (self.source.get("params") or {}).get("n_points"), "init": self.arch.init,
                "fit_steps": fit.get("steps"), "fit_lr": fit.get("lr"),
                **{f"fit_{k}": (with_legacy(fit) if "lr" in fit else fit).get(k) for k in LEGACY_FIT},
                "data_seed": fit.get("seed"),
                "fit_target_psnr": fit.get("target_psnr"), "fit_batch_size": fit.get("batch_size"),
                "fit_compile": fit.get("compile"), "fit_device": fit.get("device"),
                "fit_versions": fit.get("versions"), **({"fit_resumed_with": fit["resumed_with"]}
                                                          if fit.get("resumed_with") else {})}

    def damaged_objects(self, done: np.ndarray | None = None) -> np.ndarray:
        """The objects of finished shards (in ``done``, when given: a :meth:`done` read) whose
        ``params`` shard file is missing from storage though some INR of the shard did not fail
        (a partial copy of the store): their parameters read as NaN.  Lists the storage keys
        once, reading no parameters.  Empty for a store whose storage cannot be listed."""
        done = self.done() if done is None else done
        keys = _stored_keys(self.params)
        if keys is None:
            return np.empty(0, dtype=np.int64)
        failed, out = None, []
        for k in range(self.n_shards):
            start, stop = self.shard_range(k)
            if not done[start:stop].all() or self.params.metadata.encode_chunk_key((k, 0, 0)) in keys:
                continue
            failed = self.metric("failed") if failed is None else failed
            out.append(np.arange(start, stop)[~failed[start:stop].all(axis=1)])  # all failed: may be all NaN
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def damaged_shards(self) -> list[int]:
        """The finished shards whose data cannot be read back whole, found by reading every one of
        them (the whole store, a shard at a time): a ``params`` shard file that is missing
        (:meth:`damaged_objects`) or fails to decode (truncated or altered: zarr checks each
        shard's index against its checksum), a metrics chunk that fails to decode, a done INR
        that did not fail whose parameters read as NaN (chunks missing inside a shard), or whose
        PSNR or loss reads as NaN where other such INRs have one (a lost metrics chunk; an
        imported store records none, a classifier zoo no PSNR).  Labels or splits that cannot be
        read back are an :class:`InrforgeError` first: a refit cannot restore them."""
        for name in ("train", "val", "test"):
            self.split(name)  # read to check
        self._labels = None
        _ = self.labels  # read again, to check
        done = self.done()
        bad = {int(i) // self.shard_objects for i in self.damaged_objects(done)}
        # an array that cannot be opened is no shard's damage (a refit cannot write it): an error now
        metrics = {name: self._array(f"metrics/{name}", (len(self), self.views)) for name in self._metric_names()}
        reads = {}
        for k in range(self.n_shards):
            start, stop = self.shard_range(k)
            if k in bad or not done[start:stop].all():
                continue
            try:
                read = {name: self._read(arr, slice(start, stop)) for name, arr in metrics.items()}
                params = self._read(self.params, slice(start, stop))
            except InrforgeError:
                bad.add(k)
                continue
            if (~np.isfinite(params).all(axis=-1) & ~read["failed"]).any():
                bad.add(k)
            reads[k] = read
        for name in ("psnr", "loss"):  # recorded for some fitted INRs: then for every one
            if any((~np.isnan(r[name]) & ~r["failed"]).any() for r in reads.values()):
                bad |= {k for k, r in reads.items() if (np.isnan(r[name]) & ~r["failed"]).any()}
        return sorted(bad)

    def describe_shards(self, shards) -> str:
        """``shards`` for a message: ``shards 1, 2 (16 objects)`` (the first ten numbers)."""
        shards = list(shards)
        n = sum(b - a for a, b in map(self.shard_range, shards))
        more = ", ..." if len(shards) > 10 else ""
        return (f"shard{'s' if len(shards) > 1 else ''} {', '.join(map(str, shards[:10]))}{more} "
                f"({n} object{'s' if n > 1 else ''})")

    def reopen_shards(self, shards) -> None:
        """Mark ``shards`` unfinished and delete their ``params`` shard files, so that a fit with the
        store's own arguments refits them: what ``inrforge fit --repair`` does with
        :meth:`damaged_shards`.  A shard's fit is a pure function of the store's arguments, so the
        refitted shard is the one that was lost (bit for bit, on the machine that fitted it).  The
        file goes because zarr reads a shard's old file to write into it, and a damaged one cannot
        be read; it goes first, so that a run stopped in between leaves a done shard with no file,
        which :meth:`damaged_objects` (hence ``info`` and the next ``--repair``) finds, never a
        pending shard whose damaged file no write can get past."""
        shards = [int(k) for k in shards]
        for k in shards:
            self.shard_range(k)  # refuses a shard the store does not have, before anything is deleted
        _delete_chunks(self.params, [(k, 0, 0) for k in shards])
        for k in shards:
            start, stop = self.shard_range(k)
            self.root["done"][start:stop] = np.zeros(stop - start, dtype=bool)

    def info(self) -> dict:
        """Counts, arch, size on disk, and the PSNR mean/median/5th percentile and failure count over
        the INRs of finished shards (a shard still being written, or left by a killed writer, is not
        counted); the PSNR statistics leave failed INRs out and are NaN when none is left.  A store
        whose finished shards lack their parameters (:meth:`damaged_objects`) is an
        :class:`InrforgeError` naming the objects, not a summary."""
        flags = self.done()  # read first: a shard done now wrote its metrics before, even while a fit runs
        damaged = self.damaged_objects(flags)
        if len(damaged):
            raise InrforgeError(_damage_message(self.path, damaged, "missing (read as NaN)"))
        done = flags[:, None]
        psnr = self.metric("psnr")
        failed = self.metric("failed") & done
        ok = psnr[done & ~failed & np.isfinite(psnr)]
        pct = (lambda q: float(np.percentile(ok, q))) if len(ok) else (lambda q: float("nan"))
        return {
            "path": self.path,
            "objects": len(self),
            "views": self.views,
            "inrs": len(self) * self.views,
            "arch": self.attrs["arch"],
            "params_per_inr": self.arch.param_count,
            "source": self.source.get("name"),
            "splits": {s: int(len(self.split(s))) for s in ("train", "val", "test")},
            "done_fraction": float(flags.mean()),
            "shards": f"{self.n_shards - len(self.pending_shards(flags))}/{self.n_shards}",
            "psnr_mean": float(ok.mean()) if len(ok) else float("nan"),
            "psnr_median": pct(50),
            "psnr_p5": pct(5),
            "failed": int(failed.sum()),
            "size_bytes": _size_on_disk(self.path),
            "fit": self.fit_settings,  # how, and with which software (and any resume's), it was fitted
        }


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


_ABANDONED = r"coroutine 'concurrent_map\.<locals>\.run' was never awaited"  # zarr's, left by a failed read


class _ZarrTaskNoise(logging.Filter):
    """Drops asyncio's reports about zarr's own tasks: when one chunk of a read fails to decode,
    zarr abandons the read's other tasks, and asyncio reports each of them (``Task was destroyed but
    it is pending!``, ``exception was never retrieved``) when they are collected, often at exit:
    dozens of lines after the one-line error, different on every run.  Only those two reports,
    and only about tasks running zarr's code, are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = logging.Formatter().format(record)
        about_zarr = f"zarr{os.sep}core{os.sep}" in text or f"zarr{os.sep}codecs{os.sep}" in text
        return not (about_zarr and ("Task was destroyed but it is pending" in text
                                    or "exception was never retrieved" in text))


def _ignore_abandoned() -> None:
    warnings.filterwarnings("ignore", message=_ABANDONED, category=RuntimeWarning)


def _quiet_abandoned_reads() -> None:
    """After a failed read: no asyncio reports or never-awaited warnings about zarr's abandoned
    tasks, now or when they are collected at exit (a command's warnings context is gone by then)."""
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _ZarrTaskNoise) for f in log.filters):
        log.addFilter(_ZarrTaskNoise())
        atexit.register(_ignore_abandoned)
    _ignore_abandoned()


def _damage_message(path: str, objects, what: str) -> str:
    """The one-line error for done, not failed INRs whose parameters are ``what``."""
    n = len(np.unique(objects))
    return (f"{path}: object{'s' if n > 1 else ''} {_ranges(objects)} {'are' if n > 1 else 'is'} marked done but "
            f"{'their' if n > 1 else 'its'} parameters are {what}: the store is incomplete or damaged (a partial copy?); "
            f"`inrforge fit` with the store's arguments and --repair refits what is damaged")


def _stored_keys(arr) -> set[str] | None:
    """The storage keys of the chunks (shards) of the array ``arr`` that exist, relative to the array
    (``c/0/0/0``), or None when its store cannot list them."""
    prefix = arr.store_path.path.rstrip("/") + "/"

    async def keys():
        return [k async for k in arr.store_path.store.list_prefix(prefix)]

    try:
        from zarr.core.sync import sync

        return {k[len(prefix):] for k in sync(keys())}
    except Exception:
        return None


def _delete_chunks(arr, coords) -> None:
    """Delete the stored chunks (shards) of ``arr`` at chunk-grid ``coords``; a missing one is no error."""
    from zarr.core.sync import sync

    store, prefix = arr.store_path.store, arr.store_path.path.rstrip("/") + "/"
    for c in coords:
        sync(store.delete(prefix + arr.metadata.encode_chunk_key(c)))


def _size_on_disk(path: str) -> int | None:
    """Bytes of the files under a local store (None for a URL).  A file that vanishes while it is
    counted (a writer's temporary file, renamed into place) is skipped."""
    if is_url(path):
        return None
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


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


def prepare_output(path, overwrite: bool = False) -> None:
    """Check that a new store may be written at ``path``; deletes nothing.

    An existing inrforge store may be replaced only with ``overwrite`` (else an error; the
    replacement happens in :func:`create_store`, once the new store is complete); an existing
    file or non-empty folder that is not a store, and a path inside another Zarr store (which that
    store's replacement would delete), are always refused.
    """
    path = local_path(path)
    if not is_url(path):
        refuse_unsafe_output(path, "a store at", replaced=True)
    if is_store(path):
        if not overwrite:
            raise InrforgeError(f"{path} already holds a store; pass --overwrite to replace it or choose another --out")
        refuse_foreign_entries(path)
    elif is_url(path) and _unfinished_build(path):  # built in place and interrupted: inrforge's own, redone
        refuse_foreign_entries(path)
    elif _holds_something(path):
        raise InrforgeError(f"{path} exists and is not an inrforge store; refusing to write there")


def _unfinished_build(path: str) -> bool:
    """Whether ``path`` holds a group that :func:`create_store` began and never finished (its
    ``inrforge-building`` marker; on a URL the store is built in place, not beside it)."""
    try:
        return BUILDING in zarr.open_group(path, mode="r").attrs
    except Exception:
        return False


def _filesystem(path):
    """The fsspec filesystem of ``path`` (a local path or a URL) and the path within it; a URL whose
    filesystem cannot be reached or is unknown is a one-line error."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except Exception as e:  # an unknown protocol, its package missing, bad credentials
        raise InrforgeError(f"cannot write a store at {path}: {first_line(e)}") from None


def _holds_something(path: str) -> bool:
    """Whether ``path`` is a file or a non-empty folder (or a URL prefix with something under it)."""
    if not is_url(path):
        return os.path.exists(path) and (os.path.isfile(path) or bool(os.listdir(path)))
    fs, p = _filesystem(path)
    try:
        return fs.exists(p) and (fs.isfile(p) or bool(fs.ls(p)))
    except Exception as e:
        raise InrforgeError(f"cannot write a store at {path}: {first_line(e)}") from None


def foreign_entries(path) -> list[str]:
    """The entries of the store at ``path`` that are not part of its Zarr hierarchy, as paths relative
    to it: what replacing or deleting the store would delete besides the store.  A Zarr group holds
    ``zarr.json`` and its members (folders with a ``zarr.json`` of their own); an array holds
    ``zarr.json`` and its chunks under ``c/`` (not looked into); a file that zarr was writing when
    its process died (``*.partial``) is zarr's.  Anything else, such as notes a user kept in the
    store's folder, is foreign.  A member whose ``zarr.json`` cannot be read counts as
    the store's (a damaged store may be replaced)."""
    fs, root = _filesystem(local_path(path))
    found: list[str] = []

    def visit(node: str, rel: str) -> None:
        try:
            array = json.loads(fs.cat_file(f"{node}/zarr.json")).get("node_type") == "array"
            entries = fs.ls(node, detail=True)
        except Exception:
            return
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            child = f"{node}/{name}"
            is_dir = entry["type"] == "directory"
            if name == "zarr.json" or (array and name == "c") or _PARTIAL_FILE.search(name):
                continue  # metadata, chunks (a 0-d array's one chunk is the file c), zarr's half-written files
            if is_dir and not array and fs.exists(f"{child}/zarr.json"):
                visit(child, f"{rel}{name}/")
            else:
                found.append(f"{rel}{name}{'/' if is_dir else ''}")

    visit(root.rstrip("/"), "")
    return sorted(found)


def refuse_foreign_entries(path) -> None:
    """An :class:`InrforgeError` naming what the store at ``path`` holds besides itself
    (:func:`foreign_entries`), before anything replaces or deletes it."""
    found = foreign_entries(path)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise InrforgeError(f"{path} holds files that are not part of its store ({shown}): replacing the store would "
                            f"delete them; move them out of it first")


def open_store(path, mode: str = "r") -> INRStore:
    """Open an inrforge store (read-only by default)."""
    return INRStore(path, mode=mode)


def remove_store(path) -> None:
    """Delete an inrforge store (refuses anything that is not one)."""
    path = local_path(path)
    if not is_store(path):
        raise InrforgeError(f"refusing to delete {path}: it is not an inrforge store")
    refuse_foreign_entries(path)
    if is_url(path):
        zarr.open_group(str(path), mode="w")
    else:
        shutil.rmtree(Path(path))
