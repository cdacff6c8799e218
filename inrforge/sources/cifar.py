"""CIFAR-10 from the "python version" pickle batches (``cifar-10-python.tar.gz`` extracted).

The folder (or its ``cifar-10-batches-py/`` subfolder) holds ``data_batch_1`` .. ``data_batch_5``,
``test_batch`` and optionally ``batches.meta``.  Every ``data_batch_<k>`` present is read, in
numeric order, then ``test_batch``; ``official_test`` is the test batch's items.  Each batch is a
pickle dict with ``data`` ((n, 3072) uint8, channel-major: 1024 R, 1024 G, 1024 B, each row-major
32x32) and ``labels``.  Only open pickle files you trust: unpickling can run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from ..errors import InrforgeError
from .base import ImageSource

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck"]

_BATCH_RE = re.compile(r"^data_batch_(\d+)$")


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def _unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise InrforgeError(f"cannot read CIFAR batch {path}: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise InrforgeError(f"{path} is not a CIFAR batch: expected a pickled dict, got {type(obj).__name__}")
    return obj


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images (n, 32, 32, 3), int64 labels (n,))."""
    path = Path(path)
    d = _unpickle(path)
    data, labels = _get(d, "data"), _get(d, "labels")
    if data is None or labels is None:
        raise InrforgeError(f"{path} is not a CIFAR-10 batch: no 'data'/'labels' entries")
    try:
        data = np.asarray(data)
        labels = np.asarray(labels)
    except (ValueError, TypeError) as e:  # ragged lists
        raise InrforgeError(f"{path}: unreadable 'data'/'labels': {e}") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise InrforgeError(f"{path}: expected uint8 data of shape (n, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise InrforgeError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise InrforgeError(f"{path}: labels must be integer class ids, got {labels.dtype} "
                            f"(first label {labels[:1].tolist()[0]!r})")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def find_cifar_folder(folder) -> tuple[Path, list[Path], Path]:
    """Locate the batches: returns (directory, data batch paths in numeric order, test batch path)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InrforgeError(f"data folder {folder} does not exist")
    if not folder.is_dir():
        raise InrforgeError(f"data path {folder} is not a folder")
    for d in (folder, folder / "cifar-10-batches-py"):
        if not d.is_dir():
            continue
        batches = sorted(((int(m.group(1)), p) for p in d.iterdir()
                          if p.is_file() and (m := _BATCH_RE.match(p.name))), key=lambda t: t[0])
        test = d / "test_batch"
        if batches or test.is_file():
            if not batches:
                raise InrforgeError(f"{d} has test_batch but no data_batch_<k> files")
            if not test.is_file():
                raise InrforgeError(f"{d} has data batches but no test_batch")
            return d, [p for _, p in batches], test
    hint = ""
    if (folder / "cifar-10-python.tar.gz").is_file():
        hint = " (extract cifar-10-python.tar.gz there first)"
    raise InrforgeError(f"no CIFAR-10 batches in {folder}: expected data_batch_1..5 and test_batch in "
                        f"{folder} or {folder / 'cifar-10-batches-py'}{hint}")


def read_label_names(path) -> list[str] | None:
    """``batches.meta``'s ``label_names``: a list of strings (or UTF-8 bytes); None if absent."""
    path = Path(path)
    names = _get(_unpickle(path), "label_names")
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not names:
        raise InrforgeError(f"{path}: label_names must be a non-empty list of strings, got {names!r}"[:300])
    out = []
    for n in names:
        if isinstance(n, bytes):
            try:
                n = n.decode("utf-8")
            except UnicodeDecodeError:
                raise InrforgeError(f"{path}: label name {n!r} is not UTF-8") from None
        if not isinstance(n, str):
            raise InrforgeError(f"{path}: label_names must be strings, got {type(n).__name__} {n!r}"[:300])
        out.append(n)
    return out


def load_cifar10_source(path) -> ImageSource:
    directory, batch_paths, test_path = find_cifar_folder(path)
    label_names = CIFAR10_LABELS
    meta = directory / "batches.meta"
    if meta.is_file():
        label_names = read_label_names(meta) or CIFAR10_LABELS
    paths = batch_paths + [test_path]
    parts = [read_cifar_batch(p) for p in paths]
    for p, (_, lb) in zip(paths, parts):
        if len(lb) and (lb.min() < 0 or lb.max() >= len(label_names)):
            bad = int(lb.min()) if lb.min() < 0 else int(lb.max())
            raise InrforgeError(f"{p}: label {bad} is not a class id in 0..{len(label_names) - 1} "
                                f"({len(label_names)} label names)")
    n_train = sum(len(im) for im, _ in parts[:-1])
    images = np.concatenate([im for im, _ in parts])
    labels = np.concatenate([lb for _, lb in parts])
    if len(images) == 0:
        raise InrforgeError(f"{directory}: every batch ({', '.join(p.name for p in paths)}) is empty: nothing to fit")
    params = {"path": str(directory.resolve()), "batches": [p.name for p in paths]}
    return ImageSource("cifar10", images, labels, official_test=np.arange(n_train, len(images)),
                       params=params, label_names=label_names)
