"""inrforge.figures from Python (as a notebook calls it): render_grid writes its image whole or
not at all, and replaces an existing file only when told to."""

import os
import stat

import pytest

from inrforge.errors import InrforgeError
from inrforge.figures import check_image_path, render_grid
from inrforge.fitjob import fit_inrs
from inrforge.sources import load_source

from storecheck import assert_same, snapshot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "d.zarr"
    return fit_inrs(load_source("digits", limit=4), out, steps=2, compile=False, progress=False)


def exists(path):
    return f"cannot write {path}: it exists already; pass --overwrite to replace it, or choose another --out"


def test_render_grid_replaces_an_existing_file_only_with_overwrite(store, tmp_path):
    old = tmp_path / "thesis.pdf"
    old.write_bytes(b"%PDF-1.4 my thesis\n")
    for call in (lambda: render_grid(store, str(old)), lambda: check_image_path(str(old))):
        with pytest.raises(InrforgeError) as e:
            call()
        assert str(e.value) == exists(old)
    assert old.read_bytes() == b"%PDF-1.4 my thesis\n" and os.listdir(tmp_path) == ["thesis.pdf"]
    assert render_grid(store, str(old), overwrite=True) == str(old)
    assert old.read_bytes()[:5] == b"%PDF-" and old.read_bytes() != b"%PDF-1.4 my thesis\n"
    new = tmp_path / "new.png"
    assert render_grid(store, str(new)) == str(new) and new.read_bytes()[:8] == PNG
    assert sorted(os.listdir(tmp_path)) == ["new.png", "thesis.pdf"]  # no temporary file left


def test_render_grid_refuses_folders_stores_and_special_files_even_with_overwrite(store, tmp_path):
    before = snapshot(store.path)
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "afile.txt").write_bytes(b"notes")
    for overwrite in (False, True):
        for path, why in ((store.path, "it is a folder; give an image file name such as grid.png"),
                          (str(tmp_path), "it is a folder; give an image file name such as grid.png"),
                          (str(tmp_path / "pipe.png"), "it is not a plain file; give an image file name such as grid.png"),
                          (str(tmp_path / "afile.txt" / "x.png"), f"{tmp_path / 'afile.txt'} is a file, not a folder")):
            with pytest.raises(InrforgeError) as e:
                render_grid(store, path, overwrite=overwrite)
            assert str(e.value) == f"cannot write {path}: {why}"
        path = f"{store.path}/x.png"  # inside a store, as from the command line
        with pytest.raises(InrforgeError, match=f"--out {path} lies inside the Zarr store {store.path}, whose"):
            render_grid(store, path, overwrite=overwrite)
    assert_same(before, snapshot(store.path))
    assert (tmp_path / "pipe.png").is_fifo() and (tmp_path / "afile.txt").read_bytes() == b"notes"


def test_render_grid_keeps_a_file_created_while_it_drew(store, tmp_path, monkeypatch):
    """The check before drawing is not the last word: a file that appears at the path meanwhile is
    not replaced either."""
    from matplotlib.figure import Figure

    path, savefig = tmp_path / "g.png", Figure.savefig

    def racing(self, fname, **kwargs):
        path.write_bytes(b"someone else's")
        savefig(self, fname, **kwargs)

    monkeypatch.setattr(Figure, "savefig", racing)
    with pytest.raises(InrforgeError) as e:
        render_grid(store, str(path))
    assert str(e.value) == exists(path)
    assert path.read_bytes() == b"someone else's" and os.listdir(tmp_path) == ["g.png"]


def test_render_grid_with_overwrite_follows_a_link_and_keeps_the_permissions(store, tmp_path):
    target, link = tmp_path / "real.png", tmp_path / "link.png"
    target.write_bytes(b"old")
    target.chmod(0o600)
    link.symlink_to(target)
    with pytest.raises(InrforgeError) as e:
        render_grid(store, str(link))
    assert str(e.value) == exists(link) and target.read_bytes() == b"old"
    render_grid(store, str(link), overwrite=True)
    assert link.is_symlink() and target.read_bytes()[:8] == PNG
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["link.png", "real.png"]


def test_render_grid_says_when_the_split_has_fewer_objects_than_asked(store, tmp_path):
    import warnings

    with pytest.warns(UserWarning, match=r"^16 objects asked for, but .* has (\d+) with a usable view 0; "
                                         r"drawing those$"):
        render_grid(store, str(tmp_path / "many.png"), n=16, split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as many as there are: nothing to say
        render_grid(store, str(tmp_path / "one.png"), n=1, split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render_grid(store, str(tmp_path / "default.png"), split="train")  # up to 16 unless asked


def test_render_grid_says_when_the_split_is_empty_and_when_a_format_cannot_be_written(store, tmp_path, monkeypatch):
    """An empty split draws all objects, no longer silently; a format whose writer fails (pgf without
    LaTeX) is one line, not matplotlib's traceback, and leaves no file."""
    from matplotlib.figure import Figure

    assert len(store.split("val")) == 0
    with pytest.warns(UserWarning, match=r"^the val split of .* is empty; drawing from all objects$"):
        render_grid(store, str(tmp_path / "val.png"), split="val")

    def no_latex(*args, **kwargs):
        raise RuntimeError("'xelatex' not found; install it or change rcParams['pgf.texsystem'] to an available "
                           "TeX implementation\nmore")

    monkeypatch.setattr(Figure, "savefig", no_latex)
    with pytest.raises(InrforgeError, match=r"^cannot write .*grid.pgf as pgf: 'xelatex' not found; .*implementation$"):
        render_grid(store, str(tmp_path / "grid.pgf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.png"]
