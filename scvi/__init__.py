"""scvi: deep generative models of single-cell omics, with the scVI 0.6 API."""
from ._settings import _ensure_handler, set_seed, set_verbosity

__version__ = "0.7.0"

# Only the package's own logger is configured (INFO as in scVI 0.6); the root logger, warnings
# filters, torch backends and global seeds are left alone.
_ensure_handler()

__all__ = ["set_seed", "set_verbosity"]
