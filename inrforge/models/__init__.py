"""Weight-space models: DWSNet (equivariant / invariant) and the flat-MLP baseline.

A model is built for an :class:`~inrforge.arch.INRSpec` and takes any batch of the same widths:
the hidden-neuron permutation symmetry, hence the model's shapes, depends on the widths alone, so a
DWSNet built for a SIREN also reads ReLU or Fourier-feature INRs of those widths (what it learns
from them is another matter).  Other widths are an InrforgeError.
"""

import inspect

import torch

from ..checks import byte_size, check_device, whole_number
from ..errors import InrforgeError, first_line
from ..memory import free_bytes
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
    "require_training_memory",
]

MODELS = ("dwsnet", "mlp")
_DWSNET_OPTIONS = inspect.signature(DWSNet).parameters  # its keyword options and their defaults


def build_model(name: str, arch, out_features: int, /, hidden: int | None = None, depth: int | None = None,
                dropout: float = 0.0, mlp_hidden=None, batch_size: int | None = None, device: str = "cpu",
                **kw) -> torch.nn.Module:
    """The model ``name`` of :data:`MODELS` for INRs of ``arch``, with ``out_features`` outputs:
    DWSNet (``hidden`` channels, ``depth`` layers and other DWSNet options in ``kw``; what is not
    given takes :class:`DWSNet`'s defaults) or the flat MLP (``mlp_hidden`` widths, default
    :class:`FlatMLP`'s), both with ``dropout``.  An option the chosen model does not take is an
    :class:`InrforgeError`, not ignored; so is a model too large for this machine's memory, and,
    given the training ``batch_size``, a DWSNet whose training steps cannot fit in ``device``'s
    free memory (:func:`require_training_memory`), before it is built."""
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
        if batch_size is not None:
            require_training_memory(arch, hidden, depth, batch_size, device)
    try:
        if name == "dwsnet":
            return DWSNet(arch, out_features, hidden=hidden, depth=depth, dropout=dropout, **kw)
        return FlatMLP(arch, out_features, dropout=dropout, **({} if mlp_hidden is None else {"hidden": mlp_hidden}))
    except (torch.OutOfMemoryError, RuntimeError) as e:  # the CPU allocator's failure is a RuntimeError
        if not isinstance(e, torch.OutOfMemoryError) and "allocate" not in str(e):
            raise
        what = f"a DWSNet of {hidden} channels and {depth} layers" if name == "dwsnet" else "the flat MLP"
        raise InrforgeError(f"{what} does not fit in this machine's memory ({first_line(e)})") from None


def require_training_memory(arch, hidden: int, depth: int, batch_size: int, device: str = "cpu") -> None:
    """An :class:`InrforgeError` when a training step of a DWSNet of ``depth`` layers x ``hidden``
    channels on batches of ``batch_size`` INRs of ``arch`` cannot fit in ``device``'s free memory.

    Each equivariant layer's output holds a value per (sample, INR entry, channel), and backward
    keeps at least that: ``batch x arch.param_count x hidden x depth`` floats, a lower bound (the
    pooled terms, norms and gradients come on top), so nothing that would fit is refused.  A typo
    such as ``--depth 10000`` (720 GiB of activations for the MNIST INR at batch 512) would
    otherwise build the model, then be killed by the kernel without a word at its first step.
    """
    hidden, depth = whole_number(hidden, "DWSNet hidden"), whole_number(depth, "DWSNet depth")
    batch_size = whole_number(batch_size, "batch_size")
    need = 4 * batch_size * arch.param_count * hidden * depth
    free = free_bytes(check_device(device))
    if need > free:
        where = "this machine" if torch.device(device).type == "cpu" else f"the GPU {device}"
        raise InrforgeError(f"training a DWSNet of {depth} layers x {hidden} channels on batches of {batch_size} "
                            f"keeps at least {byte_size(need)} of activations, more than {where} has free "
                            f"({byte_size(free)}); use a smaller batch size, depth or hidden width")
