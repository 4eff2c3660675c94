"""Package-wide settings: logging verbosity and random seeds.

Nothing here runs at import time except creating the ``scvi`` logger with a handler, so that
``scvi.set_verbosity`` behaves as in scVI 0.6 (INFO by default) without touching the root logger.
"""
import logging
import random
from typing import Union

import numpy as np
import torch

logger = logging.getLogger("scvi")

_FORMAT = "[%(asctime)s] %(levelname)s - %(name)s | %(message)s"


def _ensure_handler() -> None:
    """Attach one stream handler to the ``scvi`` logger (idempotent)."""
    if not any(getattr(h, "_scvi_handler", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        handler._scvi_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def set_verbosity(level: Union[str, int]) -> None:
    """Set the verbosity of the ``scvi`` logger.

    Parameters
    ----------
    level
        A level of the standard :mod:`logging` module, as an int (e.g. ``logging.WARNING`` or 30)
        or a name (``"WARNING"``). The default is ``INFO`` (20).

    Raises
    ------
    ValueError
        If ``level`` is not a known logging level.
    """
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"`level` must be a logging level name or int; got {level!r}")
        level = resolved
    if not isinstance(level, int):
        raise ValueError(f"`level` must be a logging level name or int; got {level!r}")
    _ensure_handler()
    logger.setLevel(level)
    for handler in logger.handlers:
        handler.setLevel(level)


def set_seed(seed: int = 0) -> None:
    """Seed python's, numpy's and torch's global random generators.

    Library code never reseeds globals; this is for the user who asks (as ``scvi.set_seed`` did in 0.6).

    Parameters
    ----------
    seed
        The seed.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
