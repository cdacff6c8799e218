"""inrforge: fit many INRs at once, store them in Zarr, and learn in their weight space.

Public API::

    INRSpec, make_arch          the frozen INR architecture description (inrforge.arch)
    Weights                     the batched weight container (inrforge.weights)
    render                      evaluate a batch of INRs (inrforge.inr)
    fit_inrs                    fit a source into a store, resumably (inrforge.fitjob)
    open_store                  open a store: .arch, len(), .read(indices, view) (inrforge.store)
    load_source                 the sources registry (inrforge.sources)
    WeightDataset               the batched, augmenting loader over a store (inrforge.data)

Submodules: ``inrforge.augment`` / ``inrforge.align`` (weight-space augmentations, weight
matching), ``inrforge.models`` (DWSNet, FlatMLP), ``inrforge.train``, ``inrforge.distributed``
(Dask fitting), ``inrforge.interop`` (DWSNets .pth import/export).
"""

__version__ = "0.1.0"

from .arch import FourierSpec, INRSpec, make_arch  # noqa: E402
from .data import WeightDataset  # noqa: E402
from .errors import InrforgeError  # noqa: E402
from .fitjob import fit_inrs  # noqa: E402
from .inr import render  # noqa: E402
from .sources import load_source  # noqa: E402
from .store import INRStore, open_store  # noqa: E402
from .weights import Weights  # noqa: E402

__all__ = ["INRSpec", "FourierSpec", "make_arch", "Weights", "InrforgeError", "render", "fit_inrs", "open_store",
           "INRStore", "load_source", "WeightDataset", "__version__"]
