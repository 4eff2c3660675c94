"""The training loop shared by every trainer (``Trainer``), with early stopping and the NaN guard."""
import copy
import logging
import math
import numbers
import time
from collections import OrderedDict, defaultdict
from itertools import cycle
from typing import List

import numpy as np
import torch

from scvi._allocator import tune_cpu_allocator
from scvi._utils import resolve_device, track

from ._early_stopping import EarlyStopping
from ._optim import Adam
from ._posterior._sampling import SequentialSubsetSampler as _OrderedSubsetSampler
from ._splits import split_indices
from ._training_state import TrainingState, add_state_properties
from .posterior import Posterior

logger = logging.getLogger(__name__)

try:  # the dataset module is written in parallel; only needed for the legacy re-export
    from scvi.dataset import GeneExpressionDataset
except ImportError:  # pragma: no cover
    GeneExpressionDataset = None

__all__ = ["Trainer", "EarlyStopping", "SequentialSubsetSampler", "Posterior", "GeneExpressionDataset"]


class SequentialSubsetSampler(_OrderedSubsetSampler):
    """Iterate over ``indices`` in increasing order.

    Parameters
    ----------
    indices
        Cell indices, shape ``(n,)``.
    """

    def __init__(self, indices):
        super().__init__(np.sort(np.asarray(indices)))


def _check_positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer{' or None' if allow_none else ''}; got {value!r}")


@add_state_properties
class Trainer:
    """Train a model by minibatch gradient descent and monitor its metrics.

    Subclasses define ``loss(*tensors)`` and ``posteriors_loop`` (names of the registered
    posteriors iterated together at each step). The loop is: epochs -> ``data_loaders_loop()``
    -> ``on_iteration_begin`` -> ``on_training_loop`` (loss, backward, optimizer step) ->
    ``on_iteration_end`` (NaN guard), with metrics every ``frequency`` epochs in ``history``.

    Posteriors live in a registry (``register_posterior``); assigning a ``Posterior`` to an
    attribute (``trainer.train_set = ...``) registers it under that name and reading
    ``trainer.train_set`` reads the registry.

    Parameters
    ----------
    model
        A model (``VAE``, ``VAEC``, ``SCANVI`` ...).
    gene_dataset
        A ``GeneExpressionDataset``.
    use_cuda
        Train on the GPU if there is one (CPU with one warning otherwise).
    metrics_to_monitor
        Posterior metrics recorded in ``history`` (default: ``default_metrics_to_monitor``).
    benchmark
        No metrics and no early stopping.
    frequency
        Record metrics every ``frequency`` epochs (``None``: never).
    weight_decay
        L2 penalty of Adam.
    early_stopping_kwargs
        Arguments of :class:`EarlyStopping` (``early_stopping_metric``, ``save_best_state_metric``,
        ``on``, ``patience``, ``threshold``, ``reduce_lr_on_plateau``, ``lr_patience``, ``lr_factor``).
    data_loader_kwargs
        Data-loader options of the posteriors the trainer creates.
    show_progbar
        Show a progress bar over epochs.
    batch_size
        Cells per minibatch.
    seed
        Seed of the train/test/validation split.
    max_nans
        Consecutive NaN losses tolerated before raising.
    """

    default_metrics_to_monitor: List[str] = []

    def __init__(
        self,
        model,
        gene_dataset,
        use_cuda: bool = True,
        metrics_to_monitor: List = None,
        benchmark: bool = False,
        frequency: int = None,
        weight_decay: float = 1e-6,
        early_stopping_kwargs: dict = None,
        data_loader_kwargs: dict = None,
        show_progbar: bool = True,
        batch_size: int = 128,
        seed: int = 0,
        max_nans: int = 10,
    ):
        object.__setattr__(self, "_posteriors", OrderedDict())
        self._state = TrainingState()
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("max_nans", max_nans)
        _check_positive_int("frequency", frequency, allow_none=True)
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be non-negative; got {weight_decay}")

        self.model = model
        self.gene_dataset = gene_dataset
        self.seed = seed
        self.device = resolve_device(use_cuda)
        self.use_cuda = self.device.type == "cuda"
        if self.use_cuda:
            self.model.to(self.device)

        self.batch_size = batch_size
        self.data_loader_kwargs = {"batch_size": batch_size, "pin_memory": self.use_cuda}
        self.data_loader_kwargs.update(data_loader_kwargs or {})

        self.optimizer = None
        self.weight_decay = weight_decay
        self.n_epochs = None
        self.max_nans = max_nans

        if metrics_to_monitor is not None:
            self.metrics_to_monitor = set(metrics_to_monitor)
        else:
            self.metrics_to_monitor = set(self.default_metrics_to_monitor)
        self.early_stopping = EarlyStopping(**(early_stopping_kwargs or {}))
        if self.early_stopping.early_stopping_metric:
            self.metrics_to_monitor.add(self.early_stopping.early_stopping_metric)
        self.benchmark = benchmark
        self.frequency = frequency if not benchmark else None
        self.history = defaultdict(list)
        self.best_state_dict = copy.deepcopy(self.model.state_dict())
        self.best_epoch = self.epoch
        self.show_progbar = show_progbar

    # ------------------------------------------------------------------ posterior registry
    def register_posterior(self, name, value):
        """Register ``value`` under ``name`` (leading/trailing underscores stripped).

        Parameters
        ----------
        name
            e.g. ``"train_set"``.
        value
            A ``Posterior``.
        """
        self._posteriors[name.strip("_")] = value

    def __getattr__(self, name):
        posteriors = self.__dict__.get("_posteriors")
        if posteriors is not None and name.strip("_") in posteriors:
            return posteriors[name.strip("_")]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if isinstance(value, Posterior):
            self.register_posterior(name, value)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name.strip("_") in self._posteriors:
            del self._posteriors[name.strip("_")]
        else:
            object.__delattr__(self, name)

    @property
    def posteriors_loop(self) -> List[str]:
        """Names of the posteriors iterated together at each training step."""
        raise NotImplementedError(f"{type(self).__name__} must define `posteriors_loop`")

    def data_loaders_loop(self):
        """Minibatches of ``posteriors_loop``: the first posterior once, the others cycled."""
        loaders = [self._posteriors[name] for name in self.posteriors_loop]
        return zip(loaders[0], *[cycle(loader) for loader in loaders[1:]])

    # ------------------------------------------------------------------ training
    def _make_optimizer(self, params, lr: float, eps: float) -> torch.optim.Optimizer:
        """Adam with weight decay; the fused kernel on the CPU and GPU when available."""
        params = list(params)
        try:
            return Adam(params, lr=lr, eps=eps, weight_decay=self.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # e.g. a device without a fused kernel
            return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=self.weight_decay)

    def _check_early_stopping_frequency(self) -> None:
        stopping = self.early_stopping
        if (stopping.early_stopping_metric or stopping.save_best_state_metric) and not self.frequency:
            raise ValueError(
                "early stopping and save_best_state_metric read metrics computed every `frequency` epochs: "
                "pass a positive `frequency` to the trainer"
            )

    def train(self, n_epochs=400, lr=1e-3, eps=0.01, params=None, **extras_kwargs):
        """Train for ``n_epochs`` epochs with Adam.

        Parameters
        ----------
        n_epochs
            Passes over the training posteriors.
        lr, eps
            Adam's learning rate and epsilon.
        params
            Parameters to optimise (default: all that require gradients).
        **extras_kwargs
            Passed to ``training_extras_init`` (optimisers of other networks).
        """
        if isinstance(n_epochs, bool) or not isinstance(n_epochs, numbers.Integral) or n_epochs < 0:
            raise ValueError(f"`n_epochs` must be a non-negative integer; got {n_epochs!r}")
        if not lr > 0:
            raise ValueError(f"`lr` must be positive; got {lr}")
        self._check_early_stopping_frequency()
        if self.device.type == "cpu":
            tune_cpu_allocator()  # minibatch temporaries otherwise page-fault on every step
        begin = time.time()
        self.model.train()
        if params is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self._make_optimizer(params, lr, eps)
        self.training_extras_init(**extras_kwargs)

        self.compute_metrics_time = 0.0
        self.n_epochs = n_epochs
        self.compute_metrics()
        self.on_training_begin()
        for epoch in track(range(n_epochs), description="training", disable=not self.show_progbar):
            self.epoch = epoch
            self.on_epoch_begin()
            for tensors_list in self.data_loaders_loop():
                if tensors_list[0][0].shape[0] < 3:
                    continue
                self.on_iteration_begin()
                self.on_training_loop(tensors_list)
                self.on_iteration_end()
            if not self.on_epoch_end():
                break

        if self.early_stopping.save_best_state_metric is not None:
            self.model.load_state_dict(self.best_state_dict)
            self.compute_metrics()
        self.model.eval()
        self.training_extras_end()
        self.training_time += (time.time() - begin) - self.compute_metrics_time
        logger.debug("Training time: %i s. / %i epochs", int(self.training_time), n_epochs)
        self.on_training_end()

    def on_training_loop(self, tensors_list):
        """One optimisation step on the minibatches ``tensors_list``."""
        loss = self.loss(*tensors_list)
        self.current_loss = loss.detach()
        if not math.isfinite(float(self.current_loss)):
            # A step on a NaN/inf loss would write NaN weights; skip it. check_training_status
            # counts it and stops training after `max_nans` in a row.
            return
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def loss(self, *tensors):
        """The objective of one step (defined by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must define `loss`")

    def training_extras_init(self, **extras_kwargs):
        """Set up other networks trained alongside (their optimisers ...)."""

    def training_extras_end(self):
        """Put other networks in eval mode, etc."""

    def on_training_begin(self):
        """Hook: before the first epoch."""

    def on_epoch_begin(self):
        """Hook: at the start of each epoch."""

    def on_iteration_begin(self):
        """Hook: before each optimisation step."""

    def on_iteration_end(self):
        """Hook: after each optimisation step (checks the loss is not NaN)."""
        self.check_training_status()
        self.n_iter += 1

    def on_training_end(self):
        """Hook: after training."""

    def on_epoch_end(self) -> bool:
        """Compute metrics, track the best state, early stopping and LR reduction.

        Returns
        -------
        bool
            Whether to continue training.
        """
        self.compute_metrics()
        stopping = self.early_stopping
        on = stopping.on
        if stopping.save_best_state_metric is not None and on is not None:
            values = self.history[stopping.save_best_state_metric + "_" + on]
            if values and stopping.update_state(values[-1]):
                self.best_state_dict = copy.deepcopy(self.model.state_dict())
                self.best_epoch = self.epoch
        continue_training = True
        if stopping.early_stopping_metric is not None and on is not None:
            values = self.history[stopping.early_stopping_metric + "_" + on]
            if values:
                continue_training, reduce_lr = stopping.update(values[-1])
                if reduce_lr:
                    logger.info("Reducing LR on epoch %d.", self.epoch)
                    for group in self.optimizer.param_groups:
                        group["lr"] *= stopping.lr_factor
        return continue_training

    def check_training_status(self):
        """Count consecutive NaN losses; raise after ``max_nans`` of them.

        Raises
        ------
        ValueError
            After ``max_nans`` consecutive NaN training losses.
        """
        loss_is_nan = not math.isfinite(float(self.current_loss))
        if loss_is_nan:
            logger.warning("Model training loss was NaN (or infinite): the optimisation step was skipped")
            self.nan_counter += 1
        else:
            self.nan_counter = 0
        self.previous_loss_was_nan = loss_is_nan
        if self.nan_counter >= self.max_nans:
            raise ValueError(
                f"Loss was NaN {self.max_nans} consecutive times: the model is not training properly. "
                "Consider using a lower learning rate."
            )

    # ------------------------------------------------------------------ metrics
    @torch.no_grad()
    def compute_metrics(self):
        """Record the monitored metrics of every registered posterior in ``history``
        (at epoch 0, every ``frequency`` epochs and at the last epoch)."""
        begin = time.time()
        epoch = self.epoch + 1
        if self.frequency and (epoch == 0 or epoch == self.n_epochs or epoch % self.frequency == 0):
            was_training = self.model.training
            self.model.eval()
            for name, posterior in self._posteriors.items():
                if posterior.nb_cells < 5:
                    logger.debug("%s is too small to track metrics (<5 samples)", name)
                    continue
                extra = [m for m in getattr(posterior, "to_monitor", []) if m not in self.metrics_to_monitor]
                for metric in extra + sorted(self.metrics_to_monitor):
                    self.history[metric + "_" + name].append(getattr(posterior, metric)())
            self.model.train(was_training)
        self.compute_metrics_time += time.time() - begin

    # ------------------------------------------------------------------ posteriors
    def corrupt_posteriors(self, rate=0.1, corruption="uniform", update_corruption=True):
        """Corrupt the dataset (``gene_dataset.corrupt``) and switch every posterior to corrupted counts."""
        if update_corruption:
            self.gene_dataset.corrupt(rate=rate, corruption=corruption)
        for name, posterior in list(self._posteriors.items()):
            self.register_posterior(name, posterior.corrupted())

    def uncorrupt_posteriors(self):
        """Switch every posterior back to the original counts."""
        for name, posterior in list(self._posteriors.items()):
            self.register_posterior(name, posterior.uncorrupted())

    def train_test_validation(
        self, model=None, gene_dataset=None, train_size=0.9, test_size=None, type_class=Posterior
    ):
        """Posteriors over a seeded random split of the cells: train, test and validation.

        Parameters
        ----------
        model, gene_dataset
            Default: the trainer's.
        train_size
            Fraction of cells for training, in ``(0, 1]``.
        test_size
            Fraction or number of test cells (default: all the others); cells in neither set form
            the validation set.
        type_class
            Posterior class.

        Returns
        -------
        train_set, test_set, validation_set
        """
        train_size = float(train_size)
        if not 0.0 < train_size <= 1.0:
            raise ValueError(f"train_size needs to be greater than 0 and less than or equal to 1; got {train_size}")
        model = self.model if model is None else model
        gene_dataset = self.gene_dataset if gene_dataset is None else gene_dataset
        train, test, validation = split_indices(len(gene_dataset), train_size, test_size, self.seed)
        return tuple(
            self.create_posterior(model, gene_dataset, indices=indices, type_class=type_class)
            for indices in (train, test, validation)
        )

    def create_posterior(self, model=None, gene_dataset=None, shuffle=False, indices=None, type_class=Posterior):
        """A posterior of ``type_class`` with the trainer's device and data-loader options.

        Parameters
        ----------
        model, gene_dataset
            Default: the trainer's.
        shuffle
            Iterate over all cells in random order.
        indices
            Cells of the posterior (default: all).
        type_class
            Posterior class.
        """
        model = self.model if model is None else model
        gene_dataset = self.gene_dataset if gene_dataset is None else gene_dataset
        return type_class(
            model,
            gene_dataset,
            shuffle=shuffle,
            indices=indices,
            use_cuda=self.use_cuda,
            data_loader_kwargs=self.data_loader_kwargs,
        )
