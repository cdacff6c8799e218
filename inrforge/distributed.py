"""Fitting as Dask tasks on a cluster: one task per pending shard, each task writes its own shard.

The driver (:func:`fit_inrs_distributed`) validates the arguments and checks any store at the
output as :func:`inrforge.fitjob.fit_inrs` does (:func:`~inrforge.fitjob.prepare_fit`); only then,
and only when shards are left to fit, does it connect to (or start) the cluster, create the store
(every array sized up front), check that the workers can write into it, and submit one task per
shard whose ``done`` chunk is unset.  A task runs on a worker: it rebuilds the source from
the store's ``source`` attribute (cached per worker process, so MNIST never travels through the
scheduler), sets torch's thread count, fits all views of its shard on the worker's device with
:func:`~inrforge.fitjob.fit_shard` and writes the whole shard (params, metrics, then ``done``).
No two tasks touch one shard, and a task's result is a pure function of its arguments, so the
finished store is bit-identical to the single-process one and a killed worker or driver loses only
the shards in flight; re-running the same command resumes.

Dask is used as it is: ``retries`` re-runs a task that raised, and the scheduler itself re-runs a
task whose worker died (up to ``distributed.scheduler.allowed-failures`` times).  The one failure
no retry can mend, a store that another run replaced, is returned by the task instead of raised.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .arch import INRSpec
from .checks import check_device, process_count, usable_cores
from .errors import RESUMES, InrforgeError, StoreReplacedError, first_line
from .files import local_path
from .fit import FitSettings, check_compiled_step
from .fitjob import compared_versions, compiles_on_cpu, fit_request, fit_shard, prepare_fit, require_memory
from .sources import SOURCE_NAMES, Source, source_from_description
from .store import INRStore

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up


# ----- connecting -------------------------------------------------------------------------------
def local_workers(spec: str, option: str = "--scheduler") -> int | None:
    """``local`` -> one worker per core, ``local:N`` -> N; anything else -> None (an address).
    ``local:N`` with N not a positive integer is an :class:`InrforgeError` naming ``option`` (the
    command-line option that gave ``spec``)."""
    if spec == "local":
        return usable_cores()
    if spec.startswith("local:"):
        try:
            n = int(spec[6:])
        except ValueError:
            n = 0
        if n < 1:
            raise InrforgeError(f"{option} local:N needs a positive number of workers N, got {spec!r}")
        return process_count(n, f"the number of local workers ({option} local:N)")
    return None


def check_scheduler(spec: str, option: str = "--scheduler") -> int | None:
    """What :func:`scheduler_client` would refuse, checked without connecting: a batch system's
    name (those are ``pipelines/dask_fit.py``'s) or a bad ``local:N``.  Returns
    :func:`local_workers`' answer."""
    if spec.lower() in ("slurm", "pbs"):
        raise InrforgeError(f"{option} takes local:N or a running scheduler's address, not {spec!r}; "
                            f"pipelines/dask_fit.py --cluster {spec.lower()} starts {spec.upper()} workers "
                            f"(dask-jobqueue)")
    n = local_workers(spec, option)
    if n is None:  # an address: its syntax now, not after a connection attempt times out
        from distributed.comm.addressing import parse_address, parse_host_port

        try:
            protocol, location = parse_address(spec)
            if protocol in ("tcp", "tls"):
                parse_host_port(location)
        except ValueError as e:
            raise InrforgeError(f"{option} {spec!r} is neither local:N nor a scheduler address such as "
                                f"tcp://host:8786 ({first_line(e)})") from None
    return n


@contextmanager
def scheduler_client(spec: str, timeout: float | None = None, option: str = "--scheduler"):
    """A ``distributed.Client`` for ``spec``, closed on exit.

    ``spec`` is a running scheduler's address (``tcp://host:8786``) or ``local:N``: a
    ``LocalCluster`` of N single-threaded worker processes, started here and closed on exit.
    An address that does not answer within ``timeout`` seconds (default ``CONNECT_TIMEOUT``) is an
    :class:`InrforgeError`; errors name ``spec`` as the command-line ``option`` that gave it.
    """
    from distributed import Client, LocalCluster

    timeout = CONNECT_TIMEOUT if timeout is None else float(timeout)
    n = check_scheduler(spec, option)
    if n is not None:
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(spec, timeout=timeout)
    except Exception as e:  # OSError (timeout, refused), ValueError (bad address), ...
        raise InrforgeError(f"cannot reach the Dask scheduler at {spec!r} within {timeout:g} s ({first_line(e)})") from None
    with client:
        yield client


# ----- what the driver gets back ----------------------------------------------------------------
@dataclass
class FitReport:
    """The outcome of :func:`fit_inrs_distributed`."""

    store: INRStore
    shards: int  # shards in the store
    skipped: int  # already done before this call (resume)
    fitted: int = 0  # fitted by this call
    retries: int = 0  # task attempts beyond the first (a worker died, or the task raised)
    inrs: int = 0  # INRs fitted by this call
    failed_inrs: int = 0  # of those, marked failed (NaN/inf loss)
    wall_s: float = 0.0
    workers: set = field(default_factory=set)  # addresses of the workers that fitted shards

    @property
    def inr_per_s(self) -> float:
        return self.inrs / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> str:
        if not self.fitted and self.skipped == self.shards:
            return f"nothing to fit: all {self.shards} shards were already done"
        return (f"fitted {self.fitted} shards ({self.skipped} already done) of {self.shards}: {self.inrs} INRs "
                f"in {self.wall_s:.1f} s ({self.inr_per_s:.1f} INR/s) on {len(self.workers)} "
                f"worker{'' if len(self.workers) == 1 else 's'}; "
                f"retries {self.retries}; failed INRs {self.failed_inrs}")


# ----- on the workers ---------------------------------------------------------------------------
_SOURCES: dict[str, Source] = {}
_SOURCES_LOCK = threading.Lock()


def _worker_source(desc: dict) -> Source:
    """The source described by a store's ``source`` attribute, built once per worker process."""
    key = json.dumps(desc, sort_keys=True)
    with _SOURCES_LOCK:
        if key not in _SOURCES:
            _SOURCES.clear()  # one job at a time per worker is the normal case; do not hoard memory
            _SOURCES[key] = source_from_description(desc)
        return _SOURCES[key]


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Undo, for this worker process, the allocator setting that Dask's nanny gives its workers.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting it makes glibc drop
    its dynamic mmap threshold, so every tensor over 128 KiB is a fresh mmap + page faults + munmap.
    Measured: fitting a shard 2.4x slower.  Fixed thresholds (mmap above 32 MiB, trim above
    64 MiB) restore the single-process speed.  No effect on the numbers; a no-op off glibc.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _where(worker=None) -> str:
    if worker is None:
        try:
            from distributed import get_worker

            worker = get_worker()
        except ValueError:
            return f"process {os.getpid()} on {socket.gethostname()}"
    return f"worker {worker.address} on {socket.gethostname()}"


def probe_store(path: str, device: str | None = None, compile: bool = False, kernel: str = "native",
                versions: dict | None = None, dask_worker=None) -> str | None:
    """Run on a worker (``client.run(probe_store, path, device, compile, kernel, versions)``): None
    when it has the driver's ``versions`` (:func:`~inrforge.fitjob.compared_versions`: inrforge,
    torch and, where given, the C++ compiler, on which the numbers depend), sees the store at
    ``path``, can create a file in it (removed again), has ``device`` and, for ``compile``, can run
    the compiled step (on a CPU with the native kernel: built and loaded there,
    :func:`~inrforge.fit.check_compiled_step`); else a one-line reason."""
    where = _where(dask_worker)
    try:
        if device is not None:
            check_device(device)
        if compile:
            check_compiled_step(device or "cpu", kernel)
    except InrforgeError as e:
        return f"{where}: {e}"
    if versions:
        here = compared_versions(compiler="cxx" in versions)
        differ = [f"{name} {here[name]!r} (the driver: {versions[name]!r})" for name in versions
                  if here.get(name) != versions[name]]
        if differ:
            return (f"{where} has {', '.join(differ)}: its shards' numbers would differ from the driver's in the "
                    f"last bits; the workers need the driver's inrforge, torch and C++ compiler (docs/cluster.md)")
    name = f".inrforge-write-probe-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        if "://" in path:
            import fsspec

            fs, root = fsspec.core.url_to_fs(path)
            root = root.rstrip("/")
            if not fs.exists(f"{root}/zarr.json"):
                return f"{where} cannot see the store at {path}"
            fs.pipe_file(f"{root}/{name}", b"inrforge write probe")
            fs.rm_file(f"{root}/{name}")
        else:
            if not os.path.isfile(os.path.join(path, "zarr.json")):
                return f"{where} cannot see the store at {path} (not a filesystem the workers share?)"
            probe = os.path.join(path, name)
            try:
                with open(probe, "wb") as f:
                    f.write(b"inrforge write probe")
            finally:
                if os.path.exists(probe):
                    os.remove(probe)
    except OSError as e:
        return f"{where} cannot write into the store at {path}: {e.strerror or e}"
    return None


def _offers(dask_worker=None) -> dict:
    """Run on a worker: the Dask resources it offers (``--resources GPU=1`` -> ``{"GPU": 1}``)."""
    return dict(dask_worker.state.total_resources) if dask_worker is not None else {}


def check_workers(client, path: str, device: str, compile: bool = False, resources: dict | None = None,
                  kernel: str = "native", versions: dict | None = None) -> None:
    """Before any task is submitted: an :class:`InrforgeError` (one line) unless every connected
    worker that may run a task (one offering ``resources``) can import inrforge and passes
    :func:`probe_store` (with the driver's ``versions``, where given).  Connected workers none of
    which offers ``resources`` are an error too: the tasks would wait for ever.  No connected worker
    at all is fine (workers that join later)."""
    def import_failure(addr, e):
        first = first_line(e)
        if not any(s in str(e) for s in ("ModuleNotFoundError", "ImportError", "No module named")):
            return f"worker {addr}: the store probe failed: {first}"
        return (f"worker {addr} cannot import inrforge's code ({first}); the workers need the same inrforge, "
                f"torch, zarr and dask as the driver (see docs/cluster.md)")

    targets = None  # every connected worker
    if resources:
        offered = client.run(_offers, on_error="return")
        _refuse_if_any(sorted(import_failure(a, e) for a, e in offered.items() if isinstance(e, BaseException)))
        targets = [a for a, have in offered.items() if all(have.get(r, 0) >= q for r, q in resources.items())]
        if offered and not targets:
            raise InrforgeError(
                f"none of the {len(offered)} connected workers offers the resources {resources} the tasks ask for "
                f"(they offer {sorted({json.dumps(h, sort_keys=True) for h in offered.values()})}); start workers "
                f"with e.g. dask worker --resources GPU=1, or ask for no resources")
        if not targets:
            return
    results = client.run(probe_store, path, str(device), bool(compile), str(kernel), versions, workers=targets,
                         on_error="return")
    _refuse_if_any(sorted(import_failure(a, p) if isinstance(p, BaseException) else p for a, p in results.items() if p))


def _refuse_if_any(problems: list[str]) -> None:
    """One line for the workers' problems: the first, and how many more workers have one."""
    if problems:
        more = f" (and {len(problems) - 1} more workers)" if len(problems) > 1 else ""
        raise InrforgeError(problems[0] + more)


def fit_shard_task(path: str, shard: int, arch: INRSpec, views: int, seed: int, settings: dict,
                   threads: int, topic: str, source: Source | None = None, expect: str | None = None) -> dict:
    """One Dask task: fit shard ``shard`` of the store at ``path`` and write it there.

    ``source=None`` rebuilds the source from the store's attributes (cached per process).
    ``expect`` (:meth:`INRStore.identity` of the store the driver submitted for) is compared with
    the store when the task opens it, and ``write_shard`` checks again just before it writes: a
    task still running after its driver died never writes into a store that a later run replaced.
    Returns a small summary dict; the data goes straight to the store, never through Dask.  A
    replaced store is reported in the dict (key ``error``) instead of raised, so it is not retried.
    """
    from distributed import get_worker

    worker = get_worker()
    worker.log_event(topic, {"shard": shard, "worker": worker.address})  # counts attempts (retries)
    t0 = time.perf_counter()
    _tune_malloc()
    torch.set_num_threads(int(threads))
    try:
        try:
            store = INRStore(path, mode="r+")
        except InrforgeError as e:
            raise InrforgeError(f"{e} (is it on a filesystem the workers share?)") from None
        if expect is not None:
            store.check_unreplaced(expect)
        if source is None:
            source = _worker_source(store.source)
        if len(source) != len(store):
            raise InrforgeError(f"source {source.name!r} has {len(source)} objects here, the store {len(store)}")
        start, stop = store.shard_range(shard)
        fs = require_memory(FitSettings(**settings), arch, len(source.coords),  # checks the device here
                            shard_inrs=(stop - start) * views)
        if fs.compile:
            check_compiled_step(fs.device, fs.kernel)  # a worker that joined after the probe
        data = fit_shard(arch, source, start, stop, views, seed, fs)
        try:
            store.write_shard(data)
        except OSError as e:
            raise InrforgeError(f"cannot write the store at {path}: {e.strerror or e}") from None
    except StoreReplacedError as e:  # no retry can help (on any worker): returned, so Dask does not retry it
        return {"shard": shard, "error": f"{_where()}: {e}"}
    except InrforgeError as e:  # raised: Dask retries it, perhaps on a worker without this problem
        raise InrforgeError(f"{_where()}: {e}") from None
    return {"shard": shard, "inrs": int(data.failed.size), "failed": int(data.failed.sum()),
            "seconds": time.perf_counter() - t0, "worker": worker.address}


# ----- the driver -------------------------------------------------------------------------------
def fit_inrs_distributed(client, source: Source | str, out, *, progress: bool | None = None, retries: int = 3,
                         resources: dict | None = None, ship_source: bool | None = None, repair: bool = False,
                         **options) -> FitReport:
    """:func:`inrforge.fit_inrs` on a Dask cluster.

    Same arguments (``options``: the fields of :class:`~inrforge.fitjob.FitRequest`) and the same
    store, bit for bit; the shards are fitted by the workers, one task per pending shard.
    ``client`` is a ``distributed.Client``; or a scheduler's address or
    ``local:N`` (connected with :func:`scheduler_client`); or a callable returning a context
    manager that yields a client (e.g. one that starts a SLURM cluster).  The last two are entered
    only once the arguments and any store at ``out`` have been checked, and only when there are
    shards to fit: a finished store or a refused one starts no cluster, and an unreachable
    scheduler leaves a store that ``overwrite`` would replace untouched.  Extra arguments:

    - ``threads``: torch threads per task (default 1: a task occupies one worker thread, so run
      single-threaded workers, or workers with T threads that fit T shards at once);
    - ``retries``: re-runs of a task that raised (a worker that dies is handled by the scheduler);
      a store replaced by another run is never retried;
    - ``resources``: Dask resources per task, e.g. ``{"GPU": 1}`` with ``--device cuda``;
    - ``ship_source``: send the (pickled) source to the workers instead of rebuilding it there
      from the store's attributes; default: only when it is not one of the registered sources;
    - ``repair``: refit the finished shards of a resumed store whose data cannot be read back, as
      :func:`inrforge.fit_inrs` does (the driver reads the store whole first);
    - ``allow_version_change``: resume a store begun with another inrforge or torch version, as
      :func:`inrforge.fit_inrs` does (the driver's versions are the ones compared and recorded).

    Returns a :class:`FitReport` (``.store``, ``.summary()``).  A task that fails for good stops
    the job with an :class:`InrforgeError`; finished shards stay, so re-running resumes.
    """
    t0 = time.perf_counter()
    if isinstance(client, str):
        check_scheduler(client)
    out = local_path(out)  # file:// and local:// URLs are local paths
    if "://" not in out:
        out = os.path.abspath(os.path.expanduser(out))  # the workers do not share our cwd
    request = fit_request(options, "fit_inrs_distributed")
    plan = prepare_fit(source, out, request, fit_here=False, create=False)
    if repair:
        plan.repair()
    if plan.store is not None and not plan.pending_shards():
        return FitReport(store=plan.store, shards=plan.store.n_shards, skipped=plan.store.n_shards,
                         wall_s=time.perf_counter() - t0)
    plan.check_software()  # the driver's versions; before the cluster starts
    with _connected(client) as client:
        return _fit_pending(client, plan, t0, progress=progress, threads=request.threads, retries=retries,
                            resources=resources, ship_source=ship_source)


def _connected(client):
    """A context manager that gives the ``distributed.Client`` that ``client`` stands for (see
    :func:`fit_inrs_distributed`)."""
    if isinstance(client, str):
        return scheduler_client(client)
    if hasattr(client, "submit"):
        return nullcontext(client)
    if callable(client):
        return client()
    raise TypeError(f"client must be a distributed.Client, a scheduler address or a callable, not {client!r}")


def _fit_pending(client, plan, t0: float, *, progress, threads, retries, resources, ship_source) -> FitReport:
    """The driver's part once connected: create the store if need be, probe the workers, submit a
    task per pending shard and collect them."""
    store = plan.open()
    pending = store.pending_shards()
    report = FitReport(store=store, shards=store.n_shards, skipped=store.n_shards - len(pending))
    if not pending:
        report.wall_s = time.perf_counter() - t0
        return report
    device, compile = plan.settings["device"], plan.settings["compile"]
    check_workers(client, store.path, str(device), compile=compile, resources=resources, kernel=plan.settings["kernel"],
                  versions=compared_versions(compiler=compiles_on_cpu({"compile": compile, "device": str(device)})))

    if ship_source is None:
        ship_source = plan.source.describe().get("name") not in SOURCE_NAMES
    source_arg = client.scatter(plan.source, broadcast=False, hash=False) if ship_source else None
    run_id = uuid.uuid4().hex[:8]
    topic = f"inrforge-fit-{run_id}"
    # Every task attempt logs a start event.  They are counted as they arrive: the scheduler keeps
    # only the last distributed.admin.low-level-log-length (1000) events of a topic.
    attempts: list[int] = []
    counted = threading.Event()  # set by the driver's own last event (see _all_attempts_counted)

    def on_event(event):
        msg = event[1]
        if msg.get("counted") == run_id:
            counted.set()
        else:
            attempts.append(msg["shard"])

    client.subscribe_topic(topic, on_event)
    expect = store.identity()
    futures = {
        client.submit(fit_shard_task, store.path, k, plan.arch, plan.views, plan.seed, plan.settings,
                      int(threads or 1), topic, source_arg, expect, key=f"inrforge-shard-{run_id}-{k}",
                      retries=retries, pure=False, resources=resources): k
        for k in pending
    }
    bar = tqdm(total=store.n_shards, initial=report.skipped, unit="shard", desc="fit",
               disable=(not progress) if progress is not None else None, dynamic_ncols=True)
    from distributed import as_completed

    try:
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                r = fut.result()
                if "error" in r:
                    raise InrforgeError(r["error"])
            except InrforgeError as e:
                raise InrforgeError(f"shard {k}: {e}; {_resume_hint(report)}") from None
            except Exception as e:
                name = type(e).__name__
                if name in ("KilledWorker", "CancelledError", "FutureCancelledError"):
                    raise InrforgeError(f"shard {k}: {name}: {str(e).splitlines()[0] if str(e) else ''} "
                                        f"(workers died or the scheduler went away); {_resume_hint(report)}") from None
                raise
            report.fitted += 1
            report.inrs += r["inrs"]
            report.failed_inrs += r["failed"]
            report.workers.add(r["worker"])
            bar.update(1)
            bar.set_postfix({"INR/s": f"{report.inrs / (time.perf_counter() - t0):.1f}",
                             "failed": report.failed_inrs}, refresh=False)
        _all_attempts_counted(client, topic, run_id, counted)
    finally:
        bar.close()
        report.wall_s = time.perf_counter() - t0
        if report.fitted < len(pending):
            try:
                client.cancel(list(futures))
            except Exception:  # the scheduler is gone too: nothing left to cancel
                pass
        try:
            client.unsubscribe_topic(topic)
        except Exception:
            pass
    report.retries = len(attempts) - len(set(attempts))
    return report


def _all_attempts_counted(client, topic: str, run_id: str, counted: threading.Event, timeout: float = 10.0) -> None:
    """Wait until the driver has received every task's start event.  A worker sends a task's
    event before its result on one ordered stream, so once every task is finished the scheduler
    holds all their events; an event the driver logs now reaches it after all of them (the
    scheduler forwards a topic's events in order).  Without this the last retry's event could
    arrive after the count was taken."""
    try:
        client.log_event(topic, {"counted": run_id})
    except Exception:  # the scheduler went away: count what arrived
        return
    counted.wait(timeout)


def _resume_hint(report: FitReport) -> str:
    done = report.skipped + report.fitted
    return f"{done} of {report.shards} shards are done; {RESUMES}"


__all__ = ["fit_inrs_distributed", "scheduler_client", "check_scheduler", "local_workers", "FitReport",
           "fit_shard_task", "probe_store", "check_workers", "CONNECT_TIMEOUT"]
