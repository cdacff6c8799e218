"""What a folder export_dws wrote holds, and telling such a folder (finished, or half-built in a
staging folder) from one holding anything else, which is never deleted."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .splits_file import _SPLITS

_EXPORTED_FILE = re.compile(r"^\d{7,}\.pth$")  # f"{index:07d}.pth": 8+ digits from 10 million objects
_WRITE_JSON_TMP = re.compile(r"^\.splits\.json\.\d+\.tmp$")  # write_json's temporary file


def _is_export(folder: Path) -> bool:
    """True for a folder export_dws wrote: a splits.json that records an ``arch`` (every export's
    does; a DWSNets splits file does not) and train/val/test folders holding only ``NNNNNNN.pth``
    files, nothing else (so ``overwrite`` never deletes files export_dws did not write)."""
    names = {p.name for p in folder.iterdir()}
    if "splits.json" not in names or not names <= {"splits.json", *_SPLITS}:
        return False
    try:
        spec = json.loads((folder / "splits.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), dict):
        return False
    for name in names - {"splits.json"}:
        sub = folder / name
        if sub.is_symlink() or not sub.is_dir():
            return False
        if not all(f.is_file() and not f.is_symlink() and _EXPORTED_FILE.match(f.name) for f in sub.iterdir()):
            return False
    return True


def _export_files_only(folder: Path) -> bool:
    """True when the folder (not a link) holds only what :func:`export_dws` writes, finished or not:
    ``splits.json`` (or its temporary file) and train/val/test folders of ``NNNNNNN.pth`` files."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    for p in folder.iterdir():
        if p.is_symlink():
            return False
        if p.is_dir() and p.name in _SPLITS:
            if not all(f.is_file() and not f.is_symlink() and _EXPORTED_FILE.match(f.name) for f in p.iterdir()):
                return False
        elif not (p.is_file() and (p.name == "splits.json" or _WRITE_JSON_TMP.match(p.name))):
            return False
    return True
