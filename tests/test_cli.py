"""The command line end to end: fit / resume / refuse / overwrite / info / render, and errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

from inrforge.cli import main
from inrforge.store import open_store
from storecheck import assert_same, shard_files, snapshot

FAST = ["fit", "--source", "digits", "--steps", "30", "--lr", "1e-3", "--no-compile", "--quiet", "--threads", "1"]


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_info_render_resume_refuse_overwrite(tmp_path, capsys):
    out = str(tmp_path / "d.zarr")
    code, stdout, _ = run(FAST + ["--limit", "24", "--shard-size", "8", "--views", "2", "--out", out], capsys)
    assert code == 0 and "24 objects x 2 views, done 100%" in stdout
    store = open_store(out)
    assert store.params.shape == (24, 2, 1185) and store.done().all()
    assert np.isfinite(store.metric("psnr")).all() and (store.metric("steps") > 0).all()
    first = snapshot(out)
    files = shard_files(out)
    assert len(files) == 3

    # Same arguments on a finished store: nothing is refitted or rewritten.
    code, _, _ = run(FAST + ["--limit", "24", "--shard-size", "8", "--views", "2", "--out", out], capsys)
    assert code == 0 and shard_files(out) == files

    # Different arguments: refused with one line, store untouched.
    code, _, err = run(FAST[:3] + ["--steps", "31"] + FAST[5:] + ["--limit", "24", "--shard-size", "8", "--views", "2", "--out", out], capsys)
    assert code == 1 and err.count("\n") == 1 and "fit.steps: store has 30, now 31" in err and "--overwrite" in err
    assert shard_files(out) == files
    assert_same(first, snapshot(out))

    code, stdout, _ = run(["info", out], capsys)
    assert code == 0
    assert "24 x 2 views = 48 INRs" in stdout and "1185 params" in stdout and "siren 2->32->32->1" in stdout
    code, stdout, _ = run(["info", out, "--json"], capsys)
    assert code == 0 and '"done_fraction": 1.0' in stdout

    # A figure is never written over the store (or any non-image file).
    code, _, err = run(["render", out, "--out", out], capsys)
    assert code == 1 and "it is a folder" in err and err.count("\n") == 1
    assert_same(first, snapshot(out))

    png = tmp_path / "grid.png"
    code, _, _ = run(["render", out, "--out", str(png), "--n", "4"], capsys)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, _, _ = run(FAST[:3] + ["--steps", "31"] + FAST[5:] + ["--limit", "16", "--shard-size", "8", "--out", out, "--overwrite"], capsys)
    assert code == 0
    s = open_store(out)
    assert len(s) == 16 and s.views == 1 and s.fit_settings["steps"] == 31


def test_fit_never_writes_into_a_foreign_folder(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    for extra in ([], ["--overwrite"]):
        code, _, err = run(FAST + ["--limit", "4", "--out", str(d)] + extra, capsys)
        assert code == 1 and "not an inrforge store" in err and err.count("\n") == 1
    assert os.listdir(d) == ["thesis.tex"] and (d / "thesis.tex").read_text() == "precious"
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    code, _, err = run(FAST + ["--limit", "4", "--out", str(tmp_path / "plain.zarr"), "--overwrite"], capsys)
    assert code == 1 and "not an inrforge store" in err


@pytest.mark.parametrize("args, code, msg", [
    (["fit", "--source", "nope", "--out", "x"], 2, "invalid choice"),
    (["fit", "--source", "digits", "--out", "x", "--steps", "0"], 2, "positive integer"),
    (["fit", "--source", "digits", "--out", "x", "--limit", "-3"], 2, "positive integer"),
    (["fit", "--source", "fashion-mnist", "--out", "x"], 1, "needs --data"),
    (["fit", "--source", "cifar10", "--data", "/no/such/folder", "--out", "x"], 1, "/no/such/folder"),
    (["fit", "--source", "digits", "--out", "x", "--lr", "-1"], 2, "argument --lr: expected a positive number"),
    (["fit", "--source", "digits", "--out", "x", "--w0", "nan"], 2, "argument --w0: expected a positive number"),
    (["train", "x", "--workers", "-1"], 2, "argument --workers: expected an integer >= 0, got '-1'"),
    (["render", "x", "--out", "y.png", "--view", "-1"], 2, "argument --view: expected an integer >= 0"),
    (["fit", "--source", "digits", "--out", "x", "--source-opt", "n=3"], 1, "unknown option"),
    (["fit", "--source", "digits", "--out", "x", "--seed", "-1"], 2, "argument --seed: expected an integer >= 0"),
    (["fit", "--source", "digits", "--out", "x", "--device", "foo"], 1, "unknown device 'foo'; use cpu or cuda[:N]"),
    (["fit", "--source", "digits", "--out", "x", "--views", "100000000"], 1, "use fewer --views"),
    (["train", "x", "--dropout", "2"], 2, "argument --dropout: expected a probability in [0, 1]"),
    (["info", "/no/such/store"], 1, "no store at"),
    (["render", "/no/such/store", "--out", "x.png"], 1, "no store at"),
    (["render", "/no/such/store", "--out", "x.txt"], 1, ".txt is not an image format"),
    (["render", "/no/such/store", "--out", "x"], 1, "no image extension"),
])
def test_bad_input_is_one_line_and_nonzero(args, code, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if code == 2:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "--help" in err, err
    else:
        got, _, err = run(args, capsys)
        assert got == code and msg in err and err.count("\n") == 1, err
    assert not os.path.exists(tmp_path / "x")


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    """A real `inrforge fit` killed with SIGKILL mid-run, re-run, equals an uninterrupted run."""
    args = [sys.executable, "-m", "inrforge", "fit", "--source", "digits", "--limit", "96", "--shard-size", "8",
            "--steps", "150", "--lr", "1e-3", "--no-compile", "--quiet", "--threads", "1", "--views", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = str(tmp_path / "ref.zarr")
    subprocess.run(args + ["--out", ref], check=True, env=env, capture_output=True)

    out = str(tmp_path / "killed.zarr")
    proc = subprocess.Popen(args + ["--out", out], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    n_done = 0
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(os.path.join(out, "zarr.json")):
            n_done = int(open_store(out).done().sum())
            if n_done >= 16:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = open_store(out)
    done_before = store.done().copy()
    assert 0 < done_before.sum() < 96, "the kill must land mid-run"
    kept = {f: m for f, m in shard_files(out).items()}

    subprocess.run(args + ["--out", out], check=True, env=env, capture_output=True)
    assert_same(snapshot(ref), snapshot(out))
    after = shard_files(out)
    # Shards finished before the kill were not refitted (their files are untouched).
    finished = {k for k in range(12) if done_before[8 * k: 8 * k + 8].all()}
    assert finished
    for f, m in kept.items():
        k = int(f.split(os.sep)[-3])
        if k in finished:
            assert after[f] == m
    assert len(after) == 12


def test_info_json_is_strict_json_before_anything_is_fitted(tmp_path, capsys):
    import json

    from inrforge.fitjob import prepare_fit

    out = tmp_path / "s.zarr"
    prepare_fit("digits", out, steps=2, compile=False)  # created, nothing fitted: no PSNR to summarise
    code, stdout, _ = run(["info", str(out), "--json"], capsys)

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    info = json.loads(stdout, parse_constant=refuse)
    assert code == 0 and info["psnr_median"] is None and info["done_fraction"] == 0.0


def test_render_into_a_folder_it_cannot_write(tmp_path, capsys, monkeypatch):
    import inrforge.render as render_module

    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--out", out], capsys)[0] == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(render_module.os, "access", lambda p, mode: os.path.abspath(p) != str(locked))
    code, _, err = run(["render", out, "--out", str(locked / "x.png")], capsys)
    assert code == 1 and "permission denied" in err and err.count("\n") == 1 and not os.listdir(locked)
