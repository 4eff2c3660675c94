"""scANVI: single-cell ANnotation using Variational Inference [Xu19]_, the semi-supervised scVI."""
import logging
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.distributions import Categorical, kl_divergence

from ._base import LossOutput, gaussian_log_prob, kl_normal
from .classifier import Classifier
from .modules import Decoder, Encoder
from .utils import broadcast_labels
from .vae import VAE

logger = logging.getLogger(__name__)

__all__ = ["SCANVI", "Classifier", "Decoder", "Encoder", "VAE", "broadcast_labels"]

_CLASSIFIER_OPTIONS = ("n_hidden", "n_layers", "dropout_rate", "logits")


def _label_prior(y_prior, n_labels: int) -> torch.Tensor:
    """Validated prior probabilities of the labels, shape ``(1, n_labels)`` (uniform if ``None``)."""
    if y_prior is None:
        return torch.full((1, n_labels), 1.0 / n_labels)
    prior = torch.as_tensor(np.asarray(y_prior, dtype=np.float32)).reshape(1, -1)
    if prior.size(1) != n_labels:
        raise ValueError(f"`y_prior` must have n_labels={n_labels} entries; got {prior.size(1)}")
    if not bool(torch.all(prior > 0)):
        raise ValueError("`y_prior` must hold strictly positive probabilities")
    return prior / prior.sum()


def _label_groups(labels_groups, n_labels: int) -> np.ndarray:
    """Validated group of each label, shape ``(n_labels,)``, groups numbered ``0 .. n_groups - 1``."""
    groups = np.asarray(labels_groups)
    if groups.shape != (n_labels,) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(
            f"`labels_groups` must give an integer group to each of the {n_labels} labels; got {labels_groups!r}"
        )
    unique = np.unique(groups)
    if not np.array_equal(unique, np.arange(len(unique))):
        raise ValueError(f"`labels_groups` must number the groups 0, 1, ..., n_groups - 1; got groups {unique}")
    return groups


class SCANVI(VAE):
    """Single-cell annotation using variational inference [Xu19]_.

    Hierarchical semi-supervised model: the counts are generated from ``z1`` as in scVI, and
    ``z1`` from a second latent variable ``z2`` and the cell type ``y``. A classifier ``q(y | z1)``
    is trained on the labelled cells and, for the others, weighs every possible label in the loss.

    Parameters
    ----------
    n_input
        Number of input genes.
    n_batch
        Number of batches.
    n_labels
        Number of labels (cell types).
    n_hidden
        Number of nodes per hidden layer.
    n_latent
        Dimensionality of the latent spaces ``z1`` and ``z2``.
    n_layers
        Number of hidden layers of the encoders and decoders.
    dropout_rate
        Dropout rate of the encoders.
    dispersion
        ``'gene'``, ``'gene-batch'``, ``'gene-label'`` or ``'gene-cell'`` (see :class:`VAE`).
    log_variational
        Encode ``log(1 + x)``.
    reconstruction_loss
        ``'zinb'``, ``'nb'`` or ``'poisson'``.
    y_prior
        Prior probabilities of the labels, shape ``(n_labels,)`` or ``(1, n_labels)`` (normalised
        to sum to one); uniform if ``None``. The unlabelled cells' KL term pulls the classifier
        towards it.
    labels_groups
        Group of each label, shape ``(n_labels,)``, groups numbered from 0 (used with
        ``use_labels_groups``).
    use_labels_groups
        Classify hierarchically: a group classifier gives ``p(group | z1)``, split among the
        labels of the group in proportion to the label classifier's probabilities.
    classifier_parameters
        Options of the label :class:`Classifier` (``n_hidden``, ``n_layers``, ``dropout_rate``,
        ``logits``); defaults: the model's.

    Raises
    ------
    ValueError
        For a bad ``n_labels``, ``y_prior``, ``labels_groups`` or ``classifier_parameters``.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> scanvi = SCANVI(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        reconstruction_loss: str = "zinb",
        y_prior=None,
        labels_groups: Sequence[int] = None,
        use_labels_groups: bool = False,
        classifier_parameters: dict = {},  # noqa: B006 - legacy signature; never mutated
    ):
        if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels < 1:
            raise ValueError(f"SCANVI needs `n_labels` >= 1 (the number of cell types); got {n_labels!r}")
        unknown = set(classifier_parameters) - set(_CLASSIFIER_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown `classifier_parameters` {sorted(unknown)}; allowed: {', '.join(_CLASSIFIER_OPTIONS)}"
            )
        if use_labels_groups and labels_groups is None:
            raise ValueError("`use_labels_groups=True` needs `labels_groups` (the group of each label)")
        super().__init__(
            n_input,
            n_batch=n_batch,
            n_labels=n_labels,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            dispersion=dispersion,
            log_variational=log_variational,
            reconstruction_loss=reconstruction_loss,
        )
        cls_parameters = {"n_layers": n_layers, "n_hidden": n_hidden, "dropout_rate": dropout_rate}
        cls_parameters.update(classifier_parameters)
        self.classifier = Classifier(n_latent, n_labels=n_labels, **cls_parameters)
        self._classifier_logits = bool(cls_parameters.get("logits", False))

        self.encoder_z2_z1 = Encoder(
            n_latent, n_latent, n_cat_list=[n_labels], n_layers=n_layers, n_hidden=n_hidden, dropout_rate=dropout_rate
        )
        self.decoder_z1_z2 = Decoder(n_latent, n_latent, n_cat_list=[n_labels], n_layers=n_layers, n_hidden=n_hidden)

        self.y_prior = torch.nn.Parameter(_label_prior(y_prior, n_labels), requires_grad=False)
        self.use_labels_groups = use_labels_groups
        self.labels_groups = _label_groups(labels_groups, n_labels) if labels_groups is not None else None
        if self.use_labels_groups:
            self.n_groups = int(self.labels_groups.max()) + 1
            self.classifier_groups = Classifier(n_latent, n_hidden, self.n_groups, n_layers, dropout_rate)
            self.register_buffer(
                "_label_group", torch.as_tensor(self.labels_groups, dtype=torch.long), persistent=False
            )

    # ---------------------------------------------------------------- classification
    def _label_probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """``q(y | z1)`` from the label classifier, shape ``(n, n_labels)`` (probabilities)."""
        probs = self.classifier(z)
        return torch.softmax(probs, dim=-1) if self._classifier_logits else probs

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Label probabilities of each cell (probabilities even when the classifier was built with
        ``logits=True``).

        In training mode the classifier reads a draw of ``z1``, as in scVI 0.6 (it learns on the
        encoder's noise, which regularises it when few cells are labelled); in evaluation mode it
        reads the posterior mean of ``z1``, so that predictions do not depend on a random draw.

        With ``use_labels_groups``, ``p(label) = p(group) * p(label | group)`` where ``p(group)``
        comes from the group classifier and ``p(label | group)`` is the label classifier's output
        renormalised within the group.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_labels)``.
        """
        qz_m, _, untran_z = self.z_encoder.encode(self._encoder_input(x))
        z = self.z_encoder.z_transformation(untran_z if self.training else qz_m)
        if not self.use_labels_groups:
            return self._label_probabilities(z)
        w_g = self.classifier_groups(z)
        unw_y = self._label_probabilities(z)
        group_sums = torch.zeros_like(w_g).index_add_(1, self._label_group, unw_y)
        return unw_y / (group_sums[:, self._label_group] + 1e-8) * w_g[:, self._label_group]

    def get_latents(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """``[z1, z2]``: a draw of ``z1`` and of ``z2`` given ``z1`` and ``y`` (its mean in eval mode).

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        y
            Labels, shape ``(n, 1)`` (or one-hot ``(n, n_labels)``).

        Returns
        -------
        list of torch.Tensor
            Two tensors of shape ``(n, n_latent)``.
        """
        z1 = super().get_latents(x)[0]
        qz2_m, _, z2 = self.encoder_z2_z1(z1, y)
        return [z1, z2 if self.training else qz2_m]

    # ---------------------------------------------------------------- loss
    def forward(self, x, local_l_mean, local_l_var, batch_index=None, y=None) -> LossOutput:
        """Loss terms of a labelled (``y`` given) or unlabelled (``y=None``) minibatch.

        Parameters
        ----------
        x
            Counts, shape ``(n, n_input)``.
        local_l_mean, local_l_var
            Prior of the log library size, shape ``(n, 1)``.
        batch_index
            Batch of each cell, shape ``(n, 1)``.
        y
            Labels, shape ``(n, 1)``; ``None`` for unlabelled cells, whose loss is averaged over
            every label weighted by ``q(y | z1)``, plus ``KL(q(y | z1) || y_prior)``.

        Returns
        -------
        LossOutput
            ``(reconst_loss, kl_local, 0.0)``, shapes ``(n,)``: ``reconst_loss`` holds
            ``-log p(x | z1, l) - log p(z1 | z2, y) + log q(z1 | x)``; ``kl_local`` holds the KL
            terms of ``z2``, ``l`` (and ``y`` when unlabelled).
        """
        outputs = self._inference(x, batch_index, y)
        qz1_m, qz1_v, z1 = outputs["qz_m"], outputs["qz_v"], outputs["z"]
        reconst_loss = self.get_reconstruction_loss(x, outputs["px_rate"], outputs["px_r"], outputs["px_dropout"])
        kl_divergence_l = kl_normal(outputs["ql_m"], outputs["ql_v"], local_l_mean, local_l_var).sum(dim=1)
        loss_z1_weight = gaussian_log_prob(z1, qz1_m, qz1_v).sum(dim=-1)

        # every label for unlabelled cells: shape (n_labels * n, ...)
        ys, z1s = broadcast_labels(y, z1, n_broadcast=self.n_labels)
        qz2_m, qz2_v, z2 = self.encoder_z2_z1(z1s, ys)
        pz1_m, pz1_v = self.decoder_z1_z2(z2, ys)
        kl_divergence_z2 = kl_normal(qz2_m, qz2_v).sum(dim=1)
        loss_z1_unweight = -gaussian_log_prob(z1s, pz1_m, pz1_v).sum(dim=-1)

        if y is not None:
            return LossOutput(
                reconst_loss + loss_z1_weight + loss_z1_unweight, kl_divergence_z2 + kl_divergence_l, 0.0
            )

        probs = self._label_probabilities(z1)
        reconst_loss = reconst_loss + loss_z1_weight + (loss_z1_unweight.view(self.n_labels, -1).t() * probs).sum(1)
        kl_local = (kl_divergence_z2.view(self.n_labels, -1).t() * probs).sum(dim=1)
        kl_local = kl_local + kl_divergence(Categorical(probs=probs), Categorical(probs=self.y_prior.expand_as(probs)))
        return LossOutput(reconst_loss, kl_local + kl_divergence_l, 0.0)
