"""Smoke test of pipelines/domain_adaptation.py at --small (3 seeds, ~20 s of CPU on one thread).

Only the headline direction is asserted, with margins well inside what was measured (see
docs/results_pipelines.md, "Weight->weight domain adaptation").
"""

import json

import torch
from test_pipelines_small import _load


def test_domain_adaptation_small(tmp_path):
    n = torch.get_num_threads()
    try:
        assert _load("domain_adaptation").main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(n)
    assert (tmp_path / "results.png").stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    setting, res = doc["setting"], doc["results"]
    assert setting["seeds"] == 3 and setting["zoo_splits"]["test"] == 30
    assert setting["source_acc_mean"] > 85  # the zoo is made of working classifiers (measured 91.1)
    # measured target accuracy of the unseen test classifiers, seeds 0 / 1 / 2:
    #   no adaptation 50.2 / 51.3 / 52.9, flat-MLP mapper 55.7 / 55.2 / 56.5, DWSNet mapper 69.4 / 64.9 / 68.1
    #   (DWSNet - none: +19.1 / +13.7 / +15.2; DWSNet - MLP: +13.7 / +9.8 / +11.6)
    for r in doc["per_seed"]:
        none, mlp, dws = (100 * r[m]["acc"] for m in ("none", "mlp", "dwsnet"))
        assert dws > none + 8
        assert dws > mlp + 5
    assert res["none"]["mean"] < setting["source_acc_mean"] - 25  # the corruption really shifts the domain
