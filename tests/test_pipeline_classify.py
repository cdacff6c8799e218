"""Smoke test of pipelines/classify_inrs.py (DWSNets Table 1 in small) at --small (~25 s on 1 thread).

At --small (400 digits, 40 test objects, 8 epochs, 1 seed) one object is 2.5 points and the
ranking of the four models changes from run to run, so no direction is asserted; the full-size
numbers are in docs/results.md.
"""

import json

from test_pipelines_small import _load


def test_classify_inrs_small_then_retrain_on_its_store(tmp_path, one_thread):
    mod = _load("classify_inrs")
    out = tmp_path / "first"
    assert mod.main(["--small", "--threads", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())
    setting, res = doc["setting"], doc["results"]
    assert setting["objects"] == 400 and setting["views"] == 2 and setting["epochs"] == 8
    assert list(res) == ["dwsnet", "mlp", "mlp+perm", "mlp+align"]
    for name, r in res.items():
        assert len(r["test_acc"]) == 1 and 0 <= r["mean"] <= 1 and r["params"] > 1000
        assert (out / name / "seed0" / "metrics.jsonl").exists()
    assert (out / "results.png").stat().st_size > 0

    # The README's workflow: train again on the INRs the first run fitted, into a new folder.
    again = tmp_path / "again"
    assert mod.main(["--store", str(out / "inrs.zarr"), "--models", "mlp", "--epochs", "1", "--threads", "1",
                     "--out", str(again)]) == 0
    doc2 = json.loads((again / "results.json").read_text())
    assert list(doc2["results"]) == ["mlp"] and doc2["setting"]["store"] == str(out / "inrs.zarr")
    assert not (again / "inrs.zarr").exists()
