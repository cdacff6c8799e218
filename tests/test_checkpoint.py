"""inrforge.checkpoint and ``inrforge train --resume``: an interrupted training run, continued from
its last checkpoint, ends exactly as the uninterrupted run does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import inrforge.run_folder as run_folder
import inrforge.train as train_module
from inrforge.checkpoint import CHECKPOINT_FILE
from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.run_folder import LOG_FILES
from inrforge.train import TrainConfig, prepare_training
from test_train import SMALL_DWS, learnable_store


def rows(folder):
    """metrics.jsonl without the wall-clock times."""
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def same_state(a, b) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_then_resume_ends_as_the_uninterrupted_run(tmp_path, capsys):
    """A real `inrforge train` (DWSNet with dropout, permutation and MixUp: every random draw a run
    makes) killed with SIGKILL after some epochs, resumed, equals an uninterrupted run bit for bit."""
    store = learnable_store(tmp_path / "s.zarr")
    args = [sys.executable, "-m", "inrforge", "train", store.path, "--hidden", "8", "--depth", "2", "--dropout", "0.1",
            "--augment", "perm,mixup", "--epochs", "8", "--batch-size", "32", "--lr", "3e-3", "--threads", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, out = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(args + ["--out", str(ref)], check=True, env=env, capture_output=True)
    assert not (ref / CHECKPOINT_FILE).exists()  # a finished run deletes it

    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, epoch = time.time() + 120, -1
    while time.time() < deadline and proc.poll() is None:
        try:
            epoch = torch.load(out / CHECKPOINT_FILE, weights_only=True)["epoch"]
        except (OSError, RuntimeError, EOFError, KeyError):
            pass
        if epoch >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= epoch < 7 and not (out / "result.json").exists(), "the kill must land mid-run"
    epoch = torch.load(out / CHECKPOINT_FILE, weights_only=True)["epoch"]  # the last one written

    res = subprocess.run(args + ["--out", str(out), "--resume"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert rows(out) == rows(ref) and len(rows(out)) == 8  # every epoch's losses and scores, to the last bit
    assert same_state(out / "best.pt", ref / "best.pt")
    done, want = (json.loads((d / "result.json").read_text()) for d in (out, ref))
    assert done["test"] == want["test"] and done["val"] == want["val"] and done["best_epoch"] == want["best_epoch"]
    assert [r["epoch"] for r in done["resumed"]] == [epoch + 1] and "resumed" not in want
    assert not (out / CHECKPOINT_FILE).exists()

    # resuming a finished run trains nothing and says so (in process: the same record needs one thread)
    n = torch.get_num_threads()
    try:
        assert main(args[3:] + ["--out", str(out), "--resume"]) == 0
    finally:
        torch.set_num_threads(n)
    assert "holds this run, finished; nothing to train" in capsys.readouterr().out
    assert same_state(out / "best.pt", ref / "best.pt")
    assert json.loads((out / "result.json").read_text()) == done


class Stop(Exception):
    pass


def interrupted(tmp_path, store, monkeypatch, folder, at_epoch=None, before_results=False, **config):
    """A run of prepare_training stopped by an exception: at the start of epoch ``at_epoch``, or
    after its last epoch but before its results are written."""
    real_epoch = train_module._train_epoch

    def epoch_or_stop(*args):
        if args[-1] == at_epoch:
            raise Stop
        return real_epoch(*args)

    def stop(*args):
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(train_module, "_train_epoch", epoch_or_stop)
        if before_results:
            m.setattr(run_folder, "finish", stop)
        with pytest.raises(Stop):
            prepare_training(store, model="mlp", config=TrainConfig(**config)).fit(log_dir=folder, checkpoint=True)


def test_a_resume_must_be_the_same_run(tmp_path, monkeypatch):
    s = learnable_store(tmp_path / "s.zarr")
    run = tmp_path / "run"
    interrupted(tmp_path, s, monkeypatch, run, at_epoch=2, epochs=4, batch_size=32, lr=3e-3)
    assert torch.load(run / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1 and len(rows(run)) == 2
    other = TrainConfig(epochs=4, batch_size=32, lr=1e-3)
    with pytest.raises(InrforgeError, match=r"checkpoint.pt is another run's \(config.lr: was 0.003, now 0.001\)"):
        prepare_training(s, model="mlp", config=other).fit(log_dir=run, resume=True)
    with pytest.raises(InrforgeError, match="another run's .*model: was 'mlp', now 'dwsnet'"):
        prepare_training(s, model="dwsnet", model_kwargs=SMALL_DWS, config=TrainConfig(epochs=4, batch_size=32,
                                                                                       lr=3e-3)).fit(log_dir=run, resume=True)
    # another thread count is allowed, warned about and recorded
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(n + 1)
        with pytest.warns(UserWarning, match="resuming with other threads"):
            res = prepare_training(s, model="mlp", config=TrainConfig(epochs=4, batch_size=32, lr=3e-3)).fit(
                log_dir=run, resume=True, checkpoint=True)
    finally:
        torch.set_num_threads(n)
    assert res["resumed"] == [{"epoch": 2, "threads": n + 1, "versions": res["versions"]}]
    assert len(rows(run)) == 4 and res["threads"] == n  # the run's own record keeps what it began with
    # a finished run of the same record is reused, not trained again; of another, refused
    saved = json.loads((run / "result.json").read_text())
    (run / "notes.txt").write_text("mine")
    for f in ("notes.txt", "result.json"):
        os.utime(run / f, (1e9, 1e9))
    again = prepare_training(s, model="mlp", config=TrainConfig(epochs=4, batch_size=32, lr=3e-3)).fit(
        log_dir=run, resume=True)
    assert again["reused"] and again["test"] == saved["test"] and len(again["history"]) == 4
    assert json.loads((run / "result.json").read_text()) == saved
    # the run's files are this run's results now (a pipeline's clean-up keeps them); nothing else is touched
    assert (run / "result.json").stat().st_mtime > 1e9 and (run / "notes.txt").stat().st_mtime == 1e9
    with pytest.raises(InrforgeError, match=r"result.json is another run's \(config.epochs: was 4, now 5\)"):
        prepare_training(s, model="mlp", config=TrainConfig(epochs=5, batch_size=32, lr=3e-3)).fit(log_dir=run,
                                                                                                  resume=True)


def test_resume_before_the_first_checkpoint_starts_afresh_and_after_an_early_stop_trains_no_more(tmp_path, monkeypatch):
    s = learnable_store(tmp_path / "s.zarr")
    cfg = dict(epochs=3, batch_size=32, lr=3e-3)
    plain = prepare_training(s, model="mlp", config=TrainConfig(**cfg)).fit(log_dir=tmp_path / "plain")
    interrupted(tmp_path, s, monkeypatch, tmp_path / "early", at_epoch=0, **cfg)
    assert not (tmp_path / "early" / CHECKPOINT_FILE).exists() and (tmp_path / "early" / "run.json").exists()
    res = prepare_training(s, model="mlp", config=TrainConfig(**cfg)).fit(log_dir=tmp_path / "early", resume=True)
    assert "resumed" not in res and res["test"] == plain["test"]
    assert rows(tmp_path / "early") == rows(tmp_path / "plain")
    # run.json of another run and no checkpoint: refused, not started over it
    interrupted(tmp_path, s, monkeypatch, tmp_path / "other", at_epoch=0, **cfg)
    with pytest.raises(InrforgeError, match=r"run.json is another run's \(config.epochs: was 3, now 5\)"):
        prepare_training(s, model="mlp", config=TrainConfig(**{**cfg, "epochs": 5})).fit(log_dir=tmp_path / "other",
                                                                                        resume=True)
    # stopped by patience at its last checkpoint, then interrupted before its results: no more epochs
    stop = dict(epochs=30, batch_size=32, lr=1e-7, patience=1)
    full = prepare_training(s, model="mlp", config=TrainConfig(**stop)).fit(log_dir=tmp_path / "full")
    assert full["epochs_run"] < 30
    interrupted(tmp_path, s, monkeypatch, tmp_path / "late", before_results=True, **stop)
    res = prepare_training(s, model="mlp", config=TrainConfig(**stop)).fit(log_dir=tmp_path / "late", resume=True)
    assert res["epochs_run"] == full["epochs_run"] and rows(tmp_path / "late") == rows(tmp_path / "full")
    assert same_state(tmp_path / "late" / "best.pt", tmp_path / "full" / "best.pt")


def test_cli_resume_errors_are_one_line(tmp_path, capsys):
    s = learnable_store(tmp_path / "s.zarr")
    base = ["train", s.path, "--model", "mlp", "--epochs", "1", "--quiet"]
    with pytest.raises(SystemExit) as e:
        main(base + ["--resume"])
    assert e.value.code == 2 and "--resume continues the run in --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(base + ["--resume", "--out", str(tmp_path / "r"), "--overwrite"])
    assert e.value.code == 2
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / CHECKPOINT_FILE).write_bytes(b"damaged")
    capsys.readouterr()
    assert main(base + ["--resume", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint.pt is damaged" in err and err.count("\n") == 1
    assert CHECKPOINT_FILE in LOG_FILES  # --overwrite deletes it; without either option, a folder holding one is refused
    assert main(base + ["--out", str(tmp_path / "r")]) == 1
    assert "already holds checkpoint.pt" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "r"), "--overwrite"]) == 0
    assert not (tmp_path / "r" / CHECKPOINT_FILE).exists() and (tmp_path / "r" / "result.json").exists()
    capsys.readouterr()  # --resume where no run was begun: said, then trained from the start
    assert main(base + ["--resume", "--out", str(tmp_path / "new")]) == 0
    assert capsys.readouterr().err == f"{tmp_path / 'new'} holds no run to resume: starting it\n"
    assert (tmp_path / "new" / "result.json").exists()


def test_another_kind_of_run_is_named_first():
    """Resuming into a folder of another kind of run (an encoder's, task embedding) names the kind
    first, before the settings that then differ too."""
    from inrforge.checkpoint import check_same_run

    saved = {"task": "embedding", "model": "dwsnet", "align": None, "augment": None}
    run = {"task": "classification", "model": "mlp", "align": False, "augment": []}
    with pytest.raises(InrforgeError, match=r"^r/result.json is another run's \(model: was 'dwsnet', now 'mlp'; task: "
                                            r"was 'embedding', now 'classification'; align: was None, now False; \.\.\.\)"):
        check_same_run(saved, run, "r/result.json")
