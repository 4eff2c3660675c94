"""The KL warm-up schedule as a pure function."""
from typing import Optional


def kl_weight(
    epoch: int,
    n_iter: int,
    n_epochs_kl_warmup: Optional[int],
    n_iter_kl_warmup: Optional[int],
) -> float:
    """Weight of the local KL term: a linear ramp from 0 to 1 over epochs or iterations.

    The epoch criterion wins when both are given; with neither, the weight is 1.

    Parameters
    ----------
    epoch
        Current epoch (0-based).
    n_iter
        Minibatches seen so far.
    n_epochs_kl_warmup
        Epochs of warm-up, or ``None``.
    n_iter_kl_warmup
        Iterations of warm-up, or ``None`` (used only if ``n_epochs_kl_warmup`` is ``None``).

    Returns
    -------
    float
        ``min(1, epoch / n_epochs_kl_warmup)`` or ``min(1, n_iter / n_iter_kl_warmup)`` or 1.
    """
    if n_epochs_kl_warmup is not None:
        return 1.0 if n_epochs_kl_warmup <= 0 else min(1.0, epoch / n_epochs_kl_warmup)
    if n_iter_kl_warmup is not None:
        return 1.0 if n_iter_kl_warmup <= 0 else min(1.0, n_iter / n_iter_kl_warmup)
    return 1.0
