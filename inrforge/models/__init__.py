"""Weight-space models: DWSNet (equivariant / invariant) and the flat-MLP baseline."""

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
