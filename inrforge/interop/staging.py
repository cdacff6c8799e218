"""Writing safely: the parent folders an import or export creates (removed again when it fails),
and the hidden staging folders it builds in, with those of killed processes deleted."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import InrforgeError
from ..files import process_alive
from ..store import is_own_build
from .export_files import _export_files_only


def _make_parent(path: Path, what: str) -> list[Path]:
    """Create ``path``'s missing parent folders; returns those created (outermost first)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InrforgeError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    missing.reverse()
    try:
        for folder in missing:
            folder.mkdir()
    except OSError as e:
        _remove_empty(missing)
        raise InrforgeError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


# Why not the store's own scheme (``OUT.tmp-PID`` / ``OUT.old-PID`` beside OUT, store.check_leftovers):
# * an import writes every shard before the store may appear at ``out``, but a leftover
#   ``OUT.tmp-PID`` is reaped only while it holds no fitted INR (is_own_build, fitted=False, which
#   keeps a half-done fit safe), so a killed import's would stay forever; in a staging folder the
#   store (built there by create_store, with the store's scheme) is reaped with fitted=True;
# * an export is no store, and one into an empty folder is staged inside that folder, where a
#   visible ``OUT.tmp-PID`` would look like content: the staging folder is hidden;
# * a dead staging folder holds only copies being written (and, with --overwrite, an earlier export
#   being replaced) and is deleted whole, while a store set aside as ``OUT.old-PID`` may be the only
#   copy of its INRs and is refused instead (an import replacing a store at ``out`` uses that scheme:
#   replace_store).  process_alive, move_into_place and is_own_build are the shared parts.
_STAGING_SUFFIX = ".inrforge-tmp"


def _staging_dir(path: Path, what: str) -> Path:
    """A new hidden folder ``.NAME.PID-XXXX.inrforge-tmp`` beside ``path`` to build into (fails
    early when that is not writable).  Those that processes now gone left beside ``path`` (an
    import or export killed with SIGKILL) are deleted first (:func:`_remove_dead_staging`)."""
    _remove_dead_staging(path)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=_STAGING_SUFFIX, dir=path.parent))
    except OSError as e:
        raise InrforgeError(f"cannot write {what} {path}: {e.strerror or e} (in {path.parent})") from None


def _remove_dead_staging(path: Path) -> None:
    """Delete the staging folders of ``path`` (:func:`_staging_dir`) whose process is gone and that
    hold only what an import or export builds there (:func:`_own_staging`); those of a running
    process are its work in progress, and anything else is left alone."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if (name.startswith(prefix) and name.endswith(_STAGING_SUFFIX) and pid.isdigit()
                and not process_alive(int(pid)) and _own_staging(path.parent / name)):
            shutil.rmtree(path.parent / name, ignore_errors=True)


def _own_staging(folder: Path) -> bool:
    """True when the folder (not a link) holds only what :func:`import_dws` or :func:`export_dws`
    builds in a staging folder, and no links: a store (``store``, or the ``store.tmp-PID`` it is
    built in; :func:`inrforge.store.is_own_build`) or export files (``export``, or ``replaced``: an
    earlier export set aside), so deleting it loses nothing they did not make."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    for entry in folder.iterdir():
        if entry.name == "store" or re.fullmatch(r"store\.tmp-\d+", entry.name):
            if not is_own_build(entry, fitted=True):
                return False
        elif entry.name not in ("export", "replaced") or not _export_files_only(entry):
            return False
    return True
