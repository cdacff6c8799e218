"""Helpers shared by tests that compare whole stores bitwise or watch which shards were rewritten."""

import os

import numpy as np

from inrforge.store import open_store


def snapshot(path):
    """Every array a fit writes, read back."""
    s = open_store(path)
    return {"params": s.params[...], "psnr": s.metric("psnr"), "loss": s.metric("loss"),
            "steps": s.metric("steps"), "failed": s.metric("failed"), "done": s.done()}


def assert_same(a, b):
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def shard_files(path):
    """{params shard file: mtime_ns}: a refitted shard gets a new mtime."""
    root = os.path.join(path, "params", "c")
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(root) for f in fs}
