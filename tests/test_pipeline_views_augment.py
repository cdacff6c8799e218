"""Smoke test of pipelines/views_augment_sweep.py at --small (2-3 minutes on 1 thread).

The small setting: 900 digits x 10 views (150 fit steps), splits 607 / 68 / 225, 20 epochs,
2 training seeds, view counts 1 and 10, every augmentation at 1 view.  Runs are seeded and
single-threaded, so the figures below are reproducible on one machine.
"""

import json

import pytest

from inrforge.errors import InrforgeError
from test_pipelines_small import _load


def test_views_augment_small(tmp_path, one_thread):
    mod = _load("views_augment_sweep")
    assert mod.main(["--small", "--threads", "1", "--out", str(tmp_path)]) == 0
    png = (tmp_path / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    doc = json.loads((tmp_path / "results.json").read_text())
    s, views, aug = doc["setting"], doc["views"], doc["augment"]
    assert s["view_counts"] == [1, 10] and s["views_fitted"] == 10 and s["aug_views"] == 1
    assert list(s["augmentations"]) == list(mod.AUGMENTATIONS)
    assert s["splits"] == {"train": 607, "val": 68, "test": 225}
    assert set(views) == set(aug) == {"dwsnet", "mlp"}
    for m in ("dwsnet", "mlp"):
        assert list(views[m]) == ["1", "10"]
        assert list(aug[m]) == list(mod.AUGMENTATIONS)
        assert aug[m]["none"] == views[m]["1"]  # the same runs, shared between the sweeps
        for cell in [*views[m].values(), *aug[m].values()]:
            assert len(cell["test_acc"]) == s["seeds"] == 2
            assert all(0.0 <= x <= 1.0 for x in cell["test_acc"])
            assert cell["mean"] == pytest.approx(sum(cell["test_acc"]) / len(cell["test_acc"]))
    for k in ("1", "10"):
        assert (tmp_path / "views" / "dwsnet" / f"k{k}" / "seed1" / "metrics.csv").exists()
    assert (tmp_path / "augment" / "mlp" / "mixup-align" / "seed0" / "result.json").exists()

    # The headline directions, with margins well inside what was measured.  Mean test accuracy
    # over the 2 training seeds, for data seeds (--seed) 0 / 1 / 2:
    #   DWSNet, 1 view  : 28.2 / 29.1 / 29.1 %
    #   DWSNet, 10 views: 30.9 / 32.2 / 34.2 %   (+2.7 / +3.1 / +5.1 points)
    #   mean over all 9 cells, DWSNet / flat MLP: 26.3 / 27.5 / 28.7 % vs 10.9 / 9.0 / 10.3 % (chance 10 %)
    # (At full digits size, 40 epochs, the views effect is +22 points: docs/results_pipelines.md.)
    dws = views["dwsnet"]
    assert dws["10"]["mean"] > dws["1"]["mean"] + 0.01  # neural views help (Shamsian et al.)
    cells = {m: [c["mean"] for c in [*views[m].values(), *aug[m].values()]] for m in ("dwsnet", "mlp")}
    dws_avg, mlp_avg = (sum(v) / len(v) for v in (cells["dwsnet"], cells["mlp"]))
    assert dws_avg > mlp_avg + 0.10  # the invariant model learns; the flat MLP on raw weights hardly

    # a view count beyond the store's views is a one-line user error, before any training
    with pytest.raises(InrforgeError, match="view counts"):
        mod.main(["--store", str(tmp_path / "inrs.zarr"), "--view-counts", "1,11", "--out", str(tmp_path / "bad")])
