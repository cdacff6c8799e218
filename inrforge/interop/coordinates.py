"""DWSNets' coordinate order, ``(x, y) = (column, row)``, against inrforge's ``(row, column)``: the
one swap of a 2-D INR's inputs, done on its first weight or on its Fourier matrix, on import and
on export alike."""

from __future__ import annotations

import numpy as np

from ..arch import INRSpec
from ..weights import Weights


def _swaps_inputs(arch: INRSpec) -> bool:
    """True for INRs of 2-D coordinates: DWSNets orders them (x = column, y = row)."""
    return arch.in_features == 2


def _swaps_first_weight(arch: INRSpec) -> bool:
    """True when the coordinate swap is done on the first layer's weight: 2-D coordinates fed to the
    MLP directly.  With Fourier features the first layer reads the features, and the swap is done on
    the Fourier matrix instead (:func:`_dws_fourier_matrix`)."""
    return _swaps_inputs(arch) and arch.fourier is None


def _swap_xy(w: Weights) -> Weights:
    """The same INRs with their two input coordinates exchanged: ``W0 -> W0[..., [1, 0]]`` (the
    columns of the first weight), everything else shared, so that ``f_new(u, v) = f(v, u)``
    exactly (a permutation of inputs, no arithmetic).  It is its own inverse, and the one
    conversion between inrforge's ``(row, column)`` and DWSNets' ``(x = column, y = row)``, on
    import and on export alike."""
    if not _swaps_first_weight(w.arch):
        raise ValueError(f"_swap_xy is for MLPs of 2-D coordinates without Fourier features, got {w.arch}")
    return Weights((w.weights[0][..., [1, 0]], *w.weights[1:]), w.biases, w.arch)


def _dws_fourier_matrix(arch: INRSpec) -> np.ndarray:
    """The Fourier matrix ``B`` (m x in) of a Fourier-feature arch in DWSNets' coordinate order: for
    2-D coordinates its two columns swapped, the same change of variables as :func:`_swap_xy`
    (``B @ (row, col) = B[:, ::-1] @ (col, row)``)."""
    matrix = arch.fourier.matrix().numpy()
    return matrix[:, ::-1] if _swaps_inputs(arch) else matrix
