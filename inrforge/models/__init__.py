"""Weight-space models: DWSNet (equivariant / invariant) and the flat-MLP baseline.

A model is built for an :class:`~inrforge.arch.INRSpec` and takes any batch of the same widths:
the hidden-neuron permutation symmetry, hence the model's shapes, depends on the widths alone, so a
DWSNet built for a SIREN also reads ReLU or Fourier-feature INRs of those widths (what it learns
from them is another matter).  Other widths are an InrforgeError.
"""

import inspect

import torch

from ..errors import InrforgeError, first_line
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
    "MODELS",
    "build_model",
]

MODELS = ("dwsnet", "mlp")
_DWSNET_OPTIONS = inspect.signature(DWSNet).parameters  # its keyword options and their defaults


def build_model(name: str, arch, out_features: int, /, hidden: int | None = None, depth: int | None = None,
                dropout: float = 0.0, mlp_hidden=None, **kw) -> torch.nn.Module:
    """The model ``name`` of :data:`MODELS` for INRs of ``arch``, with ``out_features`` outputs:
    DWSNet (``hidden`` channels, ``depth`` layers and other DWSNet options in ``kw``; what is not
    given takes :class:`DWSNet`'s defaults) or the flat MLP (``mlp_hidden`` widths, default
    :class:`FlatMLP`'s), both with ``dropout``.  An option the chosen model does not take is an
    :class:`InrforgeError`, not ignored; so is a model too large for this machine's memory."""
    if name not in MODELS:
        raise InrforgeError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "mlp":
        given = sorted([*kw, *(k for k, v in (("hidden", hidden), ("depth", depth)) if v is not None)])
        if given:
            raise InrforgeError(f"model option(s) {', '.join(given)} are DWSNet's; the flat MLP takes dropout and "
                                f"mlp_hidden")
    else:
        if mlp_hidden is not None:
            raise InrforgeError("mlp_hidden is the flat MLP's option; DWSNet takes hidden and depth")
        unknown = sorted(set(kw) - (set(_DWSNET_OPTIONS) - {"arch", "out_features"}))
        if unknown:
            raise InrforgeError(f"unknown DWSNet option(s) {', '.join(unknown)} (the arch and the number of "
                                f"outputs come from the store)")
        hidden = _DWSNET_OPTIONS["hidden"].default if hidden is None else hidden
        depth = _DWSNET_OPTIONS["depth"].default if depth is None else depth
    try:
        if name == "dwsnet":
            return DWSNet(arch, out_features, hidden=hidden, depth=depth, dropout=dropout, **kw)
        return FlatMLP(arch, out_features, dropout=dropout, **({} if mlp_hidden is None else {"hidden": mlp_hidden}))
    except (torch.OutOfMemoryError, RuntimeError) as e:  # the CPU allocator's failure is a RuntimeError
        if not isinstance(e, torch.OutOfMemoryError) and "allocate" not in str(e):
            raise
        what = f"a DWSNet of {hidden} channels and {depth} layers" if name == "dwsnet" else "the flat MLP"
        raise InrforgeError(f"{what} does not fit in this machine's memory ({first_line(e)})") from None
