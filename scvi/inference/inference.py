"""Unsupervised training of a VAE (``UnsupervisedTrainer``) and encoder adaptation (``AdapterTrainer``)."""
import copy
import logging
from typing import List, Optional, Union

import numpy as np

from ._kl_schedule import kl_weight as _kl_weight
from .trainer import GeneExpressionDataset, Trainer

logger = logging.getLogger(__name__)

__all__ = ["UnsupervisedTrainer", "AdapterTrainer", "Trainer", "GeneExpressionDataset"]


class UnsupervisedTrainer(Trainer):
    """Train an autoencoder by maximising the ELBO.

    Parameters
    ----------
    model
        A ``VAE``, ``VAEC``, ``SCANVI``, ``AutoZIVAE`` ...
    gene_dataset
        A ``GeneExpressionDataset``.
    train_size
        Fraction of the cells used for training, in ``(0, 1]``.
    test_size
        Fraction (or number) of test cells; default: all other cells. Cells in neither set form
        ``validation_set``.
    n_iter_kl_warmup
        Iterations of linear KL warm-up (used when ``n_epochs_kl_warmup`` is ``None``).
    n_epochs_kl_warmup
        Epochs of linear KL warm-up.
    normalize_loss
        Divide the loss by the number of training cells (default: ``True`` except for AutoZI).
    **kwargs
        Arguments of :class:`~scvi.inference.Trainer` (``use_cuda``, ``frequency``,
        ``batch_size``, ``early_stopping_kwargs`` ...).

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> vae = VAE(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    >>> trainer = UnsupervisedTrainer(vae, gene_dataset, train_size=0.5)
    >>> trainer.train(n_epochs=20, lr=1e-3)
    """

    default_metrics_to_monitor = ["elbo"]

    def __init__(
        self,
        model,
        gene_dataset,
        train_size: Union[int, float] = 0.9,
        test_size: Union[int, float] = None,
        n_iter_kl_warmup: Optional[int] = None,
        n_epochs_kl_warmup: Optional[int] = 400,
        normalize_loss: bool = None,
        **kwargs,
    ):
        train_size = float(train_size)
        if not 0.0 < train_size <= 1.0:
            raise ValueError(f"train_size needs to be greater than 0 and less than or equal to 1; got {train_size}")
        for name, value in (("n_iter_kl_warmup", n_iter_kl_warmup), ("n_epochs_kl_warmup", n_epochs_kl_warmup)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
                raise ValueError(f"`{name}` must be None or a non-negative integer; got {value!r}")
        super().__init__(model, gene_dataset, **kwargs)
        self.n_iter_kl_warmup = n_iter_kl_warmup
        self.n_epochs_kl_warmup = n_epochs_kl_warmup
        if normalize_loss is None:
            normalize_loss = getattr(self.model, "reconstruction_loss", None) != "autozinb"
        self.normalize_loss = normalize_loss
        # Cells the minibatch losses are scaled to (Kingma & Welling 2013, eq. 8).
        self.n_samples = 1.0
        if type(self) is UnsupervisedTrainer:
            # Subclasses (semi-supervised, totalVI ...) create their own posteriors.
            self.train_set, self.test_set, self.validation_set = self.train_test_validation(
                model, gene_dataset, train_size, test_size
            )
            for posterior in (self.train_set, self.test_set, self.validation_set):
                posterior.to_monitor = ["elbo"]
            self.n_samples = len(self.train_set.indices)

    @property
    def posteriors_loop(self) -> List[str]:
        """``["train_set"]``."""
        return ["train_set"]

    def loss(self, tensors, feed_labels: bool = True):
        """Minibatch loss: ``n_samples * mean(reconstruction + kl_weight * local KL) + global KL``,
        divided by ``n_samples`` when ``normalize_loss``.

        Parameters
        ----------
        tensors
            A minibatch ``(X, local_l_mean, local_l_var, batch_index, labels, ...)``.
        feed_labels
            Give the labels to the model.
        """
        sample_batch, local_l_mean, local_l_var, batch_index, y = tensors[:5]
        reconst_loss, kl_local, kl_global = self.model(
            sample_batch, local_l_mean, local_l_var, batch_index, y if feed_labels else None
        )
        kl_weight = self.kl_weight
        per_cell = reconst_loss + kl_local if kl_weight == 1.0 else reconst_loss + kl_weight * kl_local
        no_global_kl = isinstance(kl_global, float) and kl_global == 0.0
        if self.normalize_loss:
            # (n_samples * mean + kl_global) / n_samples without the two scalar operations (and
            # backward nodes) that cancel out
            return per_cell.mean() if no_global_kl else per_cell.mean() + kl_global / self.n_samples
        loss = self.n_samples * per_cell.mean()
        return loss if no_global_kl else loss + kl_global

    @property
    def kl_weight(self) -> float:
        """Current weight of the local KL term (see :func:`scvi.inference._kl_schedule.kl_weight`)."""
        return _kl_weight(self.epoch, self.n_iter, self.n_epochs_kl_warmup, self.n_iter_kl_warmup)

    def on_training_begin(self):
        """Log the KL warm-up plan and warn when it outlasts training."""
        if self.n_epochs_kl_warmup is not None:
            logger.info("KL warmup for %d epochs", self.n_epochs_kl_warmup)
            if self.n_epochs_kl_warmup > self.n_epochs:
                logger.info(
                    "KL warmup phase exceeds overall training phase. If your applications rely on the "
                    "posterior quality, consider training for more epochs or reducing the kl warmup."
                )
        elif self.n_iter_kl_warmup is not None:
            logger.info("KL warmup for %d iterations", self.n_iter_kl_warmup)
            n_total_iter = self.n_epochs * np.ceil(self.gene_dataset.nb_cells / self.batch_size)
            if self.n_iter_kl_warmup > n_total_iter:
                logger.info(
                    "KL warmup phase may exceed overall training phase. If your applications rely on "
                    "posterior quality, consider training for more epochs or reducing the kl warmup."
                )
        else:
            logger.info("Training without KL warmup")

    def on_training_end(self):
        """Log when training ended before the end of the KL warm-up."""
        if self.kl_weight < 0.99:
            logger.info(
                "Training is still in warming up phase. If your applications rely on the posterior "
                "quality, consider training for more epochs or reducing the kl warmup."
            )


class AdapterTrainer(UnsupervisedTrainer):
    """Fit only the encoders of a trained model to new cells (``posterior_test``).

    Each of ``n_path`` runs restarts from the original encoder weights; the best test ELBO is
    returned by :meth:`train`.

    Parameters
    ----------
    model
        A trained model with ``z_encoder`` and ``l_encoder``.
    gene_dataset
        Its dataset.
    posterior_test
        Posterior over the new cells.
    frequency
        Epochs between ELBO evaluations.
    """

    def __init__(self, model, gene_dataset, posterior_test, frequency=5):
        super().__init__(model, gene_dataset, frequency=frequency)
        self.test_set = posterior_test
        self.test_set.to_monitor = ["elbo"]
        self.params = list(self.model.z_encoder.parameters()) + list(self.model.l_encoder.parameters())
        self.z_encoder_state = copy.deepcopy(model.z_encoder.state_dict())
        self.l_encoder_state = copy.deepcopy(model.l_encoder.state_dict())
        self.n_scale = len(self.test_set.indices)

    @property
    def posteriors_loop(self) -> List[str]:
        """``["test_set"]``."""
        return ["test_set"]

    def train(self, n_path=10, n_epochs=50, **kwargs):
        """Train the encoders ``n_path`` times from their original weights.

        Parameters
        ----------
        n_path
            Restarts.
        n_epochs
            Epochs per restart.
        **kwargs
            Passed to :meth:`Trainer.train` (``lr``, ``eps``).

        Returns
        -------
        float
            The lowest test ELBO recorded.
        """
        for _ in range(n_path):
            self.model.z_encoder.load_state_dict(self.z_encoder_state)
            self.model.l_encoder.load_state_dict(self.l_encoder_state)
            super().train(n_epochs, params=self.params, **kwargs)
        return min(self.history["elbo_test_set"])
