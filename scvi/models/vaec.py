"""VAEC: a semi-supervised VAE conditioned on the cell-type label (the M2 model of Kingma et al. 2014)."""
import logging
from typing import Optional

import torch
from torch.distributions import Categorical, kl_divergence

from ._base import LossOutput, kl_normal
from .classifier import Classifier
from .modules import DecoderSCVI, Encoder
from .utils import broadcast_labels
from .vae import VAE

logger = logging.getLogger(__name__)

__all__ = ["VAEC", "Classifier", "DecoderSCVI", "Encoder", "VAE", "broadcast_labels"]


class VAEC(VAE):
    r"""Semi-supervised variational auto-encoder, inspired by the M2 model (https://arxiv.org/pdf/1406.5298.pdf).

    The latent variable ``z`` and the decoder are conditioned on the label; for unlabelled cells
    the loss is averaged over every label, weighted by the classifier's probabilities, and the KL
    divergence between the classifier and the label prior is added.

    Parameters
    ----------
    n_input
        Number of input genes.
    n_batch
        Number of batches.
    n_labels
        Number of labels.
    n_hidden, n_latent, n_layers, dropout_rate, dispersion, log_variational, reconstruction_loss
        As in :class:`~scvi.models.VAE`.
    y_prior
        Prior probabilities of the labels, shape ``(1, n_labels)``; uniform if ``None``.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> vaec = VAEC(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int,
        n_labels: int,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        y_prior: Optional[torch.Tensor] = None,
        dispersion: str = "gene",
        log_variational: bool = True,
        reconstruction_loss: str = "zinb",
    ):
        if n_labels < 1:
            raise ValueError(f"VAEC needs `n_labels` >= 1; got {n_labels}")
        super().__init__(
            n_input,
            n_batch,
            n_labels,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            dispersion=dispersion,
            log_variational=log_variational,
            reconstruction_loss=reconstruction_loss,
        )
        self.z_encoder = Encoder(
            n_input, n_latent, n_cat_list=[n_labels], n_hidden=n_hidden, n_layers=n_layers, dropout_rate=dropout_rate
        )
        self.decoder = DecoderSCVI(
            n_latent, n_input, n_cat_list=[n_batch, n_labels], n_layers=n_layers, n_hidden=n_hidden
        )
        if y_prior is None:
            y_prior = torch.full((1, n_labels), 1.0 / n_labels)
        y_prior = torch.as_tensor(y_prior, dtype=torch.float32).reshape(1, -1)
        if y_prior.size(1) != n_labels:
            raise ValueError(f"`y_prior` must have {n_labels} entries; got {y_prior.size(1)}")
        self.y_prior = torch.nn.Parameter(y_prior, requires_grad=False)
        self.classifier = Classifier(n_input, n_hidden, n_labels, n_layers=n_layers, dropout_rate=dropout_rate)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Label probabilities of each cell, shape ``(n, n_labels)``."""
        return self.classifier(torch.log1p(x))

    def forward(self, x, local_l_mean, local_l_var, batch_index=None, y=None) -> LossOutput:
        """Loss terms of a minibatch, labelled (``y`` given) or not (``y=None``).

        Returns
        -------
        LossOutput
            ``(reconst_loss, kl_local, 0.0)``, per-cell tensors of shape ``(n,)``; ``kl_local``
            holds the KL divergences of ``z`` and ``l`` (and, unlabelled, of the label).
        """
        x_ = torch.log1p(x)
        ql_m, ql_v, library = self.l_encoder(x_)
        # enumerate every label for unlabelled cells
        ys, xs, library_s, batch_index_s = broadcast_labels(y, x, library, batch_index, n_broadcast=self.n_labels)
        outputs = self.inference(xs, batch_index_s, ys)
        reconst_loss = self.get_reconstruction_loss(xs, outputs["px_rate"], outputs["px_r"], outputs["px_dropout"])
        kl_divergence_z = kl_normal(outputs["qz_m"], outputs["qz_v"]).sum(dim=1)
        kl_divergence_l = kl_normal(ql_m, ql_v, local_l_mean, local_l_var).sum(dim=1)
        if y is not None:
            return LossOutput(reconst_loss, kl_divergence_z + kl_divergence_l, 0.0)

        probs = self.classifier(x_)
        reconst_loss = (reconst_loss.view(self.n_labels, -1).t() * probs).sum(dim=1)
        kl_local = (kl_divergence_z.view(self.n_labels, -1).t() * probs).sum(dim=1)
        kl_local = kl_local + kl_divergence(
            Categorical(probs=probs), Categorical(probs=self.y_prior.repeat(probs.size(0), 1))
        )
        return LossOutput(reconst_loss, kl_local + kl_divergence_l, 0.0)
