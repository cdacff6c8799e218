import math

import numpy as np
import pytest
import torch

from inrforge.arch import make_arch
from inrforge.augment import Permute
from inrforge.contrastive import (ContrastiveModel, default_views_transform, embed, make_normalizer, nt_xent,
                                  train_contrastive, two_views)
from inrforge.data import WeightDataset
from inrforge.errors import InrforgeError
from inrforge.models import DWSNet
from inrforge.store import ShardData, create_store
from inrforge.weights import Weights


def test_nt_xent_known_value():
    # Two orthogonal pairs at temperature 1: each row sees its partner at similarity 1 and the
    # two others at 0, so every row's loss is -log(e / (e + 2)) = log(1 + 2/e).
    z = torch.eye(2)
    assert float(nt_xent(z, z.clone(), temperature=1.0)) == pytest.approx(math.log(1 + 2 / math.e), rel=1e-6)


def test_nt_xent_matches_explicit_formula(gen):
    z1, z2 = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    t = 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    losses = []
    for i in range(10):
        partner = (i + 5) % 10
        denom = sum(math.exp(sim[i, j]) for j in range(10) if j != i)
        losses.append(-math.log(math.exp(sim[i, partner]) / denom))
    assert float(nt_xent(z1, z2, t)) == pytest.approx(sum(losses) / 10, rel=1e-5)


def test_nt_xent_invariances(gen):
    z1, z2 = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    base = nt_xent(z1, z2, 0.2)
    perm = torch.randperm(8, generator=gen)
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm], 0.2), base)  # batch order
    torch.testing.assert_close(nt_xent(z2, z1, 0.2), base)  # which view is "first"
    scale = torch.rand(8, 1, generator=gen) + 0.1
    torch.testing.assert_close(nt_xent(z1 * scale, z2 * 3.0, 0.2), base)  # only directions count


def test_nt_xent_lower_for_aligned_pairs(gen):
    z1 = torch.randn(16, 8, generator=gen)
    aligned = nt_xent(z1, z1 + 0.01 * torch.randn(16, 8, generator=gen), 0.1)
    unrelated = nt_xent(z1, torch.randn(16, 8, generator=gen), 0.1)
    assert float(aligned) < 0.1 * float(unrelated)
    assert float(aligned) < math.log(2 * 16 - 1)  # below the uniform (chance) level


def test_nt_xent_gradient_and_errors(gen):
    z1 = torch.randn(4, 3, generator=gen, requires_grad=True)
    nt_xent(z1, torch.randn(4, 3, generator=gen)).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(InrforgeError):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)


def test_views_differ_and_dwsnet_contrastive_model_is_permutation_invariant(gen):
    arch = make_arch("siren-dwsnets", in_features=1, hidden=8, depth=2)
    w = Weights.from_flat(torch.randn(6, arch.param_count, generator=gen), arch)
    t = default_views_transform(arch)
    v1, v2 = two_views(w, t, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    assert not torch.allclose(v1.flatten(), v2.flatten())
    torch.manual_seed(0)
    model = ContrastiveModel(DWSNet(arch, 8, hidden=4, depth=2), emb_dim=8, proj_dim=5).eval()
    with torch.no_grad():
        out = model(w)
        assert out.shape == (6, 5) and model.embed(w).shape == (6, 8)
        torch.testing.assert_close(model(Permute()(w, generator=gen)), out, atol=1e-5, rtol=1e-4)


SMALL = make_arch("siren-dwsnets", in_features=1, hidden=6, depth=2)


def small_store(path, n=20):
    rng = np.random.default_rng(0)
    params = rng.standard_normal((n, 1, SMALL.param_count)).astype(np.float32)
    splits = {"train": np.arange(0, n - 4), "val": np.arange(0), "test": np.arange(n - 4, n)}
    s = create_store(path, arch=SMALL, n_objects=n, views=1, labels=params[:, 0, -1:].copy(), splits=splits,
                     source={"name": "synthetic", "params": {}}, fit={}, shard_objects=n)
    ok = np.full((n, 1), 30.0, np.float32)
    s.write_shard(ShardData(0, params, ok, ok, np.ones((n, 1), np.int32), np.zeros((n, 1), bool)))
    return s


def test_train_contrastive_trains_and_needs_pairs(tmp_path):
    store = small_store(tmp_path / "s")
    raw = WeightDataset(store, "train", normalize=None, cache=True)
    torch.manual_seed(0)
    model = ContrastiveModel(DWSNet(SMALL, 4, hidden=4, depth=2, head_hidden=(8,)), 4, proj_dim=3, proj_hidden=8)
    t = default_views_transform(SMALL)
    res = train_contrastive(model, raw, t, make_normalizer(store), epochs=2, batch_size=5)
    assert [r["epoch"] for r in res["history"]] == [0, 1]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in res["history"])
    # a batch of one INR has no negative: it used to skip every batch and report a loss of 0.0
    with pytest.raises(InrforgeError, match="at least 2"):
        train_contrastive(model, raw, t, epochs=1, batch_size=1)
    for kw, words in ((dict(epochs=1.5), "epochs must be a positive integer, got 1.5"),
                      (dict(epochs=-1), "epochs must be a positive integer, got -1"),  # used to train nothing
                      (dict(lr="x"), "lr must be a positive number, got 'x'"),
                      (dict(batch_size="8"), "batch_size must be a positive integer, got '8'"),
                      (dict(device="gpu"), "unknown device 'gpu'"),
                      (dict(normalize="symmetric"), "normalize must be a function of Weights"),
                      (dict(transform=None), "transform must make the views")):
        with pytest.raises(InrforgeError) as e:
            train_contrastive(model, raw, **{"transform": t, **kw})
        assert str(e.value).startswith(words), str(e.value)
    empty = WeightDataset(store, "train", normalize=None, done=np.zeros(len(store), bool))
    with pytest.raises(InrforgeError, match="^nothing to embed: the train dataset holds no usable INR"):
        embed(model.encoder, empty)


def test_a_contrastive_run_folder_is_loadable_and_reused(tmp_path):
    """With log_dir, the encoder is saved as a run folder load_run rebuilds (its outputs are the
    embeddings); resume=True reuses a finished run of the same record (loading its encoder) and
    refuses another's."""
    from inrforge.models import build_model
    from inrforge.predict import InputForm, load_run
    from inrforge.run_folder import LOG_FILES

    store = small_store(tmp_path / "s")
    raw = WeightDataset(store, "train", normalize=None, cache=True)
    normed = WeightDataset(store, "train", cache=True)
    t = default_views_transform(SMALL)
    describe = {"model": "dwsnet", "model_kwargs": {"hidden": 4, "depth": 2, "head_hidden": [8]}, "out_features": 4,
                "task": "embedding"}

    def model():
        torch.manual_seed(0)
        return ContrastiveModel(build_model("dwsnet", SMALL, 4, hidden=4, depth=2, head_hidden=[8]), 4, proj_dim=3,
                                proj_hidden=8)

    first = model()
    kw = dict(epochs=2, batch_size=5, log_dir=tmp_path / "run", describe=describe, form=InputForm.of(normed))
    res = train_contrastive(first, raw, t, make_normalizer(store), **kw)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(set(LOG_FILES) - {"checkpoint.pt"})
    run = load_run(tmp_path / "run")
    want, _ = embed(first.encoder, normed)
    assert np.allclose(run.predict(Weights.from_flat(torch.from_numpy(store.read_flat(normed.objects)), SMALL)).numpy(),
                       want, atol=1e-6)
    again = model()
    reused = train_contrastive(again, raw, t, make_normalizer(store), **kw, resume=True)
    assert reused["reused"] and reused["history"] == res["history"]
    assert all(torch.equal(a, b) for a, b in zip(again.encoder.state_dict().values(),
                                                 first.encoder.state_dict().values()))
    with pytest.raises(InrforgeError, match=r"another run's \(contrastive.lr: was 0.001, now 0.002\)"):
        train_contrastive(model(), raw, t, make_normalizer(store), **kw, lr=2e-3, resume=True)


class _DeviceProbe(torch.nn.Module):
    """An 'encoder' whose parameter lives on the meta device; records where its input was."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.seen = []

    def forward(self, w):
        self.seen.append(w.device)
        return torch.zeros(len(w), 2)


def test_embed_feeds_the_encoder_on_its_own_device(tmp_path):
    """embed used to move the batches to "cpu" whatever the encoder's device (a GPU-trained
    encoder then failed in the ssl_sines pipeline, which calls embed(enc, dataset))."""
    ds = WeightDataset(small_store(tmp_path / "s"), "test")
    enc = _DeviceProbe()
    e, y = embed(enc, ds)
    assert e.shape == (4, 2) and y.shape == (4, 1)
    assert enc.seen and all(d.type == "meta" for d in enc.seen)
    embed(enc, ds, device="cpu")  # an explicit device still wins
    assert enc.seen[-1].type == "cpu"
