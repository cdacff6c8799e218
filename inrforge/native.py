"""The fused CPU fitting step: a C++ kernel built once per machine and loaded with ctypes.

:func:`fused_step` computes what :func:`inrforge.fit.backprop` computes (each INR's MSE and its
gradient, zero for inactive INRs) for SIREN and ReLU MLPs, in one cache-resident pass per INR
with the sine's and cosine's elementwise work fused into the products (``kernels/fused_step.cpp``
says how).  On a CPU it is several times faster than the ``torch.compile`` step
(docs/benchmarks.md), and an INR's result does not depend on its batch or the thread count.

The source is compiled with the C++ compiler ``torch.compile`` would use (``$CXX``, default
``g++``; ``clang++`` on macOS) for this CPU (``-march=native``) into a cache folder
(``$INRFORGE_CACHE``, else ``$XDG_CACHE_HOME/inrforge`` or ``~/.cache/inrforge``), under a name
that hashes the source, the compiler, the flags and the CPU's features, so that a folder shared
by different machines (a cluster's home) never hands one a library built for another.  A build
takes about 2 s, once; concurrent builders each write their own file and rename it into place.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .arch import INRSpec
from .errors import InrforgeError

SOURCE = Path(__file__).with_name("kernels") / "fused_step.cpp"
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC")
# tried in turn until one builds: without OpenMP the kernel runs on one thread, and without
# -march=native (a compiler that does not know this CPU) on the baseline instruction set
FALLBACKS = ((("-fopenmp",), ()), ((), ()), (("-fopenmp",), ("-march=native",)), ((), ("-march=native",)))
# points per chunk: one 32-wide INR's activations for 256 points are ~100 KB, within L2
CHUNK = 256
BUILD_SECONDS = 600

_LIB = None


def cxx_compiler() -> str:
    """The C++ compiler's command: ``$CXX``, else ``g++`` (``clang++`` on macOS), as Inductor's."""
    return os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")


def cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring)."""
    if os.environ.get("INRFORGE_CACHE"):
        return Path(os.environ["INRFORGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "inrforge"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags (Linux), else the platform's
    description of the processor."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()} {platform.platform()}"


def compiler_identity(cxx: str | None = None) -> str | None:
    """The first line of ``cxx --version`` (default :func:`cxx_compiler`), e.g. ``g++ (Debian
    12.2.0-14) 12.2.0``: the compiler a compiled CPU step's numbers depend on; None where it does
    not run."""
    try:
        return _compiler_identity(cxx or cxx_compiler())
    except InrforgeError:
        return None


@functools.lru_cache(maxsize=8)  # asked once per compiler command and process (a failure is asked again)
def _compiler_identity(cxx: str) -> str:
    try:
        done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise InrforgeError(f"the fused fitting step needs a C++ compiler ({cxx}: {e}; install one or set CXX), "
                            f"or pass --no-compile") from None
    return done.stdout.splitlines()[0] if done.stdout else cxx


def _build(cxx: str, target: Path) -> None:
    """Compile :data:`SOURCE` into ``target`` with the first of :data:`FALLBACKS` that builds, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    try:
        errors = ""
        for extra, dropped in FALLBACKS:
            flags = [f for f in FLAGS if f not in dropped]
            try:
                done = subprocess.run([cxx, *flags, *extra, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                      timeout=BUILD_SECONDS)
            except subprocess.TimeoutExpired:
                raise InrforgeError(f"building the fused fitting step with {cxx} took more than {BUILD_SECONDS} s; "
                                    f"pass --no-compile") from None
            if done.returncode == 0:
                os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep a shared cache's other users out
                os.replace(tmp, target)
                return
            errors = errors or done.stderr
        first = next((ln for ln in errors.splitlines() if "error" in ln), errors.strip()[:200])
        raise InrforgeError(f"building the fused fitting step with {cxx} failed: {first} (or pass --no-compile)")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def library_path(rebuild: bool = False) -> Path:
    """The built kernel for this source, compiler, flags and CPU: in the cache folder, else (one
    that cannot be written) in a temporary one; built where missing, or again with ``rebuild``."""
    cxx = cxx_compiler()
    key = hashlib.sha256("\0".join([SOURCE.read_text(), _compiler_identity(cxx), " ".join(FLAGS),
                                    _cpu_signature()]).encode()).hexdigest()[:20]
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"inrforge-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        target = folder / f"fused_step-{key}.so"
        if target.exists() and not rebuild:
            return target
        try:
            _build(cxx, target)
            return target
        except OSError:
            continue  # a cache folder that cannot be written: the temporary one
    raise InrforgeError(f"cannot write the fused fitting step to {cache_dir()} nor to a temporary folder")


def load():
    """The loaded kernel library (built on first use in this process; later calls reuse it).  A
    cached file that does not load (truncated, damaged, built elsewhere, unreadable) is built again
    over it, once; if that does not load either, an :class:`InrforgeError` names the file."""
    global _LIB
    if _LIB is None:
        try:
            lib = ctypes.CDLL(str(library_path()))
        except OSError:
            path = library_path(rebuild=True)
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:
                raise InrforgeError(f"cannot load the fused fitting step {path} ({e}); pass --no-compile") from None
        p, i = ctypes.c_void_p, ctypes.c_int
        lib.fused_step.argtypes = [i, i, p, p, p, p, p, i, p, i, p, p, ctypes.c_float, ctypes.c_float, i, i, i]
        lib.fused_step.restype = i
        _LIB = lib
    return _LIB


@functools.lru_cache(maxsize=64)
def _layout_arrays(arch: INRSpec):
    """The kernel's view of ``arch``: its widths and each slot's offset as C arrays, built once per
    arch rather than at every step (the arrays are only read)."""
    widths = (ctypes.c_int * len(arch.widths))(*arch.widths)
    offsets = (ctypes.c_int64 * len(arch.layout))(*(s.offset for s in arch.layout))
    return widths, offsets


def _check_shapes(arch: INRSpec, flat, coords, targets, active) -> None:
    """An :class:`InrforgeError` unless the shapes agree (the kernel reads and writes by them):
    ``targets`` (B, N >= 1, out), ``flat`` B x P numbers, ``coords`` (N, d0) or (B, N, d0) and
    ``active`` (B,) on the CPU."""
    d0 = arch.widths[0]
    b, n = (targets.shape[0], targets.shape[1]) if targets.ndim == 3 else (None, 0)
    if b is None or n == 0 or targets.shape[2] != arch.widths[-1]:
        raise InrforgeError(f"fused_step: targets must be (B, N >= 1, {arch.widths[-1]}), got {tuple(targets.shape)}")
    if flat.numel() != b * arch.param_count:
        raise InrforgeError(f"fused_step: flat holds {flat.numel()} numbers, not {b} x {arch.param_count}")
    if tuple(coords.shape) not in ((n, d0), (b, n, d0)):
        raise InrforgeError(f"fused_step: coords must be ({n}, {d0}) or ({b}, {n}, {d0}), got {tuple(coords.shape)}")
    if tuple(active.shape) != (b,) or active.device.type != "cpu":
        raise InrforgeError(f"fused_step: active must be ({b},) on the CPU, got {tuple(active.shape)} on {active.device}")


def fused_step(arch: INRSpec, flat: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor,
               active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mse (B,), gradient laid out like flat)`` of the B INRs in the layer-major buffer ``flat``
    (:func:`inrforge.fit.stacked_views`) on ``coords`` (N, d0) or (B, N, d0) (already encoded) and
    ``targets`` (B, N, out); the gradient of an inactive INR is zero.  CPU float32 tensors only; it
    uses torch's thread count."""
    lib = load()
    for name, t in (("flat", flat), ("coords", coords), ("targets", targets)):
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise InrforgeError(f"the fused fitting step takes float32 CPU tensors; {name} is {t.dtype} on {t.device}")
    _check_shapes(arch, flat, coords, targets, active)
    b, n = targets.shape[0], targets.shape[1]
    flat, coords, targets = flat.contiguous(), coords.contiguous(), targets.contiguous()
    widths, offsets = _layout_arrays(arch)
    on = active.to(torch.uint8).contiguous()
    grad = torch.empty_like(flat)
    mse = torch.empty(b, dtype=torch.float32)
    status = lib.fused_step(b, len(arch.widths) - 1, widths, offsets, flat.data_ptr(), grad.data_ptr(),
                            coords.data_ptr(), int(coords.ndim == 3), targets.data_ptr(), n, on.data_ptr(),
                            mse.data_ptr(), float(arch.w0), float(arch.output_offset), int(arch.family == "siren"),
                            torch.get_num_threads(), CHUNK)
    if status:
        raise InrforgeError("the fused fitting step could not allocate its working memory")
    return mse, grad
