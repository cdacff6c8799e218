"""Fit a store of INRs on a Dask cluster: local, an existing scheduler, SLURM or PBS (dask-jobqueue).

One Dask task per shard; each worker rebuilds the source from the store, fits its shard and writes
it.  Re-running the same command resumes (only unfinished shards are submitted).  See
docs/cluster.md for the environment the workers need.

    python pipelines/dask_fit.py --source digits --out runs/digits.zarr --cluster local:2
    python pipelines/dask_fit.py --source mnist --out /shared/mnist.zarr --cluster tcp://head:8786
    python pipelines/dask_fit.py --source mnist --out /shared/mnist.zarr --cluster slurm \\
        --jobs 8 --cores 16 --memory 32GB --walltime 04:00:00 --queue cpu
    python pipelines/dask_fit.py --source cifar10 --data /shared/cifar --out /shared/cifar.zarr \\
        --cluster slurm --gpu --jobs 4 --cores 8 --memory 64GB --queue gpu --batch-size 4096 --shard-size 4096
"""

from __future__ import annotations

from inrforge.launch import quiet_interrupts

quiet_interrupts("dask_fit.py")  # before torch loads: a Ctrl-C then is one line

import functools
import sys
from contextlib import contextmanager

from inrforge.distributed import check_scheduler, fit_inrs_distributed, local_workers, scheduler_client
from inrforge.errors import RESUMES, InrforgeError
from inrforge.script import (ArgumentParser, add_fit_arguments, check_failures, check_fit_arguments, fit_options,
                             nonnegative_int, positive_int, report_errors)
from inrforge.sources import load_source, parse_source_options
from inrforge.store import psnr_summary


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_fit_arguments(p, out_help="store path on a shared filesystem, or an fsspec URL",
                      data_help="source files (on a filesystem the workers share)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none anyway when the output is "
                                                           "not a terminal)")
    p.add_argument("--retries", type=nonnegative_int, default=3,
                   help="extra attempts of a shard task that raised (a task whose worker died is re-run by the "
                        "scheduler, up to distributed.scheduler.allowed-failures times)")
    c = p.add_argument_group("cluster")
    c.add_argument("--cluster", default="local:2", help="local:N, a scheduler address, slurm or pbs")
    # The slurm/pbs options default to None so that one given with another --cluster (where it would
    # be ignored) is refused; JOBQUEUE_DEFAULTS fills them in.
    c.add_argument("--jobs", type=positive_int, help="slurm/pbs: batch jobs to start (default: 2)")
    c.add_argument("--cores", type=positive_int, help="slurm/pbs: cores per job (= single-threaded workers "
                                                      "per job on CPU) (default: 8)")
    c.add_argument("--memory", help="slurm/pbs: memory per job (default: 16GB)")
    c.add_argument("--walltime", help="slurm/pbs: wall-clock limit per job (default: 02:00:00)")
    c.add_argument("--queue", help="slurm/pbs: queue (partition)")
    c.add_argument("--account", help="slurm/pbs: account to charge")
    c.add_argument("--gpu", action="store_true",
                   help="--device cuda, one GPU per task: slurm/pbs ask for one GPU and start one worker per job; "
                        "with a scheduler address, its workers must offer the resource GPU=1")
    a = p.parse_args(argv)
    check_fit_arguments(p, a)
    if a.cluster not in ("slurm", "pbs"):
        try:
            local = local_workers(a.cluster, "--cluster")
            if local is None:
                check_scheduler(a.cluster, "--cluster")  # an address's syntax, before anything starts
        except InrforgeError as e:
            p.error(str(e))
        given = [f"--{name}" for name in JOBQUEUE_DEFAULTS if getattr(a, name) is not None]
        if given:
            p.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} only for --cluster slurm or pbs, "
                    f"not {a.cluster}")
        if a.gpu and local is not None:
            p.error(f"--gpu needs workers that each own a GPU and offer the resource GPU=1, which --cluster "
                    f"{a.cluster} does not start; use --cluster slurm/pbs, or the address of a scheduler whose "
                    f"workers were started with --resources GPU=1")
    for name, default in JOBQUEUE_DEFAULTS.items():
        if getattr(a, name) is None:
            setattr(a, name, default)
    return a


JOBQUEUE_DEFAULTS = {"jobs": 2, "cores": 8, "memory": "16GB", "walltime": "02:00:00", "queue": None, "account": None}


def _jobqueue():
    try:
        import dask_jobqueue
    except ImportError:
        raise InrforgeError("--cluster slurm/pbs needs dask-jobqueue (pip install dask-jobqueue)") from None
    return dask_jobqueue


def jobqueue_cluster(a):
    """A SLURM/PBS cluster of single-threaded workers (CPU) or one worker per GPU job."""
    dask_jobqueue = _jobqueue()
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[a.cluster]
    processes = 1 if a.gpu else a.cores
    extra = []
    if a.gpu:
        extra = ["--gres=gpu:1"] if a.cluster == "slurm" else ["-l ngpus=1"]
    cluster = cls(cores=a.cores, processes=processes, memory=a.memory, walltime=a.walltime, queue=a.queue,
                  account=a.account, python=sys.executable, job_extra_directives=extra,
                  worker_extra_args=["--resources", "GPU=1"] if a.gpu else [],
                  job_script_prologue=["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"])
    cluster.scale(jobs=a.jobs)
    return cluster


@contextmanager
def jobqueue_client(a):
    """A client of :func:`jobqueue_cluster`; the jobs are cancelled on exit."""
    from distributed import Client

    with jobqueue_cluster(a) as cluster, Client(cluster) as client:
        yield client


def main(argv=None) -> int:
    a = parse_args(argv)
    return report_errors("dask_fit.py", lambda: fit(a), resumes=RESUMES)  # the fit resumes shard by shard


def fit(a) -> int:
    """Fit the source as Dask tasks (one per shard) and print the summary."""
    if a.cluster in ("slurm", "pbs"):
        _jobqueue()  # before the source is loaded
    source = load_source(a.source, path=a.data, limit=a.limit, **parse_source_options(a.source_opt))
    kwargs = dict(fit_options(a, source), retries=a.retries, device="cuda" if a.gpu else "cpu",
                  resources={"GPU": 1} if a.gpu else None, progress=False if a.quiet else None)
    if a.cluster in ("slurm", "pbs"):
        connect = functools.partial(jobqueue_client, a)
    else:
        connect = functools.partial(scheduler_client, a.cluster, option="--cluster")
    # connected (jobs submitted) only when the store is checked and has shards left to fit
    report = fit_inrs_distributed(connect, source, a.out, **kwargs)
    print(report.summary())
    info = report.store.info()
    print(f"{report.store.path}: done {info['done_fraction']:.0%}, {psnr_summary(info)}")
    return check_failures(info, "dask_fit.py")


if __name__ == "__main__":
    sys.exit(main())
