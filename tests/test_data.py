import multiprocessing

import numpy as np
import pytest
import torch

from inrforge.align import apply_permutation, random_permutations
from inrforge.arch import make_arch
from inrforge.augment import Compose, MixUp, Permute, SirenNegate
from inrforge.data import WeightDataset, normalization_stats
from inrforge.errors import InrforgeError
from inrforge.store import ShardData, create_store
from inrforge.weights import Weights

ARCH = make_arch(hidden=8)


def synthetic_store(path, n=40, views=3, arch=ARCH, failed=(), undone_shards=(), shard=8):
    """A store of random 'fitted' INRs (fast: no fitting). ``failed`` lists (object, view)."""
    rng = np.random.default_rng(0)
    s = create_store(path, arch=arch, n_objects=n, views=views, labels=np.arange(n) % 4,
                     splits={"train": np.arange(0, n - 10), "val": np.arange(n - 10, n - 5), "test": np.arange(n - 5, n)},
                     source={"name": "synthetic", "params": {}}, fit={}, shard_objects=shard, chunk_objects=4)
    for k in range(s.n_shards):
        if k in undone_shards:
            continue
        a, b = s.shard_range(k)
        params = (rng.standard_normal((b - a, views, arch.param_count)) * (1 + np.arange(arch.param_count) % 5)).astype(np.float32)
        fail = np.zeros((b - a, views), bool)
        for i, v in failed:
            if a <= i < b:
                fail[i - a, v] = True
        psnr = np.where(fail, np.nan, 30.0).astype(np.float32)
        s.write_shard(ShardData(a, params, psnr, psnr, np.ones((b - a, views), np.int32), fail))
    return s


def test_views_policy_and_skipping(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", failed=[(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)], undone_shards=[1])
    train = WeightDataset(s, "train", normalize=None)
    # object 0 failed everywhere, shard 1 (objects 8..15) not fitted: skipped and counted
    assert train.skipped == 1 + 8 and len(train) == 30 - 9
    assert 0 not in train.objects and not set(range(8, 16)) & set(train.objects)
    pos1 = int(np.flatnonzero(train.objects == 1)[0])
    seen = set()
    for epoch in range(12):
        train.set_epoch(epoch)
        seen |= {int(train._views[pos1])}
    assert seen == {1}  # the only view of object 1 that did not fail
    all_views = set()
    for epoch in range(12):
        train.set_epoch(epoch)
        all_views |= set(train._views.tolist())
    assert all_views == {0, 1, 2}
    train.set_epoch(3)
    again = WeightDataset(s, "train", normalize=None)
    again.set_epoch(3)
    assert np.array_equal(train._views, again._views)
    val = WeightDataset(s, "val", normalize=None)
    assert (val._views == 0).all()
    limited = WeightDataset(s, "train", views=1, normalize=None)
    assert (limited._views == 0).all() and 1 not in limited.objects  # object 1's view 0 failed


def test_batched_path_equals_per_item_path(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", normalize=None)
    ds.set_epoch(2)
    idx = [5, 1, 17, 1]
    batch = ds.__getitems__(idx)
    items = [ds[i] for i in idx]
    assert torch.equal(batch.flat, torch.stack([f for f, _ in items]))
    assert torch.equal(batch.labels, torch.stack([y for _, y in items]))
    full = s.read_flat(ds.objects[idx], view=None)
    np.testing.assert_array_equal(batch.flat.numpy(), full[np.arange(4), ds._views[idx]])
    cached = WeightDataset(s, "train", normalize=None, cache=True)
    cached.set_epoch(2)
    assert torch.equal(cached.__getitems__(idx).flat, batch.flat)


def test_loader_covers_the_split_once_per_epoch(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", normalize=None)
    labels = torch.cat([y for _, y in ds.loader(batch_size=7)])
    assert sorted(labels.tolist()) == sorted(ds.labels.tolist())
    first = [w.flatten() for w, _ in ds.loader(batch_size=7)]
    ds.set_epoch(1)
    second = [w.flatten() for w, _ in ds.loader(batch_size=7)]
    assert not torch.equal(first[0], second[0])
    ds.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, (w.flatten() for w, _ in ds.loader(batch_size=7))))


def test_symmetric_normalisation_commutes_with_permutations(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    mean, std = normalization_stats(s, "symmetric")
    w = Weights.from_flat(torch.from_numpy(s.read_flat(np.arange(6), view=0)), ARCH)
    perms = random_permutations(ARCH, 6, torch.Generator().manual_seed(0))
    norm = lambda x: Weights.from_flat((x.flatten() - mean) / std, ARCH)  # noqa: E731
    torch.testing.assert_close(norm(apply_permutation(w, perms)).flatten(), apply_permutation(norm(w), perms).flatten())
    # cached in the store and reused
    assert "symmetric" in s.root["stats"]
    m2, s2 = normalization_stats(s, "symmetric")
    assert torch.equal(m2, mean) and torch.equal(s2, std)


def test_entry_normalisation_is_the_per_entry_train_statistic(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", failed=[(2, 1)])
    mean, std = normalization_stats(s, "entry")
    flat = s.read_flat(s.split("train"), view=None).astype(np.float64)
    mask = np.ones(flat.shape[:2], bool)
    mask[2, 1] = False
    x = flat[mask]
    np.testing.assert_allclose(mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), x.std(0), rtol=1e-4, atol=1e-6)
    ds = WeightDataset(s, "val", normalize="entry")
    w, _ = next(iter(ds.loader(batch_size=5)))
    raw = torch.from_numpy(s.read_flat(ds.objects[:5], view=0))
    torch.testing.assert_close(w.flatten(), (raw - mean) / std)


def _batches(ds, workers, ctx=None):
    kw = {"multiprocessing_context": ctx} if workers else {}
    return [(w.flatten(), y) for w, y in ds.loader(batch_size=8, num_workers=workers, **kw)]


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_workers_yield_identical_batches(tmp_path, ctx):
    s = synthetic_store(tmp_path / "s.zarr")
    aug = Compose([Permute(), SirenNegate(), MixUp("vanilla", num_classes=4)])
    ds = WeightDataset(s.path, "train", transform=aug, seed=5, cache=(ctx == "spawn"))
    ds.set_epoch(1)
    ref = _batches(ds, 0)
    got = _batches(ds, 2, multiprocessing.get_context(ctx))
    assert len(ref) == len(got)
    for (wa, ya), (wb, yb) in zip(ref, got):
        assert torch.equal(wa, wb) and torch.equal(ya, yb)
    assert ref[0][1].shape == (8, 4)  # soft labels after MixUp
    torch.testing.assert_close(ref[0][1].sum(1), torch.ones(8))


def test_transform_for_another_arch_is_refused(tmp_path):
    relu = make_arch("relu", hidden=8)
    s = synthetic_store(tmp_path / "r.zarr", arch=relu)
    with pytest.raises(InrforgeError, match="(?i)siren"):
        WeightDataset(s, "train", transform=SirenNegate())
    with pytest.raises(InrforgeError, match="views"):
        WeightDataset(s, "train", views=4)


def test_block_shuffle_keeps_batches_on_few_chunks(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", n=80, shard=16)  # chunks of 4 objects
    ds = WeightDataset(s, "train", normalize=None)
    order = list(iter(ds.loader(batch_size=8, shuffle="block").batch_sampler.sampler))
    assert sorted(order) == list(range(len(ds)))
    chunks = ds.objects[order] // 4
    runs = np.count_nonzero(np.diff(chunks)) + 1
    assert runs == len(np.unique(chunks))  # each chunk's objects come together
    ds.set_epoch(1)
    assert list(iter(ds.loader(batch_size=8, shuffle="block").batch_sampler.sampler)) != order
    with pytest.raises(InrforgeError, match="unknown shuffle"):
        ds.loader(shuffle="random")


def test_persistent_workers_follow_set_epoch(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s.path, "train", transform=SirenNegate(), seed=3, normalize=None)
    loader = ds.loader(batch_size=8, num_workers=1, persistent_workers=True,
                       multiprocessing_context=multiprocessing.get_context("fork"))
    previous = None
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        got = [w.flatten() for w, _ in loader]  # the same worker process every epoch
        ref = [w.flatten() for w, _ in ds.loader(batch_size=8)]
        assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(got, ref))
        if previous is not None:
            assert not torch.equal(torch.cat(got), previous)
        previous = torch.cat(got)


def test_an_empty_split_gives_no_batches_whatever_the_shuffle(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", undone_shards=[4])  # the test split (35..39) is not fitted
    ds = WeightDataset(s, "test", normalize=None)
    assert len(ds) == 0 and ds.skipped == 5
    for shuffle in (False, True, "full", "block"):
        assert list(ds.loader(batch_size=4, shuffle=shuffle)) == []


def test_statistics_of_an_unfinished_store_are_not_kept(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", undone_shards=[1])
    partial, _ = normalization_stats(s, "entry")
    assert "stats" not in s.root  # a resumed fit would change them
    # the fit resumes and finishes shard 1: the same store object and a new one both see it
    full = synthetic_store(tmp_path / "full.zarr")
    a, b = s.shard_range(1)
    m = full.metric("psnr")[a:b]
    s.write_shard(ShardData(a, full.read_flat(np.arange(a, b), view=None), m, m, np.ones(m.shape, np.int32),
                            np.zeros(m.shape, bool)))
    after, _ = normalization_stats(s, "entry")
    assert not torch.equal(after, partial)
    every = s.read_flat(s.split("train"), view=None).astype(np.float64).reshape(-1, ARCH.param_count)
    np.testing.assert_allclose(after.numpy(), every.mean(0), rtol=1e-5, atol=1e-6)
    assert s.root["stats"]["entry"].attrs["complete"]
    from inrforge.store import open_store
    reopened = open_store(s.path)  # read-only: reuses what the finished store kept
    assert torch.equal(normalization_stats(reopened, "entry")[0], after)


def test_the_per_item_path_draws_each_batch_afresh(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", views=1, normalize=None, transform=SirenNegate())
    signs = []
    for lo in (0, 4):
        items = [ds[i] for i in range(lo, lo + 4)]
        w, _ = ds.collate(items)
        raw = torch.stack([f for f, _ in items])
        signs.append(torch.sign(w.flatten()) * torch.sign(raw))
        again, _ = ds.collate(items)
        assert torch.equal(again.flatten(), w.flatten())  # seeded: the same batch draws the same
    assert not torch.equal(signs[0], signs[1])


def test_a_plain_dataloader_collates_the_batched_path(tmp_path):
    """torch's own DataLoader (default collate, Subset) works: __getitems__ returns a list of samples."""
    from torch.utils.data import DataLoader, Subset

    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", normalize=None)
    ds.set_epoch(1)
    flat, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(flat, torch.stack([ds[i][0] for i in range(4)])) and labels.tolist() == [0, 1, 2, 3]
    sub = Subset(ds, [5, 2])
    flat, labels = next(iter(DataLoader(sub, batch_size=2)))
    assert torch.equal(flat, torch.stack([ds[5][0], ds[2][0]])) and labels.tolist() == [1, 2]
    w, y = next(iter(DataLoader(sub, batch_size=2, collate_fn=ds.collate)))  # the fast path through a Subset
    assert torch.equal(w.flatten(), flat) and torch.equal(y, labels)


def test_bad_dataset_and_loader_arguments_are_refused(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    for bad in (-1, 1.5, "0"):
        with pytest.raises(InrforgeError, match="seed must be an integer >= 0"):
            WeightDataset(s, "train", seed=bad)
    ds = WeightDataset(s, "train", normalize=None)
    with pytest.raises(InrforgeError, match="epoch must be an integer >= 0"):
        ds.set_epoch(-1)
    for bad in (2.5, "a", True):
        with pytest.raises(InrforgeError, match="views must be an integer"):
            WeightDataset(s, "train", views=bad)
    for bad in (0, -3, 2.0):
        with pytest.raises(InrforgeError, match="batch size must be a positive integer"):
            ds.loader(batch_size=bad)
    with pytest.raises(InrforgeError, match="num_workers must be an integer >= 0, got -1"):
        ds.loader(batch_size=4, num_workers=-1)


def _held_bytes(a):
    while a.base is not None:
        a = a.base
    return a.nbytes


def test_the_cache_holds_only_the_views_it_serves(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr", views=3)
    p = ARCH.param_count * 4
    two = WeightDataset(s, "train", views=2, normalize=None, cache=True)
    assert _held_bytes(two._cache) == len(two) * 2 * p
    val = WeightDataset(s, "val", normalize=None, cache=True)  # view 0 only
    assert _held_bytes(val._cache) == len(val) * p
    for ds, kw in ((two, {"views": 2}), (val, {})):
        plain = WeightDataset(s, ds.split, normalize=None, **kw)
        ds.set_epoch(4), plain.set_epoch(4)
        idx = list(range(len(ds)))
        assert torch.equal(ds.__getitems__(idx).flat, plain.__getitems__(idx).flat)


def test_float_vector_labels_on_every_path(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.standard_normal((40, 2)).astype(np.float32)
    s = create_store(tmp_path / "f.zarr", arch=ARCH, n_objects=40, views=1, labels=y,
                     splits={"train": np.arange(30), "val": np.arange(30, 35), "test": np.arange(35, 40)},
                     source={"name": "synthetic", "params": {}}, fit={}, shard_objects=40, chunk_objects=4)
    ok = np.full((40, 1), 30.0, np.float32)
    s.write_shard(ShardData(0, rng.standard_normal((40, 1, ARCH.param_count)).astype(np.float32), ok, ok,
                            np.ones((40, 1), np.int32), np.zeros((40, 1), bool)))
    for cache in (False, True):
        ds = WeightDataset(s, "train", normalize=None, cache=cache)
        got = torch.cat([lab for _, lab in ds.loader(batch_size=7, shuffle=True)])
        assert got.dtype == torch.float32 and got.shape == (30, 2)
        assert sorted(got[:, 0].tolist()) == sorted(y[:30, 0].tolist())
        _, lab = ds.collate([ds[3], ds[0]])
        assert torch.equal(lab, torch.from_numpy(y[[3, 0]]))


def test_drop_last_and_the_last_partial_batch(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")  # 30 train INRs
    ds = WeightDataset(s, "train", normalize=None)
    for shuffle in ("full", "block", False):
        sizes = [len(y) for _, y in ds.loader(batch_size=8, shuffle=shuffle)]
        assert sizes == [8, 8, 8, 6]
        kept = torch.cat([y for _, y in ds.loader(batch_size=8, shuffle=shuffle, drop_last=True)])
        assert len(kept) == 24


def test_usable_split_sizes_count_what_the_datasets_hold(tmp_path):
    """Objects of an unfinished shard, and objects whose every view failed, are not counted."""
    from inrforge.data import usable_split_sizes

    arch = make_arch(hidden=4, depth=1)
    s = create_store(tmp_path / "u.zarr", arch=arch, n_objects=8, views=2, labels=np.arange(8) % 2,
                     splits={"train": [0, 1, 2, 5, 6], "val": [3], "test": [4, 7]}, source={"name": "t", "params": {}},
                     fit={}, shard_objects=4, chunk_objects=4)
    failed = np.zeros((4, 2), bool)
    failed[1] = True  # object 1: both views failed
    failed[2, 0] = True  # object 2: one view left
    ok = np.full((4, 2), 30.0, np.float32)
    s.write_shard(ShardData(0, np.zeros((4, 2, arch.param_count), np.float32), ok, ok, np.ones((4, 2), np.int32), failed))
    sizes = usable_split_sizes(s)  # objects 4..7: shard 1, never written
    assert sizes == {"train": 2, "val": 1, "test": 0}
    assert sizes["train"] == len(WeightDataset(s, "train", views=2, normalize=None))


def test_a_store_missing_a_finished_shards_params_is_an_error_not_nan_batches(tmp_path):
    """A partial copy (a done shard's params file gone) reads as NaN: the dataset, its statistics and
    its batches refuse it in one line instead of training on NaN."""
    import os

    s = synthetic_store(tmp_path / "s.zarr", failed=[(0, 1)])
    os.remove(tmp_path / "s.zarr" / "params" / "c" / "1" / "0" / "0")  # objects 8-15
    with pytest.raises(InrforgeError, match=r"objects 8-15 are marked done but their parameters are not finite"):
        WeightDataset(s.path, "train")  # the normalisation statistics
    with pytest.raises(InrforgeError, match="marked done but"):
        WeightDataset(s.path, "train", normalize=None, cache=True)
    ds = WeightDataset(s.path, "train", normalize=None)
    assert torch.isfinite(ds.__getitems__([0, 1, 20]).flat).all()  # object 0's failed view is never drawn
    with pytest.raises(InrforgeError, match=r"object 9 is marked done but its parameters are not finite"):
        ds.__getitems__([0, 9])


class CountingAlign:
    """AlignTo that counts the INRs it canonicalises."""

    def __init__(self, reference):
        from inrforge.augment import AlignTo

        self.align, self.calls = AlignTo(reference), 0

    def check(self, arch):
        self.align.check(arch)

    def __call__(self, weights, generator=None):
        self.calls += len(weights)
        return self.align(weights, generator)


def test_canonical_forms_are_computed_once_when_cached_and_served_on_every_path(tmp_path):
    """Items are canonical (aligned) on the cached, uncached and per-item paths alike; a cached
    dataset aligns each usable view once, on first use, not when built (so cheap checks come
    first), and never a failed view; the transform sees the canonical forms."""
    from inrforge.augment import AlignTo

    s = synthetic_store(tmp_path / "s.zarr", failed=[(3, 1), (4, 0)])
    ref = Weights.from_flat(torch.from_numpy(s.read_flat([0], view=0)), ARCH)
    cached_align = CountingAlign(ref)
    cached = WeightDataset(s, "train", normalize=None, cache=True, canonical=cached_align)
    assert cached_align.calls == 0
    cached.loader(batch_size=8)
    assert cached_align.calls == int(cached.view_ok.sum()) == len(cached) * 3 - 2  # each usable view once
    plain = WeightDataset(s, "train", normalize=None, canonical=AlignTo(ref))
    idx = list(range(len(cached)))
    for epoch in range(3):
        cached.set_epoch(epoch), plain.set_epoch(epoch)
        got = cached.__getitems__(idx).flat
        assert torch.equal(got, plain.__getitems__(idx).flat)
        assert torch.equal(got[7], plain[7][0])
        raw = s.read_flat(cached.objects, view=None)[np.arange(len(idx)), cached._views]
        want = AlignTo(ref)(Weights.from_flat(torch.from_numpy(raw), ARCH)).flatten()
        assert torch.equal(got, want) and not torch.equal(got, torch.from_numpy(raw))
    assert cached_align.calls == int(cached.view_ok.sum())  # no alignment while serving
    perm = Permute()
    with_transform = WeightDataset(s, "train", normalize=None, cache=True, canonical=AlignTo(ref), transform=perm)
    composed = WeightDataset(s, "train", normalize=None, transform=Compose([AlignTo(ref), perm]))
    w, _ = with_transform.collate(with_transform.__getitems__(idx))
    assert torch.equal(w.flatten(), composed.collate(composed.__getitems__(idx))[0].flatten())
    assert not torch.equal(w.flatten(), got)  # the transform ran, on the canonical forms
    relu = Weights.from_flat(torch.zeros(1, make_arch("relu", hidden=8).param_count), make_arch("relu", hidden=8))
    with pytest.raises(InrforgeError, match="another architecture"):
        WeightDataset(s, "train", canonical=AlignTo(relu))
    with pytest.raises(InrforgeError, match="canonical must be a function of Weights"):
        WeightDataset(s, "train", canonical=ref)


def test_one_done_snapshot_gives_every_split_the_same_statistics(tmp_path):
    """A fit finishing shards while a run builds its datasets: datasets given one ``done`` read
    hold the objects and statistics of that read (before, each split read ``done`` again, and train
    and val could be normalised differently)."""
    s = synthetic_store(tmp_path / "s.zarr", undone_shards=[1])
    before = s.done()
    rng = np.random.default_rng(1)
    s.write_shard(ShardData(8, rng.standard_normal((8, 3, ARCH.param_count)).astype(np.float32) * 7,
                            np.full((8, 3), 30, np.float32), np.full((8, 3), 30, np.float32),
                            np.ones((8, 3), np.int32), np.zeros((8, 3), bool)))
    train, val = (WeightDataset(s, split, done=before) for split in ("train", "val"))
    assert torch.equal(train.mean, val.mean) and torch.equal(train.std, val.std)
    assert torch.equal(train.mean, normalization_stats(s, done=before)[0])
    assert not torch.equal(train.mean, normalization_stats(s)[0])  # the shard written since counts now
    assert not set(range(8, 16)) & set(train.objects) and len(WeightDataset(s, "train")) == 30
    with pytest.raises(InrforgeError, match=r"done must be a store's done\(\) read, one flag per object \(40\)"):
        WeightDataset(s, "train", done=before[:5])
    s2 = synthetic_store(tmp_path / "t.zarr", undone_shards=[1])
    claims = WeightDataset(s2, "train", done=np.ones(40, bool))  # more than is finished: cut to what is
    assert not set(range(8, 16)) & set(claims.objects) and torch.isfinite(claims.mean).all()
    assert "stats" not in s2.root  # an unfinished store's statistics are never written


def test_split_sizes_count_what_the_datasets_hold(tmp_path):
    """Val and test are scored on view 0: an object whose view 0 failed is not in them, though its
    other views are usable (train draws among those)."""
    from inrforge.data import usable_split_sizes

    s = synthetic_store(tmp_path / "s.zarr", failed=[(0, 0), (30, 0), (31, 0), (35, 0)])
    sizes = usable_split_sizes(s)
    assert sizes == {name: len(WeightDataset(s, name, normalize=None)) for name in ("train", "val", "test")}
    assert sizes == {"train": 30, "val": 3, "test": 4}


def test_a_transform_must_take_the_generator(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    with pytest.raises(InrforgeError, match=r"^transform must take \(weights, generator=...\)"):
        WeightDataset(s, "train", transform=lambda w: w)  # it used to fail at the first batch
    ds = WeightDataset(s, "train", transform=lambda w, generator=None: w, normalize=None)
    assert len(next(iter(ds.loader(4)))[0]) == 4


def test_a_late_batch_of_an_earlier_epoch_changes_nothing(tmp_path):
    """A batch of epoch 0's iterator read after set_epoch(1) still gets epoch 0's views, and the
    dataset stays at epoch 1 (it used to go back to 0, so the next iterator repeated epoch 0)."""
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", normalize=None, seed=4)
    ref = WeightDataset(s, "train", normalize=None, seed=4)
    old = iter(ds.loader(6, shuffle=True))
    first = next(old)
    ds.set_epoch(1)
    late = next(old)
    assert ds.epoch == 1
    ref_old = iter(ref.loader(6, shuffle=True))
    for got, want in ((first, next(ref_old)), (late, next(ref_old))):
        assert torch.equal(got[0].flatten(), want[0].flatten()) and torch.equal(got[1], want[1])
    ref.set_epoch(1)
    for got, want in zip(ds.loader(6, shuffle=True), ref.loader(6, shuffle=True)):
        assert torch.equal(got[0].flatten(), want[0].flatten()) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("cache", [False, True])
def test_subset_holds_the_items_at_its_positions(tmp_path, cache):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", normalize=None, cache=cache, view_policy="first")
    part = ds.subset([5, 0, 7])
    assert len(part) == 3 and list(part.objects) == [ds.objects[5], ds.objects[0], ds.objects[7]]
    for k, i in enumerate([5, 0, 7]):
        assert torch.equal(part[k][0], ds[i][0]) and torch.equal(part[k][1], ds[i][1])
    assert len(ds) == 30  # the original is untouched
    with pytest.raises(InrforgeError, match=r"subset takes positions in \[0, 30\)"):
        ds.subset([30])


@pytest.mark.parametrize("cache", [False, True])
def test_with_labels_serves_other_labels_for_the_same_items(tmp_path, cache):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "train", cache=cache, seed=3, transform=Permute())
    y = (ds.labels.float() - 1.5) / 2  # e.g. standardised targets
    other = ds.with_labels(y)
    assert other is not ds and other.labels is y and torch.equal(ds.labels, torch.from_numpy(s.labels[ds.objects]))
    assert len(other) == len(ds) and np.array_equal(other.objects, ds.objects)
    for epoch in (0, 2):  # the same views, transform draws and normalisation, batch by batch
        ds.set_epoch(epoch)
        other.set_epoch(epoch)
        for (w1, l1), (w2, l2) in zip(ds.loader(7, shuffle=True), other.loader(7, shuffle=True)):
            assert torch.equal(w1.flatten(), w2.flatten()) and torch.equal(l2, (l1.float() - 1.5) / 2)
    assert torch.equal(other.subset([4, 1]).labels, y[[4, 1]])
    with pytest.raises(InrforgeError, match=r"with_labels takes one label per item \(30\), got shape \(29,\)"):
        ds.with_labels(y[1:])


@pytest.mark.parametrize("cache", [False, True])
def test_canonical_stats_are_those_of_the_canonical_forms(tmp_path, cache):
    """Without a canonical form they are the store's train statistics (same views, same sums);
    with AlignTo they are the per-entry statistics of the aligned usable views, which differ from
    the stored INRs' per entry but not when pooled over orbits (a permutation keeps each orbit's values)."""
    from inrforge.augment import AlignTo

    s = synthetic_store(tmp_path / "s.zarr", failed=[(2, 1), (5, 0)])
    for mode in ("entry", "symmetric"):
        plain = WeightDataset(s, "train", normalize=None, cache=cache)
        assert all(torch.equal(a, b) for a, b in zip(plain.canonical_stats(mode), normalization_stats(s, mode)))
    ref = Weights.from_flat(torch.from_numpy(s.read_flat([0], view=0)), ARCH)
    ds = WeightDataset(s, "train", normalize=None, cache=cache, canonical=AlignTo(ref))
    raw = s.read_flat(ds.objects, view=None)[ds.view_ok]
    aligned = AlignTo(ref)(Weights.from_flat(torch.from_numpy(raw), ARCH)).flatten().double()
    mean, std = ds.canonical_stats("entry")
    torch.testing.assert_close(mean, aligned.mean(0).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std, aligned.std(0, unbiased=False).float(), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(mean, normalization_stats(s, "entry")[0], atol=1e-3)
    for a, b in zip(ds.canonical_stats("symmetric"), normalization_stats(s, "symmetric")):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(InrforgeError, match="unknown normalisation 'layer'"):
        ds.canonical_stats("layer")


def test_with_stats_normalises_every_path_with_the_given_statistics(tmp_path):
    s = synthetic_store(tmp_path / "s.zarr")
    ds = WeightDataset(s, "val", normalize="entry")
    p = ARCH.param_count
    mean, std = torch.linspace(-1, 1, p), torch.linspace(0.5, 2, p)
    other = ds.with_stats(mean, std)
    w, _ = next(iter(other.loader(batch_size=5)))
    raw = torch.from_numpy(s.read_flat(ds.objects[:5], view=0))
    torch.testing.assert_close(w.flatten(), (raw - mean) / std)
    w0, _ = next(iter(ds.loader(batch_size=5)))  # the original keeps the store's
    torch.testing.assert_close(w0.flatten(), (raw - ds.mean) / ds.std)
    with pytest.raises(InrforgeError, match=rf"^with_stats takes a mean and a std of {p} entries each"):
        ds.with_stats(mean[1:], std)
    with pytest.raises(InrforgeError, match="^with_stats takes a finite mean and a finite, positive std$"):
        ds.with_stats(mean, torch.zeros(p))


def test_each_epoch_draws_new_augmentations_for_the_same_items(tmp_path):
    """One view and no shuffle, so only the augmentation can change between epochs: it is redrawn
    each epoch (else every object would get the same 'random' augmentation every epoch) and
    is a function of (seed, epoch, batch)."""
    s = synthetic_store(tmp_path / "s.zarr", views=1)
    ds = WeightDataset(s.path, "train", transform=SirenNegate(), seed=3, normalize=None)
    epochs = []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        epochs.append(torch.cat([w.flatten() for w, _ in ds.loader(batch_size=8, shuffle=False)]))
    assert torch.equal(epochs[0], epochs[2])
    assert not torch.equal(epochs[0], epochs[1])


def test_an_entry_constant_over_the_train_split_is_not_divided_by_zero(tmp_path):
    """A parameter every fit leaves at one value (an imported store, a frozen entry) has std 0:
    it is floored at 1, so batches stay finite and the entry normalises to 0."""
    s = synthetic_store(tmp_path / "s.zarr", views=1, shard=40)
    params = s.params[:]
    params[:, :, 5] = 0.25
    s.params[:] = params
    mean, std = normalization_stats(s, "entry")
    assert std[5] == 1.0 and mean[5] == 0.25
    w, _ = next(iter(WeightDataset(s, "train", normalize="entry").loader(batch_size=6)))
    assert torch.isfinite(w.flatten()).all() and (w.flatten()[:, 5] == 0).all()
