"""inrforge.adapt: the target domain's corruption and the weight->weight mappers (their symmetry,
their start at the identity, their settings)."""

import numpy as np
import pytest
import torch

from inrforge import InrforgeError
from inrforge.adapt import MapperConfig, ResidualMapper, build_mapper, corrupt_images, load_mapper, train_mapper
from inrforge.align import apply_permutation, random_permutations
from inrforge.predict import load_run
from inrforge.weights import Weights
from inrforge.zoo import classifier_arch

ARCH = classifier_arch(12, 3, hidden=5, depth=2)


def toy_data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 12, generator=g), torch.randint(3, (n,), generator=g)


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


@pytest.mark.parametrize("kw, msg", [
    (dict(epochs=2.5), "mapper epochs must be a positive integer, got 2.5"),
    (dict(epochs=0), "mapper epochs must be a positive integer, got 0"),
    (dict(batch_size=True), "mapper batch_size must be a positive integer, got True"),
    (dict(image_batch="256"), "mapper image_batch must be a positive integer, got '256'"),
    (dict(lr="1e-3"), "mapper lr must be a positive number, got '1e-3'"),
    (dict(lr=0.0), "mapper lr must be a positive number, got 0.0"),
    (dict(lr=float("inf")), "mapper lr must be a positive number, got inf"),
    (dict(weight_decay=-1.0), "mapper weight_decay must be a number >= 0, got -1.0"),
    (dict(weight_decay=None), "mapper weight_decay must be a number >= 0, got None"),
    (dict(grad_clip=0), "mapper grad_clip must be a positive number, got 0"),
    (dict(seed=-1), "mapper seed must be an integer >= 0, got -1"),
    (dict(seed=1.0), "mapper seed must be an integer >= 0, got 1.0"),
    (dict(device="tpu"), "unknown device 'tpu'"),
])
def test_bad_mapper_configs_are_one_line_user_errors(kw, msg):
    with pytest.raises(InrforgeError, match=f"^{msg}") as e:
        MapperConfig(**kw)
    assert "\n" not in str(e.value)


def test_mapper_config_is_frozen_and_keeps_integral_floats_as_ints():
    import dataclasses

    cfg = MapperConfig(epochs=3.0, batch_size=np.int64(4), image_batch=8.0, lr=1, weight_decay=0)
    assert (cfg.epochs, cfg.batch_size, cfg.image_batch) == (3, 4, 8)
    assert all(type(v) is int for v in (cfg.epochs, cfg.batch_size, cfg.image_batch))
    assert type(cfg.lr) is float and type(cfg.weight_decay) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 5
    w = Weights.from_flat(ARCH.init_flat(range(4)), ARCH)
    m = build_mapper("mlp", ARCH, ResidualMapper.tensor_stds(w), mlp_hidden=(8,))
    x, y = toy_data()
    with pytest.raises(InrforgeError, match="cfg must be a MapperConfig, got dict"):
        train_mapper(m, w, w, x, y, {"epochs": 1})
    hist = train_mapper(m, w, w, x, y, MapperConfig(epochs=2.0, batch_size=2, image_batch=8))
    assert len(hist["history"]) == 2


@pytest.mark.parametrize("kind", ["dwsnet", "mlp"])
def test_a_mappers_run_folder_is_loaded_back_and_reused(tmp_path, kind):
    """With log_dir the trained mapper is a run folder: load_mapper rebuilds it (sigma and alpha too)
    and it maps classifiers as the trained one does; resume=True reuses a finished run of the same
    record and refuses another's."""
    w = Weights.from_flat(ARCH.init_flat(range(8)), ARCH)
    x, y = toy_data()
    cfg = MapperConfig(epochs=3, batch_size=4, image_batch=8)

    def mapper():
        torch.manual_seed(0)
        return build_mapper(kind, ARCH, ResidualMapper.tensor_stds(w), hidden=4, depth=2, mlp_hidden=(16,))

    trained = mapper()
    hist = train_mapper(trained, w, w, x, y, cfg, log_dir=tmp_path / "run", describe={"zoo": "toy"})
    loaded = load_mapper(tmp_path / "run")
    assert loaded.spec == trained.spec and torch.equal(loaded.sigma, trained.sigma)
    trained.eval()
    torch.testing.assert_close(loaded(w).flatten(), trained(w).flatten(), rtol=0, atol=0)
    again = mapper()
    reused = train_mapper(again, w, w, x, y, cfg, log_dir=tmp_path / "run", describe={"zoo": "toy"}, resume=True)
    assert reused.pop("reused") and reused["history"] == hist["history"] and reused["best_epoch"] == hist["best_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(InrforgeError, match=r"another run's \(zoo: was 'toy', now 'other'\)"):
        train_mapper(mapper(), w, w, x, y, cfg, log_dir=tmp_path / "run", describe={"zoo": "other"}, resume=True)
    with pytest.raises(InrforgeError, match="holds no finished run"):
        load_mapper(tmp_path)
    with pytest.raises(InrforgeError, match="holds a domain-adaptation mapper .* read it with inrforge.adapt.load_mapper"):
        load_run(tmp_path / "run")
    (tmp_path / "run" / "best.pt").write_bytes(b"junk")
    with pytest.raises(InrforgeError, match="best.pt does not hold this run's model"):
        load_mapper(tmp_path / "run")


def test_a_mapper_without_val_classifiers_is_a_one_line_error():
    """Its epoch is chosen by val accuracy: an empty val set is refused (it crashed in torch.cat)."""
    w = Weights.from_flat(ARCH.init_flat(range(4)), ARCH)
    m = build_mapper("mlp", ARCH, ResidualMapper.tensor_stds(w), mlp_hidden=(8,))
    x, y = toy_data()
    with pytest.raises(InrforgeError, match=r"^train_mapper needs at least one val classifier: it keeps the epoch of "
                                            r"best val accuracy$"):
        train_mapper(m, w, w[:0], x, y, MapperConfig(epochs=2, batch_size=2, image_batch=8))


def test_corruption_builds_its_kernels_on_the_images_device():
    """Its rotation, blur kernel and noise were CPU tensors whatever the images' device (a GPU's
    grid_sample/conv2d would refuse them).  The meta device stands in for a GPU here."""
    x = torch.rand(3, 64)
    for kind in ("rotate-noise", "blur-noise"):
        out = corrupt_images(x.to("meta"), (8, 8, 1), kind=kind, seed=1)
        assert out.device.type == "meta" and out.shape == x.shape
    # the CPU numbers are those of before: the noise is still drawn on the CPU generator
    torch.testing.assert_close(corrupt_images(x, (8, 8, 1), angle=0.0, sigma=0.0), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mlp", "dwsnet"])
def test_a_mapper_refuses_weights_of_other_widths(kind):
    w = Weights.from_flat(ARCH.init_flat(range(2)), ARCH)
    m = build_mapper(kind, ARCH, ResidualMapper.tensor_stds(w), mlp_hidden=(8,), hidden=4, depth=1)
    other = classifier_arch(12, 3, hidden=6, depth=2)
    with pytest.raises(InrforgeError, match=r"^input widths .* do not match the mapper's"):
        m(Weights.from_flat(other.init_flat(range(2)), other))
    assert m(w).arch == ARCH
