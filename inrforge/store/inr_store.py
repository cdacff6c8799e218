"""An opened store (:class:`INRStore`, :func:`open_store`): its metadata, reading INRs and their
metrics, writing whole shards (:class:`ShardData`), finding and reopening damaged shards, and the
summary ``inrforge info`` prints."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import zarr

from ..errors import InrforgeError, StoreReplacedError, first_line
from ..files import enclosing_store, is_url, jsonable, local_path
from ..fit import LEGACY_FIT, with_legacy
from ..weights import Weights
from .chunk_files import _delete_chunks, _stored_keys
from .format import METRICS, _check_attributes, _check_format
from .location import _leftovers, _size_on_disk, is_store
from .summary import _ranges
from .zarr_noise import _quiet_abandoned_reads


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


def open_store(path, mode: str = "r") -> INRStore:
    """Open an inrforge store (read-only by default)."""
    return INRStore(path, mode=mode)


def _damage_message(path: str, objects, what: str) -> str:
    """The one-line error for done, not failed INRs whose parameters are ``what``."""
    n = len(np.unique(objects))
    return (f"{path}: object{'s' if n > 1 else ''} {_ranges(objects)} {'are' if n > 1 else 'is'} marked done but "
            f"{'their' if n > 1 else 'its'} parameters are {what}: the store is incomplete or damaged (a partial copy?); "
            f"`inrforge fit` with the store's arguments and --repair refits what is damaged")
