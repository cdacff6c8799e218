"""Classifier zoos: the parallel trainer is independent training, the store round-trips, bad input
is a user error; the weight->weight mappers keep shapes (and the DWSNet one is equivariant)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inrforge import InrforgeError, open_store
from inrforge.align import apply_permutation, random_permutations
from inrforge.inr import forward
from inrforge.weights import Weights
from inrforge.zoo import (ResidualMapper, ZooSettings, build_mapper, classifier_arch, classifier_metrics,
                          corrupt_images, fit_zoo, minibatch_positions, plan_classifiers, train_classifiers,
                          zoo_accuracy, zoo_data, zoo_data_of)

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
    with pytest.raises(InrforgeError, match="other arguments"):
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


def test_corruption_is_deterministic_and_in_range():
    x = torch.rand(5, 64)
    a = corrupt_images(x, (8, 8, 1), seed=3)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, corrupt_images(x, (8, 8, 1), seed=3))
    # without noise a zero-angle rotation is the identity (bilinear at the pixel centres)
    torch.testing.assert_close(corrupt_images(x, (8, 8, 1), angle=0.0, sigma=0.0), x, atol=1e-5, rtol=0)
    for blur in (0.0, -1.0, float("nan")):  # a zero std would divide by zero: NaN images
        with pytest.raises(InrforgeError, match="the blur std must be a positive number of pixels"):
            corrupt_images(x, (8, 8, 1), kind="blur-noise", blur=blur)


@pytest.mark.parametrize("kind", ["dwsnet", "mlp"])
def test_mapper_starts_near_identity_and_keeps_shapes(kind):
    w = Weights.from_flat(ARCH.init_flat(range(4)), ARCH)
    torch.manual_seed(0)
    m = build_mapper(kind, ARCH, ResidualMapper.tensor_stds(w), hidden=4, depth=2, mlp_hidden=(16,), alpha0=0.0)
    out = m(w)
    assert all(a.shape == b.shape for a, b in zip(out.tensors(), w.tensors()))
    torch.testing.assert_close(out.flatten(), w.flatten())  # alpha = 0: exactly the identity


def test_dwsnet_mapper_is_permutation_equivariant():
    """mapper(P w) = P mapper(w) for hidden-neuron permutations P; the mapped classifier computes
    the same function on permuted inputs as the permuted classifier (the symmetry is exact)."""
    w = Weights.from_flat(ARCH.init_flat(range(3)), ARCH)
    torch.manual_seed(0)
    m = build_mapper("dwsnet", ARCH, ResidualMapper.tensor_stds(w), hidden=4, depth=2, alpha0=1.0).eval()
    perms = random_permutations(ARCH, len(w), torch.Generator().manual_seed(0))
    pw = apply_permutation(w, perms)
    torch.testing.assert_close(m(pw).flatten(), apply_permutation(m(w), perms).flatten(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(m(w).flatten(), w.flatten())  # it does change the weights


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
])
def test_bad_fit_zoo_arguments_are_user_errors(tmp_path, kw, msg):
    with pytest.raises(InrforgeError, match=msg):
        fit_zoo(tmp_path / "z.zarr", **{"data": "digits", "limit": 50, "n_classifiers": 4, **kw})
