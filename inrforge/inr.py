"""The one batched INR forward, used by fitting, rendering, tests and augmentation checks.

For a batch of B INRs with parameters ``W_i`` (B, d_{i+1}, d_i) and ``b_i`` (B, d_{i+1}) and
coordinates ``x`` ((N, in) shared by all INRs, or (B, N, in) per INR):

    h_0 = gamma(x)                       (Fourier features if the arch has them, else x)
    h_{i+1} = act(h_i W_i^T + b_i)        act = sin(w0 * .) for SIREN, relu for ReLU
    f(x) = h_{L-1} W_{L-1}^T + b_{L-1} + output_offset

returns (B, N, d_L).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .arch import INRSpec
from .errors import InrforgeError
from .weights import Weights


def encode(arch: INRSpec, coords: torch.Tensor) -> torch.Tensor:
    """The MLP's input for ``coords``: ``[cos(2 pi x B^T), sin(2 pi x B^T)]`` or ``coords`` itself."""
    if arch.fourier is None:
        return coords
    proj = (2 * math.pi) * coords @ arch.fourier.matrix().to(coords.device, coords.dtype).T
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)


def forward(
    arch: INRSpec,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    coords: torch.Tensor,
    encoded: bool = False,
) -> torch.Tensor:
    """Evaluate B INRs given as per-layer tensors; see the module docstring for the math.

    ``encoded=True`` means ``coords`` already went through :func:`encode` (the fitter does that
    once instead of every step).
    """
    h = coords if encoded else encode(arch, coords)
    if h.ndim == 2:  # shared coordinates: broadcast over the batch
        h = h.unsqueeze(0).expand(weights[0].shape[0], -1, -1)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < last:
            h = torch.sin(arch.w0 * h) if arch.family == "siren" else torch.relu(h)
    return h + arch.output_offset if arch.output_offset else h


def render(weights: Weights, coords: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Evaluate a batch of INRs at ``coords`` ((N, in) or (B, N, in)) -> (B, N, out).

    ``chunk`` bounds memory by evaluating that many INRs at a time.  Coordinates of another shape
    (a missing ``in`` axis, a per-INR batch of another size) are an :class:`InrforgeError`.
    """
    if not isinstance(coords, torch.Tensor):
        coords = torch.as_tensor(coords)
    arch, n = weights.arch, len(weights)
    shared = coords.ndim == 2 and coords.shape[1] == arch.in_features
    per_inr = coords.ndim == 3 and coords.shape[0] == n and coords.shape[2] == arch.in_features
    if not (shared or per_inr):
        raise InrforgeError(f"coordinates of shape {tuple(coords.shape)} do not fit {n} INRs of "
                            f"{arch.in_features}-D inputs: expected (N, {arch.in_features}) or "
                            f"({n}, N, {arch.in_features})")
    if chunk is not None and (isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1):
        raise InrforgeError(f"chunk must be a positive number of INRs, got {chunk!r}")
    coords = coords.to(weights.device, weights.dtype)
    if chunk is None or len(weights) <= chunk:
        return forward(weights.arch, weights.weights, weights.biases, coords)
    outs = []
    for s in range(0, len(weights), chunk):
        part = weights[s : s + chunk]
        c = coords if coords.ndim == 2 else coords[s : s + chunk]
        outs.append(forward(part.arch, part.weights, part.biases, c))
    return torch.cat(outs)


def image_grid(height: int, width: int) -> torch.Tensor:
    """Coordinates of an H x W image: ``coords[r * W + c] = (lin_H[r], lin_W[c])``, lin_n = linspace(-1, 1, n)."""
    r = torch.linspace(-1, 1, height)
    c = torch.linspace(-1, 1, width)
    return torch.stack(torch.meshgrid(r, c, indexing="ij"), dim=-1).reshape(-1, 2)


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for targets in [0, 1]: 10 log10(1 / MSE)."""
    return -10.0 * torch.log10(mse)
