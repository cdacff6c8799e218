"""The command line end to end: fit / resume / refuse / overwrite / info / render, and errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
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
    import inrforge

    assert "fit          30 steps, lr 0.001 (constant), early stop at 40 dB, batch 390, cpu, seed 0\n" in stdout
    assert f"software     inrforge {inrforge.__version__}, torch {torch.__version__}\n" in stdout
    code, stdout, _ = run(["info", out, "--json"], capsys)
    assert code == 0 and '"done_fraction": 1.0' in stdout
    assert json.loads(stdout)["fit"]["versions"]["torch"] == torch.__version__
    store = open_store(out, mode="r+")
    store.add_fit_record("resumed_with", {"inrforge": "9.9", "torch": "9.9.9"})  # as a resume allowed so records
    assert "; resumed with inrforge 9.9, torch 9.9.9\n" in run(["info", out], capsys)[1]

    # A figure is never written over the store (or any non-image file).
    code, _, err = run(["render", out, "--out", out], capsys)
    assert code == 1 and "it is a folder" in err and err.count("\n") == 1
    assert_same(first, snapshot(out))

    png = tmp_path / "grid.png"
    code, _, err = run(["render", out, "--out", str(tmp_path / "huge.png"), "--n", "100000"], capsys)
    assert code == 1 and err.count("\n") == 1 and "--n must be an integer from 1 to 256" in err
    assert not (tmp_path / "huge.png").exists()
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
    # inside another store (inrforge's or not): replacing that store would delete the new one
    for outer in ("plain.zarr", "plain.zarr/sub"):
        code, _, err = run(FAST + ["--limit", "4", "--out", str(tmp_path / outer / "new.zarr")], capsys)
        assert code == 1 and f"lies inside the Zarr store {tmp_path / 'plain.zarr'}" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path / "plain.zarr")) == ["zarr.json"]


@pytest.mark.parametrize("args, code, msg", [
    (["fit", "--source", "nope", "--out", "x"], 2, "invalid choice"),
    (["fit", "--source", "digits", "--out", "x", "--fit-steps", "5"], 2,
     "inrforge fit: error: unrecognized arguments: --fit-steps 5 (see inrforge fit --help)"),
    (["fit", "--source", "digits", "--out", "x", "--steps", "0"], 2, "positive integer"),
    (["fit", "--source", "digits", "--out", "x", "--limit", "-3"], 2, "positive integer"),
    (["fit", "--source", "fashion-mnist", "--out", "x"], 1, "needs --data"),
    (["fit", "--source", "cifar10", "--data", "/no/such/folder", "--out", "x"], 1, "/no/such/folder"),
    (["fit", "--source", "digits", "--out", "x", "--lr", "-1"], 2, "argument --lr: expected a positive number"),
    (["fit", "--source", "digits", "--out", "x", "--w0", "nan"], 2, "argument --w0: expected a positive number"),
    (["fit", "--source", "digits", "--out", "x", "--lr-schedule", "linear"], 2,
     "argument --lr-schedule: invalid choice: 'linear' (choose from 'constant', 'cosine')"),
    (["fit", "--source", "digits", "--out", "x", "--first-layer-lr", "0"], 2,
     "argument --first-layer-lr: expected a positive number, got '0'"),
    (["train", "x", "--workers", "-1"], 2, "argument --workers: expected an integer >= 0, got '-1'"),
    (["render", "x", "--out", "y.png", "--view", "-1"], 2, "argument --view: expected an integer >= 0"),
    (["fit", "--source", "digits", "--out", "x", "--source-opt", "n=3"], 1, "unknown option"),
    (["fit", "--source", "digits", "--out", "x", "--seed", "-1"], 2, "argument --seed: expected an integer >= 0"),
    (["fit", "--source", "digits", "--out", "x", "--device", "foo"], 1, "unknown device 'foo'; use cpu or cuda[:N]"),
    (["fit", "--source", "digits", "--out", "x", "--views", "100000000"], 1, "use fewer --views"),
    (["fit", "--source", "digits", "--out", "x", "--hidden", "100000", "--depth", "3"], 1, "or a smaller arch"),
    (["train", "x", "--dropout", "2"], 2, "argument --dropout: expected a dropout probability in [0, 1)"),
    (["info", "/no/such/store"], 1, "no store at"),
    (["render", "/no/such/store", "--out", "x.png"], 1, "no store at"),
    (["render", "/no/such/store", "--out", "x.txt"], 1, ".txt is not an image format"),
    (["render", "/no/such/store", "--out", "x"], 1, "no image extension"),
    (FAST + ["--limit", "1", "--out", "x", "--scheduler", "local:2", "--device", "cuda:0"], 2,
     "argument --device: cuda:0 with --scheduler local:2 starts 2 worker processes that would all fit on one GPU"),
    (["import-dws", "x", "--out", "y", "--image-size", "28"], 2, "argument --image-size: expected HxW with two"),
    (["import-dws", "x", "--out", "y", "--image-size", "0x28"], 2, "positive integers, such as 28x28, got '0x28'"),
    (["import-dws", "x", "--out", "y", "--image-size", "2.5x3"], 2, "argument --image-size: expected HxW"),
    (["train", "x", "--model", "mlp", "--hidden", "64"], 2,
     "inrforge train: error: argument --hidden: DWSNet option; --model mlp does not use it"),
    (["train", "x", "--model", "mlp", "--depth", "2", "--norm", "layer"], 2,
     "argument --depth, --norm: all DWSNet options; --model mlp does not use them"),
    (FAST + ["--limit", "1", "--out", "x", "--arch", "relu", "--w0", "5"], 2,
     "inrforge fit: error: argument --w0: SIREN option; --arch relu does not use it"),
    (FAST + ["--limit", "1", "--out", "x", "--fourier-sigma", "2"], 2, "argument --fourier-sigma: relu-fourier option"),
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
    import inrforge.figures as figures

    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--out", out], capsys)[0] == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(figures.os, "access", lambda p, mode: os.path.abspath(p) != str(locked))
    code, _, err = run(["render", out, "--out", str(locked / "x.png")], capsys)
    assert code == 1 and "permission denied" in err and err.count("\n") == 1 and not os.listdir(locked)


# ----- render / info on stores of every kind ---------------------------------------------------------------

def _drawn_figures(monkeypatch):
    """The figures ``render`` draws (kept when it closes them)."""
    import matplotlib.pyplot as plt

    figures, close = [], plt.close

    def keep(fig=None):
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return figures


def _panels(fig):
    """The image panels of a render figure, top to bottom then left to right, as arrays."""
    axes = sorted((ax for ax in fig.axes if ax.images), key=lambda ax: (-ax.get_position().y0, ax.get_position().x0))
    return [np.asarray(ax.images[0].get_array()) for ax in axes], axes


def _drawn_objects(store, split, n=16):
    idx = store.split(split)
    return (idx if len(idx) else np.arange(len(store)))[:n]


def _siren_by_hand(store, i, coords):
    """Object i, view 0, evaluated from the store's own attributes with numpy (docs/format.md)."""
    arch, layout = store.attrs["arch"], store.attrs["layout"]
    theta = store.params[i, 0].astype(np.float64)
    tensors = [theta[s["offset"]: s["offset"] + int(np.prod(s["shape"]))].reshape(s["shape"]) for s in layout]
    h = coords
    for k in range(0, len(tensors), 2):
        h = h @ tensors[k].T + tensors[k + 1]
        if k + 2 < len(tensors):
            h = np.sin(arch["w0"] * h)
    return h + arch["output_offset"]


def _image_folder(root, sizes, n_per_class=2):
    from PIL import Image

    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            h, w = sizes
            img = np.zeros((h, w, 3), np.uint8)
            img[0, :, 0] = 255                      # red top row
            img[:, -1, 1] = 200                     # green right column
            img[h // 2, k % w, 2] = 255             # a blue dot, moving right with k
            img[-1, 0] = 80 if cls == "a" else 160  # grey bottom-left corner
            Image.fromarray(img).save(root / cls / f"{k}.png")


def test_render_rgb_panels_follow_the_documented_grid(tmp_path, capsys, monkeypatch):
    """Non-square RGB images: the top panel is the image file itself, the bottom one the INR evaluated
    (by hand, from the store's attributes) at coords[r, c] = (lin_H[r], lin_W[c])."""
    from PIL import Image

    data, out = tmp_path / "imgs", str(tmp_path / "i.zarr")
    _image_folder(data, (5, 7))
    assert run(FAST[:2] + ["image-folder", "--data", str(data)] + FAST[3:] + ["--steps", "5", "--out", out],
               capsys)[0] == 0
    store = open_store(out)
    figures = _drawn_figures(monkeypatch)
    code, _, err = run(["render", out, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)
    assert code == 0, err
    idx = _drawn_objects(store, "train")
    panels, _ = _panels(figures[-1])
    assert len(panels) == 2 * len(idx) and len(idx) <= 8  # one block: truths above reconstructions
    files = sorted(data.glob("*/*.png"))
    r, c = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 7), indexing="ij")
    coords = np.stack([r, c], -1).reshape(-1, 2)
    for k, i in enumerate(idx):
        truth, recon = panels[k], panels[len(idx) + k]
        np.testing.assert_allclose(truth, np.asarray(Image.open(files[i])) / 255, atol=1e-6)
        want = _siren_by_hand(store, i, coords).reshape(5, 7, 3).clip(0, 1)
        np.testing.assert_allclose(recon, want, atol=1e-4)


def test_render_sines_draws_truth_and_inr_in_one_plot_with_short_titles(tmp_path, capsys, monkeypatch):
    import math
    import re

    out = str(tmp_path / "s.zarr")
    args = ["fit", "--source", "sines", "--source-opt", "n=3", "--source-opt", "n_points=40", "--arch", "siren",
            "--w0", "10", "--steps", "5", "--no-compile", "--quiet", "--threads", "1", "--out", out]
    assert run(args, capsys)[0] == 0
    store = open_store(out)
    figures = _drawn_figures(monkeypatch)
    assert run(["render", out, "--out", str(tmp_path / "s.png"), "--split", "train"], capsys)[0] == 0
    fig = figures[-1]
    idx = _drawn_objects(store, "train")
    assert len(fig.axes) == len(idx) and all(ax.axison for ax in fig.axes)  # no empty row of axes
    x = -math.pi + 2 * math.pi * np.arange(40) / 40
    for ax, i in zip(fig.axes, idx):
        inr, truth = ax.lines
        a, b = store.labels[i]
        np.testing.assert_allclose(truth.get_xdata(), x, atol=1e-6)
        np.testing.assert_allclose(truth.get_ydata(), a * np.sin(b * x), atol=1e-4)
        assert re.fullmatch(r"a=\S{1,8}, b=\S{1,8} \| -?\d+\.\d dB", ax.get_title()), ax.get_title()
    assert "dashed: ground truth" in fig._suptitle.get_text()


def test_render_leaves_failed_inrs_out(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "12", "--out", out], capsys)[0] == 0
    train = open_store(out).split("train")
    failed = zarr.open_group(out, mode="r+")["metrics/failed"]
    failed[train[1], 0] = True
    figures = _drawn_figures(monkeypatch)
    assert run(["render", out, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)[0] == 0
    panels, axes = _panels(figures[-1])
    assert len(panels) == 2 * (len(train) - 1)
    assert "1 failed INR left out" in figures[-1]._suptitle.get_text()
    failed[train, 0] = True
    code, _, err = run(["render", out, "--out", str(tmp_path / "g2.png"), "--split", "train"], capsys)
    assert code == 1 and "all failed (their loss became NaN/inf)" in err and err.count("\n") == 1
    code, stdout, _ = run(["info", out], capsys)
    assert code == 0 and f"failed       {len(train)}" in stdout


def test_render_of_an_unfinished_store_names_the_split(tmp_path, capsys):
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "8", "--shard-size", "1", "--out", out], capsys)[0] == 0
    test = open_store(out).split("test")
    assert len(test)
    zarr.open_group(out, mode="r+")["done"][test] = False
    code, _, err = run(["render", out, "--out", str(tmp_path / "g.png")], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "no fitted objects to render yet in the test split" in err and "try another --split" in err
    assert run(["render", out, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)[0] == 0
    code, _, err = run(["render", out, "--out", str(tmp_path / "g2.png"), "--view", "1"], capsys)
    assert code == 1 and "view 1 out of range" in err and err.count("\n") == 1
    code, stdout, _ = run(["info", out], capsys)
    assert code == 0 and f"({8 - len(test)}/8 shards)" in stdout


def test_render_after_the_source_data_changed_draws_reconstructions_only(tmp_path, capsys, monkeypatch):
    data, out = tmp_path / "imgs", str(tmp_path / "i.zarr")
    _image_folder(data, (5, 7))
    assert run(FAST[:2] + ["image-folder", "--data", str(data)] + FAST[3:] + ["--steps", "5", "--out", out],
               capsys)[0] == 0
    figures = _drawn_figures(monkeypatch)
    for change in ("resize", "add"):
        if change == "resize":  # same files, other size: the truth no longer has the grid's pixels
            _image_folder(data, (4, 4))
        else:  # one more image: the objects after it are shifted
            _image_folder(data, (5, 7), n_per_class=3)
        code, _, err = run(["render", out, "--out", str(tmp_path / f"{change}.png"), "--split", "train"], capsys)
        assert code == 0, err
        assert re.fullmatch(r"inrforge render: warning: ground truth unavailable .*changed since the fit[^\n]*\n", err), err
        panels, _ = _panels(figures[-1])
        assert len(panels) == len(_drawn_objects(open_store(out), "train"))  # reconstructions only
        assert all(p.shape == (5, 7, 3) for p in panels)


def test_render_notices_an_added_file_that_shifts_a_limited_store(tmp_path, capsys, monkeypatch):
    """With --limit the store keeps its length and labels when a file is added in front of the kept
    ones, but its objects are other images now: the recorded file count tells render so."""
    from PIL import Image

    data, out = tmp_path / "imgs", str(tmp_path / "i.zarr")
    _image_folder(data, (5, 7))
    assert run(FAST[:2] + ["image-folder", "--data", str(data)] + FAST[3:]
               + ["--steps", "5", "--limit", "2", "--out", out], capsys)[0] == 0
    Image.fromarray(np.full((5, 7, 3), 255, np.uint8)).save(data / "a" / "00.png")  # sorts second in class a
    figures = _drawn_figures(monkeypatch)
    code, _, err = run(["render", out, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)
    assert code == 0, err
    assert re.fullmatch(r"inrforge render: warning: ground truth unavailable .*n_files=5 \(the fit had 4\)[^\n]*\n",
                        err), err
    panels, _ = _panels(figures[-1])
    assert len(panels) == len(_drawn_objects(open_store(out), "train"))  # reconstructions only


def test_render_of_an_import_shows_no_nan_psnr_and_fits_its_title(tmp_path, capsys, monkeypatch):
    out, exported, imported = str(tmp_path / "d.zarr"), str(tmp_path / "exp"), str(tmp_path / "imp.zarr")
    assert run(FAST + ["--limit", "4", "--out", out], capsys)[0] == 0
    assert run(["export-dws", out, exported], capsys)[0] == 0
    assert run(["import-dws", exported, "--out", imported], capsys)[0] == 0
    figures = _drawn_figures(monkeypatch)
    assert run(["render", imported, "--out", str(tmp_path / "g.png"), "--n", "1", "--split", "train"], capsys)[0] == 0
    fig = figures[-1]
    _, axes = _panels(fig)
    assert len(axes) == 1 and "nan" not in axes[0].get_title().lower()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    box = fig._suptitle.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # not cut off by a one-column figure


def _import_interval_store(tmp_path, capsys, endpoint):
    import json

    out, exported, imported = str(tmp_path / "s.zarr"), tmp_path / "exp", str(tmp_path / "imp.zarr")
    args = ["fit", "--source", "sines", "--source-opt", "n=2", "--source-opt", "n_points=20", "--arch", "siren",
            "--steps", "2", "--no-compile", "--quiet", "--threads", "1", "--out", out]
    assert run(args, capsys)[0] == 0
    assert run(["export-dws", out, str(exported)], capsys)[0] == 0
    spec = json.loads((exported / "splits.json").read_text())
    spec["grid"].update(lo=-1.0, hi=1.0, endpoint=endpoint)
    (exported / "splits.json").write_text(json.dumps(spec))
    assert run(["import-dws", str(exported), "--out", imported], capsys)[0] == 0
    return imported


def test_render_of_an_interval_grid_with_endpoint_does_not_crash(tmp_path, capsys, monkeypatch):
    imported = _import_interval_store(tmp_path, capsys, endpoint=True)
    figures = _drawn_figures(monkeypatch)
    code, _, err = run(["render", imported, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)
    assert code == 0, err
    (line,) = figures[-1].axes[0].lines
    assert len(line.get_xdata()) == len(line.get_ydata())


def test_render_of_an_interval_grid_with_endpoint_evaluates_its_points(tmp_path, capsys, monkeypatch):
    imported = _import_interval_store(tmp_path, capsys, endpoint=True)
    figures = _drawn_figures(monkeypatch)
    assert run(["render", imported, "--out", str(tmp_path / "g.png"), "--split", "train"], capsys)[0] == 0
    np.testing.assert_allclose(figures[-1].axes[0].lines[0].get_xdata(), np.linspace(-1, 1, 20), atol=1e-6)


def test_a_fit_whose_every_inr_failed_says_so_and_exits_nonzero(tmp_path, capsys):
    """lr 1e30 sends every ReLU INR's loss to inf or NaN: the store marks them failed, the summary
    says "none" (not nan), and the command fails on one line with status 1 (a resume of the
    finished store says it again)."""
    out = str(tmp_path / "f.zarr")
    for _ in range(2):
        code, stdout, err = run(FAST + ["--limit", "4", "--arch", "relu", "--lr", "1e30", "--out", out], capsys)
        assert code == 1 and open_store(out).metric("failed").all()
        assert stdout == f"{out}: 4 objects x 1 view, done 100%, median PSNR none recorded, failed 4\n", stdout
        assert err.startswith("inrforge fit: error: every INR failed (their loss became NaN or inf") and \
            err.count("\n") == 1, err


def _empty_store(path, arch):
    from inrforge.store import create_store

    source = {"name": "test", "params": {}, "n_objects": 2, "target_scaling": "none", "grid": None,
              "label_names": None, "label_shape": []}
    return create_store(path, arch=arch, n_objects=2, views=1, labels=np.arange(2), source=source, fit={},
                        splits={"train": [0, 1]})


@pytest.mark.parametrize("preset, line", [
    ("siren", "arch         siren 2->8->1, w0=12.0, offset=0.0, init=siren, 33 params"),
    ("relu", "arch         relu 2->8->1, offset=0.0, init=relu, 33 params"),
    ("relu-fourier", "arch         relu 2->(4 Fourier features, sigma 3.0)->8->8->1, offset=0.0, init=relu, 81 params"),
])
def test_info_arch_line_shows_what_the_arch_uses(tmp_path, capsys, preset, line):
    """w0 only for SIRENs (a ReLU MLP has none); a Fourier-feature arch says its input is 2-D."""
    from inrforge.arch import make_arch

    out = str(tmp_path / "s.zarr")
    _empty_store(out, make_arch(preset, hidden=8, depth=1, w0=12.0, fourier_features=4))
    code, stdout, _ = run(["info", out], capsys)
    assert code == 0 and line in stdout.splitlines(), stdout


def test_output_paths_may_be_file_urls(tmp_path, capsys, monkeypatch):
    """render's image and export-dws's folder accept a file:// URL as a store argument does; they
    used to create a folder named 'file:' in the working directory."""
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--out", out], capsys)[0] == 0
    code, stdout, _ = run(["render", out, "--n", "2", "--out", f"file://{tmp_path}/grid%201.png"], capsys)
    assert code == 0 and (tmp_path / "grid 1.png").stat().st_size > 0
    assert run(["export-dws", out, f"file://{tmp_path}/exported"], capsys)[0] == 0
    assert (tmp_path / "exported" / "splits.json").exists()
    code, _, err = run(["render", out, "--out", "s3://bucket/grid.png"], capsys)
    assert code == 1 and "only a store may be a URL" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.zarr", "exported", "grid 1.png"]  # no 'file:', 's3:'


def test_ctrl_c_says_resume_only_for_fit(tmp_path, capsys, monkeypatch):
    """Only fit resumes where it stopped; the other commands used to claim that a re-run resumes too."""
    import inrforge.fitjob
    import inrforge.figures

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--out", out], capsys)[0] == 0
    monkeypatch.setattr(inrforge.fitjob, "fit_inrs", stopped)
    monkeypatch.setattr(inrforge.figures, "render_grid", stopped)
    code, _, err = run(FAST + ["--limit", "4", "--out", out], capsys)
    assert (code, err) == (130, "inrforge fit: interrupted (re-run the same command to resume)\n")
    code, _, err = run(["render", out, "--out", str(tmp_path / "g.png")], capsys)
    assert (code, err) == (130, "inrforge render: interrupted\n")


def test_repair_refits_damaged_shards_bit_for_bit_and_verify_finds_them(tmp_path, capsys):
    args = FAST + ["--limit", "24", "--shard-size", "8", "--steps", "5"]
    good, bad = str(tmp_path / "good.zarr"), str(tmp_path / "bad.zarr")
    assert run(args + ["--out", good], capsys)[0] == 0 and run(args + ["--out", bad], capsys)[0] == 0
    code, out, _ = run(["info", bad, "--verify"], capsys)
    assert code == 0 and "verified     all 3 finished shards read back whole" in out
    shard1 = tmp_path / "bad.zarr" / "params" / "c" / "1" / "0" / "0"
    shard1.write_bytes(shard1.read_bytes()[:100])
    code, _, err = run(["info", bad, "--verify"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "shard 1 (8 objects) cannot be read back whole; `inrforge fit` with the store's arguments and --repair" in err
    assert run(args + ["--out", bad], capsys)[0] == 0  # a plain resume trusts the done flags: nothing refitted
    assert shard1.stat().st_size == 100
    (tmp_path / "bad.zarr" / "params" / "c" / "2" / "0" / "0").unlink()
    code, _, err = run(["info", bad], capsys)  # a missing file is seen without --verify
    assert code == 1 and "objects 16-23 are marked done but their parameters are missing" in err and "--repair" in err
    code, out, err = run(args + ["--out", bad, "--repair"], capsys)
    assert code == 0 and "warning: " in err and "refitting damaged shards 1, 2 (16 objects)" in err
    assert_same(snapshot(good), snapshot(bad))
    code, _, err = run(args + ["--out", bad, "--repair"], capsys)  # nothing left to repair: no warning
    assert code == 0 and err == ""


def test_empty_paths_are_refused_by_every_command(tmp_path, capsys):
    store = str(tmp_path / "s.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", store], capsys)[0] == 0
    for args, option in ((FAST + ["--out", ""], "--out"),
                         (FAST[:3] + ["image-folder", "--data", "", "--out", "x.zarr"], "--data"),
                         (["info", ""], "store"), (["render", store, "--out", ""], "--out"),
                         (["train", store, "--out", ""], "--out"), (["import-dws", "", "--out", "y.zarr"], "data"),
                         (["export-dws", store, ""], "out"), (FAST + ["--out", "z.zarr", "--scheduler", ""], "--scheduler")):
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"argument {option}: expected a path, got an empty string" in err, args
    for args in (FAST + ["--out", "memory://m.zarr"], ["import-dws", str(tmp_path), "--out", "memory://m.zarr"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and "argument --out: a memory:// store is gone when this command exits" in \
            capsys.readouterr().err


def test_outputs_inside_a_store_are_refused(tmp_path, capsys):
    store = str(tmp_path / "s.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", store], capsys)[0] == 0
    before = snapshot(store)
    for args in (["render", store, "--out", f"{store}/x.png"], ["export-dws", store, f"{store}/exp"],
                 ["train", store, "--epochs", "1", "--out", f"{store}/run"]):
        code, _, err = run(args, capsys)
        assert code == 1 and err.count("\n") == 1 and f"lies inside the Zarr store {store}" in err, args
    code, _, err = run(["info", f"{store}/params"], capsys)
    assert code == 1 and f"lies inside the store {store}; give the store's own path" in err
    assert_same(before, snapshot(store))


def test_a_failed_write_to_stdout_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    store = str(tmp_path / "s.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", store], capsys)[0] == 0

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["info", store]) == 1
    assert capsys.readouterr().err == "inrforge info: error: cannot write the output: No space left on device\n"


def test_a_damaged_chunk_is_one_line_on_stderr_even_at_exit(tmp_path, capsys):
    """zarr abandons the other tasks of a read whose chunk fails to decode; asyncio used to report
    each of them when collected (at exit: 5 to 60 lines, different on every run)."""
    store = str(tmp_path / "s.zarr")
    assert run(FAST + ["--limit", "40", "--steps", "2", "--shard-size", "16", "--out", store], capsys)[0] == 0
    shard = tmp_path / "s.zarr" / "params" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:100])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "inrforge", "export-dws", store, str(tmp_path / "exp")],
                           capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        assert "cannot read params of" in r.stderr and "(a damaged chunk?)" in r.stderr


def test_info_reproduce_refits_a_shard_and_fails_on_a_difference(tmp_path, capsys):
    """info --reproduce K: the recorded settings refit shard K bit for bit on the machine that fitted
    it; any stored number off by one ulp is reported (and exits 1), with what may explain it."""
    import zarr

    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "10", "--views", "2", "--shard-size", "4", "--out", out], capsys)[0] == 0
    code, stdout, _ = run(["info", out, "--reproduce", "2", "--threads", "1"], capsys)
    assert code == 0 and "reproduced   shard 2: refitted bit for bit" in stdout
    code, stdout, _ = run(["info", out, "--reproduce", "1", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["reproduced_shard"] == 1
    params = zarr.open_group(out, mode="r+")["params"]
    row = params[5]
    params[5] = np.nextafter(row, np.inf)  # every number of object 5, one ulp up
    code, _, err = run(["info", out, "--reproduce", "1"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert re.search(r"shard 1 refitted here differs from the stored one \(max \|param difference\| [0-9.e-]+, in "
                     r"2370 of 9480 numbers\); same software: another CPU type", err), err  # object 5: 2 x 1,185
    assert run(["info", out, "--reproduce", "0"], capsys)[0] == 0  # the other shards are untouched
    zarr.open_group(out, mode="r+")["done"][8:] = False
    code, _, err = run(["info", out, "--reproduce", "2"], capsys)
    assert code == 1 and "shard 2 is not finished; nothing to reproduce" in err
    code, _, err = run(["info", out, "--reproduce", "3"], capsys)
    assert code == 1 and "shard 3 out of range: the store has 3 shards" in err
    with pytest.raises(SystemExit) as stop:
        main(["info", out, "--threads", "1"])
    assert stop.value.code == 2 and "argument --threads: only used with --reproduce" in capsys.readouterr().err


def test_info_reproduce_refuses_what_it_cannot_repeat_in_one_line(tmp_path, capsys, monkeypatch):
    """Imported INRs have no fit to repeat; a compiled store needs a compiler (it was a traceback);
    --threads/--device belong to --reproduce and are refused before any work."""
    import zarr

    from test_interop import write_dws_dataset

    write_dws_dataset(tmp_path / "dws", n=4)
    imported = str(tmp_path / "imp.zarr")
    assert run(["import-dws", str(tmp_path / "dws"), "--out", imported], capsys)[0] == 0
    code, _, err = run(["info", imported, "--reproduce", "0"], capsys)
    assert code == 1 and "holds 'dws-import' objects, not INRs that inrforge fitted from a source" in err
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--shard-size", "4", "--out", out], capsys)[0] == 0
    g = zarr.open_group(out, mode="r+")
    g.attrs["fit"] = {**g.attrs["fit"], "compile": True}  # as a compiled fit records it
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    code, _, err = run(["info", out, "--reproduce", "0"], capsys)
    assert code == 1 and err.count("\n") == 1 and "a compiled fitting step needs a C++ compiler" in err, err
    g.attrs["fit"] = {**g.attrs["fit"], "compile": False}
    metrics = g["metrics"]["steps"]
    metrics[0] = metrics[0] + 1  # the parameters agree; a metric does not
    code, _, err = run(["info", out, "--reproduce", "0", "--device", "cpu"], capsys)
    assert code == 1 and "(the same parameters, other steps)" in err, err
    g.attrs["fit"] = {**g.attrs["fit"], "device": "cuda"}  # as a GPU fit records it, checked on this CPU
    code, _, err = run(["info", out, "--reproduce", "0", "--device", "cpu"], capsys)
    assert code == 1 and "it was fitted on cuda and refitted on cpu, whose kernels round differently" in err, err
    for option, value in (("--threads", "1"), ("--device", "cpu")):
        with pytest.raises(SystemExit) as stop:
            main(["info", str(tmp_path / "nothing.zarr"), option, value])  # refused before opening anything
        assert stop.value.code == 2 and f"argument {option}: only used with --reproduce" in capsys.readouterr().err


# ----- render never replaces a file unless told to, and never half-writes one -----------------------------

def _exists_message(path):
    return (f"inrforge render: error: cannot write {path}: it exists already; pass --overwrite to replace it, "
            f"or choose another --out\n")


def test_render_refuses_an_existing_file_without_overwrite(tmp_path, capsys):
    """render used to replace any file with an image extension (a thesis.pdf, a photo.jpg) silently."""
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", out], capsys)[0] == 0
    kept = {"thesis.pdf": b"%PDF-1.4 my thesis\n", "photo.jpg": b"my holiday photo\n", "grid.png": b"an old grid"}
    for name, data in kept.items():
        (tmp_path / name).write_bytes(data)
        path = str(tmp_path / name)
        assert run(["render", out, "--out", path], capsys) == (1, "", _exists_message(path))
        assert (tmp_path / name).read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["d.zarr", "grid.png", "photo.jpg", "thesis.pdf"]  # no temporary file
    png = str(tmp_path / "grid.png")
    assert run(["render", out, "--out", png, "--overwrite"], capsys) == (0, f"wrote {png}\n", "")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["d.zarr", "grid.png", "photo.jpg", "thesis.pdf"]


def test_render_refuses_a_folder_a_store_or_a_special_file_even_with_overwrite(tmp_path, capsys):
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", out], capsys)[0] == 0
    before = snapshot(out)
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dir.png" / "mine.txt").write_text("precious")
    os.mkfifo(tmp_path / "pipe.png")
    for extra in ([], ["--overwrite"]):
        for path in (out, str(tmp_path / "dir.png")):
            assert run(["render", out, "--out", path] + extra, capsys) == (
                1, "", f"inrforge render: error: cannot write {path}: it is a folder; give an image file name such "
                       f"as grid.png\n")
        path = str(tmp_path / "pipe.png")
        assert run(["render", out, "--out", path] + extra, capsys) == (
            1, "", f"inrforge render: error: cannot write {path}: it is not a plain file; give an image file name "
                   f"such as grid.png\n")
    assert_same(before, snapshot(out))
    assert os.listdir(tmp_path / "dir.png") == ["mine.txt"] and (tmp_path / "dir.png" / "mine.txt").read_text() == "precious"
    assert (tmp_path / "pipe.png").is_fifo()


def test_render_under_a_file_says_that_the_parent_is_a_file(tmp_path, capsys):
    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", out], capsys)[0] == 0
    (tmp_path / "afile.txt").write_bytes(b"notes")
    for below in ("x.png", "sub/x.png"):
        path = str(tmp_path / "afile.txt" / below)
        for extra in ([], ["--overwrite"]):
            assert run(["render", out, "--out", path] + extra, capsys) == (
                1, "", f"inrforge render: error: cannot write {path}: {tmp_path / 'afile.txt'} is a file, not a folder\n")
    assert (tmp_path / "afile.txt").read_bytes() == b"notes"
    path = str(tmp_path / "nope" / "x.png")  # a folder that is really missing is still called so
    assert run(["render", out, "--out", path], capsys) == (
        1, "", f"inrforge render: error: cannot write {path}: folder {tmp_path / 'nope'} does not exist\n")


def test_render_writes_whole_or_not_at_all(tmp_path, capsys, monkeypatch):
    """A write that fails part way (a full disk) leaves the earlier file as it was, and no partial file."""
    import errno

    from matplotlib.figure import Figure

    out = str(tmp_path / "d.zarr")
    assert run(FAST + ["--limit", "4", "--steps", "2", "--out", out], capsys)[0] == 0

    def full_disk(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    old = tmp_path / "grid.png"
    old.write_bytes(b"the previous grid")
    for path, extra in ((old, ["--overwrite"]), (tmp_path / "new.png", [])):
        assert run(["render", out, "--out", str(path)] + extra, capsys) == (
            1, "", f"inrforge render: error: cannot write {path}: No space left on device\n")
    assert old.read_bytes() == b"the previous grid"
    assert sorted(os.listdir(tmp_path)) == ["d.zarr", "grid.png"]  # no new.png, no temporary file

