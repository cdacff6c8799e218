import json

import numpy as np
import pytest
import torch

from inrforge.cli import main
from inrforge.errors import InrforgeError
from inrforge.interop import export_dws, import_dws
from inrforge.store import open_store


def write_dws_dataset(root, n=7, widths=(2, 8, 8, 1), with_json=True, seed=0):
    """A small dataset in the DWSNets form: one state dict per INR and a splits JSON."""
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    states, labels = [], []
    split_of = ["train"] * (n - 3) + ["val", "test", "test"]
    spec = {s: {"path": [], "label": []} for s in ("train", "val", "test")}
    for k in range(n):
        state = {}
        for i in range(len(widths) - 1):
            state[f"seq.{i}.weight"] = torch.randn(widths[i + 1], widths[i], generator=g)
            state[f"seq.{i}.bias"] = torch.randn(widths[i + 1], generator=g)
        label = k % 3
        folder = root / split_of[k] / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        if not with_json:
            state["label"] = torch.tensor(label)
        torch.save(state, folder / f"inr{k}.pth")
        spec[split_of[k]]["path"].append(f"{split_of[k]}/{label}/inr{k}.pth")
        spec[split_of[k]]["label"].append(label)
        states.append(state)
        labels.append(label)
    if with_json:
        (root / "splits.json").write_text(json.dumps(spec))
    return states, labels, spec


def flat(state, n_layers=3):
    return torch.cat([state[f"seq.{i}.{t}"].reshape(-1) for i in range(n_layers) for t in ("weight", "bias")])


def test_import_keeps_weights_labels_and_splits(tmp_path):
    states, labels, spec = write_dws_dataset(tmp_path / "dws")
    store = import_dws(tmp_path / "dws", tmp_path / "s.zarr")
    assert store.arch.widths == (2, 8, 8, 1) and store.arch.output_offset == 0.5
    order = [p for s in ("train", "val", "test") for p in spec[s]["path"]]
    k_of = {p: int(p.split("inr")[1][:-4]) for p in order}
    for i, p in enumerate(order):
        np.testing.assert_array_equal(store.read_flat([i])[0], flat(states[k_of[p]]).numpy())
    assert store.labels.tolist() == [labels[k_of[p]] for p in order]
    assert store.split("val").tolist() == [4] and store.split("test").tolist() == [5, 6]
    w, _ = store.read([0])
    assert torch.equal(w.weights[1][0], states[k_of[order[0]]]["seq.1.weight"])


def test_export_then_import_round_trips(tmp_path):
    write_dws_dataset(tmp_path / "dws")
    a = import_dws(tmp_path / "dws", tmp_path / "a.zarr")
    splits_file = export_dws(a, tmp_path / "exported")
    spec = json.loads(splits_file.read_text())
    assert len(spec["train"]["path"]) == 4 and spec["arch"]["widths"] == [2, 8, 8, 1]
    state = torch.load(tmp_path / "exported" / spec["test"]["path"][0], weights_only=True)
    assert set(state) == {f"seq.{i}.{t}" for i in range(3) for t in ("weight", "bias")} | {"label"}
    b = import_dws(tmp_path / "exported", tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.read_flat(slice(None), None), b.read_flat(slice(None), None))
    np.testing.assert_array_equal(a.labels, b.labels)
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s), b.split(s))
    with pytest.raises(InrforgeError, match="not empty"):
        export_dws(a, tmp_path / "exported")


def test_labels_from_state_dicts_and_splits_from_paths(tmp_path):
    _, labels, _ = write_dws_dataset(tmp_path / "dws", with_json=False)
    s = import_dws(tmp_path / "dws", tmp_path / "s.zarr")
    assert len(s) == 7 and sorted(s.labels.tolist()) == sorted(labels)
    assert len(s.split("test")) == 2 and len(s.split("val")) == 1


def test_import_errors(tmp_path):
    with pytest.raises(InrforgeError, match="no folder"):
        import_dws(tmp_path / "nothing", tmp_path / "s.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InrforgeError, match="no .pth"):
        import_dws(tmp_path / "empty", tmp_path / "s.zarr")
    write_dws_dataset(tmp_path / "mixed", n=4, with_json=False)
    torch.save({"seq.0.weight": torch.zeros(4, 2), "seq.0.bias": torch.zeros(4), "label": 1},
               tmp_path / "mixed" / "train" / "zz.pth")
    with pytest.raises(InrforgeError, match="differ"):
        import_dws(tmp_path / "mixed", tmp_path / "s.zarr")
    write_dws_dataset(tmp_path / "nolabel", n=4, with_json=False)
    torch.save({"seq.0.weight": torch.zeros(8, 2)}, tmp_path / "nolabel" / "broken.pth")
    with pytest.raises(InrforgeError, match="bias"):
        import_dws(tmp_path / "nolabel", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_cli_import_export_render(tmp_path, capsys):
    write_dws_dataset(tmp_path / "dws")
    out = str(tmp_path / "s.zarr")
    assert main(["import-dws", str(tmp_path / "dws"), "--out", out, "--image-size", "6x6"]) == 0
    assert main(["import-dws", str(tmp_path / "dws"), "--out", out]) == 1
    assert "already holds a store" in capsys.readouterr().err
    assert main(["render", out, "--out", str(tmp_path / "r.png"), "--n", "2"]) == 0
    assert (tmp_path / "r.png").exists()
    assert main(["export-dws", out, str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "splits.json").exists()
    assert open_store(out).info()["psnr_median"] != open_store(out).info()["psnr_median"]  # NaN: unknown
    capsys.readouterr()
    assert main(["info", out]) == 0
    assert "PSNR (dB)    none recorded" in capsys.readouterr().out
    # A view the store lacks is refused before the folder is created.
    assert main(["export-dws", out, str(tmp_path / "exp2"), "--view", "1"]) == 1
    assert "view 1 out of range: the store has 1 view (0 to 0)" in capsys.readouterr().err
    assert not (tmp_path / "exp2").exists()
