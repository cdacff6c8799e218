"""What gets fitted: a Source is N objects (numbered in the dataset's native order, official train
items first, then test), a shared coordinate grid, per-object targets in [0, 1], labels, and the
dataset's own test split.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch

from ..checks import byte_size, whole_number
from ..errors import InrforgeError
from ..inr import image_grid
from ..memory import available_bytes, physical_memory


# --------------------------------------------------------------------------------------- option checks
# Source options arrive as Python values (the API) or from ``parse_source_options`` (the CLI), which
# turns ``true`` into True and ``1.5`` into 1.5: each source checks its options' types with these.

def _shown(value) -> str:
    """An option value as the user typed it: ``true``, ``none``, ``1.5``, ``'abc'``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if value is None:
        return "none"
    return repr(value)


def int_option(value, name: str, minimum: int | None = None) -> int:
    """An integer option: an int, an integral float (``2.0``, ``1e3``) or a string of one.

    Refuses booleans, ``1.5``, non-numbers and values below ``minimum`` with a one-line error.
    """
    if minimum is None:
        expects = "an integer"
    elif minimum == 1:
        expects = "a positive integer"
    elif minimum == 0:
        expects = "a non-negative integer"
    else:
        expects = f"an integer >= {minimum}"
    bad = InrforgeError(f"option {name} must be {expects}, got {_shown(value)}")
    if isinstance(value, (bool, np.bool_)):
        raise bad
    if isinstance(value, (int, np.integer)):
        v = int(value)
    else:
        if isinstance(value, str):
            try:
                v = int(value.strip())
            except ValueError:
                v = None
        else:
            v = None
        if v is None:
            try:
                f = float(value)
            except (TypeError, ValueError):
                raise bad from None
            if not (math.isfinite(f) and f.is_integer()):
                raise bad
            v = int(f)
    if minimum is not None and v < minimum:
        raise InrforgeError(f"option {name} must be {expects}, got {v}")
    return v


def float_option(value, name: str, float32: bool = False) -> float:
    """A finite number option (an int, float or numeric string); refuses booleans and non-numbers.

    ``float32``: the value must also be finite as a float32 (it is stored as one).
    """
    bad = InrforgeError(f"option {name} must be a finite number, got {_shown(value)}")
    if isinstance(value, (bool, np.bool_)):
        raise bad
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if not math.isfinite(f):
        raise bad
    if float32 and abs(f) > float(np.finfo(np.float32).max):
        raise InrforgeError(f"option {name} must fit in a float32 (|value| <= 3.4e38), got {f!r}")
    return f


def bool_option(value, name: str) -> bool:
    """A boolean option: True/False, or ``true``/``false``/``1``/``0`` (also as strings); nothing else."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InrforgeError(f"option {name} must be true or false (or 1/0), got {_shown(value)}")


def check_memory(nbytes: int, what: str) -> None:
    """Refuse (one line) to build something that needs more bytes than the machine's physical memory,
    or than the memory available now (:func:`~inrforge.memory.available_bytes`): more would have the
    kernel kill the process, without a message, or take other processes down with it."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise InrforgeError(f"{what} needs {nbytes / 2**30:,.1f} GiB of memory, more than this machine's "
                            f"{total / 2**30:,.1f} GiB")
    free = available_bytes()
    if nbytes > free:
        raise InrforgeError(f"{what} needs {byte_size(nbytes)} of memory, more than the {byte_size(free)} this "
                            f"machine has available now")


def check_limit(n) -> int | None:
    """``--limit`` as an int (None: no limit); an :class:`InrforgeError` unless it is a positive
    integer (an integral float such as ``5.0`` counts)."""
    return None if n is None else whole_number(n, "--limit")


class Source(ABC):
    """Base class of every source.

    Subclasses set ``name``, ``params`` (the JSON-able options that define the data: recorded in
    the store and compared on resume), ``labels`` ((N,) int64 or (N, K) float32),
    ``official_test`` (indices of the dataset's own test items, possibly empty) and implement
    :attr:`coords`, :meth:`targets` and :meth:`grid`.
    """

    name: str
    params: dict
    labels: np.ndarray
    official_test: np.ndarray
    label_names: list[str] | None = None
    target_scaling: str = ""
    unit_targets: bool = True  # targets in [0, 1], as PSNR assumes (False: raw values, e.g. sines)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    @abstractmethod
    def coords(self) -> torch.Tensor:
        """(n_points, in_features) float32 coordinates shared by every object."""

    @abstractmethod
    def targets(self, indices) -> torch.Tensor:
        """(len(indices), n_points, out_features) float32 targets in [0, 1] (sines: raw values)."""

    @abstractmethod
    def grid(self) -> dict:
        """JSON description of the coordinate grid, enough to re-render without inrforge."""

    @property
    def in_features(self) -> int:
        return self.coords.shape[1]

    @property
    @abstractmethod
    def out_features(self) -> int:
        """Number of outputs per coordinate (1 for grey images, 3 for RGB)."""

    def check(self) -> "Source":
        """Refuse a source with nothing to fit: no objects, or a grid without points."""
        if len(self) == 0:
            raise InrforgeError(f"source {self.name!r} holds no objects: nothing to fit")
        n_points = int(self.coords.shape[0])
        if n_points == 0:
            raise InrforgeError(f"source {self.name!r} has a coordinate grid of 0 points: nothing to fit")
        return self

    def limit(self, n: int | None) -> "Source":
        """Keep only the first ``n`` objects (in native order)."""
        n = check_limit(n)
        if n is not None:
            self._limit(min(n, len(self)))
        return self

    def _limit(self, n: int) -> None:
        self.labels = self.labels[:n]
        self.official_test = self.official_test[self.official_test < n]
        self.params = {**self.params, "limit": n}

    def describe(self) -> dict:
        """The store's ``source`` attribute."""
        return {
            "name": self.name,
            "params": self.params,
            "n_objects": len(self),
            "target_scaling": self.target_scaling,
            "grid": self.grid(),
            "label_names": self.label_names,
            "label_shape": list(self.labels.shape[1:]),
        }


class ImageSource(Source):
    """Images held in memory as uint8 (N, H, W, C); targets are ``pixel / 255`` at
    ``coords[r * W + c] = (lin_H[r], lin_W[c])``, ``lin_n = linspace(-1, 1, n)``, row-major."""

    target_scaling = "pixel / 255 (uint8 -> [0, 1])"

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray, official_test, params: dict,
                 label_names: list[str] | None = None):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise InrforgeError(f"{name}: expected uint8 images (N, H, W[, C]), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise InrforgeError(f"{name}: {len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise InrforgeError(f"{name}: no images found")
        if 0 in images.shape[1:]:
            raise InrforgeError(f"{name}: images of {images.shape[1]}x{images.shape[2]} pixels with "
                                f"{images.shape[3]} channel(s); need at least 1x1 with 1 channel")
        self.name = name
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.official_test = np.asarray(official_test, dtype=np.int64)
        self.params = dict(params)
        self.label_names = label_names
        self._coords = image_grid(images.shape[1], images.shape[2])

    @property
    def coords(self) -> torch.Tensor:
        return self._coords

    @property
    def out_features(self) -> int:
        return self.images.shape[3]

    def targets(self, indices) -> torch.Tensor:
        """(len(indices), H * W, C) float32 ``pixel / 255``; a single index counts as a list of one."""
        idx = np.asarray(indices).reshape(-1)
        imgs = self.images[idx if idx.size else idx.astype(np.int64)]  # [] is a float array
        n, h, w, c = imgs.shape
        return torch.from_numpy(imgs.reshape(n, h * w, c).astype(np.float32) / 255.0)

    def grid(self) -> dict:
        n, h, w, c = self.images.shape
        return {
            "kind": "image",
            "height": int(h),
            "width": int(w),
            "channels": int(c),
            "coords": "coords[r*W + c] = (linspace(-1,1,H)[r], linspace(-1,1,W)[c]), row-major",
        }

    def _limit(self, n: int) -> None:
        super()._limit(n)
        self.images = self.images[:n]


def coords_from_grid(grid: dict) -> torch.Tensor:
    """Rebuild the coordinates a store's ``source.grid`` describes (image or 1-D interval)."""
    if grid.get("kind") == "image":
        return image_grid(int(grid["height"]), int(grid["width"]))
    if grid.get("kind") == "interval":
        n, lo, hi = int(grid["n_points"]), float(grid["lo"]), float(grid["hi"])
        # n points from lo, spaced (hi - lo) / (n - 1) to end at hi, or (hi - lo) / n to stop short of it
        k = torch.arange(n, dtype=torch.float64)
        return (lo + (hi - lo) * k / (max(n - 1, 1) if grid.get("endpoint", False) else n)).float().unsqueeze(1)
    raise InrforgeError(f"unknown coordinate grid {grid.get('kind')!r} in the store")
