"""inrforge's version: one place, read by the package, the store's format marker, setup.cfg and the CLI."""

__version__ = "0.8.0"
