"""What gets fitted: a Source is N objects (numbered in the dataset's native order, official train
items first, then test), a shared coordinate grid, per-object targets in [0, 1], labels, and the
dataset's own test split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from ..errors import InrforgeError
from ..inr import image_grid


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

    def limit(self, n: int | None) -> "Source":
        """Keep only the first ``n`` objects (in native order)."""
        if n is None:
            return self
        if n <= 0:
            raise InrforgeError(f"--limit must be positive, got {n}")
        self._limit(min(int(n), len(self)))
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
        imgs = self.images[np.asarray(indices)]
        return torch.from_numpy(imgs.reshape(len(imgs), -1, imgs.shape[3]).astype(np.float32) / 255.0)

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
        k = torch.arange(n + 1 if grid.get("endpoint", False) else n, dtype=torch.float64)
        return (lo + (hi - lo) * k / (n if not grid.get("endpoint", False) else max(n - 1, 1))).float().unsqueeze(1)
    raise InrforgeError(f"unknown coordinate grid {grid.get('kind')!r} in the store")
