"""How much memory this machine has, and has free now: what the memory checks of the sources
(building a grid), the fitter (a batch's activations) and the models (a training step's
activations) compare with."""

from __future__ import annotations

import os

__all__ = ["available_bytes", "free_bytes", "keep_freed_memory", "physical_memory"]

# glibc's mallopt parameters (malloc.h) and the values keep_freed_memory sets
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_BYTES = 1 << 30
_kept = None


def available_bytes() -> int:
    """MemAvailable (free memory plus what the kernel can reclaim), else the free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, or None when it cannot be told."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def free_bytes(device) -> int:
    """Memory free for new tensors on ``device`` (a ``torch.device``): a GPU's free memory plus what
    this process's caching allocator holds but does not use (the driver counts that as used, so a
    second job in the same process would see less than there is), or the host's
    :func:`available_bytes`."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return available_bytes()


def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep the memory of freed tensors for the next ones (True where it now
    does; False off glibc, where nothing is changed).

    By default glibc serves each block of more than a few MB with a fresh ``mmap`` and unmaps it when
    it is freed (always beyond 32 MiB), and gives the top of its heap back to the system past a
    threshold, so that a training step, which frees and allocates the same activation tensors every
    time, page-faults on every page of them again.  On a 2-core CPU that made a DWSNet training step
    1.3-2x slower (docs/benchmarks.md).  This sets ``M_MMAP_MAX`` to 0 (every block comes from the
    heap, where a freed one is reused) and ``M_TRIM_THRESHOLD`` to 1 GiB (freed memory at the top of
    the heap is kept up to that much).  The numbers computed are unchanged; the process keeps memory
    it freed instead of shrinking after a peak (a DWSNet run at batch 512 peaked about 15 % higher).  It
    affects the whole process, from then on: the training loops call it."""
    global _kept
    if _kept is None:
        _kept = False
        import ctypes
        import platform

        if platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _kept = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)) and bool(mallopt(_M_MMAP_MAX, 0))
            except (OSError, AttributeError):
                pass
    return _kept
