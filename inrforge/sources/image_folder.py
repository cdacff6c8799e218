"""A folder of images with one subfolder per class (``DIR/<class>/<image>``).

Class names are the subfolder names, sorted; class ids are their positions.  Images are sorted by
file name within a class, classes in order.  If ``DIR`` holds exactly the subfolders ``train/`` and
``test/`` (each with class subfolders) the train images come first, then the test images, which
form ``official_test``; the classes are the sorted union of both.  Such a split is recognised as
soon as one of the two holds a subfolder, and then both must hold class subfolders with images
(else a one-line error).  Hidden files and files without an image extension are skipped.

Options: ``size`` (``32`` or ``"HxW"``: resize every image with bilinear filtering; default: all
images must already have the same size) and ``mode`` (``"L"`` grey or ``"RGB"``; default RGB unless
every image is grey).  Alpha is dropped; palette images count as colour.

Pixel values become targets in [0, 1], held as uint8 like every image source (``round(t * 255)``):

- 8-bit images (and Pillow's 8-bit views of colour files): ``v / 255``;
- 16-bit grey images (Pillow modes ``I;16``, ``I;16B``, ... and ``I``, which Pillow also uses for
  16-bit PGM/PNG, rescaled by it to 0..65535): ``v / 65535``, the full 16-bit range.  A 32-bit
  integer image with values outside 0..65535 is refused;
- float grey images (mode ``F``, e.g. float TIFF): values in [0, 1] are taken as they are; values
  outside [0, 1], NaN or infinities are refused (rescale the file, or save it as 8/16-bit).

16-bit and float images are resized (``size``) in floating point before the rounding to 8 bits;
nothing is ever clipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InrforgeError
from .base import ImageSource, check_memory

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm", ".pbm", ".pnm")
_GREY_BANDS = {("L",), ("1",), ("I",), ("F",), ("L", "A"), ("La",)}


def parse_size(size) -> tuple[int, int] | None:
    """``None``, ``32``, ``"32"``, ``"32x48"`` (height x width) or ``(32, 48)`` -> (H, W) or None."""
    if size is None:
        return None
    if isinstance(size, (tuple, list)) and len(size) == 2:
        h, w = size
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = size
    elif isinstance(size, str) and (m := re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+)\s*)?", size)):
        h = int(m.group(1))
        w = int(m.group(2)) if m.group(2) else h
    else:
        raise InrforgeError(f"size must be an integer or HxW (e.g. 32 or 32x48), got {size!r}")
    if any(isinstance(v, (bool, np.bool_)) for v in (h, w)):
        raise InrforgeError(f"size must be an integer or HxW (e.g. 32 or 32x48), got {size!r}")
    try:
        if any(isinstance(v, float) and not v.is_integer() for v in (h, w)):
            raise ValueError
        h, w = int(h), int(w)
    except (TypeError, ValueError, OverflowError):
        raise InrforgeError(f"size must be an integer or HxW (e.g. 32 or 32x48), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise InrforgeError(f"size must be positive, got {h}x{w}")
    return h, w


def _visible_dirs(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: p.name)


def _scan(root: Path) -> dict[str, list[Path]]:
    """class name -> sorted image files, for the class subfolders of ``root``."""
    classes = {}
    for d in _visible_dirs(root):
        files = _image_files(d)
        if files:
            classes[d.name] = files
    return classes


_WIDE_INT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def _wide_grey(img, path: Path, size) -> np.ndarray:
    """A 16-bit / 32-bit integer or float grey image -> uint8 (H, W), scaled as the module says."""
    from PIL import Image

    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise InrforgeError(f"image {path} is a float image with NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise InrforgeError(f"image {path} is a float image with values in [{lo:g}, {hi:g}]; float images "
                                f"must hold values in [0, 1] (rescale it, or save it as 8- or 16-bit)")
        t = a
    else:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise InrforgeError(f"image {path} is a 32-bit integer image with values {lo}..{hi}; integer images "
                                f"are read as 16-bit (0..65535)")
        t = a.astype(np.float64) / 65535.0
    if size is not None and t.shape != tuple(size):
        f = Image.fromarray(t.astype(np.float32)).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        t = np.asarray(f, dtype=np.float64)
    return np.clip(np.rint(t * 255.0), 0, 255).astype(np.uint8)


def _load_image(path: Path, size, mode):
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            grey = tuple(img.getbands()) in _GREY_BANDS
            target = mode or ("L" if grey else "RGB")
            if img.mode in _WIDE_INT_MODES or img.mode == "F":
                # convert("L") would clip these to 0..255: scale them ourselves
                arr = _wide_grey(img, path, size)
                if target == "RGB":
                    arr = np.repeat(arr[..., None], 3, axis=2)
            else:
                if img.mode != target:
                    img = img.convert(target)
                if size is not None and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
    except InrforgeError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds of errors for bad files
        raise InrforgeError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, grey


def _peek(path: Path) -> tuple[bool, tuple[int, int]]:
    """``(grey, (H, W))`` of an image file from its header, without decoding its pixels."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return tuple(img.getbands()) in _GREY_BANDS, (img.size[1], img.size[0])
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds of errors for bad files
        raise InrforgeError(f"cannot read image {path}: {type(e).__name__}: {e}") from None


def load_image_folder_source(path, size=None, mode=None, limit: int | None = None) -> ImageSource:
    """The source of the folder ``path`` (see the module docstring).  With ``limit``, only the
    first ``limit`` images are decoded; the headers of all are read, so the mode (grey only when
    every image is) and the size check are those of the whole folder, as without ``limit``."""
    root = Path(path).expanduser()
    if not root.exists():
        raise InrforgeError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise InrforgeError(f"data path {root} is not a folder")
    hw = parse_size(size)
    if mode is not None:
        mode = str(mode).upper()
        if mode not in ("L", "RGB"):
            raise InrforgeError(f"mode must be L (grey) or RGB, got {mode!r}")

    subdirs = {p.name for p in _visible_dirs(root)}
    # train/ and test/ with class subfolders in either: a split, and then both need them
    split = subdirs == {"train", "test"} and bool(_visible_dirs(root / "train") or _visible_dirs(root / "test"))
    if split:
        parts = {"train": _scan(root / "train"), "test": _scan(root / "test")}
        if not parts["train"] or not parts["test"]:
            empty = "train" if not parts["train"] else "test"
            raise InrforgeError(f"{root / empty} has no class subfolders with images")
    else:
        parts = {"all": _scan(root)}
        if not parts["all"]:
            if not subdirs:
                loose = _image_files(root)
                if loose:
                    raise InrforgeError(f"{root} holds images directly; put them in one subfolder per class "
                                        f"({root}/<class>/<image>)")
                raise InrforgeError(f"{root} is empty: expected one subfolder per class holding images")
            raise InrforgeError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the subfolders of {root}")
    class_names = sorted(set().union(*(p.keys() for p in parts.values())))
    class_id = {c: i for i, c in enumerate(class_names)}

    listed = [(part, class_id[c], f) for part, classes in parts.items() for c in sorted(classes) for f in classes[c]]
    n_train = sum(part != "test" for part, _, _ in listed)
    keep = listed if limit is None else listed[:limit]
    if hw is not None:
        # every kept image at that size (worst case RGB), twice (the list, then the stacked array)
        check_memory(2 * len(keep) * hw[0] * hw[1] * 3 + 8 * hw[0] * hw[1],
                     f"loading {len(keep)} images of {hw[0]}x{hw[1]} pixels")
    headers = {f: _peek(f) for _, _, f in listed[len(keep):]}  # the images not decoded
    arrays, labels = [], []
    for _, label, f in keep:
        arr, grey = _load_image(f, hw, mode)
        arrays.append(arr)
        labels.append(label)
        headers[f] = grey, arr.shape[:2]
    files = [f for _, _, f in listed]
    greys = [headers[f][0] for f in files]

    if hw is None:
        shapes = {}
        for f in files:
            shapes.setdefault(headers[f][1], f)
        if len(shapes) > 1:
            (s1, f1), (s2, f2) = list(shapes.items())[:2]
            raise InrforgeError(
                f"images differ in size ({f1.relative_to(root)} is {s1[0]}x{s1[1]}, {f2.relative_to(root)} is "
                f"{s2[0]}x{s2[1]}); choose one with the size option, e.g. --source-opt size={s1[0]}x{s1[1]}")
    resolved_mode = mode or ("L" if all(greys) else "RGB")
    if resolved_mode == "RGB":
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    images = np.stack(arrays)
    params = {"path": str(root.resolve()), "size": list(hw) if hw else None, "mode": resolved_mode,
              "split": "train/test" if split else None, "n_files": len(files)}
    return ImageSource("image-folder", images, np.asarray(labels, dtype=np.int64),
                       official_test=np.arange(min(n_train, len(images)), len(images)), params=params,
                       label_names=class_names)
