"""inrforge: fit many INRs at once, store them in Zarr, and learn in their weight space.

Public API::

    INRSpec, FourierSpec, make_arch   the frozen INR architecture description (inrforge.arch)
    Weights                           the batched weight container (inrforge.weights)
    render                            evaluate a batch of INRs (inrforge.inr)
    fit_inrs                          fit a source into a store, resumably (inrforge.fitjob)
    open_store, INRStore              a store: .arch, len(), .read(indices, view) (inrforge.store)
    load_source                       the sources registry (inrforge.sources)
    WeightDataset                     the batched, augmenting loader over a store (inrforge.data)
    load_run                          a finished training run, to predict with (inrforge.predict)
    InrforgeError                     what every error a user can cause is (one line)

Submodules: ``inrforge.augment`` / ``inrforge.align`` (weight-space augmentations, weight
matching), ``inrforge.models`` (DWSNet, FlatMLP), ``inrforge.train``, ``inrforge.distributed``
(Dask fitting), ``inrforge.interop`` (DWSNets .pth import/export), ``inrforge.zoo`` /
``inrforge.adapt`` (classifier zoos, weight->weight domain adaptation), ``inrforge.contrastive``;
README's "Code layout" lists them all along the data flow.
"""

import importlib as _importlib
import importlib.util as _importlib_util

from .version import __version__

# The public names and the modules that define them, imported on first use (PEP 562): ``import
# inrforge`` and the console script's start do not wait for torch, so a Ctrl-C in the first seconds
# of ``inrforge ...`` is one line (inrforge.launch), not a traceback from inside torch's import.
_EXPORTS = {"INRSpec": "arch", "FourierSpec": "arch", "make_arch": "arch", "WeightDataset": "data",
            "InrforgeError": "errors", "fit_inrs": "fitjob", "render": "inr", "load_source": "sources",
            "INRStore": "store", "open_store": "store", "Weights": "weights", "load_run": "predict"}

__all__ = ["INRSpec", "FourierSpec", "make_arch", "Weights", "InrforgeError", "render", "fit_inrs", "open_store",
           "INRStore", "load_source", "WeightDataset", "load_run", "__version__"]


def __getattr__(name: str):
    """A public name, looked up in its module each time (not kept here: a test's monkeypatch of
    ``inrforge.store.open_store`` must not outlive its undo), or a submodule (``inrforge.fit``)."""
    if name in _EXPORTS:
        return getattr(_importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if "." not in name and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f".{name}", __name__)  # importing it also sets it here
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({n for n in globals() if not n.startswith("_")} | set(_EXPORTS) | {"__version__"})
