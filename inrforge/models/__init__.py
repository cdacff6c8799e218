"""Weight-space models: DWSNet (equivariant / invariant) and the flat-MLP baseline.

A model is built for an :class:`~inrforge.arch.INRSpec` and takes any batch of the same widths:
the hidden-neuron permutation symmetry, hence the model's shapes, depends on the widths alone, so a
DWSNet built for a SIREN also reads ReLU or Fourier-feature INRs of those widths (what it learns
from them is another matter).  Other widths are an InrforgeError.
"""

from .baselines import FlatMLP
from .dwsnet import (
    DWSLayer,
    DWSNet,
    DWSNetEquivariant,
    InvariantPool,
    TensorSlot,
    WSFeatures,
    WSNorm,
    tensor_slots,
)

__all__ = [
    "DWSLayer",
    "DWSNet",
    "DWSNetEquivariant",
    "InvariantPool",
    "WSFeatures",
    "WSNorm",
    "TensorSlot",
    "tensor_slots",
    "FlatMLP",
]
