import math

import numpy as np
import pytest
import torch

from inrforge.arch import PRESETS, FourierSpec, INRSpec, make_arch
from inrforge.errors import InrforgeError


def test_default_is_the_dwsnets_inr():
    a = make_arch()
    assert a.widths == (2, 32, 32, 1)
    assert a.param_count == 1185
    assert (a.family, a.w0, a.output_offset, a.init) == ("siren", 30.0, 0.5, "siren-dwsnets")


@pytest.mark.parametrize("preset", PRESETS)
def test_json_round_trip(preset):
    a = make_arch(preset, in_features=2, out_features=3, hidden=16, depth=3)
    b = INRSpec.from_json(a.to_json())
    assert a == b and hash(a) == hash(b)
    assert b.to_dict() == a.to_dict()


def test_layout_is_contiguous_pytorch_orientation():
    a = INRSpec(widths=(3, 5, 7, 2))
    names = [s.name for s in a.layout]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                     "layers.2.weight", "layers.2.bias"]
    assert [s.shape for s in a.layout] == [(5, 3), (5,), (7, 5), (7,), (2, 7), (2,)]
    offset = 0
    for s in a.layout:
        assert s.offset == offset
        offset += s.size
    assert offset == a.param_count == 5 * 3 + 5 + 7 * 5 + 7 + 2 * 7 + 2


@pytest.mark.parametrize("kwargs", [dict(widths=(2,)), dict(widths=(2, 0, 1)), dict(widths=(2, 4), family="tanh"),
                                    dict(widths=(2, 4), w0=0.0), dict(widths=(2, 4), init="xavier"),
                                    dict(widths=(6, 4, 1), fourier=FourierSpec(2, 4, 1.0))])
def test_impossible_arch_is_a_user_error(kwargs):
    with pytest.raises(InrforgeError):
        INRSpec(**kwargs)


def test_make_arch_rejects_bad_preset_and_sizes():
    with pytest.raises(InrforgeError, match="unknown arch preset"):
        make_arch("gauss")
    with pytest.raises(InrforgeError, match="hidden"):
        make_arch(hidden=0)


def test_from_dict_rejects_foreign_json():
    with pytest.raises(InrforgeError, match="not an INR architecture"):
        INRSpec.from_dict({"widths": [2, 3]})


def test_init_depends_only_on_each_seed():
    a = make_arch("siren")
    together = a.init_flat([7, 8, 9])
    alone = a.init_flat([8])
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[2])


def test_init_bounds_follow_the_presets():
    siren = make_arch("siren", hidden=64)
    flat = siren.init_flat(range(50))
    w0 = flat[:, siren.layout[0].offset: siren.layout[0].offset + siren.layout[0].size]
    w1 = flat[:, siren.layout[2].offset: siren.layout[2].offset + siren.layout[2].size]
    assert w0.abs().max() <= 1 / 2 and w0.abs().max() > 0.45  # U(+-1/d_in), d_in = 2
    bound = math.sqrt(6 / 64) / 30
    assert w1.abs().max() <= bound and w1.abs().max() > 0.9 * bound
    dws = make_arch("siren-dwsnets")
    flat = dws.init_flat(range(10))
    for s in dws.layout[1::2]:
        assert torch.count_nonzero(flat[:, s.offset: s.offset + s.size]) == 0
    first = flat[:, : dws.layout[0].size]
    assert first.abs().max() <= math.sqrt(6 / 2) / 30


def test_fourier_matrix_is_a_function_of_its_seed():
    f = FourierSpec(2, 8, 3.0, seed=5)
    assert torch.equal(f.matrix(), FourierSpec(2, 8, 3.0, seed=5).matrix())
    assert not torch.equal(f.matrix(), FourierSpec(2, 8, 3.0, seed=6).matrix())
    a = make_arch("relu-fourier", fourier_features=8)
    assert a.widths[0] == 16 and a.in_features == 2


@pytest.mark.parametrize("build", [
    lambda: INRSpec(widths=(2, 3.5, 1)),                 # was silently truncated to 3
    lambda: INRSpec(widths=(2, float("nan"), 1)),
    lambda: INRSpec(widths=(True, 3, 1)),                # was read as width 1
    lambda: INRSpec(widths="231"),                       # was read as (2, 3, 1)
    lambda: INRSpec(widths=None),
    lambda: INRSpec(widths=(2, 3), w0=None),
    lambda: INRSpec(widths=(2, 3), w0="30"),
    lambda: INRSpec(widths=(2, 3), output_offset="0.5"),
    lambda: INRSpec(widths=(4, 3), family="relu", init="relu", fourier={"in_features": 2, "n_features": 2, "sigma": 1.0}),
    lambda: FourierSpec(2, 2, float("inf")),             # an infinite matrix
    lambda: FourierSpec(2, 2.5, 1.0),
    lambda: FourierSpec(float("nan"), 2, 1.0),
    lambda: FourierSpec(2, 2, "1"),
    lambda: FourierSpec(2, 2, 1.0, seed=1.5),
    lambda: make_arch(hidden=float("nan")),
    lambda: make_arch(hidden=float("inf")),
    lambda: make_arch(hidden=None),
    lambda: make_arch(hidden=True),
    lambda: make_arch(w0=None),
    lambda: make_arch("relu-fourier", fourier_features=2.5),
    lambda: make_arch("relu-fourier", fourier_features=float("nan")),
    lambda: make_arch("relu-fourier", fourier_sigma=float("inf")),
])
def test_impossible_values_are_one_line_user_errors(build):
    with pytest.raises(InrforgeError) as e:
        build()
    assert "\n" not in str(e.value)


def test_integral_values_of_other_types_are_accepted():
    a = make_arch("relu-fourier", hidden=16.0, depth=np.int64(2), fourier_features=np.int32(4), fourier_sigma=2)
    assert a.widths == (8, 16, 16, 1) and all(type(w) is int for w in a.widths)
    assert a == make_arch("relu-fourier", hidden=16, depth=2, fourier_features=4, fourier_sigma=2.0)
    assert INRSpec(widths=np.array([2, 5, 1]), w0=np.float32(30)) == INRSpec(widths=(2, 5, 1))
    assert FourierSpec(2, 4, 1.0, seed=-3).matrix().shape == (4, 2)  # torch takes any integer seed


@pytest.mark.parametrize("d", [
    None, [2, 32, 1], "siren", 3,
    {"widths": [2, 3.5, 1], "family": "siren"},
    {"widths": "231", "family": "siren"},
    {"widths": [2, 3], "family": "siren", "param_count": 999},     # contradicts its own widths
    {"widths": [2, 3], "family": "siren", "in_features": 5},
    {"widths": [2, 3], "family": "siren", "w0": True},
    {"widths": [4, 3], "family": "relu", "fourier": [1, 2]},
    {"widths": [4, 3], "family": "relu", "fourier": {"in_features": 2, "n_features": 2, "sigma": "x"}},
])
def test_from_dict_refuses_malformed_or_foreign_descriptions(d):
    with pytest.raises(InrforgeError, match="INR architecture description") as e:
        INRSpec.from_dict(d)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", "null", '{"widths": [2, 3]'])
def test_from_json_refuses_text_that_is_not_an_arch(text):
    with pytest.raises(InrforgeError, match="not an INR architecture description"):
        INRSpec.from_json(text)


@pytest.mark.parametrize("arch", [
    INRSpec(widths=(1, 1)),
    INRSpec(widths=(7, 1), family="relu", init="relu"),
    INRSpec(widths=(3, 1, 5, 1, 2), w0=1 / 3, output_offset=-0.25, init="siren-dwsnets"),
    make_arch("siren", in_features=1, out_features=4, hidden=3, depth=7, w0=12.345),
    make_arch("relu-fourier", in_features=3, out_features=2, hidden=1, depth=1, fourier_features=1,
              fourier_sigma=0.1, fourier_seed=123456789),
])
def test_json_round_trip_of_odd_shapes(arch):
    back = INRSpec.from_json(arch.to_json())
    assert back == arch and hash(back) == hash(arch) and back.to_json() == arch.to_json()
    assert back.layout == arch.layout and back.param_count == arch.to_dict()["param_count"]
    if arch.fourier is not None:
        assert torch.equal(back.fourier.matrix(), arch.fourier.matrix())


@pytest.mark.parametrize("preset", PRESETS)
def test_flat_layout_is_parameters_to_vector_of_torch_linears(preset):
    arch = make_arch(preset, in_features=3, out_features=2, hidden=5, depth=3, fourier_features=4)
    linears = [torch.nn.Linear(a, b) for a, b in zip(arch.widths[:-1], arch.widths[1:])]
    flat = torch.nn.utils.parameters_to_vector([p for m in linears for p in m.parameters()]).detach()
    assert flat.numel() == arch.param_count
    for m, w, b in zip(linears, arch.layout[0::2], arch.layout[1::2]):
        assert w.name.endswith("weight") and b.name.endswith("bias")
        assert torch.equal(flat[w.offset: w.offset + w.size].reshape(w.shape), m.weight.detach())
        assert torch.equal(flat[b.offset: b.offset + b.size], m.bias.detach())


@pytest.mark.parametrize("preset", PRESETS)
def test_init_distributions_are_the_documented_uniforms(preset):
    """Each weight/bias is U(-bound, bound) with the documented bound: checked on the moments
    (mean 0, variance bound^2/3, 4th moment bound^4/5), the range, and the CDF (Kolmogorov distance)."""
    w0 = 20.0
    arch = make_arch(preset, hidden=24, depth=2, w0=w0, fourier_features=6)
    flat = arch.init_flat(range(300)).double()
    for i in range(arch.n_layers):
        d_in = arch.widths[i]
        if preset == "siren":
            wb, bb = (1 / d_in if i == 0 else math.sqrt(6 / d_in) / w0), 1 / math.sqrt(d_in)
        elif preset == "siren-dwsnets":
            wb, bb = math.sqrt(6 / d_in) / w0, 0.0
        else:
            wb = bb = 1 / math.sqrt(d_in)
        for slot, bound in ((arch.layout[2 * i], wb), (arch.layout[2 * i + 1], bb)):
            x = flat[:, slot.offset: slot.offset + slot.size].reshape(-1)
            if bound == 0:
                assert torch.count_nonzero(x) == 0, slot.name
                continue
            u = x / bound
            n = len(u)
            assert u.abs().max() <= 1 and u.abs().max() > 1 - 20 / n, slot.name
            assert abs(u.mean()) < 5 * math.sqrt(1 / 3 / n), slot.name
            assert abs(u.pow(2).mean() - 1 / 3) < 5 * math.sqrt(4 / 45 / n), slot.name
            assert abs(u.pow(4).mean() - 1 / 5) < 5 * math.sqrt((1 / 9 - 1 / 25) / n), slot.name
            cdf = (torch.sort(u).values + 1) / 2
            ks = (cdf - torch.arange(1, n + 1, dtype=torch.float64) / n).abs().max()
            assert ks < 2.0 / math.sqrt(n), slot.name  # p ~ 1e-3 for a true uniform
    assert arch.output_offset == (0.5 if preset == "siren-dwsnets" else 0.0)


def test_hidden_widths_are_the_permutable_layers():
    assert make_arch(hidden=16, depth=3).hidden_widths == (16, 16, 16)
    assert INRSpec(widths=(2, 5, 7, 3)).hidden_widths == (5, 7)
    assert INRSpec(widths=(2, 3)).hidden_widths == ()


def test_require_widths_names_both_widths_and_ignores_the_family():
    siren = make_arch("siren", hidden=8, depth=2)
    make_arch("relu", hidden=8, depth=2).require_widths(siren)  # same widths, other family: accepted
    with pytest.raises(InrforgeError, match=r"^input widths \[2, 8, 8, 8, 1\] do not match the mapper's "
                                            r"\[2, 8, 8, 1\]$"):
        siren.require_widths(make_arch("siren", hidden=8, depth=3), "the mapper's")
