"""FlatMLP baseline: shapes, input checks, parameter count, it learns, it is not invariant."""

from __future__ import annotations

import pytest
import torch

from inrforge import INRSpec, InrforgeError, Weights
from inrforge.models import FlatMLP


def arch_of(widths) -> INRSpec:
    return INRSpec(widths=tuple(widths), family="relu", init="relu")


def test_shapes_and_inputs():
    arch = arch_of((2, 5, 7, 3))
    net = FlatMLP(arch, 4, hidden=(16, 8))
    flat = torch.randn(6, arch.param_count)
    w = Weights.from_flat(flat, arch)
    out = net(w)
    assert out.shape == (6, 4)
    torch.testing.assert_close(net(flat), out)
    n = sum(p.numel() for p in net.parameters())
    assert n == (arch.param_count + 1) * 16 + 17 * 8 + 9 * 4
    with pytest.raises(InrforgeError, match=r"^expected \(B, 81\) flat parameters, got \(6, 82\)$"):
        net(torch.randn(6, arch.param_count + 1))
    with pytest.raises(InrforgeError, match=r"^input widths \[2, 4, 3\] do not match the model's \[2, 5, 7, 3\]$"):
        net(Weights.from_flat(torch.randn(2, arch_of((2, 4, 3)).param_count), arch_of((2, 4, 3))))
    with pytest.raises(InrforgeError):
        FlatMLP(arch, 0)
    with pytest.raises(InrforgeError, match=r"^dropout must be in \[0, 1\), got 1.5"):
        FlatMLP(arch, 3, dropout=1.5)
    with pytest.raises(InrforgeError, match="^FlatMLP needs an INRSpec as arch"):
        FlatMLP("siren", 2)
    with pytest.raises(InrforgeError, match="^FlatMLP hidden widths must be a positive integer, got 2.5"):
        FlatMLP(arch, 2, hidden=(8, 2.5))


def test_default_and_dropout():
    arch = arch_of((2, 32, 32, 1))
    net = FlatMLP(arch, 10, dropout=0.2)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 3
    x = torch.randn(3, arch.param_count)
    assert not torch.equal(net(x), net(x))  # dropout acts in training
    net.eval()
    torch.testing.assert_close(net(x), net(x))  # and not in eval


def test_not_permutation_invariant():
    """The baseline ignores the symmetry: permuting hidden neurons changes its output."""
    torch.manual_seed(0)
    arch = arch_of((2, 5, 3))
    net = FlatMLP(arch, 2, hidden=(16,))
    w = Weights.from_flat(torch.randn(4, arch.param_count), arch)
    p = torch.tensor([1, 2, 3, 4, 0])
    wp = Weights((w.weights[0][:, p], w.weights[1][:, :, p]), (w.biases[0][:, p], w.biases[1]), arch)
    assert (net(wp) - net(w)).abs().max() > 1e-4


def test_learns():
    torch.manual_seed(0)
    arch = arch_of((2, 6, 1))
    x = torch.randn(256, arch.param_count)
    y = x[:, :3].sum(1, keepdim=True) - x[:, -1:]
    net = FlatMLP(arch, 1, hidden=(32,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
