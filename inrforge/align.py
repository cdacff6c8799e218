"""Hidden-neuron permutations of INR weights, and weight matching (Git Re-Basin) between INRs.

Permutation convention (used everywhere in inrforge): a permutation ``p`` of hidden layer ``i``
(the output of linear layer ``i``, width ``d_{i+1}``) is an int64 tensor ``(B, d_{i+1})`` and
means *new neuron j is old neuron p[j]*:

    W_i'[j, :]     = W_i[p[j], :]
    b_i'[j]        = b_i[p[j]]
    W_{i+1}'[:, j] = W_{i+1}[:, p[j]]

It is an exact symmetry of every MLP whose activation acts element-wise (SIREN and ReLU, with
or without Fourier features): the input and output neurons are never permuted.

:func:`weight_matching` finds, for a batch of pairs ``(A, B)``, the permutations that bring B as
close as possible to A in Euclidean weight distance (maximises ``<theta_A, P theta_B>``) by
coordinate descent over hidden layers, one :func:`scipy.optimize.linear_sum_assignment` per
pair and layer step; the cost matrices are computed batched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .arch import INRSpec
from .checks import check_count
from .errors import InrforgeError
from .weights import Weights

__all__ = ["random_permutations", "apply_permutation", "identity_permutations", "weight_matching"]


def _gen_device(generator, what: str) -> torch.device:
    """The device random numbers are drawn on; a clear error for a seed given as a generator."""
    if generator is None:
        return torch.device("cpu")
    if not isinstance(generator, torch.Generator):
        raise InrforgeError(
            f"{what}: generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
            f"got {type(generator).__name__}"
        )
    return generator.device


def random_permutations(
    arch: INRSpec,
    batch: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[torch.Tensor]:
    """Independent uniform random permutations, one ``(batch, d)`` int64 tensor per hidden layer.

    Drawn as the argsort of uniform random keys (on the generator's device, CPU by default) and
    moved to ``device``.
    """
    batch = check_count("random_permutations batch", batch, minimum=0)
    gen_device = _gen_device(generator, "random_permutations")
    perms = []
    for d in arch.hidden_widths:
        keys = torch.rand(batch, d, generator=generator, device=gen_device)
        perms.append(keys.argsort(dim=1).to(device if device is not None else gen_device))
    return perms


def identity_permutations(arch: INRSpec, batch: int, device=None) -> list[torch.Tensor]:
    """The identity permutation of every hidden layer, ``(batch, d)`` int64 each."""
    return [torch.arange(d, device=device).expand(batch, d).clone() for d in arch.hidden_widths]


def _check_perms(weights: Weights, perms: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    hidden = weights.arch.hidden_widths
    if len(perms) != len(hidden):
        raise InrforgeError(
            f"got {len(perms)} permutations but the arch has {len(hidden)} hidden layers"
        )
    out = []
    b = len(weights)
    for i, (p, d) in enumerate(zip(perms, hidden)):
        p = torch.as_tensor(p, device=weights.device)
        if p.dtype != torch.int64:
            p = p.long()
        if p.ndim == 1:
            p = p.expand(b, -1)
        if tuple(p.shape) != (b, d):
            raise InrforgeError(
                f"permutation of hidden layer {i} has shape {tuple(p.shape)}, expected {(b, d)}"
            )
        out.append(p)
    # Each row must hold every index 0..d-1 once (else the result is not the same function).
    bad = [i for i, (p, d) in enumerate(zip(out, hidden)) if p.numel() and not (
        ((p >= 0) & (p < d)).all()
        and torch.zeros(b, d, dtype=torch.bool, device=p.device).scatter_(1, p.clamp(0, d - 1), True).all()
    )]
    if bad:
        raise InrforgeError(f"the permutation of hidden layer {bad[0]} is not a permutation of 0..{hidden[bad[0]] - 1} "
                            f"in every row")
    return out


def apply_permutation(weights: Weights, perms: Sequence[torch.Tensor]) -> Weights:
    """Permute the hidden neurons of a batch of INRs (see the module docstring for the convention).

    ``perms[i]`` is ``(B, d_{i+1})`` (or ``(d_{i+1},)`` for the whole batch); each row must be a
    permutation of ``0..d_{i+1}-1`` (checked: InrforgeError).  The result computes exactly the
    same function as ``weights``.  One gather per tensor.
    """
    return permute_neurons(weights, _check_perms(weights, perms))


def permute_neurons(weights: Weights, perms: Sequence[torch.Tensor]) -> Weights:
    """:func:`apply_permutation` without the check: for ``(B, d)`` int64 permutations on the
    weights' device that are known to be valid (drawn by :func:`random_permutations`, solved by
    :func:`weight_matching`)."""
    n_hidden = len(perms)
    b = len(weights)
    new_w, new_b = [], []
    for layer, (w, bias) in enumerate(zip(weights.weights, weights.biases)):
        d_out, d_in = w.shape[1], w.shape[2]
        rows = perms[layer] if layer < n_hidden else None
        cols = perms[layer - 1] if layer > 0 else None
        if rows is not None and cols is not None:
            index = rows.unsqueeze(2) * d_in + cols.unsqueeze(1)  # (B, out, in) into the flat matrix
            w = torch.gather(w.reshape(b, d_out * d_in), 1, index.reshape(b, d_out * d_in)).reshape(b, d_out, d_in)
        elif rows is not None:
            w = torch.gather(w, 1, rows.unsqueeze(2).expand(b, d_out, d_in))
        elif cols is not None:
            w = torch.gather(w, 2, cols.unsqueeze(1).expand(b, d_out, d_in))
        if rows is not None:
            bias = torch.gather(bias, 1, rows)
        new_w.append(w)
        new_b.append(bias)
    return Weights(tuple(new_w), tuple(new_b), weights.arch)


def _layer_cost(
    a: Weights, b: Weights, layer: int, perms: list[torch.Tensor], idx: torch.Tensor | None
) -> torch.Tensor:
    """Similarity ``C[n, j, k]`` between neuron j of A and neuron k of B in hidden layer ``layer``.

    ``C[j, k] = <W_l^A[j], W_l^B[k]> + b_l^A[j] b_l^B[k] + <W_{l+1}^A[:, j], W_{l+1}^B[:, k]>``
    where B's incoming columns are taken under the current permutation of layer ``l - 1`` and its
    outgoing rows under that of layer ``l + 1`` (the neighbouring layers stay fixed).
    """
    n_hidden = len(perms)

    def pick(t):
        return t if idx is None else t.index_select(0, idx)

    wa, wb = pick(a.weights[layer]), pick(b.weights[layer])
    if layer > 0:
        q = pick(perms[layer - 1])
        wb = torch.gather(wb, 2, q.unsqueeze(1).expand(-1, wb.shape[1], -1))
    cost = torch.bmm(wa, wb.transpose(1, 2))
    cost.add_(pick(a.biases[layer]).unsqueeze(2) * pick(b.biases[layer]).unsqueeze(1))
    wa2, wb2 = pick(a.weights[layer + 1]), pick(b.weights[layer + 1])
    if layer + 1 < n_hidden:
        r = pick(perms[layer + 1])
        wb2 = torch.gather(wb2, 1, r.unsqueeze(2).expand(-1, -1, wb2.shape[2]))
    cost.baddbmm_(wa2.transpose(1, 2), wb2)
    return cost


def _incoming_cost(a: Weights, b: Weights, layer: int, perms: list[torch.Tensor]) -> torch.Tensor:
    """``C[j, k] = <W_l^A[j], W_l^B[k]> + b_l^A[j] b_l^B[k]`` with B's columns under ``perms[l-1]``."""
    wa, wb = a.weights[layer], b.weights[layer]
    if layer > 0:
        q = perms[layer - 1]
        wb = torch.gather(wb, 2, q.unsqueeze(1).expand(-1, wb.shape[1], -1))
    cost = torch.bmm(wa, wb.transpose(1, 2))
    return cost.add_(a.biases[layer].unsqueeze(2) * b.biases[layer].unsqueeze(1))


def _inner(a: Weights, b: Weights) -> torch.Tensor:
    """Per-pair ``<theta_a, theta_b>``."""
    return sum((ta * tb).reshape(len(a), -1).sum(dim=1) for ta, tb in zip(a.tensors(), b.tensors()))


def _solve(cost: np.ndarray) -> np.ndarray:
    """Row-wise optimal assignments of a stack of square similarity matrices (maximised)."""
    from scipy.optimize import linear_sum_assignment  # here: every CLI command imports this module, few align

    out = np.empty(cost.shape[:2], dtype=np.int64)
    for n in range(cost.shape[0]):
        out[n] = linear_sum_assignment(cost[n], maximize=True)[1]
    return out


def weight_matching(
    a: Weights,
    b: Weights,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
    init: str = "forward",
) -> tuple[list[torch.Tensor], Weights]:
    """Align each INR of ``b`` to the INR of ``a`` at the same batch index (Git Re-Basin).

    Objective: maximise ``<theta_A, P theta_B>`` over hidden-neuron permutations ``P``, i.e.
    minimise ``||theta_A - P theta_B||`` (``||P theta_B|| = ||theta_B||``).

    Start (per pair): with ``init="forward"`` (default) the better, by the objective, of the
    identity and a forward pass that matches each hidden layer on its incoming weights and bias
    only (given the previous layer's match; this recovers a permuted copy exactly); with
    ``init="identity"`` the identity; with ``init="forward-only"`` the forward pass alone.  The
    last is equivariant: ``b`` and any ``P b`` start from the same permuted weights, so (up to ties
    in an assignment) they end aligned to the same weights, which makes the result a function of
    ``b``'s permutation orbit; the identity start is not (it depends on how ``b`` happens to be
    ordered), but it is never worse by the objective.

    Coordinate descent: each sweep visits the hidden layers in a random order (one order per
    sweep, shared by the batch) and replaces that layer's permutation by the optimal assignment
    ``linear_sum_assignment(C, maximize=True)`` for the similarity ``C`` of :func:`_layer_cost`
    given its neighbours.  A permutation only changes on a strict improvement, so the objective
    never decreases and ``||theta_A - P theta_B||`` never exceeds its value at the identity.  A
    layer is only re-solved when a neighbouring layer changed since it was last solved (otherwise
    its assignment cannot improve), so a pair stops exactly when a full sweep would not improve
    it, or after ``max_iter`` sweeps.

    Returns ``(perms, b_aligned)``: ``perms[i]`` is ``(B, d_{i+1})`` int64 and
    ``b_aligned == apply_permutation(b, perms)`` computes the same functions as ``b`` (both on
    ``a``'s device, in ``b``'s dtype).  Non-finite weights raise InrforgeError.
    """
    if not isinstance(a, Weights) or not isinstance(b, Weights):
        raise InrforgeError("weight_matching needs two Weights batches")
    if a.arch != b.arch:
        raise InrforgeError("weight_matching needs two batches of the same INR architecture")
    if len(a) != len(b):
        raise InrforgeError(f"weight_matching pairs INRs by index: batch sizes {len(a)} and {len(b)} differ")
    if int(max_iter) < 1:
        raise InrforgeError(f"max_iter must be >= 1, got {max_iter}")
    if init not in ("forward", "identity", "forward-only"):
        raise InrforgeError(f"unknown weight-matching init {init!r}; choose 'forward', 'forward-only' or 'identity'")
    gen_device = _gen_device(generator, "weight_matching")
    n_hidden = len(a.arch.hidden_widths)
    batch = len(a)
    device = a.device
    perms = identity_permutations(a.arch, batch, device=device)
    b_in = b if b.device == device else b.to(device)
    if n_hidden == 0 or batch == 0:
        return perms, permute_neurons(b_in, perms)
    # Costs are computed (batched) in float64: no per-step conversion for scipy, exact sums.
    a, b = a.to(dtype=torch.float64), b_in.to(dtype=torch.float64)
    finite = torch.isfinite(a.flatten()).all(dim=1) & torch.isfinite(b.flatten()).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise InrforgeError(f"weight_matching: pairs {bad} (batch indices) have non-finite (NaN / inf) weights")

    with torch.no_grad():
        if init != "identity":
            fwd = []
            for layer in range(n_hidden):
                cost = _incoming_cost(a, b, layer, fwd).cpu().numpy()
                fwd.append(torch.as_tensor(_solve(cost), device=device))
            if init == "forward-only":
                perms = fwd
            else:
                use = (_inner(a, permute_neurons(b, fwd)) > _inner(a, b)).to(device)
                perms = [torch.where(use.unsqueeze(1), f, p) for f, p in zip(fwd, perms)]
        perms_np = [p.cpu().numpy().copy() for p in perms]
        dirty = np.ones((batch, n_hidden), dtype=bool)
        for _ in range(int(max_iter)):
            order = torch.randperm(n_hidden, generator=generator, device=gen_device).tolist()
            for layer in order:
                sel = np.flatnonzero(dirty[:, layer])
                if len(sel) == 0:
                    continue
                idx = None if len(sel) == batch else torch.as_tensor(sel, device=device)
                cost = _layer_cost(a, b, layer, perms, idx).cpu().numpy()
                cur = perms_np[layer][sel]
                new = _solve(cost)
                old_val = np.take_along_axis(cost, cur[:, :, None], axis=2).sum(axis=(1, 2))
                new_val = np.take_along_axis(cost, new[:, :, None], axis=2).sum(axis=(1, 2))
                tol = 1e-12 * (np.abs(old_val) + np.abs(new_val) + 1e-300)
                better = new_val > old_val + tol
                dirty[sel, layer] = False
                if better.any():
                    rows = sel[better]
                    perms_np[layer][rows] = new[better]
                    perms[layer][torch.as_tensor(rows, device=device)] = torch.as_tensor(new[better], device=device)
                    if layer > 0:
                        dirty[rows, layer - 1] = True
                    if layer + 1 < n_hidden:
                        dirty[rows, layer + 1] = True
            if not dirty.any():
                break
    return perms, permute_neurons(b_in, perms)
