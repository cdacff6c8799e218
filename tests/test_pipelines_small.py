"""Smoke tests of the paper pipelines at their --small setting (about 1 minute each on 1 thread).

Only directions that held with a wide margin over the data seeds we tried are asserted (see
docs/results_pipelines.md): the rest of the numbers are reported, not tested.
"""

import contextlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from inrforge import fit_inrs, open_store
from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.sources import load_source

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"pipeline_{name}", ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name, args, message", [
    ("classify_inrs", ["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    ("views_augment_sweep", ["--view-counts", "1,0"], "--view-counts: expected a comma list of positive integers"),
    ("views_augment_sweep", ["--test-fraction", "1"], "--test-fraction: expected a number between 0 and 1"),
    ("sine_regression", ["--sizes", "50,x"], "--sizes: expected a comma list of positive integers, got '50,x'"),
    ("sine_regression", ["--lr", "nan"], "--lr: expected a positive number, got 'nan'"),
    ("ssl_sines", ["--dropout", "1.5"], "--dropout: expected a probability in [0, 1]"),
    ("domain_adaptation", ["--noise", "-0.1"], "--noise: expected a number >= 0"),
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
    ("views_augment_sweep", ["--views", "2", "--view-counts", "1,5"], "view counts 1,5 / --aug-views 1: 5 exceeds --views 2"),
    ("classify_inrs", ["--source", "bogus"], "unknown source 'bogus'"),
    ("classify_inrs", ["--source", "sines"], "source 'sines' has float targets, a regression task; classify_inrs "
                                             "needs class ids"),
    ("views_augment_sweep", ["--source", "sines"], "source 'sines' has float targets"),
    ("domain_adaptation", ["--data", "bogus"], "unknown source 'bogus'"),
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
     {"test_fraction": 0.1, "epochs": 30, "view_counts": (1, 2, 5, 10), "limit": 1000, "seeds": 2, "batch_size": 64}),
    ("ssl_sines", ["--small", "--fit-lr", "1e-3", "--epochs", "50"], {"fit_lr": 1e-3, "epochs": 50, "n": 800}),
    ("classify_inrs", ["--small", "--epochs", "30", "--fit-steps", "500"], {"epochs": 30, "fit_steps": 500, "limit": 400}),
    ("domain_adaptation", ["--small", "--seeds", "5", "--classifiers", "300"],
     {"seeds": 5, "classifiers": 300, "epochs": 8, "zoo_steps": 300}),
])
def test_small_changes_only_the_defaults(name, argv, expected):
    a = _load(name).parse_args(argv)
    assert {k: getattr(a, k) for k in expected} == expected


def test_parsed_lists_and_counts():
    a = _load("domain_adaptation").parse_args(["--target-images", "0", "--mlp-hidden", "64,32", "--mappers", "dwsnet"])
    assert (a.target_images, a.mlp_hidden, a.mappers) == (0, (64, 32), ("dwsnet",))  # 0: all training images
    assert _load("classify_inrs").parse_args([]).models == ("dwsnet", "mlp", "mlp+perm", "mlp+align")
    assert _load("dask_fit").parse_args(["--source", "digits", "--out", "x"]).batch_size is None  # automatic


def test_dask_fit_resumes_a_store_made_by_inrforge_fit(tmp_path, monkeypatch, capsys):
    """The store's recorded (automatic) batch size is kept: no 'fit.batch_size: store has 390, now 512'."""
    out = tmp_path / "digits.zarr"
    fit_inrs(load_source("digits", limit=8), out, steps=1, lr=5e-4, compile=False, progress=False)  # as inrforge fit
    mod = _load("dask_fit")
    monkeypatch.setattr(mod, "scheduler_client", lambda *a, **k: contextlib.nullcontext())  # all shards are done
    assert mod.main(["--source", "digits", "--limit", "8", "--steps", "1", "--no-compile", "--out", str(out)]) == 0
    assert "nothing to fit: all 1 shards were already done" in capsys.readouterr().out


class _Fitted(Exception):
    """Raised by a stand-in for a pipeline's fit: its keyword arguments, and the fit itself skipped."""


@pytest.mark.parametrize("name, fit", [("classify_inrs", "open_or_fit"), ("views_augment_sweep", "open_or_fit"),
                                       ("ssl_sines", "fit_inrs"), ("domain_adaptation", "fit_zoo")])
def test_overwrite_reaches_the_fit(tmp_path, monkeypatch, name, fit):
    mod = _load(name)

    def stand_in(*a, **kw):
        raise _Fitted(kw)

    monkeypatch.setattr(mod, fit, stand_in)
    for flag in ([], ["--overwrite"]):
        with pytest.raises(_Fitted) as e:
            mod.main([*flag, "--out", str(tmp_path / "run")])
        assert e.value.args[0]["overwrite"] is bool(flag)


def test_overwrite_replaces_the_store_a_run_fitted_with_other_arguments(tmp_path, one_thread):
    mod = _load("sine_regression")
    argv = ["--n", "24", "--n-points", "16", "--sizes", "4", "--models", "mlp", "--train-steps", "1", "--min-epochs",
            "1", "--threads", "1", "--out", str(tmp_path)]
    assert mod.main(argv + ["--fit-steps", "1"]) == 0
    with pytest.raises(InrforgeError, match="earlier run's results"):
        mod.main(argv + ["--fit-steps", "2"])
    assert mod.main(argv + ["--fit-steps", "2", "--overwrite"]) == 0  # used to stop at the store of the first run
    assert open_store(tmp_path / "inrs.zarr").fit_summary()["fit_steps"] == 2


def test_sine_regression_small(tmp_path, one_thread):
    mod = _load("sine_regression")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.png").stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    res, setting = doc["results"], doc["setting"]
    assert setting["sizes"] == [50, 150, 400]
    assert setting["psnr_median"] > 35  # the fits are decent (sin(b x) has peak 1)
    baseline = setting["test_mse_of_mean"]  # ~7.5 = var(b) for b ~ U(0.5, 10)
    dws, mlp = res["dwsnet"]["400"]["mean"], res["mlp"]["400"]["mean"]
    # measured 0.53 / 0.53 (DWSNet) vs 6.39 / 6.79 (flat MLP) for data seeds 0 / 1
    assert dws < 0.5 * mlp
    assert dws < 0.25 * baseline
    assert set(res) == {"dwsnet", "mlp", "mlp+perm"}

    # A second run into the same folder does not replace the first one's results.
    before = (tmp_path / "results.json").read_bytes()
    with pytest.raises(InrforgeError, match="earlier run's results.*--overwrite"):
        mod.main(["--small", "--threads", "1", "--train-steps", "1", "--out", str(tmp_path)])
    assert (tmp_path / "results.json").read_bytes() == before


def test_ssl_sines_small(tmp_path, one_thread):
    mod = _load("ssl_sines")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tsne.png").stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    res = doc["results"]
    for name in ("dwsnet", "mlp"):
        assert res[name]["loss_last"] < res[name]["loss_first"]  # NT-Xent went down
        assert (tmp_path / name / "history.json").exists()
    r2_a, r2_b = res["dwsnet"]["r2"]
    assert r2_b > 0.3 and r2_a > 0.5
    # measured (seeds 0 / 1): R2(a) 0.88 / 0.92, R2(b) 0.75 / 0.59 (DWSNet); R2(a) 0.04 / 0.07 (MLP).
    # The amplitude is (nearly) linearly readable from the invariant embedding only
    assert r2_a > res["mlp"]["r2"][0] + 0.3
