"""inrforge: fit many INRs at once, store them in Zarr, and learn in their weight space.

Public API::

    INRSpec, FourierSpec, make_arch   the frozen INR architecture description (inrforge.arch)
    Weights                           the batched weight container (inrforge.weights)
    render                            evaluate a batch of INRs (inrforge.inr)
    fit_inrs                          fit a source into a store, resumably (inrforge.fitjob)
    open_store, INRStore              a store: .arch, len(), .read(indices, view) (inrforge.store)
    load_source                       the sources registry (inrforge.sources)
    WeightDataset                     the batched, augmenting loader over a store (inrforge.data)
    InrforgeError                     what every error a user can cause is (one line)

Submodules: ``inrforge.augment`` / ``inrforge.align`` (weight-space augmentations, weight
matching), ``inrforge.models`` (DWSNet, FlatMLP), ``inrforge.train``, ``inrforge.distributed``
(Dask fitting), ``inrforge.interop`` (DWSNets .pth import/export), ``inrforge.zoo`` /
``inrforge.adapt`` (classifier zoos, weight->weight domain adaptation), ``inrforge.contrastive``;
README's "Code layout" lists them all along the data flow.
"""

from .arch import FourierSpec, INRSpec, make_arch
from .data import WeightDataset
from .errors import InrforgeError
from .fitjob import fit_inrs
from .inr import render
from .sources import load_source
from .store import INRStore, open_store
from .version import __version__
from .weights import Weights

__all__ = ["INRSpec", "FourierSpec", "make_arch", "Weights", "InrforgeError", "render", "fit_inrs", "open_store",
           "INRStore", "load_source", "WeightDataset", "__version__"]
