"""How much memory this machine has, and has free now: what the memory checks of the sources
(building a grid), the fitter (a batch's activations) and the models (a training step's
activations) compare with."""

from __future__ import annotations

import os

__all__ = ["available_bytes", "free_bytes", "physical_memory"]


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
