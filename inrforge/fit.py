"""Batched fitting: B INRs trained at once on their own targets.

Parameters are stacked per layer (``W_i`` of shape (B, d_{i+1}, d_i), ``b_i`` of shape
(B, d_{i+1})) and trained with one ``torch.optim.Adam`` over the stacks.  The loss is the sum
over INRs of each INR's MSE, so the gradient of INR k's parameters is exactly the gradient of its
own MSE; Adam is elementwise, so one Adam over the stack is B independent Adams.

Early stop is per INR: when an INR's PSNR (measured before an update) reaches ``target_psnr`` its
parameters stop changing (the update is discarded for it), so the stored parameters are the ones
measured.  An INR whose loss becomes NaN/inf is frozen at its last finite parameters and marked
failed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .arch import INRSpec
from .errors import InrforgeError
from .inr import encode, forward


@dataclass(frozen=True)
class FitSettings:
    """Everything that determines the fitted numbers (apart from the targets and the inits)."""

    steps: int = 1000
    lr: float = 5e-4
    target_psnr: float | None = 40.0
    batch_size: int = 512
    device: str = "cpu"
    compile: bool = True

    def __post_init__(self):
        if int(self.steps) != self.steps or self.steps <= 0:
            raise InrforgeError(f"--steps must be a positive integer, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InrforgeError(f"--lr must be a positive number, got {self.lr}")
        if self.target_psnr is not None and not math.isfinite(self.target_psnr):
            raise InrforgeError(f"--target-psnr must be a number, got {self.target_psnr}")
        if int(self.batch_size) != self.batch_size or self.batch_size <= 0:
            raise InrforgeError(f"--batch-size must be a positive integer, got {self.batch_size}")
        check_device(self.device)


@dataclass
class FitResult:
    """Per-INR outcome of :func:`fit_batch` (all on CPU)."""

    params: torch.Tensor  # (B, P) float32, flat layout of the arch
    loss: torch.Tensor  # (B,) float32 MSE of the returned params (NaN where failed)
    psnr: torch.Tensor  # (B,) float32 (NaN where failed)
    steps: torch.Tensor  # (B,) int32 optimizer updates applied
    failed: torch.Tensor  # (B,) bool


def check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InrforgeError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InrforgeError(f"device {device!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise InrforgeError(f"unsupported device {device!r}; use cpu or cuda[:N]")
    return dev


def per_inr_mse(arch: INRSpec, weights, biases, coords, targets) -> torch.Tensor:
    """(B,) mean squared error of each INR against its targets (coords already encoded)."""
    pred = forward(arch, weights, biases, coords, encoded=True)
    return (pred - targets).square().mean(dim=(1, 2))


def mse_and_grads(arch: INRSpec, weights, biases, coords, targets, active):
    """Per-INR MSE (B,) and its gradients, by explicit backpropagation.

    With ``z_i = h_i W_i^T + b_i``, ``h_{i+1} = act(z_i)``, ``f = z_{L-1} + offset`` and
    ``mse = mean((f - y)^2)``:

        g_{L-1} = 2 (f - y) / n          (zeroed for inactive INRs)
        dW_i = g_i^T h_i,   db_i = sum_points g_i
        g_{i-1} = (g_i W_i) * act'(z_{i-1})      act' = w0 cos(w0 z) for SIREN, [z > 0] for ReLU

    The forward keeps ``act'`` (cos computed beside sin, from the same ``w0 z``) instead of ``z``,
    so under ``torch.compile`` each layer's elementwise work is one fused pass; the products are
    (batched) matmuls.  It is the same gradient autograd computes (tested against it).
    """
    siren = arch.family == "siren"
    w0 = float(arch.w0)
    last = len(weights) - 1
    hs, derivs = [coords], []
    h = coords
    for i, (w, b) in enumerate(zip(weights, biases)):
        z = torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)
        if i < last:
            if siren:
                u = w0 * z
                h = torch.sin(u)
                derivs.append(w0 * torch.cos(u))
            else:
                h = torch.relu(z)
                derivs.append((z > 0).to(z.dtype))
            hs.append(h)
        else:
            h = z
    r = h + arch.output_offset - targets
    n = r.shape[1] * r.shape[2]
    mse = r.square().sum(dim=(1, 2)) / n
    g = torch.where(active.view(-1, 1, 1), r * (2.0 / n), torch.zeros_like(r))
    gw, gb = [None] * len(weights), [None] * len(weights)
    for i in range(last, -1, -1):
        gw[i] = torch.matmul(g.transpose(1, 2), hs[i])
        gb[i] = g.sum(dim=1)
        if i > 0:
            g = torch.bmm(g, weights[i]) * derivs[i - 1]
    return mse, gw, gb


_COMPILED: dict = {}


def _step_fn(arch: INRSpec, use_compile: bool):
    if not use_compile:
        return mse_and_grads
    if arch not in _COMPILED:  # one compiled function per arch and process
        _COMPILED[arch] = torch.compile(mse_and_grads, dynamic=False)
    return _COMPILED[arch]


def fit_batch(arch: INRSpec, init: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor,
              settings: FitSettings) -> FitResult:
    """Fit ``len(init)`` INRs of ``arch`` from flat initial parameters ``init`` (B, P).

    ``coords`` (N, in_features) are shared; ``targets`` is (B, N, out_features).
    """
    dev = check_device(settings.device)
    b = init.shape[0]
    enc = encode(arch, coords.to(dev, torch.float32))
    targets = targets.to(dev, torch.float32)
    params = [init[:, s.offset : s.offset + s.size].reshape(b, *s.shape).to(dev).clone().requires_grad_(True)
              for s in arch.layout]
    ws, bs = params[0::2], params[1::2]
    opt = torch.optim.Adam(params, lr=settings.lr)
    step_fn = _step_fn(arch, settings.compile)
    target = settings.target_psnr
    mse_target = None if target is None else 10.0 ** (-target / 10.0)

    active = torch.ones(b, dtype=torch.bool, device=dev)
    failed = torch.zeros(b, dtype=torch.bool, device=dev)
    n_steps = torch.zeros(b, dtype=torch.int32, device=dev)
    for _ in range(settings.steps):
        with torch.no_grad():
            mse, gw, gb = step_fn(arch, [w.detach() for w in ws], [b.detach() for b in bs], enc, targets, active)
            bad = ~torch.isfinite(mse)
            failed |= active & bad
            stop = bad if mse_target is None else bad | (mse <= mse_target)
            active &= ~stop
            if not bool(active.any()):
                break
        # Each INR's gradient is that of its own MSE (the sum over INRs separates); the inactive
        # ones get zero gradients, so NaNs never reach the optimizer.
        grads = [t for pair in zip(gw, gb) for t in pair]
        for p, g in zip(params, grads):
            p.grad = g
        if bool(active.all()):
            opt.step()
        else:
            old = [p.detach().clone() for p in params]
            opt.step()
            with torch.no_grad():
                for p, o in zip(params, old):
                    mask = active.view(-1, *([1] * (p.ndim - 1)))
                    p.copy_(torch.where(mask, p, o))
        n_steps += active.int()

    with torch.no_grad():
        final = per_inr_mse(arch, ws, bs, enc, targets)
        final = torch.where(failed, torch.full_like(final, float("nan")), final)
        flat = torch.cat([p.detach().reshape(b, -1) for p in params], dim=1).cpu()
    final = final.float().cpu()
    return FitResult(
        params=flat,
        loss=final,
        psnr=-10.0 * torch.log10(final),
        steps=n_steps.cpu(),
        failed=failed.cpu(),
    )


def inr_seed(seed: int, index: int, view: int) -> int:
    """The init seed of view ``view`` of object ``index``: a pure function of (seed, index, view)."""
    state = np.random.SeedSequence([int(seed), int(index), int(view)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def memory_batch_limit(arch: INRSpec, n_points: int, device: str) -> int:
    """A batch size whose activations (forward + backward, ~6 copies of every layer's output)
    fit in a quarter of the device's memory."""
    per_inr = 6 * 4 * n_points * (sum(arch.widths[1:]) + arch.widths[0])
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        budget = free // 4
    else:
        try:
            budget = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
        except (ValueError, OSError):
            budget = 2 << 30
    return max(1, int(budget // per_inr))
