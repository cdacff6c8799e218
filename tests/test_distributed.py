"""Fitting as Dask tasks on a LocalCluster: bit-identical to the single-process fit (plain
``inrforge fit``), survives a SIGKILLed worker, a task that raised once and a SIGKILLed driver
(resume refits nothing finished), never writes into a store another run replaced, one-line errors."""

import errno
import functools
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.fitjob import prepare_fit
from inrforge.sources import load_source
from inrforge.store import open_store

distributed = pytest.importorskip("distributed")
from inrforge import distributed as idist  # noqa: E402
from storecheck import assert_same, shard_files, snapshot
from test_pipelines_small import _load

# One job for every test: 48 digits x 2 views in 6 shards of 8 objects; no early stop, so every
# shard takes the same (short) time and a kill can land mid-job.
N, SHARD, VIEWS, STEPS = 48, 8, 2, 300
JOB = dict(views=VIEWS, steps=STEPS, lr=1e-3, target_psnr=None, compile=False, shard_objects=SHARD, progress=False)
CLI = ["fit", "--source", "digits", "--limit", str(N), "--shard-size", str(SHARD), "--views", str(VIEWS),
       "--steps", str(STEPS), "--lr", "1e-3", "--target-psnr", "none", "--no-compile", "--quiet"]


@pytest.fixture(scope="module")
def source():
    return load_source("digits", limit=N)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Plain ``inrforge fit`` (no --scheduler), with 2 torch threads (the workers use 1)."""
    path = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    assert main(CLI + ["--out", path, "--threads", "2"]) == 0
    return snapshot(path)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_two_workers_match_the_single_process_fit(client, source, reference, tmp_path):
    out = str(tmp_path / "d.zarr")
    report = idist.fit_inrs_distributed(client, source, out, **JOB)
    assert (report.shards, report.fitted, report.skipped, report.retries) == (6, 6, 0, 0)
    assert report.inrs == N * VIEWS and report.failed_inrs == 0 and len(report.workers) == 2
    assert "fitted 6 shards" in report.summary() and "retries 0" in report.summary()
    assert_same(reference, snapshot(out))
    store = open_store(out)
    assert store.fit_settings["threads"] == 1  # informational: the single-process store says 2
    assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}

    # Re-running a finished store submits nothing and rewrites nothing.
    files = shard_files(out)
    again = idist.fit_inrs_distributed(client, source, out, **JOB)
    assert (again.fitted, again.skipped) == (0, 6) and shard_files(out) == files
    assert again.summary() == "nothing to fit: all 6 shards were already done"


def test_a_worker_killed_mid_job_still_gives_the_identical_store(client, source, reference, tmp_path):
    out = str(tmp_path / "k.zarr")
    pids = client.run(os.getpid)
    old_topics = set(client.get_events())
    result = {}

    def drive():
        try:
            result["report"] = idist.fit_inrs_distributed(client, source, out, **JOB)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    victim = None
    deadline = time.time() + 60
    while time.time() < deadline and victim is None and t.is_alive():
        if os.path.exists(os.path.join(out, "zarr.json")):
            done = open_store(out).done()
            # The tasks log a start event; kill a worker that has been fitting an unfinished shard
            # for a while, once at least one shard is finished.
            latest = {}
            for topic, events in client.get_events().items():
                if topic.startswith("inrforge-fit-") and topic not in old_topics:
                    for stamp, msg in events:
                        latest[msg["worker"]] = max(latest.get(msg["worker"], (0, -1)), (stamp, msg["shard"]))
            for worker, (stamp, k) in latest.items():
                if (done.sum() >= SHARD and not done[k * SHARD] and time.time() - stamp > 0.1
                        and worker in pids and victim is None):
                    victim = pids[worker]
                    os.kill(victim, signal.SIGKILL)
        time.sleep(0.01)
    t.join(120)
    assert victim is not None, "the kill must land mid-job"
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.fitted == 6
    assert report.retries >= 1  # the killed worker's shard ran again
    assert_same(reference, snapshot(out))


def test_killed_driver_resumes_without_refitting_finished_shards(reference, tmp_path):
    out = str(tmp_path / "driver.zarr")
    args = [sys.executable, "-m", "inrforge"] + CLI + ["--out", out, "--scheduler", "local:2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        children = psutil.Process(proc.pid).children(recursive=True) or children
        if os.path.exists(os.path.join(out, "zarr.json")) and open_store(out).done().sum() >= SHARD:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = open_store(out).done().copy()
    assert 0 < done_before.sum() < N, "the kill must land mid-job"
    # The workers (and their nannies) die with the driver: none keeps fitting behind our back.
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, alive
    kept = shard_files(out)

    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    finished = {k for k in range(N // SHARD) if done_before[SHARD * k: SHARD * (k + 1)].all()}
    m = re.search(r"fitted (\d+) shards \((\d+) already done\) of 6", res.stdout)
    assert m, res.stdout
    assert (int(m.group(1)), int(m.group(2))) == (6 - len(finished), len(finished))
    assert "retries 0" in res.stdout and "failed INRs 0" in res.stdout
    after = shard_files(out)
    for f, mtime in kept.items():
        if int(f.split(os.sep)[-3]) in finished:
            assert after[f] == mtime, f  # not refitted
    assert_same(reference, snapshot(out))


def test_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(idist, "CONNECT_TIMEOUT", 2.0)
    out = tmp_path / "never.zarr"
    code = main(CLI + ["--out", str(out), "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1' within 2 s" in err  # CONNECT_TIMEOUT's wait
    assert not out.exists()
    code = main(CLI + ["--out", str(out), "--scheduler", "local:0"])
    assert code == 1 and "--scheduler local:N needs a positive number of workers" in capsys.readouterr().err
    code = main(CLI + ["--out", str(out), "--scheduler", "local:1000000"])
    assert code == 1 and re.search(r"the number of local workers \(--scheduler local:N\) is 1000000, more than this "
                                   r"machine's \d+ cores can run \(at most \d+, 4 per core\)", capsys.readouterr().err)
    import distributed

    def no_connection(*a, **kw):
        raise AssertionError("a malformed address must be refused without trying to connect")

    monkeypatch.setattr(distributed, "Client", no_connection)
    code = main(CLI + ["--out", str(out), "--scheduler", "bogus"])
    err = capsys.readouterr().err
    assert code == 1 and "--scheduler 'bogus' is neither local:N nor a scheduler address such as tcp://host:8786" in err
    assert not out.exists()


def test_an_unreachable_scheduler_leaves_the_store_overwrite_would_replace(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(idist, "CONNECT_TIMEOUT", 2.0)
    out = str(tmp_path / "kept.zarr")
    prepare_fit(load_source("digits", limit=N), out, views=VIEWS, steps=7, compile=False, shard_objects=SHARD)
    before = open_store(out).identity()
    code = main(CLI + ["--out", out, "--scheduler", "tcp://127.0.0.1:1", "--overwrite"])
    assert code == 1 and "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert open_store(out).identity() == before


def test_a_finished_or_refused_store_starts_no_cluster(source, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "fin.zarr")
    assert main(CLI + ["--out", out, "--steps", "5", "--threads", "1"]) == 0  # finished in one process
    capsys.readouterr()
    started = []

    def no_cluster(*args, **kwargs):
        started.append(args)
        raise AssertionError("a LocalCluster was started")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    assert main(CLI + ["--out", out, "--steps", "5", "--scheduler", "local:2"]) == 0
    assert "nothing to fit: all 6 shards were already done" in capsys.readouterr().out
    assert main(CLI + ["--out", out, "--steps", "6", "--scheduler", "local:2"]) == 1  # other arguments
    err = capsys.readouterr().err
    assert "holds a store fitted with other arguments (fit.steps: store has 5, now 6)" in err and err.count("\n") == 1, err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(CLI + ["--out", str(foreign), "--scheduler", "local:2"]) == 1
    assert "exists and is not an inrforge store" in capsys.readouterr().err
    assert not started and (foreign / "notes.txt").read_text() == "mine"
    # a connect callable (as dask_fit.py passes for SLURM) is not entered either
    report = idist.fit_inrs_distributed(lambda: no_cluster(), source, out, **{**JOB, "steps": 5})
    assert (report.fitted, report.skipped) == (0, 6) and not started


def test_local_workers_names_the_option_that_gave_the_spec():
    assert idist.local_workers("local:3") == 3 and idist.local_workers("tcp://head:8786") is None
    for spec in ("local:0", "local:x"):
        message = f"^--cluster local:N needs a positive number of workers N, got '{spec}'$"
        with pytest.raises(InrforgeError, match=message):
            idist.local_workers(spec, "--cluster")  # pipelines/dask_fit.py's option, not the CLI's --scheduler


def _limit_file_size(limit):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-limit write fails with EFBIG, no signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_store_the_workers_cannot_write_is_refused_before_fitting(client, source, tmp_path):
    # The workers' processes are forbidden to write files (RLIMIT_FSIZE 0, which binds root too);
    # the driver creates the store, the write probe on the workers refuses it, nothing is fitted.
    out = str(tmp_path / "ro.zarr")
    client.run(_limit_file_size, 0)
    try:
        with pytest.raises(InrforgeError, match=r"worker tcp://.* cannot write into the store at .*ro\.zarr: File too large"):
            idist.fit_inrs_distributed(client, source, out, **JOB)
    finally:
        client.run(_limit_file_size, resource.RLIM_INFINITY)
    assert not open_store(out).done().any()


def test_a_store_path_nobody_can_write_is_one_line(client, source, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = str(blocker / "s.zarr")  # a path under a plain file: not creatable, even by root
    message = f"cannot write (a|the) store at {re.escape(out)}"  # created in place (store.py) or not (fitjob.py)
    with pytest.raises(InrforgeError, match=message):
        idist.fit_inrs_distributed(client, source, out, **JOB)
    code = main(CLI + ["--out", out, "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and re.search(message, err), err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs workers without CUDA")
def test_a_device_the_workers_lack_is_refused_before_fitting(client, source, tmp_path):
    out = str(tmp_path / "gpu.zarr")
    with pytest.raises(InrforgeError, match=r"worker tcp://.*: device 'cuda' requested but CUDA is not available"), \
            pytest.warns(UserWarning, match="fewer than the batch size 8192"):  # the GPU default batch
        idist.fit_inrs_distributed(client, source, out, device="cuda", **JOB)
    assert not open_store(out).done().any()


# ----- helpers run on the workers (client.run) -----------------------------------------------------
def _set_env(name, value):
    """Set (or, for None, unset) an environment variable; returns the old value."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    return old


async def _offer(dask_worker, **resources):
    """Make the worker offer Dask resources, as ``dask worker --resources GPU=1`` does."""
    await dask_worker.set_resources(**resources)


_HIDDEN = {}


def _hide_inrforge(hide):
    """Make inrforge unimportable in this worker process (a worker without inrforge), or undo it."""
    if hide:
        for name in [m for m in sys.modules if m == "inrforge" or m.startswith("inrforge.")]:
            _HIDDEN[name] = sys.modules[name]
            sys.modules[name] = None
    else:
        sys.modules.update(_HIDDEN)
        _HIDDEN.clear()


def _fail_first_write_of_shard_0(flag, store_path):
    """The first write of shard 0 of the store at ``store_path``, across the workers, fails with EIO
    (a transient filesystem error).  Writes to other stores (a task of an earlier test that is still
    running) are left alone."""
    from inrforge.store import INRStore

    write = INRStore.write_shard

    def write_shard(self, data):
        if data.start == 0 and os.path.abspath(self.path) == store_path and not os.path.exists(flag):
            open(flag, "x").close()
            raise OSError(errno.EIO, "injected transient I/O error")
        return write(self, data)

    write_shard.original = write
    INRStore.write_shard = write_shard


def _restore_write_shard():
    from inrforge.store import INRStore

    INRStore.write_shard = getattr(INRStore.write_shard, "original", INRStore.write_shard)


def _drive(result, *args, **kwargs):
    """fit_inrs_distributed in a thread: its report or its error in ``result``."""
    try:
        result["report"] = idist.fit_inrs_distributed(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - inspected by the test
        result["error"] = e


def _new_tasks_started(client, old_topics):
    return any(t.startswith("inrforge-fit-") and t not in old_topics for t in client.get_events())


# ----- the tests ------------------------------------------------------------------------------------
def test_a_store_replaced_mid_job_gets_no_shard_of_the_old_job(client, source, tmp_path):
    # A second run with other arguments and --overwrite replaces the store while this job's tasks run
    # (as they do on after their driver was killed: Dask cannot stop a running task).  They must not
    # write their shards, fitted with the old arguments, into the new store and mark them done.
    out = str(tmp_path / "replaced.zarr")
    old_topics = set(client.get_events())
    result = {}
    t = threading.Thread(target=_drive, args=(result, client, source, out), kwargs=JOB)
    t.start()
    deadline = time.time() + 60
    while time.time() < deadline and t.is_alive() and not _new_tasks_started(client, old_topics):
        time.sleep(0.01)
    assert not open_store(out).done().any(), "the replacement must land before the first shard is written"
    job = {k: v for k, v in JOB.items() if k != "progress"}
    prepare_fit(source, out, **{**job, "steps": STEPS + 1}, overwrite=True, fit_here=False)  # the other run
    t.join(120)
    new = open_store(out)
    assert new.fit_settings["steps"] == STEPS + 1
    assert not new.done().any() and np.isnan(new.params[...]).all() and not new.metric("steps").any()
    assert "was replaced or removed by another run" in str(result.get("error")), result
    # No retry can mend that: no shard's task was attempted twice (Dask would have retried a raise 3 times).
    topic, = [t for t in client.get_events() if t.startswith("inrforge-fit-") and t not in old_topics]
    attempts = [msg["shard"] for _, msg in client.get_events(topic)]
    assert attempts and len(attempts) == len(set(attempts)), attempts


def test_a_task_that_raised_once_is_retried_counted_and_identical(client, source, reference, tmp_path):
    # The summary's retries must not depend on the scheduler's event log, which keeps only the last
    # distributed.admin.low-level-log-length (1000) events of a topic: here 2, so that 6 shards are a big job.
    from distributed.broker import Topic

    out = str(tmp_path / "retried.zarr")
    topics = client.cluster.scheduler._broker._topics
    factory = topics.default_factory
    topics.default_factory = functools.partial(Topic, maxlen=2)
    client.run(_fail_first_write_of_shard_0, str(tmp_path / "failed-once"), out)
    try:
        report = idist.fit_inrs_distributed(client, source, out, **JOB)
    finally:
        topics.default_factory = factory
        client.run(_restore_write_shard)
    assert (report.fitted, report.retries) == (6, 1) and "retries 1;" in report.summary()
    assert_same(reference, snapshot(out))


def test_retries_are_counted_even_when_the_events_arrive_late(client, source, tmp_path, monkeypatch):
    # The start events reach the driver's handler on the client's event loop, in order but at their
    # own pace; here each is handed on 0.3 s late (in order, by one thread).  The count must wait
    # for them all: before, the job's last retry could be missed (retries 0).
    import queue

    late = queue.Queue()

    def hand_on():
        while (item := late.get()) is not None:
            time.sleep(0.3)
            item[0](item[1])

    subscribe = client.subscribe_topic
    monkeypatch.setattr(client, "subscribe_topic", lambda topic, handler: subscribe(
        topic, lambda event: late.put((handler, event))))
    relay = threading.Thread(target=hand_on, daemon=True)
    relay.start()
    out = str(tmp_path / "late.zarr")
    client.run(_fail_first_write_of_shard_0, str(tmp_path / "failed-once"), out)
    try:
        report = idist.fit_inrs_distributed(client, source, out, **{**JOB, "steps": 5})
    finally:
        client.run(_restore_write_shard)
        late.put(None)
    assert (report.fitted, report.retries) == (6, 1), report.summary()


def test_resources_no_connected_worker_offers_are_refused_at_once(client, source, tmp_path):
    out = str(tmp_path / "gpu.zarr")
    result = {}
    t = threading.Thread(target=_drive, args=(result, client, source, out), kwargs={**JOB, "resources": {"GPU": 1}},
                         daemon=True)
    t.start()
    t.join(15)
    if t.is_alive():  # the tasks wait for a worker with a GPU: give them one, so that the job ends
        client.run(_offer, GPU=1)
        t.join(120)
        client.run(_offer, GPU=0)
        pytest.fail("the driver waits for ever for a worker that offers {'GPU': 1}")
    assert re.search(r"none of the 2 connected workers offers the resources \{'GPU': 1\} the tasks ask for",
                     str(result.get("error"))), result
    assert not open_store(out).done().any()


def test_resources_choose_the_workers_that_are_probed(client, tmp_path):
    # A mixed cluster: the tasks ask for a resource only worker a offers, so they all run there, and
    # worker b (which may not write the store here; on a real cluster: which has no GPU) is no obstacle.
    out = str(tmp_path / "mixed.zarr")
    a, b = sorted(client.scheduler_info()["workers"])
    client.run(_offer, slot=1, workers=[a])
    client.run(_limit_file_size, 0, workers=[b])
    try:
        report = idist.fit_inrs_distributed(client, load_source("digits", limit=8), out, views=1, steps=20, lr=1e-3,
                                            target_psnr=None, compile=False, shard_objects=4, progress=False,
                                            resources={"slot": 1})
    finally:
        client.run(_limit_file_size, resource.RLIM_INFINITY, workers=[b])
        client.run(_offer, slot=0, workers=[a])
    assert report.fitted == 2 and report.workers == {a}
    assert open_store(out).done().all()


def test_workers_without_inrforge_are_one_line(client, tmp_path, capsys):
    out = tmp_path / "nomod.zarr"
    a = sorted(client.scheduler_info()["workers"])[0]
    client.run(_hide_inrforge, True, workers=[a])
    try:
        code = main(CLI + ["--out", str(out), "--scheduler", client.scheduler.address])
    finally:
        client.run(_hide_inrforge, False, workers=[a])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert re.search(rf"worker {re.escape(a)} cannot import inrforge's code \(.*inrforge.*\); the workers need the "
                     r"same inrforge, torch, zarr and dask as the driver", err), err
    assert not open_store(out).done().any()


def test_workers_without_a_compiler_are_refused_before_fitting(client, source, tmp_path):
    out = str(tmp_path / "cc.zarr")
    old = client.run(_set_env, "CXX", "/nonexistent/c++")
    try:
        with pytest.raises(InrforgeError, match=r"worker tcp://.*: a compiled fitting step needs a C\+\+ compiler "
                                                r"\(/nonexistent/c\+\+ not found"):
            idist.fit_inrs_distributed(client, source, out, **{**JOB, "compile": True})
    finally:
        for worker, value in old.items():
            client.run(_set_env, "CXX", value, workers=[worker])
    assert not open_store(out).done().any()


def test_the_probe_builds_the_native_kernel_where_it_will_run(tmp_path, monkeypatch):
    """A worker whose compiler is there but cannot build the kernel fails the probe (one line), not
    every task; with ``--kernel inductor`` the compiler's presence is all the probe asks."""
    from inrforge import native

    out = str(tmp_path / "p.zarr")
    prepare_fit(load_source("digits", limit=2), out, steps=1)
    bad = tmp_path / "cxx"
    bad.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bad 1' && exit 0\necho 'x.cpp: error: no' >&2; exit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CXX", str(bad))
    monkeypatch.setenv("INRFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_LIB", None)
    reason = idist.probe_store(out, "cpu", True, "native")
    assert re.fullmatch(r"process \d+ on .*: building the fused fitting step with .*cxx failed: x.cpp: error: no "
                        r"\(or pass --no-compile\)", reason), reason
    assert idist.probe_store(out, "cpu", True, "inductor") is None


def test_the_probe_refuses_a_worker_whose_software_differs_from_the_drivers(tmp_path):
    """A worker with another torch or, for a compiled CPU fit, another C++ compiler would write
    shards whose last bits differ from the driver's: the probe names it in one line."""
    from inrforge.fitjob import compared_versions

    out = str(tmp_path / "v.zarr")
    prepare_fit(load_source("digits", limit=2), out, steps=1)
    assert idist.probe_store(out, "cpu", False, "native", compared_versions()) is None
    assert idist.probe_store(out, "cpu", True, "native", compared_versions(compiler=True)) is None
    driver = {**compared_versions(compiler=True), "torch": "2.99.0", "cxx": "g++ (GCC) 99.1.0"}
    reason = idist.probe_store(out, "cpu", True, "native", driver)
    assert re.fullmatch(r"process \d+ on .* has torch '[^']+' \(the driver: '2.99.0'\), cxx '[^']+' \(the driver: "
                        r"'g\+\+ \(GCC\) 99.1.0'\): its shards' numbers would differ from the driver's in the last "
                        r"bits; the workers need the driver's inrforge, torch and C\+\+ compiler \(docs/cluster.md\)",
                        reason), reason


def test_the_cli_scheduler_is_no_batch_system(tmp_path, capsys):
    out = tmp_path / "slurm.zarr"
    code = main(CLI + ["--out", str(out), "--scheduler", "slurm"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "--scheduler takes local:N or a running scheduler's address, not 'slurm'" in err
    assert "pipelines/dask_fit.py --cluster slurm" in err and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--gpu"], "--gpu needs workers that each own a GPU and offer the resource GPU=1, which --cluster local:2 "
                "does not start"),
    (["--cluster", "local:4", "--cores", "16"], "--cores is only for --cluster slurm or pbs, not local:4"),
    (["--cluster", "tcp://head:8786", "--jobs", "8", "--walltime", "1:00:00"],
     "--jobs, --walltime are only for --cluster slurm or pbs, not tcp://head:8786"),
])
def test_dask_fit_refuses_options_its_cluster_would_ignore(tmp_path, capsys, args, message):
    out = tmp_path / "s.zarr"
    with pytest.raises(SystemExit) as e:
        _load("dask_fit").main(["--source", "digits", "--out", str(out)] + args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()
    a = _load("dask_fit").parse_args(["--source", "digits", "--out", str(out), "--cluster", "slurm", "--cores", "16"])
    assert (a.jobs, a.cores, a.memory, a.walltime, a.queue) == (2, 16, "16GB", "02:00:00", None)


def test_dask_fit_quiet_turns_the_progress_bar_off(tmp_path, monkeypatch):
    from inrforge.errors import InrforgeError

    mod, seen = _load("dask_fit"), []

    def fake_fit(connect, source, out, **kwargs):
        seen.append(kwargs["progress"])
        raise InrforgeError("stop here")

    monkeypatch.setattr(mod, "fit_inrs_distributed", fake_fit)
    for extra in (["--quiet"], []):
        assert mod.main(["--source", "digits", "--limit", "4", "--out", str(tmp_path / "s.zarr")] + extra) == 1
    assert seen == [False, None]  # None: a bar only on a terminal
