"""Local outputs written safely: paths and URLs, refusals that protect data, whole-or-nothing writes.

Every file or folder inrforge writes goes through here: a store (which :mod:`inrforge.store` builds
beside its place and renames into it), a figure, an export, a training run's logs, a results file.
The rules: a ``file://`` URL is its local path, and only a store may be another URL; nothing is
written inside a Zarr store (its ``--overwrite`` would delete it) or through a symbolic link to
nothing; a folder being replaced is never the current one; a file is renamed into place whole.
No Zarr here: a Zarr node is recognised by its ``zarr.json``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import urllib.parse
from pathlib import Path

from .errors import InrforgeError


def is_url(path) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def local_path(path) -> str:
    """``path`` as a string; a ``file:`` URL (``file:///p``, ``file://localhost/p``, with %-escapes)
    or a ``local:`` one (``local:///p``, ``local://relative/p``) becomes the plain local path it names."""
    path = str(path)
    if not path.strip():
        raise InrforgeError("expected a path, got an empty string")
    if path.startswith("local://"):  # fsspec's other name for local files, without %-escapes
        return path[len("local://"):] or "."
    if not path.startswith("file://"):
        return path
    url = urllib.parse.urlparse(path)
    if url.netloc not in ("", "localhost"):
        raise InrforgeError(f"{path}: a file URL on another host ({url.netloc}) is not a local path")
    return urllib.parse.unquote(url.path)


def output_path(path, what: str = "--out", replaced: bool = False) -> str:
    """A local output path (``inrforge train``'s and a pipeline's ``--out``, ``render``'s image,
    ``export-dws``'s folder) as a string.  A ``file://`` URL becomes the local path it names, as for
    a store (:func:`local_path`); any other URL is an :class:`InrforgeError`: only a
    store may be written through fsspec, and a URL taken as a path would create a folder ``s3:``."""
    local = local_path(path)
    if "://" in local:
        raise InrforgeError(f"{what} {path}: only a store may be a URL; give a local path or a file:// URL")
    refuse_unsafe_output(local, what, replaced)
    return local


def refuse_unsafe_output(path, what: str = "--out", replaced: bool = False) -> None:
    """An :class:`InrforgeError` for a local output ``path`` whose writing could lose data or go
    astray: one inside a Zarr store (the store's ``--overwrite`` or re-fit would delete it), or a
    symbolic link to nothing (writing through it would create its target, wherever that is).  With
    ``replaced`` (a store, which is built beside its place and renamed into it), also the current
    folder or a folder holding it: replacing that would leave this process in a deleted folder."""
    link = str(path).rstrip("/") or "/"  # "link/" would follow the link
    if os.path.islink(link) and not os.path.exists(link):
        raise InrforgeError(f"{what} {path} is a symbolic link to {os.readlink(link)}, which does not exist")
    outer = enclosing_store(path)
    if outer is not None:
        raise InrforgeError(f"{what} {path} lies inside the Zarr store {outer}, whose --overwrite would delete it; "
                            f"write it to a folder of its own")
    if not replaced:
        return
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current folder was deleted: nothing to protect
        return
    target = os.path.realpath(link)
    if target == here or here.startswith(target.rstrip("/") + "/"):
        raise InrforgeError(f"{what} {path} is the current folder{'' if target == here else ' or holds it'}; "
                            f"give a folder beside or below it")


def enclosing_store(path) -> Path | None:
    """The Zarr node (a folder holding ``zarr.json``) that the local ``path`` lies inside, if any."""
    return next((p for p in Path(path).absolute().parents if (p / "zarr.json").is_file()), None)


def location(path) -> str:
    """Where a results file says something is: the absolute local path (a relative one means
    nothing once the run's working folder is gone), or the URL as it is."""
    path = str(path)
    return path if is_url(path) else os.path.abspath(path)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts as alive), for
    deciding whether a leftover folder named after it is still some process's work in progress."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def move_into_place(new, final, aside) -> str | None:
    """Rename the finished folder ``new`` to ``final``.  An empty folder at ``final`` is replaced;
    anything else there (which the caller may replace) is first renamed to ``aside``, and renamed
    back if the rename of ``new`` fails.  Returns ``aside`` when it holds the old content, for
    the caller to delete, else None.  A symbolic link at ``final`` is followed: what it points to
    is replaced, and the link keeps working."""
    final = str(final).rstrip("/") or "/"
    if os.path.islink(final):
        final = os.path.realpath(final)
    old = None
    if os.path.isdir(final) and not os.listdir(final):
        os.rmdir(final)
    elif os.path.exists(final):
        old = str(aside)
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    return old


def check_file_path(path, overwrite: bool = False, suffixes: tuple[str, ...] = (), kind: str = "file",
                    example: str = "a file name") -> str:
    """``path`` as an absolute path if a file may be written there (a figure, a predictions CSV),
    else an :class:`InrforgeError`: its folder must exist and be writable, it must not be a folder
    (a store is one) or anything else but a plain file, its extension must be one of ``suffixes``
    (``kind`` names them: ``.txt is not an image format``), and an existing file is replaced only
    with ``overwrite``.  ``example`` is the name suggested instead of a folder."""
    out = os.path.abspath(output_path(path))  # a file:// URL is its path; not in a store, not through a dead link
    real = os.path.realpath(out) if os.path.islink(out) else out  # a link's target is what gets written
    if os.path.isdir(out):
        raise InrforgeError(f"cannot write {path}: it is a folder; give {example}")
    if os.path.exists(out) and not os.path.isfile(out):
        raise InrforgeError(f"cannot write {path}: it is not a plain file; give {example}")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        above = folder
        while not os.path.lexists(above):  # the nearest part of the path that exists
            above = os.path.dirname(above)
        if os.path.isdir(above):
            raise InrforgeError(f"cannot write {path}: folder {folder} does not exist")
        what = "a file, not a folder" if os.path.isfile(above) else "not a folder"
        raise InrforgeError(f"cannot write {path}: {above} is {what}")
    if not os.access(folder, os.W_OK) or (os.path.exists(real) and not os.access(real, os.W_OK)):
        raise InrforgeError(f"cannot write {path}: permission denied")
    ext = os.path.splitext(out)[1].lower()
    if suffixes and ext not in suffixes:
        article = "an" if kind[0].lower() in "aeiou" else "a"
        what = f"{ext} is not {article} {kind}" if ext else f"it has no {kind.split()[0]} extension"
        use = suffixes[0] if len(suffixes) == 1 else "one of " + ", ".join(suffixes)
        raise InrforgeError(f"cannot write {path}: {what} (use {use})")
    if os.path.exists(out) and not overwrite:
        raise file_exists(path)
    return out


def file_exists(path) -> InrforgeError:
    """The error for an output file that exists already (replaced only with ``--overwrite``)."""
    return InrforgeError(f"cannot write {path}: it exists already; pass --overwrite to replace it, or choose "
                         f"another --out")


def write_file(path, write, overwrite: bool = False) -> None:
    """Write the local file ``path`` whole or not at all: ``write(tmp)`` writes the content to a
    temporary file beside ``path`` (same folder, so the same file system), which is then renamed to
    ``path``, so a write that fails or is interrupted leaves no truncated file, and the earlier file
    (if any) as it was.  Without ``overwrite`` an existing ``path`` is never replaced, not even one
    created while ``write`` ran (``FileExistsError``); with it, an existing file keeps its
    permissions, and a symbolic link at ``path`` is followed, as in :func:`move_into_place`."""
    final = os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if overwrite:
            if os.path.isfile(final):
                shutil.copymode(final, tmp)
            os.replace(tmp, final)
            return
        try:
            os.link(tmp, final)  # atomic, and refuses an existing final
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), final) from None
            os.replace(tmp, final)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def write_json(path, obj, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to the local file ``path`` whole or not at all (:func:`write_file`,
    replacing any earlier file): an interrupted write never leaves a truncated file (a run's
    ``results.json`` marks it finished)."""
    text = json.dumps(obj, indent=indent)  # before anything is written: an unserialisable obj changes nothing
    write_file(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)


def jsonable(obj):
    """``obj`` as plain JSON types (numpy scalars become numbers)."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
