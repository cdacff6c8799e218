import math

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
