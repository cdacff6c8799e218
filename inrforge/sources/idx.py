"""Reading the IDX format (the raw MNIST / Fashion-MNIST files), plain or gzip-compressed: gzip
data is told by its content, so a ``.gz`` name that does not match it does not matter.

An IDX file is: two zero bytes, a dtype code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, one big-endian uint32 per dimension, then
the data in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import InrforgeError

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# role -> standard file name (without .gz)
IDX_FILES = {
    "train-images": "train-images-idx3-ubyte",
    "train-labels": "train-labels-idx1-ubyte",
    "test-images": "t10k-images-idx3-ubyte",
    "test-labels": "t10k-labels-idx1-ubyte",
}


_GZIP_MAGIC = b"\x1f\x8b"  # an IDX file starts with two zero bytes, so the two never mix


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they are gzip data, whatever the name says (a browser may
    un-gzip a download and keep its ``.gz`` name; a gzipped file may have lost it)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except FileNotFoundError:
        raise InrforgeError(f"IDX file not found: {path}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InrforgeError(f"corrupt or truncated gzip file {path}: {e}") from None
    except OSError as e:
        raise InrforgeError(f"cannot read IDX file {path}: {e}") from None


def read_idx(path) -> np.ndarray:
    """Read one IDX file (gzip data is decompressed, named ``.gz`` or not) into a native-endian numpy array.

    Raises :class:`InrforgeError` naming the file when it is not IDX, truncated or has trailing data.
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise InrforgeError(f"{path} is not an IDX file: only {len(buf)} bytes")
    if buf[0] != 0 or buf[1] != 0 or buf[2] not in _DTYPES:
        raise InrforgeError(f"{path} is not an IDX file: bad magic number 0x{buf[:4].hex()}")
    dtype = _DTYPES[buf[2]]
    ndim = buf[3]
    if ndim == 0:
        raise InrforgeError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise InrforgeError(f"{path} is truncated: header needs {header} bytes, file has {len(buf)}")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    count = math.prod(dims)  # Python ints: no overflow for absurd headers
    expected = header + count * dtype.itemsize
    if len(buf) < expected:
        raise InrforgeError(
            f"{path} is truncated: dims {'x'.join(map(str, dims))} need {expected} bytes, file has {len(buf)}")
    if len(buf) > expected:
        raise InrforgeError(
            f"{path} is corrupt: dims {'x'.join(map(str, dims))} need {expected} bytes, "
            f"file has {len(buf) - expected} extra")
    data = np.frombuffer(buf, dtype=dtype, offset=header, count=count)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _candidates(folder: Path, names) -> list[Path]:
    dirs = [folder, folder / "raw"]
    for name in names:
        dirs.append(folder / name / "raw")
    return dirs


def _find_in(d: Path, base: str) -> Path | None:
    # Standard name, then the variant with a dot (``train-images.idx3-ubyte``); plain before .gz.
    variants = [base, base.replace("-idx", ".idx", 1)]
    for v in variants:
        for suffix in ("", ".gz"):
            p = d / (v + suffix)
            if p.is_file():
                return p
    return None


def find_idx_files(folder, names=("MNIST",)) -> dict[str, Path]:
    """Find the 4 standard IDX files in ``folder``, ``folder/raw`` or ``folder/<name>/raw``.

    ``names`` are the torchvision-style dataset folder names to look for (``MNIST``,
    ``FashionMNIST``).  All 4 files must be in the same directory; plain files are preferred over
    ``.gz``.  Returns ``{"train-images": path, "train-labels": ..., "test-images": ...,
    "test-labels": ...}``.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InrforgeError(f"data folder {folder} does not exist")
    if not folder.is_dir():
        raise InrforgeError(f"data path {folder} is not a folder")
    dirs = _candidates(folder, names)
    partial = []
    for d in dirs:
        if not d.is_dir():
            continue
        found = {role: _find_in(d, base) for role, base in IDX_FILES.items()}
        if all(found.values()):
            return found
        if any(found.values()):
            missing = [IDX_FILES[r] for r, p in found.items() if p is None]
            partial.append(f"{d} lacks {', '.join(missing)}")
    expected = ", ".join(IDX_FILES.values())
    looked = ", ".join(str(d) for d in dirs)
    msg = f"no IDX files in {folder}: expected {expected} (optionally .gz) in one of {looked}"
    if partial:
        msg += "; " + "; ".join(partial)
    raise InrforgeError(msg)


_LABEL_DTYPES = {np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32)}


def check_idx_labels(labels: np.ndarray, path, n_classes: int | None = None) -> None:
    """Class labels must be declared as an integer IDX type (ubyte, byte, int16 or int32: not a
    float) and be class ids ``0 <= label < n_classes`` (``n_classes`` None: any non-negative id
    below 256, what the standard ubyte label files can hold)."""
    if labels.dtype not in _LABEL_DTYPES:
        raise InrforgeError(f"{path}: class labels must be integers (IDX type ubyte, byte, int16 or int32), "
                            f"the header declares {labels.dtype.name}")
    if labels.size == 0:
        return
    hi = 256 if n_classes is None else int(n_classes)
    lo_v, hi_v = int(labels.min()), int(labels.max())
    if lo_v < 0 or hi_v >= hi:
        bad = lo_v if lo_v < 0 else hi_v
        first = int(np.flatnonzero(labels == bad)[0])
        raise InrforgeError(f"{path}: label {bad} at item {first} is not a class id in 0..{hi - 1}"
                            + (f" ({n_classes} classes)" if n_classes is not None else ""))


def load_idx_dataset(folder, names=("MNIST",), n_classes: int | None = None):
    """Read the 4 standard IDX files found by :func:`find_idx_files`.

    Returns ``(images, labels, n_train, directory)``: uint8 images (N, H, W) and int64 labels (N,)
    with the official train items first, then the test items; ``directory`` is the resolved
    directory that held the files.  Labels are checked by :func:`check_idx_labels`; images must be
    ubyte, at least 1x1, and there must be at least one.
    """
    files = find_idx_files(folder, names)
    arrays = {role: read_idx(p) for role, p in files.items()}
    for split in ("train", "test"):
        im, lb = arrays[f"{split}-images"], arrays[f"{split}-labels"]
        ip, lp = files[f"{split}-images"], files[f"{split}-labels"]
        if im.ndim != 3 or im.dtype != np.uint8:
            raise InrforgeError(f"{ip}: expected ubyte images with 3 dims, got {im.dtype} with shape {im.shape}")
        if im.shape[1] == 0 or im.shape[2] == 0:
            raise InrforgeError(f"{ip}: images of {im.shape[1]}x{im.shape[2]} pixels; need at least 1x1")
        if lb.ndim != 1:
            raise InrforgeError(f"{lp}: expected labels with 1 dim, got shape {lb.shape}")
        if len(im) != len(lb):
            raise InrforgeError(f"{ip} has {len(im)} images but {lp} has {len(lb)} labels")
        check_idx_labels(lb, lp, n_classes)
    tr, te = arrays["train-images"], arrays["test-images"]
    if tr.shape[1:] != te.shape[1:]:
        raise InrforgeError(f"train images are {tr.shape[1]}x{tr.shape[2]} but test images are "
                            f"{te.shape[1]}x{te.shape[2]}")
    if len(tr) + len(te) == 0:
        raise InrforgeError(f"{files['train-images']} and {files['test-images']} hold 0 images: nothing to fit")
    images = np.concatenate([tr, te])
    labels = np.concatenate([arrays["train-labels"], arrays["test-labels"]]).astype(np.int64)
    return images, labels, len(tr), files["train-images"].parent.resolve()
