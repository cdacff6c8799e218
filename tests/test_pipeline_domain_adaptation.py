"""Smoke test of pipelines/domain_adaptation.py at --small (3 seeds, ~20 s of CPU on one thread).

Only the headline direction is asserted, with margins well inside what was measured (see
docs/results_pipelines.md, "Weight->weight domain adaptation").
"""

import json
import os

import pytest
import torch
from test_pipelines_small import _load, covered_by_legends, has_legend

from inrforge.adapt import load_mapper


def test_domain_adaptation_small(tmp_path, capsys):
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

    # Each mapper is a run folder load_mapper reads back
    mapper = load_mapper(tmp_path / "seed0" / "dwsnet")
    assert mapper.spec["mapper"] == "dwsnet" and not mapper.training
    # --resume after an interruption: the finished mappers are reused, the one in flight trained
    # again, and the results are the uninterrupted invocation's (for speed, seed 0 alone: a mapper's
    # run does not depend on how many seeds the invocation has)
    for f in ("result.json", "best.pt"):
        os.remove(tmp_path / "seed0" / "dwsnet" / f)
    os.remove(tmp_path / "results.json")
    capsys.readouterr()
    try:
        assert _load("domain_adaptation").main(["--small", "--seeds", "1", "--threads", "1", "--out", str(tmp_path),
                                                "--resume"]) == 0
    finally:
        torch.set_num_threads(n)
    printed = capsys.readouterr().out
    assert printed.count(", reused)") == 1 and "seed 0 mlp   : target acc" in printed
    again = json.loads((tmp_path / "results.json").read_text())["per_seed"][0]
    want = doc["per_seed"][0]
    assert {m: {k: v for k, v in r.items() if k != "train_time_s"} for m, r in again.items()} == \
        {m: {k: v for k, v in r.items() if k != "train_time_s"} for m, r in want.items()}
    assert again["mlp"]["train_time_s"] == want["mlp"]["train_time_s"]  # reused, not trained again


@pytest.mark.parametrize("seeds", [1, 3])
def test_domain_adaptation_table_and_figure(seeds):
    """The legend of the source-domain line used to sit on the bars (lower right); panel (b) had no
    title; the setting (classifiers, target images, epochs) was in neither the title nor the table."""
    mod = _load("domain_adaptation")
    a = mod.parse_args(["--small", "--seeds", str(seeds)])
    setting = {**vars(a), "methods": ["none", "mlp", "dwsnet", "target_only"], "source_acc_mean": 91.1,
               "source_acc": [91.1] * seeds, "zoo_splits": {"train": 140, "val": 30, "test": 30},
               "n_train_images": 1258, "n_test_images": 539, "params_per_classifier": 2410}
    accs = {"none": 51.5, "mlp": 55.8, "dwsnet": 88.0, "target_only": 89.0}  # tall bars, near the source line
    results = {m: {"acc": [v + k for k in range(seeds)], "mean": v + (seeds - 1) / 2, "std": 0.8 * (seeds > 1)}
               for m, v in accs.items()}
    hist = [{"epoch": e, "val_acc": 0.5 + 0.05 * e} for e in range(8)]
    per_seed = [{m: {"acc": results[m]["acc"][k] / 100, **({"history": hist} if m in mod.MAPPERS else {})}
                 for m in accs} for k in range(seeds)]
    doc = json.loads(json.dumps({"setting": setting, "results": results, "per_seed": per_seed, "paper": mod.PAPER}))
    table = mod.format_table(doc)
    caption = table.strip().splitlines()[0]
    for fact in ("539 held-out target images", "200 classifiers", "100 labelled target images", "8 mapper epochs",
                 f"{seeds} seed(s)"):
        assert fact in caption, (fact, caption)
    assert ("±" in table) == (seeds > 1) and "| DWSNet mapper | " in table and "71.36" in table
    fig = mod.make_figure(doc)
    try:
        assert "200 classifiers" in fig.get_suptitle() and "8 mapper epochs" in fig.get_suptitle()
        ax, bx = fig.axes
        assert ax.get_ylabel() and bx.get_xlabel() and bx.get_ylabel() and bx.get_title()
        assert has_legend(fig) and covered_by_legends(fig) == []
    finally:
        fig.clf()


def test_the_reference_row_reads_well_with_all_target_images():
    """``--target-images 0`` (all) used to print "trained on the all target images only"."""
    mod = _load("domain_adaptation")
    assert mod._labels({"target_images": 100})["target_only"] == "(reference) trained on the 100 target images only"
    assert mod._labels({"target_images": 0})["target_only"] == "(reference) trained on all the target images only"
