"""Small tensor helpers shared by the models: one-hot encoding and label enumeration."""
import logging
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)

__all__ = ["one_hot", "iterate", "broadcast_labels", "enumerate_discrete"]


def one_hot(index: torch.Tensor, n_cat: int) -> torch.Tensor:
    """One-hot encode category indices.

    Parameters
    ----------
    index
        Category of each row, shape ``(n, 1)`` (or ``(n,)``), integer or integral float values in
        ``[0, n_cat)``.
    n_cat
        Number of categories.

    Returns
    -------
    torch.Tensor
        Float32 tensor of shape ``(n, n_cat)`` on the device of ``index``.
    """
    index = index.reshape(-1, 1).long()
    # zeros + scatter_ (which checks the bounds itself): F.one_hot's own range check reads the
    # minimum and maximum back to Python, and the encoders and decoders call this once per layer
    try:
        return torch.zeros(index.size(0), n_cat, dtype=torch.float32, device=index.device).scatter_(1, index, 1.0)
    except RuntimeError as error:
        if "out of bounds" in str(error):
            raise ValueError(f"category indices must be in [0, {n_cat}): {error}") from None
        raise


def iterate(obj: Any, func: Callable) -> Any:
    """Apply ``func`` to every non-``None`` leaf of nested lists / tuples (keeping their type)."""
    t = type(obj)
    if t is list or t is tuple:
        return t([iterate(o, func) for o in obj])
    return func(obj) if obj is not None else None


def enumerate_discrete(x: torch.Tensor, y_dim: int) -> torch.Tensor:
    """One-hot encodings of every label, each repeated for the ``x.size(0)`` rows of ``x``.

    Parameters
    ----------
    x
        Reference tensor (its first dimension and device are used).
    y_dim
        Number of labels.

    Returns
    -------
    torch.Tensor
        Shape ``(y_dim * n, y_dim)``: ``n`` rows of label 0, then ``n`` rows of label 1, ...
    """
    labels = torch.arange(y_dim, device=x.device).repeat_interleave(x.size(0))
    return one_hot(labels, y_dim)


def broadcast_labels(y, *o, n_broadcast: int = -1):
    """Prepare labels for the semi-supervised models.

    If ``y`` is given (labelled minibatch), one-hot encode it and return the other arguments
    unchanged. If ``y`` is ``None`` (unlabelled minibatch), enumerate every possible label and
    repeat the other arguments ``n_broadcast`` times along their first dimension.

    Parameters
    ----------
    y
        Labels, shape ``(n, 1)``, or ``None``.
    *o
        Tensors of first dimension ``n`` (``None`` entries stay ``None``).
    n_broadcast
        Number of labels.

    Returns
    -------
    tuple
        ``(ys, *o_broadcast)``.

    Raises
    ------
    ValueError
        If no reference tensor is given.
    """
    if not len(o):
        raise ValueError("Broadcast must have at least one reference argument")
    if y is None:
        ys = enumerate_discrete(o[0], n_broadcast)
        new_o = iterate(o, lambda x: x.repeat(n_broadcast, 1) if x.dim() == 2 else x.repeat(n_broadcast))
    else:
        ys = one_hot(y, n_broadcast)
        new_o = o
    return (ys,) + new_o
