"""Mutable state of a training run, kept apart from the trainer's hyper-parameters."""
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch


@dataclass
class TrainingState:
    """Counters and the best weights of a run.

    Attributes
    ----------
    epoch
        Current epoch (-1 before training).
    n_iter
        Minibatches seen over all runs.
    nan_counter
        Consecutive NaN losses.
    previous_loss_was_nan
        Whether the last loss was NaN.
    current_loss
        Last training loss (detached).
    best_state_dict
        Deep copy of the weights with the best ``save_best_state_metric``.
    best_epoch
        Epoch of ``best_state_dict``.
    training_time, compute_metrics_time
        Seconds spent training and computing metrics.
    """

    epoch: int = -1
    n_iter: int = 0
    nan_counter: int = 0
    previous_loss_was_nan: bool = False
    current_loss: Optional[torch.Tensor] = None
    best_state_dict: Optional[Dict[str, Any]] = None
    best_epoch: int = -1
    training_time: float = 0.0
    compute_metrics_time: float = 0.0


def _state_property(name: str, doc: str) -> property:
    """A trainer attribute stored in its ``TrainingState`` (legacy attribute access)."""

    def getter(self):
        return getattr(self._state, name)

    def setter(self, value):
        setattr(self._state, name, value)

    return property(getter, setter, doc=doc)


STATE_ATTRIBUTES = {
    "epoch": "Current epoch (-1 before training).",
    "n_iter": "Minibatches seen so far.",
    "nan_counter": "Consecutive NaN training losses.",
    "previous_loss_was_nan": "Whether the last training loss was NaN.",
    "current_loss": "Last training loss.",
    "best_state_dict": "Deep copy of the best weights.",
    "best_epoch": "Epoch of the best weights.",
    "training_time": "Seconds spent training (without metrics).",
    "compute_metrics_time": "Seconds spent computing metrics in the current run.",
}


def add_state_properties(cls):
    """Class decorator: expose each ``TrainingState`` field as a trainer attribute."""
    for name, doc in STATE_ATTRIBUTES.items():
        setattr(cls, name, _state_property(name, doc))
    return cls
