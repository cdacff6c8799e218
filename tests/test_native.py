"""The fused C++ fitting step (inrforge.native): its gradients, its independence from the batch and
the thread count, and how it is built and cached."""

import os
import stat

import pytest
import torch

from inrforge import native
from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.fit import FitSettings, backprop, fit_batch, inr_seed, libm_sincos
from inrforge.inr import encode, image_grid
from inrforge.weights import Weights

ARCHS = {
    "siren-dwsnets": make_arch(hidden=8),
    "siren, 3 outputs, odd widths": make_arch("siren", hidden=13, depth=4, out_features=3),
    "relu": make_arch("relu", hidden=6, depth=3, out_features=2),
    "relu-fourier": make_arch("relu-fourier", fourier_features=5, hidden=7),
    "wide": make_arch(hidden=40, depth=2),
}


def stacked(arch, flat):
    """(B, P) parameters as fit_batch's layer-major buffer."""
    return torch.cat([flat[:, s.offset:s.offset + s.size].reshape(-1) for s in arch.layout])


def exact(arch, flat, coords, targets, active, dtype=torch.float64):
    """The reference: backprop with libm's sin/cos (in float64), laid out like the buffer."""
    w = Weights.from_flat(flat.to(dtype), arch)
    mse, gw, gb, _ = backprop(arch, w.weights, w.biases, coords.to(dtype), targets.to(dtype), active, libm_sincos)
    return mse.double(), torch.cat([t.reshape(-1) for pair in zip(gw, gb) for t in pair]).double()


def assert_as_close_as_torch(arch, flat, coords, targets, active, mse, grad):
    """``mse`` and ``grad`` are float64 backprop's, as closely as torch's own float32 backprop is
    (within 3x its error, or 1e-6 of the largest gradient): a SIREN's w0 = 30 amplifies float32's
    rounding layer after layer, for any implementation."""
    ref_mse, ref_grad = exact(arch, flat, coords, targets, active)
    f32_mse, f32_grad = exact(arch, flat, coords, targets, active, torch.float32)
    torch.testing.assert_close(mse.double(), ref_mse, rtol=1e-5, atol=1e-7)
    scale = ref_grad.abs().max()
    err, torch_err = (grad.double() - ref_grad).abs().max(), (f32_grad - ref_grad).abs().max()
    assert err <= max(3 * torch_err, 1e-6 * scale), (err, torch_err, scale)


def case(arch, b=5, n=37, per_inr=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    flat = arch.init_flat([inr_seed(seed, i, 0) for i in range(b)])
    flat = flat + 0.05 * torch.randn(flat.shape, generator=g)  # not only the init's zero biases
    shape = (b, n, arch.in_features) if per_inr else (n, arch.in_features)
    coords = encode(arch, torch.rand(shape, generator=g) * 2 - 1)
    targets = torch.rand(b, n, arch.out_features, generator=g)
    return flat, coords, targets


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("n, chunk", [(37, native.CHUNK), (300, 64), (9, native.CHUNK)])
def test_mse_and_gradients_equal_float64_backprop(name, n, chunk, monkeypatch):
    """Every family and width pattern (remainders of the register blocks), one chunk or several
    (the last one part padding), shared coordinates: the MSE and gradient of every active INR
    equal float64 backpropagation as closely as torch's float32 does; an inactive INR's gradient is 0."""
    monkeypatch.setattr(native, "CHUNK", chunk)
    arch = ARCHS[name]
    flat, coords, targets = case(arch, n=n)
    active = torch.tensor([True, True, False, True, True])
    mse, grad = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
    assert_as_close_as_torch(arch, flat, coords, targets, active, mse, grad)
    inactive = torch.cat([(~active).repeat_interleave(s.size) for s in arch.layout])
    assert torch.count_nonzero(grad[inactive]) == 0


def test_per_inr_coordinates():
    arch = ARCHS["siren, 3 outputs, odd widths"]
    flat, coords, targets = case(arch, n=50, per_inr=True)
    active = torch.ones(5, dtype=torch.bool)
    mse, grad = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
    assert_as_close_as_torch(arch, flat, coords, targets, active, mse, grad)


def test_an_inr_gets_the_same_bits_in_any_batch_and_with_any_thread_count():
    """Each INR is computed by one thread in a fixed order: its MSE and gradient are the same bits
    alone, in a batch of 5, and on 1 or 2 threads."""
    arch = ARCHS["siren-dwsnets"]
    flat, coords, targets = case(arch, n=200)
    active = torch.ones(5, dtype=torch.bool)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mse, grad = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
        torch.set_num_threads(1)
        mse1, grad1 = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(mse, mse1) and torch.equal(grad, grad1)
    for k in (0, 3):
        alone_mse, alone_grad = native.fused_step(arch, stacked(arch, flat[k:k + 1]), coords, targets[k:k + 1],
                                                  active[:1])
        mine = torch.cat([grad[5 * s.offset + k * s.size:5 * s.offset + (k + 1) * s.size] for s in arch.layout])
        assert torch.equal(alone_mse[0], mse[k]) and torch.equal(alone_grad, mine)


def test_non_finite_parameters_give_a_non_finite_mse_for_that_inr_only():
    arch = ARCHS["siren-dwsnets"]
    flat, coords, targets = case(arch)
    flat[2, 3] = float("nan")
    flat[4, -1] = float("inf")
    mse, _ = native.fused_step(arch, stacked(arch, flat), coords, targets, torch.ones(5, dtype=torch.bool))
    assert torch.isfinite(mse).tolist() == [True, True, False, True, False]


def test_fit_batch_with_the_native_kernel_follows_the_eager_fit():
    """A whole fit (Adam, early stop bookkeeping) with the fused step ends where the eager one does,
    to float32 rounding carried over 30 steps."""
    arch = ARCHS["siren-dwsnets"]
    init = arch.init_flat(range(4))
    targets = torch.rand(4, 36, 1, generator=torch.Generator().manual_seed(1))
    kw = dict(steps=30, lr=1e-3, target_psnr=None, batch_size=4)
    eager = fit_batch(arch, init, image_grid(6, 6), targets, FitSettings(**kw, compile=False))
    fused = fit_batch(arch, init, image_grid(6, 6), targets, FitSettings(**kw, compile=True, kernel="native"))
    torch.testing.assert_close(fused.params, eager.params, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.psnr, eager.psnr, rtol=0, atol=1e-3)


def test_only_float32_cpu_tensors_are_taken():
    arch = ARCHS["siren-dwsnets"]
    flat, coords, targets = case(arch)
    with pytest.raises(InrforgeError, match="float32 CPU tensors; coords is torch.float64"):
        native.fused_step(arch, stacked(arch, flat), coords.double(), targets, torch.ones(5, dtype=torch.bool))


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process-state without a loaded kernel, building into ``tmp_path / "cache"``."""
    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setenv("INRFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_kernel_is_built_once_into_the_cache_and_reused(fresh, monkeypatch):
    path = native.library_path()
    assert path.parent == fresh and path.name.startswith("fused_step-") and path.suffix == ".so"
    assert [p.name for p in fresh.iterdir()] == [path.name]  # no temporary file left behind
    built = path.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(native, "_build", lambda *a: calls.append(a))
    assert native.library_path() == path and path.stat().st_mtime_ns == built and not calls
    # another source, compiler or CPU is another file: a shared cache never hands out a stale one
    monkeypatch.setattr(native, "_cpu_signature", lambda: "another CPU")
    other = native.library_path()
    assert other != path and calls


def test_an_unwritable_cache_falls_back_to_a_temporary_folder(fresh, monkeypatch, tmp_path):
    if os.geteuid() == 0:
        monkeypatch.setenv("INRFORGE_CACHE", "/proc/inrforge-cache")  # root writes anywhere but there
    else:
        fresh.mkdir()
        fresh.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    path = native.library_path()
    assert path.parent == tmp_path / "tmp" / f"inrforge-{os.getuid()}"
    native.load()  # and it loads


def test_a_compiler_that_fails_is_one_line_naming_it(fresh, monkeypatch, tmp_path):
    bad = tmp_path / "badcxx"
    bad.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'bad 1.0'; exit 0; }\n"
                   "echo 'fused_step.cpp:1: error: this compiler cannot' >&2; exit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CXX", str(bad))
    with pytest.raises(InrforgeError, match=r"^building the fused fitting step with .*badcxx failed: "
                                            r"fused_step.cpp:1: error: this compiler cannot \(or pass --no-compile\)$"):
        native.load()
    assert not any(fresh.iterdir()) if fresh.exists() else True  # nothing half-built is kept
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(InrforgeError, match=r"needs a C\+\+ compiler .*no-such-compiler.*or pass --no-compile$"):
        native.load()


def test_a_compiler_without_openmp_or_this_cpu_still_builds_a_working_kernel(fresh, monkeypatch, tmp_path):
    """The kernel is built without OpenMP (one thread) and without -march=native where the compiler
    refuses them, and still computes the same step."""
    picky = tmp_path / "pickycxx"
    picky.write_text('#!/bin/sh\nfor a in "$@"; do case "$a" in -fopenmp|-march=native) '
                     'echo "error: unsupported option $a" >&2; exit 1;; esac; done\nexec g++ "$@"\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CXX", str(picky))
    arch = ARCHS["relu"]
    flat, coords, targets = case(arch, n=40)
    active = torch.ones(5, dtype=torch.bool)
    mse, grad = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
    assert_as_close_as_torch(arch, flat, coords, targets, active, mse, grad)


def test_the_avx512_configuration_computes_the_same_step(fresh, monkeypatch):
    """The wide configuration (16 lanes, 8-row blocks), which only AVX-512 CPUs build by themselves,
    forced here with FUSED_STEP_WIDE: the same gradients, for widths that leave every remainder."""
    # -O1: this build checks the logic, and splitting 16-lane vectors is slow to optimise (~20 s at -O3)
    flags = tuple("-O1" if f == "-O3" else f for f in native.FLAGS)
    monkeypatch.setattr(native, "FLAGS", flags + ("-DFUSED_STEP_WIDE",))
    for name in ("siren, 3 outputs, odd widths", "wide", "relu-fourier"):
        arch = ARCHS[name]
        flat, coords, targets = case(arch, n=70)
        active = torch.tensor([True, False, True, True, True])
        mse, grad = native.fused_step(arch, stacked(arch, flat), coords, targets, active)
        assert_as_close_as_torch(arch, flat, coords, targets, active, mse, grad)


@pytest.mark.parametrize("change, msg", [
    (dict(targets=torch.zeros(5, 0, 1)), r"targets must be \(B, N >= 1, 1\), got \(5, 0, 1\)"),
    (dict(targets=torch.zeros(5, 37, 2)), r"targets must be \(B, N >= 1, 1\)"),
    (dict(flat=torch.zeros(10)), r"flat holds 10 numbers, not 5 x 105"),
    (dict(coords=torch.zeros(36, 2)), r"coords must be \(37, 2\) or \(5, 37, 2\), got \(36, 2\)"),
    (dict(active=torch.ones(4, dtype=torch.bool)), r"active must be \(5,\) on the CPU, got \(4,\)"),
])
def test_shapes_that_disagree_are_refused_before_the_kernel_reads_them(change, msg):
    arch = ARCHS["siren-dwsnets"]
    flat, coords, targets = case(arch)
    args = dict(flat=stacked(arch, flat), coords=coords, targets=targets, active=torch.ones(5, dtype=torch.bool))
    with pytest.raises(InrforgeError, match=r"^fused_step: " + msg):
        native.fused_step(arch, **{**args, **change})


def test_a_damaged_cached_kernel_is_built_again_and_a_shared_cache_is_readable(fresh):
    path = native.library_path()
    assert path.stat().st_mode & 0o755 == 0o755  # other users of a shared cache may load it
    path.write_bytes(b"not a library")
    native.load()  # built again over it
    assert path.stat().st_size > 1000
