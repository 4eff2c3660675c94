"""gimVI training: :class:`JVAETrainer` (joint VAE + adversarial dataset classifier) and
:class:`JPosterior` (a posterior over one of the datasets)."""
import logging
import numbers
from functools import partial
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scvi.dataset import GeneExpressionDataset
from scvi.models.log_likelihood import compute_elbo

from ._kl_schedule import kl_weight as _kl_weight
from .posterior import Posterior
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = ["JPosterior", "JVAETrainer", "GeneExpressionDataset", "Posterior", "Trainer", "compute_elbo"]


class JPosterior(Posterior):
    """A :class:`~scvi.inference.Posterior` over dataset ``mode`` of a :class:`~scvi.models.JVAE`.

    The generic algorithms (``elbo``, ``get_latent``, ``get_sample_scale``, ``imputation``) read
    the model through the dataset's encoder head ``mode``.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`~scvi.inference.Posterior`.
    mode
        Index of the dataset in the model.
    """

    def __init__(self, *args, mode: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.mode = mode

    def elbo(self) -> float:
        """Negative evidence lower bound per cell of dataset ``mode`` (lower is better)."""
        value = float(compute_elbo(self.model, self, mode=self.mode))
        logger.debug("ELBO : %.4f", value)
        return value

    elbo.mode = "min"

    # ------------------------------------------------------------------ model access (hooks)
    def _latent_batch(self, tensors, give_mean: bool) -> torch.Tensor:
        return self.model.sample_from_posterior_z(tensors[0], mode=self.mode, deterministic=give_mean)

    def _decoded_batch(self, tensors, normalized: bool, deterministic: bool, decode_mode, transform_batch=None):
        x, _, _, batch_index, labels = tensors[:5]
        if transform_batch is not None:
            batch_index = torch.full_like(batch_index, int(transform_batch))
        decode = self.model.sample_scale if normalized else self.model.sample_rate
        return decode(x, self.mode, batch_index, labels, deterministic=deterministic, decode_mode=decode_mode)

    def _repeated(self, tensors, n_samples: int, normalized: bool, transform_batch) -> torch.Tensor:
        draws = [self._decoded_batch(tensors, normalized, False, None, transform_batch) for _ in range(n_samples)]
        return draws[0] if n_samples == 1 else torch.stack(draws)

    def _sample_scale(self, tensors, n_samples: int, transform_batch) -> torch.Tensor:
        return self._repeated(tensors, n_samples, True, transform_batch)

    def _sample_rate(self, tensors, n_samples: int, transform_batch=None) -> torch.Tensor:
        return self._repeated(tensors, n_samples, False, transform_batch)

    @torch.no_grad()
    def imputed_values(
        self, deterministic: bool = True, normalized: bool = True, decode_mode: Optional[int] = None
    ) -> np.ndarray:
        """Decoded expression of every output gene of the model for the posterior's cells.

        Parameters
        ----------
        deterministic
            Decode the means of ``q(z | x)`` (and ``q(l | x)``) instead of draws.
        normalized
            Normalised expression (``sample_scale``) rather than mean counts (``sample_rate``).
        decode_mode
            Normalise over the genes of this dataset (default: the posterior's).

        Returns
        -------
        numpy.ndarray
            Shape ``(nb_cells, total_genes)``, in iteration order.
        """
        values = [self._decoded_batch(tensors, normalized, deterministic, decode_mode).cpu() for tensors in self]
        return torch.cat(values).numpy()


def _check_datasets(model, gene_dataset_list) -> None:
    if not isinstance(gene_dataset_list, (list, tuple)) or not gene_dataset_list:
        raise TypeError("`gene_dataset_list` must be a non-empty list of GeneExpressionDataset")
    n_inputs = getattr(model, "n_input_list", None)
    if n_inputs is None:
        return
    if len(gene_dataset_list) != len(n_inputs):
        raise ValueError(
            f"`gene_dataset_list` has {len(gene_dataset_list)} datasets but the model has {len(n_inputs)} encoder heads"
        )
    for i, (dataset, n_input) in enumerate(zip(gene_dataset_list, n_inputs)):
        if dataset.nb_genes != n_input:
            raise ValueError(
                f"dataset {i} has {dataset.nb_genes} genes but the model expects {n_input} (`dim_input_list[{i}]`)"
            )


class JVAETrainer(Trainer):
    """Unsupervised training of a :class:`~scvi.models.JVAE` on several datasets (gimVI).

    Each step takes one minibatch of every dataset (the smaller datasets are cycled over). With
    two or more datasets and ``kappa > 0``, the ``discriminator`` first learns to tell the datasets
    apart from their latent variables, then the model is trained to fool it, then to maximise its
    ELBO.

    Parameters
    ----------
    model
        A :class:`~scvi.models.JVAE`.
    discriminator
        A classifier returning logits over the datasets, e.g. ``Classifier(n_latent, 32, 2, 3,
        logits=True)``; may be ``None`` when it is not used (one dataset or ``kappa=0``).
    gene_dataset_list
        One dataset per encoder head of the model, e.g. ``[CortexDataset(), SmfishDataset()]``.
    train_size
        Fraction of the cells of each dataset used for training, in ``(0, 1]``.
    use_cuda
        Train on the GPU if there is one.
    kappa
        Weight of the discriminator and fooling losses (non-negative).
    n_epochs_kl_warmup
        Epochs of linear warm-up of the KL terms (``None``: no warm-up).
    **kwargs
        Arguments of :class:`~scvi.inference.Trainer` (``frequency``, ``batch_size`` ...).

    Raises
    ------
    ValueError
        For ``train_size`` outside ``(0, 1]``, a negative ``kappa``, datasets that do not match the
        model's encoder heads, or a missing discriminator that would be needed.

    Examples
    --------
    >>> discriminator = Classifier(n_latent, 32, 2, 3, logits=True)
    >>> trainer = JVAETrainer(model, discriminator, [data_seq, data_spatial], 0.95, frequency=1, kappa=1)
    >>> trainer.train(n_epochs=200)
    >>> latent_seq, latent_spatial = trainer.get_latent()
    """

    default_metrics_to_monitor = ["elbo"]

    def __init__(
        self,
        model: nn.Module,
        discriminator: Optional[nn.Module],
        gene_dataset_list: List[GeneExpressionDataset],
        train_size: float = 0.9,
        use_cuda: bool = True,
        kappa: float = 1.0,
        n_epochs_kl_warmup: Optional[int] = 400,
        **kwargs,
    ):
        train_size = float(train_size)
        if not 0.0 < train_size <= 1.0:
            raise ValueError(f"train_size needs to be greater than 0 and less than or equal to 1; got {train_size}")
        if not isinstance(kappa, numbers.Real) or kappa < 0:
            raise ValueError(f"`kappa` must be a non-negative number; got {kappa!r}")
        warmup = n_epochs_kl_warmup
        if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, numbers.Integral) or warmup < 0):
            raise ValueError(f"`n_epochs_kl_warmup` must be None or a non-negative integer; got {n_epochs_kl_warmup!r}")
        _check_datasets(model, gene_dataset_list)
        if discriminator is None and len(gene_dataset_list) > 1 and kappa > 0:
            raise ValueError("a `discriminator` is needed to align several datasets with kappa > 0")
        super().__init__(model, gene_dataset_list[0], use_cuda=use_cuda, **kwargs)
        self.n_epochs_kl_warmup = n_epochs_kl_warmup
        self.kappa = kappa
        self.n_dataset = len(gene_dataset_list)
        self.all_dataset = [
            self.create_posterior(gene_dataset=dataset, type_class=partial(JPosterior, mode=i))
            for i, dataset in enumerate(gene_dataset_list)
        ]
        splits = [
            self.train_test_validation(model, dataset, train_size, type_class=partial(JPosterior, mode=i))
            for i, dataset in enumerate(gene_dataset_list)
        ]
        self.all_train, self.all_test, self.all_validation = (list(group) for group in zip(*splits))
        for prefix, posteriors in (("train", self.all_train), ("test", self.all_test)):
            for i, posterior in enumerate(posteriors):
                posterior.to_monitor = ["elbo"]
                self.register_posterior(f"{prefix}_{i}", posterior)

        self.discriminator = discriminator
        if discriminator is not None:
            discriminator.to(self.device)
        self.d_optimizer = None
        self.train_discriminator = False
        self.track_disc = []

    # ------------------------------------------------------------------ schedule and loop
    @property
    def kl_weight(self) -> float:
        """Weight of the KL terms: ``min(1, epoch / n_epochs_kl_warmup)`` (1 without warm-up)."""
        return max(0.0, _kl_weight(self.epoch, self.n_iter, self.n_epochs_kl_warmup, None))

    @property
    def posteriors_loop(self) -> List[str]:
        """``["train_0", "train_1", ...]``: one training posterior per dataset."""
        return [f"train_{i}" for i in range(self.n_dataset)]

    def data_loaders_loop(self):
        """Minibatches of every dataset together: the largest once, the others cycled."""
        posteriors = [self._posteriors[name] for name in self.posteriors_loop]
        largest = int(np.argmax([posterior.nb_cells for posterior in posteriors]))
        return zip(*(posterior if i == largest else _cycle(posterior) for i, posterior in enumerate(posteriors)))

    def training_extras_init(self, lr_d: float = 1e-3, eps: float = 0.01):
        """Create the discriminator's optimiser (Adam with ``lr_d`` and ``eps``)."""
        self.train_discriminator = self.n_dataset > 1 and self.kappa > 0
        if self.discriminator is None:
            return
        self.discriminator.train()
        params = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.d_optimizer = torch.optim.Adam(params, lr=lr_d, eps=eps)

    def training_extras_end(self):
        """Put the discriminator in evaluation mode."""
        if self.discriminator is not None:
            self.discriminator.eval()

    def on_training_loop(self, tensors_list):
        """Discriminator step, fooling step (when adversarial), then the ELBO step."""
        if self.train_discriminator:
            latents = [
                self.model.sample_from_posterior_z(tensors[0], mode=i, deterministic=False)
                for i, tensors in enumerate(tensors_list)
            ]
            d_loss = self.kappa * self.loss_discriminator([z.detach() for z in latents], True)
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()

            fool_loss = self.kappa * self.loss_discriminator(latents, False)
            self.optimizer.zero_grad(set_to_none=True)
            fool_loss.backward()
            self.optimizer.step()

        loss = self.loss(tensors_list)
        self.current_loss = loss.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # ------------------------------------------------------------------ losses
    def loss_discriminator(
        self,
        latent_tensors: List[torch.Tensor],
        predict_true_class: bool = True,
        return_details: bool = False,
    ) -> Union[List[torch.Tensor], torch.Tensor]:
        """Cross-entropy of the discriminator on the latent variables of each dataset.

        Parameters
        ----------
        latent_tensors
            ``z`` of a minibatch of each dataset, shapes ``(n_i, n_latent)``.
        predict_true_class
            Target the true dataset (discriminator step) or, uniformly, every other dataset
            (fooling step).
        return_details
            Return the loss of each dataset instead of their sum.

        Returns
        -------
        torch.Tensor or list of torch.Tensor
            A scalar, or one scalar per dataset.
        """
        if self.discriminator is None:
            raise ValueError("this trainer has no `discriminator`")
        n_classes = self.n_dataset
        losses = []
        for i, z in enumerate(latent_tensors):
            log_probs = F.log_softmax(self.discriminator(z), dim=1)
            target = torch.zeros(n_classes, dtype=log_probs.dtype, device=z.device)
            if predict_true_class:
                target[i] = 1.0
            else:
                target.fill_(1.0 / max(n_classes - 1, 1))
                target[i] = 0.0
            losses.append(-(log_probs * target).sum(dim=1).mean())
        if return_details:
            return losses
        return torch.stack(losses).sum()

    def loss(
        self, tensors: Iterable, return_details: bool = False
    ) -> Union[torch.Tensor, Tuple[List[torch.Tensor], List[torch.Tensor]]]:
        """ELBO loss over a minibatch of every dataset, averaged over all their cells.

        Parameters
        ----------
        tensors
            One minibatch ``(X, local_l_mean, local_l_var, batch_index, labels)`` per dataset.
        return_details
            Return the mean reconstruction loss and mean KL divergence of each dataset instead.

        Returns
        -------
        torch.Tensor or tuple
            A scalar ``sum_i sum_cells (reconst + kl_weight * kl) / total cells``, or
            ``(reconstruction_losses, kl_divergences)``, lists of scalars.
        """
        kl_weight = self.kl_weight
        reconstruction_losses, kl_divergences, losses = [], [], []
        total_batch_size = 0
        for i, minibatch in enumerate(tensors):
            x, local_l_mean, local_l_var, batch_index = minibatch[:4]
            reconst_loss, kl_divergence, _ = self.model(x, local_l_mean, local_l_var, batch_index, mode=i)
            losses.append(torch.sum(reconst_loss + kl_weight * kl_divergence))
            total_batch_size += x.size(0)
            if return_details:
                reconstruction_losses.append(reconst_loss.mean())
                kl_divergences.append(kl_divergence.mean())
        if return_details:
            return reconstruction_losses, kl_divergences
        return torch.stack(losses).sum() / total_batch_size

    # ------------------------------------------------------------------ inspection
    @torch.no_grad()
    def get_discriminator_confusion(self) -> np.ndarray:
        """Mean predicted dataset probabilities of the cells of each dataset (good mixing: uniform).

        Returns
        -------
        numpy.ndarray
            Shape ``(n_dataset, n_dataset)``: row ``i`` averages the discriminator's softmax over
            the cells of dataset ``i``.
        """
        if self.discriminator is None:
            raise ValueError("this trainer has no `discriminator`")
        self.model.eval()
        self.discriminator.eval()
        rows = []
        for posterior in self.all_dataset:
            latent = torch.as_tensor(posterior.get_latent(give_mean=True)[0], device=self.device)
            rows.append(F.softmax(self.discriminator(latent), dim=1).mean(dim=0).cpu().numpy())
        return np.array(rows)

    @torch.no_grad()
    def get_loss_magnitude(self, one_sample: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reconstruction, KL and discriminator losses of each dataset, summed over the minibatches
        of the training sets (to compare their magnitudes).

        Parameters
        ----------
        one_sample
            Use a single minibatch (faster, noisier).

        Returns
        -------
        reconstruction, kl_divergence, discriminator
            Each of shape ``(n_dataset,)``.
        """
        total_reconstruction = np.zeros(self.n_dataset)
        total_kl_divergence = np.zeros(self.n_dataset)
        total_discriminator = np.zeros(self.n_dataset)
        for tensors_list in self.data_loaders_loop():
            reconstruction_losses, kl_divergences = self.loss(tensors_list, return_details=True)
            latents = [
                self.model.sample_from_posterior_z(tensors[0], mode=i, deterministic=False)
                for i, tensors in enumerate(tensors_list)
            ]
            discriminator_losses = self.loss_discriminator(latents, return_details=True)
            for i in range(self.n_dataset):
                total_reconstruction[i] += reconstruction_losses[i].item()
                total_kl_divergence[i] += kl_divergences[i].item()
                total_discriminator[i] += discriminator_losses[i].item()
            if one_sample:
                break
        return total_reconstruction, total_kl_divergence, total_discriminator

    def get_latent(self, deterministic: bool = True) -> List[np.ndarray]:
        """Latent representation of every cell of each dataset, in dataset order.

        Parameters
        ----------
        deterministic
            Use the mean of ``q(z | x)`` instead of a draw.

        Returns
        -------
        list of numpy.ndarray
            One array of shape ``(n_cells_i, n_latent)`` per dataset.
        """
        self.model.eval()
        return [posterior.get_latent(give_mean=deterministic)[0] for posterior in self.all_dataset]

    def get_imputed_values(
        self, deterministic: bool = True, normalized: bool = True, decode_mode: Optional[int] = None
    ) -> List[np.ndarray]:
        """Imputed expression of every output gene for every cell of each dataset.

        Parameters
        ----------
        deterministic
            Decode the means of ``q(z | x)`` (and ``q(l | x)``) instead of draws.
        normalized
            Normalised expression (rows sum to one over the dataset's genes) rather than mean counts.
        decode_mode
            Encode with each dataset's head but normalise over the genes of dataset ``decode_mode``.

        Returns
        -------
        list of numpy.ndarray
            One array of shape ``(n_cells_i, total_genes)`` per dataset.
        """
        self.model.eval()
        return [
            posterior.imputed_values(deterministic=deterministic, normalized=normalized, decode_mode=decode_mode)
            for posterior in self.all_dataset
        ]


def _cycle(posterior):
    """Iterate over ``posterior`` endlessly, re-drawing its (random) order at each pass."""
    if posterior.nb_cells == 0:
        return
    while True:
        yield from posterior
