"""A PyTorch data pipeline over an inrforge store: batches of INR weights with augmentations.

The fast path reads a whole batch at once: :class:`WeightDataset` implements ``__getitems__``
(one sorted Zarr read per batch, or a slice of the in-RAM cache) and its :meth:`collate` turns
the batch into an :class:`inrforge.Weights`, applies the batched transform, then normalises.

View policy: a train dataset draws, each epoch, one random view per object among its first
``views`` views (``set_epoch`` picks the epoch; the draws are a function of (seed, epoch) and the
dataset's objects with their usable views, so batches do not depend on the number of workers).
Val/test datasets use view 0.  Views whose fit failed are never drawn; objects with no usable
view are skipped and counted in ``skipped``.

Canonical form: ``canonical`` (e.g. :class:`inrforge.augment.AlignTo`) is a *pure*, row-wise
function ``Weights -> Weights`` (an INR's form may not depend on the batch it is in or on a random
draw) applied to every INR before the transform.  Items are always canonical; a cached dataset
computes them once, on first use (:meth:`WeightDataset.loader` does it in the main process, before
any worker starts), instead of once per batch and epoch.  The normalisation statistics are those of
the stored INRs: with ``"symmetric"`` they are the same for any permutation of them, with
``"entry"`` they are not those of the canonical forms; :meth:`WeightDataset.canonical_stats` and
:meth:`WeightDataset.with_stats` give every split the train split's canonical statistics instead
(:func:`inrforge.train.prepare_training` does, for ``align=True`` with ``"entry"``).

Normalisation ``x -> (x - mean) / std`` uses statistics of the train split, computed once per
store object (a finished store opened writable keeps them under ``stats/<mode>``):

* ``"entry"``: per flat entry (the DWSNets recipe).  It does not commute with neuron
  permutations, so after a permutation augmentation entries are scaled by another neuron's
  statistics.
* ``"symmetric"`` (default): pooled over each entry's orbit under the hidden-neuron permutations
  (:meth:`INRSpec.permutation_orbits`): one statistic per layer for hidden axes, kept per input
  coordinate / output channel.  It commutes with every permutation, so normalising after
  augmentation is exact.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from .errors import InrforgeError
from .checks import check_count, seed_value
from .store import INRStore, open_store
from .weights import Weights

NORMALIZE_MODES = ("symmetric", "entry")


def usable_split_sizes(store: INRStore, done: np.ndarray | None = None) -> dict[str, int]:
    """What the datasets of each split hold: train objects with at least one usable view, val and
    test objects whose view 0 (the one they are scored on) is usable."""
    ok = store.usable(done)
    return {name: int((ok[:, 0] if name != "train" else ok.any(axis=1))[store.split(name)].sum())
            for name in ("train", "val", "test")}


def normalization_stats(store: INRStore, mode: str = "symmetric", block: int = 4096,
                        done: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (P,) float32, over the usable views of the train split (every stored view,
    whatever number of views a dataset draws from).

    Computed once per store object and set of finished shards (``done``: a snapshot to use, see
    :meth:`~inrforge.store.INRStore.usable`; the datasets of one training run share one).  A *finished* store opened
    writable keeps them under ``stats/<mode>``, which later readers reuse; an unfinished store's
    statistics are never written, since a resumed fit would change them.
    """
    if mode not in NORMALIZE_MODES:
        raise InrforgeError(f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZE_MODES)} or None")
    done = store.done() if done is None else np.asarray(done, dtype=bool) & store.done()  # never more than is finished
    key = (mode, np.packbits(done).tobytes())
    memo = store.memo.setdefault("normalization_stats", {})
    if key not in memo:
        memo[key] = store.saved_stats(mode) if done.all() else None
        if memo[key] is None:
            memo[key] = _compute_stats(store, mode, block, done)
            if done.all():
                store.save_stats(mode, *memo[key])
    mean, std = memo[key]
    return torch.from_numpy(mean), torch.from_numpy(std)


def _compute_stats(store: INRStore, mode: str, block: int, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train = store.split("train")
    ok = store.usable(done)
    train = train[ok[train].any(axis=1)]
    if len(train) == 0:
        raise InrforgeError(f"{store.path}: no fitted train INRs to compute normalisation statistics from")
    blocks = (store.read_flat(train[lo: lo + block], view=None)[ok[train[lo: lo + block]]]
              for lo in range(0, len(train), block))
    return _stats_of(blocks, store.arch, mode)


def _stats_of(blocks, arch, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 (P,) of the rows of ``blocks`` ((n, P) arrays), per entry or pooled over
    each entry's permutation orbit (``mode``); a std below 1e-8 (a constant entry) becomes 1."""
    p = arch.param_count
    s1, s2, count = np.zeros(p), np.zeros(p), 0
    for x in blocks:
        x = np.asarray(x, dtype=np.float64)
        s1 += x.sum(0)
        s2 += np.square(x).sum(0)
        count += len(x)
    if mode == "symmetric":
        orbits = arch.permutation_orbits().numpy()
        sizes = np.bincount(orbits)
        s1 = (np.bincount(orbits, s1) / sizes)[orbits]
        s2 = (np.bincount(orbits, s2) / sizes)[orbits]
    mean = s1 / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 0.0))
    std = np.where(std > 1e-8, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def normalized(weights: Weights, mean: torch.Tensor, std: torch.Tensor) -> Weights:
    """``(theta - mean) / std`` of every flat INR ``theta`` of ``weights`` (``mean``, ``std``: (P,), moved
    to the batch's device)."""
    flat = (weights.flatten() - mean.to(weights.device)) / std.to(weights.device)
    return Weights.from_flat(flat, weights.arch)


def _takes_generator(fn) -> bool:
    """Whether ``fn`` accepts a ``generator`` keyword (True when its signature cannot be read)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "generator" or p.kind is p.VAR_KEYWORD for p in params)


def _seed_of(*parts) -> int:
    """A 63-bit seed that is a pure function of the parts (ints and int arrays)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(np.asarray(part, dtype=np.int64).tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


class WeightDataset(Dataset):
    """INR weights of one split of a store, as a map-style dataset with a batched fast path.

    ``dataset[i]`` -> ``(flat (P,), label)``; ``dataset.__getitems__(indices)`` reads a whole
    batch; ``dataset.collate`` makes ``(Weights, labels)`` with the transform and normalisation
    applied; :meth:`loader` builds the DataLoader that uses all three.  ``canonical``: a pure
    function every item goes through first (see the module docstring).  ``done``: the store's
    finished objects as read once for several datasets (:meth:`~inrforge.store.INRStore.usable`), so that the splits
    of one run, and their statistics, see the same shards while a fit is still finishing others.
    """

    def __init__(self, store, split: str = "train", views: int | None = None, transform=None,
                 normalize: str | None = "symmetric", cache: bool = False, seed: int = 0,
                 view_policy: str | None = None, canonical=None, done: np.ndarray | None = None):
        self.store = store if isinstance(store, INRStore) else open_store(store)
        self.arch = self.store.arch
        self.split = split
        if views is not None and (isinstance(views, bool) or not isinstance(views, (int, np.integer))):
            raise InrforgeError(f"views must be an integer in [1, {self.store.views}] for this store, got {views!r}")
        n_views = self.store.views if views is None else int(views)
        if not 1 <= n_views <= self.store.views:
            raise InrforgeError(f"views must be in [1, {self.store.views}] for this store, got {views}")
        self.view_policy = view_policy or ("random" if split == "train" else "first")
        if self.view_policy not in ("random", "first"):
            raise InrforgeError(f"unknown view policy {self.view_policy!r}; choose random or first")
        for fn, what in ((canonical, "canonical"), (transform, "transform")):
            if fn is not None and not callable(fn):
                raise InrforgeError(f"{what} must be a function of Weights (e.g. AlignTo(reference)), got {fn!r}")
            if fn is not None and hasattr(fn, "check"):
                fn.check(self.arch)  # fail early on an incompatible arch
        if transform is not None and not _takes_generator(transform):
            raise InrforgeError("transform must take (weights, generator=...) and use that generator for its draws "
                                "(an inrforge augmentation or Compose does); got a function without a generator argument")
        self.transform = transform
        self.canonical = canonical
        self.seed = seed_value(seed)
        self.epoch = 0
        now = self.store.done()
        if done is not None:
            done = np.asarray(done, dtype=bool)
            if done.shape != now.shape:
                raise InrforgeError(f"done must be a store's done() read, one flag per object ({len(self.store)}), "
                                    f"got shape {done.shape}")
        done = now if done is None else done & now  # an earlier read: never more than is finished now
        objects = self.store.split(split)
        ok = self.store.usable(done)[objects][:, :n_views]
        if self.view_policy == "first":
            ok[:, 1:] = False
        keep = ok.any(axis=1)
        self.skipped = int((~keep).sum())
        self.objects = objects[keep]
        self.view_ok = ok[keep]  # (n, n_views)
        self.n_views = n_views
        labels = self.store.labels[self.objects]
        self.labels = torch.from_numpy(np.ascontiguousarray(labels))
        self.normalize = normalize
        if normalize is not None:
            self.mean, self.std = normalization_stats(self.store, normalize, done=done)
        self._cache = None
        if cache:  # (n, n_views, P), or (n, 1, P) for view 0 only: no other view is held
            if self.view_policy == "first":
                self._cache = self.store.read_flat(self.objects, view=0)[:, None]
            else:
                self._cache = np.ascontiguousarray(self.store.read_flat(self.objects, view=None)[:, :n_views])
        self._canonical_pending = canonical is not None and self._cache is not None
        self._drawn: dict[int, np.ndarray] = {}  # epoch -> views, the last few epochs asked for

    # ----- views --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch (an integer >= 0): train datasets redraw each object's view (call before iterating)."""
        self.epoch = check_count("epoch", epoch, 0)

    @property
    def _views(self) -> np.ndarray:
        """Each object's view in the dataset's own epoch."""
        return self._views_of(self.epoch)

    def _views_of(self, epoch: int) -> np.ndarray:
        """Each object's view in ``epoch``: a pure function of (seed, epoch), kept for the last few
        epochs asked for, so that a batch of an earlier epoch's iterator, read late, neither redraws
        nor changes the dataset's own epoch."""
        if epoch not in self._drawn:
            if len(self._drawn) >= 4:
                self._drawn.pop(next(iter(self._drawn)))
            self._drawn[epoch] = self._draw_views(epoch)
        return self._drawn[epoch]

    def _draw_views(self, epoch: int) -> np.ndarray:
        if self.view_policy == "first" or self.n_views == 1:
            return np.zeros(len(self.objects), dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch])
        u = rng.random(len(self.objects))
        n_ok = self.view_ok.sum(axis=1)
        rank = np.minimum((u * n_ok).astype(np.int64), n_ok - 1)  # the rank-th usable view
        cum = np.cumsum(self.view_ok, axis=1) - 1
        return np.argmax((cum == rank[:, None]) & self.view_ok, axis=1)

    # ----- items --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.objects)

    def _flat(self, idx: np.ndarray, epoch: int | None = None) -> np.ndarray:
        views = (self._views if epoch is None else self._views_of(epoch))[idx]
        if self._cache is not None:
            self._make_cache_canonical()
            return self._cache[idx, views]
        block = self.store.read_flat(self.objects[idx], view=None)  # sorted read inside
        return self._canonical_forms(block[np.arange(len(idx)), views])

    def subset(self, positions) -> "WeightDataset":
        """A shallow copy holding only the items at ``positions`` (dataset positions, not object
        ids), in that order, with the same store, transform, statistics and seed; its views are
        drawn for its own objects."""
        idx = np.asarray(positions, dtype=np.int64)
        if idx.ndim != 1 or (len(idx) and not (0 <= idx.min() and idx.max() < len(self))):
            raise InrforgeError(f"subset takes positions in [0, {len(self)}), got {positions!r:.60}")
        out = copy.copy(self)
        out.objects, out.view_ok = self.objects[idx], self.view_ok[idx]
        out.labels = self.labels[torch.from_numpy(idx)]
        out._cache = None if self._cache is None else self._cache[idx]
        out._drawn = {}  # its own objects' draws
        return out

    def with_labels(self, labels) -> "WeightDataset":
        """A shallow copy that serves ``labels`` (a tensor or array, one row per item, in dataset
        order; e.g. regression targets standardised with the train split's mean and std) instead of
        the store's.  Everything else is the same: objects, weights (a cache is shared, made
        canonical first so that neither copy redoes it), transform, statistics, seed and views."""
        labels = torch.as_tensor(labels)
        if labels.ndim == 0 or len(labels) != len(self):
            raise InrforgeError(f"with_labels takes one label per item ({len(self)}), got shape {tuple(labels.shape)}")
        if self._cache is not None:
            self._make_cache_canonical()
        out = copy.copy(self)
        out.labels = labels
        out._drawn = {}  # its own cache of the (same) draws
        return out

    def canonical_stats(self, mode: str = "entry", block: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (P,) float32, over the canonical forms of this dataset's usable views
        (every view it may draw), per entry or pooled (``mode``, as :func:`normalization_stats`).

        The store's statistics are those of the stored INRs; per entry, they are not those of the
        canonical forms (an aligned INR's k-th neuron is no longer a random one).  Give these to
        every split with :meth:`with_stats` to standardise the aligned entries themselves.  (Pooled
        statistics are the same either way, up to rounding: a permutation keeps each orbit's values.)
        """
        if mode not in NORMALIZE_MODES:
            raise InrforgeError(f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZE_MODES)}")
        if len(self) == 0:
            raise InrforgeError(f"{self.store.path}: no usable {self.split} INRs to compute normalisation statistics from")
        if self._cache is not None:  # (n, n_views or 1 for view 0 only, P): no usable view is left out
            self._make_cache_canonical()
            blocks = [self._cache[self.view_ok[:, :self._cache.shape[1]]]]
        else:
            blocks = (self._canonical_forms(self.store.read_flat(self.objects[lo: lo + block], view=None)
                                            [:, :self.n_views][self.view_ok[lo: lo + block]])
                      for lo in range(0, len(self), block))
        mean, std = _stats_of(blocks, self.arch, mode)
        return torch.from_numpy(mean), torch.from_numpy(std)

    def with_stats(self, mean, std) -> "WeightDataset":
        """A shallow copy that normalises with ``(mean, std)`` ((P,) each, e.g. the train split's
        :meth:`canonical_stats`) instead of the store's statistics; the rest is shared as in
        :meth:`with_labels`."""
        p = self.arch.param_count
        mean, std = (torch.as_tensor(t, dtype=torch.float32) for t in (mean, std))
        if mean.shape != (p,) or std.shape != (p,):
            raise InrforgeError(f"with_stats takes a mean and a std of {p} entries each, got shapes "
                                f"{tuple(mean.shape)} and {tuple(std.shape)}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise InrforgeError("with_stats takes a finite mean and a finite, positive std")
        if self._cache is not None:
            self._make_cache_canonical()
        out = copy.copy(self)
        out.normalize = self.normalize or "given"
        out.mean, out.std = mean, std
        return out

    def _canonical_forms(self, flat: np.ndarray) -> np.ndarray:
        """``canonical`` applied to (n, P) flat INRs (the identity without one)."""
        if self.canonical is None or len(flat) == 0:
            return flat
        w = Weights.from_flat(torch.from_numpy(np.ascontiguousarray(flat)), self.arch)
        return self.canonical(w).flatten().numpy()

    def _make_cache_canonical(self, block: int = 4096) -> None:
        """Replace the cached usable views by their canonical forms, once, ``block`` at a time in
        place (failed or unfitted views are never drawn, and may be NaN)."""
        if not self._canonical_pending:
            return
        rows, cols = np.nonzero(self.view_ok[:, :self._cache.shape[1]])
        for lo in range(0, len(rows), block):
            r, c = rows[lo: lo + block], cols[lo: lo + block]
            self._cache[r, c] = self._canonical_forms(self._cache[r, c])
        self._canonical_pending = False

    def __getitem__(self, i: int):
        flat = self._flat(np.asarray([i]))[0]
        return torch.from_numpy(np.ascontiguousarray(flat)), self.labels[i]

    def __getitems__(self, indices) -> "ItemBatch":
        """The items ``indices`` read at once, as an :class:`ItemBatch` (a list of samples to torch)."""
        epoch = getattr(indices, "epoch", self.epoch)  # the batch's own (a late one, or a worker's copy)
        idx = np.asarray(indices, dtype=np.int64)
        flat = torch.from_numpy(np.ascontiguousarray(self._flat(idx, epoch)))
        return ItemBatch(flat, self.labels[torch.from_numpy(idx)], idx, epoch)

    # ----- batches ------------------------------------------------------------------------
    def collate(self, batch) -> tuple[Weights, torch.Tensor]:
        """``(Weights, labels)`` of a batch: transform (seeded by the batch), then normalise."""
        if not isinstance(batch, ItemBatch):  # the per-item path: a list of (flat, label)
            flats, labels = zip(*batch)
            batch = ItemBatch(torch.stack(flats), torch.stack(labels), None, self.epoch)
        weights = Weights.from_flat(batch.flat, self.arch)
        labels = batch.labels
        if self.transform is not None:
            # seeded by the batch's objects; the per-item path does not know them, so its content stands in
            idx = batch.indices
            if idx is None:
                idx = np.frombuffer(hashlib.blake2b(batch.flat.numpy().tobytes(), digest_size=8).digest(), np.int64)
            gen = torch.Generator().manual_seed(_seed_of(self.seed, batch.epoch, idx))
            if getattr(self.transform, "mixes_labels", False):
                weights, labels = self.transform(weights, labels, generator=gen)
            else:
                weights = self.transform(weights, generator=gen)
        if self.normalize is not None:
            weights = normalized(weights, self.mean, self.std)
        return weights, labels

    def loader(self, batch_size: int = 256, shuffle: bool | str | None = None, drop_last: bool = False,
               num_workers: int = 0, **kwargs) -> DataLoader:
        """The fast-path DataLoader: whole-batch reads, batched transforms, seeded shuffling.

        ``shuffle``: ``"full"`` (a uniform permutation), ``"block"`` (chunks of the store in random
        order, objects shuffled within each: a batch touches few chunks, for reads from disk),
        ``False``; ``True``/``None`` pick ``"full"`` when cached and ``"block"`` otherwise (train
        split only for ``None``).
        """
        if shuffle is None:
            shuffle = self.split == "train"
        if shuffle is True:
            shuffle = "full" if self._cache is not None else "block"
        if shuffle not in (False, "full", "block"):
            raise InrforgeError(f"unknown shuffle {shuffle!r}; choose full, block or False")
        batch_size = check_count("batch size", batch_size, 1)
        num_workers = check_count("num_workers", num_workers, 0)
        self._make_cache_canonical()  # here, so that workers inherit it instead of each redoing it
        sampler = EpochSampler(self, shuffle)
        return DataLoader(self, batch_sampler=EpochBatchSampler(sampler, batch_size, drop_last),
                          collate_fn=self.collate, num_workers=num_workers, **kwargs)

    def __repr__(self) -> str:
        return (f"WeightDataset({self.store.path!r}, split={self.split!r}, {len(self)} objects, views={self.n_views}, "
                f"policy={self.view_policy}, normalize={self.normalize!r}, skipped={self.skipped})")


class ItemBatch(Sequence):
    """What :meth:`WeightDataset.__getitems__` returns: the whole batch as tensors (``flat`` (B, P),
    ``labels``, the dataset positions ``indices`` or None, the ``epoch``) for :meth:`WeightDataset.collate`,
    and, to torch, the list of ``(flat, label)`` samples its ``__getitems__`` contract asks for (so a
    plain ``DataLoader`` with the default collate, or a ``Subset``, works; the samples are made only
    when asked for)."""

    __slots__ = ("flat", "labels", "indices", "epoch")

    def __init__(self, flat: torch.Tensor, labels: torch.Tensor, indices, epoch: int):
        self.flat, self.labels, self.indices, self.epoch = flat, labels, indices, epoch

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return self.flat[i], self.labels[i]


class EpochSampler(Sampler):
    """Indices in a seeded order that changes with ``dataset.epoch``: ``"full"`` permutation,
    ``"block"`` permutation of the store's chunks with each chunk's objects shuffled, or in order."""

    def __init__(self, dataset: WeightDataset, shuffle):
        self.dataset = dataset
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        if not self.shuffle or n == 0:
            return iter(range(n))
        rng = np.random.default_rng([self.dataset.seed, self.dataset.epoch, 1])
        if self.shuffle == "full":
            return iter(rng.permutation(n).tolist())
        chunk = np.asarray(self.dataset.objects) // int(self.dataset.store.attrs["chunk_objects"])
        order = rng.permutation(chunk.max() + 1)[chunk]  # a random rank per chunk
        return iter(np.lexsort((rng.random(n), order)).tolist())


class EpochBatch(list):
    """A batch of dataset indices that carries the epoch it was drawn in.

    DataLoader workers hold copies of the dataset; with ``persistent_workers`` those copies never
    see :meth:`WeightDataset.set_epoch`.  The epoch travelling with each batch keeps their views and
    augmentation seeds those of the main process.
    """

    epoch: int = 0


class EpochBatchSampler(BatchSampler):
    """:class:`BatchSampler` whose batches are :class:`EpochBatch` es of ``sampler.dataset.epoch``."""

    def __iter__(self):
        epoch = self.sampler.dataset.epoch
        for batch in super().__iter__():
            out = EpochBatch(batch)
            out.epoch = epoch
            yield out
