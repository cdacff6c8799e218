"""inrforge.predict and ``inrforge predict``: a finished run read back from its folder gives the
outputs its own evaluation scored, on any store of INRs with its widths."""

import csv
import json
import os

import numpy as np
import pytest
import torch

from inrforge.arch import make_arch
from inrforge.augment import AlignTo, Permute
from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.predict import INPUTS_FILE, InputForm, describe_score, load_run
from inrforge.store import ShardData, create_store
from inrforge.run_folder import LOG_FILES
from inrforge.train import TrainConfig, evaluate, fit_model, prepare_training
from test_train import ARCH, SMALL_DWS, learnable_store

CFG = TrainConfig(epochs=3, lr=3e-3, batch_size=32, seed=0)


def trained(tmp_path, store, name="run", **kw):
    """A finished run of prepare_training on ``store`` in ``tmp_path / name``: (TrainingRun, result, folder)."""
    run = prepare_training(store, config=CFG, **kw)
    res = run.fit(log_dir=tmp_path / name, progress=False)
    return run, res, tmp_path / name


def test_the_input_form_round_trips_through_its_file(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    ref = s.read([0])[0]
    g = torch.Generator().manual_seed(3)
    mean, std = torch.randn(ARCH.param_count, generator=g), torch.rand(ARCH.param_count, generator=g) + 0.5
    w = s.read(np.arange(10))[0]
    for form in (InputForm(ARCH), InputForm(ARCH, "entry", mean, std), InputForm(ARCH, "symmetric", mean, std,
                                                                                 AlignTo(ref, max_iter=7, seed=2))):
        form.save(tmp_path / "f.pt")
        back = InputForm.load(tmp_path / "f.pt")
        assert back.arch == form.arch and back.normalize == form.normalize
        assert (back.align is None) == (form.align is None)
        if form.align is not None:
            assert (back.align.max_iter, back.align.seed) == (7, 2)
            assert torch.equal(back.align.reference.flatten(), ref.flatten())
        assert torch.equal(back(w).flatten(), form(w).flatten())  # the same map, bit for bit
    # with statistics, the map is (theta - mean) / std
    assert torch.equal(InputForm(ARCH, "entry", mean, std)(w).flatten(), (w.flatten() - mean) / std)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(InrforgeError, match="not an inrforge input form"):
        InputForm.load(tmp_path / "bad.pt")
    torch.save({"format": 1, "arch": ARCH.to_dict(), "mean": mean[:5], "std": std[:5]}, tmp_path / "short.pt")
    with pytest.raises(InrforgeError, match="damaged input form"):
        InputForm.load(tmp_path / "short.pt")


@pytest.mark.parametrize("model,kw", [("dwsnet", {"model_kwargs": SMALL_DWS}),
                                      ("mlp", {"align": True, "normalize": "entry"}),
                                      ("mlp", {"normalize": None})])
def test_a_loaded_run_gives_the_outputs_its_evaluation_scored(tmp_path, model, kw):
    s = learnable_store(tmp_path / "s.zarr")
    run, res, folder = trained(tmp_path, s, model=model, **kw)
    assert (folder / INPUTS_FILE).is_file()
    loaded = load_run(folder)
    assert loaded.task == "classification" and not loaded.model.training
    pred = loaded.predict_store(s, split="test")
    assert pred.score()["acc"] == res["test"]["acc"]
    # the very outputs of the trained model on the run's own test batches
    run.model.eval()
    with torch.no_grad():
        want = torch.cat([run.model(w) for w, _ in run.test.loader(256, shuffle=False)])
    assert torch.equal(pred.outputs, want)
    assert evaluate(loaded.model, run.test.loader(256, shuffle=False), "classification", "cpu")["acc"] == res["test"]["acc"]
    # predict() on stored weights is the same map; in other batch sizes, up to the matrix products' rounding
    w, _ = s.read(pred.objects)
    assert torch.equal(loaded.predict(w), pred.outputs)
    torch.testing.assert_close(loaded.predict(w, batch_size=7), pred.outputs, rtol=0, atol=1e-5)


def test_all_splits_come_in_object_order_with_their_labels(tmp_path):
    s = learnable_store(tmp_path / "s.zarr", fail_first=True)  # view 0 of object 0 (train) failed
    _, _, folder = trained(tmp_path, s, model="mlp")
    pred = load_run(folder).predict_store(s)
    assert pred.skipped == 1 and list(pred.objects) == list(range(1, len(s)))
    assert pred.splits[0] == "train" and pred.splits[-1] == "test" and pred.splits.count("val") == 20
    assert torch.equal(pred.labels, torch.from_numpy(s.labels[1:]))
    head, rows = pred.rows()
    assert head[:4] == ["object", "split", "label", "predicted"] and head[4:] == ["p_0", "p_1"]
    assert len(rows) == len(pred) and all(abs(sum(r[4:]) - 1) < 1e-5 for r in rows)
    # another view: object 0's view 1 is usable; the outputs are those of its stored weights
    run = load_run(folder)
    other = run.predict_store(s, view=1)
    assert other.skipped == 0 and list(other.objects) == list(range(len(s)))
    assert torch.equal(other.outputs, run.predict(s.read(np.arange(len(s)), view=1)[0]))
    assert not torch.equal(other.outputs[1:], pred.outputs)
    with pytest.raises(InrforgeError, match="view 2 out of range: the store has 2 views"):
        run.predict_store(s, view=2)


def test_aligned_runs_and_dwsnet_do_not_see_a_neuron_permutation(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    w, _ = s.read(np.arange(40))
    shuffled = Permute()(w, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(shuffled.flatten(), w.flatten())
    _, _, aligned = trained(tmp_path, s, "aligned", model="mlp", align=True)
    run = load_run(aligned)
    assert torch.equal(run.predict(shuffled), run.predict(w))  # the same canonical form: exactly the same outputs
    _, _, dws = trained(tmp_path, s, "dws", model="dwsnet", model_kwargs=SMALL_DWS)
    run = load_run(dws)
    torch.testing.assert_close(run.predict(shuffled), run.predict(w), rtol=0, atol=1e-5)  # invariant up to rounding
    _, _, flat = trained(tmp_path, s, "flat", model="mlp")
    run = load_run(flat)
    assert not torch.allclose(run.predict(shuffled), run.predict(w), atol=1e-3)  # the flat MLP does see it


def test_a_regression_run_scores_its_mse(tmp_path):
    s = learnable_store(tmp_path / "r.zarr", labels="reg")
    _, res, folder = trained(tmp_path, s, model="dwsnet", model_kwargs=SMALL_DWS)
    pred = load_run(folder).predict_store(s, split="test")
    assert pred.task == "regression" and pred.outputs.shape == (20, 1)
    assert pred.score()["mse"] == pytest.approx(res["test"]["loss"], rel=1e-5)
    head, rows = pred.rows()
    assert head == ["object", "split", "label", "predicted"] and len(rows) == 20


@pytest.mark.parametrize("task, labels", [("classification", torch.zeros(0, dtype=torch.int64)),
                                          ("regression", torch.zeros(0, 2)), ("embedding", torch.zeros(0, 2))])
def test_no_inrs_make_a_header_only_csv(task, labels):
    """An empty selection (an empty split, every INR failed) used to crash writing the CSV."""
    from inrforge.predict import Predictions

    pred = Predictions(task, np.zeros(0, np.int64), [], torch.zeros(0, 3), labels, 4)
    head, rows = pred.rows()
    assert rows == [] and head[:2] == ["object", "split"] and len(head) > 3
    assert pred.score() is None and describe_score(pred) == "nothing to score"


def test_a_run_on_standardised_targets_predicts_in_the_labels_units(tmp_path):
    """A run that learned (y - m) / s (its record's target_scale) predicts m + s * out: the MSE in the
    labels' units is s^2 times the standardised MSE its evaluation scored."""
    s = learnable_store(tmp_path / "r.zarr", labels="reg")
    run = prepare_training(s, model="mlp", config=CFG)
    y = run.train.labels.float()
    m, sd = float(y.mean()), float(y.std())
    scaled = [d.with_labels((d.labels.float() - m) / sd) for d in (run.train, run.val, run.test)]
    describe = {**run.describe, "target_scale": {"mean": [m], "std": [sd]}}
    res = fit_model(run.model, *scaled, CFG, "regression", log_dir=tmp_path / "run", progress=False,
                    describe=describe)
    loaded = load_run(tmp_path / "run")
    pred = loaded.predict_store(s, split="test")
    assert pred.score()["mse"] == pytest.approx(res["test"]["loss"] * sd**2, rel=1e-5)
    plain = run.model(next(iter(run.test.loader(256)))[0]).detach()  # the standardised outputs
    assert torch.allclose(pred.outputs, plain * sd + m, atol=1e-5)
    # a damaged scale is a one-line error
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    for scale in ({"mean": [m]}, {"mean": [m], "std": [0.0]}, {"mean": [m, m], "std": [sd, sd]}, [m, sd]):
        (tmp_path / "run" / "result.json").write_text(json.dumps({**record, "target_scale": scale}))
        with pytest.raises(InrforgeError, match="damaged target_scale"):
            load_run(tmp_path / "run")


def test_other_stores_are_read_by_widths_and_scored_only_with_the_runs_labels(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    _, _, folder = trained(tmp_path, s, model="mlp", align=True)
    run = load_run(folder)
    # the same weights under another w0: predicted, with a warning; the alignment still applies
    other = make_arch(hidden=8, w0=10.0)
    n = len(s)
    o = create_store(tmp_path / "o.zarr", arch=other, n_objects=n, views=1, labels=np.full(n, 5, np.int64),
                     splits={"train": np.arange(n - 20), "val": np.arange(0), "test": np.arange(n - 20, n)},
                     source={"name": "synthetic", "params": {}}, fit={}, shard_objects=n)
    ok = np.full((n, 1), 30.0, np.float32)
    o.write_shard(ShardData(0, s.read_flat(np.arange(n))[:, None], ok, ok, np.ones((n, 1), np.int32),
                            np.zeros((n, 1), bool)))
    with pytest.warns(UserWarning, match="w0 10.0 instead of 30.0"):
        pred = run.predict_store(o, split="test")
    assert torch.equal(pred.outputs, run.predict_store(s, split="test").outputs)
    assert pred.score() is None  # class 5 is not one of the run's 2 classes
    assert describe_score(pred) == "not scored (the store's labels are not this run's kind)"
    with pytest.warns(UserWarning, match="another architecture"):
        empty = run.predict_store(o, split="val")
    assert len(empty) == 0 and empty.outputs.shape == (0, 2) and describe_score(empty) == "nothing to score"
    # stores that name their classes otherwise (cats and dogs, not the run's digits) are not scored
    assert "label_names" in run.record
    run.record["label_names"] = ["0", "1"]
    for names, scored in ((["cat", "dog"], False), (["0", "1"], True), (None, True)):
        named = create_store(tmp_path / f"n{scored}{names is None}.zarr", arch=s.arch, n_objects=n, views=1,
                             labels=s.labels[:], splits={"train": np.arange(n - 20), "val": np.arange(0),
                                                         "test": np.arange(n - 20, n)},
                             source={"name": "synthetic", "params": {}, "label_names": names}, fit={}, shard_objects=n)
        named.write_shard(ShardData(0, s.read_flat(np.arange(n))[:, None], ok, ok, np.ones((n, 1), np.int32),
                                    np.zeros((n, 1), bool)))
        if scored:
            pred = run.predict_store(named, split="test")
            assert pred.score() == run.predict_store(s, split="test").score()
        else:
            with pytest.warns(UserWarning, match=r"names its labels \[cat, dog\], but .* was trained on \[0, 1\]"):
                pred = run.predict_store(named, split="test")
            assert pred.score() is None and describe_score(pred) == "not scored (the store's classes are not the run's)"
    narrow = create_store(tmp_path / "x.zarr", arch=make_arch(hidden=9), n_objects=2, views=1,
                          labels=np.zeros(2, np.int64), splits={"train": np.arange(2)},
                          source={"name": "s", "params": {}}, fit={}, shard_objects=2)
    with pytest.raises(InrforgeError, match=r"holds INRs of widths \[2, 9, 9, 1\], but .* was trained on widths \[2, 8, 8, 1\]"):
        run.predict_store(narrow)


def test_runs_that_cannot_be_rebuilt_are_one_line_errors(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    _, _, folder = trained(tmp_path, s, model="mlp")
    with pytest.raises(InrforgeError, match="no such run folder"):
        load_run(tmp_path / "nothing")
    with pytest.raises(InrforgeError, match="is a Zarr store, not a run folder"):
        load_run(s.path)
    with pytest.raises(InrforgeError, match="no finished run"):
        load_run(tmp_path)
    # a run of fit_model with a model of one's own: its result.json does not say how to build it
    run = prepare_training(s, model="mlp", config=CFG)
    fit_model(run.model, run.train, run.val, run.test, CFG, "classification", log_dir=tmp_path / "own", progress=False)
    assert (tmp_path / "own" / INPUTS_FILE).is_file()
    with pytest.raises(InrforgeError, match="does not say how its model was built"):
        load_run(tmp_path / "own")
    # a canonical form of the user's own cannot be saved: no inputs.pt, and load_run says why
    run = prepare_training(s, model="mlp", config=CFG)
    run.train.canonical = lambda w: w
    run.fit(log_dir=tmp_path / "custom", progress=False)
    assert not (tmp_path / "custom" / INPUTS_FILE).exists()
    with pytest.raises(InrforgeError, match="no inputs.pt"):
        load_run(tmp_path / "custom")
    # damaged files
    (folder / "best.pt").write_bytes(b"garbage")
    with pytest.raises(InrforgeError, match="best.pt does not hold this run's model"):
        load_run(folder)
    os.remove(folder / "best.pt")
    with pytest.raises(InrforgeError, match="no best.pt"):
        load_run(folder)
    with pytest.raises(InrforgeError, match="unknown split"):
        load_run(trained(tmp_path, s, "again", model="mlp")[2]).predict_store(s, split="eval")


def test_cli_predict_writes_the_predictions_and_keeps_what_exists(tmp_path, capsys):
    s = learnable_store(tmp_path / "s.zarr")
    run_dir, out = tmp_path / "run", tmp_path / "pred.csv"
    assert main(["train", s.path, "--model", "dwsnet", "--hidden", "8", "--depth", "2", "--epochs", "2",
                 "--batch-size", "32", "--threads", "1", "--out", str(run_dir), "--quiet"]) == 0
    test_acc = json.loads((run_dir / "result.json").read_text())["test"]["acc"]
    capsys.readouterr()
    assert main(["predict", str(run_dir), s.path, "--split", "test", "--out", str(out), "--threads", "1"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert f"20 INRs, accuracy {100 * test_acc:.2f} %" in line and "dwsnet, classification" in line
    rows = list(csv.reader(out.open()))
    assert rows[0][:4] == ["object", "split", "label", "predicted"] and len(rows) == 21
    assert [int(r[0]) for r in rows[1:]] == list(range(len(s) - 20, len(s)))
    before = out.read_bytes()

    def fails(args, message):
        capsys.readouterr()
        assert main(["predict", *args]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err

    fails([str(run_dir), s.path, "--out", str(out)], "it exists already; pass --overwrite")
    fails([str(run_dir), s.path, "--out", str(tmp_path / "p.txt")], ".txt is not a CSV file (use .csv)")
    fails([str(run_dir), s.path, "--out", str(tmp_path)], "it is a folder")
    fails([s.path, str(run_dir)], "is a Zarr store, not a run folder")
    metrics = (run_dir / "metrics.csv").read_bytes()  # a run's own files are kept, even with --overwrite
    fails([str(run_dir), s.path, "--out", str(run_dir / "metrics.csv"), "--overwrite"], "is a file of the training run")
    assert out.read_bytes() == before and not (tmp_path / "p.txt").exists()
    assert (run_dir / "metrics.csv").read_bytes() == metrics
    assert main(["predict", str(run_dir), s.path, "--out", str(out), "--overwrite", "--threads", "1"]) == 0
    assert len(list(csv.reader(out.open()))) == len(s) + 1
    capsys.readouterr()
    assert main(["predict", str(run_dir), s.path, "--view", "1", "--split", "val", "--threads", "1"]) == 0
    assert f"on {s.path}, val split, view 1: 20 INRs, accuracy" in capsys.readouterr().out
    # inputs.pt is one of the run's files: train refuses a folder holding one without --overwrite
    assert INPUTS_FILE in LOG_FILES
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / INPUTS_FILE).write_bytes(b"mine")
    capsys.readouterr()
    assert main(["train", s.path, "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "other"), "--quiet"]) == 1
    assert (tmp_path / "other" / INPUTS_FILE).read_bytes() == b"mine"
