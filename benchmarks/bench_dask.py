"""Single-process fit vs Dask LocalCluster fit of the same job, and Dask's overhead per shard.

1. Overhead: a near-empty job (1 step, 1 object per shard, so one task per object) fitted by the
   single-process loop and by the cluster; the difference per shard is what a task costs
   (scheduling, opening the store, writing the shard's files).  This also warms the workers
   (imports, source cache), so step 2 measures fitting, not start-up.
2. Throughput: digits, N objects, S steps, no early stop, shards of K objects, fitted by one
   process (all cores, then 1 thread) and by W single-threaded worker processes; INR/s of each.
   The stores are compared bit for bit.

Each case is timed ``--repeat`` times (best kept, ``time.perf_counter`` around the whole fit,
store writes included): on a shared machine the spread is large.  Needs the ``distributed``
package.

    python benchmarks/bench_dask.py [--objects 256] [--steps 200] [--shard 32] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time

import numpy as np

from _common import setting
from inrforge.errors import InrforgeError
from inrforge.script import ArgumentParser, HelpAsWritten, positive_int


def main():
    p = ArgumentParser(description=__doc__, formatter_class=HelpAsWritten)
    p.add_argument("--source", default="digits", help="the source fitted (inrforge's names)")
    p.add_argument("--objects", type=positive_int, default=256, help="objects fitted")
    p.add_argument("--steps", type=positive_int, default=200, help="steps per INR, no early stop")
    p.add_argument("--shard", type=positive_int, default=32, help="objects per shard (one task each)")
    p.add_argument("--views", type=positive_int, default=1, help="INRs per object")
    p.add_argument("--workers", type=positive_int, default=2, help="LocalCluster workers, 1 thread each")
    p.add_argument("--overhead-shards", type=positive_int, default=64, help="shards of the near-empty job")
    p.add_argument("--compile", action="store_true", help="torch.compile the fitting step")
    p.add_argument("--repeat", type=positive_int, default=3, help="time each case this many times, keep the best")
    a = p.parse_args()
    if importlib.util.find_spec("distributed") is None:
        p.error("needs the distributed package (pip install distributed)")
    try:
        bench(a)
    except InrforgeError as e:  # an unknown source, missing data, ...
        p.error(str(e))


def bench(a):
    from distributed import Client, LocalCluster

    from inrforge.distributed import fit_inrs_distributed
    from inrforge.fitjob import fit_inrs
    from inrforge.sources import load_source
    from inrforge.store import open_store

    cores = len(os.sched_getaffinity(0))
    print(f"# bench_dask: {setting()} (on a shared machine figures are indicative)")
    job = dict(views=a.views, steps=a.steps, lr=1e-3, target_psnr=None, compile=a.compile,
               shard_objects=a.shard, progress=False)
    tiny = dict(views=1, steps=1, lr=1e-3, target_psnr=None, compile=False, shard_objects=1, progress=False)
    src = load_source(a.source, limit=a.objects)
    tiny_src = load_source(a.source, limit=a.overhead_shards)
    inrs, n = a.objects * a.views, a.overhead_shards
    tmp = tempfile.mkdtemp(prefix="bench_dask_")
    runs = iter(range(10**9))

    def best(fn, src, **kw):
        """Best wall time of ``a.repeat`` fits into fresh stores; returns (seconds, last result, last path)."""
        times = []
        for _ in range(a.repeat):
            path = f"{tmp}/run{next(runs)}.zarr"
            t = time.perf_counter()
            out = fn(src, path, **kw)
            times.append(time.perf_counter() - t)
        return min(times), out, path

    cluster = client = None
    try:
        # single process first (no scheduler in this process while it runs); warm it up once
        fit_inrs(load_source(a.source, limit=2), f"{tmp}/warm_local.zarr", threads=cores, **tiny)
        local_tiny, _, _ = best(fit_inrs, tiny_src, threads=cores, **tiny)
        rows, paths = [], {}
        for label, threads in ((f"single process, {cores} threads", cores), ("single process, 1 thread", 1)):
            secs, _, paths[threads] = best(fit_inrs, src, threads=threads, **job)
            rows.append((label, secs))

        t = time.perf_counter()
        cluster = LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        print(f"LocalCluster({a.workers} workers x 1 thread) started in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        fit_inrs_distributed(client, tiny_src, f"{tmp}/warm.zarr", **tiny)  # imports, source load on the workers
        cold = time.perf_counter() - t
        dist = lambda src, path, **kw: fit_inrs_distributed(client, src, path, **kw)  # noqa: E731
        dask_tiny, _, _ = best(dist, tiny_src, **tiny)
        secs, r, dask_path = best(dist, src, **job)
        rows.append((f"dask LocalCluster, {a.workers} workers x 1 thread", secs))

        print(f"\nnear-empty job, {n} shards of 1 object x 1 step (time per shard = fitting 1 step + "
              f"writing the shard, plus for dask the task's overhead):")
        print(f"  single process   {local_tiny:6.2f} s  = {1e3 * local_tiny / n:6.1f} ms per shard")
        print(f"  dask, warm       {dask_tiny:6.2f} s  = {1e3 * dask_tiny / n:6.1f} ms per shard wall, "
              f"{1e3 * dask_tiny * a.workers / n:6.1f} ms per shard per worker")
        print(f"  dask, cold (first job on fresh workers: imports, source load) {cold:.2f} s")

        print(f"\n{a.source}: {a.objects} objects x {a.views} views, {a.steps} steps, shards of {a.shard} "
              f"({-(-a.objects // a.shard)} tasks), compile={a.compile}:")
        for label, secs in rows:
            print(f"  {label:42s} {secs:7.2f} s  {inrs / secs:8.1f} INR/s")
        print(f"  dask summary (last repeat): {r.summary()}")
        ref, got = open_store(paths[cores]), open_store(dask_path)
        same = all(np.array_equal(x, y, equal_nan=True) for x, y in (
            (ref.params[...], got.params[...]), (ref.metric("loss"), got.metric("loss")),
            (ref.metric("psnr"), got.metric("psnr")), (ref.metric("steps"), got.metric("steps")),
            (ref.done(), got.done())))
        print(f"  dask store bit-identical to the single-process store: {same}")
        print(f"load average now {os.getloadavg()[0]:.2f}")
    finally:
        for c in (client, cluster):
            if c is not None:
                c.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
