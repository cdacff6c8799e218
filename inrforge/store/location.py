"""A store's place on disk (or behind a URL): whether one is there, and making room for a new one.

Whether a path holds a finished store (:func:`is_store`); the checks before a store is written
(:func:`prepare_output`, :func:`foreign_entries`); the leftovers of interrupted builds and
overwrites beside it (``OUT.tmp-PID``, ``OUT.old-PID``: :func:`check_leftovers`,
:func:`is_own_build`); moving a finished store into place (:func:`replace_store`); deleting one
(:func:`remove_store`); and its size on disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import zarr

from ..errors import InrforgeError, first_line
from ..files import is_url, local_path, move_into_place, process_alive, refuse_unsafe_output
from .format import BUILDING

_PARTIAL_FILE = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr's local store writes NAME.<uuid>.partial first


def _leftovers(final: str) -> list[str]:
    """Sibling folders an interrupted create/overwrite of ``final`` left: ``final.tmp-PID``
    (a store being built) and ``final.old-PID`` (a store set aside to be replaced)."""
    parent, name = os.path.split(final.rstrip("/"))
    try:
        names = os.listdir(parent or ".")
    except OSError:
        return []
    return sorted(os.path.join(parent, n) for n in names
                  if n.startswith(name + ".") and n[len(name) + 1:].split("-")[0] in ("tmp", "old")
                  and n.rsplit("-", 1)[-1].isdigit())


def is_own_build(folder, fitted: bool = False) -> bool:
    """True when ``folder`` is recognisably a group that :func:`create_store` was building, or had
    just finished, when its process died, so that deleting it loses nothing anyone else made: a real
    folder (not a link) that is empty or holds only Zarr's half-written ``*.partial`` files, or whose
    ``zarr.json`` is an inrforge group (the ``inrforge-building`` marker create_store writes with
    it, or the finished ``inrforge`` marker) and which holds nothing but Zarr metadata and chunk
    files, and no links.  Unless ``fitted``, it must also hold no ``params`` or ``done`` chunk (no
    fitted INR; a store being created has none)."""
    folder = str(folder)
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    only_partial = True
    for dirpath, dirs, files in os.walk(folder):
        if any(os.path.islink(os.path.join(dirpath, n)) for n in dirs + files):
            return False
        rel = [] if dirpath == folder else os.path.relpath(dirpath, folder).split(os.sep)
        for name in files:
            if _PARTIAL_FILE.search(name):
                continue
            only_partial = False
            if name == "zarr.json":
                continue
            # a chunk: ARRAY/c/i/j/k, where ARRAY may be nested (metrics/psnr)
            chunk = "c" in rel and name.isdigit() and all(x.isdigit() for x in rel[rel.index("c") + 1:])
            if not chunk or (not fitted and rel[0] in ("params", "done")):
                return False
    try:
        with open(os.path.join(folder, "zarr.json")) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return only_partial  # killed before its first file was complete
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("node_type") != "group" or not isinstance(doc.get("attributes"), dict):
        return False
    return BUILDING in doc["attributes"] or "inrforge" in doc["attributes"]


def check_leftovers(final: str) -> None:
    """Before a store is written at ``final``: delete the ``final.tmp-PID`` folders of processes that
    are gone that hold what :func:`create_store` was building there (:func:`is_own_build`); any other
    folder of that name is left alone.  Refuse to go on while ``final.old-PID`` holds a store that
    an interrupted ``--overwrite`` set aside and never got to delete (its data may be all there is),
    or while the ``final.old-PID`` of this process's own PID, where a replaced store would be set
    aside, holds anything.  This process's own PID counts as gone (a container restarted under the
    same PID): it has not started building yet."""
    me = os.getpid()
    for left in _leftovers(final):
        pid = int(left.rsplit("-", 1)[-1])
        if pid != me and process_alive(pid):
            continue
        if ".tmp-" in os.path.basename(left):
            if is_own_build(left):
                shutil.rmtree(left, ignore_errors=True)
        elif is_store(left):
            raise InrforgeError(f"{left} holds a store an interrupted --overwrite of {final} set aside; "
                                f"move it back to {final} or delete it, then re-run")
    aside = f"{final}.old-{me}"
    if os.path.lexists(aside) and is_store(final):  # only a store at final is set aside
        raise InrforgeError(f"{aside} is in the way: inrforge sets the store it replaces aside there (a name made "
                            f"from this process's id); move it elsewhere and re-run")


def replace_store(new: str, final: str) -> None:
    """Move the finished local store ``new`` to ``final`` (:func:`move_into_place`); a store there
    is set aside as ``final.old-PID`` (where :func:`check_leftovers` finds it if this process dies)
    and deleted once the new one is in place.  A failure to delete it is a warning: nothing is lost."""
    old = move_into_place(new, final, aside=f"{str(final).rstrip('/')}.old-{os.getpid()}")
    if old is not None:
        try:
            shutil.rmtree(old)
        except OSError as e:
            warnings.warn(f"the store {final} replaced is left at {old} ({e.strerror or e}); delete it by hand")


def is_store(path) -> bool:
    """True when ``path`` holds a finished inrforge group (of any format version)."""
    try:
        return "inrforge" in zarr.open_group(local_path(path), mode="r").attrs
    except Exception:
        return False


def prepare_output(path, overwrite: bool = False) -> None:
    """Check that a new store may be written at ``path``; deletes nothing.

    An existing inrforge store may be replaced only with ``overwrite`` (else an error; the
    replacement happens in :func:`create_store`, once the new store is complete); an existing
    file or non-empty folder that is not a store, and a path inside another Zarr store (which that
    store's replacement would delete), are always refused.
    """
    path = local_path(path)
    if not is_url(path):
        refuse_unsafe_output(path, "a store at", replaced=True)
    if is_store(path):
        if not overwrite:
            raise InrforgeError(f"{path} already holds a store; pass --overwrite to replace it or choose another --out")
        refuse_foreign_entries(path)
    elif is_url(path) and _unfinished_build(path):  # built in place and interrupted: inrforge's own, redone
        refuse_foreign_entries(path)
    elif _holds_something(path):
        raise InrforgeError(f"{path} exists and is not an inrforge store; refusing to write there")


def _unfinished_build(path: str) -> bool:
    """Whether ``path`` holds a group that :func:`create_store` began and never finished (its
    ``inrforge-building`` marker; on a URL the store is built in place, not beside it)."""
    try:
        return BUILDING in zarr.open_group(path, mode="r").attrs
    except Exception:
        return False


def _filesystem(path):
    """The fsspec filesystem of ``path`` (a local path or a URL) and the path within it; a URL whose
    filesystem cannot be reached or is unknown is a one-line error."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(path)
    except Exception as e:  # an unknown protocol, its package missing, bad credentials
        raise InrforgeError(f"cannot write a store at {path}: {first_line(e)}") from None


def _holds_something(path: str) -> bool:
    """Whether ``path`` is a file or a non-empty folder (or a URL prefix with something under it)."""
    if not is_url(path):
        return os.path.exists(path) and (os.path.isfile(path) or bool(os.listdir(path)))
    fs, p = _filesystem(path)
    try:
        return fs.exists(p) and (fs.isfile(p) or bool(fs.ls(p)))
    except Exception as e:
        raise InrforgeError(f"cannot write a store at {path}: {first_line(e)}") from None


def foreign_entries(path) -> list[str]:
    """The entries of the store at ``path`` that are not part of its Zarr hierarchy, as paths relative
    to it: what replacing or deleting the store would delete besides the store.  A Zarr group holds
    ``zarr.json`` and its members (folders with a ``zarr.json`` of their own); an array holds
    ``zarr.json`` and its chunks under ``c/`` (not looked into); a file that zarr was writing when
    its process died (``*.partial``) is zarr's.  Anything else, such as notes a user kept in the
    store's folder, is foreign.  A member whose ``zarr.json`` cannot be read counts as
    the store's (a damaged store may be replaced)."""
    fs, root = _filesystem(local_path(path))
    found: list[str] = []

    def visit(node: str, rel: str) -> None:
        try:
            array = json.loads(fs.cat_file(f"{node}/zarr.json")).get("node_type") == "array"
            entries = fs.ls(node, detail=True)
        except Exception:
            return
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            child = f"{node}/{name}"
            is_dir = entry["type"] == "directory"
            if name == "zarr.json" or (array and name == "c") or _PARTIAL_FILE.search(name):
                continue  # metadata, chunks (a 0-d array's one chunk is the file c), zarr's half-written files
            if is_dir and not array and fs.exists(f"{child}/zarr.json"):
                visit(child, f"{rel}{name}/")
            else:
                found.append(f"{rel}{name}{'/' if is_dir else ''}")

    visit(root.rstrip("/"), "")
    return sorted(found)


def refuse_foreign_entries(path) -> None:
    """An :class:`InrforgeError` naming what the store at ``path`` holds besides itself
    (:func:`foreign_entries`), before anything replaces or deletes it."""
    found = foreign_entries(path)
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise InrforgeError(f"{path} holds files that are not part of its store ({shown}): replacing the store would "
                            f"delete them; move them out of it first")


def remove_store(path) -> None:
    """Delete an inrforge store (refuses anything that is not one)."""
    path = local_path(path)
    if not is_store(path):
        raise InrforgeError(f"refusing to delete {path}: it is not an inrforge store")
    refuse_foreign_entries(path)
    if is_url(path):
        zarr.open_group(str(path), mode="w")
    else:
        shutil.rmtree(Path(path))


def _size_on_disk(path: str) -> int | None:
    """Bytes of the files under a local store (None for a URL).  A file that vanishes while it is
    counted (a writer's temporary file, renamed into place) is skipped."""
    if is_url(path):
        return None
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total
