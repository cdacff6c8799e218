import pytest
import torch

from inrforge.align import apply_permutation, identity_permutations, random_permutations, weight_matching
from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.inr import image_grid, render
from inrforge.weights import Weights

ARCHS = [
    make_arch("siren", hidden=16, depth=2),
    make_arch("siren-dwsnets", hidden=16, depth=2),  # zero biases
    make_arch("siren", hidden=12, depth=3, out_features=3),
    make_arch("relu", hidden=16, depth=2),
    make_arch("relu-fourier", hidden=16, depth=2, fourier_features=8),
]


def batch(arch, n, seed=0, dtype=torch.float64):
    return Weights.from_flat(arch.init_flat(range(seed, seed + n)).to(dtype), arch)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_random_permutations_are_permutations():
    arch = ARCHS[2]
    perms = random_permutations(arch, 50, gen(0))
    assert [tuple(p.shape) for p in perms] == [(50, 12)] * 3
    for p in perms:
        assert p.dtype == torch.int64
        assert torch.equal(p.sort(dim=1).values, torch.arange(12).expand(50, -1))
    assert not torch.equal(perms[0][0], perms[0][1])
    assert torch.equal(perms[1], random_permutations(arch, 50, gen(0))[1])
    assert [tuple(p.shape) for p in random_permutations(arch, 0)] == [(0, 12)] * 3
    with pytest.raises(InrforgeError, match="^random_permutations batch must be an integer >= 0, got -1"):
        random_permutations(arch, -1)


def test_apply_permutation_convention_and_exactness():
    arch = ARCHS[0]
    w = batch(arch, 3)
    perms = random_permutations(arch, 3, gen(1))
    out = apply_permutation(w, perms)
    p0, p1 = perms
    for k in range(3):  # new neuron j is old neuron p[j]
        assert torch.equal(out.weights[0][k], w.weights[0][k][p0[k]])
        assert torch.equal(out.biases[0][k], w.biases[0][k][p0[k]])
        assert torch.equal(out.weights[1][k], w.weights[1][k][p1[k]][:, p0[k]])
        assert torch.equal(out.weights[2][k], w.weights[2][k][:, p1[k]])
    assert torch.equal(out.biases[2], w.biases[2])
    x = image_grid(10, 10).double()
    assert (render(out, x) - render(w, x)).abs().max() < 1e-10
    ident = apply_permutation(w, identity_permutations(arch, 3))
    assert torch.equal(ident.flatten(), w.flatten())
    # a single (d,) permutation applies to the whole batch
    shared = apply_permutation(w, [p0[0], p1[0]])
    assert torch.equal(shared[0].flatten(), out[0].flatten())
    with pytest.raises(InrforgeError):
        apply_permutation(w, [p0])
    with pytest.raises(InrforgeError):
        apply_permutation(w, [p0[:2], p1[:2]])


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.init}{a.widths}")
def test_recovers_inverse_of_permuted_copies_batched(arch):
    n = 24
    a = batch(arch, n)
    perms = random_permutations(arch, n, gen(2))
    b = apply_permutation(a, perms)
    found, b_aligned = weight_matching(a, b, generator=gen(3))
    assert torch.equal(b_aligned.flatten(), a.flatten())  # every pair recovered exactly
    assert torch.equal(apply_permutation(b, found).flatten(), b_aligned.flatten())
    for p, q in zip(perms, found):  # found is the inverse of perms
        assert torch.equal(torch.gather(p, 1, q), torch.arange(p.shape[1]).expand_as(p))


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.init}{a.widths}")
@pytest.mark.parametrize("init", ["forward", "identity"])
def test_alignment_never_increases_distance_and_keeps_function(arch, init):
    n = 32
    a, b = batch(arch, n, seed=0), batch(arch, n, seed=100)
    perms, b_aligned = weight_matching(a, b, generator=gen(4), init=init)
    before = (a.flatten() - b.flatten()).norm(dim=1)
    after = (a.flatten() - b_aligned.flatten()).norm(dim=1)
    assert (after <= before + 1e-12).all()
    assert (after < before - 1e-6).float().mean() > 0.9  # and it does something
    x = image_grid(9, 9).double()
    assert (render(b_aligned, x) - render(b, x)).abs().max() < 1e-5
    for p in perms:
        assert p.dtype == torch.int64 and p.shape[0] == n
        assert torch.equal(p.sort(dim=1).values, torch.arange(p.shape[1]).expand_as(p))


def test_alignment_is_a_local_optimum_and_deterministic():
    arch = ARCHS[0]
    a, b = batch(arch, 8, seed=0), batch(arch, 8, seed=50)
    perms, b_aligned = weight_matching(a, b, generator=gen(5))
    perms2, _ = weight_matching(a, b, generator=gen(5))
    assert all(torch.equal(p, q) for p, q in zip(perms, perms2))
    # re-aligning the aligned result changes nothing
    again, _ = weight_matching(a, b_aligned, init="identity", generator=gen(6))
    for p in again:
        assert torch.equal(p, torch.arange(p.shape[1]).expand_as(p))


def test_alignment_stops_only_when_no_layer_can_improve():
    """The documented stop: every layer's assignment is optimal given its neighbours' (no single
    linear assignment improves it), with three hidden layers, where a single sweep or a changed
    layer that does not re-open its neighbours leaves improvements behind."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from inrforge.align import _layer_cost

    arch = make_arch("siren", hidden=12, depth=4)
    a, b = batch(arch, 32, seed=0), batch(arch, 32, seed=100)
    perms, _ = weight_matching(a, b, generator=gen(4))
    for layer in range(len(perms)):
        cost = _layer_cost(a, b, layer, perms, None).numpy()
        for n in range(len(cost)):
            current = cost[n][np.arange(cost.shape[1]), perms[layer][n].numpy()].sum()
            rows, cols = linear_sum_assignment(cost[n], maximize=True)
            assert cost[n][rows, cols].sum() - current <= 1e-9, (layer, n)


def test_the_forward_init_recovers_permuted_copies_in_one_sweep():
    """``init="forward"`` starts from the better of the identity and the layer-by-layer forward
    matching: on permuted copies that start is already exact, so one sweep recovers every pair
    (from the identity, one sweep recovers few)."""
    arch = make_arch("siren", hidden=12, depth=4)
    a = batch(arch, 32)
    b = apply_permutation(a, random_permutations(arch, 32, gen(2)))
    exact = {}
    for init in ("forward", "identity"):
        _, aligned = weight_matching(a, b, max_iter=1, init=init, generator=gen(3))
        exact[init] = int((aligned.flatten() == a.flatten()).all(1).sum())
    assert exact["forward"] == 32 and exact["identity"] < 16


def test_random_permutations_are_uniform():
    """Every permutation of a width-4 layer is drawn, each about as often (a draw of shifts or
    reversals only would still pass the checks that each row is a permutation)."""
    arch = make_arch("siren", hidden=4, depth=3)
    for p in random_permutations(arch, 4800, gen(0)):
        counts = torch.unique(p, dim=0, return_counts=True)[1]
        assert len(counts) == 24 and counts.min() > 120 and counts.max() < 280  # ~200 each (sd 14)


def test_float32_and_errors():
    arch = make_arch("siren-dwsnets")
    a = batch(arch, 4, dtype=torch.float32)
    b = apply_permutation(a, random_permutations(arch, 4, gen(7)))
    _, al = weight_matching(a, b)
    assert torch.equal(al.flatten(), a.flatten())
    with pytest.raises(InrforgeError):
        weight_matching(a, a[:2])
    with pytest.raises(InrforgeError):
        weight_matching(a, batch(ARCHS[0], 4, dtype=torch.float32))
    with pytest.raises(InrforgeError):
        weight_matching(a, b, init="nope")
    with pytest.raises(InrforgeError):
        weight_matching(a, b, max_iter=0)


def test_apply_permutation_rejects_non_permutations():
    arch = ARCHS[0]
    w = batch(arch, 3)
    ok = random_permutations(arch, 3, gen(8))
    dup = ok[0].clone()
    dup[1, 0] = dup[1, 1]  # one row repeats a neuron and drops another
    out_of_range = ok[0].clone()
    out_of_range[2, 3] = 16
    for bad in (dup, out_of_range, -1 - ok[0]):
        with pytest.raises(InrforgeError, match="hidden layer 0 is not a permutation"):
            apply_permutation(w, [bad, ok[1]])
    with pytest.raises(InrforgeError, match="hidden layer 1 is not a permutation"):
        apply_permutation(w, [ok[0], torch.zeros(16, dtype=torch.long)])


def test_weight_matching_edge_cases():
    arch = ARCHS[0]
    a, b = batch(arch, 4), batch(arch, 4, seed=10)
    # an empty batch (e.g. a filtered one) is fine
    perms, al = weight_matching(a[0:0], b[0:0])
    assert [tuple(p.shape) for p in perms] == [(0, 16), (0, 16)] and len(al) == 0
    # a diverged INR gets a clear error naming it, not scipy's "invalid numeric entries"
    flat = b.flatten().clone()
    flat[2, 5] = float("nan")
    with pytest.raises(InrforgeError, match=r"pairs \[2\].*non-finite"):
        weight_matching(a, Weights.from_flat(flat, arch))
    # a seed instead of a generator is a clear error
    with pytest.raises(InrforgeError, match="torch.Generator"):
        weight_matching(a, b, generator=0)
    with pytest.raises(InrforgeError, match="torch.Generator"):
        random_permutations(arch, 2, generator=0)
