"""Decoded expression: normalised scale, imputed rates, posterior-predictive samples, parameters."""
import logging
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.distributions as distributions

logger = logging.getLogger(__name__)

TransformBatch = Optional[Union[int, Sequence[int]]]

#: reconstruction losses whose posterior predictive :meth:`GenerationMixin.generate` can sample
GENERATIVE_LOSSES = ("zinb", "nb", "poisson")
CORRELATION_TYPES = ("pearson", "spearman")


def _as_batch_list(transform_batch: TransformBatch) -> list:
    """``None`` or an int -> ``[value]``; a sequence of ints -> list."""
    if transform_batch is None or isinstance(transform_batch, (int, np.integer)):
        return [transform_batch]
    batches = list(transform_batch)
    if not batches:
        raise ValueError("`transform_batch` must be None, an int or a non-empty list of ints")
    return batches


def _with_sample_axis(tensor: torch.Tensor, ndim: int = 3) -> torch.Tensor:
    """Prepend a sample axis of size 1 when the model returned ``(n, genes)`` for one sample."""
    return tensor.unsqueeze(0) if tensor.dim() < ndim else tensor


class GenerationMixin:
    """What the decoder says about each cell: scale, rate, samples, parameters."""

    # ------------------------------------------------------------------ decoder outputs
    @torch.no_grad()
    def get_sample_scale(
        self,
        transform_batch: Optional[int] = None,
        gene_list: Optional[Union[np.ndarray, List[int]]] = None,
        library_size: float = 1,
        return_df: Optional[bool] = None,
        n_samples: int = 1,
        return_mean: bool = True,
    ) -> Union[np.ndarray, pd.DataFrame]:
        r"""Normalised expression :math:`\rho_n` (frequencies) of each cell, times ``library_size``.

        Parameters
        ----------
        transform_batch
            Decode every cell as if from this batch (``None``: its own batch).
        gene_list
            Names of the genes to return (default: all).
        library_size
            Common library size the frequencies are scaled to.
        return_df
            Return a DataFrame with gene names as columns (default: when ``gene_list`` has several
            genes). Needs ``n_samples == 1`` or ``return_mean``.
        n_samples
            Posterior samples of ``z`` per cell.
        return_mean
            Average over the samples.

        Returns
        -------
        numpy.ndarray or pandas.DataFrame
            Shape ``(n_samples, nb_cells, n_genes)`` when ``n_samples > 1`` and not
            ``return_mean``; ``(nb_cells, n_genes)`` otherwise.
        """
        gene_names = np.asarray(self.gene_dataset.gene_names)
        if gene_list is None:
            gene_mask = slice(None)
        else:
            wanted = np.atleast_1d(np.asarray(gene_list))
            missing = np.setdiff1d(wanted, gene_names)
            if missing.size:
                raise ValueError(f"`gene_list` has genes absent from the dataset: {missing[:10].tolist()}")
            gene_mask = np.isin(gene_names, wanted)
            if return_df is None and gene_mask.sum() > 1:
                return_df = True
        if n_samples > 1 and not return_mean and return_df:
            raise ValueError("return_df must be False if n_samples > 1 and return_mean is False")

        scales = []
        for tensors in self:
            scale = self._sample_scale(tensors, n_samples=n_samples, transform_batch=transform_batch)
            scales.append((scale[..., gene_mask] * library_size).cpu())
        scales = torch.cat(scales, dim=-2).numpy()
        if n_samples > 1 and return_mean:
            scales = scales.mean(0)
        if return_df:
            return pd.DataFrame(scales, columns=gene_names[gene_mask])
        return scales

    def _sample_scale(self, tensors, n_samples: int, transform_batch) -> torch.Tensor:
        """The model's normalised expression for one minibatch (overridable)."""
        x, _, _, batch_index, labels = tensors[:5]
        return self.model.get_sample_scale(
            x, batch_index=batch_index, y=labels, n_samples=n_samples, transform_batch=transform_batch
        )

    def _sample_rate(self, tensors, n_samples: int, transform_batch=None) -> torch.Tensor:
        """The model's mean counts for one minibatch (overridable)."""
        x, _, _, batch_index, labels = tensors[:5]
        return self.model.get_sample_rate(
            x, batch_index=batch_index, y=labels, n_samples=n_samples, transform_batch=transform_batch
        )

    @torch.no_grad()
    def imputation(self, n_samples: Optional[int] = 1, transform_batch: TransformBatch = None) -> np.ndarray:
        """Mean counts ``px_rate`` of each cell (the imputed, denoised counts).

        Parameters
        ----------
        n_samples
            Posterior samples of ``z`` per cell.
        transform_batch
            ``None``: the observed batch; an int: decode in that batch; a list of ints: average
            of the rates decoded in each of these batches.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_samples, nb_cells, n_genes)``, squeezed (``(nb_cells, n_genes)`` for one sample).
        """
        per_batch = []
        for batch in _as_batch_list(transform_batch):
            rates = [self._sample_rate(t, n_samples=n_samples, transform_batch=batch).cpu() for t in self]
            per_batch.append(torch.cat(rates, dim=-2).numpy())
        return np.mean(per_batch, axis=0).squeeze()

    # ------------------------------------------------------------------ posterior predictive
    def _px_distribution(self, outputs: dict) -> distributions.Distribution:
        """The distribution of the counts given the model's ``inference`` outputs."""
        from scvi.models.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial

        loss = getattr(self.model, "reconstruction_loss", None)
        if loss == "poisson":
            return distributions.Poisson(torch.clamp(outputs["px_rate"], max=1e8))
        if loss == "nb":
            return NegativeBinomial(mu=outputs["px_rate"], theta=outputs["px_r"])
        if loss == "zinb":
            return ZeroInflatedNegativeBinomial(
                mu=outputs["px_rate"], theta=outputs["px_r"], zi_logits=outputs["px_dropout"]
            )
        raise ValueError(f"`reconstruction_loss` must be one of {GENERATIVE_LOSSES} to generate data; got {loss!r}")

    @torch.no_grad()
    def generate(
        self,
        n_samples: int = 100,
        genes: Union[list, np.ndarray] = None,
        batch_size: int = 128,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Samples of the posterior predictive distribution of each cell's counts.

        Parameters
        ----------
        n_samples
            Samples per cell.
        genes
            Names of the genes to keep (default: all).
        batch_size
            Cells per minibatch.

        Returns
        -------
        x_new
            Samples, shape ``(nb_cells, n_genes, n_samples)``.
        x_old
            Observed counts, shape ``(nb_cells, n_genes)``.
        """
        x_old, x_new = [], []
        for tensors in self.update({"batch_size": batch_size}):
            outputs = self._inference(tensors, n_samples=n_samples)
            samples = _with_sample_axis(self._px_distribution(outputs).sample())
            x_new.append(samples.permute(1, 2, 0).cpu())
            x_old.append(tensors[0].cpu())
        x_old, x_new = torch.cat(x_old).numpy(), torch.cat(x_new).numpy()
        if genes is not None:
            gene_ids = self._gene_indices(genes)
            x_new, x_old = x_new[:, gene_ids, :], x_old[:, gene_ids]
        return x_new, x_old

    def _gene_indices(self, genes) -> np.ndarray:
        """Positions of the named genes in the dataset."""
        if hasattr(self.gene_dataset, "genes_to_index"):
            return np.asarray(self.gene_dataset.genes_to_index(genes))
        lookup = {name: i for i, name in enumerate(np.asarray(self.gene_dataset.gene_names))}
        return np.array([lookup[g] for g in genes])

    @torch.no_grad()
    def generate_denoised_samples(
        self,
        n_samples: int = 25,
        batch_size: int = 64,
        rna_size_factor: int = 1000,
        transform_batch: Optional[int] = None,
    ) -> np.ndarray:
        """Samples of a posterior predictive with a common library size and no technical noise.

        Each cell's counts are drawn from the gamma part of its negative binomial, with mean
        ``rna_size_factor * px_scale``.

        Parameters
        ----------
        n_samples
            Samples per cell.
        batch_size
            Cells per minibatch.
        rna_size_factor
            Common library size.
        transform_batch
            Decode every cell as if from this batch (``None``: its own batch).

        Returns
        -------
        numpy.ndarray
            Shape ``(nb_cells, n_genes, n_samples)``.
        """
        samples = []
        for tensors in self.update({"batch_size": batch_size}):
            outputs = self._inference(tensors, n_samples=n_samples, transform_batch=transform_batch)
            rate = _with_sample_axis(rna_size_factor * outputs["px_scale"])
            dispersion = outputs["px_r"]
            # Gamma(shape=theta, rate=theta / mean): the noise-free expression of the NB.
            draws = distributions.Gamma(dispersion, dispersion / rate).sample()
            samples.append(draws.permute(1, 2, 0).cpu().numpy())
        return np.concatenate(samples, axis=0)

    @torch.no_grad()
    def generate_feature_correlation_matrix(
        self,
        n_samples: int = 10,
        batch_size: int = 64,
        rna_size_factor: int = 1000,
        transform_batch: TransformBatch = None,
        correlation_type: str = "spearman",
    ) -> np.ndarray:
        """Gene-gene correlation of :meth:`generate_denoised_samples`.

        Parameters
        ----------
        n_samples, batch_size, rna_size_factor
            As in :meth:`generate_denoised_samples`.
        transform_batch
            ``None``, a batch, or a list of batches whose correlation matrices are averaged.
        correlation_type
            ``"pearson"`` or ``"spearman"``.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_genes, n_genes)``.
        """
        if correlation_type not in CORRELATION_TYPES:
            raise ValueError(f"`correlation_type` must be one of {CORRELATION_TYPES}; got {correlation_type!r}")
        return self._denoised_correlation(n_samples, batch_size, rna_size_factor, transform_batch, correlation_type)

    def _denoised_correlation(
        self, n_samples, batch_size, rna_size_factor, transform_batch, correlation_type, prepare=None
    ) -> np.ndarray:
        """Feature correlation of denoised samples (flattened to ``(cells * samples, features)`` and
        passed through ``prepare`` if given), averaged over the batches of ``transform_batch``."""
        from scipy.stats import spearmanr

        matrices = []
        for batch in _as_batch_list(transform_batch):
            denoised = self.generate_denoised_samples(
                n_samples=n_samples, batch_size=batch_size, rna_size_factor=rna_size_factor, transform_batch=batch
            )
            flat = np.moveaxis(denoised, 2, 0).reshape(-1, denoised.shape[1])
            if prepare is not None:
                flat = prepare(flat)
            if correlation_type == "pearson":
                matrices.append(np.corrcoef(flat, rowvar=False))
            else:
                matrices.append(spearmanr(flat).correlation)
        return np.mean(np.stack(matrices), axis=0)

    @torch.no_grad()
    def generate_parameters(self, n_samples: Optional[int] = 1, give_mean: Optional[bool] = False) -> Tuple:
        """Dropout logits, means and dispersions of each cell's count distribution.

        Parameters
        ----------
        n_samples
            Posterior samples of ``z`` per cell.
        give_mean
            Average dropout and means over the samples.

        Returns
        -------
        dropout, means
            Shape ``(nb_cells, n_genes)``, or ``(n_samples, nb_cells, n_genes)`` when
            ``n_samples > 1`` and not ``give_mean``.
        dispersions
            Shape ``(nb_cells, n_genes)``.
        """
        dropout, means, dispersions = [], [], []
        for tensors in self.sequential(1000):
            outputs = self._inference(tensors, n_samples=n_samples)
            rate = outputs["px_rate"]
            dispersion = outputs["px_r"]
            if dispersion.dim() == 1:
                dispersion = dispersion.expand(rate.shape[-2], -1)
            means.append(rate.cpu())
            dropout.append(outputs["px_dropout"].cpu())
            dispersions.append(dispersion.cpu())
        dropout = torch.cat(dropout, dim=-2).numpy()
        means = torch.cat(means, dim=-2).numpy()
        dispersions = torch.cat(dispersions, dim=-2).numpy()
        if give_mean and n_samples > 1:
            dropout, means = dropout.mean(0), means.mean(0)
        return dropout, means, dispersions

    @torch.no_grad()
    def get_stats(self) -> np.ndarray:
        """Library size (``exp`` of the latent log-library) of each cell, shape ``(nb_cells,)``."""
        libraries = [self._inference(t)["library"].cpu() for t in self.sequential(batch_size=128)]
        return torch.cat(libraries).numpy().ravel()

    # ------------------------------------------------------------------ imputation of corrupted entries
    @torch.no_grad()
    def imputation_list(self, n_samples: int = 1) -> tuple:
        """Original and imputed values of the corrupted entries, cell by cell.

        Needs ``gene_dataset.corrupt(...)`` (or ``trainer.corrupt_posteriors()``) first.

        Parameters
        ----------
        n_samples
            Posterior samples per cell.

        Returns
        -------
        original_list, imputed_list
            One array per cell (in the order of :attr:`indices`) with the original counts and the
            imputed rates at its corrupted entries (``n_samples`` values per entry).
        """
        original_list, imputed_list = [], []
        batch_size = 10000
        for tensors, corrupted in zip(
            self.uncorrupted().sequential(batch_size=batch_size), self.corrupted().sequential(batch_size=batch_size)
        ):
            x = tensors[0]
            rate = _with_sample_axis(self._sample_rate(corrupted, n_samples=n_samples))
            rows, cols = torch.nonzero(x != corrupted[0], as_tuple=True)
            original = x[rows, cols].expand(rate.shape[0], -1).cpu().numpy()
            imputed = rate[:, rows, cols].cpu().numpy()
            bounds = np.cumsum(np.bincount(rows.cpu().numpy(), minlength=x.shape[0]))[:-1]
            original_list += [o.ravel() for o in np.split(original, bounds, axis=1)]
            imputed_list += [i.ravel() for i in np.split(imputed, bounds, axis=1)]
        return original_list, imputed_list
