"""The fit job around the fitter: resuming a store with the arguments it was made with."""

import pytest
import zarr

from inrforge import fit_inrs
from inrforge.errors import InrforgeError
from inrforge.fit import default_batch_size
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
