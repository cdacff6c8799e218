"""Creating a store: the empty group with every array sized up front, built beside its place and
moved in when complete (:func:`create_store`)."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import zarr

from ..arch import INRSpec
from ..errors import InrforgeError, first_line
from ..files import is_url, jsonable, local_path, refuse_unsafe_output
from ..version import __version__
from .format import BUILDING, FORMAT_VERSION, METRICS, MISSING
from .inr_store import INRStore
from .location import check_leftovers, is_store, prepare_output, remove_store, replace_store


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
