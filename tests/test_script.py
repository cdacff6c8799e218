"""The plumbing shared by the CLI and the pipelines: one-line argument errors, results folders."""

import argparse

import pytest

from inrforge.errors import InrforgeError
from inrforge.script import (ArgumentParser, add_results_arguments, fraction, nonnegative_float, nonnegative_int,
                             positive_float, positive_int, positive_ints, probability, psnr_or_none, report_errors,
                             results_dir)


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
    assert (out / "results.json").read_text() == "earlier"  # the caller replaces it, not this check
    (tmp_path / "file").write_text("x")
    with pytest.raises(InrforgeError, match="is a file"):
        results_dir(tmp_path / "file", overwrite=True)


def test_report_errors_prints_one_line(capsys):
    def bad():
        raise InrforgeError("no such thing")

    assert report_errors("tool", bad) == 1
    assert capsys.readouterr().err == "tool: error: no such thing\n"
    assert report_errors("tool", lambda: 0) == 0


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
