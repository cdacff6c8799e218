"""Quieting asyncio's reports about the tasks zarr abandons when a read fails, so that a damaged
chunk is one line of error, not dozens of lines of asyncio noise at exit."""

from __future__ import annotations

import atexit
import logging
import os
import warnings

_ABANDONED = r"coroutine 'concurrent_map\.<locals>\.run' was never awaited"  # zarr's, left by a failed read


class _ZarrTaskNoise(logging.Filter):
    """Drops asyncio's reports about zarr's own tasks: when one chunk of a read fails to decode,
    zarr abandons the read's other tasks, and asyncio reports each of them (``Task was destroyed but
    it is pending!``, ``exception was never retrieved``) when they are collected, often at exit:
    dozens of lines after the one-line error, different on every run.  Only those two reports,
    and only about tasks running zarr's code, are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = logging.Formatter().format(record)
        about_zarr = f"zarr{os.sep}core{os.sep}" in text or f"zarr{os.sep}codecs{os.sep}" in text
        return not (about_zarr and ("Task was destroyed but it is pending" in text
                                    or "exception was never retrieved" in text))


def _ignore_abandoned() -> None:
    warnings.filterwarnings("ignore", message=_ABANDONED, category=RuntimeWarning)


def _quiet_abandoned_reads() -> None:
    """After a failed read: no asyncio reports or never-awaited warnings about zarr's abandoned
    tasks, now or when they are collected at exit (a command's warnings context is gone by then)."""
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, _ZarrTaskNoise) for f in log.filters):
        log.addFilter(_ZarrTaskNoise())
        atexit.register(_ignore_abandoned)
    _ignore_abandoned()
