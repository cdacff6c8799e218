"""Fitting as Dask tasks on a LocalCluster: bit-identical to the single-process fit, survives a
SIGKILLed worker and a SIGKILLed driver (resume refits nothing finished), one-line errors."""

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.fitjob import fit_inrs
from inrforge.sources import load_source
from inrforge.store import open_store

distributed = pytest.importorskip("distributed")
from inrforge import distributed as idist  # noqa: E402
from storecheck import assert_same, shard_files, snapshot

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
def reference(source, tmp_path_factory):
    """The single-process fit with 2 torch threads (the workers use 1)."""
    path = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    fit_inrs(source, path, threads=2, **JOB)
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
    t0 = time.time()
    code = main(CLI + ["--out", str(out), "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in err
    assert time.time() - t0 < 20 and not out.exists()
    code = main(CLI + ["--out", str(out), "--scheduler", "local:0"])
    assert code == 1 and "--scheduler local:N needs a positive number of workers" in capsys.readouterr().err


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
    with pytest.raises(InrforgeError, match=r"worker tcp://.*: device 'cuda' requested but CUDA is not available"):
        idist.fit_inrs_distributed(client, source, out, device="cuda", **JOB)
    assert not open_store(out).done().any()
