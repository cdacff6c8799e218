"""Labels as DWSNets files and splits files give them (numbers, string class ids, vectors), checked
and made into one array: int64 class ids when all are integers, else float32 targets."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..errors import InrforgeError

_MAX_EXACT_INT = 2 ** 53  # floats beyond this are not trusted to be integers


def _number(value, where: str):
    """A label entry as an int or a finite float; DWSNets' string class ids ("2") are numbers too."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise InrforgeError(f"{where}: label {value!r} is not a number (labels must be class ids "
                                "or regression targets)") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InrforgeError(f"{where}: label {value!r} is not a number (labels must be class ids or "
                            "regression targets)")
    if isinstance(value, numbers.Integral):
        value = int(value)
        if not -2 ** 63 <= value < 2 ** 63:
            raise InrforgeError(f"{where}: label {value} does not fit in int64")
        return value
    value = float(value)
    if not math.isfinite(value):
        raise InrforgeError(f"{where}: label {value} is not finite")
    return value


def _label(value, where: str):
    """A label: a number, or a flat non-empty list of numbers (a vector target)."""
    if torch.is_tensor(value):
        if value.ndim > 1:
            raise InrforgeError(f"{where}: label of shape {tuple(value.shape)}; expected a number or a vector")
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (list, tuple)) for v in value):
            raise InrforgeError(f"{where}: label {value!r} must be a number or a non-empty flat list of numbers")
        return [_number(v, where) for v in value]
    return _number(value, where)


def _is_integer(v) -> bool:
    return isinstance(v, int) or (v.is_integer() and abs(v) <= _MAX_EXACT_INT)


def _label_array(labels: list, wheres: list[str], recorded_dtype=None) -> np.ndarray:
    """int64 class ids when every (scalar) label is an integer, else float32; vectors are float32."""
    shapes = [len(v) if isinstance(v, list) else None for v in labels]
    for k, s in enumerate(shapes):
        if s != shapes[0]:
            what = (lambda s: "a number" if s is None else f"a vector of {s}")
            raise InrforgeError(f"labels of different shapes: {wheres[0]} has {what(shapes[0])}, "
                                f"{wheres[k]} has {what(s)}")
    if shapes[0] is not None:
        return np.asarray(labels, dtype=np.float32)
    integral = all(_is_integer(v) for v in labels)
    if recorded_dtype == "int64" and not integral:
        k = next(k for k, v in enumerate(labels) if not _is_integer(v))
        raise InrforgeError(f"{wheres[k]}: label {labels[k]} is not an integer, but the splits file "
                            "records int64 (class id) labels")
    if integral and recorded_dtype != "float32":
        return np.asarray([int(v) for v in labels], dtype=np.int64)
    return np.asarray(labels, dtype=np.float32)
