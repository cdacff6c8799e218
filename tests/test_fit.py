import math

import numpy as np
import pytest
import torch
from torch import nn

from inrforge.arch import INRSpec, make_arch
from inrforge.errors import InrforgeError
from inrforge.fit import FitSettings, backprop, fit_batch, inr_seed, libm_sincos, per_inr_mse
from inrforge.inr import image_grid
from inrforge.weights import Weights

ARCH = INRSpec(widths=(2, 8, 8, 1), w0=30.0, output_offset=0.5, init="siren-dwsnets")
COORDS = image_grid(6, 6)


def targets(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 36, 1, generator=g)


def settings(**kw):
    base = dict(steps=20, lr=1e-3, target_psnr=None, batch_size=64, compile=False)
    return FitSettings(**{**base, **kw})


@pytest.mark.parametrize("schedule, first", [("constant", 1.0), ("cosine", 1.0), ("constant", 10.0), ("cosine", 3.5)])
def test_one_adam_over_the_stack_equals_independent_adams(schedule, first):
    """The batched fit of B INRs equals B separate nn.Parameter + torch.optim.Adam fits, the first
    layer's parameters in a group of their own at ``first`` x lr, every group's lr following the
    schedule: a constant lr, or torch's own cosine annealing to 0 over the steps."""
    b, steps = 4, 15
    init = ARCH.init_flat([inr_seed(0, i, 0) for i in range(b)])
    y = targets(b)
    res = fit_batch(ARCH, init, COORDS, y, settings(steps=steps, lr_schedule=schedule, first_layer_lr=first))
    for k in range(b):
        w = Weights.from_flat(init[k:k + 1].clone(), ARCH)
        params = [nn.Parameter(t.clone()) for t in w.tensors()]
        opt = torch.optim.Adam([{"params": params[:2], "lr": 1e-3 * first}, {"params": params[2:], "lr": 1e-3}])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine" else None
        for _ in range(steps):
            opt.zero_grad()
            per_inr_mse(ARCH, params[0::2], params[1::2], COORDS, y[k:k + 1]).sum().backward()
            opt.step()
            if sched is not None:
                sched.step()
        single = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(res.params[k], single, rtol=1e-5, atol=1e-6)
    assert (res.steps == steps).all()
    assert not res.failed.any()


@pytest.mark.parametrize("arch", [ARCH, make_arch("relu", hidden=6, depth=3, out_features=3),
                                  make_arch("relu-fourier", fourier_features=4, hidden=5)])
def test_explicit_gradients_equal_autograd(arch):
    from inrforge.inr import encode

    flat = arch.init_flat(range(3)).double()
    w = Weights.from_flat(flat, arch)
    params = [t.clone().requires_grad_(True) for t in w.tensors()]
    x = encode(arch, COORDS.double())
    y = torch.rand(3, 36, arch.out_features, dtype=torch.float64)
    mse = per_inr_mse(arch, params[0::2], params[1::2], x, y)
    mse.sum().backward()
    active = torch.tensor([True, False, True])
    got, gw, gb, _ = backprop(arch, w.weights, w.biases, x, y, active, libm_sincos)
    torch.testing.assert_close(got, mse.detach())
    for p, g in zip(params, [t for pair in zip(gw, gb) for t in pair]):
        torch.testing.assert_close(g[active], p.grad[active], rtol=1e-10, atol=1e-12)
        assert torch.count_nonzero(g[1]) == 0  # an inactive INR gets no gradient


def test_loss_falls_and_metrics_describe_the_returned_params():
    init = ARCH.init_flat(range(3))
    y = targets(3)
    res = fit_batch(ARCH, init, COORDS, y, settings(steps=200, lr=5e-3))
    before = per_inr_mse(ARCH, *_split(init), COORDS, y)
    after = per_inr_mse(ARCH, *_split(res.params), COORDS, y)
    assert (after < 0.5 * before).all()
    torch.testing.assert_close(res.loss, after, rtol=1e-5, atol=0)
    torch.testing.assert_close(res.psnr, -10 * torch.log10(after))


def _split(flat):
    w = Weights.from_flat(flat, ARCH)
    return w.weights, w.biases


def test_fit_is_deterministic_and_independent_of_batch_company():
    init = ARCH.init_flat(range(5))
    y = targets(5)
    a = fit_batch(ARCH, init, COORDS, y, settings())
    b = fit_batch(ARCH, init, COORDS, y, settings())
    assert torch.equal(a.params, b.params)
    part = fit_batch(ARCH, init[2:4], COORDS, y[2:4], settings())
    torch.testing.assert_close(part.params, a.params[2:4], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("compile, kernel", [(False, "native"), (True, "native"), (True, "inductor")])
def test_early_stop_freezes_an_inr_at_the_target(compile, kernel):
    init = ARCH.init_flat(range(4))
    y = targets(4)
    y[0] = 0.5  # the initial siren-dwsnets INR outputs ~0.5: PSNR is already high
    s = settings(steps=300, lr=5e-3, target_psnr=25.0, compile=compile, kernel=kernel)
    res = fit_batch(ARCH, init, COORDS, y, s)
    assert res.steps[0] < 300
    # the stop is decided with the step's sin/cos, the reported PSNR is evaluated with libm's:
    # compiled, they differ in the last bits (the polynomial sincos), so allow 1e-3 dB
    assert (res.psnr[res.steps < 300] >= 25.0 - (1e-3 if compile else 0.0)).all(), res.psnr
    longer = fit_batch(ARCH, init, COORDS, y, settings(steps=600, lr=5e-3, target_psnr=25.0, compile=compile,
                                                       kernel=kernel))
    stopped = res.steps < 300
    assert stopped.any()
    assert torch.equal(longer.params[stopped], res.params[stopped])  # a stopped INR no longer changes
    assert torch.equal(longer.steps[stopped], res.steps[stopped])


def test_nan_target_marks_only_that_inr_failed():
    init = ARCH.init_flat(range(3))
    y = targets(3)
    bad = y.clone()
    bad[1, 5] = float("nan")
    res = fit_batch(ARCH, init, COORDS, bad, settings())
    assert res.failed.tolist() == [False, True, False]
    assert math.isnan(res.psnr[1]) and math.isnan(res.loss[1])
    assert res.steps[1] == 0
    assert torch.equal(res.params[1], init[1])  # frozen at its last finite parameters
    clean = fit_batch(ARCH, init[[0, 2]], COORDS, y[[0, 2]], settings())
    torch.testing.assert_close(res.params[[0, 2]], clean.params, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel", ["native", "inductor"])
def test_compiled_step_agrees_with_eager(kernel):
    init = ARCH.init_flat(range(4))
    y = targets(4)
    eager = fit_batch(ARCH, init, COORDS, y, settings(steps=10))
    compiled = fit_batch(ARCH, init, COORDS, y, settings(steps=10, compile=True, kernel=kernel))
    torch.testing.assert_close(compiled.params, eager.params, rtol=1e-4, atol=1e-5)


def test_fourier_relu_inrs_fit():
    arch = make_arch("relu-fourier", fourier_features=8, hidden=16)
    y = targets(2)
    res = fit_batch(arch, arch.init_flat(range(2)), COORDS, y, settings(steps=150, lr=5e-3))
    assert (res.psnr > 15).all()


def test_inr_seed_is_a_function_of_seed_object_view():
    assert inr_seed(0, 1, 2) == inr_seed(0, 1, 2)
    seeds = {inr_seed(s, i, v) for s in range(2) for i in range(50) for v in range(3)}
    assert len(seeds) == 300
    assert inr_seed(np.int64(3), np.int32(1), 0) == inr_seed(3, 1, 0)
    for args, name in [((-1, 0, 0), "seed"), ((1.5, 0, 0), "seed"), ((0, -2, 0), "index"), ((0, 0, True), "view")]:
        with pytest.raises(InrforgeError, match=f"{name} must be an integer >= 0"):
            inr_seed(*args)  # -1 was a raw ValueError, 1.5 silently the seed of 1


@pytest.mark.parametrize("kw, msg", [(dict(steps=0), "--steps"), (dict(lr=-1.0), "--lr"),
                                     (dict(batch_size=0), "--batch-size"),
                                     (dict(device="tpu"), r"unknown device 'tpu'; use cpu or cuda\[:N\]$"),
                                     (dict(device="mps"), r"unsupported device 'mps'; use cpu or cuda"),
                                     (dict(target_psnr=float("nan")), "target-psnr"),
                                     (dict(lr="1e-3"), "--lr must be a positive number, got '1e-3'"),
                                     (dict(lr=None), "--lr"), (dict(lr=True), "--lr"),
                                     (dict(target_psnr="40"), "--target-psnr must be a number"),
                                     (dict(compile="no"), "compile must be True or False")])
def test_bad_settings_are_user_errors(kw, msg):
    with pytest.raises(InrforgeError, match=msg):
        settings(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda():
    with pytest.raises(InrforgeError, match="CUDA is not available"):
        settings(device="cuda")


def test_polynomial_sincos_matches_libm():
    from inrforge.fit import sincos

    u = torch.cat([torch.linspace(-1e4, 1e4, 400_001),
                   torch.tensor([0.0, math.pi / 4, math.pi / 2, -math.pi, 1.5 * math.pi, -2.5 * math.pi])])
    s, c = sincos(u)
    exact = u.double()
    assert (s.double() - exact.sin()).abs().max() < 1.5e-7
    assert (c.double() - exact.cos()).abs().max() < 1.5e-7


def test_fused_step_gradients_equal_autograd():
    """The compiled step's maths (polynomial sin/cos, stored derivatives) is autograd's gradient."""
    from inrforge.fit import backprop, sincos
    from inrforge.inr import encode

    arch = make_arch(hidden=8)
    flat = arch.init_flat(range(3)).double()
    w = Weights.from_flat(flat, arch)
    params = [t.clone().requires_grad_(True) for t in w.tensors()]
    x = encode(arch, COORDS.double())
    y = torch.rand(3, 36, 1, dtype=torch.float64)
    per_inr_mse(arch, params[0::2], params[1::2], x, y).sum().backward()
    _, gw, gb, derivs = backprop(arch, w.weights, w.biases, x, y, torch.ones(3, dtype=torch.bool), sincos)
    assert len(derivs) == arch.n_layers - 1
    for p, g in zip(params, [t for pair in zip(gw, gb) for t in pair]):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


def test_an_inr_whose_last_update_diverges_is_marked_failed():
    """The update of the last step can make the loss non-finite: that INR is failed too, not a
    successful INR with a NaN/inf loss."""
    init = ARCH.init_flat(range(3))
    y = targets(3)
    for steps, lr in [(1, 1e20), (2, 1e10)]:
        res = fit_batch(ARCH, init, COORDS, y, settings(steps=steps, lr=lr))
        assert res.failed.tolist() == [True, True, True]
        assert res.steps.tolist() == [steps] * 3  # the updates applied, the last one included
        assert torch.isnan(res.loss).all() and torch.isnan(res.psnr).all()


@pytest.mark.parametrize("arch, shapes, msg", [
    (make_arch("siren", hidden=8, out_features=3), dict(targets=(2, 36, 1)), r"targets must be \(2, 36, 3\)"),
    (ARCH, dict(targets=(2, 36, 3)), r"targets must be \(2, 36, 1\)"),
    (ARCH, dict(targets=(2, 36)), r"targets must be \(2, 36, 1\)"),
    (ARCH, dict(targets=(1, 36, 1)), r"targets must be \(2, 36, 1\)"),
    (ARCH, dict(coords=(36, 3)), r"coords must be \(N, 2\) or \(2, N, 2\)"),
    (ARCH, dict(coords=(3, 36, 2)), r"coords must be \(N, 2\)"),
    (ARCH, dict(init=(2, 104)), r"init must be \(B, 105\)"),
    (ARCH, dict(coords=(0, 2), targets=(2, 0, 1)), r"^fit_batch: no points to fit \(coords is \(0, 2\)\)$"),
])
def test_mismatched_shapes_are_user_errors(arch, shapes, msg):
    """Gray targets for an RGB arch used to broadcast silently (every channel fitted to gray)."""
    init = torch.zeros(shapes.get("init", (2, arch.param_count)))
    coords = torch.zeros(shapes.get("coords", (36, 2)))
    y = torch.zeros(shapes.get("targets", (2, 36, arch.out_features)))
    with pytest.raises(InrforgeError, match=msg):
        fit_batch(arch, init, coords, y, settings(steps=1))


def test_per_inr_coordinates_and_empty_batches():
    init = ARCH.init_flat(range(3))
    y = targets(3)
    shared = fit_batch(ARCH, init, COORDS, y, settings(steps=5))
    perm = torch.randperm(36, generator=torch.Generator().manual_seed(0))
    own = fit_batch(ARCH, init, torch.stack([COORDS, COORDS[perm], COORDS]),
                    torch.stack([y[0], y[1, perm], y[2]]), settings(steps=5))
    torch.testing.assert_close(own.params, shared.params, rtol=1e-5, atol=1e-6)  # same points, other order
    empty = fit_batch(ARCH, init[:0], COORDS, y[:0], settings(steps=5))
    assert empty.params.shape == (0, ARCH.param_count) and empty.failed.shape == (0,)


def test_a_target_psnr_below_any_reachable_stops_at_once():
    res = fit_batch(ARCH, ARCH.init_flat(range(2)), COORDS, targets(2), settings(target_psnr=-5000.0))
    assert res.steps.tolist() == [0, 0] and not res.failed.any()


def test_cuda_paths_that_can_be_checked_without_a_gpu(monkeypatch):
    """No GPU here: the CUDA branches' own logic, with torch.cuda's answers stood in for."""
    import inrforge.fit as ifit
    from inrforge.checks import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == torch.device("cuda:0") and check_device("cuda").type == "cuda"
    with pytest.raises(InrforgeError, match=r"^device 'cuda:3' requested but this host has 1 CUDA device "
                                            r"\(cuda:0 to cuda:0\)$"):  # torch: a late "invalid device ordinal"
        check_device("cuda:3")
    # the memory probe counts what torch's own cache holds unused as free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (4 << 30, 80 << 30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev=None: 12 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev=None: 4 << 30)
    per_inr = ifit.batch_bytes(ARCH, 784)
    assert ifit.memory_batch_limit(ARCH, 784, "cuda") == (12 << 30) // 4 // per_inr
    # torch.compile on a GPU needs Triton; there it compiles in Inductor's deterministic mode
    monkeypatch.setattr(ifit, "_has_triton", lambda: False)
    with pytest.raises(InrforgeError, match=r"torch.compile on cuda needs Triton, .*; pass --no-compile$"):
        ifit.check_compiler("cuda")
    ifit.check_compiler("cpu")  # g++ is here
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw.get("options")) or fn)
    monkeypatch.setattr(ifit, "_COMPILED", {})
    native, inductor = FitSettings(), FitSettings(kernel="inductor")
    assert ifit._step_fn(ARCH, native, torch.device("cpu")) is ifit.fused_step and seen == []
    ifit._step_fn(ARCH, native, torch.device("cuda"))  # a GPU always compiles with Inductor
    ifit._step_fn(ARCH, inductor, torch.device("cpu"))
    ifit._step_fn(ARCH, inductor, torch.device("cuda", 1))  # the same compiled step for every GPU
    assert seen == [{"deterministic": True}, None]


@pytest.mark.parametrize("compile, kernel", [(False, "native"), (True, "native"), (True, "inductor")])
def test_the_device_side_loop_gives_the_same_bits(compile, kernel):
    """The GPU's loop (no host sync per step: stopped INRs restored on the device, the "all stopped"
    check every 32 steps) against the host's, on this CPU: early stops at different steps, an INR
    whose target is NaN (failed at step 0), updates that overflow, every INR stopping early, and
    the cosine schedule with the first layer's own learning rate."""
    init = ARCH.init_flat(range(6))
    y = targets(6)
    y[0] = 0.5  # reaches 25 dB within a few steps
    y[3, 7] = float("nan")
    cases = [settings(steps=150, lr=5e-3, target_psnr=25.0, compile=compile, kernel=kernel),
             settings(steps=40, lr=5e-3, compile=compile, kernel=kernel),
             settings(steps=3, lr=1e10, compile=compile, kernel=kernel),
             settings(steps=100, lr=5e-3, target_psnr=-100.0, compile=compile, kernel=kernel),  # all stop at once
             settings(steps=150, lr=5e-3, target_psnr=25.0, compile=compile, kernel=kernel, lr_schedule="cosine",
                      first_layer_lr=10.0)]  # two parameter groups and a schedule
    for s in cases:
        host = fit_batch(ARCH, init, COORDS, y, s, device_side=False)
        device = fit_batch(ARCH, init, COORDS, y, s, device_side=True)
        for field in ("params", "loss", "psnr", "steps", "failed"):
            assert torch.equal(getattr(host, field).nan_to_num(), getattr(device, field).nan_to_num()), (s, field)
            assert torch.equal(getattr(host, field).isnan(), getattr(device, field).isnan()), (s, field)
    assert fit_batch(ARCH, init, COORDS, y, cases[0], device_side=True).steps[0] < 150  # early stop happened


def test_the_default_batch_follows_the_step_that_runs_it():
    """On a CPU ~25,000 INR-points per step keep Inductor's or the eager step's activations in cache;
    the native kernel keeps none across INRs and takes at least 256; a GPU takes 8,192."""
    from inrforge.fit import default_batch_size

    assert default_batch_size("cpu", 784) == 31 and default_batch_size("cpu", 784, native=True) == 256
    assert default_batch_size("cpu", 64) == default_batch_size("cpu", 64, native=True) == 390
    assert default_batch_size("cpu", 10**6) == 16 and default_batch_size("cpu", 1) == 4096
    assert default_batch_size("cuda", 784) == default_batch_size("cuda", 784, native=True) == 8192
