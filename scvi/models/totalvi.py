"""totalVI: joint model of RNA and surface-protein counts (CITE-seq), after Gayoso et al.

Genes follow a (zero-inflated) negative binomial as in scVI. Each protein count is a mixture of
two negative binomials sharing one inverse dispersion: a *background* component whose log mean
``beta`` has a per-cell Normal posterior and a per-protein (per-batch) Normal prior, and a
*foreground* component whose mean is the background mean times a factor ``alpha >= 1``. The
mixing probability of the background is decoded from the latent space.

Proteins that were not measured in a batch are excluded from that batch's protein likelihood
and background KL through ``protein_batch_mask``.
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

from scvi.models._base import check_option
from scvi.models._base import kl_normal
from scvi.models.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial  # noqa: F401 (legacy re-export)
from scvi.models.log_likelihood import log_mixture_nb, log_nb_positive, log_zinb_positive
from scvi.models.modules import DecoderTOTALVI, EncoderTOTALVI
from scvi.models.utils import one_hot

logger = logging.getLogger(__name__)

__all__ = ["TOTALVI", "TotalVILosses", "protein_background_prior"]

_GENE_DISPERSIONS = ("gene", "gene-batch", "gene-label")
_PROTEIN_DISPERSIONS = ("protein", "protein-batch", "protein-label")
_GENE_LIKELIHOODS = ("nb", "zinb")
_LATENT_DISTRIBUTIONS = ("normal", "ln")


class TotalVILosses(NamedTuple):
    """The five per-cell loss terms returned by :meth:`TOTALVI.forward`, each of shape ``(n_cells,)``."""

    reconst_loss_gene: torch.Tensor
    reconst_loss_protein: torch.Tensor
    kl_div_z: torch.Tensor
    kl_div_l_gene: torch.Tensor
    kl_div_back_pro: torch.Tensor


def protein_background_prior(
    protein_expression: np.ndarray,
    batch_indices: Optional[np.ndarray] = None,
    n_batch: int = 0,
    random_state: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Estimate the prior of the log protein background from the counts.

    For each protein (and batch), a two-component Gaussian mixture is fitted to ``log1p`` of the
    counts; the component with the lower mean is taken as the background.

    Parameters
    ----------
    protein_expression
        Protein counts, shape ``(n_cells, n_proteins)``.
    batch_indices
        Batch of each cell, shape ``(n_cells,)`` or ``(n_cells, 1)``; needed when ``n_batch > 0``.
    n_batch
        Number of batches of the model (0: one prior per protein).
    random_state
        Seed of the mixture fits.

    Returns
    -------
    tuple
        ``(mean, scale)``, each of shape ``(n_proteins,)`` or ``(n_proteins, n_batch)``, to pass as
        ``protein_background_prior_mean`` / ``protein_background_prior_scale`` of :class:`TOTALVI`.
        Proteins without counts in a batch get mean 0 and scale 1.
    """
    from sklearn.mixture import GaussianMixture

    counts = np.log1p(np.asarray(protein_expression, dtype=np.float64))
    if n_batch > 0:
        if batch_indices is None:
            raise ValueError("`batch_indices` is required when `n_batch` > 0")
        batch_indices = np.asarray(batch_indices).ravel()
        groups = [batch_indices == b for b in range(n_batch)]
    else:
        groups = [np.ones(counts.shape[0], dtype=bool)]
    mean = np.zeros((counts.shape[1], len(groups)), dtype=np.float32)
    scale = np.ones_like(mean)
    for b, cells in enumerate(groups):
        for p in range(counts.shape[1]):
            values = counts[cells, p].reshape(-1, 1)
            if values.shape[0] < 2 or not values.any():
                continue
            gmm = GaussianMixture(n_components=2, random_state=random_state).fit(values)
            low = int(np.argmin(gmm.means_.ravel()))
            mean[p, b] = gmm.means_.ravel()[low]
            scale[p, b] = max(float(np.sqrt(gmm.covariances_.ravel()[low])), 1e-3)
    if n_batch == 0:
        return mean[:, 0], scale[:, 0]
    return mean, scale


class TOTALVI(nn.Module):
    """Total variational inference for CITE-seq data (totalVI, [Gayoso19]).

    Parameters
    ----------
    n_input_genes
        Number of input genes.
    n_input_proteins
        Number of input proteins.
    n_batch
        Number of batches (0 or 1: no batch covariate).
    n_labels
        Number of labels (used by the ``*-label`` dispersions).
    n_hidden
        Nodes per hidden layer of the encoder and the decoders.
    n_latent
        Dimensionality of the latent space.
    n_layers_encoder, n_layers_decoder
        Hidden layers of the encoder / of each decoder branch.
    dropout_rate_decoder, dropout_rate_encoder
        Dropout rates.
    gene_dispersion
        ``'gene'`` (one inverse dispersion per gene), ``'gene-batch'`` or ``'gene-label'``.
    protein_dispersion
        ``'protein'``, ``'protein-batch'`` or ``'protein-label'``.
    log_variational
        Encode ``log(1 + counts)`` rather than counts.
    reconstruction_loss_gene
        ``'nb'`` or ``'zinb'``.
    latent_distribution
        ``'ln'`` (logistic normal: softmax of a Normal sample) or ``'normal'``.
    protein_batch_mask
        One boolean array of length ``n_input_proteins`` per batch: ``True`` where the protein was
        measured in that batch. Unmeasured proteins do not contribute to that batch's loss.
    encoder_batch
        Give the batch to the encoder as a covariate.
    protein_background_prior_mean, protein_background_prior_scale
        Initial mean and standard deviation of the prior of the log protein background, shape
        ``(n_input_proteins,)`` or ``(n_input_proteins, n_batch)`` (not in the original package,
        which starts from random values). :func:`protein_background_prior` estimates them from
        the data, which makes the background/foreground split converge in far fewer epochs.

    Examples
    --------
    >>> dataset = Dataset10X(dataset_name="pbmc_10k_protein_v3", save_path=save_path)
    >>> totalvae = TOTALVI(dataset.nb_genes, len(dataset.protein_names))
    """

    def __init__(
        self,
        n_input_genes: int,
        n_input_proteins: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 256,
        n_latent: int = 20,
        n_layers_encoder: int = 1,
        n_layers_decoder: int = 1,
        dropout_rate_decoder: float = 0.2,
        dropout_rate_encoder: float = 0.2,
        gene_dispersion: str = "gene",
        protein_dispersion: str = "protein",
        log_variational: bool = True,
        reconstruction_loss_gene: str = "nb",
        latent_distribution: str = "ln",
        protein_batch_mask: List[np.ndarray] = None,
        encoder_batch: bool = True,
        protein_background_prior_mean: Optional[np.ndarray] = None,
        protein_background_prior_scale: Optional[np.ndarray] = None,
    ):
        super().__init__()
        check_option("gene_dispersion", gene_dispersion, _GENE_DISPERSIONS)
        check_option("protein_dispersion", protein_dispersion, _PROTEIN_DISPERSIONS)
        check_option("reconstruction_loss_gene", reconstruction_loss_gene, _GENE_LIKELIHOODS)
        check_option("latent_distribution", latent_distribution, _LATENT_DISTRIBUTIONS)
        for name, value in (("n_input_genes", n_input_genes), ("n_input_proteins", n_input_proteins)):
            if int(value) < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
        if (gene_dispersion == "gene-batch" or protein_dispersion == "protein-batch") and n_batch < 1:
            raise ValueError("batch-wise dispersions ('gene-batch' / 'protein-batch') need `n_batch` >= 1")
        if (gene_dispersion == "gene-label" or protein_dispersion == "protein-label") and n_labels < 1:
            raise ValueError("label-wise dispersions ('gene-label' / 'protein-label') need `n_labels` >= 1")

        self.n_input_genes = n_input_genes
        self.n_input_proteins = n_input_proteins
        self.n_batch = n_batch
        self.n_labels = n_labels
        self.n_latent = n_latent
        self.gene_dispersion = gene_dispersion
        self.protein_dispersion = protein_dispersion
        self.log_variational = log_variational
        self.reconstruction_loss_gene = reconstruction_loss_gene
        self.latent_distribution = latent_distribution
        self.encoder_batch = encoder_batch
        self.protein_batch_mask = protein_batch_mask
        mask = self._validate_protein_batch_mask(protein_batch_mask)
        self.register_buffer("_protein_batch_mask", mask, persistent=False)

        # Prior of the log background mean: N(alpha, exp(log_beta)) per protein (and batch).
        prior_shape = (n_input_proteins, n_batch) if n_batch > 0 else (n_input_proteins,)
        alpha = torch.randn(prior_shape)
        log_beta = torch.clamp(torch.randn(prior_shape), -10, 1)
        if protein_background_prior_mean is not None:
            alpha = self._prior_init("protein_background_prior_mean", protein_background_prior_mean, prior_shape)
        if protein_background_prior_scale is not None:
            scale = self._prior_init("protein_background_prior_scale", protein_background_prior_scale, prior_shape)
            if (scale <= 0).any():
                raise ValueError("`protein_background_prior_scale` must be positive")
            log_beta = torch.log(scale)
        self.background_pro_alpha = nn.Parameter(alpha)
        self.background_pro_log_beta = nn.Parameter(log_beta)

        n_columns = {"gene": None, "gene-batch": n_batch, "gene-label": n_labels}[gene_dispersion]
        shape = (n_input_genes,) if n_columns is None else (n_input_genes, n_columns)
        self.px_r = nn.Parameter(torch.randn(shape))
        n_columns = {"protein": None, "protein-batch": n_batch, "protein-label": n_labels}[protein_dispersion]
        shape = (n_input_proteins,) if n_columns is None else (n_input_proteins, n_columns)
        self.py_r = nn.Parameter(torch.ones(shape))

        self.encoder = EncoderTOTALVI(
            n_input_genes + n_input_proteins,
            n_latent,
            n_layers=n_layers_encoder,
            n_cat_list=[n_batch] if encoder_batch else None,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate_encoder,
            distribution=latent_distribution,
        )
        self.decoder = DecoderTOTALVI(
            n_latent,
            n_input_genes,
            n_input_proteins,
            n_layers=n_layers_decoder,
            n_cat_list=[n_batch],
            n_hidden=n_hidden,
            dropout_rate=dropout_rate_decoder,
        )

    @staticmethod
    def _prior_init(name: str, value, shape) -> torch.Tensor:
        value = torch.as_tensor(np.asarray(value, dtype=np.float32))
        if value.dim() == 1 and len(shape) == 2:
            value = value.unsqueeze(1).expand(shape).clone()
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"`{name}` must have shape {tuple(shape)} (proteins[, batches]); got {tuple(value.shape)}")
        return value

    def _validate_protein_batch_mask(self, protein_batch_mask) -> Optional[torch.Tensor]:
        if protein_batch_mask is None:
            return None
        if len(protein_batch_mask) != max(self.n_batch, 1):
            raise ValueError(
                f"`protein_batch_mask` must hold one mask per batch ({max(self.n_batch, 1)}); "
                f"got {len(protein_batch_mask)}"
            )
        rows = [np.asarray(m).reshape(-1) for m in protein_batch_mask]
        if any(r.shape[0] != self.n_input_proteins for r in rows):
            raise ValueError(
                f"each entry of `protein_batch_mask` must have length n_input_proteins={self.n_input_proteins}"
            )
        return torch.as_tensor(np.stack(rows).astype(np.float32))

    # ------------------------------------------------------------------ inference (encoder)
    def _encoder_input(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        data = torch.cat((x, y), dim=-1)
        return torch.log1p(data) if self.log_variational else data

    def _encode(self, x, y, batch_index):
        cats = (batch_index,) if self.encoder_batch else ()
        return self.encoder(self._encoder_input(x, y), *cats)

    def sample_from_posterior_z(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        give_mean: bool = False,
        n_samples: int = 5000,
    ) -> torch.Tensor:
        """Latent values of the cells, shape ``(n_cells, n_latent)``.

        Parameters
        ----------
        x, y
            Gene counts ``(n_cells, n_input_genes)`` and protein counts ``(n_cells, n_input_proteins)``.
        batch_index
            Batch of each cell, ``(n_cells, 1)``.
        give_mean
            Return the posterior mean rather than a sample. With the logistic-normal latent space
            the mean of ``softmax(z)`` is estimated from ``n_samples`` draws.
        n_samples
            Number of draws for the logistic-normal mean.
        """
        qz_m, qz_v, _, _, latent, _ = self._encode(x, y, batch_index)
        if not give_mean:
            return latent["z"]
        if self.latent_distribution == "ln":
            samples = Normal(qz_m, qz_v.sqrt()).sample([n_samples])
            return self.encoder.z_transformation(samples).mean(dim=0)
        return qz_m

    def sample_from_posterior_l(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        give_mean: bool = True,
    ) -> torch.Tensor:
        """Library size of the cells (the mean of its log-normal posterior when ``give_mean``), ``(n_cells, 1)``."""
        _, _, ql_m, ql_v, latent, _ = self._encode(x, y, batch_index)
        if give_mean:
            return torch.exp(ql_m + 0.5 * ql_v)
        return latent["l"]

    # ------------------------------------------------------------------ generative (decoder)
    def _dispersion(self, param: torch.Tensor, kind: str, batch_index, label) -> torch.Tensor:
        if kind.endswith("-batch"):
            param = F.linear(one_hot(batch_index, self.n_batch), param)
        elif kind.endswith("-label"):
            param = F.linear(one_hot(label, self.n_labels), param)
        return torch.exp(param)

    def background_prior(self, batch_index: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the prior of the log background mean, per cell and protein."""
        if self.n_batch > 0:
            batch_one_hot = one_hot(batch_index, self.n_batch)
            return (
                F.linear(batch_one_hot, self.background_pro_alpha),
                F.linear(batch_one_hot, torch.exp(self.background_pro_log_beta)),
            )
        return self.background_pro_alpha, torch.exp(self.background_pro_log_beta)

    def inference(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        label: Optional[torch.Tensor] = None,
        n_samples=1,
        transform_batch: Optional[int] = None,
    ) -> Dict[str, Union[torch.Tensor, Dict[str, torch.Tensor]]]:
        """Encode the cells, sample the latent variables and decode the likelihood parameters.

        Returns
        -------
        dict
            ``px_`` (gene parameters: ``scale``, ``rate``, ``dropout`` (``None`` for an ``'nb'``
            model in training mode), ``r``), ``py_`` (protein
            parameters: ``back_alpha``, ``back_beta``, ``rate_back``, ``fore_scale``, ``rate_fore``,
            ``mixing`` (logit of the background probability), ``scale``, ``r``), ``qz_m``, ``qz_v``,
            ``z``, ``untran_z``, ``ql_m``, ``ql_v``, ``library_gene``, ``untran_l``,
            ``log_pro_back_mean``, and ``back_mean_prior`` (the Normal prior of the log background).
            Per-cell tensors have shape ``(n_cells, ·)``, or ``(n_samples, n_cells, ·)`` when
            ``n_samples > 1``.
        """
        qz_m, qz_v, ql_m, ql_v, latent, untran_latent = self._encode(x, y, batch_index)
        z, library_gene = latent["z"], latent["l"]
        untran_z, untran_l = untran_latent["z"], untran_latent["l"]
        if n_samples > 1:
            qz_m = qz_m.unsqueeze(0).expand((n_samples,) + qz_m.shape)
            qz_v = qz_v.unsqueeze(0).expand((n_samples,) + qz_v.shape)
            ql_m = ql_m.unsqueeze(0).expand((n_samples,) + ql_m.shape)
            ql_v = ql_v.unsqueeze(0).expand((n_samples,) + ql_v.shape)
            untran_z = Normal(qz_m, qz_v.sqrt()).sample()
            z = self.encoder.z_transformation(untran_z)
            untran_l = Normal(ql_m, ql_v.sqrt()).sample()
            library_gene = self.encoder.l_transformation(untran_l)

        px_r = self._dispersion(self.px_r, self.gene_dispersion, batch_index, label)
        py_r = self._dispersion(self.py_r, self.protein_dispersion, batch_index, label)
        back_mean_prior = Normal(*self.background_prior(batch_index), validate_args=False)

        if transform_batch is not None:
            batch_index = torch.full_like(batch_index, int(transform_batch))
        # the gene zero-inflation head is only needed by the ZINB loss while training
        gene_dropout = self.reconstruction_loss_gene == "zinb" or not self.training
        px_, py_, log_pro_back_mean = self.decoder(z, library_gene, batch_index, label, gene_dropout=gene_dropout)
        px_["r"] = px_r
        py_["r"] = py_r
        return dict(
            px_=px_,
            py_=py_,
            qz_m=qz_m,
            qz_v=qz_v,
            z=z,
            untran_z=untran_z,
            ql_m=ql_m,
            ql_v=ql_v,
            library_gene=library_gene,
            untran_l=untran_l,
            log_pro_back_mean=log_pro_back_mean,
            back_mean_prior=back_mean_prior,
        )

    def get_sample_rate(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        label: Optional[torch.Tensor] = None,
        n_samples: int = 1,
    ) -> torch.Tensor:
        """Mean of the gene negative binomial, ``(n_cells, n_input_genes)`` (``(n_samples, …)`` for several samples)."""
        return self.inference(x, y, batch_index=batch_index, label=label, n_samples=n_samples)["px_"]["rate"]

    def get_sample_dispersion(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        label: Optional[torch.Tensor] = None,
        n_samples: int = 1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Inverse dispersions of genes and proteins, ``(px_r, py_r)``."""
        outputs = self.inference(x, y, batch_index=batch_index, label=label, n_samples=n_samples)
        return outputs["px_"]["r"], outputs["py_"]["r"]

    def get_sample_scale(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        label: Optional[torch.Tensor] = None,
        n_samples: int = 1,
        transform_batch: Optional[int] = None,
        eps=0,
        normalize_pro=False,
        sample_bern=True,
        include_bg=False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised gene expression and denoised protein expression (the quantities of DE).

        Parameters
        ----------
        transform_batch
            Decode every cell as if it came from this batch.
        eps
            Prior count added to the protein values.
        normalize_pro
            Make the protein values of a cell sum to one.
        sample_bern
            Sample the background indicator rather than weighting by its probability.
        include_bg
            Include the background component in the protein values.

        Returns
        -------
        tuple
            Gene scales ``(n_cells, n_input_genes)`` and protein values ``(n_cells, n_input_proteins)``.
        """
        outputs = self.inference(
            x, y, batch_index=batch_index, label=label, n_samples=n_samples, transform_batch=transform_batch
        )
        px_, py_ = outputs["px_"], outputs["py_"]
        background = torch.sigmoid(py_["mixing"])
        if sample_bern:
            background = Bernoulli(background, validate_args=False).sample()
        pro_value = (1 - background) * py_["rate_fore"]
        if include_bg:
            pro_value = pro_value + background * py_["rate_back"]
        if normalize_pro:
            pro_value = F.normalize(pro_value, p=1, dim=-1)
        return px_["scale"], pro_value + eps

    # ------------------------------------------------------------------ loss
    def get_reconstruction_loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        px_: Dict[str, torch.Tensor],
        py_: Dict[str, torch.Tensor],
        pro_batch_mask_minibatch: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Negative log-likelihoods of genes and proteins, each of shape ``(n_cells,)``.

        ``pro_batch_mask_minibatch`` (``(n_cells, n_input_proteins)``, 1 where measured) zeroes
        the protein terms of unmeasured proteins.
        """
        if self.reconstruction_loss_gene == "zinb":
            log_px = log_zinb_positive(x, px_["rate"], px_["r"], px_["dropout"])
        else:
            log_px = log_nb_positive(x, px_["rate"], px_["r"])
        reconst_loss_gene = -log_px.sum(dim=-1)

        reconst_loss_protein_full = -log_mixture_nb(
            y, py_["rate_back"], py_["rate_fore"], py_["r"], None, py_["mixing"]
        )
        if pro_batch_mask_minibatch is not None:
            reconst_loss_protein_full = reconst_loss_protein_full * pro_batch_mask_minibatch
        return reconst_loss_gene, reconst_loss_protein_full.sum(dim=-1)

    def protein_mask_for(self, batch_index: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """``(n_cells, n_input_proteins)`` mask of measured proteins, or ``None`` without a ``protein_batch_mask``."""
        if self._protein_batch_mask is None:
            return None
        if batch_index is None:
            return self._protein_batch_mask[0].expand(1, -1)
        return self._protein_batch_mask[batch_index.view(-1).long()]

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        local_l_mean_gene: torch.Tensor,
        local_l_var_gene: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        label: Optional[torch.Tensor] = None,
    ) -> TotalVILosses:
        """Reconstruction losses and KL divergences of a minibatch.

        Parameters
        ----------
        x
            Gene counts, ``(n_cells, n_input_genes)``.
        y
            Protein counts, ``(n_cells, n_input_proteins)``.
        local_l_mean_gene, local_l_var_gene
            Mean and variance of the prior of the log library size, ``(n_cells, 1)``.
        batch_index
            Batch of each cell, ``(n_cells, 1)``.
        label
            Label of each cell, ``(n_cells, 1)``.

        Returns
        -------
        TotalVILosses
            ``(reconst_loss_gene, reconst_loss_protein, kl_div_z, kl_div_l_gene, kl_div_back_pro)``,
            each of shape ``(n_cells,)``.
        """
        outputs = self.inference(x, y, batch_index, label)
        px_, py_ = outputs["px_"], outputs["py_"]
        mask = self.protein_mask_for(batch_index)
        reconst_loss_gene, reconst_loss_protein = self.get_reconstruction_loss(x, y, px_, py_, mask)

        kl_div_z = kl_normal(outputs["qz_m"], outputs["qz_v"]).sum(dim=1)
        kl_div_l_gene = kl_normal(outputs["ql_m"], outputs["ql_v"], local_l_mean_gene, local_l_var_gene).sum(dim=1)
        prior = outputs["back_mean_prior"]
        kl_back = kl_normal(py_["back_alpha"], py_["back_beta"] ** 2, prior.loc, prior.scale**2)
        if mask is not None:
            kl_back = kl_back * mask
        return TotalVILosses(reconst_loss_gene, reconst_loss_protein, kl_div_z, kl_div_l_gene, kl_back.sum(dim=1))
