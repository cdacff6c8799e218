import json
import os
import re

import numpy as np
import pytest
import torch
import zarr

from inrforge.arch import make_arch
from inrforge.errors import InrforgeError
from inrforge.store import ShardData, create_store, is_store, open_store, remove_store

ARCH = make_arch()
SMALL = make_arch(hidden=16)  # 2->16->16->1, 337 parameters


def make(path, n=10, views=2, shard=4, chunk=2, labels=None, arch=ARCH):
    labels = np.arange(n) % 3 if labels is None else labels
    return create_store(path, arch=arch, n_objects=n, views=views, labels=labels,
                        splits={"train": np.arange(max(n - 4, 0)), "val": np.arange(max(n - 4, 0), max(n - 2, 0)),
                                "test": np.arange(max(n - 2, 0), n)},
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


def test_index_forms_of_read(tmp_path):
    s = make(tmp_path / "s.zarr")
    for k in range(s.n_shards):
        s.write_shard(shard_data(s, k))
    everything = s.read_flat(np.arange(10))
    w, y = s.read(np.arange(10) < 3)  # a mask selects objects 0..2
    assert torch.equal(w.flatten(), torch.from_numpy(everything[:3])) and y.tolist() == [0, 1, 2]
    w, y = s.read(5)  # one object: a batch of one
    assert len(w) == 1 and y.shape == (1,)
    w, y = s.read([])
    assert len(w) == 0 and y.shape == (0,)
    w, y = s.read(slice(None, None, -1))
    assert torch.equal(w.flatten(), torch.from_numpy(everything[::-1].copy())) and y.tolist() == (np.arange(10) % 3)[::-1].tolist()
    assert s.read_flat(slice(2, 5), view=None).shape == (3, 2, ARCH.param_count)
    with pytest.raises(InrforgeError, match="one entry per object"):
        s.read(np.arange(4) < 2)
    with pytest.raises(InrforgeError, match="must be integers"):
        s.read([0.5])


def test_a_write_mode_open_is_refused_and_empties_nothing(tmp_path):
    s = make(tmp_path / "s.zarr")
    before = sorted(p.name for p in (tmp_path / "s.zarr").iterdir())
    for mode in ("w", "a", "x", "w-"):
        with pytest.raises(InrforgeError, match="mode 'r'"):
            open_store(s.path, mode=mode)
    assert sorted(p.name for p in (tmp_path / "s.zarr").iterdir()) == before
    assert len(open_store(s.path)) == 10


def test_overwrite_replaces_a_store_only_once_the_new_one_is_complete(tmp_path, monkeypatch):
    import inrforge.store.create as create_module

    old = make(tmp_path / "s.zarr")
    old.write_shard(shard_data(old, 0))
    with pytest.raises(InrforgeError, match="already holds a store"):
        make(tmp_path / "s.zarr")
    replacement = dict(arch=ARCH, n_objects=3, views=1, labels=np.zeros(3, np.int64), splits={"train": np.arange(3)},
                       source={"name": "other"}, fit={}, overwrite=True)

    def disk_full(obj):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the disk fills up half-way through building the new store
        m.setattr(create_module, "jsonable", disk_full)
        with pytest.raises(InrforgeError, match="cannot write a store at .*No space left"):
            create_store(tmp_path / "s.zarr", **replacement)
    kept = open_store(tmp_path / "s.zarr")
    assert kept.done()[:4].all() and kept.attrs["fit"] == {"steps": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no half-built folder left
    new = create_store(tmp_path / "s.zarr", **replacement)
    assert len(new) == 3 and not new.done().any() and sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_file_urls_are_local_paths(tmp_path):
    s = make(f"file://{tmp_path}/u.zarr")
    assert s.path == f"{tmp_path}/u.zarr" and is_store(tmp_path / "u.zarr")
    assert len(open_store(f"file://{tmp_path}/u.zarr")) == 10


def test_a_read_only_store_is_reported_before_any_work(tmp_path, monkeypatch):
    import inrforge.store.inr_store as inr_store_module

    s = make(tmp_path / "s.zarr")
    s.check_writable()
    params = str(tmp_path / "s.zarr" / "params")
    monkeypatch.setattr(inr_store_module.os, "access", lambda p, mode: str(p) != params)
    with pytest.raises(InrforgeError, match="read-only"):
        s.check_writable()


def test_overwrite_through_a_link_replaces_what_it_points_to(tmp_path):
    real = make(tmp_path / "real.zarr")
    (tmp_path / "link.zarr").symlink_to(tmp_path / "real.zarr")
    new = create_store(tmp_path / "link.zarr", arch=ARCH, n_objects=3, views=1, labels=np.zeros(3, np.int64),
                       splits={"train": np.arange(3)}, source={"name": "other"}, fit={}, overwrite=True)
    assert (tmp_path / "link.zarr").is_symlink() and len(open_store(tmp_path / "link.zarr")) == 3 == len(new)
    assert len(real) == 10  # the object opened before still reads what it read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.zarr", "real.zarr"]


def test_a_replaced_store_that_cannot_be_deleted_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    import shutil

    import inrforge.store.location as location_module

    make(tmp_path / "s.zarr")
    real_rmtree = shutil.rmtree

    def stuck(path, *a, **k):
        if ".old-" in str(path):
            raise PermissionError(1, "Operation not permitted")
        return real_rmtree(path, *a, **k)

    monkeypatch.setattr(location_module.shutil, "rmtree", stuck)
    with pytest.warns(UserWarning, match="left at .*s.zarr.old-"):
        new = create_store(tmp_path / "s.zarr", arch=ARCH, n_objects=3, views=1, labels=np.zeros(3, np.int64),
                           splits={"train": np.arange(3)}, source={"name": "other"}, fit={}, overwrite=True)
    assert len(open_store(new.path)) == 3


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_what_an_interrupted_overwrite_left_is_cleaned_or_reported(tmp_path):
    import shutil

    pid = _dead_pid()
    make(tmp_path / f"s.zarr.tmp-{pid}")  # half-built by a process that is gone: deleted
    make(tmp_path / "s.zarr")
    create_store(tmp_path / "s.zarr", arch=ARCH, n_objects=3, views=1, labels=np.zeros(3, np.int64),
                 splits={"train": np.arange(3)}, source={"name": "other"}, fit={}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    # killed between its two renames: the old store is set aside and nothing is at s.zarr
    shutil.move(str(tmp_path / "s.zarr"), str(tmp_path / f"s.zarr.old-{pid}"))
    with pytest.raises(InrforgeError, match=f"no store at .*s.zarr \\(.*s.zarr.old-{pid} holds the store"):
        open_store(tmp_path / "s.zarr")
    with pytest.raises(InrforgeError, match="an interrupted --overwrite of .* set aside; move it back"):
        make(tmp_path / "s.zarr")
    assert is_store(tmp_path / f"s.zarr.old-{pid}")


def test_file_urls_with_host_and_escapes(tmp_path):
    from inrforge.files import local_path

    assert local_path(f"file://localhost{tmp_path}/a%20b.zarr") == f"{tmp_path}/a b.zarr"
    with pytest.raises(InrforgeError, match="another host"):
        local_path("file://elsewhere/x.zarr")


def test_a_writer_never_writes_into_a_store_that_replaced_its_own(tmp_path):
    path = tmp_path / "s.zarr"
    old = make(path)  # still "fitting" with this object open
    old.write_shard(shard_data(old, 0))
    create_store(path, arch=ARCH, n_objects=12, views=1, labels=np.arange(12) % 3,
                 splits={"train": np.arange(12)}, source={"name": "other"}, fit={"steps": 2},
                 shard_objects=4, chunk_objects=2, overwrite=True)  # another run's --overwrite
    new = open_store(path)
    with pytest.raises(InrforgeError, match="was replaced or removed by another run"):
        old.write_shard(shard_data(old, 1))
    assert np.isnan(new.read_flat(slice(None), view=None)).all() and not new.done().any()
    new_writer = open_store(path, mode="r+")
    new_writer.write_shard(ShardData(start=0, params=np.zeros((4, 1, ARCH.param_count), np.float32),
                                     psnr=np.zeros((4, 1), np.float32), loss=np.zeros((4, 1), np.float32),
                                     steps=np.zeros((4, 1), np.int32), failed=np.zeros((4, 1), bool)))
    assert new_writer.done()[:4].all()  # the store's own writer is not refused


def finished(path, n=10, views=2):
    """A store with every shard written (shard_data's numbers)."""
    s = make(path, n=n, views=views)
    for k in range(s.n_shards):
        s.write_shard(shard_data(s, k))
    return s


def test_info_summarises_only_finished_inrs_that_did_not_fail(tmp_path):
    s = make(tmp_path / "s.zarr")
    d0, d1, d2 = (shard_data(s, k) for k in range(3))
    d0.failed[1, 0], d0.psnr[1, 0] = True, np.nan  # a failed fit: PSNR NaN, as fit writes it
    d2.failed[0, 1], d2.psnr[0, 1] = True, np.nan
    s.write_shard(d0)
    s.write_shard(d2)
    m = s.root["metrics"]  # a writer killed after shard 1's metrics, before its done chunk
    s.params[4:8] = d1.params
    m["psnr"][4:8] = np.full((4, 2), 99, np.float32)
    d1.failed[2, 1] = True
    m["failed"][4:8] = d1.failed
    info = open_store(s.path).info()
    ok = np.concatenate([d0.psnr.ravel(), d2.psnr.ravel()])
    ok = ok[np.isfinite(ok)].astype(np.float64)
    assert len(ok) == 10
    assert info["psnr_mean"] == pytest.approx(ok.mean(), rel=1e-6)
    assert info["psnr_median"] == pytest.approx(np.median(ok), rel=1e-6)
    assert info["psnr_p5"] == pytest.approx(np.percentile(ok, 5), rel=1e-6)
    assert info["failed"] == 2 and info["done_fraction"] == 0.6 and info["shards"] == "2/3"


def test_size_on_disk_survives_a_file_that_vanishes_while_counted(tmp_path, monkeypatch):
    import inrforge.store.location as location_module

    s = make(tmp_path / "s.zarr")
    real_walk = location_module.os.walk

    def walk_with_a_vanished_file(top, *a, **k):  # a concurrent writer renamed its .partial file
        for dirpath, dirs, files in real_walk(top, *a, **k):
            yield dirpath, dirs, files + ["0.3f2a.partial"]

    monkeypatch.setattr(location_module.os, "walk", walk_with_a_vanished_file)
    size = s.info()["size_bytes"]
    monkeypatch.undo()
    assert size == s.info()["size_bytes"] > 0


def test_bad_slices_and_unsigned_overflow_are_one_line_errors(tmp_path):
    s = finished(tmp_path / "s.zarr")
    for bad in (slice(0.5, 2), slice(0, 4, 0), slice("a", None)):
        for read in (s.read, s.read_flat, s.object_indices):
            with pytest.raises(InrforgeError, match="slice"):
                read(bad)
    with pytest.raises(InrforgeError, match="out of range"):  # 2**64 - 1 is not object -1
        s.read_flat(np.array([2**64 - 1], dtype=np.uint64))
    for huge in ([10**20], [3, -(10**20)]):  # beyond int64: numpy holds them as Python objects
        with pytest.raises(InrforgeError, match=r"^object index out of range for a store of 10 objects$"):
            s.read(huge)
    with pytest.raises(InrforgeError, match="object indices must be integers, got <U21"):
        s.read([1, "a"])
    np.testing.assert_array_equal(s.read_flat(np.array([9], np.uint64)), s.read_flat([-1]))
    np.testing.assert_array_equal(s.read_flat(slice(5, 2)), np.empty((0, ARCH.param_count), np.float32))
    np.testing.assert_array_equal(s.read_flat(slice(-3, None), view=None), s.read_flat([7, 8, 9], view=None))


def test_read_gives_one_view_and_points_to_read_flat_for_all(tmp_path):
    s = finished(tmp_path / "s.zarr")
    with pytest.raises(InrforgeError, match=r"one view.*read_flat\(indices, view=None\)"):
        s.read([0, 1], view=None)
    w, _ = s.read([0, 1], view=np.int64(1))
    assert torch.equal(w.flatten(), torch.from_numpy(s.read_flat([0, 1], view=None)[:, 1]))


def test_shard_range_refuses_shards_the_store_does_not_have(tmp_path):
    s = make(tmp_path / "s.zarr")
    assert [s.shard_range(k) for k in range(3)] == [(0, 4), (4, 8), (8, 10)]
    for k in (3, -1, 1.0, True):
        with pytest.raises(InrforgeError, match="shard"):
            s.shard_range(k)


def _edited(tmp_path, edit, name="zarr.json"):
    """A finished store whose ``name`` metadata JSON went through ``edit`` (a hand edit)."""
    s = finished(tmp_path / "s.zarr")
    meta = tmp_path / "s.zarr" / name
    doc = json.loads(meta.read_text())
    edit(doc)
    meta.write_text(json.dumps(doc))
    return s.path


def _use_everything(path):
    s = open_store(path)
    s.read([0, 1])
    s.read_flat(slice(None), view=None)
    s.info()
    s.fit_summary()
    s.labels
    return s


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["attributes"].pop("views"), "missing attribute.*views"),
    (lambda d: d["attributes"].pop("arch"), "missing attribute.*arch"),
    (lambda d: d["attributes"].pop("shard_objects"), "missing attribute.*shard_objects"),
    (lambda d: d["attributes"].pop("layout"), "missing attribute.*layout"),
    (lambda d: d["attributes"]["inrforge"].update(format="1"), "format marker '1'"),
    (lambda d: d["attributes"]["inrforge"].update(format=True), "format marker True"),
    (lambda d: d["attributes"]["inrforge"].update(format=3), "format 3, newer than .* upgrade inrforge"),
    (lambda d: d["attributes"].update(views="two"), "views must be a positive integer, got 'two'"),
    (lambda d: d["attributes"].update(shard_objects=0), "shard_objects must be a positive integer, got 0"),
    (lambda d: d["attributes"].update(n_objects=12), r"params has shape \(10, 2, 1185\).* \(12, 2, 1185\)"),
    (lambda d: d["attributes"].update(views=3), r"params has shape \(10, 2, 1185\).* \(10, 3, 1185\)"),
    (lambda d: d["attributes"].update(arch=SMALL.to_dict(), layout=SMALL.layout_dicts()),
     r"params has shape \(10, 2, 1185\).* \(10, 2, 337\)"),
    (lambda d: d["attributes"]["layout"][0].update(shape=[2, 32]), "layout does not match its arch .*entry 0"),
    (lambda d: d["attributes"].update(source=["digits"]), "source must be a JSON object"),
    (lambda d: d["attributes"].update(fit=None), "fit must be a JSON object"),
    (lambda d: d["attributes"]["arch"].update(family="tanh"), "s.zarr: .*unknown INR family 'tanh'"),
])
def test_a_damaged_or_hand_edited_store_is_refused_in_one_line(tmp_path, edit, words):
    path = _edited(tmp_path, edit)
    with pytest.raises(InrforgeError, match=words):
        _use_everything(path)


@pytest.mark.parametrize("name, edit, words", [
    ("params/zarr.json", lambda d: d.update(data_type="float64"), "params .*float64.* float32"),
    ("params/zarr.json", lambda d: d.update(shape=[10, 2370]), "params"),
    ("labels/zarr.json", lambda d: d.update(shape=[8]), r"labels has shape \(8,\), not one row per object \(10 objects\)"),
    ("done/zarr.json", lambda d: d.update(shape=[8]), r"done has shape \(8,\)"),
    ("metrics/psnr/zarr.json", lambda d: d.update(shape=[10, 1]), r"metrics/psnr has shape \(10, 1\)"),
])
def test_arrays_of_the_wrong_shape_are_refused(tmp_path, name, edit, words):
    path = _edited(tmp_path, edit, name)
    with pytest.raises(InrforgeError, match=words):
        _use_everything(path)


@pytest.mark.parametrize("array", ["params", "labels", "done", "metrics/psnr", "splits/val"])
def test_a_missing_array_is_a_one_line_error(tmp_path, array):
    import shutil

    s = finished(tmp_path / "s.zarr")
    shutil.rmtree(tmp_path / "s.zarr" / array)
    with pytest.raises(InrforgeError, match=f"s.zarr has no readable array '{array}'"):
        _use_everything(s.path).split("val")


def test_a_corrupt_chunk_is_a_one_line_error(tmp_path):
    s = finished(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "params" / "c" / "1" / "0" / "0").write_bytes(b"garbage")
    (tmp_path / "s.zarr" / "metrics" / "psnr" / "c" / "0" / "0").write_bytes(b"garbage")
    r = open_store(s.path)
    assert r.read_flat([0, 1]).shape == (2, ARCH.param_count)  # shard 0 is intact
    with pytest.raises(InrforgeError, match="cannot read params of .*s.zarr"):
        r.read([0, 5])
    with pytest.raises(InrforgeError, match="cannot read params"):
        r.read_flat(slice(4, 8))
    with pytest.raises(InrforgeError, match="cannot read metrics/psnr"):
        r.metric("psnr")


def test_a_zarr_v2_group_is_refused(tmp_path):
    g = zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    g.attrs["inrforge"] = {"format": 1}
    with pytest.raises(InrforgeError, match="Zarr v2 group.*Zarr v3"):
        open_store(tmp_path / "v2.zarr")


def test_extra_metrics_such_as_a_zoos_accuracy_are_readable(tmp_path):
    s = finished(tmp_path / "s.zarr", views=1)  # a zoo: one view
    s.root["metrics"].create_array("accuracy", shape=(10, 1), dtype="float32", chunks=(4, 1), fill_value=np.nan)
    s.root["metrics"]["accuracy"][:4] = np.full((4, 1), 0.5, np.float32)
    acc = open_store(s.path).metric("accuracy")
    assert acc.shape == (10, 1) and acc[:4].tolist() == [[0.5]] * 4 and np.isnan(acc[4:]).all()
    with pytest.raises(InrforgeError, match="unknown metric 'psnr2'; choose one of .*accuracy"):
        s.metric("psnr2")


def test_unfinished_objects_are_read_as_stored_nan(tmp_path):
    s = make(tmp_path / "s.zarr")
    s.write_shard(shard_data(s, 0))
    w, y = open_store(s.path).read([3, 4])
    flat = w.flatten()
    assert torch.isfinite(flat[0]).all() and torch.isnan(flat[1]).all() and y.tolist() == [0, 1]
    assert s.done()[[3, 4]].tolist() == [True, False]


def test_reading_a_store_read_only_writes_nothing(tmp_path):
    import os
    import time

    s = finished(tmp_path / "s.zarr")

    def mtimes():
        return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
                for d, _, fs in os.walk(s.path) for f in fs + ["."]}

    before = mtimes()
    time.sleep(0.01)
    r = _use_everything(s.path)
    for name in ("train", "val", "test"):
        r.split(name)
    for name in ("psnr", "loss", "steps", "failed"):
        r.metric(name)
    r.pending_shards(), r.done(), is_store(s.path)
    assert mtimes() == before


def test_write_json_is_whole_or_not_at_all(tmp_path):
    """A run's results.json marks it finished: a write that fails midway leaves the old file (or
    none) and no temporary file, never a truncated one."""
    from inrforge.files import write_json

    path = tmp_path / "results.json"
    write_json(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        write_json(path, {"a": [1, 2], "b": object()})  # fails while the JSON is being made
    assert json.loads(path.read_text()) == {"a": [1, 2]} and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(TypeError):
        write_json(tmp_path / "new.json", object())
    assert not (tmp_path / "new.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_psnr_summary_says_none_recorded_instead_of_nan():
    from inrforge.store import psnr_summary

    assert psnr_summary({"psnr_median": 40.234, "psnr_p5": 39.5}) == "median PSNR 40.23 dB"
    assert psnr_summary({"psnr_median": 40.234, "psnr_p5": 39.5}, p5=True) == "median PSNR 40.23 dB (p5 39.50)"
    assert psnr_summary({"psnr_median": float("nan"), "psnr_p5": float("nan")}, p5=True) == "median PSNR none recorded"


def test_only_inrforges_own_half_built_stores_are_deleted_as_leftovers(tmp_path):
    """``OUT.tmp-PID`` folders of dead processes are deleted only when they are recognisably a store
    create_store was building (a killed build, at any point); a user's folder of that name is kept."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    # a create_store killed (os._exit) while filling its arrays, before the group's attributes: a
    # build whose process is gone, and the one folder that must go
    killed = ("import os, numpy as np, zarr\n"
              "from inrforge.arch import make_arch\n"
              "from inrforge.store import create_store\n"
              "zarr.Group.create_group = lambda *a, **k: os._exit(9)  # dies after params and labels\n"
              f"create_store({str(tmp_path / 's.zarr')!r}, arch=make_arch(hidden=8), n_objects=4, views=1,\n"
              "             labels=np.arange(4), splits={'train': np.arange(4)}, source={}, fit={})\n")
    import inrforge

    root = str(Path(inrforge.__file__).parent.parent)
    proc = subprocess.Popen([sys.executable, "-c", killed], stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.wait() == 9, proc.stderr.read()
    build = tmp_path / f"s.zarr.tmp-{proc.pid}"
    assert (build / "zarr.json").exists() and (build / "labels" / "c" / "0").exists()
    dead = _dead_pid()
    user = tmp_path / f"s.zarr.tmp-{dead}"
    user.mkdir()
    (user / "notes.txt").write_text("notes")
    fitted = finished(tmp_path / "fitted.zarr").path  # a store that holds fitted INRs: never a build
    os.rename(fitted, tmp_path / f"s.zarr.tmp-{dead + 1}")
    plain = zarr.open_group(str(tmp_path / f"s.zarr.tmp-{dead + 2}"), mode="w")  # another tool's group
    plain.create_array("x", shape=(3,), dtype="int64")[...] = [1, 2, 3]
    partial = tmp_path / f"s.zarr.tmp-{dead + 3}"  # killed while writing its first file
    partial.mkdir()
    (partial / f"zarr.{'ab' * 16}.partial").write_text("{")
    make(tmp_path / "s.zarr")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["s.zarr"] + [f"s.zarr.tmp-{dead + k}" for k in range(3)], names
    assert (user / "notes.txt").read_text() == "notes"
    assert zarr.open_group(str(tmp_path / f"s.zarr.tmp-{dead + 2}"), mode="r")["x"][...].tolist() == [1, 2, 3]
    assert open_store(tmp_path / f"s.zarr.tmp-{dead + 1}").done().all()


def test_a_folder_in_the_way_of_this_process_names_is_an_error_not_deleted(tmp_path):
    """create_store builds in ``OUT.tmp-<its PID>`` and sets a replaced store aside as ``OUT.old-<its
    PID>``: a folder already there that is not its own is refused in one line, and kept."""
    import os

    mine = tmp_path / f"s.zarr.tmp-{os.getpid()}"
    mine.mkdir()
    (mine / "notes.txt").write_text("notes")
    with pytest.raises(InrforgeError, match=f"s.zarr.tmp-{os.getpid()} is in the way"):
        make(tmp_path / "s.zarr")
    assert (mine / "notes.txt").read_text() == "notes" and not (tmp_path / "s.zarr").exists()
    mine.rename(tmp_path / "elsewhere")
    make(tmp_path / f"s.zarr.tmp-{os.getpid()}")  # a build left by an earlier process of this PID: ours, deleted
    make(tmp_path / "s.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "s.zarr"]
    aside = tmp_path / f"s.zarr.old-{os.getpid()}"
    aside.mkdir()
    (aside / "notes.txt").write_text("notes")
    with pytest.raises(InrforgeError, match=f"s.zarr.old-{os.getpid()} is in the way"):  # where s.zarr would go
        create_store(tmp_path / "s.zarr", arch=ARCH, n_objects=3, views=1, labels=np.zeros(3, np.int64),
                     splits={"train": np.arange(3)}, source={"name": "other"}, fit={}, overwrite=True)
    assert (aside / "notes.txt").read_text() == "notes" and len(open_store(tmp_path / "s.zarr")) == 10


def test_a_finished_shard_whose_params_file_is_missing_is_an_error_not_nan(tmp_path):
    """A partial copy of a store (a shard file missing) reads as NaN: every read of those done INRs,
    and info, is a one-line error naming them; INRs that failed, or are not fitted, read as stored."""
    import os

    s = make(tmp_path / "s.zarr")
    for k in range(3):
        d = shard_data(s, k)
        if k == 2:  # every INR of shard 2 failed with NaN parameters: zarr writes no file for it
            d.params[...], d.failed[...] = np.nan, True
        s.write_shard(d)
    before = open_store(s.path).read_flat(slice(0, 4), view=None)
    os.remove(tmp_path / "s.zarr" / "params" / "c" / "1" / "0" / "0")
    r = open_store(s.path)
    assert not (tmp_path / "s.zarr" / "params" / "c" / "2" / "0" / "0").exists()
    words = r"s.zarr: objects 4-7 are marked done but their parameters are"
    with pytest.raises(InrforgeError, match=words + r" missing \(read as NaN\): the store is incomplete or damaged"):
        r.info()
    assert r.damaged_objects().tolist() == [4, 5, 6, 7]
    for read in (lambda: r.read_flat(slice(None), view=None), lambda: r.read_flat(slice(2, 8), view=1),
                 lambda: r.read([5, 0, 4, 7, 6])):
        with pytest.raises(InrforgeError, match=words + " not finite"):
            read()
    with pytest.raises(InrforgeError, match=r"s.zarr: object 5 is marked done but its parameters"):
        r.read([1, 5])
    np.testing.assert_array_equal(r.read_flat(slice(0, 4), view=None), before)  # shard 0 is intact
    assert np.isnan(r.read_flat([8, 9], view=None)).all()  # failed: read as stored
    s.root["done"][4:8] = np.zeros(4, bool)  # shard 1 to be refitted: not fitted, not damaged
    r = open_store(s.path)
    assert np.isnan(r.read_flat(slice(4, 10))).all() and r.info()["shards"] == "2/3"


def test_a_killed_store_build_carries_a_marker_the_finished_store_does_not(tmp_path):
    """The group's first file marks it as a store being built; the finished store has only the format
    marker, so that a finished store is never taken for a half-built one by the attribute alone."""
    from inrforge.store import BUILDING, is_own_build

    s = make(tmp_path / "s.zarr")
    assert BUILDING not in s.attrs and "inrforge" in s.attrs
    assert is_own_build(tmp_path / "s.zarr")  # nothing fitted yet
    s.write_shard(shard_data(s, 0))
    assert not is_own_build(tmp_path / "s.zarr") and is_own_build(tmp_path / "s.zarr", fitted=True)
    (tmp_path / "s.zarr" / "notes.txt").write_text("notes")
    assert not is_own_build(tmp_path / "s.zarr", fitted=True)


def test_damaged_shards_are_found_and_reopened_for_a_refit(tmp_path):
    s = finished(tmp_path / "s.zarr")  # shards of 4: 0-3, 4-7, 8-9
    assert s.damaged_shards() == []
    root = tmp_path / "s.zarr"
    shard1 = root / "params" / "c" / "1" / "0" / "0"
    shard1.write_bytes(shard1.read_bytes()[:100])  # truncated: its index fails its checksum
    (root / "params" / "c" / "2" / "0" / "0").unlink()  # missing: reads as NaN
    (root / "metrics" / "loss" / "c" / "0" / "0").write_bytes(b"garbage")
    r = open_store(s.path, mode="r+")
    assert r.damaged_shards() == [0, 1, 2]
    r.reopen_shards([1, 2])
    assert r.pending_shards() == [1, 2] and not shard1.exists()
    for k in (1, 2):
        r.write_shard(shard_data(r, k))  # zarr would read the damaged file to write into it
    assert r.damaged_shards() == [0]
    np.testing.assert_array_equal(r.read_flat(slice(4, 10)),
                                  np.concatenate([shard_data(r, 1).params, shard_data(r, 2).params])[:, 0])


def test_a_repair_stopped_half_way_is_found_by_the_next(tmp_path, monkeypatch):
    """reopen_shards deletes a damaged shard's file before it clears the shard's flags: stopped in
    between, the shard is done with no file (found, and repaired by the next run), never pending
    with a damaged file that every write would fail to read."""
    import inrforge.store.inr_store as istore

    s = finished(tmp_path / "s.zarr")
    shard1 = tmp_path / "s.zarr" / "params" / "c" / "1" / "0" / "0"
    shard1.write_bytes(shard1.read_bytes()[:100])
    delete = istore._delete_chunks

    def delete_then_stop(*args):
        delete(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(istore, "_delete_chunks", delete_then_stop)
    r = open_store(s.path, mode="r+")
    with pytest.raises(KeyboardInterrupt):
        r.reopen_shards(r.damaged_shards())
    monkeypatch.setattr(istore, "_delete_chunks", delete)
    assert not shard1.exists() and r.pending_shards() == [] and r.damaged_shards() == [1]
    with pytest.raises(InrforgeError, match="--repair refits what is damaged"):
        r.info()
    r.reopen_shards([1])
    r.write_shard(shard_data(r, 1))
    assert r.damaged_shards() == [] and r.info()["done_fraction"] == 1.0


def test_a_shard_whose_inner_chunk_is_missing_is_damaged(tmp_path):
    """Chunks inside a shard that are gone read as NaN params of done INRs: damaged, unless failed."""
    s = make(tmp_path / "s.zarr", n=4, views=1, shard=4, chunk=2)
    data = shard_data(s, 0)
    data.params[2:] = np.nan
    s.write_shard(data)
    assert s.damaged_shards() == [0]
    data.failed[2:] = True
    s.write_shard(data)
    assert s.damaged_shards() == []


@pytest.mark.parametrize("where", ["inside", "dangling", "dangling/", "cwd", "parent of cwd", "empty"])
def test_output_paths_that_would_lose_data_are_refused(tmp_path, monkeypatch, where):
    """Every output refuses a path inside a store, through a link to nothing (also spelt with a
    trailing slash, which would follow it) and an empty one; a store, which replaces its folder,
    also refuses the current folder and its parents (a results folder there is fine)."""
    from inrforge.files import output_path

    s = finished(tmp_path / "s.zarr")
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "sub")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere" / "t")
    path, words = {"inside": (f"{s.path}/x.png", f"lies inside the Zarr store {s.path}"),
                   "dangling": (str(tmp_path / "link"), f"is a symbolic link to {tmp_path}/nowhere/t, which does not"),
                   "dangling/": (f"{tmp_path}/link/", f"is a symbolic link to {tmp_path}/nowhere/t, which does not"),
                   "cwd": (".", "is the current folder; give a folder beside or below it"),
                   "parent of cwd": ("..", "is the current folder or holds it"),
                   "empty": ("", "expected a path, got an empty string")}[where]
    if where in ("cwd", "parent of cwd"):
        assert output_path(path) == path
    else:
        with pytest.raises(InrforgeError, match=re.escape(words)):
            output_path(path)
    with pytest.raises(InrforgeError, match=re.escape(words)):
        make(path)
    assert not (tmp_path / "nowhere").exists() and sorted(os.listdir(tmp_path / "work" / "sub")) == []


def test_a_store_in_an_empty_folder_given_as_dir_dot_is_written_there(tmp_path):
    (tmp_path / "e").mkdir()
    s = make(f"{tmp_path}/e/.")
    assert is_store(tmp_path / "e") and len(s) == 10 and sorted(os.listdir(tmp_path)) == ["e"]


def test_an_unknown_or_unavailable_url_protocol_is_one_line(tmp_path):
    with pytest.raises(InrforgeError, match="^cannot write a store at bogus://b/x.zarr: Protocol not known: bogus$"):
        make("bogus://b/x.zarr")


def test_reads_mixing_dense_and_sparse_shards_give_each_row_in_order(tmp_path):
    """read_flat reads a shard whose rows are dense as one slice and the sparse rest in one
    orthogonal selection; either way each row comes back where it was asked for, duplicates too."""
    import inrforge.store.inr_store as istore

    s = make(tmp_path / "s.zarr", n=100, views=2, shard=32, chunk=4)
    for k in range(s.n_shards):
        s.write_shard(shard_data(s, k))
    every = s.params[...]
    rng = np.random.default_rng(0)
    # shard 1 whole (dense), a few rows scattered over shards 0 and 2 (sparse), the partial last shard
    mixed = np.r_[np.arange(32, 64), [3, 30], [65, 90], [99, 97]]
    reads = []
    spy = istore.INRStore._read
    istore.INRStore._read = lambda self, arr, sel, orthogonal=False: (reads.append(orthogonal), spy(self, arr, sel, orthogonal))[1]
    try:
        for idx in (mixed, rng.permutation(mixed), np.r_[mixed, mixed[:4]], np.arange(100)[::-1], np.array([39])):
            np.testing.assert_array_equal(s.read_flat(idx, view=None), every[idx])
            np.testing.assert_array_equal(s.read_flat(idx, view=1), every[idx, 1])
    finally:
        istore.INRStore._read = spy
    assert True in reads and False in reads  # both paths taken


def test_saved_stats_round_trip_and_need_a_writable_store(tmp_path):
    """stats/<mode> (docs/format.md): kept only by a store opened r+, read back only when complete."""
    s = make(tmp_path / "s.zarr")
    mean, std = np.arange(s.arch.param_count, dtype=np.float32), np.ones(s.arch.param_count, np.float32)
    reader = open_store(s.path)
    assert reader.saved_stats("entry") is None
    assert reader.save_stats("entry", mean, std) is False and "stats" not in reader.root
    assert s.save_stats("entry", mean, std) is True
    got = open_store(s.path).saved_stats("entry")
    assert np.array_equal(got[0], mean) and np.array_equal(got[1], std)
    assert open_store(s.path).saved_stats("symmetric") is None
    s.root["stats"]["entry"].attrs["complete"] = False  # a save interrupted before its last write
    assert open_store(s.path).saved_stats("entry") is None


def test_a_damaged_stats_cache_reads_as_missing_and_is_computed_again(tmp_path):
    """stats/<mode> is a cache: unreadable chunks, another shape, a NaN or a zero std read as None
    (normalization_stats then computes the statistics again and saves them over the damage)."""
    from inrforge.data import normalization_stats

    s = make(tmp_path / "s.zarr")
    for k in range(s.n_shards):
        s.write_shard(shard_data(s, k))
    s = open_store(s.path, mode="r+")
    mean, std = (t.numpy() for t in normalization_stats(s, "entry"))
    p = s.arch.param_count
    chunk = tmp_path / "s.zarr" / "stats" / "entry" / "mean" / "c" / "0"
    assert chunk.is_file()
    for damage in ("chunk", "shape", "nan", "zero"):
        group = s.root["stats"]["entry"]
        if damage == "chunk":
            chunk.write_bytes(b"garbage")
        elif damage == "shape":
            group.create_array("mean", shape=(3,), dtype="float32", overwrite=True)[...] = 0
        else:
            group["std"][...] = np.where(np.arange(p) == 5, np.nan if damage == "nan" else 0, std).astype(np.float32)
        assert open_store(s.path).saved_stats("entry") is None, damage
        again = open_store(s.path, mode="r+")
        got = [t.numpy() for t in normalization_stats(again, "entry")]
        assert np.array_equal(got[0], mean) and np.array_equal(got[1], std), damage
        kept = open_store(s.path).saved_stats("entry")  # saved over the damage
        assert kept is not None and np.array_equal(kept[0], mean) and np.array_equal(kept[1], std), damage


def test_replacing_a_store_keeps_what_is_not_the_stores(tmp_path):
    """A store's folder may hold a user's notes: --overwrite (create_store, remove_store) refuses to
    replace the store rather than delete them; the store's own members (a stats cache, the Fourier
    matrix, the metrics group) are not foreign."""
    from inrforge.store import foreign_entries

    fourier = make_arch("relu-fourier", in_features=2, out_features=1)
    s = make(tmp_path / "s.zarr", arch=fourier)
    s.save_stats("entry", np.zeros(s.arch.param_count, np.float32), np.ones(s.arch.param_count, np.float32))
    root = tmp_path / "s.zarr"
    (root / "metrics" / f"zarr.json.{'0' * 32}.partial").write_text("zarr was writing")  # its process killed
    assert foreign_entries(s.path) == []
    (root / "NOTES.txt").write_text("mine")
    (root / "mine").mkdir()
    (root / "params" / "extra.txt").write_text("mine")
    (root / "metrics" / "more.csv").write_text("mine")
    assert foreign_entries(s.path) == ["NOTES.txt", "metrics/more.csv", "mine/", "params/extra.txt"]
    for replace in (lambda: create_store(s.path, arch=ARCH, n_objects=4, views=1, labels=np.zeros(4, int),
                                         splits={"train": np.arange(4), "val": np.arange(0), "test": np.arange(0)},
                                         source={"name": "test"}, fit={}, overwrite=True),
                    lambda: remove_store(s.path)):
        with pytest.raises(InrforgeError, match=rf"^{re.escape(s.path)} holds files that are not part of its store "
                                                r"\(NOTES.txt, metrics/more.csv, mine/, params/extra.txt\): replacing"):
            replace()
        assert (root / "NOTES.txt").read_text() == "mine" and open_store(s.path).arch == fourier


def test_a_url_is_refused_where_it_holds_something_else_and_local_urls_are_local_paths(tmp_path):
    """A URL that holds anything but a store is refused as a local folder is (zarr would empty it);
    ``local://`` (fsspec's name for local files) is the local path, checked as one."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/inrforge-test-url/notes.txt", b"mine")
    try:
        with pytest.raises(InrforgeError, match=r"^memory://inrforge-test-url exists and is not an inrforge store"):
            make("memory://inrforge-test-url")
        assert fs.cat("/inrforge-test-url/notes.txt") == b"mine"
    finally:
        fs.rm("/inrforge-test-url", recursive=True)
    # a URL store is built in place: one whose build was interrupted is inrforge's own, built again
    from inrforge.store import BUILDING

    zarr.open_group("memory://inrforge-test-half", mode="w", attributes={BUILDING: {"pid": 1}})
    try:
        assert not is_store("memory://inrforge-test-half")
        assert len(make("memory://inrforge-test-half")) == 10
    finally:
        fs.rm("/inrforge-test-half", recursive=True)
    folder = tmp_path / "kept"
    folder.mkdir()
    (folder / "a.txt").write_text("mine")
    with pytest.raises(InrforgeError, match=rf"^{re.escape(str(folder))} exists and is not an inrforge store"):
        make(f"local://{folder}")
    assert (folder / "a.txt").read_text() == "mine"
    s = make(f"local://{tmp_path / 'new.zarr'}")
    assert s.path == str(tmp_path / "new.zarr") and is_store(tmp_path / "new.zarr")


@pytest.mark.parametrize("fail_at", ["params", "metrics/psnr", "metrics/failed"])
def test_a_write_that_dies_before_done_leaves_the_shard_pending(tmp_path, monkeypatch, fail_at):
    """write_shard writes ``done`` last: a writer killed while writing the params or the metrics
    leaves the shard pending (refitted on resume), never done with data missing.  (The SIGKILL
    test sees this only when its kill lands in that window.)"""
    import zarr

    s = make(tmp_path / "s.zarr")
    real = zarr.Array.__setitem__

    def dies(self, key, value):
        if self.path == fail_at:
            raise KeyboardInterrupt  # the process is killed mid-write
        return real(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", dies)
    with pytest.raises(KeyboardInterrupt):
        s.write_shard(shard_data(s, 1))
    monkeypatch.undo()
    assert not s.done().any() and s.pending_shards() == [0, 1, 2]


def test_a_shard_is_pending_unless_every_object_of_it_is_done(tmp_path):
    s = make(tmp_path / "s.zarr")
    for k in range(3):
        s.write_shard(shard_data(s, k))
    s.root["done"][5] = False  # one object of shard 1 (objects 4..7), as a hand edit might leave it
    assert s.pending_shards() == [1]
    assert not s.usable()[5].any() and s.usable()[4].all()


@pytest.mark.parametrize("labels", [np.arange(10) % 3, np.linspace(0, 1, 20, dtype=np.float32).reshape(10, 2)],
                         ids=["class-ids", "float-targets"])
def test_a_lost_labels_chunk_is_an_error_not_zeros(tmp_path, labels):
    """zarr writes no chunk equal to the fill value, so with a fill of 0 a lost labels chunk read as
    all-zero labels (training then reported 100 %).  Labels are filled with -1 / NaN, which no
    real label is, and reading one is an error, as is --verify's read."""
    s = make(tmp_path / "s.zarr", labels=labels)
    for k in range(s.n_shards):
        s.write_shard(shard_data(s, k))
    assert np.array_equal(open_store(s.path).labels, labels)
    os.remove(os.path.join(s.path, "labels", "c", *["0"] * labels.ndim))
    for read in (lambda t: t.labels, lambda t: t.damaged_shards()):
        with pytest.raises(InrforgeError, match=r"the labels of 10 object\(s\) are missing or invalid \(object 0 "
                                                r"first\); the store is damaged"):
            read(open_store(s.path))


def test_labels_of_unfinished_or_failed_objects_may_be_nan(tmp_path):
    """A classifier zoo's labels are its members' accuracies, NaN until fitted and for a failed one."""
    s = make(tmp_path / "s.zarr", labels=np.full(10, np.nan, np.float32))
    d = shard_data(s, 0)
    d.failed[1] = True
    s.write_shard(ShardData(d.start, d.params, d.psnr, d.loss, d.steps, d.failed,
                            labels=np.array([0.5, np.nan, 0.7, 0.1], np.float32)))
    read = open_store(s.path).labels
    assert np.isnan(read[1]) and np.isnan(read[4:]).all() and read[2] == np.float32(0.7)
    s.write_shard(ShardData(d.start, d.params, d.psnr, d.loss, d.steps, np.zeros_like(d.failed),
                            labels=np.array([0.5, np.nan, 0.7, 0.1], np.float32)))
    with pytest.raises(InrforgeError, match=r"the labels of 1 object\(s\) are missing or invalid \(object 1 first\)"):
        open_store(s.path).labels


@pytest.mark.parametrize("edit, words", [
    (None, r"indices missing \(a chunk of splits/ lost in a copy\?\)"),
    (np.array([0, 10]), r"indices outside \[0, 10\)"),
    (np.array([3, 3]), "an index twice"),
])
def test_a_damaged_split_is_an_error_naming_the_store(tmp_path, edit, words):
    s = finished(tmp_path / "s.zarr")
    if edit is None:
        os.remove(os.path.join(s.path, "splits", "test", "c", "0"))
    else:
        zarr.open_group(s.path, mode="r+")["splits/test"][...] = edit
    message = f"^{re.escape(s.path)}: split 'test' has {words}; the store is damaged$"
    for read in (lambda t: t.split("test"), lambda t: t.damaged_shards(), lambda t: t.info()):
        with pytest.raises(InrforgeError, match=message):
            read(open_store(s.path))
    assert np.array_equal(open_store(s.path).split("train"), np.arange(6))


def test_a_lost_metrics_chunk_is_a_damaged_shard(tmp_path):
    """A shard's PSNR (or loss) chunk gone reads as NaN for INRs that did not fail: --verify names
    the shard (and --repair refits it); a store that records no PSNR at all (an import) is not damaged."""
    s = finished(tmp_path / "s.zarr")
    assert s.damaged_shards() == []
    os.remove(os.path.join(s.path, "metrics", "psnr", "c", "1", "0"))
    assert open_store(s.path).damaged_shards() == [1]
    imported = make(tmp_path / "i.zarr")
    for k in range(imported.n_shards):
        d = shard_data(imported, k)
        unknown = np.full_like(d.psnr, np.nan)
        imported.write_shard(ShardData(d.start, d.params, unknown, unknown, d.steps, d.failed))
    assert imported.damaged_shards() == []


def test_verify_of_a_metrics_array_with_bad_metadata_is_one_line(tmp_path):
    s = finished(tmp_path / "s.zarr")
    meta = os.path.join(s.path, "metrics", "psnr", "zarr.json")
    d = json.load(open(meta))
    d["data_type"] = "string"
    json.dump(d, open(meta, "w"))
    with pytest.raises(InrforgeError) as e:
        open_store(s.path).damaged_shards()
    assert "\n" not in str(e.value) and "metrics" in str(e.value)


@pytest.mark.parametrize("part, key, value, what", [
    ("fit", "versions", "x", "an object of version strings"),
    ("fit", "resumed_with", "x", "a list of objects of version strings"),
    ("fit", "target_psnr", "40", "a number or null"),
    ("fit", "steps", 0, "a positive integer"),
    ("fit", "lr", None, "a positive number"),
    ("fit", "compile", "yes", "true or false"),
    ("fit", "shared_init", 1, "true or false"),
])
def test_malformed_recorded_settings_are_refused_on_opening(tmp_path, part, key, value, what):
    """A hand-edited fit attribute that a command reads (info, --reproduce, a resume) is one line
    when the store is opened, not a traceback in whichever command reads it."""
    s = make(tmp_path / "s.zarr")
    g = zarr.open_group(s.path, mode="r+")
    g.attrs[part] = {**g.attrs[part], "steps": 3, "lr": 1e-3, key: value}
    with pytest.raises(InrforgeError, match=rf"^{re.escape(s.path)}: attribute {part}\.{key} must be {what}, got "):
        open_store(s.path)


@pytest.mark.parametrize("grid", ["8x8", {"kind": "image", "height": "x", "width": 8},
                                  {"kind": "interval", "n_points": 10, "lo": "a", "hi": 1}, {"kind": 3}])
def test_a_malformed_grid_is_refused_on_opening(tmp_path, grid):
    s = make(tmp_path / "s.zarr")
    g = zarr.open_group(s.path, mode="r+")
    g.attrs["source"] = {**g.attrs["source"], "grid": grid}
    with pytest.raises(InrforgeError, match=rf"^{re.escape(s.path)}: attribute source.grid is malformed"):
        open_store(s.path)
    g.attrs["source"] = {**g.attrs["source"], "grid": {"kind": "image", "height": 8, "width": 8}}
    assert open_store(s.path).source["grid"]["height"] == 8
