"""Sources: what gets fitted.  ``load_source(name, path=..., limit=..., **options)`` is the registry."""

from __future__ import annotations

from ..errors import InrforgeError
from .base import ImageSource, Source
from .digits import load_digits_source

# name -> (loader, needs_path).  Loaders take (path, **options) or (**options).
_REGISTRY = {
    "digits": (lambda path=None, **kw: load_digits_source(**kw), False),
}

SOURCE_NAMES = tuple(_REGISTRY)


def load_source(name: str, path: str | None = None, limit: int | None = None, **options) -> Source:
    """Build the named source, keeping the first ``limit`` objects."""
    if name not in _REGISTRY:
        raise InrforgeError(f"unknown source {name!r}; choose one of {', '.join(_REGISTRY)}")
    loader, _ = _REGISTRY[name]
    return loader(path=path, **options).limit(limit)


__all__ = ["Source", "ImageSource", "load_source", "SOURCE_NAMES"]
