"""Weights: a batch of INR parameters in PyTorch orientation, shared by every stage.

``weights[i]`` is ``(B, d_{i+1}, d_i)`` and ``biases[i]`` is ``(B, d_{i+1})``.  The layout of the
flat vector is the arch's (:attr:`inrforge.arch.INRSpec.layout`); the DWSNets and nfn layouts
are views of the same numbers:

* DWSNets: weights ``(B, d_i, d_{i+1}, C)`` (transposed) and biases ``(B, d_{i+1}, C)``;
* nfn ``WeightSpaceFeatures``: weights ``(B, C, d_{i+1}, d_i)`` and biases ``(B, C, d_{i+1})``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .arch import INRSpec, require_arch
from .errors import InrforgeError


@dataclass(frozen=True, eq=False)
class Weights:
    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    arch: INRSpec

    def __post_init__(self):
        require_arch(self.arch, "Weights")
        object.__setattr__(self, "weights", tuple(self.weights))
        object.__setattr__(self, "biases", tuple(self.biases))
        if len(self.weights) != self.arch.n_layers or len(self.biases) != self.arch.n_layers:
            raise InrforgeError(
                f"weights have {len(self.weights)} layers but the arch has {self.arch.n_layers}"
            )
        if not all(isinstance(t, torch.Tensor) for t in self.weights + self.biases):
            raise InrforgeError("Weights takes torch tensors (per layer: weight (B, out, in), bias (B, out))")
        first = self.weights[0]
        if not first.dtype.is_floating_point:
            raise InrforgeError(f"INR parameters must be floating point, got {first.dtype}")
        for slot, t in zip(self.arch.layout, self.tensors()):
            if t.dtype != first.dtype or t.device != first.device:
                raise InrforgeError(
                    f"all weights and biases must share one dtype and device: {slot.name} is "
                    f"{t.dtype} on {t.device}, layers.0.weight is {first.dtype} on {first.device}"
                )
        b = first.shape[0] if first.ndim else 0
        for i, (w, bias, ws, bs) in enumerate(zip(self.weights, self.biases, self.arch.weight_shapes, self.arch.bias_shapes)):
            if tuple(w.shape) != (b, *ws) or tuple(bias.shape) != (b, *bs):
                raise InrforgeError(
                    f"layer {i}: got weight {tuple(w.shape)} / bias {tuple(bias.shape)}, "
                    f"arch expects {(b, *ws)} / {(b, *bs)}"
                )

    # ----- basics -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.weights[0].shape[0]

    @property
    def batch_size(self) -> int:
        return len(self)

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """All tensors in layout order: W0, b0, W1, b1, ..."""
        return tuple(t for pair in zip(self.weights, self.biases) for t in pair)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Weights":
        """Apply ``fn`` to every weight and bias tensor (it must keep shapes)."""
        return Weights(tuple(fn(w) for w in self.weights), tuple(fn(b) for b in self.biases), self.arch)

    def to(self, *args, **kwargs) -> "Weights":
        return self.map(lambda t: t.to(*args, **kwargs))

    def __getitem__(self, index) -> "Weights":
        """Select INRs along the batch dimension (int, slice, index tensor or bool mask).

        A single index (a Python or numpy int, or a 0-d integer tensor / array) keeps the batch
        dimension; out of range it raises IndexError (so ``for one in weights`` stops at the end).
        Anything that would reach past the batch dimension (a tuple such as ``w[:, perm]``, which
        would index every tensor's own axes, ``None``, ``...``, a lone bool) is an InrforgeError.
        """
        if (index is None or index is Ellipsis or isinstance(index, (tuple, bool, np.bool_))
                or (isinstance(index, torch.Tensor) and index.ndim == 0 and index.dtype == torch.bool)):
            raise InrforgeError(f"Weights index the batch of INRs only (an int, slice, index list or mask), "
                                f"got {index!r:.60}; permute neurons with inrforge.align.apply_permutation")
        if isinstance(index, torch.Tensor):
            if index.ndim == 0 and not index.dtype.is_floating_point and index.dtype != torch.bool:
                index = int(index)
        elif isinstance(index, (np.integer, np.ndarray)) and np.ndim(index) == 0 and index.dtype.kind in "iu":
            index = int(index)
        if isinstance(index, int) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"INR index {index} is out of range for a batch of {n}")
            index = index % n
            index = slice(index, index + 1)
        return self.map(lambda t: t[index])

    @staticmethod
    def cat(items: Sequence["Weights"]) -> "Weights":
        items = list(items)
        if not items:
            raise InrforgeError("Weights.cat needs at least one batch")
        arch = items[0].arch
        if any(it.arch != arch for it in items):
            raise InrforgeError("cannot concatenate weights of different architectures")
        if any(it.dtype != items[0].dtype for it in items):
            raise InrforgeError(f"cannot concatenate weights of different dtypes: "
                                f"{sorted({str(it.dtype) for it in items})}")
        n = arch.n_layers
        return Weights(
            tuple(torch.cat([it.weights[i] for it in items]) for i in range(n)),
            tuple(torch.cat([it.biases[i] for it in items]) for i in range(n)),
            arch,
        )

    # ----- flat layout --------------------------------------------------------------------
    def flatten(self) -> torch.Tensor:
        """(B, P) in the arch's flat layout."""
        return torch.cat([t.flatten(1) for t in self.tensors()], dim=1)  # flatten(1): B = 0 too

    @classmethod
    def from_flat(cls, flat: torch.Tensor, arch: INRSpec) -> "Weights":
        """Inverse of :meth:`flatten`; the tensors are views of ``flat`` where possible."""
        require_arch(arch, "Weights.from_flat")
        flat = torch.as_tensor(flat)
        if flat.ndim != 2 or flat.shape[1] != arch.param_count:
            raise InrforgeError(
                f"flat parameters of shape {tuple(flat.shape)} do not match the arch "
                f"({arch.param_count} parameters per INR)"
            )
        b = flat.shape[0]
        parts = [flat[:, s.offset : s.offset + s.size].reshape(b, *s.shape) for s in arch.layout]
        return cls(tuple(parts[0::2]), tuple(parts[1::2]), arch)

    # ----- other libraries' layouts --------------------------------------------------------
    def to_dws(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """DWSNets layout: weights (B, d_in, d_out, 1) and biases (B, d_out, 1)."""
        return (
            tuple(w.transpose(1, 2).unsqueeze(-1) for w in self.weights),
            tuple(b.unsqueeze(-1) for b in self.biases),
        )

    @classmethod
    def from_dws(cls, weights, biases, arch: INRSpec) -> "Weights":
        """Inverse of :meth:`to_dws` (a single channel; a trailing channel dim of 1 is dropped)."""
        ws = tuple((w.squeeze(-1) if w.ndim == 4 else w).transpose(1, 2) for w in weights)
        bs = tuple(b.squeeze(-1) if b.ndim == 3 else b for b in biases)
        return cls(ws, bs, arch)

    def to_nfn(self) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """nfn ``WeightSpaceFeatures`` layout: weights (B, 1, d_out, d_in), biases (B, 1, d_out)."""
        return tuple(w.unsqueeze(1) for w in self.weights), tuple(b.unsqueeze(1) for b in self.biases)

    @classmethod
    def from_nfn(cls, weights, biases, arch: INRSpec) -> "Weights":
        """Inverse of :meth:`to_nfn` (a single channel)."""
        return cls(tuple(w.squeeze(1) for w in weights), tuple(b.squeeze(1) for b in biases), arch)
