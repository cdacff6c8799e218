"""Batched fitting: B INRs trained at once on their own targets.

Parameters are stacked per layer (``W_i`` of shape (B, d_{i+1}, d_i), ``b_i`` of shape
(B, d_{i+1})) and trained with one ``torch.optim.Adam`` over the stacks.  The loss is the sum
over INRs of each INR's MSE, so the gradient of INR k's parameters is exactly the gradient of its
own MSE; Adam is elementwise, so one Adam over the stack is B independent Adams.

Early stop is per INR: when an INR's PSNR (measured before an update) reaches ``target_psnr`` its
parameters stop changing (the update is discarded for it), so the stored parameters are the ones
measured.  An INR whose loss becomes NaN/inf is marked failed and frozen at the parameters that
gave the non-finite loss (NaN/inf parameters too, when an update overflowed); this includes an
INR whose very last update made its loss non-finite.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from .arch import INRSpec
from .checks import check_count, check_device, is_number, number, shown
from .errors import InrforgeError
from .inr import encode, forward, psnr
from .memory import free_bytes
from .native import cxx_compiler, fused_step, load as load_native


LR_SCHEDULES = ("constant", "cosine")
# the compiled CPU step: inrforge's fused C++ kernel (inrforge.native), or torch.compile's of stacked_step
KERNELS = ("native", "inductor")

# Fit settings added since 0.2.0 (the schedule and the first layer's factor in 0.3.0, shared inits in
# 0.4.0, the kernel in 0.5.0): a store that does not record one was fitted with its value here.
LEGACY_FIT = {"lr_schedule": "constant", "first_layer_lr": 1.0, "shared_init": False, "kernel": "inductor"}


def with_legacy(fit: dict) -> dict:
    """A store's recorded ``fit`` attributes with the settings added since (:data:`LEGACY_FIT`)
    filled in where it lacks them: the values every store written before them was fitted with."""
    return {**LEGACY_FIT, **fit}


@dataclass(frozen=True)
class FitSettings:
    """Everything that determines the fitted numbers (apart from the targets and the seed).

    Its defaults are the DWSNets recipe (Adam, lr 5e-4 for every layer, constant, 1,000 steps,
    early stop at 40 dB), as are :class:`inrforge.fitjob.FitRequest`'s, the options of
    ``inrforge fit`` and ``fit_inrs``.  ``first_layer_lr`` exists because the DWSNets init gives the
    first layer the hidden layers' bound ``sqrt(6 / d_in) / w0``, ~9x smaller than SIREN's
    ``1 / d_in``: at the common lr it reaches the frequencies a 28 x 28 image needs only after
    thousands of steps (docs/benchmarks.md, "Fit quality").  ``shared_init`` starts view v of every
    object from view v of object 0's init instead of its own (:func:`inr_seed` of (seed, 0, v)), as in
    Papa et al. 2024 ("How to train neural field representations"): every INR is then one common
    point plus what its fit added.  ``kernel`` is the compiled step of a CPU fit (:data:`KERNELS`):
    ``native``, the fused kernel of :mod:`inrforge.native`, or ``inductor``, ``torch.compile``'s (the
    stores written before 0.5.0); a GPU fit always compiles with Inductor, an eager one with neither.
    """

    steps: int = 1000
    lr: float = 5e-4
    target_psnr: float | None = 40.0
    batch_size: int = 512
    device: str = "cpu"
    compile: bool = True
    lr_schedule: str = "constant"  # or "cosine": lr * (1 + cos(pi t / steps)) / 2 at step t
    first_layer_lr: float = 1.0  # the first layer's (W_0, b_0) learning rate is lr times this
    shared_init: bool = False  # view v of every object starts from the same init (inr_seed(seed, 0, v))
    kernel: str = "native"  # the compiled step on a CPU: "native" or "inductor"

    def __post_init__(self):
        _check_settings(self, lambda key: _OPTIONS[key])
        check_device(self.device)

    @classmethod
    def recorded(cls, fit: dict, where: str, device: str | None = None) -> "FitSettings":
        """The settings a store's ``fit`` attribute records (with ``device`` instead of its own, if
        given).  A missing or bad value is named as that attribute of ``where`` (the store), never
        as the command-line option the user did not give."""
        keys = ("steps", "lr", "target_psnr", "batch_size", "device", "compile")
        missing = [k for k in keys if k not in fit]
        if missing:
            raise InrforgeError(f"{where}: the recorded fit attributes lack {', '.join(missing)} (a damaged store?)")
        fit = with_legacy(fit)
        values = {k: fit[k] for k in (*keys, *LEGACY_FIT)}
        _check_settings(SimpleNamespace(**values), lambda key: f"{where}: the recorded fit.{key}")
        return cls(**{**values, "device": values["device"] if device is None else device})


# the command-line option behind each checked field of FitSettings, as its errors name it
_OPTIONS = {"steps": "--steps", "lr": "--lr", "target_psnr": "--target-psnr", "batch_size": "--batch-size",
            "compile": "compile", "lr_schedule": "--lr-schedule", "first_layer_lr": "--first-layer-lr",
            "shared_init": "--shared-init", "kernel": "--kernel"}


def _check_settings(s, name) -> None:
    """An :class:`InrforgeError` for the first bad field of the settings ``s`` (the device aside),
    which ``name(field)`` names: an option, or a store's recorded attribute."""
    check_count(name("steps"), s.steps)
    number(s.lr, name("lr"), positive=True)
    if s.target_psnr is not None and not (is_number(s.target_psnr) and math.isfinite(s.target_psnr)):
        raise InrforgeError(f"{name('target_psnr')} must be a number, got {shown(s.target_psnr)}")
    check_count(name("batch_size"), s.batch_size)
    for key in ("compile", "shared_init"):
        if not isinstance(getattr(s, key), (bool, np.bool_)):
            raise InrforgeError(f"{name(key)} must be True or False, got {shown(getattr(s, key))}")
    if s.lr_schedule not in LR_SCHEDULES:
        raise InrforgeError(f"{name('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}, got {shown(s.lr_schedule)}")
    number(s.first_layer_lr, name("first_layer_lr"), positive=True)
    if s.kernel not in KERNELS:
        raise InrforgeError(f"{name('kernel')} must be one of {', '.join(KERNELS)}, got {shown(s.kernel)}")


def psnr_to_mse(psnr: float) -> float:
    """``10^(-psnr / 10)``, the MSE at PSNR ``psnr`` (peak 1); ``inf`` where that overflows."""
    try:
        return 10.0 ** (-float(psnr) / 10.0)
    except OverflowError:
        return math.inf


@dataclass
class FitResult:
    """Per-INR outcome of :func:`fit_batch` (all on CPU)."""

    params: torch.Tensor  # (B, P) float32, flat layout of the arch
    loss: torch.Tensor  # (B,) float32 MSE of the returned params (NaN where failed)
    psnr: torch.Tensor  # (B,) float32 (NaN where failed)
    steps: torch.Tensor  # (B,) int32 optimizer updates applied
    failed: torch.Tensor  # (B,) bool


def check_compiler(device: str = "cpu") -> None:
    """A compiled step on a CPU builds C++ (the native kernel, or ``torch.compile``'s): for a CPU
    ``device``, an error unless the compiler (``$CXX``, default ``g++``; ``clang++`` on macOS) is
    there.  On a GPU ``torch.compile`` builds Triton kernels: an error unless Triton works there
    (CUDA capability 7.0 or more)."""
    if torch.device(device).type != "cpu":
        if not _has_triton():
            raise InrforgeError(f"torch.compile on {device} needs Triton, which is missing or does not support this "
                                f"GPU (CUDA capability 7.0 or more); pass --no-compile")
        return
    cxx = cxx_compiler()
    if shutil.which(cxx) is None:
        raise InrforgeError(f"a compiled fitting step needs a C++ compiler ({cxx} not found; install one or set CXX), "
                            f"or pass --no-compile")


def runs_native(device, kernel: str) -> bool:
    """Whether a compiled step on ``device`` (a name or a torch.device) with ``kernel`` is the native
    CPU kernel (a GPU compiles with Inductor whatever the kernel)."""
    return torch.device(device).type == "cpu" and kernel == "native"


def check_compiled_step(device: str = "cpu", kernel: str = "native") -> None:
    """An :class:`InrforgeError` unless the compiled step of a fit on ``device`` with ``kernel`` can
    run here: :func:`check_compiler`, and on a CPU with the native kernel, that kernel built (once
    per machine) and loaded."""
    check_compiler(device)
    if runs_native(device, kernel):
        load_native()


# (INR, point, step) triples from which torch.compile pays (measured on the 2-core CPU, 1 thread):
# the compiled step saves ~0.8 of the eager step's ~1.1 us per triple, and compiling its two or
# three batch shapes costs 10-30 s, so the break-even is 4e7 (warm Inductor cache) to 1e8 (a
# clean machine); docs/benchmarks.md.  The native CPU kernel has no such cost (see worth_compiling).
COMPILE_WORTH = 10**8


def _has_triton() -> bool:
    """Whether Triton can compile for this process's GPU (torch's own test: installed, capability >= 7.0)."""
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # a torch that moved it: let torch.compile say what is wrong
        return True
    return bool(has_triton())


def worth_compiling(point_steps: int, device: str = "cpu", kernel: str = "inductor") -> bool:
    """Whether a fit of ``point_steps`` (INRs x steps x points per INR) repays compiling its step.

    The native CPU kernel (``kernel="native"`` on a CPU) is built once per machine, about 2 s, and
    then loaded from its cache; it compiles nothing per batch shape and fits 3-4x faster than the
    eager step even on 8x8 digits, so it always pays, if it builds.  ``torch.compile``'s step pays
    from :data:`COMPILE_WORTH` triples, where a C++ compiler (on a GPU, Triton) is present.  Where
    compiling is impossible the answer is no (the eager step), never an error."""
    if point_steps < COMPILE_WORTH and not runs_native(device, kernel):
        return False
    try:
        check_compiled_step(device, kernel)
    except InrforgeError:
        return False
    return True


def per_inr_mse(arch: INRSpec, weights, biases, coords, targets) -> torch.Tensor:
    """(B,) mean squared error of each INR against its targets (coords already encoded)."""
    pred = forward(arch, weights, biases, coords, encoded=True)
    return (pred - targets).square().mean(dim=(1, 2))


# Cody-Waite split of pi/2 (the first two parts have few significant bits, so k * part is exact
# in float32 for |k| < 2^12) and minimax polynomials of sin and cos on [-pi/4, pi/4] (Cephes).
_PIO2 = (1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8)
_SIN = (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4)
_COS = (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5)


def sincos(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sin u, cos u)`` from one shared range reduction, in plain elementwise ops.

    ``u = k pi/2 + r`` with ``k = round(2u/pi)`` and ``|r| <= pi/4``; ``sin r`` and ``cos r`` are
    degree-7/8 polynomials, and the quadrant ``q = k mod 4`` rotates them:
    ``sin u = (s, c, -s, -c)[q]``, ``cos u = (c, -s, -c, s)[q]``.  Absolute error <= 1e-7 for
    ``|u| < 1e4`` (float32 sin/cos: 4e-8), growing slowly beyond.  Under ``torch.compile`` this
    fuses into the surrounding kernel and costs about half of two separate libm calls, which
    is what bounds a SIREN fitting step on a CPU.
    """
    k = torch.round(u * (2.0 / math.pi))
    r = ((u - k * _PIO2[0]) - k * _PIO2[1]) - k * _PIO2[2]
    r2 = r * r
    s = r + r * r2 * (_SIN[0] + r2 * (_SIN[1] + r2 * _SIN[2]))
    c = 1.0 - 0.5 * r2 + r2 * r2 * (_COS[0] + r2 * (_COS[1] + r2 * _COS[2]))
    q = k - 4.0 * torch.floor(k * 0.25)  # 0, 1, 2, 3
    odd = (q == 1.0) | (q == 3.0)
    sin = torch.where(odd, c, s)
    cos = torch.where(odd, s, c)
    return torch.where(q >= 2.0, -sin, sin), torch.where((q == 1.0) | (q == 2.0), -cos, cos)


def libm_sincos(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(torch.sin(u), torch.cos(u))``: the eager step's choice (one kernel each, exact to 1 ulp)."""
    return torch.sin(u), torch.cos(u)


def backprop(arch: INRSpec, weights, biases, coords, targets, active, sin_cos):
    """Per-INR MSE (B,), its gradients and the activations' derivatives, by explicit backpropagation.

    With ``z_i = h_i W_i^T + b_i``, ``h_{i+1} = act(z_i)``, ``f = z_{L-1} + offset`` and
    ``mse = mean((f - y)^2)``:

        g_{L-1} = 2 (f - y) / n          (zeroed for inactive INRs)
        dW_i = g_i^T h_i = (h_i^T g_i)^T,   db_i = sum_points g_i
        g_{i-1} = (g_i W_i) * act'(z_{i-1})      act' = w0 cos(w0 z) for SIREN, [z > 0] for ReLU

    The forward keeps ``act'`` (cos from the same range reduction as sin, see :func:`sincos`)
    instead of ``z``, so under ``torch.compile`` each layer's elementwise work is one fused pass;
    the products are (batched) matmuls.  ``dW_i`` is computed as ``(h_i^T g_i)^T``: for the first
    layer ``h_0`` is the shared (N, d0) coordinate matrix and this orientation is one cheap
    broadcast matmul instead of a batched one with d0 = 2 output columns.  It is the gradient
    autograd computes (tested against it).  Returns ``(mse, [dW_i], [db_i], [act'_i])``.
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
                h, cos = sin_cos(w0 * z)
                derivs.append(w0 * cos)
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
        gw[i] = torch.matmul(hs[i].transpose(-1, -2), g).transpose(-1, -2)
        gb[i] = g.sum(dim=1)
        if i > 0:
            g = torch.bmm(g, weights[i]) * derivs[i - 1]
    return mse, gw, gb, derivs


def stacked_views(arch: INRSpec, buf: torch.Tensor, b: int) -> list[torch.Tensor]:
    """Views ``[W_0 (B, d1, d0), b_0 (B, d1), W_1, ...]`` of a layer-major buffer of B * P numbers.

    Tensor by tensor (slot ``s`` at ``B * offset``), each view is contiguous, so the step's
    matmuls see packed operands and the optimizer updates one buffer.
    """
    return [buf[b * s.offset : b * (s.offset + s.size)].view(b, *s.shape) for s in arch.layout]


def stacked_step(arch: INRSpec, buf, coords, targets, active, sin_cos=libm_sincos):
    """:func:`backprop` on a layer-major buffer (see :func:`stacked_views`).

    Returns ``(mse, gradient buffer laid out like buf, [act'_i])``.
    """
    views = stacked_views(arch, buf, targets.shape[0])
    mse, gw, gb, derivs = backprop(arch, views[0::2], views[1::2], coords, targets, active, sin_cos)
    return mse, torch.cat([t.reshape(-1) for pair in zip(gw, gb) for t in pair]), derivs


def _fused_step(arch, flat, coords, targets, active):
    """:func:`stacked_step` with the polynomial :func:`sincos`, to be compiled.

    Returning ``act'`` too makes Inductor store it once: otherwise it recomputes sin/cos in
    each of the three loops that read them (the output, its gradient and ``dW``), ~12% of a step.
    """
    return stacked_step(arch, flat, coords, targets, active, sincos)


_COMPILED: dict = {}


def _step_fn(arch: INRSpec, settings: FitSettings, device: torch.device):
    """``step(arch, flat, coords, targets, active) -> (mse, grad)``: eager without
    ``settings.compile``; on a CPU with ``settings.kernel == "native"`` the fused kernel
    (:func:`inrforge.native.fused_step`); else compiled by ``torch.compile`` once per arch, device
    type and process.  On a GPU, Inductor's deterministic mode: by default it would time several
    reduction kernels (block sizes, warps) at first launch and keep the fastest, and those round
    differently, so another process or node could fit other last bits (a resume, a Dask worker,
    ``refit_shard``).  The CPU's Inductor step is compiled as always (the numbers of the stores
    written with it)."""
    if not settings.compile:
        return lambda *args: stacked_step(*args)[:2]
    if runs_native(device, settings.kernel):
        return fused_step
    key = (arch, device.type)
    if key not in _COMPILED:
        options = {"deterministic": True} if device.type == "cuda" else None
        compiled = torch.compile(_fused_step, dynamic=False, options=options)
        _COMPILED[key] = lambda *args: compiled(*args)[:2]
    return _COMPILED[key]


def fit_batch(arch: INRSpec, init: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor,
              settings: FitSettings, *, device_side: bool | None = None) -> FitResult:
    """Fit ``len(init)`` INRs of ``arch`` from flat initial parameters ``init`` (B, P).

    ``coords`` (N, in_features) are shared, or (B, N, in_features) per INR; ``targets`` is
    (B, N, out_features).  Other shapes are an :class:`InrforgeError` (:func:`check_fit_inputs`).
    ``device_side`` (default: on a GPU) keeps the per-INR bookkeeping on the device, so that the
    host never waits for a step (:func:`_steps_on_device`); the results are the same bits.
    """
    dev = check_device(settings.device)
    check_fit_inputs(arch, init, coords, targets)
    b = init.shape[0]
    enc = encode(arch, coords.to(dev, torch.float32))
    targets = targets.to(dev, torch.float32)
    init = init.to(dev, torch.float32)
    # The optimizer's parameters: every INR's W_0, then every b_0, ... in one buffer.
    flat = torch.cat([init[:, s.offset : s.offset + s.size].reshape(-1) for s in arch.layout])
    update = adam_updates(arch, flat, b, settings)
    step_fn = _step_fn(arch, settings, dev)
    target = settings.target_psnr
    mse_target = None if target is None else psnr_to_mse(target)

    active = torch.ones(b, dtype=torch.bool, device=dev)
    failed = torch.zeros(b, dtype=torch.bool, device=dev)
    n_steps = torch.zeros(b, dtype=torch.int32, device=dev)
    steps = _steps_on_device if (dev.type == "cuda" if device_side is None else device_side) else _steps_on_host
    steps(arch, flat, update, lambda: step_fn(arch, flat, enc, targets, active), settings.steps, mse_target,
          active, failed, n_steps)

    views = stacked_views(arch, flat, b)
    final = per_inr_mse(arch, views[0::2], views[1::2], enc, targets)
    failed |= ~torch.isfinite(final)  # the last update made the loss non-finite
    final = torch.where(failed, torch.full_like(final, float("nan")), final).float().cpu()
    return FitResult(
        params=torch.cat([v.reshape(b, s.size) for v, s in zip(views, arch.layout)], dim=1).cpu(),
        loss=final,
        psnr=psnr(final),
        steps=n_steps.cpu(),
        failed=failed.cpu(),
    )


def _stop(mse, mse_target, active, failed):
    """Update ``active`` and ``failed`` in place after a step measured ``mse``: an INR stops when its
    loss is not finite (failed) or reaches ``mse_target``.  Returns the INRs that stopped now."""
    bad = ~torch.isfinite(mse)
    failed |= active & bad
    stop = bad if mse_target is None else bad | (mse <= mse_target)
    newly = active & stop
    active &= ~stop
    return newly


def lr_factor(schedule: str, t: int, steps: int) -> float:
    """The learning rate's factor at step ``t`` of ``steps``: 1 (``constant``), or
    ``(1 + cos(pi t / steps)) / 2`` (``cosine``: from 1 at the first step down towards 0)."""
    return 1.0 if schedule == "constant" else 0.5 * (1.0 + math.cos(math.pi * t / steps))


def adam_updates(arch: INRSpec, flat: torch.Tensor, b: int, settings: FitSettings):
    """``update(grad, t)``: step ``t`` of one ``torch.optim.Adam`` over the layer-major buffer ``flat``
    of ``b`` INRs (see :func:`stacked_views`), given the gradient laid out like it.

    Adam is elementwise, so this is ``b`` independent Adams.  With ``settings.first_layer_lr`` other
    than 1 the buffer is two parameter groups, its first layer (every ``W_0`` and ``b_0``, the
    buffer's head) at ``lr * first_layer_lr`` and the rest at ``lr``; both follow
    ``settings.lr_schedule`` (:func:`lr_factor`).  Without those, one group and one fused kernel
    (the numbers stores written before these settings hold)."""
    if settings.first_layer_lr == 1.0:
        parts, scales = [flat], [1.0]
    else:
        head = b * (arch.layout[0].size + arch.layout[1].size)
        parts, scales = [flat[:head], flat[head:]], [settings.first_layer_lr, 1.0]
    opt = torch.optim.Adam([{"params": [p], "lr": settings.lr * k} for p, k in zip(parts, scales)],
                           fused=True)  # fused: one kernel per group, the same update
    sizes = [p.numel() for p in parts]

    def update(grad: torch.Tensor, t: int) -> None:
        if settings.lr_schedule != "constant":
            factor = lr_factor(settings.lr_schedule, t, settings.steps)
            for group, k in zip(opt.param_groups, scales):
                group["lr"] = settings.lr * k * factor
        for p, g in zip(parts, grad.split(sizes)):
            p.grad = g
        opt.step()

    return update


def _steps_on_host(arch, flat, update, step, n, mse_target, active, failed, n_steps) -> None:
    """Up to ``n`` updates of ``flat``, stopping as soon as no INR is active (one host sync a step).

    Each INR's gradient is that of its own MSE (the sum over INRs separates); the inactive ones get
    zero gradients, so NaNs never reach the optimizer, and their parameters are restored after each
    update (Adam's momentum would still move them) from a copy taken when they stopped: the
    parameters that were measured."""
    b = len(active)
    n_active = b
    for t in range(n):
        mse, grad = step()
        _stop(mse, mse_target, active, failed)
        now_active = int(active.sum())
        if now_active == 0:
            break
        if now_active != n_active:
            n_active = now_active
            frozen = flat.clone()
            keep = torch.cat([active.unsqueeze(1).expand(b, s.size).reshape(-1) for s in arch.layout])
        update(grad, t)
        if n_active < b:
            flat.copy_(torch.where(keep, flat, frozen))
        n_steps += active.int()


def _steps_on_device(arch, flat, update, step, n, mse_target, active, failed, n_steps, check_every: int = 32) -> None:
    """:func:`_steps_on_host` without waiting for the device: the parameters of the INRs that stop
    at a step are copied into ``frozen`` on the device, and every update is followed by restoring
    the inactive ones from it, so the host only asks whether any INR is active every
    ``check_every`` steps.  The steps after the last INR stopped change nothing (zero gradients,
    restored parameters, no step counted), so the result is the same bits as on the host."""
    b = len(active)
    inr_of = torch.cat([torch.arange(b, device=flat.device).repeat_interleave(s.size) for s in arch.layout])
    frozen = flat.clone()
    for t in range(n):
        mse, grad = step()
        newly = _stop(mse, mse_target, active, failed)
        frozen = torch.where(newly[inr_of], flat, frozen)  # the measured parameters of those stopping now
        update(grad, t)
        flat.copy_(torch.where(active[inr_of], flat, frozen))
        n_steps += active.int()
        if t % check_every == check_every - 1 and not bool(active.any()):
            break


def check_fit_inputs(arch: INRSpec, init, coords, targets) -> None:
    """An :class:`InrforgeError` unless ``init`` is (B, P), ``coords`` (N, in) or (B, N, in) and
    ``targets`` (B, N, out) for ``arch`` (a mismatch would otherwise broadcast silently)."""
    for name, t in (("init", init), ("coords", coords), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise InrforgeError(f"fit_batch: {name} must be a torch.Tensor, got {type(t).__name__}")
    if init.ndim != 2 or init.shape[1] != arch.param_count:
        raise InrforgeError(f"fit_batch: init must be (B, {arch.param_count}) for this arch, got {tuple(init.shape)}")
    b = init.shape[0]
    n = coords.shape[-2] if coords.ndim in (2, 3) else None
    if n is None or coords.shape[-1] != arch.in_features or (coords.ndim == 3 and coords.shape[0] != b):
        raise InrforgeError(f"fit_batch: coords must be (N, {arch.in_features}) or ({b}, N, {arch.in_features}), "
                            f"got {tuple(coords.shape)}")
    if n == 0:
        raise InrforgeError(f"fit_batch: no points to fit (coords is {tuple(coords.shape)})")
    if tuple(targets.shape) != (b, n, arch.out_features):
        raise InrforgeError(f"fit_batch: targets must be ({b}, {n}, {arch.out_features}) (INRs, points, outputs), "
                            f"got {tuple(targets.shape)}")


def inr_seed(seed: int, index: int, view: int) -> int:
    """The init seed of view ``view`` of object ``index``: a pure function of (seed, index, view)."""
    seed, index, view = (check_count(n, v, minimum=0) for n, v in (("seed", seed), ("index", index), ("view", view)))
    state = np.random.SeedSequence([seed, index, view]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def default_batch_size(device: str, n_points: int, native: bool = False) -> int:
    """INRs fitted per step when the user gives no ``--batch-size``.

    On a CPU about 25,000 (INR, point) pairs per step, so that a step's activations stay in
    cache: for 784 points that is 31 INRs, measured 0.11 ms per INR-step against 0.36 ms at 512.
    The ``native`` kernel keeps no batch-wide activations (each thread works through one INR at a
    time), so there larger steps only spread the per-step costs (Python, Adam's launch) over more
    INRs: at least 256 (784 points: 10-20 % faster than 31; an INR's numbers do not depend on it).
    On a GPU 8,192 INRs (lowered later where they do not fit in memory).
    """
    if torch.device(device).type == "cuda":
        return 8192
    per_cache = 25_000 // max(1, int(n_points))
    return int(min(4096, max(256 if native else 16, per_cache)))


def batch_bytes(arch: INRSpec, n_points: int) -> int:
    """Activation memory of one INR's step: forward + backward, ~6 float32 copies of every layer's output."""
    return 6 * 4 * int(n_points) * (sum(arch.widths[1:]) + arch.widths[0])


def memory_budget(device: str) -> int:
    """Bytes a fit's activations may take: a quarter of the GPU's free memory, or half of the
    memory available to a new process on a CPU host.  On a GPU, memory this process's caching
    allocator holds but does not use counts as free (the driver counts it as used, so a second
    shard in the same process would see less than there is)."""
    dev = torch.device(device)
    return free_bytes(dev) // (4 if dev.type == "cuda" else 2)


def memory_batch_limit(arch: INRSpec, n_points: int, device: str) -> int:
    """The largest batch whose activations (:func:`batch_bytes`) fit in the :func:`memory_budget`,
    but at least 1 (a batch size to start from): whether even one INR fits is
    :func:`~inrforge.fitjob.require_memory`'s question."""
    return max(1, memory_budget(device) // batch_bytes(arch, n_points))
