import itertools

import numpy as np
import pytest
import torch

from inrforge.arch import INRSpec
from inrforge.errors import InrforgeError
from inrforge.weights import Weights

ARCH = INRSpec(widths=(2, 5, 7, 3))


def random_weights(b=4, arch=ARCH):
    return Weights.from_flat(torch.randn(b, arch.param_count), arch)


def test_flat_round_trip_follows_the_layout():
    flat = torch.randn(4, ARCH.param_count)
    w = Weights.from_flat(flat, ARCH)
    assert torch.equal(w.flatten(), flat)
    s = ARCH.layout[2]  # layers.1.weight
    assert torch.equal(w.weights[1], flat[:, s.offset: s.offset + s.size].reshape(4, 7, 5))
    assert [tuple(t.shape) for t in w.weights] == [(4, 5, 2), (4, 7, 5), (4, 3, 7)]


def test_dws_and_nfn_layouts_round_trip():
    w = random_weights()
    dw, db = w.to_dws()
    assert dw[0].shape == (4, 2, 5, 1) and db[0].shape == (4, 5, 1)
    assert torch.equal(dw[1][..., 0], w.weights[1].transpose(1, 2))
    assert torch.equal(Weights.from_dws(dw, db, ARCH).flatten(), w.flatten())
    nw, nb = w.to_nfn()
    assert nw[2].shape == (4, 1, 3, 7) and nb[2].shape == (4, 1, 3)
    assert torch.equal(Weights.from_nfn(nw, nb, ARCH).flatten(), w.flatten())


def test_shape_mismatch_is_reported():
    w = random_weights()
    with pytest.raises(InrforgeError, match="layer 1"):
        Weights(w.weights, (w.biases[0], w.biases[1][:, :3], w.biases[2]), ARCH)
    with pytest.raises(InrforgeError, match="arch has 3"):
        Weights(w.weights[:2], w.biases[:2], ARCH)
    with pytest.raises(InrforgeError, match="do not match"):
        Weights.from_flat(torch.zeros(2, 5), ARCH)


def test_indexing_cat_map_to():
    w = random_weights(6)
    parts = [w[0:2], w[torch.tensor([2, 3])], w[4], w[-1]]
    assert torch.equal(Weights.cat(parts).flatten(), w.flatten())
    for single in (np.int64(4), torch.tensor(4), -2):  # one INR, batch dimension kept
        assert torch.equal(w[single].flatten(), w.flatten()[4:5])
    assert torch.equal(w[torch.arange(6) % 2 == 0].flatten(), w.flatten()[::2])
    assert torch.equal(w.map(lambda t: 2 * t).flatten(), 2 * w.flatten())
    assert w.to(torch.float64).dtype == torch.float64
    assert len(w) == 6 and w.batch_size == 6
    with pytest.raises(InrforgeError, match="different architectures"):
        Weights.cat([w, random_weights(2, INRSpec(widths=(2, 5, 7, 1)))])


def test_out_of_range_index_raises_and_iteration_stops():
    w = random_weights(4)
    for bad in (4, -5, np.int64(7), torch.tensor(4)):
        with pytest.raises(IndexError, match="out of range"):
            w[bad]
    # Python's iteration protocol stops at IndexError: one single-INR batch per element, no more.
    items = list(itertools.islice(iter(w), 6))
    assert len(items) == 4
    assert torch.equal(Weights.cat(items).flatten(), w.flatten())
    assert torch.equal(w[np.array(2)].flatten(), w.flatten()[2:3])  # 0-d array: one INR, batch dim kept


def test_empty_batch_flattens():
    empty = Weights.from_flat(torch.zeros(0, ARCH.param_count), ARCH)
    assert len(empty) == 0 and empty.flatten().shape == (0, ARCH.param_count)
    assert random_weights(3)[torch.zeros(3, dtype=torch.bool)].flatten().shape == (0, ARCH.param_count)


def test_inconsistent_tensors_and_bad_arguments_are_reported():
    w = random_weights()
    with pytest.raises(InrforgeError, match="layers.1.bias is torch.float64"):
        Weights(w.weights, (w.biases[0], w.biases[1].double(), w.biases[2]), ARCH)
    with pytest.raises(InrforgeError, match="INRSpec"):
        Weights(w.weights, w.biases, ARCH.to_dict())
    with pytest.raises(InrforgeError, match="torch tensors"):
        Weights([t.numpy() for t in w.weights], w.biases, ARCH)
    with pytest.raises(InrforgeError, match="at least one"):
        Weights.cat([])
    with pytest.raises(InrforgeError, match="^Weights.from_flat needs an INRSpec as arch"):
        Weights.from_flat(w.flatten(), ARCH.to_dict())
    with pytest.raises(InrforgeError, match="^INR parameters must be floating point, got torch.int64"):
        Weights.from_flat(torch.zeros(2, ARCH.param_count, dtype=torch.int64), ARCH)
    with pytest.raises(InrforgeError, match=r"different dtypes: \['torch.float32', 'torch.float64'\]"):
        Weights.cat([w, w.to(torch.float64)])


@pytest.mark.parametrize("index", [(slice(None), [1, 0, 2, 3, 4]), (0,), None, Ellipsis, True, np.bool_(False),
                                   torch.tensor(True)])
def test_an_index_past_the_batch_dimension_is_refused(index):
    """``w[:, perm]`` would index every tensor's own axes; on a net whose tensors all keep valid
    shapes it would silently give another function (a square relu arch permutes even its output
    layer), so anything but a batch index is refused."""
    square = INRSpec(widths=(5, 5, 5, 5), family="relu", init="relu")
    with pytest.raises(InrforgeError, match="^Weights index the batch of INRs only"):
        random_weights(5, square)[index]
