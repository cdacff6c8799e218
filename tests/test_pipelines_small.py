"""Smoke tests of the paper pipelines at their --small setting (about 1 minute each on 1 thread).

Only directions that held with a wide margin over the data seeds we tried are asserted (see
docs/results_pipelines.md): the rest of the numbers are reported, not tested.
"""

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch

from inrforge import fit_inrs, load_run, open_store
from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.sources import load_source
from inrforge.zoo import ZooSettings, fit_zoo

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def covered_by_legends(fig) -> list[str]:
    """The data of ``fig`` that one of its legends covers: lines (sampled along their segments), bars,
    error bars and scatter points whose display position lies inside a legend's box. Empty when
    every legend is clear of the data."""
    import numpy as np
    from matplotlib.collections import LineCollection

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    legends = [leg for leg in [ax.get_legend() for ax in fig.axes] + list(fig.legends) if leg is not None]
    boxes = [leg.get_window_extent(r) for leg in legends]

    def along(xy):  # points along each segment of a polyline, in data (or axes) coordinates
        xy = np.asarray(xy, dtype=float)
        if len(xy) < 2:
            return xy
        t = np.linspace(0, 1, 50)[:, None, None]
        return (xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2)

    hits = []
    for ax in fig.axes:
        shapes = []
        for line in ax.lines:
            shapes.append((f"line {line.get_label()!r}", line.get_transform().transform(along(line.get_xydata()))))
        for c in ax.collections:
            if isinstance(c, LineCollection):
                pts = [c.get_transform().transform(along(seg)) for seg in c.get_segments() if len(seg)]
                shapes.append(("error bars", np.concatenate(pts) if pts else np.zeros((0, 2))))
            else:
                shapes.append(("points", c.get_offset_transform().transform(c.get_offsets())))
        for what, pts in shapes:
            if any(b.contains(x, y) for b in boxes for x, y in pts):
                hits.append(f"{ax.get_title()}: {what}")
        for patch in ax.patches:
            ext = patch.get_window_extent(r)
            if ext.width > 0 and ext.height > 0 and any(b.overlaps(ext) for b in boxes):
                hits.append(f"{ax.get_title()}: bar at x={ext.x0:.0f}")
    return hits


def has_legend(fig) -> bool:
    return bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)


@pytest.mark.parametrize("name, args, message", [
    ("classify_inrs", ["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    ("views_augment_sweep", ["--view-counts", "1,0"], "--view-counts: expected a comma list of positive integers"),
    ("views_augment_sweep", ["--test-fraction", "1"], "--test-fraction: expected a number between 0 and 1"),
    ("sine_regression", ["--sizes", "50,x"], "--sizes: expected a comma list of positive integers, got '50,x'"),
    ("sine_regression", ["--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    ("ssl_sines", ["--dropout", "1.5"], "--dropout: expected a dropout probability in [0, 1)"),
    ("domain_adaptation", ["--noise", "-0.1"], "--noise: expected a number >= 0"),
    ("domain_adaptation", ["--blur", "0"], "--blur: expected a positive number, got '0'"),
    ("domain_adaptation", ["--blur", "2"], "argument --blur: not used with --corruption rotate-noise"),
    ("domain_adaptation", ["--corruption", "blur-noise", "--angle", "90"],
     "argument --angle: not used with --corruption blur-noise"),
    ("domain_adaptation", ["--seeds", "0"], "--seeds: expected a positive integer"),
    ("dask_fit", ["--source", "digits", "--shard-size", "0"], "--shard-size: expected a positive integer"),
    ("dask_fit", ["--source", "digits", "--target-psnr", "high"], "--target-psnr: expected a PSNR in dB or 'none'"),
    # empty and unknown names in list arguments
    ("classify_inrs", ["--models", ""], "--models: expected a comma list of model configs from dwsnet, "),
    ("classify_inrs", ["--models", "mlp,bogus"], "got 'mlp,bogus' (unknown: bogus)"),
    ("sine_regression", ["--models", ""], "--models: expected a comma list of model configs from dwsnet, mlp, mlp+perm"),
    ("views_augment_sweep", ["--augs", ""], "--augs: expected a comma list of augmentations from none, perm"),
    ("views_augment_sweep", ["--models", "cnn"], "--models: expected a comma list of models from dwsnet, mlp"),
    ("ssl_sines", ["--encoders", ""], "--encoders: expected a comma list of encoders from dwsnet, mlp, got ''"),
    ("ssl_sines", ["--encoders", "dwsnet,cnn"], "(unknown: cnn)"),
    ("domain_adaptation", ["--mappers", ""], "--mappers: expected a comma list of mappers from mlp, dwsnet, got ''"),
    ("domain_adaptation", ["--mappers", "cnn"], "(unknown: cnn)"),
    # impossible settings that used to fail late (or train nothing)
    ("ssl_sines", ["--batch-size", "1"], "--batch-size: expected an integer >= 2, got '1'"),
    ("sine_regression", ["--preset", "bogus"], "--preset: invalid choice: 'bogus'"),
    ("domain_adaptation", ["--mlp-hidden", "abc"], "--mlp-hidden: expected a comma list of positive layer widths"),
    ("domain_adaptation", ["--classifiers", "2"], "--classifiers: expected at least 4, got 2: the zoo's train / val / "
                                                  "test splits (15% val, 15% test) would hold 2 / 0 / 0 classifiers"),
    ("dask_fit", ["--source", "digits", "--cluster", "local:0"], "--cluster local:N needs a positive number of workers"),
    ("dask_fit", ["--source", "digits", "--cluster", "foo"], "--cluster 'foo' is neither local:N nor a scheduler address"),
    ("dask_fit", ["--source", "digits", "--arch", "relu", "--w0", "10"],
     "argument --w0: SIREN option; --arch relu does not use it"),
    ("dask_fit", ["--source", "digits", "--fourier-features", "8"], "argument --fourier-features: relu-fourier option"),
    # options of the fit, which a given --store makes meaningless (they used to be ignored silently)
    ("sine_regression", ["--store", "s.zarr", "--n", "100"], "argument --n: not used with --store (the INRs are the "
                                                            "store's)"),
    ("sine_regression", ["--store", "s.zarr", "--fit-steps", "5", "--preset", "siren"], "argument --preset: not used"),
    ("ssl_sines", ["--store", "s.zarr", "--test-fraction", "0.5"], "argument --test-fraction: not used with --store"),
    ("views_augment_sweep", ["--store", "s.zarr", "--source", "mnist"], "argument --source: not used with --store"),
    ("classify_inrs", ["--store", "s.zarr", "--allow-version-change"],
     "argument --allow-version-change: not used with --store"),
    ("views_augment_sweep", ["--small", "--store", "s.zarr", "--seed", "3"], "argument --seed: not used with --store"),
    ("classify_inrs", ["--small", "--store", "s.zarr", "--fit-steps", "5"], "argument --fit-steps: not used with --store"),
    ("classify_inrs", ["--store", "s.zarr", "--source-opt", "size=8x8"], "argument --source-opt: not used with --store"),
    ("views_augment_sweep", ["--store", "s.zarr", "--source-opt=size=8x8"], "argument --source-opt: not used with --store"),
    ("classify_inrs", ["--models", "mlp,mlp+align", "--hidden", "8"],
     "argument --hidden: only for DWSNet, and --models mlp,mlp+align trains none"),
    ("views_augment_sweep", ["--models", "mlp", "--lr=0.01"], "argument --lr: only for DWSNet, and --models mlp trains none"),
    ("domain_adaptation", ["--mappers", "mlp", "--dws-hidden", "4"],
     "argument --dws-hidden: only for the dwsnet mapper, and --mappers mlp has none"),
    ("domain_adaptation", ["--mappers", "dwsnet", "--lr-mlp", "0.1"],
     "argument --lr-mlp: only for the mlp mapper, and --mappers dwsnet has none"),
    ("ssl_sines", ["--dropout", "1"], "--dropout: expected a dropout probability in [0, 1), got '1'"),
    ("sine_regression", ["--models", "mlp,mlp+perm", "--lr", "0.5"],
     "argument --lr: only for DWSNet, and --models mlp,mlp+perm trains none"),
    ("sine_regression", ["--models", "mlp", "--depth", "9"], "argument --depth: only for DWSNet, and --models mlp"),
    ("ssl_sines", ["--encoders", "mlp", "--hidden", "4"],
     "argument --hidden: only for the DWSNet encoder, and --encoders mlp has none"),
])
def test_impossible_arguments_are_refused_before_any_work(tmp_path, capsys, name, args, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        _load(name).main(args + ["--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("name, args, message", [
    ("sine_regression", ["--n", "100", "--sizes", "10,90"], r"--sizes must lie in \[1, 81\] \(the train split\), got 10,90"),
    ("classify_inrs", ["--views", "2", "--train-views", "3"], "--train-views 3 exceeds --views 2"),
    ("classify_inrs", ["--limit", "3", "--views", "1"], r"the test split of the 3 objects of 'digits' to fit would hold "
                                                        r"0 INR\(s\); classify_inrs needs at least 1"),
    ("views_augment_sweep", ["--views", "2", "--view-counts", "1,5"], "view counts 1,5 / --aug-views 1: 5 exceeds --views 2"),
    ("classify_inrs", ["--source", "bogus"], "unknown source 'bogus'"),
    ("classify_inrs", ["--source", "sines"], "source 'sines' has float targets, a regression task; classify_inrs "
                                             "needs class ids"),
    ("views_augment_sweep", ["--source", "sines"], "source 'sines' has float targets"),
    ("domain_adaptation", ["--data", "bogus"], "unknown source 'bogus'"),
    # its folder option is --data-path (--data names the source): the messages say so
    ("domain_adaptation", ["--data-path", "x"], "^source 'digits' reads no files; drop --data-path$"),
    ("domain_adaptation", ["--data", "cifar10"], r"^source 'cifar10' needs --data-path DIR \(the folder holding its files\)$"),
    ("classify_inrs", ["--source", "digits", "--source-opt", "size=8x8"], r"unknown option\(s\) size for source 'digits'"),
    ("classify_inrs", ["--source-opt", "size"], "source option 'size' must look like key=value"),
    # splits too small to train on or to score (used to fail after the fit: KeyError 'test', a TypeError)
    ("sine_regression", ["--n", "5", "--sizes", "1"], r"the test split of the 5 objects of 'sines' to fit would "
                                                      r"hold 0 INR\(s\); "
                                                      r"sine_regression needs at least 1 \(fit more --n"),
    ("ssl_sines", ["--n", "5"], r"the test split of the 5 objects of 'sines' to fit would hold 1 INR\(s\); "
                                r"ssl_sines needs at least 2 \(fit more --n"),
    ("views_augment_sweep", ["--limit", "5", "--views", "1", "--view-counts", "1"],
     r"the test split of the 5 objects of 'digits' to fit would hold 0 INR\(s\); views_augment_sweep needs at least 1"),
    ("domain_adaptation", ["--target-images", "5000"], r"--target-images must be in \[0, 1258\] \(the zoo's training "
                                                       r"images; 0: all\), got 5000"),
])
def test_settings_that_cannot_work_are_refused_before_fitting(tmp_path, name, args, message):
    out = tmp_path / "run"
    with pytest.raises(InrforgeError, match=message):
        _load(name).main(args + ["--out", str(out)])
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["classify_inrs", "views_augment_sweep", "sine_regression", "ssl_sines",
                                  "domain_adaptation"])
def test_a_missing_device_is_refused_before_out_is_created(tmp_path, name):
    out = tmp_path / "run"
    with pytest.raises(InrforgeError, match="device 'cuda' requested but CUDA is not available"):
        _load(name).main(["--device", "cuda", "--out", str(out)])
    assert not out.exists()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Tiny stores (1 fit step) of each kind the pipelines take with --store."""
    root = tmp_path_factory.mktemp("stores")
    n = torch.get_num_threads()
    try:
        made = {
            "digits": fit_inrs(load_source("digits", limit=20), root / "digits.zarr", views=2, steps=1,
                               compile=False, progress=False),
            "relu": fit_inrs(load_source("digits", limit=20), root / "relu.zarr", views=1, steps=1,
                             arch=make_arch("relu", in_features=2, out_features=1), compile=False, progress=False),
            # sine_regression's targets (b) and ssl_sines' (a, b)
            "b": fit_inrs(load_source("sines", n=20, n_points=16, fixed_amplitude=1.0), root / "b.zarr", steps=1,
                          compile=False, progress=False),
            "ab": fit_inrs(load_source("sines", n=20, n_points=16), root / "ab.zarr", steps=1, compile=False,
                           progress=False),
            # a classifier zoo: one float target per object too (the source accuracy), but no sines
            "zoo": fit_zoo(root / "zoo.zarr", n_classifiers=20, settings=ZooSettings(steps=1)),
            # splits too small to score: 2 test INRs, 1 train INR
            "tiny": fit_inrs(load_source("sines", n=3, n_points=16), root / "tiny.zarr", steps=1, compile=False,
                             test_fraction=0.5, progress=False),
        }
    finally:
        torch.set_num_threads(n)
    return {k: v.path for k, v in made.items()}


@pytest.mark.parametrize("name, store, args, message", [
    # a store of the wrong task (classification accuracy of an MSE, a regression on class ids, ...)
    ("classify_inrs", "b", [], r"b.zarr holds 1 float target\(s\) per INR, a regression task; .* needs a "
                               "classification store"),
    ("views_augment_sweep", "ab", [], "ab.zarr holds 2 float target.*needs a classification store"),
    ("sine_regression", "digits", [], "digits.zarr holds class ids, a classification task; sine_regression needs a "
                                      "regression store"),
    ("sine_regression", "ab", [], "ab.zarr holds 2 float targets per INR; sine_regression needs exactly one"),
    ("ssl_sines", "b", [], r"b.zarr holds 1 float target\(s\) per INR; ssl_sines needs the two targets \(a, b\)"),
    ("ssl_sines", "digits", [], "digits.zarr holds class ids, a classification task; ssl_sines needs a regression"),
    # a zoo of classifiers is no store of sines (it used to be trained on as if its target were b)
    ("sine_regression", "zoo", ["--sizes", "4"], "zoo.zarr holds INRs of 'classifier-zoo'; sine_regression needs a "
                                                 "store of 'sines'"),
    ("ssl_sines", "tiny", [], r"the train split of .*tiny.zarr holds 1 INR\(s\); ssl_sines needs at least 2"),
    # more than the store holds
    ("classify_inrs", "digits", ["--train-views", "3"], "--train-views 3 exceeds the 2 views per object of .*digits.zarr"),
    ("sine_regression", "b", ["--sizes", "600"], r"--sizes must lie in \[1, 16\] \(the train split\), got 600"),
    ("views_augment_sweep", "digits", ["--view-counts", "1,3"], r"view counts 1,3 / --aug-views 1: 3 exceeds the 2 views per object of .*digits.zarr"),
    # every augmentation is checked against the arch before the first cell trains
    ("views_augment_sweep", "relu", ["--view-counts", "1"], "--augs negate does not apply to the INRs of .*relu.zarr: "
                                                            "SirenNegate is a symmetry of SIREN INRs only"),
])
def test_a_store_that_cannot_serve_is_refused_before_out_is_created(tmp_path, stores, name, store, args, message):
    out = tmp_path / "run"
    with pytest.raises(InrforgeError, match=message):
        _load(name).main(["--store", stores[store], *args, "--out", str(out)])
    assert not out.exists()


@pytest.mark.parametrize("name, argv, expected", [  # given values win; the rest are --small's defaults
    ("sine_regression", ["--small", "--sizes", "7", "--test-fraction", "0.1", "--n", "9000"],
     {"sizes": (7,), "test_fraction": 0.1, "n": 9000, "train_steps": 300, "n_points": 200}),
    ("views_augment_sweep", ["--small", "--test-fraction", "0.1", "--epochs", "30", "--view-counts", "1,2,5,10",
                             "--limit", "1000"],
     {"test_fraction": 0.1, "epochs": 30, "view_counts": (1, 2, 5, 10), "limit": 1000, "seeds": 1, "batch_size": 64}),
    ("ssl_sines", ["--small", "--fit-lr", "1e-3", "--epochs", "50"], {"fit_lr": 1e-3, "epochs": 50, "n": 800}),
    ("classify_inrs", ["--small", "--epochs", "20", "--fit-steps", "500"],
     {"epochs": 20, "fit_steps": 500, "limit": 400, "batch_size": 32}),
    ("domain_adaptation", ["--small", "--seeds", "5", "--classifiers", "300"],
     {"seeds": 5, "classifiers": 300, "epochs": 8, "zoo_steps": 300}),
])
def test_small_changes_only_the_defaults(name, argv, expected):
    a = _load(name).parse_args(argv)
    assert {k: getattr(a, k) for k in expected} == expected


def test_parsed_lists_and_counts():
    a = _load("domain_adaptation").parse_args(["--target-images", "0", "--mlp-hidden", "64,32", "--mappers", "mlp"])
    assert (a.target_images, a.mlp_hidden, a.mappers) == (0, (64, 32), ("mlp",))  # 0: all training images
    assert _load("classify_inrs").parse_args([]).models == ("dwsnet", "mlp", "mlp+perm", "mlp+align")
    assert _load("dask_fit").parse_args(["--source", "digits", "--out", "x"]).batch_size is None  # automatic


def test_dask_fit_resumes_a_store_made_by_inrforge_fit(tmp_path, monkeypatch, capsys):
    """The store's recorded (automatic) batch size is kept: no 'fit.batch_size: store has 390, now 512'."""
    out = tmp_path / "digits.zarr"
    fit_inrs(load_source("digits", limit=8), out, steps=1, compile=False, progress=False)  # as inrforge fit
    mod = _load("dask_fit")
    monkeypatch.setattr(mod, "scheduler_client", lambda *a, **k: contextlib.nullcontext())  # all shards are done
    assert mod.main(["--source", "digits", "--limit", "8", "--steps", "1", "--no-compile", "--out", str(out)]) == 0
    assert "nothing to fit: all 1 shards were already done" in capsys.readouterr().out


def test_dask_fit_takes_inrforge_fits_arch_options(tmp_path, monkeypatch, capsys):
    """One set of fit options (script.add_fit_arguments): a store made by inrforge fit with other
    sizes and w0 resumes under dask_fit.py (it used to build the preset's default sizes and refuse)."""
    from inrforge.arch import make_arch

    out = tmp_path / "small.zarr"
    arch = make_arch("siren", hidden=8, depth=1, w0=12.0, in_features=2, out_features=1)
    fit_inrs(load_source("digits", limit=8), out, arch=arch, steps=1, compile=False, progress=False)
    mod = _load("dask_fit")
    monkeypatch.setattr(mod, "scheduler_client", lambda *a, **k: contextlib.nullcontext())  # all shards are done
    argv = ["--source", "digits", "--limit", "8", "--steps", "1", "--no-compile", "--out", str(out), "--arch", "siren"]
    assert mod.main(argv + ["--hidden", "8", "--depth", "1", "--w0", "12"]) == 0
    assert "nothing to fit: all 1 shards were already done" in capsys.readouterr().out
    assert mod.main(argv + ["--hidden", "8", "--depth", "1"]) == 1  # w0 30: another arch, refused
    assert "arch.w0: store has 12.0, now 30.0" in capsys.readouterr().err


class _Fitted(Exception):
    """Raised by a stand-in for a pipeline's fit: its keyword arguments, and the fit itself skipped."""


@pytest.mark.parametrize("name, fit", [("classify_inrs", "open_or_fit"), ("views_augment_sweep", "open_or_fit"),
                                       ("ssl_sines", "open_or_fit"), ("sine_regression", "open_or_fit"),
                                       ("domain_adaptation", "fit_zoo")])
def test_overwrite_reaches_the_fit(tmp_path, monkeypatch, name, fit):
    mod = _load(name)

    def stand_in(*a, **kw):
        raise _Fitted(kw)

    monkeypatch.setattr(mod, fit, stand_in)
    for flag in ([], ["--overwrite"]):
        with pytest.raises(_Fitted) as e:
            mod.main([*flag, "--out", str(tmp_path / "run")])
        assert e.value.args[0]["overwrite"] is bool(flag)
    for flag in ([], ["--allow-version-change"]):  # a fit begun under another inrforge or torch
        with pytest.raises(_Fitted) as e:
            mod.main([*flag, "--out", str(tmp_path / "run")])
        assert e.value.args[0]["allow_version_change"] is bool(flag)


@pytest.mark.parametrize("name", ["sine_regression", "ssl_sines"])
def test_the_sine_pipelines_fit_on_their_device(tmp_path, monkeypatch, name):
    """--device reaches the fit (the sine pipelines fitted on the CPU whatever --device said)."""
    mod = _load(name)
    monkeypatch.setattr(mod, "check_device", lambda device: None)  # no GPU here: the fit is a stand-in

    def stand_in(*a, **kw):
        raise _Fitted(kw)

    monkeypatch.setattr(mod, "open_or_fit", stand_in)
    with pytest.raises(_Fitted) as e:
        mod.main(["--small", "--device", "cuda:1", "--out", str(tmp_path / "run")])
    assert e.value.args[0]["device"] == "cuda:1"


def test_overwrite_replaces_the_store_a_run_fitted_with_other_arguments(tmp_path, one_thread):
    mod = _load("sine_regression")
    argv = ["--n", "24", "--n-points", "16", "--sizes", "4", "--models", "mlp", "--train-steps", "1", "--min-epochs",
            "1", "--threads", "1", "--out", str(tmp_path)]
    assert mod.main(argv + ["--fit-steps", "1"]) == 0
    with pytest.raises(InrforgeError, match="earlier run's results"):
        mod.main(argv + ["--fit-steps", "2"])
    (tmp_path / "notes.txt").write_text("mine")
    for log in (tmp_path / "mlp").rglob("*.*"):  # the first run ended a while ago (logs within 2 s are kept)
        os.utime(log, (time.time() - 60,) * 2)
    assert mod.main(argv + ["--fit-steps", "2", "--models", "mlp+perm", "--overwrite"]) == 0  # used to stop at the
    assert open_store(tmp_path / "inrs.zarr").fit_summary()["fit_steps"] == 2  # store of the first run
    # the first run's logs of a model this one did not train are gone; the user's file is not
    assert (tmp_path / "mlp+perm" / "n4" / "seed0" / "result.json").exists() and not (tmp_path / "mlp").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_sine_regression_small(tmp_path, one_thread, capsys):
    mod = _load("sine_regression")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.png").stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    res, setting = doc["results"], doc["setting"]
    assert setting["sizes"] == [50, 150, 400]
    assert setting["psnr_median"] > 35  # the fits are decent (sin(b x) has peak 1)
    baseline = setting["test_mse_of_mean"]  # ~7.5 = var(b) for b ~ U(0.5, 10)
    dws, mlp = res["dwsnet"]["400"]["mean"], res["mlp"]["400"]["mean"]
    # measured 0.53 / 0.53 (DWSNet) vs 6.39 / 6.79 (flat MLP) for data seeds 0 / 1; with the native
    # kernel's INRs (0.6.0) 0.50 / 0.52 vs 6.39 / 6.80
    assert dws < 0.5 * mlp
    assert dws < 0.25 * baseline
    assert set(res) == {"dwsnet", "mlp", "mlp+perm"}

    # A second run into the same folder does not replace the first one's results.
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(InrforgeError, match="earlier run's results.*--overwrite"):
        mod.main(["--small", "--threads", "1", "--train-steps", "1", "--out", str(tmp_path)])
    assert (tmp_path / "results.json").read_bytes() == before

    # Each training run is a run folder: load_run rebuilds it and predicts b in its own units (the
    # model learned b standardised), scoring the test MSE the pipeline reported.
    run = load_run(tmp_path / "dwsnet" / "n400" / "seed0")
    assert run.record["n_train"] == 400 and run.record["target_scale"]["std"] == [setting["label_std"]]
    pred = run.predict_store(open_store(tmp_path / "inrs.zarr"), split="test")
    assert len(pred) == setting["splits"]["test"]
    assert pred.score()["mse"] == pytest.approx(res["dwsnet"]["400"]["test_mse"][0], rel=1e-4)
    assert 0.5 < float(pred.outputs.mean()) < 10  # b ~ U(0.5, 10), not its standardised value

    # --resume after an interruption: the finished runs are reused, the one in flight is trained again,
    # and the results are the uninterrupted invocation's.
    for f in ("result.json", "best.pt", "inputs.pt"):
        os.remove(tmp_path / "mlp+perm" / "n400" / "seed0" / f)
    os.remove(tmp_path / "results.json")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(", reused)") == 8 and "mlp+perm  n=  400 seed 0" in printed
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["results"] == res
    with pytest.raises(InrforgeError, match=r"another run's \(config.epochs"):  # other arguments: refused
        mod.main(["--small", "--threads", "1", "--train-steps", "600", "--out", str(tmp_path), "--resume"])


def test_ssl_sines_small(tmp_path, one_thread, capsys):
    mod = _load("ssl_sines")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tsne.png").stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    res = doc["results"]
    for name in ("dwsnet", "mlp"):
        assert res[name]["loss_last"] < res[name]["loss_first"]  # NT-Xent went down
        assert len((tmp_path / name / "metrics.csv").read_text().splitlines()) == 1 + doc["setting"]["epochs"]
    r2_a, r2_b = res["dwsnet"]["r2"]
    assert r2_b > 0.3 and r2_a > 0.5
    # measured (seeds 0 / 1): R2(a) 0.88 / 0.91, R2(b) 0.76 / 0.61 (DWSNet); R2(a) 0.05 / 0.07 (MLP);
    # with the native kernel's INRs (0.6.0): 0.89 / 0.92, 0.75 / 0.60; 0.02 / 0.07.
    # The amplitude is (nearly) linearly readable from the invariant embedding only
    assert r2_a > res["mlp"]["r2"][0] + 0.3

    # Each encoder is a run folder: load_run rebuilds it, and its predictions are the embeddings the
    # probe read (the same R², from inrforge predict's path)
    store = open_store(tmp_path / "inrs.zarr")
    run = load_run(tmp_path / "dwsnet")
    assert run.task == "embedding" and run.record["out_features"] == doc["setting"]["emb_dim"]
    train, test = (run.predict_store(store, split=split) for split in ("train", "test"))
    y_tr, y_te = (store.labels[p.objects] for p in (train, test))
    assert mod.linear_probe(train.outputs.numpy(), y_tr, test.outputs.numpy(), y_te) == pytest.approx(res["dwsnet"]["r2"], abs=1e-4)
    assert train.score() is None and train.rows()[0][-1] == f"embedding_{doc['setting']['emb_dim'] - 1}"

    # --resume after an interruption: the finished encoder is reused, the other trained again, and
    # the results are the uninterrupted invocation's
    for f in ("result.json", "best.pt"):
        os.remove(tmp_path / "mlp" / f)
    os.remove(tmp_path / "results.json")
    capsys.readouterr()
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(", reused)") == 1 and "mlp   : NT-Xent" in printed
    again = json.loads((tmp_path / "results.json").read_text())["results"]
    timeless = [{k: {f: v for f, v in r.items() if f != "train_time_s"} for k, r in x.items()} for x in (again, res)]
    assert timeless[0] == timeless[1] and again["dwsnet"]["train_time_s"] == res["dwsnet"]["train_time_s"]
    with pytest.raises(InrforgeError, match=r"another run's \(contrastive.epochs: was 30, now 31\)"):
        mod.main(["--small", "--threads", "1", "--epochs", "31", "--out", str(tmp_path), "--resume"])


def _sine_doc(seeds: int) -> dict:
    """A results.json of sine_regression with made-up numbers (three models, sizes 50 ... 400)."""
    sizes = [50, 150, 400]
    setting = {"store": "inrs.zarr", "objects": 700, "splits": {"train": 504, "val": 56, "test": 140},
               "psnr_median": 44.5, "psnr_p5": 31.7, "n_points": 200, "init": "siren-dwsnets", "fit_steps": 200,
               "fit_lr": 1e-3, "data_seed": 0, "sizes": sizes, "train_steps": 300, "min_epochs": 3, "batch_size": 64,
               "seeds": seeds, "subset_seed": 0, "test_mse_of_mean": 7.3}
    curves = {"dwsnet": [0.95, 0.85, 0.53], "mlp": [7.0, 6.9, 6.4], "mlp+perm": [0.86, 0.93, 0.94]}
    results = {}
    for name, means in curves.items():
        results[name] = {}
        for n, m in zip(sizes, means):
            mses = [m * (1 + 0.1 * k) for k in range(seeds)]
            mean = sum(mses) / seeds
            std = (sum((x - mean) ** 2 for x in mses) / seeds) ** 0.5
            results[name][str(n)] = {"test_mse": mses, "mean": mean, "std": std, "epochs": 10, "best_epoch": [5] * seeds,
                                     "params": 1000}
    return {"setting": setting, "results": results}


@pytest.mark.parametrize("seeds", [1, 3])
def test_sine_regression_table_and_figure_state_the_setting(seeds):
    mod = _load("sine_regression")
    doc = json.loads(json.dumps(_sine_doc(seeds)))  # as read back from results.json
    table = mod.format_table(doc)
    caption = table.strip().splitlines()[0]
    for fact in ("units of b²", f"{seeds} training seed(s)", "700 sine INRs", "200 fit steps", "300 gradient steps",
                 "'test': 140"):
        assert fact in caption, (fact, caption)
    assert ("mean ± std" in caption) == (seeds > 1) and ("±" in table.split("| n=50")[1]) == (seeds > 1)
    assert "| dwsnet | " + (f"{doc['results']['dwsnet']['50']['mean']:.3f}") in table
    fig = mod.make_figure(doc)
    try:
        ax = fig.axes[0]
        assert ax.get_xscale() == ax.get_yscale() == "log"
        # the training-set sizes are the x ticks, in plain numbers; no minor labels crowd them
        assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "150", "400"]
        assert not any(t.get_text() for t in ax.xaxis.get_minorticklabels())
        assert "units of b²" in ax.get_ylabel() and ax.get_xlabel()
        assert f"{seeds} seed(s)" in ax.get_title() and "700 INRs" in ax.get_title()
        assert has_legend(fig) and covered_by_legends(fig) == []
        assert (len(ax.containers) == 3) == (seeds > 1)  # error bars (± std over the seeds) only with several seeds
    finally:
        fig.clf()


def test_ssl_sines_tsne_is_redrawn_from_results_json():
    import numpy as np

    mod = _load("ssl_sines")
    rng = np.random.default_rng(0)
    setting = {"objects": 50, "splits": {"train": 36, "val": 4, "test": 10}, "n_points": 16, "fit_steps": 1,
               "epochs": 2, "batch_size": 8, "seed": 0}
    results = {"raw weights": {"r2": [0.1, -0.2]}, "dwsnet (untrained)": {"r2": [0.8, 0.5]},
               "dwsnet": {"r2": [0.9, 0.6], "loss_first": 5.0, "loss_last": 2.0}, "mlp (untrained)": {"r2": [0.0, 0.3]},
               "mlp": {"r2": [0.1, 0.6], "loss_first": 5.0, "loss_last": 4.0}}
    doc = {"setting": setting, "results": results,
           "tsne": {"labels": rng.uniform(0, 10, (10, 2)).tolist(), "test_objects": list(range(10)),
                    "xy": {n: rng.normal(size=(10, 2)).tolist() for n in ("dwsnet", "mlp")}}}
    table = mod.format_table(doc)
    assert "| dwsnet, NT-Xent | 0.900 | 0.600 |" in table and "| dwsnet (untrained) | 0.800 | 0.500 |" in table
    assert "50 INRs" in table and "2 epochs" in table and "10 test INRs" in table
    fig = mod.make_figure(doc)
    try:
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == 4 and fig.get_suptitle()
        colourbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert sorted(cb.get_ylabel()[0] for cb in colourbars) == ["a", "a", "b", "b"]
        assert np.allclose(panels[0].collections[0].get_offsets(), doc["tsne"]["xy"]["dwsnet"])
    finally:
        fig.clf()


def _rerun_args(stores, name):
    """Seconds-long runs of each pipeline (tiny stores or zoos, one epoch)."""
    return {
        "sine_regression": ["--store", stores["b"], "--sizes", "4,8", "--models", "mlp,mlp+perm", "--train-steps", "2",
                            "--min-epochs", "1", "--seeds", "2"],
        "classify_inrs": ["--store", stores["digits"], "--models", "mlp,mlp+perm", "--epochs", "1", "--seeds", "2"],
        "views_augment_sweep": ["--store", stores["digits"], "--view-counts", "1,2", "--augs", "none,negate", "--models",
                                "mlp", "--epochs", "1", "--seeds", "2"],
        "ssl_sines": ["--store", stores["ab"], "--encoders", "mlp", "--epochs", "1", "--batch-size", "8"],
        "domain_adaptation": ["--classifiers", "8", "--zoo-steps", "2", "--epochs", "1", "--seeds", "2", "--mappers", "mlp",
                              "--mlp-hidden", "8", "--reference-classifiers", "2", "--target-images", "20",
                              "--image-batch", "16"],
    }[name]


@pytest.mark.parametrize("name", ["sine_regression", "classify_inrs", "views_augment_sweep", "ssl_sines",
                                  "domain_adaptation"])
def test_results_json_redraws_the_printed_table_and_the_figure(tmp_path, capsys, stores, one_thread, name):
    mod = _load(name)
    assert mod.main([*_rerun_args(stores, name), "--threads", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((tmp_path / "results.json").read_text())
    table = (mod.format_tables if name == "views_augment_sweep" else mod.format_table)(doc)
    assert table in printed  # the printed table is the JSON's numbers
    versions = doc["setting"]["versions"]
    assert {"inrforge", "torch", "numpy", "python", "matplotlib"} <= set(versions) and versions["torch_threads"] == 1
    fig = mod.make_figure(doc)  # the figure needs nothing but results.json
    try:  # (the t-SNE's colours are explained by colour bars, not a legend)
        assert (name == "ssl_sines" or has_legend(fig)) and covered_by_legends(fig) == []
    finally:
        fig.clf()
    assert (tmp_path / ("tsne.png" if name == "ssl_sines" else "results.png")).stat().st_size > 0


FIGURE_HELD = r"already holds {} .*pass --overwrite"  # without --overwrite the figure's name is refused
LOGS_BLOCKED = r"{} is not a folder, but this run writes its logs there"


@pytest.mark.parametrize("name, entry, message", [
    ("classify_inrs", "results.png", FIGURE_HELD), ("views_augment_sweep", "results.png", FIGURE_HELD),
    ("sine_regression", "results.png", FIGURE_HELD), ("ssl_sines", "tsne.png", FIGURE_HELD),
    ("domain_adaptation", "results.png", FIGURE_HELD),
    ("classify_inrs", "mlp", LOGS_BLOCKED), ("ssl_sines", "mlp", LOGS_BLOCKED), ("sine_regression", "dwsnet", LOGS_BLOCKED),
    ("views_augment_sweep", "views", LOGS_BLOCKED),
])
def test_a_users_file_in_the_way_of_the_outputs_is_refused_before_any_work(tmp_path, name, entry, message):
    """A file named like the figure, or where the logs' folder goes: kept, and nothing else written."""
    (tmp_path / entry).write_text("the user's own")
    with pytest.raises(InrforgeError, match=message.format(entry)):
        _load(name).main(["--small", "--out", str(tmp_path)])
    assert (tmp_path / entry).read_text() == "the user's own" and sorted(p.name for p in tmp_path.iterdir()) == [entry]


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_ssl_sines_tsne_takes_any_embedding_size(dim):
    """t-SNE starts from PCA's first two components, which a 1-D embedding (--emb-dim 1) lacks."""
    import numpy as np

    xy = _load("ssl_sines").tsne(np.random.default_rng(0).normal(size=(12, dim)).astype(np.float32), seed=0)
    assert xy.shape == (12, 2) and np.isfinite(xy).all()
