"""gimVI's joint variational auto-encoder (:class:`JVAE`) [Lopez19]_.

Several datasets measuring different (overlapping) sets of genes share one latent space: each
dataset has its own encoder head (and library-size encoder, when the library is modelled), and
one decoder outputs every gene of the union. A dataset's counts are reconstructed only on its own
genes, so the decoder imputes the others.
"""
import logging
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ._base import (
    DISPERSIONS,
    LIKELIHOODS,
    RECONSTRUCTION_LOSSES,
    LossOutput,
    check_dispersion_covariates,
    check_option,
    dispersion_parameter,
    kl_normal,
)
from .distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from .modules import Encoder, MultiDecoder, MultiEncoder
from .utils import one_hot
from .vae import _select_per_cell

logger = logging.getLogger(__name__)

__all__ = [
    "JVAE",
    "Encoder",
    "MultiDecoder",
    "MultiEncoder",
    "NegativeBinomial",
    "ZeroInflatedNegativeBinomial",
    "one_hot",
]

Mapping = Union[np.ndarray, slice, Sequence[int]]


def _mapping_indices(mapping: Mapping, total_genes: int, name: str) -> np.ndarray:
    """Output positions of a dataset's genes, as an int64 array; validated against ``total_genes``."""
    if isinstance(mapping, slice):
        return np.arange(total_genes)[mapping]
    indices = np.asarray(mapping)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise TypeError(f"`{name}` must be a slice or a 1-d array of integer gene positions; got {mapping!r}")
    if indices.size and (indices.min() < 0 or indices.max() >= total_genes):
        raise ValueError(
            f"`{name}` must hold positions in [0, total_genes={total_genes}); got {indices.min()}..{indices.max()}"
        )
    return indices.astype(np.int64)


class JVAE(nn.Module):
    """Joint variational auto-encoder for imputing missing genes in spatial data (gimVI [Lopez19]_).

    Parameters
    ----------
    dim_input_list
        Number of input genes of each dataset.
    total_genes
        Number of genes of the decoder's output (the union of all datasets' genes).
    indices_mappings
        For each dataset, the output positions of its genes: e.g. ``[[0, 2], [0, 1, 3, 2]]`` means
        that the first dataset's 2 genes are decoded at positions 0 and 2. ``slice(None)`` keeps
        the output order (efficient for a dataset that measures every gene).
    reconstruction_losses
        Likelihood of each dataset: ``'zinb'``, ``'nb'`` or ``'poisson'``.
    model_library_bools
        For each dataset, model the library size with a latent variable (``True``) or use the
        observed total count (``False``).
    n_latent
        Dimensionality of the shared latent space.
    n_layers_encoder_individual
        Layers of each dataset's encoder head.
    n_layers_encoder_shared
        Shared encoder layers.
    dim_hidden_encoder
        Width of the encoder layers.
    n_layers_decoder_individual
        Batch-conditioned decoder layers.
    n_layers_decoder_shared
        Shared decoder layers.
    dim_hidden_decoder_individual
        Width of the batch-conditioned decoder layers.
    dim_hidden_decoder_shared
        Width of the shared decoder layers.
    dropout_rate_encoder, dropout_rate_decoder
        Dropout rates.
    n_batch
        Total number of batches over all datasets.
    n_labels
        Total number of labels.
    dispersion
        ``'gene'``, ``'gene-batch'``, ``'gene-label'`` or ``'gene-cell'`` (see :class:`~scvi.models.VAE`).
    log_variational
        Encode ``log(1 + x)`` instead of ``x``.

    Raises
    ------
    ValueError
        For lists of different lengths, an unknown likelihood or dispersion, a mapping whose length
        differs from the dataset's number of genes, or a per-batch / per-label dispersion without
        batches / labels.

    Examples
    --------
    >>> model = JVAE([data_seq.nb_genes, data_spatial.nb_genes], data_seq.nb_genes,
    ... [slice(None), np.array(gene_ids_spatial)], ["zinb", "nb"], [True, False], n_batch=2)
    """

    def __init__(
        self,
        dim_input_list: List[int],
        total_genes: int,
        indices_mappings: List[Union[np.ndarray, slice]],
        reconstruction_losses: List[str],
        model_library_bools: List[bool],
        n_latent: int = 10,
        n_layers_encoder_individual: int = 1,
        n_layers_encoder_shared: int = 1,
        dim_hidden_encoder: int = 128,
        n_layers_decoder_individual: int = 0,
        n_layers_decoder_shared: int = 0,
        dim_hidden_decoder_individual: int = 32,
        dim_hidden_decoder_shared: int = 128,
        dropout_rate_encoder: float = 0.1,
        dropout_rate_decoder: float = 0.3,
        n_batch: int = 0,
        n_labels: int = 0,
        dispersion: str = "gene-batch",
        log_variational: bool = True,
    ):
        super().__init__()
        n_datasets = len(dim_input_list)
        if n_datasets == 0:
            raise ValueError("`dim_input_list` must describe at least one dataset")
        for name, value in (
            ("indices_mappings", indices_mappings),
            ("reconstruction_losses", reconstruction_losses),
            ("model_library_bools", model_library_bools),
        ):
            if len(value) != n_datasets:
                raise ValueError(f"`{name}` must have one entry per dataset ({n_datasets}); got {len(value)}")
        for loss in reconstruction_losses:
            check_option("reconstruction_losses", loss, RECONSTRUCTION_LOSSES)
        check_option("dispersion", dispersion, DISPERSIONS)
        check_dispersion_covariates(dispersion, n_batch, n_labels)
        self._output_indices = []
        for i, (mapping, n_input) in enumerate(zip(indices_mappings, dim_input_list)):
            indices = _mapping_indices(mapping, total_genes, f"indices_mappings[{i}]")
            if len(indices) != n_input:
                raise ValueError(
                    f"`indices_mappings[{i}]` maps {len(indices)} genes but `dim_input_list[{i}]` is {n_input}"
                )
            self._output_indices.append(torch.as_tensor(indices))

        self.n_input_list = dim_input_list
        self.total_genes = total_genes
        self.indices_mappings = indices_mappings
        self.reconstruction_losses = reconstruction_losses
        self.model_library_bools = model_library_bools
        self.n_latent = n_latent
        self.n_batch = n_batch
        self.n_labels = n_labels
        self.dispersion = dispersion
        self.log_variational = log_variational

        self.z_encoder = MultiEncoder(
            n_heads=n_datasets,
            n_input_list=dim_input_list,
            n_output=n_latent,
            n_hidden=dim_hidden_encoder,
            n_layers_individual=n_layers_encoder_individual,
            n_layers_shared=n_layers_encoder_shared,
            dropout_rate=dropout_rate_encoder,
        )
        self.l_encoders = nn.ModuleList(
            Encoder(n_input, 1, n_layers=1, dropout_rate=dropout_rate_encoder) if model_library else None
            for n_input, model_library in zip(dim_input_list, model_library_bools)
        )
        self.decoder = MultiDecoder(
            n_latent,
            total_genes,
            n_hidden_conditioned=dim_hidden_decoder_individual,
            n_hidden_shared=dim_hidden_decoder_shared,
            n_layers_conditioned=n_layers_decoder_individual,
            n_layers_shared=n_layers_decoder_shared,
            n_cat_list=[n_batch],
            dropout_rate=dropout_rate_decoder,
        )
        # log inverse dispersion; 'gene-cell' decodes it
        px_r = dispersion_parameter(dispersion, total_genes, n_batch, n_labels)
        if px_r is not None:
            self.px_r = px_r

    # ---------------------------------------------------------------- helpers
    def _check_mode(self, mode: Optional[int], name: str = "mode") -> int:
        """The dataset index ``mode`` (``0`` by default with a single dataset), validated."""
        n_datasets = len(self.n_input_list)
        if mode is None:
            if n_datasets == 1:
                return 0
            raise ValueError(f"`{name}` (the dataset index) must be given when the model has {n_datasets} datasets")
        if isinstance(mode, bool) or not isinstance(mode, (int, np.integer)) or not 0 <= mode < n_datasets:
            raise ValueError(f"`{name}` must be a dataset index in [0, {n_datasets}); got {mode!r}")
        return int(mode)

    def _output_genes(self, mode: int) -> torch.Tensor:
        return self._output_indices[mode]

    # ---------------------------------------------------------------- encoder / decoder
    def encode(
        self, x: torch.Tensor, mode: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
        """Encode the counts of dataset ``mode``.

        Parameters
        ----------
        x
            Counts, shape ``(n, dim_input_list[mode])``.
        mode
            Dataset index (which encoder head).

        Returns
        -------
        tuple
            ``(qz_m, qz_v, z, ql_m, ql_v, library)``: ``z`` terms of shape ``(n, n_latent)``;
            ``ql_m`` and ``ql_v`` (``(n, 1)``) are ``None`` when the library is not modelled, and
            ``library`` (``(n, 1)``) is then the log of the observed total count.
        """
        mode = self._check_mode(mode)
        x_ = torch.log1p(x) if self.log_variational else x
        qz_m, qz_v, z = self.z_encoder(x_, mode)
        if self.model_library_bools[mode]:
            ql_m, ql_v, library = self.l_encoders[mode](x_)
        else:
            ql_m, ql_v = None, None
            library = torch.log(x.sum(dim=1, keepdim=True))
        return qz_m, qz_v, z, ql_m, ql_v, library

    def decode(
        self,
        z: torch.Tensor,
        mode: int,
        library: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``z`` into the parameters of every output gene, scaled for dataset ``mode``.

        ``px_scale`` is normalised so that the genes of dataset ``mode`` sum to one.

        Parameters
        ----------
        z
            Latent variables, shape ``(n, n_latent)``.
        mode
            Dataset index (normalisation and likelihood).
        library
            Log library size, shape ``(n, 1)``.
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.

        Returns
        -------
        tuple
            ``(px_scale, px_r, px_rate, px_dropout)``, each of shape ``(n, total_genes)``
            (``px_r`` is ``(1, total_genes)`` for the ``'gene'`` dispersion).
        """
        mode = self._check_mode(mode)
        px_scale, px_r, _, px_dropout = self.decoder(z, mode, library, self.dispersion, batch_index, y)
        if self.dispersion == "gene":
            px_r = self.px_r.view(1, -1)
        elif self.dispersion == "gene-batch":
            if batch_index is None:
                raise ValueError("dispersion='gene-batch' needs `batch_index`")
            px_r = _select_per_cell(self.px_r, batch_index)
        elif self.dispersion == "gene-label":
            if y is None:
                raise ValueError("dispersion='gene-label' needs labels `y`")
            px_r = _select_per_cell(self.px_r, y)
        px_r = torch.exp(px_r)
        genes = self._output_genes(mode).to(px_scale.device)
        px_scale = px_scale / px_scale.index_select(-1, genes).sum(dim=-1, keepdim=True)
        px_rate = px_scale * torch.exp(library)
        return px_scale, px_r, px_rate, px_dropout

    # ---------------------------------------------------------------- loss
    def reconstruction_loss(
        self,
        x: torch.Tensor,
        px_rate: torch.Tensor,
        px_r: torch.Tensor,
        px_dropout: torch.Tensor,
        mode: int,
    ) -> torch.Tensor:
        """Per-cell ``-log p(x | z, l)`` under the likelihood of dataset ``mode``.

        Parameters
        ----------
        x
            Counts, shape ``(n, dim_input_list[mode])``.
        px_rate, px_r, px_dropout
            Parameters restricted to the dataset's genes, same shape as ``x``.
        mode
            Dataset index.

        Returns
        -------
        torch.Tensor
            Shape ``(n,)``.
        """
        mode = self._check_mode(mode)
        likelihood = LIKELIHOODS[self.reconstruction_losses[mode]](px_rate, px_r, px_dropout)
        return -likelihood.log_prob(x).sum(dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        local_l_mean: torch.Tensor,
        local_l_var: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
        y: Optional[torch.Tensor] = None,
        mode: Optional[int] = None,
    ) -> LossOutput:
        """Reconstruction loss (on the dataset's own genes) and KL divergences.

        Parameters
        ----------
        x
            Counts of dataset ``mode``, shape ``(n, dim_input_list[mode])``.
        local_l_mean, local_l_var
            Mean and variance of the log-library-size prior, shape ``(n, 1)``.
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.
        mode
            Dataset index (may be omitted with a single dataset).

        Returns
        -------
        LossOutput
            ``(reconst_loss, kl_local, 0.0)`` as in scVI 0.6: ``kl_local`` (shape ``(n,)``) is
            ``KL(q(z|x) || p(z))`` plus, when the library is modelled, ``KL(q(l|x) || p(l))``; the
            trainer anneals both.
        """
        mode = self._check_mode(mode)
        qz_m, qz_v, z, ql_m, ql_v, library = self.encode(x, mode)
        px_scale, px_r, px_rate, px_dropout = self.decode(z, mode, library, batch_index, y)
        genes = self._output_genes(mode).to(x.device)
        reconst_loss = self.reconstruction_loss(
            x,
            px_rate.index_select(-1, genes),
            px_r.index_select(-1, genes),
            px_dropout.index_select(-1, genes),
            mode,
        )
        kl_divergence = kl_normal(qz_m, qz_v).sum(dim=1)
        if self.model_library_bools[mode]:
            kl_divergence = kl_divergence + kl_normal(ql_m, ql_v, local_l_mean, local_l_var).sum(dim=1)
        return LossOutput(reconst_loss, kl_divergence, 0.0)

    # ---------------------------------------------------------------- posterior draws and imputation
    def sample_from_posterior_z(
        self, x: torch.Tensor, mode: Optional[int] = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Latent variables of the cells: a draw from ``q(z | x)``, or its mean.

        Parameters
        ----------
        x
            Counts of dataset ``mode``, shape ``(n, dim_input_list[mode])``.
        mode
            Dataset index (may be omitted with a single dataset).
        deterministic
            Return the mean instead of a draw.

        Returns
        -------
        torch.Tensor
            Shape ``(n, n_latent)``.
        """
        qz_m, _, z, _, _, _ = self.encode(x, mode)
        return qz_m if deterministic else z

    def sample_from_posterior_l(
        self, x: torch.Tensor, mode: Optional[int] = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Log library size: a draw from ``q(l | x)`` (or its mean), or the observed one.

        Parameters
        ----------
        x
            Counts of dataset ``mode``.
        mode
            Dataset index (may be omitted with a single dataset).
        deterministic
            Return the mean instead of a draw.

        Returns
        -------
        torch.Tensor
            Shape ``(n, 1)``.
        """
        _, _, _, ql_m, _, library = self.encode(x, mode)
        return ql_m if deterministic and ql_m is not None else library

    def _decoded(self, x, mode, batch_index, y, deterministic, decode_mode):
        mode = self._check_mode(mode)
        decode_mode = mode if decode_mode is None else self._check_mode(decode_mode, "decode_mode")
        qz_m, _, z, ql_m, _, library = self.encode(x, mode)
        if deterministic:
            z = qz_m
            if ql_m is not None:
                library = ql_m
        return self.decode(z, decode_mode, library, batch_index, y)

    def sample_scale(
        self,
        x: torch.Tensor,
        mode: int,
        batch_index: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        deterministic: bool = False,
        decode_mode: Optional[int] = None,
    ) -> torch.Tensor:
        """Normalised expression of every output gene (imputation of the unmeasured ones).

        Parameters
        ----------
        x
            Counts of dataset ``mode``, shape ``(n, dim_input_list[mode])``.
        mode
            Dataset index of the encoder head.
        batch_index, y
            Batch and label of each cell, shape ``(n, 1)``.
        deterministic
            Decode the means of ``q(z | x)`` and ``q(l | x)`` instead of draws.
        decode_mode
            Dataset whose genes the scale is normalised over (default: ``mode``).

        Returns
        -------
        torch.Tensor
            Shape ``(n, total_genes)``.
        """
        return self._decoded(x, mode, batch_index, y, deterministic, decode_mode)[0]

    def sample_rate(
        self,
        x: torch.Tensor,
        mode: int,
        batch_index: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        deterministic: bool = False,
        decode_mode: Optional[int] = None,
    ) -> torch.Tensor:
        """Mean counts of every output gene (the scale times the library size).

        Parameters are those of :meth:`sample_scale`.

        Returns
        -------
        torch.Tensor
            Shape ``(n, total_genes)``.
        """
        return self._decoded(x, mode, batch_index, y, deterministic, decode_mode)[2]

    def get_sample_rate(self, x, batch_index, *_, **__) -> torch.Tensor:
        """:meth:`sample_rate` of dataset 0 (a VAE-like accessor), shape ``(n, total_genes)``."""
        return self.sample_rate(x, 0, batch_index)
