"""The plumbing shared by the CLI and the pipelines: one-line argument errors, results folders."""

import argparse
import json
import os
import time

import pytest

from inrforge.errors import RESUMES, InrforgeError
from inrforge.script import (PIPELINE_RESUMES, ArgumentParser, add_results_arguments, fraction,
                             int_at_least, layer_widths, names_from, nonnegative_float, nonnegative_int,
                             parse_with_small, positive_float, positive_int, positive_ints, probability, psnr_or_none,
                             refuse_unused, report_errors, results_dir, run_script, write_results)


def test_argument_errors_are_one_line_with_status_2(capsys):
    p = ArgumentParser(prog="tool")
    p.add_argument("--n", type=int, required=True)
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("go").add_argument("--k", type=int)
    for argv, msg in ((["--n", "x"], "invalid int value"), (["--n", "1", "go", "--k", "y"], "tool go: error")):
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and err.count("\n") == 1 and "--help" in err, err


def test_results_dir_never_replaces_earlier_results(tmp_path):
    out = tmp_path / "run" / "deep"
    assert results_dir(out) == out and out.is_dir()  # created, parents too
    (out / "inrs.zarr").mkdir()
    assert results_dir(out) == out  # fitted INRs alone are reused, not refused
    (out / "results.json").write_text("earlier")
    with pytest.raises(InrforgeError, match="earlier run's results"):
        results_dir(out)
    assert results_dir(out, overwrite=True) == out
    assert not (out / "results.json").exists()  # gone before the run: never beside a new run's partial logs
    assert (out / "inrs.zarr").is_dir()  # the rest stays
    (tmp_path / "file").write_text("x")
    with pytest.raises(InrforgeError, match="is a file"):
        results_dir(tmp_path / "file", overwrite=True)


def test_results_dir_refuses_any_file_the_run_would_write_and_overwrite_deletes_only_those(tmp_path):
    from inrforge.run_folder import LOG_FILES as TRAIN_FILES

    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_text("the user's own")  # used to be replaced silently: only result.json was checked
    (out / "notes.txt").write_text("keep")
    (out / "seed0").mkdir()
    (out / "seed0" / "result.json").write_text("a subfolder's")
    with pytest.raises(InrforgeError, match=r"--out .*run already holds best.pt .*--overwrite"):
        results_dir(out, files=TRAIN_FILES)
    assert (out / "best.pt").read_text() == "the user's own"
    (out / "metrics.jsonl").write_text("{}\n")
    assert results_dir(out, overwrite=True, files=TRAIN_FILES) == out
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "seed0"]
    assert (out / "seed0" / "result.json").read_text() == "a subfolder's"
    (out / "result.json").mkdir()  # a folder by that name is never deleted
    with pytest.raises(InrforgeError, match="is a folder; --overwrite replaces only the files a run writes"):
        results_dir(out, overwrite=True, files=TRAIN_FILES)
    assert (out / "result.json").is_dir()


def test_output_paths_accept_file_urls_and_refuse_other_urls(tmp_path, monkeypatch):
    from inrforge.files import output_path

    monkeypatch.chdir(tmp_path)
    assert output_path(f"file://{tmp_path}/a%20b.png") == f"{tmp_path}/a b.png"
    assert output_path("plain/x.png") == "plain/x.png"
    assert results_dir(f"file://{tmp_path}/run") == tmp_path / "run" and (tmp_path / "run").is_dir()
    for url in ("s3://bucket/run", "file://elsewhere/run"):
        with pytest.raises(InrforgeError, match="URL|another host"):
            results_dir(url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no folder "file:" or "s3:"


def test_results_dir_refuses_a_folder_it_cannot_make_or_inside_a_store(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InrforgeError, match="cannot create --out .*file/run: .*Not a directory"):
        results_dir(tmp_path / "file" / "run")  # used to be a raw NotADirectoryError
    store = tmp_path / "s.zarr"
    (store / "params").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    for inside in (store / "run", store / "params" / "run"):  # used to write results into the store
        with pytest.raises(InrforgeError, match=f"--out {inside} lies inside the Zarr store {store}"):
            results_dir(inside)
        assert not inside.exists()


def test_write_results_keeps_only_the_logs_of_this_run(tmp_path):
    out = tmp_path / "run"
    old, new = time.time() - 100, time.time() - 50

    def folder(rel, files, mtime):
        d = out / rel
        d.mkdir(parents=True, exist_ok=True)
        for name in files:
            (d / name).write_text("x")
            os.utime(d / name, (mtime, mtime))
        return d

    logs = ("metrics.jsonl", "metrics.csv", "best.pt", "result.json")
    stale = [folder("mlp/seed0", logs, old), folder("mlp/seed1", logs, old), folder("ssl/mlp", ["history.json"], old)]
    kept = folder("dwsnet/seed0", logs, time.time())  # rewritten by this run
    store = folder("inrs.zarr", ["zarr.json"], old)
    folder("inrs.zarr/metrics", ["result.json"], old)  # inside a store: never touched
    mixed = folder("notes", ["result.json", "notes.txt"], old)  # a file that is not a log: kept
    folder("views/mlp/k1/seed0", logs, old)
    recent = folder("views/mlp/k2/seed0", logs, time.time())
    # outside the pipeline's own log folders: a user's folder, another run kept inside --out
    others = [folder("experiment1", ["metrics.csv", "result.json"], old), folder("run1/mlp/seed0", logs, old)]
    (out / "results.json").write_text("earlier")
    os.utime(out / "results.json", (old, old))

    write_results(out, {"acc": 0.5}, started=new, log_roots=("mlp", "dwsnet", "ssl", "notes", "views", "inrs.zarr"))
    assert json.loads((out / "results.json").read_text()) == {"acc": 0.5}
    assert not any(d.exists() for d in stale) and not (out / "mlp").exists() and not (out / "ssl").exists()
    assert sorted(p.name for p in others[0].iterdir()) == ["metrics.csv", "result.json"]
    assert sorted(p.name for p in others[1].iterdir()) == sorted(logs)
    assert not (out / "views" / "mlp" / "k1").exists() and recent.is_dir()  # empty parents go, up to a kept one
    assert sorted(p.name for p in kept.iterdir()) == sorted(logs)
    assert (store / "zarr.json").exists() and (store / "metrics" / "result.json").exists()
    assert sorted(p.name for p in mixed.iterdir()) == ["notes.txt", "result.json"]


def test_report_errors_prints_one_line(capsys):
    def bad():
        raise InrforgeError("no such thing")

    assert report_errors("tool", bad) == 1
    assert capsys.readouterr().err == "tool: error: no such thing\n"
    assert report_errors("tool", lambda: 0) == 0


def test_ctrl_c_claims_a_resume_only_where_the_caller_says_so(capsys):
    def stopped():
        raise KeyboardInterrupt

    assert report_errors("tool", stopped) == 130
    assert capsys.readouterr().err == "tool: interrupted\n"  # used to say a re-run resumes, for every command
    assert report_errors("tool", stopped, resumes=RESUMES) == 130
    assert capsys.readouterr().err == "tool: interrupted (re-run the same command to resume)\n"
    with pytest.raises(SystemExit) as e:  # a pipeline: its fit resumes, and its finished training runs with --resume
        run_script("pipe.py", stopped)
    assert e.value.code == 130
    assert capsys.readouterr().err == f"pipe.py: interrupted ({PIPELINE_RESUMES})\n"
    assert "plus --resume" in PIPELINE_RESUMES


def test_add_results_arguments_declares_out_and_overwrite():
    p = ArgumentParser(prog="tool")
    add_results_arguments(p, "runs/x")
    a = p.parse_args([])
    assert (a.out, a.overwrite) == ("runs/x", False)
    a = p.parse_args(["--out", "elsewhere", "--overwrite"])
    assert (a.out, a.overwrite) == ("elsewhere", True)


@pytest.mark.parametrize("kind, accepted, refused", [
    (positive_int, {"1": 1, "70000": 70000}, ["0", "-2", "1.5", "x", ""]),
    (nonnegative_int, {"0": 0, "3": 3}, ["-1", "0.5"]),
    (positive_float, {"5e-4": 5e-4, "30": 30.0}, ["0", "-1e-3", "nan", "inf", "x"]),
    (nonnegative_float, {"0": 0.0, "0.1": 0.1}, ["-0.1", "nan", "inf"]),
    (fraction, {"0.1": 0.1, "0.999": 0.999}, ["0", "1", "-0.5", "nan"]),
    (probability, {"0": 0.0, "1": 1.0, "0.05": 0.05}, ["1.5", "-0.1", "nan"]),
    (psnr_or_none, {"40": 40.0, "none": None, "OFF": None}, ["high", "nan"]),
    (positive_ints, {"10,1,2,5,2": (1, 2, 5, 10), "7": (7,), " 3, 4 ,": (3, 4)}, ["0,1", "1,x", ",", "-1", ""]),
    (int_at_least(2), {"2": 2, "128": 128}, ["1", "0", "-3", "2.5", "x"]),
    (layer_widths, {"512,512": (512, 512), "64,8,32": (64, 8, 32), " 16 ,": (16,)}, ["", ",", "abc", "8,0", "8,-1"]),
    (names_from(("dwsnet", "mlp", "mlp+perm")),
     {"mlp,dwsnet": ("mlp", "dwsnet"), " mlp , mlp,": ("mlp",), "mlp+perm": ("mlp+perm",)}, ["", ",", "cnn", "mlp,cnn"]),
])
def test_argument_types_accept_valid_and_refuse_impossible_values(kind, accepted, refused):
    for text, value in accepted.items():
        assert kind(text) == value
    p = ArgumentParser(prog="tool")
    p.add_argument("--v", type=kind)
    for text in refused:
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected .*got {text!r}"):
            kind(text)
        with pytest.raises(SystemExit):
            p.parse_args([f"--v={text}"])


def test_names_from_lists_the_choices_and_the_unknown_names():
    with pytest.raises(argparse.ArgumentTypeError) as e:
        names_from(("dwsnet", "mlp"), "encoders")("mlp,cnn,rnn")
    assert str(e.value) == "expected a comma list of encoders from dwsnet, mlp, got 'mlp,cnn,rnn' (unknown: cnn, rnn)"


def test_parse_with_small_changes_only_the_defaults():
    def parser():
        p = ArgumentParser(prog="tool")
        p.add_argument("--steps", type=positive_int, default=1000)
        p.add_argument("--sizes", type=positive_ints, default="100,1000")
        p.add_argument("--small", action="store_true")
        return p

    small = {"steps": 10, "sizes": (5, 50)}
    a = parse_with_small(parser(), [], small)
    assert (a.steps, a.sizes) == (1000, (100, 1000))  # the string default goes through the type
    a = parse_with_small(parser(), ["--small"], small)
    assert (a.steps, a.sizes) == (10, (5, 50))
    a = parse_with_small(parser(), ["--small", "--steps", "2000", "--sizes", "7"], small)
    assert (a.steps, a.sizes) == (2000, (7,))  # given explicitly: kept, larger or not


def test_refuse_unused_refuses_options_given_with_the_one_that_makes_them_meaningless(capsys):
    def parse(argv):
        p = ArgumentParser(prog="tool")
        p.add_argument("--store")
        p.add_argument("--fit-steps", type=positive_int, default=1000)
        p.add_argument("--lr", type=positive_float, default=1e-3)
        a = p.parse_args(argv)
        refuse_unused(p, argv, a, "--store", ("--fit-steps",), "the INRs are the store's")
        return a

    assert parse(["--fit-steps", "5"]).fit_steps == 5  # without --store it is used
    assert parse(["--store", "s.zarr", "--lr", "0.1"]).lr == 0.1  # an option the store does not make moot
    for argv in (["--store", "s.zarr", "--fit-steps", "1000"],  # even at its default value: it was given
                 ["--fit-steps=5", "--store", "s.zarr"], ["--store", "s.zarr", "--fit-s", "5"]):  # = and prefixes too
        with pytest.raises(SystemExit) as e:
            parse(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1, err
        assert "tool: error: argument --fit-steps: not used with --store (the INRs are the store's)" in err


def test_given_options_sees_appending_options():
    """An option that appends (--source-opt KEY=VALUE, repeatable) used to crash the check of which
    options were given (argparse appended to the marker object)."""
    from inrforge.script import given_options

    p = ArgumentParser(prog="tool")
    p.add_argument("--source-opt", action="append", default=[])
    p.add_argument("--tag", action="append_const", const="x", default=[])
    p.add_argument("--lr", type=positive_float, default=1e-3)
    assert given_options(p, []) == set()
    assert given_options(p, ["--source-opt", "a=1", "--source-opt=b=2"]) == {"source_opt"}
    assert given_options(p, ["--tag", "--lr", "0.1"]) == {"tag", "lr"}


def test_a_closed_pipe_ends_the_output_quietly(tmp_path):
    """``inrforge info STORE | head -1``: the reader goes away; no traceback, status 141."""
    import subprocess
    import sys

    import numpy as np

    from inrforge.arch import make_arch
    from inrforge.store import create_store

    create_store(tmp_path / "s.zarr", arch=make_arch(), n_objects=2, views=1, labels=np.zeros(2, np.int64),
                 splits={"train": [0, 1]}, source={"name": "t"}, fit={})
    p = subprocess.Popen([sys.executable, "-m", "inrforge", "info", str(tmp_path / "s.zarr")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before it writes anything
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""


def test_help_states_each_default_worth_stating():
    p = ArgumentParser(prog="tool")
    p.add_argument("--seed", type=int, default=0)  # no help text: the default is still shown
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--hidden", type=int, default=32, help="width (default 32)")  # says it already
    p.add_argument("--opt", action="append", default=[], help="repeatable")
    p.add_argument("--limit", type=int, help="first N")
    p.add_argument("--quiet", action="store_true", help="no bar")
    p.add_argument_group("cluster").add_argument("--walltime", default="02:00:00")  # in a group, no help
    text = " ".join(p.format_help().split())
    assert "--walltime WALLTIME (default: 02:00:00)" in text
    assert "--seed SEED (default: 0)" in text and "learning rate (default: 0.001)" in text
    assert "(default 32) (default" not in text
    for silent in ("repeatable", "first N", "no bar"):
        assert f"{silent} (default" not in text, silent


def test_warnings_are_one_line_too(capsys):
    import warnings

    def main():
        warnings.warn("ground truth unavailable: the source changed")
        return 0

    assert report_errors("tool", main) == 0
    assert capsys.readouterr().err == "tool: warning: ground truth unavailable: the source changed\n"


def test_psnr_fields_are_strict_json():
    """An imported store records no PSNR: results.json says null, which strict JSON readers accept."""
    import json

    from inrforge.script import psnr_fields

    none = psnr_fields({"psnr_median": float("nan"), "psnr_p5": float("nan"), "objects": 3})
    assert none == {"psnr_median": None, "psnr_p5": None} and json.dumps(none, allow_nan=False)
    assert psnr_fields({"psnr_median": 30.5, "psnr_p5": 25.0}) == {"psnr_median": 30.5, "psnr_p5": 25.0}


def test_threads_are_capped_at_4_per_core_like_workers(tmp_path, capsys, monkeypatch):
    """``--threads`` (train, info --reproduce, the pipelines) is refused above 4 per core, as
    ``--workers`` and ``local:N`` are: ``--threads 3000`` ran, 60 % slower."""
    import torch

    import inrforge.checks
    from inrforge.cli import main
    from inrforge.script import set_threads

    monkeypatch.setattr(inrforge.checks, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    with pytest.raises(InrforgeError, match=r"^--threads is 9, more than this machine's 2 cores can run "
                                            r"\(at most 8, 4 per core\)$"):
        set_threads(9)
    assert torch.get_num_threads() == before
    assert main(["train", str(tmp_path / "s.zarr"), "--threads", "9", "--epochs", "1", "--quiet"]) == 1  # before
    assert capsys.readouterr().err == ("inrforge train: error: --threads is 9, more than this machine's 2 cores "
                                       "can run (at most 8, 4 per core)\n")
    assert set_threads(before) == before and set_threads() == 2
    set_threads(before)


def test_fit_options_carry_every_fit_setting_of_the_command_line():
    """What ``inrforge fit`` and dask_fit.py parse reaches fit_inrs: each setting given on the command
    line comes out under its FitRequest name, and the defaults are FitRequest's."""
    from inrforge.fitjob import FIT_OPTIONS, FitRequest
    from inrforge.script import add_fit_arguments, fit_options
    from inrforge.sources import load_source

    parser = ArgumentParser()
    add_fit_arguments(parser, "store", "files")
    src = load_source("digits", limit=2)
    given = fit_options(parser.parse_args(
        ["--source", "digits", "--out", "x", "--views", "3", "--steps", "7", "--lr", "0.002", "--lr-schedule", "cosine",
         "--first-layer-lr", "4", "--shared-init", "--target-psnr", "none", "--batch-size", "5", "--seed", "9",
         "--no-compile", "--kernel", "inductor", "--shard-size", "6", "--overwrite", "--allow-version-change"]), src)
    assert {k: given[k] for k in ("views", "steps", "lr", "lr_schedule", "first_layer_lr", "shared_init", "target_psnr",
                                  "batch_size", "seed", "compile", "kernel", "shard_objects", "overwrite",
                                  "allow_version_change")} == {
        "views": 3, "steps": 7, "lr": 0.002, "lr_schedule": "cosine", "first_layer_lr": 4.0, "shared_init": True,
        "target_psnr": None, "batch_size": 5, "seed": 9, "compile": False, "kernel": "inductor", "shard_objects": 6,
        "overwrite": True, "allow_version_change": True}
    defaults = fit_options(parser.parse_args(["--source", "digits", "--out", "x"]), src)
    for key in set(defaults) & set(FIT_OPTIONS) - {"arch", "compile", "batch_size", "shard_objects"}:
        assert defaults[key] == getattr(FitRequest, key), key
    assert set(defaults) - {"repair"} <= set(FIT_OPTIONS)


def test_check_failures_warns_for_some_and_refuses_all(capsys):
    from inrforge.script import check_failures

    assert check_failures({"failed": 0, "objects": 4, "views": 2}, "tool") == 0
    assert capsys.readouterr().err == ""
    assert check_failures({"failed": 3, "objects": 4, "views": 2}, "tool") == 0
    err = capsys.readouterr().err
    assert err.startswith("tool: warning: 3 of the 8 INRs failed: their loss became NaN or inf") and err.count("\n") == 1
    with pytest.raises(InrforgeError, match=r"^every INR failed \(their loss became NaN or inf, .* a lower --lr may help "
                                            r"\(with --overwrite, or another --out"):
        check_failures({"failed": 8, "objects": 4, "views": 2}, "tool")
