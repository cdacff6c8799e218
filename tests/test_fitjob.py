"""The fit job around the fitter: resuming a store with the arguments it was made with."""

import re

import numpy as np
import pytest
import zarr

from inrforge import fit_inrs
from inrforge.errors import InrforgeError
import inrforge.fit
import inrforge.memory
from inrforge.fit import COMPILE_WORTH, default_batch_size, worth_compiling
from inrforge.sources import load_source

from storecheck import assert_same, snapshot


def test_resume_without_batch_size_keeps_the_stores(tmp_path):
    """A store fitted with a non-default batch size resumes with the same command minus
    ``--batch-size`` (e.g. started on a GPU, finished on a CPU) instead of being refused."""
    src = load_source("digits", limit=12)
    assert default_batch_size("cpu", len(src.coords)) != 5
    kw = dict(views=2, steps=3, compile=False, shard_objects=4, progress=False)
    fit_inrs(src, tmp_path / "ref.zarr", batch_size=5, **kw)
    part = tmp_path / "part.zarr"
    fit_inrs(src, part, batch_size=5, **kw)
    # undo the last shard (objects 8..11), as if the run had been killed before writing it
    g = zarr.open_group(str(part), mode="r+")
    g["done"][8:] = False
    g["params"][8:] = 0.0
    assert not snapshot(part)["done"].all()

    store = fit_inrs(src, part, **kw)  # no batch size: the store's 5 is reused, not refused
    assert store.attrs["fit"]["batch_size"] == 5
    assert_same(snapshot(tmp_path / "ref.zarr"), snapshot(part))  # the shard was really refitted

    with pytest.raises(InrforgeError, match="other arguments"):  # a different explicit one is refused
        fit_inrs(src, part, batch_size=7, **kw)


def test_worth_compiling_from_the_threshold_and_only_with_a_compiler(monkeypatch, tmp_path):
    assert not worth_compiling(COMPILE_WORTH - 1)
    assert worth_compiling(COMPILE_WORTH)  # g++ is on this machine (and CI's)
    assert worth_compiling(1, kernel="native")  # built once per machine: it always pays
    assert not worth_compiling(1, device="cuda", kernel="native")  # a GPU compiles with Inductor
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert not worth_compiling(10 * COMPILE_WORTH)  # the eager step then, never an error
    assert not worth_compiling(10 * COMPILE_WORTH, kernel="native")
    from inrforge import native

    bad = tmp_path / "cxx"  # a compiler that is there but cannot build the kernel
    bad.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bad 1' && exit 0\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("CXX", str(bad))
    monkeypatch.setenv("INRFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_LIB", None)
    assert not worth_compiling(1, kernel="native")


def test_compile_none_chooses_by_size_and_a_resume_keeps_the_stores_choice(tmp_path, monkeypatch):
    src = load_source("digits", limit=8)
    native = fit_inrs(src, tmp_path / "native.zarr", views=1, steps=2, compile=None, progress=False)
    assert native.attrs["fit"]["compile"] is True and native.attrs["fit"]["kernel"] == "native"  # always pays
    kw = dict(views=1, steps=2, compile=None, kernel="inductor", shard_objects=4, progress=False)
    small = fit_inrs(src, tmp_path / "small.zarr", **kw)  # 8 x 2 x 64 triples: eager
    assert small.attrs["fit"]["compile"] is False

    monkeypatch.setattr(inrforge.fit, "COMPILE_WORTH", 8 * 2 * 64)  # as if this fit were large
    part = tmp_path / "part.zarr"
    assert fit_inrs(src, part, **kw).attrs["fit"]["compile"] is True
    g = zarr.open_group(str(part), mode="r+")
    g["done"][4:] = False  # the last shard undone, as if killed before writing it
    monkeypatch.setattr(inrforge.fit, "COMPILE_WORTH", 10**8)
    # resumed with compile=None, where a new store would not compile: the store's choice is kept
    assert fit_inrs(src, part, **kw).attrs["fit"]["compile"] is True and snapshot(part)["done"].all()
    with pytest.raises(InrforgeError, match="fit.compile: store has True, now False"):
        fit_inrs(src, part, **{**kw, "compile": False})  # an explicit other choice is refused
    # replaced with other arguments: the new store's own choice, not the old one's
    assert fit_inrs(src, part, **{**kw, "steps": 3}, overwrite=True).attrs["fit"]["compile"] is False


def test_impossible_arguments_are_refused_before_a_store_exists(tmp_path):
    src = load_source("digits", limit=6)
    out = tmp_path / "s.zarr"
    for kw, msg in ((dict(steps=2.0), "--steps must be a positive integer, got 2.0"),
                    (dict(views=True), "--views must be a positive integer, got True"),
                    (dict(seed=-1), "--seed must be an integer >= 0, got -1"),
                    (dict(device=None), "unknown device None"),
                    (dict(arch="siren"), "fit_inrs needs an INRSpec as arch .*make_arch"),
                    (dict(views=10**8), "a shard of 6 objects x 100000000 views x 1,185 parameters per INR holds")):
        with pytest.raises(InrforgeError, match=msg):
            fit_inrs(src, out, **{"steps": 2, "compile": False, "progress": False, **kw})
        assert not out.exists()


def test_a_failed_overwrite_keeps_the_old_store(tmp_path):
    src = load_source("digits", limit=6)
    out = tmp_path / "s.zarr"
    fit_inrs(src, out, steps=2, compile=False, progress=False)
    before = snapshot(out)
    with pytest.raises(InrforgeError, match="test_fraction"):
        fit_inrs(src, out, steps=3, compile=False, progress=False, overwrite=True, test_fraction=1.5)
    assert_same(before, snapshot(out))


def test_the_batch_size_is_never_lowered_silently(tmp_path, monkeypatch):
    """A batch that does not fit in memory is refused (the batch size is part of the store's
    identity); the automatic one of a new store is capped before it is recorded."""
    import inrforge.memory as memory_module
    from inrforge.arch import make_arch
    from inrforge.fit import batch_bytes

    src = load_source("digits", limit=12)
    per_inr = batch_bytes(make_arch(), len(src.coords))
    monkeypatch.setattr(memory_module, "available_bytes", lambda: 2 * 7 * per_inr)  # room for 7 INRs
    with pytest.raises(InrforgeError, match="a batch of 10 INRs .* pass --batch-size 7 or less"):
        fit_inrs(src, tmp_path / "a.zarr", batch_size=10, steps=2, compile=False, progress=False)
    assert not (tmp_path / "a.zarr").exists()
    store = fit_inrs(src, tmp_path / "b.zarr", steps=2, compile=False, progress=False)
    assert store.attrs["fit"]["batch_size"] == 7


def test_an_overwrite_gets_a_new_stores_batch_size_not_the_old_ones(tmp_path):
    src = load_source("digits", limit=6)
    kw = dict(steps=2, compile=False, progress=False)
    fit_inrs(src, tmp_path / "s.zarr", batch_size=5, **kw)
    replaced = fit_inrs(src, tmp_path / "s.zarr", seed=3, overwrite=True, **kw)
    fresh = fit_inrs(src, tmp_path / "fresh.zarr", seed=3, **kw)
    assert replaced.attrs["fit"]["batch_size"] == fresh.attrs["fit"]["batch_size"] != 5
    assert fit_inrs(src, tmp_path / "s.zarr", seed=3, **kw).attrs["fit"]["batch_size"] != 5  # and it resumes


def test_compiling_without_a_compiler_is_refused_before_a_store_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    with pytest.raises(InrforgeError, match="a compiled fitting step needs a C\\+\\+ compiler .*or pass --no-compile"):
        fit_inrs(load_source("digits", limit=3), tmp_path / "s.zarr", steps=2, compile=True, progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.filterwarnings("ignore:source 'sines' has only 12 objects")
def test_a_limit_beyond_the_source_is_the_same_fit_as_none(tmp_path):
    """--limit N keeps the first N objects, so any N >= the source's size is the same store as no
    limit: a re-run with another such N, or with none, resumes it (source.n_objects is compared)."""
    kw = dict(steps=2, compile=False, progress=False)
    out = tmp_path / "s.zarr"
    store = fit_inrs(load_source("sines", n=12, limit=1000), out, **kw)
    before = snapshot(out)
    for limit in (500, None, 12):
        assert fit_inrs(load_source("sines", n=12, limit=limit), out, **kw).identity() == store.identity()
    assert_same(before, snapshot(out))
    with pytest.raises(InrforgeError, match="source.n_objects: store has 12, now 11"):
        fit_inrs(load_source("sines", n=12, limit=11), out, **kw)


def test_matching_store_resumes_refuses_or_leaves_the_place_to_a_new_store(tmp_path):
    """The one resume check of fit_inrs and fit_zoo: the store made with the same arguments is
    opened for writing; another is refused in one line (without overwrite) or left to be replaced."""
    from inrforge.fitjob import identity_differences, matching_store, store_identity

    out = tmp_path / "s.zarr"
    assert matching_store(out, {}, overwrite=False) is None and not out.exists()  # nothing there yet
    store = fit_inrs(load_source("digits", limit=4), out, steps=2, compile=False, progress=False)
    before = snapshot(out)
    same = store_identity(store)
    opened = matching_store(out, same, overwrite=False)
    assert opened.mode == "r+" and opened.identity() == store.identity()
    # what does not change the numbers is not compared: versions, threads, and a limit (n_objects is)
    loose = {**same, "fit": {**same["fit"], "versions": {"torch": "0"}, "threads": 99},
             "source": {**same["source"], "params": {**same["source"]["params"], "limit": 1000}}}
    assert identity_differences(store, loose) == [] and matching_store(out, loose, overwrite=False) is not None
    other = {**same, "fit": {**same["fit"], "steps": 3}, "views": 2}
    assert identity_differences(store, other) == ["fit.steps: store has 2, now 3", "views: store has 1, now 2"]
    with pytest.raises(InrforgeError, match=r"s.zarr holds a store fitted with other arguments \(fit.steps: store has "
                                            r"2, now 3; views: store has 1, now 2\); pass --overwrite to replace it "
                                            r"or choose another --out$"):
        matching_store(out, other, overwrite=False)
    assert matching_store(out, other, overwrite=True) is None  # to be replaced by the caller's new store
    assert_same(before, snapshot(out))  # nothing written either way
    (tmp_path / "file").write_text("x")
    with pytest.raises(InrforgeError, match="exists and is not an inrforge store"):
        matching_store(tmp_path / "file", same, overwrite=True)


def _finished_pair(tmp_path):
    """Two finished stores of the same 8 digits (shards of 4): ``ref.zarr`` to compare with, and
    ``part.zarr`` to tamper with; returns the source, the fit arguments, ``ref`` and part's path."""
    src = load_source("digits", limit=8)
    kw = dict(steps=2, compile=False, shard_objects=4, progress=False)
    ref = fit_inrs(src, tmp_path / "ref.zarr", **kw)
    fit_inrs(src, tmp_path / "part.zarr", **kw)
    return src, kw, ref, tmp_path / "part.zarr"


def _as_if_fitted_by(path, **versions):
    """Rewrite a store's recorded versions, as a store begun under other software would have them."""
    g = zarr.open_group(str(path), mode="r+")
    fit = dict(g.attrs["fit"])
    fit["versions"] = {**fit["versions"], **versions}
    g.attrs["fit"] = fit


def test_a_resume_under_another_torch_or_inrforge_is_refused_unless_allowed(tmp_path):
    """A store's shards would otherwise mix two versions' numbers while its attributes named one."""
    from inrforge.fitjob import library_versions
    from inrforge.store import open_store

    src, kw, ref, part = _finished_pair(tmp_path)
    _as_if_fitted_by(part, torch="2.11.0+cu126")
    assert fit_inrs(src, part, **kw).fit_settings["versions"]["torch"] == "2.11.0+cu126"  # finished: nothing to fit
    zarr.open_group(str(part), mode="r+")["done"][4:] = False  # the last shard, as if killed before writing it
    before = snapshot(part)
    with pytest.raises(InrforgeError, match=r"part.zarr was fitted so far with other software \(torch 2.11.0\+cu126 "
                                            r"-> [^)]+\), whose numbers may differ in the last bits; pass "
                                            r"--allow-version-change to fit its remaining shards anyway .*, or --overwrite to "
                                            r"fit the whole store again with this software$"):
        fit_inrs(src, part, **kw)
    assert_same(before, snapshot(part))  # nothing written
    store = fit_inrs(src, part, allow_version_change=True, **kw)
    assert store.fit_settings["resumed_with"] == [library_versions()]  # the store says it is mixed
    assert_same(snapshot(ref.path), snapshot(part))  # (here torch did not really change: the same numbers)
    # once recorded, this software may fit more shards of the store; another inrforge may not
    zarr.open_group(str(part), mode="r+")["done"][4:] = False
    fit_inrs(src, part, **kw)
    assert open_store(part).fit_settings["resumed_with"] == [library_versions()]  # not recorded twice
    _as_if_fitted_by(part, inrforge="0.0.1")
    zarr.open_group(str(part), mode="r+")["done"][4:] = False
    fit_inrs(src, part, **kw)  # this inrforge and torch are those of the resumed_with entry


def test_repair_under_another_version_is_refused_before_it_deletes(tmp_path):
    import os

    from storecheck import shard_files

    src = load_source("digits", limit=8)
    kw = dict(steps=2, compile=False, shard_objects=4, progress=False)
    part = fit_inrs(src, tmp_path / "part.zarr", **kw)
    _as_if_fitted_by(part.path, inrforge="0.0.1")
    damaged = sorted(shard_files(part.path))[-1]
    with open(damaged, "r+b") as f:
        f.truncate(10)
    files = shard_files(part.path)
    with pytest.raises(InrforgeError, match=r"fitted so far with other software \(inrforge 0.0.1 -> .*; pass "
                                            r"--allow-version-change to refit its damaged shards anyway \(the store "
                                            r"then records it in fit.resumed_with\)$"):  # --overwrite would not help
        fit_inrs(src, part.path, repair=True, overwrite=True, **kw)
    assert shard_files(part.path) == files and os.path.getsize(damaged) == 10  # nothing deleted or refitted
    with pytest.warns(UserWarning, match="refitting damaged shard 1"):
        fit_inrs(src, part.path, repair=True, allow_version_change=True, **kw)
    assert os.path.getsize(damaged) > 10


def test_refit_shard_reproduces_a_stored_shard_bit_for_bit(tmp_path):
    """An INR's numbers depend on its batch's size, so the shard is the unit of reproduction: its
    refit from the recorded settings and description equals what the store holds."""
    from inrforge.fitjob import refit_shard

    store = fit_inrs(load_source("digits", limit=10), tmp_path / "s.zarr", views=2, steps=5, lr=1e-3, compile=False,
                     shard_objects=4, batch_size=3, progress=False)  # batches of 3, 3 and 2 INRs per shard of 8
    for k in (1, 2):  # a whole shard and the short last one
        data = refit_shard(store, k)
        start, stop = store.shard_range(k)
        np.testing.assert_array_equal(data.params, store.read_flat(slice(start, stop), view=None))
        for name in ("psnr", "loss", "steps", "failed"):
            np.testing.assert_array_equal(getattr(data, name), store.metric(name)[start:stop], err_msg=name)
    with pytest.raises(InrforgeError, match=r"shard 3 out of range: the store has 3 shards"):
        refit_shard(store, 3)
    with pytest.raises(InrforgeError, match=r"the source's data changed since the fit: it now has 12 objects, "
                                            r"the store has 10$"):
        refit_shard(store, 0, source=load_source("digits", limit=12))


def test_a_compiled_cpu_fit_records_its_compiler_and_a_resume_under_another_is_refused(tmp_path, monkeypatch,
                                                                                        capsys):
    """The compiled CPU step (native or Inductor's) is C++ built here: another compiler may round
    differently, so a compiled CPU store records it (``fit.versions.cxx``) and a resume under another
    is refused like one under another torch.  An uncompiled store does not depend on it; a store
    written before 0.6.0 records none and resumes as before."""
    import inrforge.fitjob as fitjob
    from inrforge.native import compiler_identity

    src = load_source("digits", limit=8)
    kw = dict(steps=2, shard_objects=4, progress=False)
    ref = fit_inrs(src, tmp_path / "ref.zarr", **kw)
    assert ref.fit_settings["versions"]["cxx"] == compiler_identity() and compiler_identity().strip()
    assert "cxx" not in fit_inrs(src, tmp_path / "eager.zarr", compile=False, **kw).fit_settings["versions"]
    from inrforge.cli import main

    assert main(["info", str(ref.path)]) == 0 and main(["info", str(tmp_path / "eager.zarr")]) == 0
    software = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("software ")]
    assert software[0].endswith(f", C++ {compiler_identity()}") and "C++" not in software[1], software
    part = tmp_path / "part.zarr"
    fit_inrs(src, part, **kw)
    zarr.open_group(str(part), mode="r+")["done"][4:] = False  # the last shard, as if killed before writing it
    monkeypatch.setattr(fitjob, "compiler_identity", lambda: "g++ (GCC) 99.1.0")
    before = snapshot(part)
    with pytest.raises(InrforgeError, match=r"part.zarr was fitted so far with other software \(cxx '[^']+' -> "
                                            r"'g\+\+ \(GCC\) 99.1.0'\), whose numbers may differ"):
        fit_inrs(src, part, **kw)
    assert_same(before, snapshot(part))  # nothing written
    # a store from before 0.6.0 (no cxx recorded) resumes under any compiler
    g = zarr.open_group(str(part), mode="r+")
    g.attrs["fit"] = {**g.attrs["fit"], "versions": {k: v for k, v in g.attrs["fit"]["versions"].items() if k != "cxx"}}
    fit_inrs(src, part, **kw)
    assert_same(snapshot(ref.path), snapshot(part))


def test_an_uncompiled_fit_resumes_whatever_kernel_is_named(tmp_path):
    """Without compilation the kernel decides nothing: a --no-compile store (which records the
    default, native) resumes under --kernel inductor --no-compile, and the reverse."""
    src = load_source("digits", limit=8)
    kw = dict(steps=2, compile=False, shard_objects=4, progress=False)
    ref = fit_inrs(src, tmp_path / "ref.zarr", **kw)
    assert ref.fit_settings["kernel"] == "native"
    for first, then in (("native", "inductor"), ("inductor", "native")):
        part = tmp_path / f"{first}.zarr"
        fit_inrs(src, part, kernel=first, **kw)
        zarr.open_group(str(part), mode="r+")["done"][4:] = False
        assert fit_inrs(src, part, kernel=then, **kw).fit_settings["kernel"] == first  # resumed, as recorded
        assert_same(snapshot(ref.path), snapshot(part))
    with pytest.raises(InrforgeError, match=r"fit.compile: store has False, now True"):
        fit_inrs(src, tmp_path / "ref.zarr", kernel="inductor", steps=2, compile=True, shard_objects=4, progress=False)


def test_overwrite_fits_a_store_begun_with_other_software_again_whole(tmp_path):
    """The refusal offers --overwrite: with the same arguments it must then start the store again
    (it used to resume it and be refused again), and only while the store has shards left to fit."""
    from inrforge.fitjob import library_versions
    from inrforge.store import open_store

    src, kw, ref, part = _finished_pair(tmp_path)
    _as_if_fitted_by(part, torch="2.11.0+cu126")
    assert fit_inrs(src, part, overwrite=True, **kw).fit_settings["versions"]["torch"] == "2.11.0+cu126"  # finished
    g = zarr.open_group(str(part), mode="r+")
    g["done"][4:] = False
    g["params"][0] = 0.0  # a finished shard's numbers, which a resume would keep
    store = fit_inrs(src, part, overwrite=True, **kw)
    assert store.fit_settings["versions"] == library_versions() and "resumed_with" not in store.fit_settings
    assert_same(snapshot(ref.path), snapshot(part))  # fitted again from the start
    assert open_store(part).done().all()


def test_the_memory_check_counts_the_batch_a_shard_really_builds(monkeypatch):
    """A shard of 256 objects never builds a batch of 8192 INRs (the GPU default): a Dask worker
    refused every shard of a 784-point source on cards with less than ~39 GiB free."""
    import inrforge.fitjob as fitjob
    from inrforge.arch import make_arch
    from inrforge.fit import FitSettings

    monkeypatch.setattr(fitjob, "memory_batch_limit", lambda arch, n, device: 300)
    settings = FitSettings(batch_size=8192, device="cpu")
    assert fitjob.require_memory(settings, make_arch(), 784, shard_inrs=256) is settings
    with pytest.raises(InrforgeError, match=r"^a batch of 400 INRs of 784 points needs about .* GiB, more than this "
                                            r"CPU has to spare \(about 300 INRs fit\); pass --batch-size 300 or less"):
        fitjob.require_memory(settings, make_arch(), 784, shard_inrs=400)


def test_a_store_records_the_device_type_not_its_index(tmp_path):
    """cuda:1 and cuda fit the same numbers; a store recorded one spelling and refused the other."""
    from inrforge.fitjob import prepare_fit

    plan = prepare_fit(load_source("digits", limit=4), tmp_path / "s.zarr", device="cuda:1", compile=False,
                       fit_here=False)  # a driver whose workers fit: the device is not needed here
    assert plan.store.fit_settings["device"] == "cuda" and plan.settings["device"] == "cuda:1"


def test_a_gpu_fit_warns_when_its_shards_are_smaller_than_a_batch(tmp_path):
    """A step never spans two shards: a GPU store's shards hold at least one batch by default, and
    a --shard-size that caps every step at fewer INRs than the batch is warned about."""
    import warnings as w

    from inrforge.fitjob import prepare_fit

    src = load_source("digits", limit=300)
    with pytest.warns(UserWarning, match=r"a shard holds 256 INRs \(256 objects x 1 views\), fewer than the batch "
                                         r"size 8192: every step fits at most 256 INRs; for a GPU pass --shard-size "
                                         r"8192 or more"):
        prepare_fit(src, tmp_path / "a.zarr", device="cuda", compile=False, fit_here=False, create=False,
                    shard_objects=256)
    with w.catch_warnings():
        w.simplefilter("error")  # one batch per shard by default, and a CPU fit's small batches: no warning
        for views, shard in ((1, 8192), (3, 2731)):  # ceil(8192 / views) objects
            plan = prepare_fit(src, tmp_path / "b.zarr", device="cuda", compile=False, fit_here=False, create=False,
                               views=views)
            assert plan.shard_objects == shard
        plan = prepare_fit(src, tmp_path / "c.zarr", device="cuda", batch_size=64, compile=False, fit_here=False,
                           create=False)
        assert plan.shard_objects == 256  # never fewer than the CPU's
        assert prepare_fit(src, tmp_path / "d.zarr", compile=False, create=False).shard_objects == 256


def test_a_resume_that_leaves_the_shard_size_to_its_default_keeps_the_stores(tmp_path):
    """Like the batch size: a store begun with --shard-size 8 is resumed by a run that gives none
    (it was refused as a run with other arguments), and refused with another explicit size."""
    from inrforge.fitjob import prepare_fit

    src = load_source("digits", limit=20)
    out = tmp_path / "s.zarr"
    store = fit_inrs(src, out, steps=2, shard_objects=8, compile=False, batch_size=4)
    store.reopen_shards([1])
    plan = prepare_fit(src, out, steps=2, compile=False, batch_size=4)
    assert plan.shard_objects == 8 and plan.store.pending_shards() == [1]
    with pytest.raises(InrforgeError, match=r"shard_objects: store has 8, now 16"):
        prepare_fit(src, out, steps=2, compile=False, batch_size=4, shard_objects=16)
    replaced = prepare_fit(src, out, steps=3, compile=False, batch_size=4, overwrite=True)  # not the old one's
    assert replaced.shard_objects == 256 and replaced.store.shard_objects == 20


@pytest.mark.parametrize("official", [False, True])
def test_make_splits_is_a_seeded_partition_that_keeps_the_official_test_set(official):
    """No object in two splits (a test object in train would leak), every object in one, the
    sizes from the fractions, the dataset's own test items as the test split, and the seed's draw."""
    from inrforge.fitjob import make_splits

    class Src:  # what make_splits reads of a source
        def __init__(self, n, test):
            self.n, self.official_test = n, np.asarray(test, dtype=np.int64)

        def __len__(self):
            return self.n

    src = Src(100, np.arange(80, 100) if official else [])
    sp = make_splits(src, seed=1, val_fraction=0.1, test_fraction=0.2)
    tr, va, te = sp["train"], sp["val"], sp["test"]
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(100))  # a partition
    assert all(np.array_equal(x, np.sort(x)) for x in (tr, va, te))
    assert (len(tr), len(va), len(te)) == (72, 8, 20)
    if official:
        assert np.array_equal(te, np.arange(80, 100))
    again = make_splits(src, seed=1, val_fraction=0.1, test_fraction=0.2)
    other = make_splits(src, seed=2, val_fraction=0.1, test_fraction=0.2)
    assert all(np.array_equal(sp[k], again[k]) for k in sp)
    assert not np.array_equal(sp["val"], other["val"])


def test_every_recorded_setting_that_decides_the_numbers_is_compared(tmp_path):
    """Each fit setting and source option a store records, changed alone, is one difference: a
    resume with another --lr or another source option is refused.  Driven by the recorded keys,
    so a setting added later is covered too; only the documented informational ones are not (and
    the kernel of an uncompiled fit: test_an_uncompiled_fit_resumes_whatever_kernel_is_named)."""
    import copy

    from inrforge.fitjob import _INFORMATIONAL, identity_differences, store_identity

    src = load_source("sines", n=4, n_points=16)
    store = fit_inrs(src, tmp_path / "s.zarr", steps=2, compile=True, progress=False)
    same = store_identity(store)
    assert identity_differences(store, same) == []
    keys = [("fit", k) for k in same["fit"] if k not in _INFORMATIONAL]
    keys += [("source.params", k) for k in same["source"]["params"] if k != "limit"]
    assert {("fit", "lr"), ("fit", "seed"), ("fit", "target_psnr"), ("fit", "test_fraction"),
            ("source.params", "n")} <= set(keys)
    for part, key in keys:
        changed = copy.deepcopy(same)
        node = changed
        for p in part.split("."):
            node = node[p]
        node[key] = "changed"
        diffs = identity_differences(store, changed)
        assert len(diffs) == 1 and diffs[0].startswith(f"{part}.{key}: store has "), (part, key, diffs)


def test_each_view_of_each_object_starts_from_its_own_seeded_init():
    """View v of object i starts from inr_seed(seed, i, v): views are different INRs of one object
    (a resume or refit test, comparing the code with itself, would not see them all start alike)."""
    import torch

    from inrforge.arch import make_arch
    from inrforge.fit import FitSettings, inr_seed
    from inrforge.fitjob import fit_shard

    arch = make_arch(hidden=8)
    src = load_source("digits", limit=3)
    s = FitSettings(steps=1, lr=1e-9, target_psnr=None, batch_size=4, compile=False)  # one tiny step: ~ the init
    d = fit_shard(arch, src, 0, 3, views=2, seed=5, settings=s)
    want = arch.init_flat([inr_seed(5, i, v) for i in range(3) for v in range(2)]).reshape(3, 2, -1)
    torch.testing.assert_close(torch.from_numpy(d.params), want, rtol=0, atol=1e-6)
    assert not torch.equal(want[:, 0], want[:, 1])


# ----- bad input: one line, before a store exists ---------------------------------------------
def fit_cli(out, *extra):
    """``inrforge fit`` of 3 tiny sines (2 steps, eager, quiet) into ``out``: its exit status."""
    from inrforge.cli import main

    return main(["fit", "--source", "sines", "--source-opt", "n=3", "--source-opt", "n_points=16", "--steps", "2",
                 "--no-compile", "--quiet", "--out", str(out), *extra])


def test_one_inr_too_large_for_memory_is_refused_before_a_store_exists(tmp_path, capsys, monkeypatch):
    """The batch limit never goes below 1, so an INR that does not fit even alone got through, and
    the kernel killed the fit without a word (n_points=1e8: 150 GiB a step).  It is refused in one
    line naming the points and the memory, before a store is created or replaced."""
    from inrforge.cli import main
    from inrforge.arch import make_arch
    from inrforge.fit import FitSettings
    from inrforge.fitjob import require_memory

    monkeypatch.setattr(inrforge.memory, "available_bytes", lambda: 20 << 30)  # a budget of 10 GiB
    with pytest.raises(InrforgeError, match=r"^one INR of 100,000,000 points needs about 147.5 GiB to fit, more than "
                                            r"this CPU has to spare \(about 10.0 GiB\); fit fewer points per object "
                                            r"\(a smaller image size or sines n_points\)$"):
        require_memory(FitSettings(batch_size=1, compile=False), make_arch(in_features=1), 10**8)  # no allocation
    out = tmp_path / "s.zarr"
    assert fit_cli(out) == 0
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr(inrforge.memory, "available_bytes", lambda: 64 << 20)  # a budget of 32 MiB
    code = main(["fit", "--source", "sines", "--source-opt", "n=3", "--source-opt", "n_points=100000", "--steps", "2",
                 "--no-compile", "--quiet", "--overwrite", "--out", str(out)])
    assert code == 1 and capsys.readouterr().err == (
        "inrforge fit: error: one INR of 100,000 points needs about 151 MiB to fit, more than this CPU has to spare "
        "(about 32 MiB); fit fewer points per object (a smaller image size or sines n_points)\n")
    assert_same(before, snapshot(out))  # the store --overwrite would have replaced is untouched
    new = tmp_path / "new.zarr"
    assert fit_cli(new, "--source-opt", "n_points=100000") == 1 and not new.exists()


def test_stored_values_are_named_as_the_stores_not_as_options_never_given(tmp_path):
    """A bad value read from a store is reported as the store's attribute: "--batch-size must be a
    positive integer, got 0" blamed an option the command did not have."""
    from inrforge.fit import FitSettings
    from inrforge.fitjob import refit_shard
    from inrforge.sources import source_from_description

    src = load_source("digits", limit=4)
    kw = dict(steps=2, compile=False, progress=False)
    out = tmp_path / "s.zarr"
    store = fit_inrs(src, out, **kw)
    group = zarr.open_group(str(out), mode="r+")
    good = dict(group.attrs["fit"])
    group.attrs["fit"] = {**good, "seed": 2**63}
    with pytest.raises(InrforgeError, match=rf"^{out}: the recorded fit.seed must be below 2\*\*63, "
                                            r"got 9223372036854775808$"):
        refit_shard(inrforge.open_store(str(out)), 0)  # info --reproduce
    group.attrs["fit"] = {**good, "batch_size": 0}
    with pytest.raises(InrforgeError, match=rf"^{out}: .*fit.batch_size must be a positive integer, got 0") as e:
        fit_inrs(src, out, **kw)  # a resume that gives no batch size reuses the store's
    assert "--batch-size" not in str(e.value)
    for change, message in (({"steps": "20"}, "fit.steps must be a positive integer, got '20'"),
                            ({"lr": -1}, "fit.lr must be a positive number, got -1"),
                            ({"target_psnr": "40"}, "fit.target_psnr must be a number, got '40'"),
                            ({"compile": 1}, "fit.compile must be True or False, got 1"),
                            ({"lr_schedule": "linear"}, "fit.lr_schedule must be one of constant, cosine, got 'linear'"),
                            ({"first_layer_lr": 0}, "fit.first_layer_lr must be a positive number, got 0"),
                            ({"shared_init": 1}, "fit.shared_init must be True or False, got 1"),
                            ({"kernel": "cuda"}, "fit.kernel must be one of native, inductor, got 'cuda'")):
        with pytest.raises(InrforgeError) as e:
            FitSettings.recorded({**good, **change}, "S")  # what refit_shard reads
        assert str(e.value) == f"S: the recorded {message}"
    with pytest.raises(InrforgeError, match=r"^S: the recorded fit attributes lack steps, lr \(a damaged store\?\)$"):
        FitSettings.recorded({k: v for k, v in good.items() if k not in ("steps", "lr")}, "S")
    assert FitSettings.recorded(good, "S", device="cpu") == FitSettings(steps=2, batch_size=good["batch_size"],
                                                                        compile=False)
    fast = {**good, "lr": 5e-3, "lr_schedule": "cosine", "first_layer_lr": 10.0}
    assert FitSettings.recorded(fast, "S", device="cpu") == FitSettings(
        steps=2, lr=5e-3, lr_schedule="cosine", first_layer_lr=10.0, batch_size=good["batch_size"], compile=False)
    # a store written before the schedule and the first layer's factor were recorded used neither
    legacy = {k: v for k, v in fast.items() if k not in ("lr_schedule", "first_layer_lr")}
    assert FitSettings.recorded(legacy, "S", device="cpu") == FitSettings(
        steps=2, lr=5e-3, lr_schedule="constant", first_layer_lr=1.0, batch_size=good["batch_size"], compile=False)
    with pytest.raises(InrforgeError, match=r"^the store's recorded source.params.limit must be a positive integer, "
                                            r"got '20'$"):
        source_from_description({**store.source, "params": {"limit": "20"}})


def test_fit_threads_and_seed_are_capped_as_trains_are(tmp_path, capsys, monkeypatch):
    """--threads gets --workers' and local:N's cap (4 per core), and --seed train's (below 2**63)."""
    import inrforge.checks

    monkeypatch.setattr(inrforge.checks, "usable_cores", lambda: 2)
    out = tmp_path / "s.zarr"
    assert fit_cli(out, "--threads", "9") == 1 and capsys.readouterr().err == (
        "inrforge fit: error: --threads is 9, more than this machine's 2 cores can run (at most 8, 4 per core)\n")
    assert fit_cli(out, "--seed", str(2**63)) == 1 and capsys.readouterr().err == (
        "inrforge fit: error: --seed must be below 2**63, got 9223372036854775808\n")
    assert not out.exists()
    assert fit_cli(out, "--threads", "1", "--seed", str(2**63 - 1)) == 0


def test_api_arguments_of_the_wrong_type_are_one_line_errors(tmp_path, monkeypatch):
    """fit_inrs(src, None) made a store in a folder named None; threads="2" and val_fraction="0.1"
    were TypeErrors; a NaN fraction was reported as a store mismatch."""
    src = load_source("digits", limit=4)
    kw = dict(steps=2, compile=False, progress=False)
    monkeypatch.chdir(tmp_path)
    for out in (None, 123, ""):
        with pytest.raises(InrforgeError, match=rf"^out must be a store path \(a str or os.PathLike\), got {out!r}$"):
            fit_inrs(src, out, **kw)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InrforgeError, match=r"^--threads must be a positive integer, got '2'$"):
        fit_inrs(src, "s.zarr", threads="2", **kw)
    with pytest.raises(InrforgeError, match=r"^val_fraction must be in \[0, 1\), got '0.1'$"):
        fit_inrs(src, "s.zarr", val_fraction="0.1", **kw)
    fit_inrs(src, "s.zarr", **kw)
    with pytest.raises(InrforgeError, match=r"^val_fraction must be in \[0, 1\), got nan$"):
        fit_inrs(src, "s.zarr", val_fraction=float("nan"), **kw)


def test_a_target_psnr_of_0_db_or_less_is_refused_for_targets_in_0_1_and_warned_about_for_sines(tmp_path, capsys):
    """Targets in [0, 1] have an MSE of about 1 (0 dB) or less from the start: a target <= 0 dB
    stopped every INR at its first step and the fit "succeeded".  A sine of amplitude up to 10 can
    start far below 0 dB, so there the target is legitimate and only the MSE it stops at is said."""
    kw = dict(steps=2, compile=False, progress=False)
    for target in (0.0, -5.0, -1e308):
        shown = re.escape(format(target, "g"))
        with pytest.raises(InrforgeError, match=rf"^--target-psnr {shown} dB would stop every INR at its first step: "
                                                r"source 'digits' has targets in \[0, 1\], whose MSE is about 1 "
                                                r"\(0 dB\) or less from the start; give a PSNR above 0, or 'none' for "
                                                r"no early stop$"):
            fit_inrs(load_source("digits", limit=3), tmp_path / "d.zarr", target_psnr=target, **kw)
    assert not (tmp_path / "d.zarr").exists()
    with pytest.warns(UserWarning, match=r"^--target-psnr -5 dB stops an INR once its MSE is 3.16 or less \(PSNR = "
                                         r"10 log10\(1 / MSE\); source 'sines' has raw targets, not in \[0, 1\]\)$"):
        store = fit_inrs(load_source("sines", n=3, n_points=16), tmp_path / "s.zarr", target_psnr=-5.0, **kw)
    assert store.done().all()
    assert fit_cli(tmp_path / "c.zarr", "--target-psnr=-5") == 0
    assert capsys.readouterr().err.startswith("inrforge fit: warning: --target-psnr -5 dB stops an INR once its MSE is")


def test_a_limit_beyond_the_source_says_so_in_one_line(tmp_path, capsys):
    assert fit_cli(tmp_path / "s.zarr", "--limit", "9") == 0
    assert capsys.readouterr().err == ("inrforge fit: warning: source 'sines' has only 3 objects, fewer than "
                                       "--limit 9: using all of them\n")


def test_a_store_whose_attributes_cannot_be_read_is_replaced_only_with_overwrite(tmp_path):
    """A hand-edited store that no longer opens: the fit says why and how to replace it; with
    --overwrite it is fitted anew (it could otherwise only be deleted by hand)."""
    import re

    src = load_source("digits", limit=6)
    out = tmp_path / "s.zarr"
    kw = dict(steps=2, compile=False, progress=False)
    fit_inrs(src, out, **kw)
    g = zarr.open_group(str(out), mode="r+")
    g.attrs["fit"] = {**g.attrs["fit"], "versions": "edited"}
    with pytest.raises(InrforgeError, match=rf"^{re.escape(str(out))}: attribute fit\.versions must be an object of "
                                            rf"version strings, got .*; pass --overwrite to replace it or choose another "
                                            rf"--out$"):
        fit_inrs(src, out, **kw)
    store = fit_inrs(src, out, overwrite=True, **kw)
    assert store.done().all() and isinstance(store.attrs["fit"]["versions"], dict)


# ----- the fit options: FitRequest, the recipe, stores written before its settings ------------
def test_a_misspelt_fit_option_is_a_type_error_naming_it_before_anything_is_written(tmp_path):
    from inrforge.distributed import fit_inrs_distributed
    from inrforge.fitjob import FIT_OPTIONS, prepare_fit

    src = load_source("digits", limit=4)
    for fn, name in ((fit_inrs, "fit_inrs"), (prepare_fit, "prepare_fit"),
                     (lambda *a, **k: fit_inrs_distributed("local:1", *a, **k), "fit_inrs_distributed")):
        with pytest.raises(TypeError, match=rf"^{name}\(\) got unexpected keyword argument\(s\) step, stepz; the fit "
                                            rf"options are arch, views, steps, lr, lr_schedule, first_layer_lr, "):
            fn(src, tmp_path / "s.zarr", step=2, stepz=3)
    from inrforge.fitjob import FitRequest

    with pytest.raises(TypeError, match="^prepare_fit takes a FitRequest or its fields as keywords, not both$"):
        prepare_fit(src, tmp_path / "s.zarr", FitRequest(steps=2), steps=7)
    with pytest.raises(TypeError, match="^prepare_fit: request must be a FitRequest, not dict$"):
        prepare_fit(src, tmp_path / "s.zarr", {"steps": 2})
    assert not (tmp_path / "s.zarr").exists()
    assert {"steps", "lr", "lr_schedule", "first_layer_lr", "overwrite", "threads"} <= set(FIT_OPTIONS)


def test_the_schedule_and_the_first_layers_lr_are_recorded_and_checked(tmp_path):
    src = load_source("digits", limit=2)
    default = fit_inrs(src, tmp_path / "d.zarr", steps=2, compile=False, progress=False)
    fast = fit_inrs(src, tmp_path / "f.zarr", steps=2, lr_schedule="cosine", first_layer_lr=10,
                    compile=False, progress=False)
    pick = lambda st: tuple(st.fit_settings[k] for k in ("lr", "lr_schedule", "first_layer_lr"))  # noqa: E731
    assert pick(default) == (5e-4, "constant", 1.0)  # the DWSNets recipe
    assert pick(fast) == (5e-4, "cosine", 10.0)
    assert not np.array_equal(default.params[:], fast.params[:])  # the same lr: the two settings did it
    assert fast.fit_summary()["fit_lr_schedule"] == "cosine" and fast.fit_summary()["fit_first_layer_lr"] == 10.0
    for bad, message in (({"lr_schedule": "linear"}, r"^--lr-schedule must be one of constant, cosine, got 'linear'$"),
                         ({"first_layer_lr": 0}, r"^--first-layer-lr must be a positive number, got 0$"),
                         ({"first_layer_lr": float("inf")}, r"^--first-layer-lr must be a positive number, got inf$"),
                         ({"first_layer_lr": 10**400}, r"^--first-layer-lr must be a positive number, got 1000"),
                         ({"lr": 10**400}, r"^--lr must be a positive number, got 1000")):
        with pytest.raises(InrforgeError, match=message):
            fit_inrs(src, tmp_path / "bad.zarr", steps=2, compile=False, **bad)
    assert not (tmp_path / "bad.zarr").exists()


def test_shared_init_starts_every_object_from_object_0s_init_and_is_recorded(tmp_path, capsys):
    """With shared_init, view v of every object is fitted from inr_seed(seed, 0, v): each INR equals a
    one-INR fit from that init bit for bit (batch 1, eager), object 0 is the same INR as without it,
    and the others are not.  The setting is recorded, compared on resume and shown by info."""
    from inrforge.fit import FitSettings, fit_batch, inr_seed

    src = load_source("digits", limit=3)
    kw = dict(views=2, steps=3, lr=5e-3, batch_size=1, compile=False, progress=False)
    shared = fit_inrs(src, tmp_path / "s.zarr", shared_init=True, **kw)
    own = fit_inrs(src, tmp_path / "o.zarr", **kw)
    settings = FitSettings(steps=3, lr=5e-3, batch_size=1, compile=False)
    for i in range(3):
        for v in range(2):
            init = shared.arch.init_flat([inr_seed(0, 0, v)])
            alone = fit_batch(shared.arch, init, src.coords, src.targets(np.array([i])), settings).params
            assert np.array_equal(shared.params[i, v], alone[0].numpy()), (i, v)
    assert np.array_equal(shared.params[0], own.params[0])
    assert not np.array_equal(shared.params[1:], own.params[1:])
    assert not np.array_equal(shared.params[:, 0], shared.params[:, 1])  # the views still differ
    assert shared.fit_settings["shared_init"] is True and own.fit_settings["shared_init"] is False
    assert shared.fit_summary()["fit_shared_init"] is True
    with pytest.raises(InrforgeError, match=r"fit.shared_init: store has True, now False\); pass --overwrite"):
        fit_inrs(src, shared.path, **kw)
    with pytest.raises(InrforgeError, match=r"^--shared-init must be True or False, got 'yes'$"):
        fit_inrs(src, tmp_path / "bad.zarr", shared_init="yes", **kw)
    assert not (tmp_path / "bad.zarr").exists()
    from inrforge.cli import main

    assert main(["info", shared.path]) == 0 and main(["info", own.path]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert [line.endswith("seed 0, shared init") for line in shown if line.startswith("fit ")] == [True, False]


def test_a_store_written_before_the_schedule_was_recorded_resumes_with_the_recipe_it_used(tmp_path, capsys):
    """0.2.0's stores record neither lr_schedule nor first_layer_lr (and 0.3.0's no shared_init):
    they were fitted with a constant lr for every layer from each INR's own init, and compare as
    such (resumed bit for bit with those settings, refused with others, naming what differs)."""
    from inrforge.fitjob import prepare_fit

    src = load_source("digits", limit=12)
    legacy = dict(steps=3, compile=False, batch_size=4, shard_objects=4)
    whole = fit_inrs(src, tmp_path / "whole.zarr", progress=False, **legacy)
    out = tmp_path / "old.zarr"
    prepare_fit(src, out, **legacy)  # created, nothing fitted
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["fit"] = {k: v for k, v in group.attrs["fit"].items()
                          if k not in ("lr_schedule", "first_layer_lr", "shared_init")}
    with pytest.raises(InrforgeError, match=r"fit.first_layer_lr: store has 1.0, now 10.0; fit.lr_schedule: store "
                                            r"has 'constant', now 'cosine'\); pass --overwrite"):
        fit_inrs(src, out, lr_schedule="cosine", first_layer_lr=10, progress=False, **legacy)
    with pytest.raises(InrforgeError, match=r"fit.shared_init: store has False, now True\); pass --overwrite"):
        fit_inrs(src, out, shared_init=True, progress=False, **legacy)
    resumed = fit_inrs(src, out, progress=False, **legacy)
    assert_same(snapshot(whole.path), snapshot(resumed.path))
    assert "lr_schedule" not in resumed.fit_settings  # the store's attributes are left as they were
    from inrforge.fitjob import refit_shard

    assert np.array_equal(refit_shard(resumed, 1).params, resumed.params[4:8])  # read back as constant, x1
    from inrforge.cli import main

    assert main(["info", str(out)]) == 0
    assert "fit          3 steps, lr 0.0005 (constant), early stop at 40 dB" in capsys.readouterr().out


def test_the_kernel_is_recorded_kept_on_resume_and_a_store_without_one_resumes_with_inductor(tmp_path, capsys,
                                                                                             monkeypatch):
    """A new CPU store records the native kernel; a resume that names none keeps the store's, one
    that names another is refused; a store written before 0.5.0 (no fit.kernel) was compiled by
    Inductor and resumes with it, bit for bit; the native kernel is refused on a GPU."""
    import inrforge.fit as ifit
    from inrforge.fitjob import prepare_fit

    src = load_source("digits", limit=12)
    kw = dict(steps=3, batch_size=4, shard_objects=4, progress=False)
    new = fit_inrs(src, tmp_path / "new.zarr", **kw)
    assert new.fit_settings["kernel"] == "native" and new.fit_settings["compile"] is True
    with pytest.raises(InrforgeError, match=r"fit.kernel: store has 'native', now 'inductor'\); pass --overwrite"):
        fit_inrs(src, tmp_path / "new.zarr", kernel="inductor", **kw)
    whole = fit_inrs(src, tmp_path / "whole.zarr", kernel="inductor", **kw)
    out = tmp_path / "old.zarr"
    prepare_fit(src, out, kernel="inductor", steps=3, batch_size=4, shard_objects=4)  # created, nothing fitted
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["fit"] = {k: v for k, v in group.attrs["fit"].items() if k != "kernel"}
    called = []
    monkeypatch.setattr(ifit, "fused_step", lambda *a: called.append(1) or (_ for _ in ()).throw(AssertionError))
    resumed = fit_inrs(src, out, **kw)  # no kernel named: the store's, Inductor's
    assert not called and "kernel" not in resumed.fit_settings
    assert_same(snapshot(whole.path), snapshot(resumed.path))
    from inrforge.cli import main

    assert main(["info", str(out)]) == 0 and main(["info", str(tmp_path / "new.zarr")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fit ")]
    assert [", compiled (inductor)," in lines[0], ", compiled (native)," in lines[1]] == [True, True], lines
    with pytest.raises(InrforgeError, match=r"^--kernel native is a CPU kernel; on cuda the step is compiled by "
                                            r"torch.compile \(--kernel inductor, the default there\)$"):
        prepare_fit(src, tmp_path / "gpu.zarr", kernel="native", device="cuda", fit_here=False, create=False)
    assert not (tmp_path / "gpu.zarr").exists()


def test_a_refused_resume_names_long_values_briefly():
    """A store of 5,000 hidden layers resumed with other widths: the message stays one short line."""
    from inrforge.fitjob import _differences

    old = {"arch": {"widths": [2] + [32] * 5000 + [1], "w0": 30.0}, "source": {"params": {"path": "/d/" + "x" * 200}}}
    new = {"arch": {"widths": [2, 32, 32, 1], "w0": 30.0}, "source": {"params": {"path": "/d/y"}}}
    assert _differences(old, new) == [
        "arch.widths: store has [2, 32, 32, ..., 1] (5002 entries), now [2, 32, 32, 1]",
        f"source.params.path: store has {repr('/d/' + 'x' * 200)[:77]}..., now '/d/y'"]
    # values alike in their first characters or entries are shown where they differ
    long_path = "/data/rotated/full-resolution/" + "x" * 80
    assert _differences({"path": long_path + "/train-a", "widths": [2] + [32] * 50 + [1]},
                        {"path": long_path + "/train-b", "widths": [2] + [32] * 4 + [64] + [32] * 45 + [1]}) == [
        "path: store has ...'xxxxxxxxxxxxxxxxxxxxxxx/train-a', now ...'xxxxxxxxxxxxxxxxxxxxxxx/train-b'",
        "widths[5]: store has 32, now 64"]


def test_a_store_holding_the_users_files_is_refused_before_a_cluster_would_start(tmp_path):
    """prepare_fit(create=False), the Dask driver's check before it connects: a store that --overwrite
    would replace, holding a file of the user's, is refused then, not once workers were started."""
    from inrforge.fitjob import prepare_fit

    src = load_source("digits", limit=4)
    store = fit_inrs(src, tmp_path / "s.zarr", steps=2, compile=False, progress=False)
    (tmp_path / "s.zarr" / "NOTES.txt").write_text("mine")
    with pytest.raises(InrforgeError, match=r"holds files that are not part of its store \(NOTES.txt\)"):
        prepare_fit(src, store.path, steps=3, compile=False, overwrite=True, fit_here=False, create=False)
    from inrforge import open_store

    assert (tmp_path / "s.zarr" / "NOTES.txt").read_text() == "mine" and open_store(store.path).fit_settings["steps"] == 2


def test_a_new_store_records_the_default_batch_of_the_step_that_fits_it(tmp_path):
    """784 points: 256 INRs a step with the native kernel, 31 with the eager step (and Inductor's:
    test_fit.test_the_default_batch_follows_the_step_that_runs_it)."""
    src = load_source("sines", n=3, n_points=784)
    kw = dict(steps=1, progress=False)
    assert fit_inrs(src, tmp_path / "n.zarr", compile=True, **kw).fit_settings["batch_size"] == 256
    assert fit_inrs(src, tmp_path / "e.zarr", compile=False, **kw).fit_settings["batch_size"] == 31
