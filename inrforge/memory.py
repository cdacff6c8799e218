"""How much memory this machine has, and has free now: what the memory checks of the sources
(building a grid) and of the fitter (a batch's activations) compare with."""

from __future__ import annotations

import os

__all__ = ["available_bytes", "physical_memory"]


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
