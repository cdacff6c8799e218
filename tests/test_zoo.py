"""Classifier zoos (inrforge.zoo): the parallel trainer is independent training, the store
round-trips through write_shard (refused in a replaced store), bad input is a user error; and
domain adaptation (inrforge.adapt): the weight->weight mappers keep shapes (and the DWSNet one is
equivariant), their config is checked."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inrforge import InrforgeError, open_store
from inrforge.adapt import build_mapper, corrupt_images
from inrforge.errors import StoreReplacedError
from inrforge.inr import forward
from inrforge.store import ShardData, create_store
from inrforge.weights import Weights
from inrforge.zoo import (ZooSettings, classifier_arch, classifier_metrics, fit_zoo, minibatch_positions,
                          plan_classifiers, train_classifiers, zoo_accuracy, zoo_data, zoo_data_of, zoo_splits)

ARCH = classifier_arch(12, 3, hidden=5, depth=2)


def toy_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 12, generator=g), torch.randint(3, (n,), generator=g)


def test_one_adam_over_the_stack_equals_independent_adams():
    """The batched zoo trainer equals B separate nn.Parameter + torch.optim.Adam runs of T_k steps."""
    x, y = toy_data()
    s = ZooSettings(steps=12, min_steps_fraction=0.3, lr=1e-2, batch_size=7, subset_fraction=0.6)
    plan = plan_classifiers(ARCH, range(5), seed=3, n_train=len(y), settings=s)
    assert len(set(plan.steps.tolist())) > 1  # the step jitter is exercised
    res = train_classifiers(ARCH, plan, x, y, s)
    assert (res.steps == plan.steps.int()).all() and not res.failed.any()
    for k in range(5):
        params = [nn.Parameter(t.clone()) for t in Weights.from_flat(plan.init[k:k + 1], ARCH).tensors()]
        opt = torch.optim.Adam(params, lr=s.lr)
        positions = minibatch_positions([plan.batch_seeds[k]], plan.subsets.shape[1], int(plan.steps[k]), s.batch_size)
        for pos in positions:
            idx = plan.subsets[k][pos[0]]
            opt.zero_grad()
            logits = forward(ARCH, params[0::2], params[1::2], x[idx][None], encoded=True)[0]
            F.cross_entropy(logits, y[idx]).backward()
            opt.step()
        single = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(res.params[k], single, rtol=1e-5, atol=1e-6)


def test_a_diverging_classifier_is_marked_failed_where_it_diverged():
    """Like a failed INR: flagged, its step count the steps taken before the loss went non-finite,
    the parameters those steps reached; the others train undisturbed."""
    x, y = toy_data()
    s = ZooSettings(steps=12, min_steps_fraction=1.0, lr=1e-2, batch_size=7, subset_fraction=0.6)
    plan = plan_classifiers(ARCH, range(3), seed=3, n_train=len(y), settings=s)
    plan.init[1] = float("inf")  # classifier 1's loss is non-finite from its first step
    res = train_classifiers(ARCH, plan, x, y, s)
    assert res.failed.tolist() == [False, True, False]
    assert res.steps.tolist() == [12, 0, 12]
    assert torch.isinf(res.params[1]).all()  # the parameters that failed, not a fitted-looking set
    alone = train_classifiers(ARCH, plan_classifiers(ARCH, [0], seed=3, n_train=len(y), settings=s), x, y, s)
    torch.testing.assert_close(res.params[0], alone.params[0])
    huge = ZooSettings(steps=12, min_steps_fraction=1.0, lr=1e25, batch_size=7, subset_fraction=0.6)
    res = train_classifiers(ARCH, plan_classifiers(ARCH, range(3), seed=3, n_train=len(y), settings=huge), x, y, huge)
    assert res.failed.all() and (res.steps > 0).all() and (res.steps < 12).all()


def test_a_classifier_does_not_depend_on_its_batch_company():
    x, y = toy_data()
    s = ZooSettings(steps=6, batch_size=4)
    all5 = train_classifiers(ARCH, plan_classifiers(ARCH, range(5), 0, len(y), s), x, y, s)
    one = train_classifiers(ARCH, plan_classifiers(ARCH, [3], 0, len(y), s), x, y, s)
    torch.testing.assert_close(all5.params[3], one.params[0], rtol=1e-5, atol=1e-6)


def test_zoo_store_round_trips_and_resumes(tmp_path):
    s = ZooSettings(steps=150, min_steps_fraction=0.5, classifiers_per_batch=8)
    kw = dict(data="digits", n_classifiers=20, hidden=8, settings=s, seed=1, shard_objects=8)
    store = fit_zoo(tmp_path / "zoo.zarr", **kw)
    assert store.arch.family == "relu" and store.arch.output_offset == 0 and store.arch.widths == (64, 8, 10)
    assert store.done().all() and len(store) == 20 and store.views == 1
    acc = zoo_accuracy(store)
    assert np.isfinite(acc).all() and acc.mean() > 0.5  # 75-150 steps: ~0.8, chance is 0.1
    again = open_store(store.path)
    np.testing.assert_array_equal(again.labels, acc)  # the label is the source accuracy
    idx = again.split("test")
    assert sorted(np.concatenate([again.split(n) for n in ("train", "val", "test")]).tolist()) == list(range(20))
    w, labels = again.read(idx)
    d = zoo_data_of(again)
    assert d.x_train.shape[1] == 64 and len(d.y_test) == round(0.3 * 1797)
    a2, _ = classifier_metrics(w, d.x_test, d.y_test)
    np.testing.assert_allclose(a2.numpy(), acc[idx], atol=1e-6)  # stored params give stored metrics
    np.testing.assert_array_equal(labels.numpy(), acc[idx])
    # a killed run (one shard not done) is refitted bit-identically; a finished store is untouched
    before = again.read_flat(slice(None), view=None).copy()
    rw = open_store(store.path, mode="r+")
    rw.root["done"][8:16] = np.zeros(8, dtype=bool)
    rw.params[8:16] = np.full((8, 1, rw.arch.param_count), np.nan, dtype=np.float32)
    resumed = fit_zoo(tmp_path / "zoo.zarr", **kw)
    np.testing.assert_array_equal(resumed.read_flat(slice(None), view=None), before)
    with pytest.raises(InrforgeError, match=r"zoo.zarr holds a store fitted with other arguments \(arch.param_count: "
                       r"store has 610, now 685; arch.widths: store has \[64, 8, 10\], now \[64, 9, 10\]\); "
                       r"pass --overwrite to replace it or choose another --out$"):  # fit_inrs's wording
        fit_zoo(tmp_path / "zoo.zarr", **{**kw, "hidden": 9})


@pytest.mark.parametrize("kw, msg", [
    (dict(steps=0), "steps"), (dict(lr=-1.0), "lr"), (dict(subset_fraction=0.0), "subset_fraction"),
    (dict(init_scale=(2.0, 1.0)), "init_scale"), (dict(batch_size=0), "batch_size"),
    (dict(device="tpu"), "device"), (dict(steps="3"), "zoo steps must be a positive integer, got '3'"),
    (dict(steps=float("nan")), "zoo steps"), (dict(steps=2.5), "zoo steps"), (dict(lr="1"), "zoo lr"),
    (dict(init_scale=None), "init_scale"), (dict(init_scale=(1.0, float("inf"))), "init_scale"),
    (dict(min_steps_fraction="a"), "min_steps_fraction"), (dict(subset_fraction=None), "subset_fraction"),
    (dict(classifiers_per_batch=True), "classifiers_per_batch"),
])
def test_bad_settings_are_user_errors(kw, msg):
    with pytest.raises(InrforgeError, match=msg):
        ZooSettings(**kw)


def test_bad_zoo_input_is_a_user_error(tmp_path):
    with pytest.raises(InrforgeError, match="not a labelled image dataset"):
        zoo_data("sines")
    with pytest.raises(InrforgeError, match="n_classifiers"):
        fit_zoo(tmp_path / "z.zarr", n_classifiers=0)
    with pytest.raises(InrforgeError, match="unknown corruption"):
        corrupt_images(torch.zeros(2, 64), (8, 8, 1), kind="snow")
    with pytest.raises(InrforgeError, match="unknown mapper"):
        build_mapper("cnn", ARCH, torch.ones(6))
    x, y = toy_data()
    s = ZooSettings(steps=2)
    plan = plan_classifiers(classifier_arch(10, 3), range(2), 0, len(y), s)
    with pytest.raises(InrforgeError, match="inputs"):
        train_classifiers(classifier_arch(10, 3), plan, x, y, s)
    plan = plan_classifiers(ARCH, range(2), 0, len(y), s)
    with pytest.raises(InrforgeError, match=r"classes in \[0, 3\), got shape \(40,\), range \[0, 3\]"):
        train_classifiers(ARCH, plan, x, torch.where(y == 2, 3, y), s)  # was a raw IndexError
    with pytest.raises(InrforgeError, match=r"labels must be \(n,\) = \(40,\)"):
        train_classifiers(ARCH, plan, x, y[:30], s)


def test_a_classifier_whose_last_update_diverges_is_failed():
    """One Adam step of lr 1e20: the loss of the final parameters is NaN for classifiers 0 and 1
    (their logits overflow), finite for 2.  The first two are failed after their T_k = 1 steps."""
    x, y = toy_data()
    s = ZooSettings(steps=1, min_steps_fraction=1.0, lr=1e20, batch_size=7, subset_fraction=0.6)
    plan = plan_classifiers(ARCH, range(3), seed=3, n_train=len(y), settings=s)
    res = train_classifiers(ARCH, plan, x, y, s)
    assert res.failed.tolist() == [True, True, False]
    assert res.steps.tolist() == [1, 1, 1]
    _, ce = classifier_metrics(Weights.from_flat(res.params, ARCH), x, y)
    assert torch.isnan(ce[:2]).all() and torch.isfinite(ce[2])


def test_a_zoo_never_stores_a_nan_loss_for_a_classifier_not_failed(tmp_path):
    s = ZooSettings(steps=1, min_steps_fraction=1.0, lr=1e20, classifiers_per_batch=4)
    store = fit_zoo(tmp_path / "z.zarr", data="digits", limit=100, n_classifiers=6.0, hidden=4, settings=s,
                    seed=1, shard_objects=4)
    failed = store.root["metrics"]["failed"][:, 0]
    loss = store.root["metrics"]["loss"][:, 0]
    assert failed.all() and np.isnan(loss).all()  # every test loss overflowed: all failed
    assert np.isnan(zoo_accuracy(store)).all() and np.isnan(store.labels).all()  # no label from a failed one


def test_integral_float_settings_are_ints():
    s = ZooSettings(steps=3.0, batch_size=2.0, classifiers_per_batch=4.0, init_scale=[1, 2])
    assert (s.steps, s.batch_size, s.classifiers_per_batch, s.init_scale) == (3, 2, 4, (1.0, 2.0))
    assert all(type(v) is int for v in (s.steps, s.batch_size, s.classifiers_per_batch))
    x, y = toy_data()
    res = train_classifiers(ARCH, plan_classifiers(ARCH, range(2), 0, len(y), s), x, y, s)
    assert not res.failed.any()


@pytest.mark.parametrize("kw, msg", [
    (dict(shard_objects=0), "shard_objects must be a positive integer, got 0"),
    (dict(n_classifiers=2.5), "n_classifiers must be a positive integer"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(settings={"steps": 2}), "settings must be a ZooSettings"),
    (dict(val_fraction="0.1"), "val_fraction must be in"),
    (dict(test_fraction=None), "test_fraction must be in"),
    (dict(image_size="4"), "image_size must be a positive integer"),
    (dict(image_size=9), r"^image size 9 is larger than the source's 8x8 images: it only downsamples$"),
])
def test_bad_fit_zoo_arguments_are_user_errors(tmp_path, kw, msg):
    with pytest.raises(InrforgeError, match=msg):
        fit_zoo(tmp_path / "z.zarr", **{"data": "digits", "limit": 50, "n_classifiers": 4, **kw})


def test_a_zoo_run_never_writes_into_a_store_another_run_put_in_its_place(tmp_path, monkeypatch):
    """Labels and accuracy go through write_shard, after its check_unreplaced: a zoo run whose store
    was replaced by another run (--overwrite with other arguments) while it trained stops with
    StoreReplacedError, and the other run's store keeps its own labels, accuracy and done flags."""
    import inrforge.zoo as zoo

    s = ZooSettings(steps=3, classifiers_per_batch=4)
    kw = dict(data="digits", limit=60, n_classifiers=8, hidden=4, settings=s, shard_objects=4)
    path = tmp_path / "z.zarr"
    train, calls = zoo.train_classifiers, []

    def train_then_get_replaced(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # this run's second shard: another run replaces its store meanwhile
            monkeypatch.setattr(zoo, "train_classifiers", train)
            fit_zoo(path, seed=2, overwrite=True, **kw)
        return train(*args, **kwargs)

    monkeypatch.setattr(zoo, "train_classifiers", train_then_get_replaced)
    with pytest.raises(StoreReplacedError, match="was replaced or removed by another run"):
        fit_zoo(path, seed=1, **kw)
    other = fit_zoo(tmp_path / "other.zarr", seed=2, **kw)  # what the replacing run wrote, alone
    now = open_store(path)
    assert now.fit_settings["seed"] == 2 and now.done().all()
    np.testing.assert_array_equal(now.labels, other.labels)
    np.testing.assert_array_equal(zoo_accuracy(now), zoo_accuracy(other))
    np.testing.assert_array_equal(now.read_flat(slice(None), view=None), other.read_flat(slice(None), view=None))


def test_labels_and_extra_metrics_round_trip_through_write_shard(tmp_path):
    arch = classifier_arch(4, 2, hidden=3)
    store = create_store(tmp_path / "s.zarr", arch=arch, n_objects=6, views=1, labels=np.full(6, np.nan, np.float32),
                         splits={"train": np.arange(6)}, source={"name": "test"}, fit={}, shard_objects=4,
                         chunk_objects=2, extra_metrics={"accuracy": ("float32", np.nan)})
    assert np.isnan(store.labels).all() and np.isnan(store.metric("accuracy")).all()  # labels read (and kept)

    def shard(start, n, acc, **extra):
        z = np.zeros((n, 1), np.float32)
        return ShardData(start, np.ones((n, 1, arch.param_count), np.float32), z, z, z.astype(np.int32),
                         z.astype(bool), **extra)

    store.write_shard(shard(4, 2, None, labels=np.array([0.25, 0.5], np.float32),
                            extra_metrics={"accuracy": np.array([[0.25], [0.5]], np.float32)}))
    np.testing.assert_array_equal(store.labels[4:], [0.25, 0.5])  # not the labels read before the write
    assert np.isnan(store.labels[:4]).all()
    again = open_store(store.path)
    np.testing.assert_array_equal(again.metric("accuracy")[:, 0], [np.nan] * 4 + [0.25, 0.5])
    np.testing.assert_array_equal(again.done(), [False] * 4 + [True] * 2)
    # an extra metric the store was not created with: refused before anything is written
    with pytest.raises(InrforgeError, match="no readable array 'metrics/entropy'"):
        store.write_shard(shard(0, 4, None, extra_metrics={"entropy": np.zeros((4, 1), np.float32)}))
    assert not again.done()[:4].any() and np.isnan(again.read_flat(slice(0, 4), view=None)).all()
    with pytest.raises(ValueError, match="standard metrics"):
        store.write_shard(shard(0, 4, None, extra_metrics={"psnr": np.zeros((4, 1), np.float32)}))
    with pytest.raises(ValueError, match="clash with the standard ones"):
        create_store(tmp_path / "t.zarr", arch=arch, n_objects=6, views=1, labels=np.zeros(6), splits={},
                     source={}, fit={}, extra_metrics={"loss": ("float32", np.nan)})
    # not a zoo: the one-line error
    with pytest.raises(InrforgeError, match=r"s.zarr has no metrics/accuracy: it is not a classifier zoo "
                                            r"\(its source is 'test'\)$"):
        zoo_accuracy(again)


def test_zoo_splits_partition_the_classifiers_with_fit_zoos_rounding(tmp_path):
    splits = zoo_splits(20, 0.15, 0.15, seed=1)
    assert {k: len(v) for k, v in splits.items()} == {"train": 14, "val": 3, "test": 3}
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(20))
    assert all((np.diff(v) > 0).all() for v in splits.values())
    other = zoo_splits(20, 0.15, 0.15, seed=2)
    assert {k: len(v) for k, v in other.items()} == {k: len(v) for k, v in splits.items()}  # sizes: not the seed
    assert any(not np.array_equal(splits[k], other[k]) for k in splits)
    store = fit_zoo(tmp_path / "z.zarr", data="digits", limit=60, n_classifiers=20, hidden=4,
                    settings=ZooSettings(steps=2), seed=1)
    for name, idx in splits.items():
        np.testing.assert_array_equal(store.split(name), idx)
    for kw, msg in ((dict(val_fraction=1.0), r"val_fraction must be in \[0, 1\), got 1.0"),
                    (dict(zoo_test_fraction="0.1"), r"zoo_test_fraction must be in \[0, 1\), got '0.1'"),
                    (dict(val_fraction=0.5, zoo_test_fraction=0.5), "must leave some training classifiers"),
                    (dict(n_classifiers=0), "n_classifiers must be a positive integer, got 0"),
                    (dict(seed=-1), "seed must be an integer >= 0, got -1")):
        with pytest.raises(InrforgeError, match=msg):
            zoo_splits(**{"n_classifiers": 20, "val_fraction": 0.15, "zoo_test_fraction": 0.15, "seed": 0, **kw})


def test_a_zoo_begun_with_other_software_resumes_only_when_allowed(tmp_path):
    """As fit_inrs: the zoo's remaining shards would mix two torch versions' numbers silently."""
    import zarr

    from inrforge.fitjob import library_versions

    kw = dict(data="digits", limit=100, n_classifiers=8, hidden=4, settings=ZooSettings(steps=5), shard_objects=4)
    fit_zoo(tmp_path / "z.zarr", **kw)
    g = zarr.open_group(str(tmp_path / "z.zarr"), mode="r+")
    g.attrs["fit"] = {**g.attrs["fit"], "versions": {**g.attrs["fit"]["versions"], "torch": "1.0.0"}}
    assert fit_zoo(tmp_path / "z.zarr", **kw).done().all()  # finished: nothing to fit, nothing refused
    g["done"][4:] = False
    with pytest.raises(InrforgeError, match=r"z.zarr was fitted so far with other software \(torch 1.0.0 -> "):
        fit_zoo(tmp_path / "z.zarr", **kw)
    store = fit_zoo(tmp_path / "z.zarr", allow_version_change=True, **kw)
    assert store.done().all() and store.fit_settings["resumed_with"] == [library_versions()]
