"""inrforge: fit many INRs at once, store them in Zarr, and learn in their weight space."""

__version__ = "0.1.0"

from .arch import FourierSpec, INRSpec, make_arch  # noqa: E402
from .errors import InrforgeError  # noqa: E402
from .weights import Weights  # noqa: E402

__all__ = ["INRSpec", "FourierSpec", "make_arch", "Weights", "InrforgeError", "__version__"]
