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
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise InrforgeError(f"{path}: expected uint8 data of shape (n, 3072), got {data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise InrforgeError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
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


def load_cifar10_source(path) -> ImageSource:
    directory, batch_paths, test_path = find_cifar_folder(path)
    parts = [read_cifar_batch(p) for p in batch_paths]
    test_images, test_labels = read_cifar_batch(test_path)
    n_train = sum(len(im) for im, _ in parts)
    images = np.concatenate([im for im, _ in parts] + [test_images])
    labels = np.concatenate([lb for _, lb in parts] + [test_labels])
    label_names = CIFAR10_LABELS
    meta = directory / "batches.meta"
    if meta.is_file():
        names = _get(_unpickle(meta), "label_names")
        if names is not None:
            label_names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    if labels.min() < 0 or labels.max() >= len(label_names):
        raise InrforgeError(f"{directory}: labels range {labels.min()}..{labels.max()} "
                            f"but {len(label_names)} label names")
    params = {"path": str(directory.resolve()), "batches": [p.name for p in batch_paths] + [test_path.name]}
    return ImageSource("cifar10", images, labels, official_test=np.arange(n_train, len(images)),
                       params=params, label_names=label_names)
