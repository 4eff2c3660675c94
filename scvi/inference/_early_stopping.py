"""Early stopping, best-state tracking and learning-rate reduction on plateaus."""
import logging
from typing import Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)


def _metric_mode(posterior_class, metric: Optional[str], parameter: str) -> Optional[str]:
    """``"min"`` or ``"max"``: the ``mode`` attribute of the posterior's metric method."""
    if metric is None:
        return None
    method = getattr(posterior_class, metric, None)
    mode = getattr(method, "mode", None)
    if mode not in ("min", "max"):
        known = sorted(
            name for name in dir(posterior_class) if getattr(getattr(posterior_class, name, None), "mode", None)
        )
        raise ValueError(
            f"`{parameter}` must name a metric of {posterior_class.__name__} with a mode, "
            f"one of {known}; got {metric!r}"
        )
    return mode


class EarlyStopping:
    """Decide after each epoch whether to stop, to keep the weights, to reduce the learning rate.

    Parameters
    ----------
    early_stopping_metric
        Metric (a ``Posterior`` method with a ``mode``, e.g. ``"elbo"``) watched for early stopping.
    save_best_state_metric
        Metric whose best value's weights are restored at the end of training.
    on
        Name of the posterior the metrics are read on (e.g. ``"test_set"``).
    patience
        Epochs without an improvement of more than ``threshold`` before stopping.
    threshold
        Minimal improvement.
    benchmark
        Never stop.
    reduce_lr_on_plateau
        Multiply the learning rate by ``lr_factor`` after ``lr_patience`` epochs without improvement.
    lr_patience, lr_factor
        See ``reduce_lr_on_plateau``.
    posterior_class
        Class whose metric methods give the modes (default: ``Posterior``).
    """

    def __init__(
        self,
        early_stopping_metric: str = None,
        save_best_state_metric: str = None,
        on: str = "test_set",
        patience: int = 15,
        threshold: int = 3,
        benchmark: bool = False,
        reduce_lr_on_plateau: bool = False,
        lr_patience: int = 10,
        lr_factor: float = 0.5,
        posterior_class=None,
    ):
        if posterior_class is None:
            from .posterior import Posterior

            posterior_class = Posterior
        if not 0 < lr_factor <= 1:
            raise ValueError(f"`lr_factor` must be in (0, 1]; got {lr_factor}")
        self.benchmark = benchmark
        self.patience = patience
        self.threshold = threshold
        self.epoch = 0
        self.wait = 0
        self.wait_lr = 0
        self.mode = _metric_mode(posterior_class, early_stopping_metric, "early_stopping_metric")
        self.mode_save_state = _metric_mode(posterior_class, save_best_state_metric, "save_best_state_metric")
        sign = -1.0 if self.mode == "max" else 1.0
        self.current_performance = sign * np.inf
        self.best_performance = sign * np.inf
        self.best_performance_state = (-1.0 if self.mode_save_state == "max" else 1.0) * np.inf
        self.early_stopping_metric = early_stopping_metric
        self.save_best_state_metric = save_best_state_metric
        self.on = on
        self.reduce_lr_on_plateau = reduce_lr_on_plateau
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor

    def update(self, scalar: float) -> Tuple[bool, bool]:
        """Record this epoch's value of the early-stopping metric.

        Returns
        -------
        continue_training, reduce_lr
        """
        self.epoch += 1
        if self.benchmark:
            return True, False
        if self.wait >= self.patience:
            logger.info(
                "Stopping early: no improvement of more than %s nats in %s epochs. If the criterion is too "
                "strong, pass other early_stopping_kwargs to the trainer.",
                self.threshold,
                self.patience,
            )
            return False, False
        reduce_lr = False
        if self.reduce_lr_on_plateau and self.wait_lr >= self.lr_patience:
            reduce_lr = True
            self.wait_lr = 0
        self.current_performance = scalar
        if self.mode == "max":
            improvement = self.current_performance - self.best_performance
        else:
            improvement = self.best_performance - self.current_performance
        if improvement > 0:
            self.best_performance = self.current_performance
        if improvement < self.threshold:
            self.wait += 1
            self.wait_lr += 1
        else:
            self.wait = 0
            self.wait_lr = 0
        return True, reduce_lr

    def update_state(self, scalar: float) -> bool:
        """Record this epoch's value of the best-state metric; ``True`` if it is the best so far."""
        if self.mode_save_state == "max":
            improved = scalar - self.best_performance_state > 0
        else:
            improved = self.best_performance_state - scalar > 0
        if improved:
            self.best_performance_state = scalar
        return bool(improved)
