import json
import os
import re

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
    """The inrforge flat vector of a DWSNets state dict: its first weight's two input columns swap
    (DWSNets feeds (x=column, y=row), inrforge (row, column))."""
    tensors = [state[f"seq.{i}.{t}"] for i in range(n_layers) for t in ("weight", "bias")]
    tensors[0] = tensors[0][:, [1, 0]]
    return torch.cat([t.reshape(-1) for t in tensors])


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
    assert torch.equal(w.weights[0][0], states[k_of[order[0]]]["seq.0.weight"][:, [1, 0]])
    # the folder and the splits file as file:// URLs: the same store
    again = import_dws((tmp_path / "dws").as_uri(), tmp_path / "u.zarr",
                       splits_file=(tmp_path / "dws" / "splits.json").as_uri())
    np.testing.assert_array_equal(again.read_flat(np.arange(len(store))), store.read_flat(np.arange(len(store))))
    assert again.split("test").tolist() == [5, 6]


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
    with pytest.raises(InrforgeError, match="not empty; choose an empty folder or pass --overwrite to replace this "
                                            "earlier export$"):
        export_dws(a, tmp_path / "exported")
    (tmp_path / "exported" / "train" / "0000000.pth").unlink()
    export_dws(a, tmp_path / "exported", overwrite=True)  # an earlier export is replaced whole
    assert (tmp_path / "exported" / "train" / "0000000.pth").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InrforgeError, match="overwrite replaces only an earlier export-dws folder"):
        export_dws(a, tmp_path / "other", overwrite=True)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]


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


# ----- helpers for the tests below ---------------------------------------------------------------

def make_store(path, arch, n=6, labels=None, grid=None, seed=0):
    """A finished one-view store with random (tame) parameters, without fitting anything."""
    from inrforge.store import ShardData, create_store

    params = (0.3 * torch.randn(n, 1, arch.param_count, generator=torch.Generator().manual_seed(seed))).numpy()
    labels = np.arange(n) % 3 if labels is None else np.asarray(labels)
    source = {"name": "test", "params": {}, "n_objects": n, "target_scaling": "none", "grid": grid,
              "label_names": None, "label_shape": list(labels.shape[1:])}
    store = create_store(path, arch=arch, n_objects=n, views=1, labels=labels, source=source, fit={},
                         splits={"train": np.arange(n - 2), "val": [n - 2], "test": [n - 1]}, shard_objects=n)
    nan = np.full((n, 1), np.nan, np.float32)
    store.write_shard(ShardData(0, params, nan, nan, np.zeros((n, 1), np.int32), np.zeros((n, 1), bool)))
    return store


def dws_image(state, size, w0=30.0, offset=0.5):
    """What DWSNets draws for a state dict: its make_coordinates (np.meshgrid, default 'xy'
    indexing, so the first input is the column) and ``out.view(size, size)``."""
    lin = np.linspace(-1, 1, size)
    x, y = np.meshgrid(lin, lin)
    h = torch.from_numpy(np.stack([x.ravel(), y.ravel()], 1)).float()
    n = len([k for k in state if k.endswith(".weight")])
    for i in range(n):
        h = h @ state[f"seq.{i}.weight"].T + state[f"seq.{i}.bias"]
        h = torch.sin(w0 * h) if i < n - 1 else h
    return (h + offset).view(size, size)


def inrforge_images(store, size):
    from inrforge.inr import image_grid, render

    w, _ = store.read(slice(None))
    with torch.no_grad():
        return render(w, image_grid(size, size))[..., 0].reshape(len(store), size, size)


def write_splits(root, labels, paths=None):
    paths = paths or [f"train/inr{k}.pth" for k in range(len(labels))]
    (root / "splits.json").write_text(json.dumps({"train": {"path": paths, "label": labels}}))


def cli_error(capsys, argv):
    """Run the CLI; assert exit 1 with exactly one stderr line and no traceback; return it."""
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ----- labels ---------------------------------------------------------------------------------

def test_dwsnets_string_labels_become_class_ids(tmp_path):
    write_dws_dataset(tmp_path / "dws", n=4, with_json=False)  # files under train/, val/, test/
    root = tmp_path / "dws"
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pth"))
    write_splits(root, ["2", "7", " 1", "0"], paths)  # what DWSNets' generate_data_splits.py writes
    s = import_dws(root, tmp_path / "a.zarr")
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [2, 7, 1, 0]
    write_splits(root, [2.0, 7, "3", 1.0], paths)  # integral floats too
    s = import_dws(root, tmp_path / "b.zarr")
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [2, 7, 3, 1]
    write_splits(root, [0.5, 7, "2.25", 1], paths)  # a non-integer: regression
    s = import_dws(root, tmp_path / "c.zarr")
    assert s.labels.dtype == np.float32 and s.labels.tolist() == [0.5, 7, 2.25, 1]
    write_splits(root, [1, 2, "cat", 0], paths)
    with pytest.raises(InrforgeError, match=r"splits.json \(train entry 2\): label 'cat' is not a number"):
        import_dws(root, tmp_path / "d.zarr")
    assert not (tmp_path / "d.zarr").exists()


def test_exported_float_labels_stay_regression(tmp_path):
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=4, depth=1), n=4,
                   labels=np.array([1.0, 2.0, 3.0, 4.0], np.float32))  # integral, but regression
    export_dws(a, tmp_path / "ex")
    assert json.loads((tmp_path / "ex" / "splits.json").read_text())["label_dtype"] == "float32"
    b = import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    assert b.labels.dtype == np.float32 and b.labels.tolist() == a.labels.tolist()


def test_export_dws_takes_a_file_url_as_its_local_folder(tmp_path, monkeypatch):
    from inrforge.arch import make_arch

    monkeypatch.chdir(tmp_path)
    a = make_store(tmp_path / "a.zarr", make_arch(hidden=4, depth=1), n=2)
    export_dws(a, f"file://{tmp_path}/ex%20port")
    assert (tmp_path / "ex port" / "splits.json").is_file() and not (tmp_path / "file:").exists()
    with pytest.raises(InrforgeError, match=r"^the export folder s3://b/x: only a store may be a URL"):
        export_dws(a, "s3://b/x")
    monkeypatch.chdir(tmp_path / "ex port")  # --overwrite would rename the folder this process is in
    for here in (".", str(tmp_path / "ex port")):
        with pytest.raises(InrforgeError, match="is the current folder; give a folder beside or below it"):
            export_dws(a, here, overwrite=True)
    assert (tmp_path / "ex port" / "splits.json").is_file()
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")  # an empty current folder is filled where it is, not replaced
    export_dws(a, ".")
    assert (tmp_path / "empty" / "splits.json").is_file()


def test_data_beside_the_network_is_ignored_parts_of_a_network_are_refused(tmp_path):
    """DWSNets' SSL sine INRs carry coef / x / y beside their layers: imported. A layer-like key
    the MLP would not read (a nested layer, an input encoding) is refused, never dropped."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("a", "b"):
        torch.save({**_layer_state(), "coef": torch.tensor([1.0, 2.0]), "x": torch.zeros(10), "y": torch.zeros(10)},
                   d / f"{name}.pth")
    assert len(import_dws(d, tmp_path / "s.zarr")) == 2
    torch.save({**_layer_state(), "enc.weight": torch.zeros(3, 2)}, d / "b.pth")
    with pytest.raises(InrforgeError, match=r"b.pth: unexpected entry enc.weight"):
        import_dws(d, tmp_path / "t.zarr")


# ----- coordinates ----------------------------------------------------------------------------

def test_the_one_coordinate_swap_exchanges_the_inputs_and_undoes_itself():
    """Import and export share one swap (_swap_xy): W0's two input columns exchange, nothing else
    changes, twice is the identity bit for bit, and it is the change of variables f'(u, v) = f(v, u)."""
    from inrforge.arch import make_arch
    from inrforge.inr import image_grid, render
    from inrforge.interop.coordinates import _dws_fourier_matrix, _swap_xy
    from inrforge.weights import Weights

    arch = make_arch("siren-dwsnets", hidden=8, depth=2)
    w = Weights.from_flat(0.3 * torch.randn(3, arch.param_count, generator=torch.Generator().manual_seed(0)), arch)
    s = _swap_xy(w)
    assert torch.equal(s.weights[0], w.weights[0][:, :, [1, 0]])
    first = arch.layout[0]
    changed = (s.flatten() != w.flatten()).any(0).nonzero().flatten()
    assert first.offset <= int(changed.min()) and int(changed.max()) < first.offset + first.size  # only W0
    assert torch.equal(_swap_xy(s).flatten(), w.flatten())
    xy = image_grid(5, 4)
    torch.testing.assert_close(render(s, xy[:, [1, 0]]), render(w, xy))
    for other in (make_arch("siren-dwsnets", in_features=1), make_arch("relu-fourier", fourier_features=4)):
        with pytest.raises(ValueError):  # 1-D inputs have nothing to swap; Fourier archs swap their matrix
            _swap_xy(Weights.from_flat(torch.zeros(1, other.param_count), other))
    fourier = make_arch("relu-fourier", fourier_features=4)
    np.testing.assert_array_equal(_dws_fourier_matrix(fourier), fourier.fourier.matrix().numpy()[:, [1, 0]])


def test_imported_dwsnets_inrs_render_upright(tmp_path):
    states, _, spec = write_dws_dataset(tmp_path / "dws", n=4, widths=(2, 8, 8, 1))
    paths = [p for sp in ("train", "val", "test") for p in spec[sp]["path"]]  # the store's order
    for k, p in enumerate(paths):
        states[k] = {key: 0.05 * v for key, v in torch.load(tmp_path / "dws" / p, weights_only=True).items()}  # smooth images
        torch.save(states[k], tmp_path / "dws" / p)
    s = import_dws(tmp_path / "dws", tmp_path / "s.zarr", image_size=(9, 9))
    ours = inrforge_images(s, 9)
    for i in range(len(paths)):
        theirs = dws_image(states[i], 9)
        assert not torch.allclose(theirs, theirs.T, atol=1e-3)  # not symmetric: the test can tell
        torch.testing.assert_close(ours[i], theirs, atol=1e-4, rtol=1e-4)  # same picture, upright


def test_exported_inrs_render_upright_in_dwsnets_and_round_trip(tmp_path):
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4,
                   grid={"kind": "image", "height": 7, "width": 7, "channels": 1})
    export_dws(a, tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "splits.json").read_text())
    ours = inrforge_images(a, 7)
    for i, rel in enumerate(spec["train"]["path"]):
        theirs = dws_image(torch.load(tmp_path / "ex" / rel, weights_only=True), 7)
        assert not torch.allclose(ours[i], ours[i].T, atol=1e-3)
        torch.testing.assert_close(theirs, ours[i], atol=1e-4, rtol=1e-4)
    b = import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.read_flat(slice(None), None), b.read_flat(slice(None), None))
    assert b.source["grid"] == a.source["grid"]  # recorded: render works without --image-size


# ----- the recorded arch ------------------------------------------------------------------------

@pytest.mark.parametrize("preset,kw,grid", [
    ("siren", {"w0": 12.5}, {"kind": "image", "height": 5, "width": 4, "channels": 1}),
    ("relu", {}, None),
    ("relu-fourier", {"fourier_features": 4}, {"kind": "image", "height": 5, "width": 5, "channels": 1}),
    ("siren-dwsnets", {"in_features": 1, "w0": 7.0}, {"kind": "interval", "lo": -3.0, "hi": 3.0, "n_points": 9,
                                                      "endpoint": False}),
])
def test_export_import_keeps_the_arch(tmp_path, preset, kw, grid):
    from inrforge.arch import make_arch
    from inrforge.figures import reconstructions

    arch = make_arch(preset, hidden=8, depth=2, **kw)
    a = make_store(tmp_path / "a.zarr", arch, n=4, grid=grid)
    export_dws(a, tmp_path / "ex")
    b = import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    assert b.arch == arch
    np.testing.assert_array_equal(a.read_flat(slice(None), None), b.read_flat(slice(None), None))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.labels.dtype == a.labels.dtype
    if grid is not None:
        np.testing.assert_array_equal(reconstructions(a, [0, 1])[0], reconstructions(b, [0, 1])[0])


def test_recorded_arch_against_arch_options(tmp_path, capsys):
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch("siren", hidden=8, w0=12.5), n=4)
    export_dws(a, tmp_path / "ex")
    with pytest.raises(InrforgeError, match="records w0=12.5; it contradicts --w0 30"):
        import_dws(tmp_path / "ex", tmp_path / "b.zarr", w0=30.0)
    with pytest.raises(InrforgeError, match="contradicts --arch siren-dwsnets"):
        import_dws(tmp_path / "ex", tmp_path / "b.zarr", preset="siren-dwsnets")
    assert import_dws(tmp_path / "ex", tmp_path / "b.zarr", preset="siren", w0=12.5).arch == a.arch
    err = cli_error(capsys, ["import-dws", str(tmp_path / "ex"), "--out", str(tmp_path / "c.zarr"), "--arch", "relu"])
    assert "contradicts --arch relu" in err and not (tmp_path / "c.zarr").exists()
    assert main(["import-dws", str(tmp_path / "ex"), "--out", str(tmp_path / "c.zarr"), "--arch", "siren",
                 "--w0", "12.5"]) == 0
    with pytest.raises(SystemExit) as stop:  # accepted and recorded in a ReLU arch before
        main(["import-dws", str(tmp_path / "ex"), "--out", str(tmp_path / "d.zarr"), "--arch", "relu", "--w0", "5"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert "argument --w0: SIREN option; --arch relu does not use it" in err and not (tmp_path / "d.zarr").exists()
    # an export of ReLU INRs (with Fourier features) names its preset, and has no w0 to give
    rf = make_store(tmp_path / "rf.zarr", make_arch("relu-fourier", hidden=8, fourier_features=4), n=4)
    export_dws(rf, tmp_path / "exrf")
    with pytest.raises(InrforgeError, match=r"records a relu-fourier arch, which has no w0: leave --w0 out$"):
        import_dws(tmp_path / "exrf", tmp_path / "e.zarr", w0=5.0)
    with pytest.raises(InrforgeError, match=r"records a relu-fourier arch \(relu, output offset 0.0, Fourier features\); "
                                            r"it contradicts --arch relu: leave --arch out$"):
        import_dws(tmp_path / "exrf", tmp_path / "e.zarr", preset="relu")
    assert not (tmp_path / "e.zarr").exists()


def test_fourier_archs_need_their_matrix(tmp_path):
    from inrforge.arch import make_arch

    arch = make_arch("relu-fourier", hidden=8, fourier_features=4)
    export_dws(make_store(tmp_path / "a.zarr", arch, n=4), tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "splits.json").read_text())
    np.testing.assert_array_equal(np.array(spec["fourier_matrix"], np.float32)[:, ::-1], arch.fourier.matrix().numpy())
    spec["fourier_matrix"][0][0] += 1.0
    (tmp_path / "ex" / "splits.json").write_text(json.dumps(spec))
    with pytest.raises(InrforgeError, match="'fourier_matrix' is not the matrix"):
        import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    del spec["fourier_matrix"], spec["arch"]  # plain files: the matrix is unknown
    (tmp_path / "ex" / "splits.json").write_text(json.dumps(spec))
    with pytest.raises(InrforgeError, match="relu-fourier INRs need their Fourier matrix"):
        import_dws(tmp_path / "ex", tmp_path / "b.zarr", preset="relu-fourier")
    assert not (tmp_path / "b.zarr").exists()


# ----- malformed input --------------------------------------------------------------------------

def _layer_state(label=1, w0=None):
    return {"seq.0.weight": torch.zeros(4, 2) if w0 is None else w0, "seq.0.bias": torch.zeros(4),
            "seq.1.weight": torch.zeros(1, 4), "seq.1.bias": torch.zeros(1), "label": label}


@pytest.mark.parametrize("case,match", [
    ("toplist", "expected a JSON object"),
    ("strpath", "'path' must be a list of file names"),
    ("catjson", r"\(train entry 0\): label 'cat' is not a number"),
    ("catpth", r"a.pth \('label'\): label 'cat' is not a number"),
    ("mixed", "labels of different shapes: .*a.pth has a number, .*b.pth has a vector of 2"),
    ("w1d", r"layer 0 has weight \(4,\) and bias \(4,\)"),
    ("prefixes", "layers under several prefixes"),
    ("nan", "NaN or infinite"),
    ("twice", "is listed twice"),
    ("imagesize", "--image-size is for INRs of 2-D image coordinates; these take 1 input"),
    ("sparse", r"b.pth: seq.0.weight is a sparse tensor; expected a dense one"),
    ("meta", r"b.pth: seq.1.bias is a tensor on the meta device, which holds no values"),
    ("text", r"cannot read .*b.pth: not a PyTorch file"),
    ("empty", r"cannot read .*b.pth: the file is empty"),
    # tensors the MLP would not read used to be dropped silently (a nested last layer gave 32 outputs)
    ("nested", r"a.pth: unexpected entries seq.2.linear.weight, seq.2.linear.bias; an INR file holds only"),
    ("encoding", r"b.pth: unexpected entry seq.0.b; an INR file holds only seq.\{i\}.weight"),
    ("channels", r"--image-size is for INRs of images, with 1 \(gray\) or 3 \(RGB\) outputs; these have 4"),
])
def test_malformed_input_is_a_one_line_error(tmp_path, capsys, case, match):
    d = tmp_path / "d"
    d.mkdir()
    a, b = _layer_state(), _layer_state()
    argv = ["import-dws", str(d), "--out", str(tmp_path / "s.zarr")]
    if case == "toplist":
        (d / "splits.json").write_text("[1, 2]")
    elif case == "strpath":
        (d / "splits.json").write_text(json.dumps({"train": {"path": "a.pth", "label": 1}}))
    elif case == "catjson":
        (d / "splits.json").write_text(json.dumps({"train": {"path": ["a.pth", "b.pth"], "label": ["cat", "dog"]}}))
    elif case == "catpth":
        a["label"] = "cat"
    elif case == "mixed":
        b["label"] = torch.tensor([1.0, 2.0])
    elif case == "w1d":
        a = {"seq.0.weight": torch.zeros(4), "seq.0.bias": torch.zeros(4), "label": 1}
    elif case == "prefixes":
        a["layers.0.weight"] = torch.zeros(4, 2)
    elif case == "nan":
        b["seq.1.bias"] = torch.tensor([float("nan")])
    elif case == "twice":
        (d / "splits.json").write_text(json.dumps({"train": {"path": ["a.pth"], "label": [1]},
                                                   "test": {"path": ["./a.pth"], "label": [1]}}))
    elif case == "imagesize":
        a = {"seq.0.weight": torch.zeros(4, 1), "seq.0.bias": torch.zeros(4), "label": 1}
        b = dict(a)
        argv += ["--image-size", "8x8"]
    elif case == "nested":
        a["seq.2.linear.weight"], a["seq.2.linear.bias"] = torch.zeros(1, 4), torch.zeros(1)
    elif case == "encoding":
        b["seq.0.b"] = torch.zeros(16, 2)
    elif case == "channels":
        a = {**a, "seq.1.weight": torch.zeros(4, 4), "seq.1.bias": torch.zeros(4)}
        b = dict(a)
        argv += ["--image-size", "8x8"]
    elif case == "sparse":
        b["seq.0.weight"] = b["seq.0.weight"].to_sparse()
    elif case == "meta":
        b["seq.1.bias"] = torch.empty(1, device="meta")
    torch.save(a, d / "a.pth")
    torch.save(b, d / "b.pth")
    if case in ("text", "empty"):
        (d / "b.pth").write_text("hello\n" if case == "text" else "")
    assert re.search(match, cli_error(capsys, argv))
    assert not (tmp_path / "s.zarr").exists()


# ----- destinations ---------------------------------------------------------------------------------

def test_unwritable_destinations_are_one_line_errors(tmp_path, capsys, monkeypatch):
    write_dws_dataset(tmp_path / "dws")
    store = str(tmp_path / "s.zarr")
    import_dws(tmp_path / "dws", store)
    (tmp_path / "afile").write_text("keep me")
    before = sorted(p.name for p in tmp_path.iterdir())
    err = cli_error(capsys, ["export-dws", store, str(tmp_path / "afile")])
    assert "afile is a file; choose an empty folder" in err
    err = cli_error(capsys, ["export-dws", store, str(tmp_path / "afile" / "ex")])
    assert "afile is a file, not a folder" in err
    err = cli_error(capsys, ["import-dws", str(tmp_path / "dws"), "--out", str(tmp_path / "afile" / "i.zarr")])
    assert "afile is a file, not a folder" in err
    assert (tmp_path / "afile").read_text() == "keep me"
    # A write that fails half-way (disk full) leaves nothing: not the folder, nor its staging copy.
    real_save = torch.save
    calls = []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    err = cli_error(capsys, ["export-dws", store, str(tmp_path / "new" / "ex")])
    assert "cannot write an export to" in err and "No space left on device" in err
    (tmp_path / "empty").mkdir()
    calls.clear()
    cli_error(capsys, ["export-dws", store, str(tmp_path / "empty")])
    assert list((tmp_path / "empty").iterdir()) == []  # an empty folder given stays empty
    (tmp_path / "empty").rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_destinations(tmp_path, capsys):
    write_dws_dataset(tmp_path / "dws")
    store = str(tmp_path / "s.zarr")
    import_dws(tmp_path / "dws", store)
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        assert "Permission denied" in cli_error(capsys, ["export-dws", store, str(ro / "ex")])
        assert "Permission denied" in cli_error(capsys, ["import-dws", str(tmp_path / "dws"), "--out", str(ro / "i.zarr")])
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o700)


def test_failed_import_leaves_out_as_it_was(tmp_path, capsys, monkeypatch):
    from inrforge.store import INRStore

    write_dws_dataset(tmp_path / "dws", n=6)
    torch.save({"seq.0.weight": torch.zeros(8)}, tmp_path / "dws" / "test" / "1" / "inr4.pth")  # file 5 of 6
    out = tmp_path / "sub" / "s.zarr"
    with pytest.raises(InrforgeError, match="inr4.pth: layer 0"):
        import_dws(tmp_path / "dws", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dws"]  # no store, no staging, no parent
    write_dws_dataset(tmp_path / "good", n=5, seed=1)
    old = import_dws(tmp_path / "good", out).read_flat(slice(None), None)
    with pytest.raises(InrforgeError, match="inr4.pth"):
        import_dws(tmp_path / "dws", out, overwrite=True)

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(INRStore, "write_shard", full_disk)
    write_dws_dataset(tmp_path / "other", n=4, seed=2)
    err = cli_error(capsys, ["import-dws", str(tmp_path / "other"), "--out", str(out), "--overwrite"])
    assert "No space left on device" in err
    np.testing.assert_array_equal(open_store(out).read_flat(slice(None), None), old)  # the old store survives
    assert sorted(p.name for p in out.parent.iterdir()) == ["s.zarr"]
    monkeypatch.undo()
    assert len(import_dws(tmp_path / "other", out, overwrite=True)) == 4  # a complete import replaces it


def test_a_whole_store_comes_back_with_its_own_object_numbers(tmp_path):
    """Exported per split (train, val, test), re-imported in the store's own order and splits."""
    from inrforge.arch import make_arch
    from inrforge.store import ShardData, create_store

    arch = make_arch(hidden=8, depth=2)
    a = make_store(tmp_path / "a.zarr", arch, n=6)  # splits train 0..3, val 4, test 5: renumber them
    src = create_store(tmp_path / "mixed.zarr", arch=arch, n_objects=6, views=1, labels=np.arange(6), fit={},
                       source=a.source, splits={"train": [0, 2, 5], "val": [3], "test": [1, 4]})
    nan = np.full((6, 1), np.nan, np.float32)
    src.write_shard(ShardData(0, a.read_flat(slice(None), None), nan, nan, np.zeros((6, 1), np.int32),
                              np.zeros((6, 1), bool)))
    export_dws(src, tmp_path / "ex")
    b = import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    np.testing.assert_array_equal(src.read_flat(slice(None), None), b.read_flat(slice(None), None))
    assert b.labels.tolist() == list(range(6))
    assert {s: b.split(s).tolist() for s in ("train", "val", "test")} == {"train": [0, 2, 5], "val": [3], "test": [1, 4]}


def test_an_export_from_before_the_swap_imports_upright(tmp_path):
    """Exports written before the coordinate swap record an arch but no label_dtype, and their
    files are in inrforge's own (row, col) order: import must not swap them."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    export_dws(a, tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "splits.json").read_text())
    for rel in spec["train"]["path"] + spec["val"]["path"] + spec["test"]["path"]:  # undo the swap, as before
        state = torch.load(tmp_path / "ex" / rel, weights_only=True)
        state["seq.0.weight"] = state["seq.0.weight"][:, [1, 0]]
        torch.save(state, tmp_path / "ex" / rel)
    old = {k: spec[k] for k in ("train", "val", "test", "arch")}
    for k in ("train", "val", "test"):
        old[k] = {"path": spec[k]["path"], "label": spec[k]["label"]}
    (tmp_path / "ex" / "splits.json").write_text(json.dumps(old))
    b = import_dws(tmp_path / "ex", tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.read_flat(slice(None), None), b.read_flat(slice(None), None))


def test_failed_inrs_are_not_exported_as_good_ones(tmp_path, capsys):
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    a.root["metrics"]["failed"][1, 0] = True
    export_dws(a, tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "splits.json").read_text())
    assert spec["train"]["index"] == [0] and "0000001.pth" not in str(spec)
    assert main(["export-dws", a.path, str(tmp_path / "ex")]) == 1  # an earlier export: --overwrite replaces it
    assert "not empty" in capsys.readouterr().err
    assert main(["export-dws", a.path, str(tmp_path / "ex"), "--overwrite", "--view", "0"]) == 0


def test_overwrite_never_replaces_a_folder_export_dws_did_not_write(tmp_path, capsys):
    """--overwrite replaces an earlier export only: a hand-made DWSNets folder with a splits.json
    and train/ files of its own, or an export someone added files to, is refused and kept."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    write_dws_dataset(tmp_path / "mine", n=4)  # splits.json + train/val/test folders, no arch recorded
    before = sorted(str(p.relative_to(tmp_path / "mine")) for p in (tmp_path / "mine").rglob("*"))
    err = cli_error(capsys, ["export-dws", a.path, str(tmp_path / "mine"), "--overwrite"])
    assert "not empty" in err and "overwrite replaces only an earlier export-dws folder" in err
    assert sorted(str(p.relative_to(tmp_path / "mine")) for p in (tmp_path / "mine").rglob("*")) == before
    export_dws(a, tmp_path / "ex")
    (tmp_path / "ex" / "train" / "notes.txt").write_text("mine")  # not export-dws's
    err = cli_error(capsys, ["export-dws", a.path, str(tmp_path / "ex"), "--overwrite"])
    assert "overwrite replaces only an earlier export-dws folder" in err
    assert (tmp_path / "ex" / "train" / "notes.txt").read_text() == "mine"
    (tmp_path / "ex" / "train" / "notes.txt").unlink()
    assert main(["export-dws", a.path, str(tmp_path / "ex"), "--overwrite"]) == 0  # a real export: replaced


def test_exporting_no_usable_inr_is_refused_before_writing(tmp_path, capsys):
    """An export with no INR in it would be a folder import-dws refuses: refused, nothing created."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    a.root["metrics"]["failed"][:, 0] = True
    err = cli_error(capsys, ["export-dws", a.path, str(tmp_path / "ex")])
    assert "has no usable INR of view 0 (of 4 objects, 4 failed)" in err
    assert not (tmp_path / "ex").exists()
    a.root["done"][:2] = False
    assert "(of 4 objects, 2 not fitted and 2 failed)" in cli_error(capsys, ["export-dws", a.path, str(tmp_path / "ex")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_export_says_how_many_inrs_it_wrote_and_left_out(tmp_path, capsys):
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    a.root["metrics"]["failed"][1, 0] = True
    capsys.readouterr()
    assert main(["export-dws", a.path, str(tmp_path / "ex")]) == 0
    out = capsys.readouterr().out
    assert out == f"wrote {tmp_path / 'ex' / 'splits.json'}: 3 INRs of view 0 (1 failed left out)\n", out


def _dead_pid() -> int:
    """The PID of a process that has exited (not reused within a test, in practice)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_what_a_killed_export_or_import_left_is_cleaned_by_the_next_one(tmp_path):
    """A SIGKILLed export/import leaves its hidden staging folder (``.NAME.PID-XXXX.inrforge-tmp``):
    the next export or import to the same place deletes those of dead processes, keeps those of
    live ones (work in progress), and an empty folder holding only such debris counts as empty."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    dead, alive = _dead_pid(), os.getpid()

    def debris(where, name, pid):
        d = where / f".{name}.{pid}-x1y2z3.inrforge-tmp"
        (d / "export" / "train").mkdir(parents=True)
        (d / "export" / "train" / "0000000.pth").write_bytes(b"half")
        return d

    # an export into an empty folder, killed: the debris is inside it
    empty = tmp_path / "empty"
    empty.mkdir()
    left = debris(empty, "export", dead)
    export_dws(a, empty)
    assert not left.exists() and sorted(p.name for p in empty.iterdir()) == ["splits.json", "test", "train", "val"]

    # an export to a new folder, killed: the debris is beside it
    left, running = debris(tmp_path, "new", dead), debris(tmp_path, "new", alive)
    export_dws(a, tmp_path / "new")
    assert not left.exists() and running.exists() and (tmp_path / "new" / "splits.json").exists()

    # an import, killed: the same, beside the store it was building
    left = debris(tmp_path, "b.zarr", dead)
    b = import_dws(tmp_path / "new", tmp_path / "b.zarr")
    assert not left.exists() and len(b) == 4
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".inrforge-tmp")) == [running.name]


def test_an_export_of_a_store_missing_finished_params_is_refused(tmp_path):
    """A done shard whose params file is gone (a partial copy) is not exported as NaN state dicts."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    os.remove(tmp_path / "a.zarr" / "params" / "c" / "0" / "0" / "0")
    with pytest.raises(InrforgeError, match=r"a.zarr: objects 0-1 are marked done but their parameters are not finite"):
        export_dws(a, tmp_path / "ex")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_folders_named_like_staging_debris_but_not_inrforges_are_kept(tmp_path):
    """Only staging folders that hold what an import or export builds are deleted as debris; a folder
    that merely has the name (holding anything else) is left as it is."""
    from inrforge.arch import make_arch

    a = make_store(tmp_path / "a.zarr", make_arch(hidden=8, depth=2), n=4)
    dead = _dead_pid()
    kept = []
    for k, content in enumerate(["notes.txt", "export/notes.txt", "export/train/notes.pth", "store/data.bin"]):
        d = tmp_path / f".new.{dead}-user{k}.inrforge-tmp"
        (d / content).parent.mkdir(parents=True, exist_ok=True)
        (d / content).write_text("mine")
        kept.append(d / content)
    ours = tmp_path / f".new.{dead}-abcd.inrforge-tmp"
    (ours / "export" / "val").mkdir(parents=True)
    (ours / "export" / "val" / "0000003.pth").write_bytes(b"half")
    (ours / "export" / f".splits.json.{dead}.tmp").write_text("{")
    export_dws(a, tmp_path / "new")
    assert not ours.exists() and all(f.read_text() == "mine" for f in kept)


def test_import_over_the_current_store_is_refused_before_reading(tmp_path, monkeypatch):
    """``import-dws DATA . --overwrite`` run inside a store would replace the folder it runs in: the
    same refusal as a fit's, before any file is read (it used to fail late, naming its staging folder)."""
    write_dws_dataset(tmp_path / "dws", n=4)
    import_dws(tmp_path / "dws", tmp_path / "s.zarr")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "s.zarr").rglob("*"))
    monkeypatch.chdir(tmp_path / "s.zarr")
    for overwrite in (True, False):
        with pytest.raises(InrforgeError, match=r"^a store at \. is the current folder; give a folder beside or below it$"):
            import_dws(tmp_path / "dws", ".", overwrite=overwrite)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InrforgeError, match=r"already holds a store; pass --overwrite"):
        import_dws(tmp_path / "dws", tmp_path / "s.zarr")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "s.zarr").rglob("*")) == before
