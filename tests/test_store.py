import json

import numpy as np
import pytest
import torch
import zarr

from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.store import ShardData, create_store, is_store, open_store, remove_store

ARCH = make_arch()


def make(path, n=10, views=2, shard=4, chunk=2, labels=None, arch=ARCH):
    labels = np.arange(n) % 3 if labels is None else labels
    return create_store(path, arch=arch, n_objects=n, views=views, labels=labels,
                        splits={"train": np.arange(6), "val": np.array([6, 7]), "test": np.array([8, 9])},
                        source={"name": "test", "params": {}}, fit={"steps": 1}, shard_objects=shard,
                        chunk_objects=chunk)


def shard_data(store, k, seed=0):
    start, stop = store.shard_range(k)
    n, v, p = stop - start, store.views, store.arch.param_count
    rng = np.random.default_rng(seed + k)
    return ShardData(start=start, params=rng.standard_normal((n, v, p)).astype(np.float32),
                     psnr=rng.uniform(20, 40, (n, v)).astype(np.float32),
                     loss=rng.uniform(0, 1, (n, v)).astype(np.float32),
                     steps=np.full((n, v), 7, np.int32), failed=np.zeros((n, v), bool))


def test_new_store_is_self_describing(tmp_path):
    s = make(tmp_path / "s.zarr")
    assert is_store(s.path) and len(s) == 10 and s.views == 2 and s.n_shards == 3
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["inrforge"]["format"] == 1
    assert attrs["arch"]["widths"] == [2, 32, 32, 1] and attrs["arch"]["output_offset"] == 0.5
    assert attrs["layout"][0] == {"name": "layers.0.weight", "shape": [32, 2], "offset": 0}
    params = zarr.open_array(str(tmp_path / "s.zarr" / "params"), mode="r")
    assert params.shape == (10, 2, 1185) and params.dtype == np.float32
    assert params.chunks == (2, 2, 1185) and params.shards == (4, 2, 1185)
    assert np.isnan(params[...]).all()  # NaN = not fitted
    assert s.pending_shards() == [0, 1, 2]
    assert s.split("test").tolist() == [8, 9]
    assert not any(p.name.startswith("s.zarr.tmp") for p in tmp_path.iterdir())


def test_shard_round_trip_and_batched_reads(tmp_path):
    s = make(tmp_path / "s.zarr")
    data = [shard_data(s, k) for k in range(3)]
    for d in (data[2], data[0]):
        s.write_shard(d)
    assert s.pending_shards() == [1]
    assert s.done().tolist() == [True] * 4 + [False] * 4 + [True] * 2
    full = np.concatenate([d.params for d in data])
    s.write_shard(data[1])
    r = open_store(s.path)
    np.testing.assert_array_equal(r.read_flat(slice(None), view=None), full)
    idx = [9, 0, 3, 3, 5]
    np.testing.assert_array_equal(r.read_flat(idx, view=1), full[idx, 1])
    w, y = r.read(idx, view=1)
    assert torch.equal(w.flatten(), torch.from_numpy(full[idx, 1]))
    assert y.tolist() == [0, 0, 0, 0, 2]
    np.testing.assert_array_equal(r.metric("steps"), 7)
    info = r.info()
    assert info["done_fraction"] == 1.0 and info["failed"] == 0 and info["shards"] == "3/3"
    assert info["size_bytes"] > full.nbytes * 0.5


def test_only_whole_shards_are_written(tmp_path):
    s = make(tmp_path / "s.zarr")
    d = shard_data(s, 1)
    with pytest.raises(ValueError, match="whole shard"):
        s.write_shard(ShardData(3, d.params, d.psnr, d.loss, d.steps, d.failed))


def test_float_labels_and_fourier_matrix(tmp_path):
    arch = make_arch("relu-fourier", fourier_features=4, in_features=1)
    s = make(tmp_path / "f.zarr", labels=np.random.rand(10, 2).astype(np.float32), arch=arch)
    assert s.labels.dtype == np.float32 and s.labels.shape == (10, 2)
    np.testing.assert_array_equal(s.root["fourier_matrix"][...], arch.fourier.matrix().numpy())
    assert open_store(s.path).arch == arch


def test_foreign_and_missing_stores_are_refused(tmp_path):
    with pytest.raises(InrforgeError, match="no store"):
        open_store(tmp_path / "missing")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(InrforgeError, match="not an inrforge store"):
        open_store(tmp_path / "plain.zarr")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("keep me")
    with pytest.raises(InrforgeError):
        open_store(tmp_path / "dir")
    with pytest.raises(InrforgeError, match="refusing to delete"):
        remove_store(tmp_path / "dir")
    assert (tmp_path / "dir" / "notes.txt").read_text() == "keep me"


def test_newer_format_is_refused(tmp_path):
    s = make(tmp_path / "s.zarr")
    s.root.attrs["inrforge"] = {"format": 2, "version": "9"}
    with pytest.raises(InrforgeError, match="format 2"):
        open_store(s.path)


def test_out_of_range_reads(tmp_path):
    s = make(tmp_path / "s.zarr")
    with pytest.raises(InrforgeError, match="out of range"):
        s.read_flat([10])
    with pytest.raises(InrforgeError, match="view 2"):
        s.read([0], view=2)
