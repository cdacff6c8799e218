"""The fitting job: a source, an arch and fit settings in, a finished store out.

``fit_inrs`` creates (or resumes) the store and fits it shard by shard; ``fit_shard`` is the unit
of work (objects ``[start, stop)`` x all views), a pure function of its arguments, so a shard
refitted after a crash, or on another process, gives the same numbers.  ``prepare_fit`` (the
validation and the store creation/opening) is shared with the Dask driver, ``inrforge.distributed``.
:func:`matching_store` (resume a store made with the same arguments, or refuse one made with
others) is shared with the classifier zoo, ``inrforge.zoo.fit_zoo``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .arch import INRSpec, make_arch, require_arch
from .checks import (byte_size, check_count, check_device, probability, process_count, record_differences, seed_value,
                     shown, whole_number)
from .errors import InrforgeError
from .files import jsonable
from .fit import (KERNELS, LEGACY_FIT, FitSettings, batch_bytes, check_compiled_step, default_batch_size, fit_batch,
                  inr_seed, memory_batch_limit, memory_budget, psnr_to_mse, runs_native, with_legacy, worth_compiling)
from .memory import available_bytes
from .native import compiler_identity
from .sources import SOURCE_NAMES, Source, load_source, source_from_description
from .store import INRStore, ShardData, create_store, is_store, prepare_output
from .version import __version__

# Keys of the ``fit`` attribute that do not change the fitted numbers, hence not compared on resume
# (the versions are checked on their own, :func:`require_same_software`).
_INFORMATIONAL = ("versions", "threads", "resumed_with")
# The recorded versions whose change may change the fitted numbers (zarr's or Python's cannot); a
# fit compiled on a CPU also records its C++ compiler (``cxx``), whose code rounds its own way.
NUMERIC_VERSIONS = ("inrforge", "torch")


def make_splits(source: Source, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1) -> dict:
    """Deterministic train/val/test indices.

    The dataset's own test items form the test split; when the (limited) source has none, a
    ``test_fraction`` of the objects is drawn as test.  ``val_fraction`` of the remaining training
    objects is drawn as val.  Draws use ``numpy.random.default_rng(seed)``; each split is sorted.
    """
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    n = len(source)
    rng = np.random.default_rng(seed)
    test = np.asarray(source.official_test, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), test)
    if len(test) == 0 and test_fraction > 0:
        perm = rng.permutation(rest)
        n_test = int(round(test_fraction * n))
        test, rest = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    perm = rng.permutation(rest)
    n_val = int(round(val_fraction * len(rest)))
    return {"train": np.sort(perm[n_val:]), "val": np.sort(perm[:n_val]), "test": np.sort(test)}


def check_fractions(val_fraction, test_fraction) -> tuple[float, float]:
    """The split fractions of :func:`make_splits` as floats in [0, 1); anything else (``"0.1"``,
    NaN, 1) is a one-line error naming the fraction."""
    return (probability(val_fraction, "val_fraction", closed_top=False),
            probability(test_fraction, "test_fraction", closed_top=False))


def fit_shard(arch: INRSpec, source: Source, start: int, stop: int, views: int, seed: int,
              settings: FitSettings, on_batch=None) -> ShardData:
    """Fit every view of objects ``[start, stop)``; ``on_batch(n_inrs, psnr)`` reports progress.

    View v of object i starts from the init of :func:`inr_seed` ``(seed, i, v)``, or of
    ``(seed, 0, v)`` with ``settings.shared_init``.  The INRs are taken object-major (object i,
    views 0..V-1) and split into equal-sized batches of at most ``settings.batch_size`` (equal sizes
    keep compiled steps from recompiling).
    """
    pairs = [(i, v) for i in range(start, stop) for v in range(views)]
    n_batches = -(-len(pairs) // settings.batch_size)
    bounds = np.linspace(0, len(pairs), n_batches + 1).round().astype(int)
    coords = source.coords
    results = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        batch = pairs[lo:hi]
        objects = np.array([i for i, _ in batch])
        init = arch.init_flat([inr_seed(seed, 0 if settings.shared_init else i, v) for i, v in batch])
        uniq, inverse = np.unique(objects, return_inverse=True)
        targets = source.targets(uniq)[torch.from_numpy(inverse)]
        res = fit_batch(arch, init, coords, targets, settings)
        results.append(res)
        if on_batch is not None:
            on_batch(len(batch), res.psnr)
    n = stop - start
    cat = lambda name: torch.cat([getattr(r, name) for r in results]).numpy()  # noqa: E731
    return ShardData(
        start=start,
        params=cat("params").reshape(n, views, -1),
        psnr=cat("psnr").reshape(n, views),
        loss=cat("loss").reshape(n, views),
        steps=cat("steps").reshape(n, views),
        failed=cat("failed").reshape(n, views),
    )


def library_versions(compiler: bool = False) -> dict:
    """The versions a store records (its numbers depend on them); with ``compiler``, also ``cxx``: the
    C++ compiler that builds a compiled CPU step (:func:`~inrforge.native.compiler_identity`)."""
    import zarr

    versions = {"inrforge": __version__, "torch": torch.__version__, "zarr": zarr.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0]}
    return {**versions, "cxx": compiler_identity()} if compiler else versions


def compared_versions(compiler: bool = False) -> dict:
    """This process's :data:`NUMERIC_VERSIONS` (and, with ``compiler``, ``cxx``): the part of
    :func:`library_versions` that two processes fitting shards of one store must share."""
    now = library_versions(compiler)
    return {name: now[name] for name in NUMERIC_VERSIONS + (("cxx",) if compiler else ())}


def compiles_on_cpu(fit: dict) -> bool:
    """Whether a store's recorded ``fit`` settings name a compiled step on a CPU, whose numbers depend
    on the C++ compiler too."""
    return bool(fit.get("compile")) and str(fit.get("device") or "cpu").split(":")[0] == "cpu"


def refit_shard(store: INRStore, k: int, source: Source | None = None, device: str | None = None) -> ShardData:
    """Shard ``k`` of ``store`` fitted again from its inits with the store's recorded settings (arch,
    seed, views, steps, lr, target PSNR, batch size, compile; the recorded device unless ``device``)
    and its source rebuilt from the recorded description (or ``source``).  Nothing is written.

    With the software and machine type that fitted the store, the result equals the stored shard
    bit for bit (tested): the way to check a store's numbers, or to reproduce one INR, whose numbers
    depend on the size of the batch it shared (its shard, cut the same way, is the unit).  Only a
    store that ``fit_inrs`` fitted can be refitted: imported INRs and classifier zoos are refused,
    and so is a source whose data visibly changed since the fit (:func:`source_changes`; a file
    rewritten in place with the same shape is not visible)."""
    fit = store.fit_settings
    if store.source.get("name") not in SOURCE_NAMES:
        raise InrforgeError(f"{store.path} holds {store.source.get('name')!r} objects, not INRs that inrforge fitted "
                            f"from a source: there is no fit to repeat")
    start, stop = store.shard_range(k)
    source = source_from_description(store.source) if source is None else source
    changed = source_changes(store, source)
    if changed:
        raise InrforgeError(f"the source's data changed since the fit: it now has {' and '.join(changed)}")
    settings = FitSettings.recorded(fit, store.path, device)  # a bad value is named as the store's
    seed = seed_value(fit.get("seed"), f"{store.path}: the recorded fit.seed")
    if settings.compile:
        check_compiled_step(settings.device, settings.kernel)
    require_memory(settings, store.arch, len(source.coords), shard_inrs=(stop - start) * store.views)
    return fit_shard(store.arch, source, start, stop, store.views, seed, settings)


def source_changes(store: INRStore, source: Source) -> list[str]:
    """How ``source`` (rebuilt from ``store``'s recorded description) visibly differs from what the
    store was fitted to: its object count, labels, coordinate grid or recorded parameters (such as
    an image folder's file count), in words; [] when none does.  Pixel values are not recorded, so
    a file rewritten in place with the same shape goes unseen."""
    changed = []
    if len(source) != len(store):
        return [f"{len(source)} objects, the store has {len(store)}"]
    if not np.array_equal(np.asarray(source.labels), np.asarray(store.labels)):
        changed.append("other labels")
    keys = ("kind", "height", "width", "channels", "lo", "hi", "n_points", "endpoint")  # not the prose
    now, then = jsonable(source.grid()), store.source.get("grid") or {}
    if any(now.get(k) != then.get(k) for k in keys):
        changed.append("another coordinate grid")
    then_params, now_params = store.source.get("params") or {}, jsonable(source.describe()["params"])
    changed += [f"{k}={now_params.get(k)!r} (the fit had {v!r})" for k, v in sorted(then_params.items())
                if k not in ("path", "limit") and now_params.get(k) != v]  # e.g. image-folder's n_files
    return changed


def software_changes(store: INRStore) -> list[str]:
    """``name A -> B`` for each of :data:`NUMERIC_VERSIONS` of this process that differs from the
    versions ``store`` was begun with, or [] when this process's inrforge and torch are among those
    the store records (``fit.versions``, or an entry of ``fit.resumed_with``).  For a store that
    records its C++ compiler (``cxx``: a compiled CPU fit, since 0.6.0) the compiler must match too."""
    fit = store.fit_settings or {}
    was = fit.get("versions") or {}
    names = NUMERIC_VERSIONS + (("cxx",) if "cxx" in was else ())  # stores before 0.6.0 do not record it
    now = library_versions(compiler="cxx" in names)
    seen = [was, *(fit.get("resumed_with") or [])]
    if any(all(v.get(name) == now[name] for name in names) for v in seen):
        return []
    return [f"{name} {shown(was.get(name))} -> {shown(now[name])}" if name == "cxx" else
            f"{name} {was.get(name)} -> {now[name]}" for name in names if was.get(name) != now[name]]


def require_same_software(store: INRStore, allow_version_change: bool = False, remedy: str = "resume") -> None:
    """Before more shards are fitted into ``store``: an :class:`InrforgeError` when this process's
    inrforge or torch (:data:`NUMERIC_VERSIONS`; and C++ compiler, where the store records one) is
    none the store was fitted with so far
    (:func:`software_changes`): the new shards' numbers may differ in the last bits, and the store
    would not say so.  With ``allow_version_change`` this run's versions are added to
    ``fit.resumed_with`` instead, so that the store says it is mixed.  ``remedy``: what the message
    offers besides the flag, ``"resume"`` (``--overwrite`` fits the store again from the start) or
    ``"repair"`` (the flag only)."""
    changes = software_changes(store)
    if not changes:
        return
    if not allow_version_change:
        what = "refit its damaged shards" if remedy == "repair" else "fit its remaining shards"
        other = "" if remedy == "repair" else ", or --overwrite to fit the whole store again with this software"
        raise InrforgeError(f"{store.path} was fitted so far with other software ({', '.join(changes)}), whose "
                            f"numbers may differ in the last bits; pass --allow-version-change to {what} anyway "
                            f"(the store then records it in fit.resumed_with){other}")
    store.check_writable()
    store.add_fit_record("resumed_with", library_versions(compiler=compiles_on_cpu(store.fit_settings or {})))


def _differences(old: dict, new: dict) -> list[str]:
    """``key: store has A, now B`` for every differing leaf of two identities (:func:`store_identity`),
    leaving out the informational ``fit`` keys and ``source.params.limit``: a limit keeps the first
    objects, so what it changes shows in ``source.n_objects`` (a zoo's: its grid's image counts)."""
    return record_differences(old, new, had="store has", skip=_not_compared)


def _not_compared(key: str) -> bool:
    return key in {f"fit.{k}" for k in _INFORMATIONAL} or key == "source.params.limit"


def _recorded_fit(out) -> dict:
    """The ``fit`` attributes of the store at ``out`` ({} where there is no readable store).

    The batch size, ``compile`` and ``kernel`` are part of a store's identity (they decide which INRs share a
    step and how it computes), so a resume that leaves them to a default must reuse the recorded
    ones, whatever this device's default is, rather than be refused as a run with other arguments.
    The values are as recorded: :func:`_recorded_value` checks the ones a run takes.
    """
    if not is_store(str(out)):
        return {}
    try:
        attrs = INRStore(str(out)).attrs
        fit = attrs["fit"]
        return {"batch_size": fit["batch_size"], "compile": fit["compile"], "kernel": with_legacy(fit)["kernel"],
                "shard_objects": attrs["shard_objects"]}
    except (KeyError, TypeError, ValueError, InrforgeError):  # nothing usable: matching_store says why
        return {}


def _recorded_value(out, recorded: dict, key: str):
    """``recorded[key]`` (a :func:`_recorded_fit` value a run reuses, None where there is none),
    checked: a bad one is an error that names the store's attribute, not the option the user left
    out (``--batch-size``), since it is the store that holds it."""
    value = recorded.get(key)
    what = f"{out}: the recorded {'shard_objects' if key == 'shard_objects' else 'fit.' + key}"
    if value is None:
        return None
    if key == "compile":
        if not isinstance(value, bool):
            raise InrforgeError(f"{what} must be true or false, got {shown(value)}")
        return value
    if key == "kernel":
        if value not in KERNELS:
            raise InrforgeError(f"{what} must be one of {', '.join(KERNELS)}, got {shown(value)}")
        return value
    return whole_number(value, what)


def default_shard_objects(device: str, batch_size: int, views: int) -> int:
    """Objects per shard when none is given: 256; on a GPU at least one whole batch of INRs
    (``ceil(batch_size / views)`` objects), since a step never spans two shards: with 256 objects a
    GPU would fit at most ``256 x views`` INRs a step however large its batch."""
    if torch.device(device).type == "cuda":
        return max(256, -(-int(batch_size) // int(views)))
    return 256


def store_identity(store: INRStore) -> dict:
    """What decides a store's numbers, as recorded: its ``arch``, ``source``, ``fit``, ``views`` and
    ``shard_objects`` attributes.  A run resumes a store only if it would record the same
    (:func:`matching_store`)."""
    a = store.attrs
    return {"arch": a["arch"], "source": a["source"], "fit": a["fit"], "views": a["views"],
            "shard_objects": a["shard_objects"]}


def identity_differences(store: INRStore, identity: dict) -> list[str]:
    """How ``identity`` (what a run would record, :func:`store_identity`'s keys) differs from what
    ``store`` records: ``key: store has A, now B`` lines, [] when the run may resume the store.  The
    informational ``fit`` keys (:data:`_INFORMATIONAL`) and ``source.params.limit`` are not compared.
    A fit setting added since the store was written (:data:`~inrforge.fit.LEGACY_FIT`) and that it
    does not record compares as the value every store was fitted with before it.  The kernel of an
    uncompiled fit (``compile`` false on both sides) decides nothing and is not compared."""
    recorded, identity = jsonable(store_identity(store)), jsonable(identity)
    if isinstance(recorded.get("fit"), dict) and set(LEGACY_FIT) <= set(identity.get("fit") or {}):
        recorded["fit"] = with_legacy(recorded["fit"])  # an INR fit's identity (a zoo's has other settings)
        if recorded["fit"].get("compile") is False and identity["fit"].get("compile") is False:
            recorded["fit"] = {k: v for k, v in recorded["fit"].items() if k != "kernel"}
            identity = {**identity, "fit": {k: v for k, v in identity["fit"].items() if k != "kernel"}}
    return _differences(recorded, identity)


def matching_store(out, identity: dict, overwrite: bool) -> INRStore | None:
    """The store at ``out`` opened for writing when it records ``identity`` (to resume:
    :func:`identity_differences` finds nothing); None when a new store is to be written there:
    nothing is there yet, or (with ``overwrite``) a store made with other arguments, or one begun
    with other software (:func:`software_changes`) that has shards left to fit.  Refuses,
    without writing anything, a store made with other arguments without ``overwrite``, and anything
    else that is not a store (a file, a non-empty folder).  Shared by :func:`fit_inrs` and
    :func:`inrforge.zoo.fit_zoo`."""
    path = str(out)
    if not is_store(path):
        prepare_output(path)
        return None

    def to_replace() -> None:  # checked now (nothing of the user's in it), before a cluster starts
        prepare_output(path, overwrite=True)

    try:
        store = INRStore(path, mode="r+")
    except InrforgeError as e:  # a store whose attributes cannot be read (hand-edited, damaged)
        if overwrite:
            return to_replace()  # replaced whole, once the new store is complete
        raise InrforgeError(f"{e}; pass --overwrite to replace it or choose another --out") from None
    diffs = identity_differences(store, identity)
    if not diffs:
        if overwrite and store.pending_shards() and software_changes(store):
            return to_replace()  # its remaining shards would mix two versions: --overwrite fits it again, whole
        return store
    if not overwrite:
        raise InrforgeError(
            f"{path} holds a store fitted with other arguments ({'; '.join(diffs[:3])}"
            f"{'; ...' if len(diffs) > 3 else ''}); pass --overwrite to replace it or choose another --out"
        )
    return to_replace()


@dataclass
class FitPlan:
    """What :func:`prepare_fit` hands to a fitting loop (local or distributed)."""

    store: INRStore | None  # opened for writing; None until :meth:`open` creates it (``create=False``)
    source: Source
    arch: INRSpec
    views: int
    seed: int
    settings: dict  # FitSettings keyword arguments (validated; the device is checked where it fits)
    open_or_create: Callable[[], INRStore] = field(repr=False, default=None)
    allow_version_change: bool = False  # see require_same_software
    shard_objects: int | None = None  # objects per shard, as given or chosen (the store clamps it to its objects)

    def fit_settings(self) -> FitSettings:
        return FitSettings(**self.settings)

    def open(self) -> INRStore:
        """The store to write: the one already found, else the store at ``out`` checked again and
        opened (resume) or created (replacing one made with other arguments, with ``overwrite``)."""
        if self.store is None:
            self.store = self.open_or_create()
        return self.store

    def pending_shards(self) -> list[int]:
        return self.open().pending_shards()

    def check_software(self) -> None:
        """:func:`require_same_software` for the store to write (one this run created records this
        run's versions, so only a resumed one can be refused)."""
        if self.store is not None:
            require_same_software(self.store, self.allow_version_change)

    def repair(self) -> list[int]:
        """Reopen the damaged shards of a store being resumed (:meth:`INRStore.damaged_shards`, which
        reads the whole store), so that the fit refits them; a warning names them.  Returns them.
        Nothing to do for a store still to be created."""
        store = self.store
        if store is None:
            return []
        shards = store.damaged_shards()
        if shards:
            require_same_software(store, self.allow_version_change, remedy="repair")  # before anything is deleted
            store.check_writable()
            store.reopen_shards(shards)
            warnings.warn(f"{store.path}: refitting damaged {store.describe_shards(shards)}")
        return shards


@dataclass(frozen=True)
class FitRequest:
    """The options of a fit: the keyword arguments of :func:`fit_inrs` and
    :func:`inrforge.distributed.fit_inrs_distributed` (:func:`prepare_fit` checks them).  The
    defaults are the DWSNets datasets' recipe (Adam at lr 5e-4 for every layer, 1,000 steps, early
    stop at 40 dB).  ``lr=5e-3, lr_schedule="cosine", first_layer_lr=10`` fits 28 x 28 images to
    50 dB instead of 28 in 1,000 steps, but DWSNet classifies such INRs worse (docs/benchmarks.md,
    "Fit quality"): the default is the recipe for learning in weight space.

    - ``arch``: the INR (default: ``siren-dwsnets`` 2 -> 32 -> 32 -> 1, for the source's inputs and
      outputs); ``views``: INRs (random inits) per object; ``seed``: view v of object i starts from
      a seed derived from (seed, i, v), and the splits are drawn with it; ``shared_init``: from
      (seed, 0, v) instead, the same init for every object (weight-space models may learn more from
      such INRs: docs/benchmarks.md);
    - ``steps``; ``lr``; ``lr_schedule``: ``constant`` or ``cosine`` (``lr (1 + cos(pi t / steps)) / 2``
      at step t); ``first_layer_lr``: the first layer's lr is ``lr`` times this; ``target_psnr``:
      early stop per INR in dB (None: every INR takes every step);
    - ``batch_size``, ``compile``, ``kernel`` (the compiled CPU step, :data:`~inrforge.fit.KERNELS`),
      ``shard_objects``: None keeps a resumed store's own and gives a new one the default
      (:func:`prepare_fit`; the kernel: ``native``); ``device``; ``threads`` (torch threads);
    - ``chunk_objects``, ``val_fraction``, ``test_fraction``: the store's chunks and splits;
    - ``overwrite``: replace a store made with other arguments; ``allow_version_change``: resume one
      begun with another inrforge or torch version (:func:`require_same_software`).
    """

    arch: INRSpec | None = None
    views: int = 1
    steps: int = FitSettings.steps
    lr: float = FitSettings.lr
    lr_schedule: str = FitSettings.lr_schedule
    first_layer_lr: float = FitSettings.first_layer_lr
    shared_init: bool = FitSettings.shared_init
    target_psnr: float | None = FitSettings.target_psnr
    batch_size: int | None = None
    device: str = "cpu"
    seed: int = 0
    compile: bool | None = True
    kernel: str | None = None
    shard_objects: int | None = None
    chunk_objects: int = 16
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    overwrite: bool = False
    threads: int | None = None
    allow_version_change: bool = False


FIT_OPTIONS = tuple(f.name for f in fields(FitRequest))


def fit_request(options: dict, who: str) -> FitRequest:
    """``FitRequest(**options)``, with a TypeError naming ``who`` and the fit options for a keyword
    that is none of them (a typo such as ``step=`` must not fit 1,000 steps silently)."""
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise TypeError(f"{who}() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"the fit options are {', '.join(FIT_OPTIONS)}")
    return FitRequest(**options)


def prepare_fit(source: Source | str, out, request: FitRequest | None = None, *, fit_here: bool = True,
                create: bool = True, **options) -> FitPlan:
    """Validate a fit's options (a :class:`FitRequest`, or its fields as keywords) and create (or
    open, to resume) the store at ``out``.

    ``fit_here=True`` (the single-process path) checks that the device exists in this process and
    applies ``threads`` to it; ``fit_here=False`` (a driver whose workers fit) only checks the
    device's spelling and records ``threads`` (per task, default 1) in the informational
    ``fit.threads`` attribute.

    ``compile=None`` chooses: a resumed store keeps its own choice, a new one is compiled when that
    repays the compile time (:func:`~inrforge.fit.worth_compiling`: on a CPU with the native kernel,
    always where it builds; with ``torch.compile``, fits large enough).
    ``batch_size=None`` keeps a resumed store's, else the device's default (lowered to what fits in
    memory here).  ``shard_objects=None`` likewise: a resumed store keeps its shards, a new one gets
    :func:`default_shard_objects` (256 objects; on a GPU, at least one batch).

    ``create=False`` checks the store at ``out`` (refusing what would be refused) and opens it when
    it can be resumed, but creates or replaces nothing: ``plan.store`` is None until
    :meth:`FitPlan.open`.  The Dask driver uses it to start a cluster only when there is work.
    """
    if request is not None and (options or not isinstance(request, FitRequest)):
        raise TypeError("prepare_fit takes a FitRequest or its fields as keywords, not both"
                        if options else f"prepare_fit: request must be a FitRequest, not {type(request).__name__}")
    r = request if request is not None else fit_request(options, "prepare_fit")
    device, threads, overwrite = r.device, r.threads, r.overwrite
    batch_size, compile, kernel, shard_objects = r.batch_size, r.compile, r.kernel, r.shard_objects
    source = load_source(source) if isinstance(source, str) else source.check()  # something to fit
    out = check_out(out)
    views = check_count("--views", r.views)
    steps = check_count("--steps", r.steps)
    seed = seed_value(r.seed, "--seed")  # as train's: numpy and torch generators take < 2**63
    val_fraction, test_fraction = check_fractions(r.val_fraction, r.test_fraction)  # before a store is compared
    if shard_objects is not None:
        shard_objects = check_count("the shard size", shard_objects)
    chunk_objects = check_count("the chunk size", r.chunk_objects)
    # the device is checked before anything asks it for its memory or default batch; a driver
    # whose workers fit checks only its spelling (the workers check that it exists)
    check_device(device, here=fit_here)
    arch = r.arch
    if arch is None:
        arch = make_arch("siren-dwsnets", in_features=source.in_features, out_features=source.out_features)
    require_arch(arch, "fit_inrs")
    if arch.in_features != source.in_features or arch.out_features != source.out_features:
        raise InrforgeError(
            f"arch maps {arch.in_features} -> {arch.out_features} but source {source.name!r} has "
            f"{source.in_features}-D coordinates and {source.out_features} outputs"
        )
    if threads is not None:
        # this machine's cores cap the threads fitted here; a driver cannot see its workers' cores
        threads = process_count(threads, "--threads") if fit_here else check_count("--threads", threads)
        if fit_here:
            torch.set_num_threads(threads)

    lr, lr_schedule, first_layer_lr, target_psnr = r.lr, r.lr_schedule, r.first_layer_lr, r.target_psnr
    shared_init = r.shared_init
    # checked before a store's settings are compared with them (the batch size and device: below)
    FitSettings(steps=steps, lr=lr, target_psnr=target_psnr, lr_schedule=lr_schedule, first_layer_lr=first_layer_lr,
                shared_init=shared_init, **({} if kernel is None else {"kernel": kernel}))

    def fit_attrs_with(batch: int, compiled: bool, kernel: str) -> dict:
        return {"steps": int(steps), "lr": float(lr), "lr_schedule": lr_schedule,
                "first_layer_lr": float(first_layer_lr), "shared_init": bool(shared_init), "seed": int(seed),
                "target_psnr": None if target_psnr is None else float(target_psnr),
                "batch_size": int(batch), "device": torch.device(device).type, "compile": bool(compiled),
                "kernel": kernel,
                "val_fraction": float(val_fraction), "test_fraction": float(test_fraction),
                "threads": torch.get_num_threads() if fit_here else int(threads or 1),
                "versions": library_versions(compiler=compiles_on_cpu({"compile": compiled, "device": device}))}

    # The batch size, compile, kernel and shard size left to a default (None): a resumed store keeps
    # its own; a new store (or one that --overwrite replaces) gets the device's default batch, if it
    # fits, is compiled when that repays the compile time, with the native kernel, and has shards of
    # at least one batch.
    if batch_size is None or compile is None or kernel is None or shard_objects is None:
        recorded = _recorded_fit(out)
        asked = batch_size, compile, kernel, shard_objects
        try:
            kept = tuple(_recorded_value(out, recorded, key) if value is None else value
                         for key, value in zip(("batch_size", "compile", "kernel", "shard_objects"), asked))
        except InrforgeError:
            if not overwrite:
                raise
            recorded, kept = {}, asked  # to be replaced
        if recorded and overwrite and identity_differences(INRStore(str(out)), _identity(
                source, arch, views, fit_attrs_with(*kept[:3]), kept[3])):
            kept = asked  # to be replaced: not the old one's
        batch_size, compile, kernel, shard_objects = kept
        if kernel is None:  # the fused kernel where it runs (a CPU); Inductor's step on a GPU
            kernel = "native" if torch.device(device).type == "cpu" else "inductor"
        if compile is None:
            compile = worth_compiling(len(source) * views * steps * len(source.coords), device, kernel)
        if batch_size is None:
            batch_size = default_batch_size(device, len(source.coords), native=compile and runs_native(device, kernel))
            if fit_here:
                batch_size = min(batch_size, memory_batch_limit(arch, len(source.coords), device))
        if shard_objects is None:
            shard_objects = default_shard_objects(device, batch_size, views)
    shard_gib = min(shard_objects, len(source)) * views * arch.param_count * 4 * 3 / 2**30  # params, inits, results
    if fit_here and shard_gib * 2**30 > available_bytes() // 2:
        raise InrforgeError(f"a shard of {min(shard_objects, len(source))} objects x {views} views x "
                            f"{arch.param_count:,} parameters per INR holds {shard_gib:.1f} GiB while it is fitted, "
                            f"more than this machine has to spare; use fewer --views, a smaller --shard-size or "
                            f"a smaller arch")
    if kernel == "native" and torch.device(device).type != "cpu":
        raise InrforgeError(f"--kernel native is a CPU kernel; on {device} the step is compiled by torch.compile "
                            f"(--kernel inductor, the default there)")
    if compile and fit_here:
        check_compiled_step(device, kernel)  # before a store that records it exists (a failed build: one line)
    settings = dict(steps=steps, lr=lr, target_psnr=target_psnr, batch_size=batch_size, device=device,
                    compile=compile, kernel=kernel, lr_schedule=lr_schedule, first_layer_lr=first_layer_lr,
                    shared_init=shared_init)
    shard_inrs = min(shard_objects, len(source)) * views
    if torch.device(device).type == "cuda" and shard_objects < len(source) and shard_inrs < batch_size:
        # a step never spans two shards: the GPU would fit small batches however large batch_size is
        warnings.warn(f"a shard holds {shard_inrs} INRs ({min(shard_objects, len(source))} objects x {views} views), "
                      f"fewer than the batch size {batch_size}: every step fits at most {shard_inrs} INRs; for a GPU "
                      f"pass --shard-size {-(-batch_size // views)} or more (docs/cluster.md)")
    checked = FitSettings(**(settings if fit_here else {**settings, "device": "cpu"}))  # the device: checked above
    check_target_psnr(checked.target_psnr, source)
    if fit_here:
        require_memory(checked, arch, len(source.coords), shard_inrs=shard_inrs)  # before a store
    fit_attrs = fit_attrs_with(batch_size, compile, kernel)

    def open_or_create() -> INRStore:
        try:
            return _open_or_create(out, source, arch, views, seed, fit_attrs, shard_objects, chunk_objects,
                                   val_fraction, test_fraction, overwrite)
        except OSError as e:
            raise InrforgeError(f"cannot write the store at {out}: {e.strerror or e}") from None

    plan = FitPlan(store=None, source=source, arch=arch, views=int(views), seed=int(seed), settings=settings,
                   open_or_create=open_or_create, allow_version_change=bool(r.allow_version_change),
                   shard_objects=int(shard_objects))
    if create:
        plan.open()
    else:  # refuse now what open_or_create would refuse later; open a store to resume
        plan.store = matching_store(out, _identity(source, arch, views, fit_attrs, shard_objects), overwrite)
    return plan


def fit_inrs(source: Source | str, out, *, progress: bool | None = None, repair: bool = False,
             **options) -> INRStore:
    """Fit ``views`` INRs per object of ``source`` into the store at ``out`` and return it.

    ``options`` are the fields of :class:`FitRequest` (``arch``, ``views``, ``steps``, ``lr``,
    ``lr_schedule``, ``first_layer_lr``, ``shared_init``, ``target_psnr``, ``batch_size``, ``device``, ``seed``,
    ``compile``, ``shard_objects``, ``chunk_objects``, ``val_fraction``, ``test_fraction``,
    ``overwrite``, ``threads``, ``allow_version_change``), with its defaults.

    Creates the store, or resumes it when it exists with the same arguments (only unfinished
    shards are fitted; a finished store is returned untouched).  A store made with different
    arguments is refused unless ``overwrite``.  ``progress=None`` shows a bar only on a terminal.
    ``compile=None`` compiles the step only where it pays (see :func:`prepare_fit`).
    ``shard_objects`` (objects per shard, the unit of writing and resuming): by default 256, or on a
    GPU at least one batch; a resumed store keeps its own.
    ``repair=True`` first reads a resumed store whole and refits the finished shards whose data
    cannot be read back (:meth:`FitPlan.repair`).  A store begun with another inrforge or torch
    version is resumed only with ``allow_version_change`` (:func:`require_same_software`).
    (:func:`inrforge.distributed.fit_inrs_distributed` does the same on a Dask cluster.)
    """
    plan = prepare_fit(source, out, fit_request(options, "fit_inrs"))
    views, seed = plan.views, plan.seed
    if repair:
        plan.repair()
    store, source, arch = plan.store, plan.source, plan.arch
    pending = store.pending_shards()
    if not pending:
        return store
    plan.check_software()
    store.check_writable()
    settings = plan.fit_settings()

    done_objects = len(store) - sum(b - a for a, b in map(store.shard_range, pending))
    bar = tqdm(total=len(store), initial=done_objects, unit="obj", desc="fit",
               disable=(not progress) if progress is not None else None, dynamic_ncols=True)
    t0, fitted, psnrs = time.perf_counter(), 0, []

    def on_batch(n_inrs, psnr):
        nonlocal fitted
        fitted += n_inrs
        psnrs.append(psnr)
        bar.update(done_objects + fitted // views - bar.n)  # objects whose every view is fitted
        good = torch.cat(psnrs)
        good = good[torch.isfinite(good)]
        bar.set_postfix({"INR/s": f"{fitted / (time.perf_counter() - t0):.1f}",
                         "median PSNR": f"{good.median():.1f}" if len(good) else "nan"}, refresh=False)

    try:
        for k in pending:
            start, stop = store.shard_range(k)
            shard = fit_shard(arch, source, start, stop, views, seed, settings, on_batch)
            try:
                store.write_shard(shard)
            except OSError as e:
                raise InrforgeError(f"cannot write shard {k} to {store.path}: {e.strerror or e}") from None
    finally:
        bar.close()
    return store


def require_memory(settings: FitSettings, arch: INRSpec, n_points: int, shard_inrs: int | None = None) -> FitSettings:
    """``settings`` if the largest batch this fit builds fits in memory here, else an error (one
    INR too large for this machine has its own, which asks for fewer points).

    That batch is ``settings.batch_size`` INRs, or a whole shard's ``shard_inrs`` (objects x views)
    when that is fewer (:func:`fit_shard` never batches across shards).  The batch size is part of a
    store's identity (it decides which INRs share a step, and the rounding of the shared products),
    so it is never lowered silently: a store fitted with it could not be resumed bit-identically.
    """
    batch = settings.batch_size if shard_inrs is None else min(settings.batch_size, int(shard_inrs))
    where = "this CPU" if torch.device(settings.device).type == "cpu" else f"the GPU {settings.device}"
    one, budget = batch_bytes(arch, n_points), memory_budget(settings.device)
    if one > budget:  # not even a batch of 1 fits: the kernel would kill the fit, without a word
        raise InrforgeError(
            f"one INR of {n_points:,} points needs about {byte_size(one)} to fit, more than {where} has to spare "
            f"(about {byte_size(budget)}); fit fewer points per object (a smaller image size or sines n_points)")
    limit = memory_batch_limit(arch, n_points, settings.device)
    if batch > limit:
        need = batch * one / 2**30
        raise InrforgeError(
            f"a batch of {batch} INRs of {n_points} points needs about {need:.1f} GiB, more than "
            f"{where} has to spare (about {limit} INRs fit); pass --batch-size {limit} or less "
            f"(a new --out: a store keeps the batch size it was started with)")
    return settings


def check_out(out):
    """``out`` if it is a path (a str, not empty, or an ``os.PathLike``): ``None`` or a number would
    become a store in a folder named ``None`` or ``123``."""
    if isinstance(out, os.PathLike) or (isinstance(out, str) and out.strip()):
        return out
    raise InrforgeError(f"out must be a store path (a str or os.PathLike), got {shown(out)}")


def check_target_psnr(target_psnr: float | None, source: Source) -> None:
    """Refuse a target PSNR of 0 dB or less for a source whose targets lie in [0, 1] (an image's
    pixels): the MSE of such targets is about 1 (0 dB) or less from the first step, so every INR
    would stop at once.  A source with raw targets (sines with amplitudes above 1) can start far
    below 0 dB, so there it is only a warning that says which MSE the target stops at."""
    if target_psnr is None or target_psnr > 0:
        return
    if source.unit_targets:
        raise InrforgeError(
            f"--target-psnr {target_psnr:g} dB would stop every INR at its first step: source {source.name!r} has "
            f"targets in [0, 1], whose MSE is about 1 (0 dB) or less from the start; give a PSNR above 0, or "
            f"'none' for no early stop")
    warnings.warn(f"--target-psnr {target_psnr:g} dB stops an INR once its MSE is {psnr_to_mse(target_psnr):.3g} or "
                  f"less (PSNR = 10 log10(1 / MSE); source {source.name!r} has raw targets, not in [0, 1])")


def _identity(source, arch, views, fit_attrs, shard_objects) -> dict:
    """What a store made with these arguments records (compared with a store's :func:`store_identity`)."""
    return {"arch": arch.to_dict(), "source": source.describe(), "fit": fit_attrs,
            "views": int(views), "shard_objects": min(int(shard_objects), len(source))}


def _open_or_create(out, source, arch, views, seed, fit_attrs, shard_objects, chunk_objects,
                    val_fraction, test_fraction, overwrite) -> INRStore:
    store = matching_store(out, _identity(source, arch, views, fit_attrs, shard_objects), overwrite)
    if store is not None:
        return store
    # the old store (if any) is replaced only once the new one is complete; a foreign folder is refused
    return create_store(
        str(out), arch=arch, n_objects=len(source), views=views, labels=source.labels,
        splits=make_splits(source, seed, val_fraction, test_fraction), source=source.describe(),
        fit=fit_attrs, shard_objects=shard_objects, chunk_objects=chunk_objects, overwrite=True,
    )
