"""Baselines that ignore the weight-space symmetry.

:class:`FlatMLP` is an MLP on the flat parameter vector (``Weights.flatten()``, the arch's layout).
It is the model behind the three MLP baselines of the DWSNets paper (not its other,
non-equivariant baselines): plain, with hidden-neuron permutation augmentation, and with alignment
(weight matching) of every INR to a reference.  Augmentation and alignment are data-side
transforms applied before the model sees the weights; the model itself is the same.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..arch import INRSpec, require_arch
from ..checks import probability, whole_number
from ..errors import InrforgeError
from ..weights import Weights

__all__ = ["FlatMLP", "mlp"]


def mlp(in_features: int, hidden: Sequence[int], out_features: int, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> ReLU -> [Dropout] per width of ``hidden`` (dropout when ``dropout > 0``), then a
    final Linear to ``out_features``; the Linears are created (and initialised) in that order."""
    layers, n = [], in_features
    for h in hidden:
        layers += [nn.Linear(n, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n = h
    layers.append(nn.Linear(n, out_features))
    return nn.Sequential(*layers)


class FlatMLP(nn.Module):
    """MLP over the flattened INR parameters: ``Weights`` or ``(B, P)`` tensor -> ``(B, out_features)``.

    ``hidden`` are the hidden widths (Linear -> ReLU -> [Dropout] each), then a final Linear.
    """

    def __init__(self, arch: INRSpec, out_features: int, hidden: Sequence[int] = (256, 256, 256), dropout: float = 0.0):
        super().__init__()
        self.arch = require_arch(arch, "FlatMLP")
        out_features = whole_number(out_features, "FlatMLP out_features")
        hidden = [whole_number(h, "FlatMLP hidden widths") for h in hidden]
        dropout = probability(dropout, "dropout", closed_top=False)
        self.net = mlp(arch.param_count, hidden, out_features, dropout)

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, Weights):
            self.arch.require_widths(x.arch)
            x = x.flatten()
        if x.ndim != 2 or x.shape[1] != self.arch.param_count:
            raise InrforgeError(f"expected (B, {self.arch.param_count}) flat parameters, got {tuple(x.shape)}")
        return self.net(x)
