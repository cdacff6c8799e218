import json
import os
import re
import warnings

import numpy as np
import pytest
import torch

from inrforge.arch import make_arch
from inrforge.augment import build_transform
from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.store import ShardData, create_store
from inrforge.train import TrainConfig, train_on_store

ARCH = make_arch(hidden=8)


SMALL_DWS = {"hidden": 8, "depth": 2}  # DWSNet options; the flat MLP takes none of them


def learnable_store(path, n=160, labels="class", val=True, fail_first=False):
    """Random INR weights whose label is a permutation-invariant function of them.
    ``val=False``: no val split; ``fail_first``: view 0 of the first train INR failed (NaN)."""
    rng = np.random.default_rng(0)
    params = rng.standard_normal((n, 2, ARCH.param_count)).astype(np.float32)
    last_bias = params[:, 0, -1]
    params[:, 1, -1] = last_bias  # both views share the (invariant) output bias
    y = (last_bias > 0).astype(np.int64) if labels == "class" else last_bias[:, None].astype(np.float32)
    splits = {"train": np.arange(0, n - 40), "val": np.arange(n - 40, n - 20), "test": np.arange(n - 20, n)}
    if not val:
        splits["val"] = np.arange(0)
    s = create_store(path, arch=ARCH, n_objects=n, views=2, labels=y, splits=splits,
                     source={"name": "synthetic", "params": {}}, fit={}, shard_objects=n)
    ok = np.full((n, 2), 30.0, np.float32)
    failed = np.zeros((n, 2), bool)
    if fail_first:
        failed[0, 0] = True
        params[0, 0] = np.nan
        ok[0, 0] = np.nan
    s.write_shard(ShardData(0, params, ok, ok, np.ones((n, 2), np.int32), failed))
    return s


@pytest.mark.parametrize("model", ["dwsnet", "mlp"])
def test_short_training_learns(tmp_path, model):
    s = learnable_store(tmp_path / "s.zarr")
    cfg = TrainConfig(epochs=15, lr=3e-3, batch_size=32, seed=0)
    res = train_on_store(s, model=model, config=cfg, model_kwargs=SMALL_DWS if model == "dwsnet" else None, log_dir=tmp_path / "run",
                         progress=False)
    losses = [r["train_loss"] for r in res["history"]]
    assert losses[-1] < 0.6 * losses[0]
    if model == "dwsnet":  # the invariant head sees the output bias directly; the MLP overfits 120 samples
        assert res["test"]["acc"] >= 0.8
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 15 and "val_acc" in json.loads(rows[0])
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "metrics.csv").exists()
    assert json.loads((tmp_path / "run" / "result.json").read_text())["best_epoch"] == res["best_epoch"]


def test_regression_and_mixup_soft_labels(tmp_path):
    s = learnable_store(tmp_path / "r.zarr", labels="reg")
    res = train_on_store(s, model="mlp", augment=["perm", "mixup"], config=TrainConfig(epochs=3, batch_size=32),
                         progress=False)
    assert res["task"] == "regression" and np.isfinite(res["test"]["loss"])
    c = learnable_store(tmp_path / "c.zarr")
    res = train_on_store(c, model="mlp", augment=["mixup-align"], config=TrainConfig(epochs=2, batch_size=32),
                         progress=False)
    assert 0 <= res["test"]["acc"] <= 1


def test_patience_stops_early(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    res = train_on_store(s, model="mlp", config=TrainConfig(epochs=50, lr=1e-6, patience=2, batch_size=64),
                         progress=False)
    assert res["epochs_run"] < 50
    assert res["epochs_run"] == res["best_epoch"] + 1 + 2  # exactly 2 epochs without a better val score


def test_batch_norm_skips_a_last_batch_of_one(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")  # 120 train INRs
    cfg = TrainConfig(epochs=2, batch_size=119)
    res = train_on_store(s, model="dwsnet", config=cfg, model_kwargs={"hidden": 8, "depth": 2, "norm": "batch"},
                         progress=False)
    assert res["epochs_run"] == 2 and np.isfinite(res["history"][-1]["train_loss"])
    res = train_on_store(s, model="mlp", config=cfg, progress=False)  # no batch norm: every INR trains
    assert res["epochs_run"] == 2


def test_no_val_split_keeps_the_last_epoch(tmp_path, capsys):
    s = learnable_store(tmp_path / "s.zarr", val=False)
    res = train_on_store(s, model="mlp", config=TrainConfig(epochs=3, batch_size=64), progress=False)
    assert res["best_epoch"] == 2 and "val" not in res and "test" in res
    assert main(["train", s.path, "--epochs", "2", "--model", "mlp", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mlp: test" in out and "val" not in out and "best epoch 1" in out


def test_align_reference_skips_a_failed_view(tmp_path):
    """The reference is the first train INR whose view 0 is usable: object 1 here, as object 0's
    view 0 failed (NaN weights, which would make every aligned INR NaN)."""
    from inrforge.train import prepare_training

    s = learnable_store(tmp_path / "s.zarr", fail_first=True)
    run = prepare_training(s, model="mlp", align=True, config=TrainConfig(epochs=1, batch_size=64))
    assert torch.equal(run.train.canonical.reference.flatten(), torch.from_numpy(s.read_flat([1], view=0)))
    assert all(torch.isfinite(w.flatten()).all() for w, _ in run.train.loader(64))
    res = run.fit(progress=False)
    assert np.isfinite(res["test"]["loss"])


def test_result_json_says_what_was_trained(tmp_path, monkeypatch):
    from inrforge.models import build_model

    s = learnable_store(tmp_path / "s.zarr")
    run = tmp_path / "run"
    s.root.attrs["fit"] = {"seed": 3, "steps": 50}  # as a fit records them
    monkeypatch.chdir(tmp_path)
    assert main(["train", "s.zarr", "--epochs", "2", "--hidden", "8", "--depth", "2", "--augment", "perm",
                 "--quiet", "--threads", "1", "--out", str(run)]) == 0
    r = json.loads((run / "result.json").read_text())
    # the store as an absolute path, however it was given, and how its INRs were fitted
    assert (r["model"], r["augment"], r["store"], r["views"], r["n_train"]) == ("dwsnet", ["perm"], s.path, 2, 120)
    assert r["store_fit"] == {"seed": 3, "steps": 50}
    # what else decides the numbers: torch's thread count and the library versions
    assert r["threads"] == 1 and r["versions"]["torch"] == torch.__version__
    net = build_model(r["model"], ARCH, 2, **r["model_kwargs"])
    net.load_state_dict(torch.load(run / "best.pt"))  # the folder alone rebuilds the model
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(row["lr"] > 0 for row in rows)  # the rate the epoch trained at, not the one after it


def test_bad_training_input(tmp_path, capsys):
    with pytest.raises(InrforgeError, match="unknown augmentation"):
        build_transform(["spin"], ARCH, 2)
    with pytest.raises(InrforgeError, match="choose one MixUp variant, not mixup, mixup-align"):
        build_transform(["perm", "mixup", "mixup-align"], ARCH, 2)
    with pytest.raises(InrforgeError, match="^augmentation\\(s\\) listed twice: negate, perm$"):
        build_transform(["perm", "negate", "perm", "negate"], ARCH, 2)
    with pytest.raises(InrforgeError, match="--workers must be an integer >= 0"):
        TrainConfig(num_workers=-1)
    with pytest.raises(InrforgeError, match=r"^--warmup-epochs \(1e\+300\) must be at most --epochs \(5\): "):
        TrainConfig(epochs=5, warmup_epochs=1e300)
    assert TrainConfig(epochs=5, warmup_epochs=5).warmup_epochs == 5
    relu = make_arch("relu", hidden=8)
    with pytest.raises(InrforgeError, match="(?i)siren"):
        build_transform(["negate"], relu, 2)
    s = learnable_store(tmp_path / "s.zarr")
    assert main(["train", s.path, "--augment", "spin", "--quiet"]) == 1
    assert "unknown augmentation" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "none.zarr"), "--quiet"]) == 1
    # refused runs leave no --out folder behind
    relu = learnable_store(tmp_path / "relu.zarr")
    relu.root.attrs["arch"] = {**relu.root.attrs["arch"], "family": "relu", "init": "relu", "w0": 1.0}
    for args in ([str(tmp_path / "none.zarr")], [s.path, "--views", "3"],
                 [relu.path, "--augment", "negate"]):
        assert main(["train", *args, "--quiet", "--out", str(tmp_path / "never")]) == 1
        assert not (tmp_path / "never").exists()
    tiny = learnable_store(tmp_path / "tiny.zarr", n=41)  # 1 train INR
    for args in ([s.path, "--batch-size", "1"], [tiny.path]):  # batch norm cannot work: refused up front
        assert main(["train", *args, "--quiet", "--out", str(tmp_path / "never")]) == 1
        assert "batch norm needs batches of at least 2 INRs" in capsys.readouterr().err
        assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit) as e:
        main(["train", s.path, "--dropout", "2", "--out", str(tmp_path / "never")])
    assert e.value.code == 2 and not (tmp_path / "never").exists()
    assert main(["train", s.path, "--epochs", "2", "--batch-size", "64", "--model", "mlp", "--quiet"]) == 0
    assert "mlp: test" in capsys.readouterr().out

    # --out: never the store itself; an earlier run's results only replaced with --overwrite.
    before = sorted(os.listdir(s.path))
    assert main(["train", s.path, "--epochs", "1", "--model", "mlp", "--quiet", "--out", s.path]) == 1
    assert "is a Zarr store" in capsys.readouterr().err and sorted(os.listdir(s.path)) == before
    run = tmp_path / "run"
    assert main(["train", s.path, "--epochs", "1", "--model", "mlp", "--quiet", "--out", str(run)]) == 0
    first = (run / "result.json").read_bytes()
    assert main(["train", s.path, "--epochs", "2", "--model", "mlp", "--quiet", "--out", str(run)]) == 1
    assert "earlier run's results" in capsys.readouterr().err and (run / "result.json").read_bytes() == first
    assert main(["train", s.path, "--epochs", "2", "--model", "mlp", "--quiet", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "result.json").read_text())["epochs_run"] == 2


def test_align_to_reference_baseline(tmp_path):
    from inrforge.align import apply_permutation, random_permutations
    from inrforge.augment import AlignTo
    from inrforge.weights import Weights

    s = learnable_store(tmp_path / "s.zarr")
    ref, _ = s.read([0])
    copies = ref[torch.zeros(4, dtype=torch.long)]
    shuffled = apply_permutation(copies, random_permutations(ARCH, 4, torch.Generator().manual_seed(0)))
    aligned = AlignTo(ref)(shuffled)
    assert torch.equal(aligned.flatten(), copies.flatten())  # canonical form: permuted copies collapse
    with pytest.raises(InrforgeError, match="another architecture"):
        AlignTo(Weights.from_flat(torch.zeros(1, make_arch().param_count), make_arch()))(shuffled)
    res = train_on_store(s, model="mlp", align=True, config=TrainConfig(epochs=2, batch_size=64), progress=False)
    assert res["align"] and 0 <= res["test"]["acc"] <= 1


def test_train_align_on_the_command_line_is_the_align_baseline(tmp_path, capsys):
    s = learnable_store(tmp_path / "s.zarr")
    run = tmp_path / "run"
    assert main(["train", s.path, "--model", "mlp", "--align", "--epochs", "3", "--batch-size", "64", "--quiet",
                 "--out", str(run)]) == 0
    assert capsys.readouterr().out.startswith("mlp+align: ")
    r = json.loads((run / "result.json").read_text())
    api = train_on_store(s, model="mlp", align=True, progress=False,
                         config=TrainConfig(epochs=3, batch_size=64, lr=5e-3, weight_decay=5e-4))
    assert r["align"] is True and r["test"] == api["test"]  # the same run as the API's
    plain = train_on_store(s, model="mlp", progress=False,
                           config=TrainConfig(epochs=3, batch_size=64, lr=5e-3, weight_decay=5e-4))
    assert plain["test"] != api["test"]


@pytest.mark.parametrize("model", ["dwsnet", "mlp"])
def test_a_run_depends_on_its_seed_not_on_what_ran_before(tmp_path, model):
    """Model init, batches and draws come from the training seed: the same run gives the same
    numbers whatever state an earlier run left the global RNG in (a sweep runs many in one process)."""
    s = learnable_store(tmp_path / "s.zarr")
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=32, seed=3)
    kw = dict(model=model, augment=["perm"], config=cfg, model_kwargs=SMALL_DWS if model == "dwsnet" else None,
              progress=False)
    torch.manual_seed(123)
    first = train_on_store(s, **kw)
    torch.rand(1000)  # as if another run had happened in between
    again = train_on_store(s, **kw)
    assert [r["train_loss"] for r in first["history"]] == [r["train_loss"] for r in again["history"]]
    assert first["test"] == again["test"]


class _NaNAfter(torch.nn.Module):
    """Wraps a model: its training outputs turn NaN from the ``after``-th training batch on (a run diverging)."""

    def __init__(self, net, after):
        super().__init__()
        self.net, self.after, self.calls = net, after, 0

    def forward(self, w):
        out = self.net(w)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                out = out * float("nan")
        return out


def _diverging_run(store, after):
    from dataclasses import replace

    from inrforge.train import prepare_training

    run = prepare_training(store, model="mlp", config=TrainConfig(epochs=6, batch_size=32))  # 4 batches per epoch
    return replace(run, model=_NaNAfter(run.model, after))


@pytest.fixture(params=[1, 3], ids=["check-every-step", "check-every-3"])
def check_every(request, monkeypatch):
    """The train loss read every step (a CPU) or every 3 (as a GPU does every 32): same results."""
    monkeypatch.setattr("inrforge.train.loss_check_interval", lambda device: request.param)
    return request.param


def test_a_diverging_run_stops_and_keeps_the_last_good_weights(tmp_path, check_every):
    s = learnable_store(tmp_path / "s.zarr")
    with pytest.warns(UserWarning, match="diverged"):
        res = _diverging_run(s, after=9).fit(log_dir=tmp_path / "run", progress=False)  # NaN in epoch 2's 2nd batch
    assert res["diverged"] == {"epoch": 2, "step": 1}
    assert res["epochs_run"] == 2 and res["best_epoch"] in (0, 1)
    assert all(np.isfinite(r["train_loss"]) for r in res["history"])
    assert np.isfinite(res["val"]["loss"]) and np.isfinite(res["test"]["loss"])
    assert json.loads((tmp_path / "run" / "result.json").read_text())["diverged"]["epoch"] == 2
    no_val = learnable_store(tmp_path / "n.zarr", val=False)  # the last finished epoch is kept
    with pytest.warns(UserWarning, match="diverged"):
        res = _diverging_run(no_val, after=9).fit(progress=False)
    assert res["best_epoch"] == 1 and np.isfinite(res["test"]["loss"])
    with pytest.raises(InrforgeError, match="diverged at epoch 0"):  # nothing finished to keep
        _diverging_run(s, after=2).fit(progress=False)


def test_weights_an_epochs_last_update_overflowed_are_not_kept(tmp_path, check_every):
    """The loss before the last update of epoch 1 is finite, the update itself (an infinite
    gradient) makes the weights NaN: without a val split, epoch 0's weights are kept, not those."""
    from inrforge.train import prepare_training

    no_val = learnable_store(tmp_path / "n.zarr", val=False)
    run = prepare_training(no_val, model="mlp", config=TrainConfig(epochs=6, batch_size=32))  # 4 batches per epoch
    calls = []

    def inf_at_the_8th(grad):
        calls.append(1)
        return grad * float("inf") if len(calls) == 8 else grad

    next(run.model.parameters()).register_hook(inf_at_the_8th)
    with pytest.warns(UserWarning, match="the train loss or the weights are not finite"):
        res = run.fit(progress=False)
    assert res["diverged"] == {"epoch": 1, "step": 3} and res["best_epoch"] == 0 and res["epochs_run"] == 1
    assert all(torch.isfinite(p).all() for p in run.model.parameters()) and np.isfinite(res["test"]["loss"])


class _NaNInEval(torch.nn.Module):
    """Wraps a model: it trains normally, but its outputs in eval mode (val, test) are NaN."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, w):
        out = self.net(w)
        return out if self.training else out * float("nan")


def test_an_epoch_whose_val_loss_is_not_finite_is_never_the_best(tmp_path, capsys):
    """NaN outputs score 0% accuracy, a finite number, but such an epoch is no model to keep: a run
    with no epoch of finite val loss is an error (it used to keep epoch 0 and write best.pt)."""
    from dataclasses import replace

    from inrforge.train import prepare_training

    s = learnable_store(tmp_path / "s.zarr")
    run = prepare_training(s, model="mlp", config=TrainConfig(epochs=2, batch_size=32))
    run = replace(run, model=_NaNInEval(run.model))
    with pytest.raises(InrforgeError, match="training diverged: the val loss was not finite in any of the 2 epoch"):
        run.fit(log_dir=tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "best.pt").exists() and not (tmp_path / "nan" / "result.json").exists()
    # the audit's case: lr 1e30 makes val outputs NaN in epoch 0 (exit 0, a warning), then the train loss
    for epochs in ("1", "2"):
        out = tmp_path / f"huge{epochs}"
        assert main(["train", s.path, "--model", "mlp", "--epochs", epochs, "--lr", "1e30", "--warmup-epochs", "0",
                     "--quiet", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("inrforge train: error: training diverged") and err.count("\n") == 1, err
        assert not (out / "best.pt").exists() and not (out / "result.json").exists()


def test_patience_without_a_val_split_is_refused(tmp_path, capsys):
    from inrforge.train import fit_model, prepare_training

    no_val = learnable_store(tmp_path / "n.zarr", val=False)
    with pytest.raises(InrforgeError, match="--patience stops on the val score, but .*n.zarr has no val INRs"):
        prepare_training(no_val, model="mlp", config=TrainConfig(patience=2))
    run = prepare_training(no_val, model="mlp", config=TrainConfig(epochs=1))
    with pytest.raises(InrforgeError, match="--patience"):
        fit_model(run.model, run.train, run.val, run.test, TrainConfig(patience=2), "classification", progress=False)
    never = tmp_path / "never"
    assert main(["train", no_val.path, "--model", "mlp", "--patience", "3", "--quiet", "--out", str(never)]) == 1
    err = capsys.readouterr().err
    assert "--patience" in err and err.count("\n") == 1 and not never.exists()  # used to train, ignoring it


def test_train_out_never_replaces_a_file_silently_and_overwrite_starts_clean(tmp_path, capsys, monkeypatch):
    import inrforge.train

    s = learnable_store(tmp_path / "s.zarr")
    argv = ["train", s.path, "--epochs", "1", "--model", "mlp", "--quiet", "--out"]
    own = tmp_path / "own"
    own.mkdir()
    for name in ("best.pt", "metrics.csv", "metrics.jsonl", "run.json"):  # not only result.json: each file train writes
        (own / name).write_text("the user's own")
        assert main(argv + [str(own)]) == 1
        err = capsys.readouterr().err
        assert f"already holds {name}" in err and "--overwrite" in err and err.count("\n") == 1
        assert (own / name).read_text() == "the user's own"
        (own / name).unlink()

    run = tmp_path / "run"
    assert main(argv + [str(run)]) == 0
    (run / "notes.txt").write_text("keep")

    def interrupted(*args, log_dir=None, **kwargs):
        (log_dir / "metrics.jsonl").write_text('{"epoch": 0}\n')  # a new run's partial log
        raise KeyboardInterrupt

    monkeypatch.setattr(inrforge.train, "fit_model", interrupted)
    assert main(argv + [str(run), "--overwrite"]) == 130
    assert capsys.readouterr().err == "inrforge train: interrupted (add --resume to the same command to continue)\n"
    # the earlier run's result.json and best.pt went at the start: never beside the new partial metrics
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "notes.txt"]


def test_an_interrupted_run_leaves_logs_that_say_what_they_are(tmp_path, capsys, monkeypatch):
    """run.json is written before the first epoch: a run stopped by Ctrl-C (no result.json) still
    says what its metrics are the metrics of (store, model, config, threads, versions)."""
    import inrforge.train

    s = learnable_store(tmp_path / "s.zarr")
    real = inrforge.train._train_epoch

    def stop_in_epoch_1(*args):
        if args[-1] == 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(inrforge.train, "_train_epoch", stop_in_epoch_1)
    run = tmp_path / "run"
    argv = ["train", s.path, "--epochs", "3", "--model", "mlp", "--seed", "7", "--threads", "1", "--quiet",
            "--out", str(run)]
    assert main(argv) == 130
    assert capsys.readouterr().err == "inrforge train: interrupted (add --resume to the same command to continue)\n"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "run.json"]
    meta = json.loads((run / "run.json").read_text())
    assert (meta["store"], meta["model"], meta["config"]["seed"], meta["config"]["epochs"], meta["threads"]) == \
        (s.path, "mlp", 7, 3, 1)
    assert meta["versions"]["torch"] == torch.__version__
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0]
    monkeypatch.setattr(inrforge.train, "_train_epoch", real)
    assert main(argv + ["--overwrite"]) == 0  # a finished run: result.json repeats run.json's record
    result = json.loads((run / "result.json").read_text())
    assert {k: result[k] for k in meta} == json.loads((run / "run.json").read_text())


def test_train_out_may_be_a_file_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = learnable_store(tmp_path / "s.zarr")
    assert main(["train", s.path, "--epochs", "1", "--model", "mlp", "--quiet", "--out",
                 f"file://{tmp_path}/url%20run"]) == 0
    assert (tmp_path / "url run" / "result.json").exists() and not (tmp_path / "file:").exists()


def test_evaluate_counts_non_finite_outputs_as_wrong(tmp_path):
    from inrforge.data import WeightDataset
    from inrforge.train import evaluate

    s = learnable_store(tmp_path / "s.zarr")
    class NaNModel(torch.nn.Module):
        def forward(self, w):
            return torch.full((len(w), 2), float("nan"))

    ds = WeightDataset(s, "test", normalize=None)
    res = evaluate(NaNModel(), ds.loader(batch_size=8), "classification", "cpu")
    assert res["acc"] == 0.0 and res["n"] == 20  # not the share of class 0, which argmax of NaN would give


def test_bad_train_config_is_refused(tmp_path):
    from inrforge.train import fit_model, prepare_training

    for kw, words in (({"grad_clip": -1.0}, "grad_clip"), ({"grad_clip": float("nan")}, "grad_clip"),
                      ({"patience": 0}, "patience"), ({"seed": -1}, "seed"), ({"weight_decay": -1.0}, "weight decay"),
                      ({"warmup_epochs": float("nan")}, "warm-up"), ({"epochs": 2.5}, "epochs"),
                      ({"device": "gpu"}, "unknown device"),
                      ({"lr": 1e38}, r"--lr must be a positive number up to 1e\+30 \(the optimizer's float32"),
                      ({"lr": 0.0}, r"--lr must be a positive number, got 0"), ({"lr": True}, "--lr must be"),
                      ({"num_workers": 100_000}, r"--workers is 100000, more than this machine's \d+ cores can run")):
        with pytest.raises(InrforgeError, match=words):
            TrainConfig(**kw)
    s = learnable_store(tmp_path / "s.zarr")
    run = prepare_training(s, model="mlp", config=TrainConfig(epochs=1, batch_size=32))
    with pytest.raises(InrforgeError, match="unknown task 'classif'"):
        fit_model(run.model, run.train, run.val, run.test, run.config, "classif", progress=False)
    undone = learnable_store(tmp_path / "u.zarr")
    undone.root["done"][...] = False
    from inrforge.data import WeightDataset
    empty = WeightDataset(undone, "train", normalize=None)
    with pytest.raises(InrforgeError, match="no INRs to train on"):
        fit_model(run.model, empty, None, None, run.config, "classification", progress=False)


def test_a_model_too_large_for_memory_is_one_line(monkeypatch):
    """What torch's CPU allocator raises (a RuntimeError) for ``--hidden 100000`` becomes a one-line
    error naming the model's size; other RuntimeErrors stay bugs."""
    import inrforge.models as models
    from inrforge.models import build_model

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 80000000000000 bytes.")

    monkeypatch.setattr(models, "DWSNet", no_memory)
    with pytest.raises(InrforgeError, match="^a DWSNet of 100000 channels and 4 layers does not fit in this machine's "
                                            "memory \\(.*DefaultCPUAllocator: can't allocate memory"):
        build_model("dwsnet", make_arch(), 10, hidden=100_000)
    monkeypatch.setattr(models, "DWSNet", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        build_model("dwsnet", make_arch(), 10)


def test_a_dwsnet_whose_training_steps_cannot_fit_is_refused_before_it_is_built(tmp_path, monkeypatch, capsys):
    """``--depth 10000`` built 770M parameters, then the kernel killed the first step without a word:
    the activations' lower bound (batch x entries x channels x layers floats) is checked first."""
    import inrforge.memory
    import inrforge.models as models
    from inrforge.models import require_training_memory

    s = learnable_store(tmp_path / "s.zarr")
    built = []
    monkeypatch.setattr(models, "DWSNet", lambda *a, **k: built.append(1) or pytest.fail("built before refusing"))
    assert main(["train", str(s.path), "--depth", "10000", "--batch-size", "512"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(
        r"^inrforge train: error: training a DWSNet of 10000 layers x 32 channels on batches of 512 keeps at least "
        rf"{4 * 512 * s.arch.param_count * 32 * 10000 / 2**30:,.1f} GiB of activations, more than this machine has "
        r"free \([\d.,]+ (GiB|MiB)\); use a smaller batch size, depth or hidden width$", err), err
    assert built == []
    # the bound is exact arithmetic: a step that needs one float more than is free is refused, not one that fits
    from inrforge.train import prepare_training

    for kw, words in (({"hidden": "abc"}, "DWSNet hidden must be a positive integer, got 'abc'"),
                      ({"depth": float("nan")}, "DWSNet depth must be a positive integer, got nan"),
                      ({"batch_size": 8}, "batch_size in model_kwargs: training settings go in the TrainConfig"),
                      ({"device": "cpu"}, "device in model_kwargs: training settings go in the TrainConfig")):
        with pytest.raises(InrforgeError, match=f"^{re.escape(words)}$"):
            prepare_training(s, model_kwargs=kw)
    need = 4 * 64 * s.arch.param_count * 16 * 3
    monkeypatch.setattr(inrforge.memory, "available_bytes", lambda: need)
    require_training_memory(s.arch, 16, 3, 64)
    monkeypatch.setattr(inrforge.memory, "available_bytes", lambda: need - 1)
    with pytest.raises(InrforgeError, match="on batches of 64 keeps at least"):
        require_training_memory(s.arch, 16, 3, 64)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_refused_before_training(tmp_path):
    from inrforge.train import prepare_training

    s = learnable_store(tmp_path / "s.zarr")
    with pytest.raises(InrforgeError, match="device 'cuda' requested but CUDA is not available here"):
        prepare_training(s, model="mlp", config=TrainConfig(device="cuda"))


def test_objects_without_a_usable_inr_are_left_out_with_a_warning(tmp_path):
    """A half-fitted store trains on its finished part, and says so in one warning line."""
    from inrforge.fit import FitSettings
    from inrforge.fitjob import fit_inrs, fit_shard, prepare_fit
    from inrforge.sources import load_source
    from inrforge.store import open_store
    from inrforge.train import prepare_training

    out = str(tmp_path / "half.zarr")
    source = load_source("digits", limit=40)
    job = dict(steps=3, compile=False, shard_objects=20, chunk_objects=4, progress=False)
    prepare_fit(source, out, **{k: v for k, v in job.items() if k != "progress"})
    store = open_store(out, mode="r+")
    store.write_shard(fit_shard(store.arch, source, 0, 20, 1, 0, FitSettings(steps=3, compile=False)))
    store = open_store(out)
    assert store.done().sum() == 20
    with pytest.warns(UserWarning) as record:
        run = prepare_training(out, model="mlp", config=TrainConfig(epochs=1, batch_size=8))
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    train_ids = store.split("train")
    left = int((train_ids >= 20).sum())
    assert f"{left} of {len(train_ids)} train" in messages[0] and "left out" in messages[0]
    assert len(run.train) == len(train_ids) - left
    fit_inrs(source, out, **job)  # finished: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_training(out, model="mlp", config=TrainConfig(epochs=1, batch_size=8))


def test_a_pipeline_fit_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    import io
    import sys

    from inrforge.sources import load_source
    from inrforge.experiments import open_or_fit

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    src = load_source("digits", limit=8)
    open_or_fit(None, source=src, out=tmp_path / "quiet.zarr", steps=2, echo=None)
    assert capsys.readouterr().err == ""  # not a terminal (a log file, CI): no bar
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    open_or_fit(None, source=src, out=tmp_path / "shown.zarr", steps=2, echo=None)
    assert "fit: 100%" in term.getvalue() and "8/8" in term.getvalue()  # used to be hidden even here


def test_training_arguments_are_checked_before_any_data_is_read(tmp_path, monkeypatch):
    import dataclasses

    from inrforge import data as idata
    from inrforge.train import prepare_training

    s = learnable_store(tmp_path / "s.zarr")
    monkeypatch.setattr(idata.WeightDataset, "__init__", lambda *a, **k: pytest.fail("read data before refusing"))
    for kw, words in ((dict(model="mlp", model_kwargs={"hidden": 8, "norm": "batch"}),
                       "model option(s) hidden, norm are DWSNet's; the flat MLP takes dropout and mlp_hidden"),
                      (dict(model_kwargs={"bogus": 1}), "unknown DWSNet option(s) bogus"),
                      (dict(model_kwargs={"out_features": 3}), "unknown DWSNet option(s) out_features (the arch and"),
                      (dict(model_kwargs={"mlp_hidden": (8,)}), "mlp_hidden is the flat MLP's option"),
                      (dict(model_kwargs=[1]), "model_kwargs must be a dict of model options, got [1]"),
                      (dict(model="bogus"), "unknown model 'bogus'"),
                      (dict(augment="perm"), "augment must be a list of augmentation names"),
                      (dict(config={"epochs": 2}), "config must be a TrainConfig, got dict")):
        with pytest.raises(InrforgeError) as e:
            prepare_training(s, **kw)
        assert str(e.value).startswith(words), str(e.value)
    with pytest.raises(InrforgeError, match=r"^--seed must be below 2\*\*63"):
        TrainConfig(seed=2**63)
    with pytest.raises(dataclasses.FrozenInstanceError):  # checked once, so it cannot change after
        TrainConfig().epochs = -1


def test_a_log_dir_gets_this_runs_logs_only(tmp_path):
    s = learnable_store(tmp_path / "s.zarr")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "result.json").write_text("an earlier run's")
    (logs / "notes.txt").write_text("the user's")
    cfg = TrainConfig(epochs=1, batch_size=64)
    train_on_store(s, model="mlp", config=cfg, log_dir=f"file://{logs}", progress=False)  # a file:// URL is its path
    assert json.loads((logs / "result.json").read_text())["epochs_run"] == 1
    assert (logs / "notes.txt").read_text() == "the user's" and not (tmp_path / "file:").exists()
    with pytest.raises(InrforgeError, match="lies inside the Zarr store"):
        train_on_store(s, model="mlp", config=cfg, log_dir=f"{s.path}/logs", progress=False)
    (tmp_path / "afile").write_text("")
    with pytest.raises(InrforgeError, match="cannot write the logs to"):
        train_on_store(s, model="mlp", config=cfg, log_dir=tmp_path / "afile", progress=False)
    with pytest.raises(InrforgeError, match="is a Zarr store; write the logs to a folder of their own"):
        train_on_store(s, model="mlp", config=cfg, log_dir=s.path, progress=False)


def test_align_with_entry_normalisation_uses_the_aligned_train_statistics(tmp_path):
    """Per-entry statistics of the stored INRs are not those of their aligned forms: with
    ``align`` every split is normalised by the aligned train split's (symmetric ones are kept)."""
    from inrforge.data import normalization_stats
    from inrforge.train import prepare_training

    s = learnable_store(tmp_path / "s.zarr")
    cfg = TrainConfig(epochs=1, batch_size=64)
    run = prepare_training(s, model="mlp", align=True, normalize="entry", config=cfg)
    mean, std = run.train.canonical_stats("entry")
    assert all(torch.equal(d.mean, mean) and torch.equal(d.std, std) for d in (run.train, run.val, run.test))
    assert not torch.allclose(mean, normalization_stats(s, "entry")[0], atol=1e-4)
    plain = prepare_training(s, model="mlp", normalize="entry", config=cfg)
    assert torch.equal(plain.val.mean, normalization_stats(s, "entry")[0])
    sym = prepare_training(s, model="mlp", align=True, config=cfg)
    assert torch.equal(sym.test.mean, normalization_stats(s, "symmetric")[0])


def test_reading_the_loss_every_few_steps_trains_the_same_bits(tmp_path, monkeypatch):
    """A GPU reads the train loss every 32 steps rather than every step: the same run, epoch by
    epoch (losses, lrs, val scores) and weights."""
    from inrforge.train import loss_check_interval, prepare_training

    assert loss_check_interval("cpu") == 1 and loss_check_interval("cuda:0") == 32
    s = learnable_store(tmp_path / "s.zarr")
    results, weights = [], []
    for every in (1, 3):
        monkeypatch.setattr("inrforge.train.loss_check_interval", lambda device, every=every: every)
        run = prepare_training(s, model="mlp", config=TrainConfig(epochs=3, batch_size=16))  # 8 batches per epoch
        res = run.fit(progress=False)
        results.append([{k: v for k, v in row.items() if k != "time_s"} for row in res["history"]] + [res["test"]])
        weights.append(torch.cat([p.detach().flatten() for p in run.model.parameters()]))
    assert results[0] == results[1] and torch.equal(*weights)
