"""The totalVI posterior (re-exported by :mod:`scvi.inference.total_inference`).

``TotalPosterior`` reuses every algorithm of :class:`~scvi.inference.posterior.Posterior`
(differential expression, metrics, plotting, saving) and only changes how parameters come out of a
:class:`~scvi.models.TOTALVI` model: its minibatches carry ``protein_expression``, its scales
cover genes then proteins, and its latent output also returns the library size.
"""
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch.distributions import Bernoulli, Gamma, Normal

from scvi.dataset import GeneExpressionDataset
from scvi.inference._posterior.generation import _as_batch_list
from scvi.inference.posterior import Posterior
from scvi.models import TOTALVI
from scvi.models.distributions import NegativeBinomial

logger = logging.getLogger(__name__)

__all__ = ["TotalPosterior"]

TransformBatch = Optional[Union[int, Sequence[int]]]


def _stack_samples(
    chunks: List[torch.Tensor], n_samples: int, give_mean: bool, samples_last: bool = True
) -> np.ndarray:
    """Concatenate per-minibatch outputs over cells: ``(n_cells, n_features)``, or without
    ``give_mean`` and ``n_samples > 1``: ``(n_cells, n_features, n_samples)`` (``samples_last``,
    the totalVI convention) or ``(n_samples, n_cells, n_features)`` (the ``Posterior`` convention)."""
    if n_samples == 1:
        return torch.cat(chunks, dim=0).cpu().numpy()
    values = torch.cat(chunks, dim=1)
    if give_mean:
        values = values.mean(dim=0)
    elif samples_last:
        values = values.permute(1, 2, 0)
    return values.cpu().numpy()


class TotalPosterior(Posterior):
    """The functional data unit for totalVI.

    Parameters
    ----------
    model
        A :class:`~scvi.models.TOTALVI` model.
    gene_dataset
        A dataset with a ``protein_expression`` cell measurement (e.g. ``CbmcDataset()``).
    shuffle
        Iterate in random order.
    indices
        Cells of this posterior (indices or boolean mask).
    use_cuda
        Use the GPU if there is one.
    data_loader_kwargs
        Keyword arguments of the data loader.

    Examples
    --------
    >>> gene_dataset = CbmcDataset()
    >>> totalvi = TOTALVI(gene_dataset.nb_genes, len(gene_dataset.protein_names), n_batch=gene_dataset.n_batches)
    >>> trainer = TotalTrainer(totalvi, gene_dataset)
    >>> trainer.train(n_epochs=500)
    >>> latent, batch_indices, labels, library = trainer.create_posterior(type_class=TotalPosterior).get_latent()
    """

    _collate_attributes = {"protein_expression": np.float32}

    def __init__(
        self,
        model: TOTALVI,
        gene_dataset: GeneExpressionDataset,
        shuffle: bool = False,
        indices: Optional[np.ndarray] = None,
        use_cuda: bool = True,
        data_loader_kwargs=dict(),
    ):
        if getattr(gene_dataset, "protein_expression", None) is None:
            raise ValueError(
                "`gene_dataset` has no `protein_expression` cell measurement; totalVI needs protein counts "
                "(e.g. Dataset10X with antibody capture, CbmcDataset, or AnnDatasetFromAnnData with "
                "cell_measurements_col_mappings={'protein_expression': 'protein_names'})"
            )
        super().__init__(
            model,
            gene_dataset,
            shuffle=shuffle,
            indices=indices,
            use_cuda=use_cuda,
            data_loader_kwargs=data_loader_kwargs,
        )
        # minibatches carry the protein counts as a sixth field
        with_proteins = self.uncorrupted()
        self.data_loader_kwargs, self.data_loader = with_proteins.data_loader_kwargs, with_proteins.data_loader

    def corrupted(self) -> "TotalPosterior":
        """A copy whose minibatches hold the corrupted gene counts (and the protein counts)."""
        collate_fn = self.gene_dataset.collate_fn_builder(self._collate_attributes, corrupted=True)
        return self.update({"collate_fn": collate_fn})

    def uncorrupted(self) -> "TotalPosterior":
        """A copy whose minibatches hold the original gene counts (and the protein counts)."""
        return self.update({"collate_fn": self.gene_dataset.collate_fn_builder(self._collate_attributes)})

    # ------------------------------------------------------------------ model access (hooks of the Posterior parts)
    def _inference(self, tensors, n_samples: int = 1, transform_batch: Optional[int] = None) -> dict:
        """``TOTALVI.inference`` outputs for a minibatch ``(X, local_l_mean, local_l_var, batch, labels, proteins)``."""
        x, _, _, batch_index, labels, y = tensors[:6]
        return self.model.inference(
            x, y, batch_index=batch_index, label=labels, n_samples=n_samples, transform_batch=transform_batch
        )

    def _sample_rate(self, tensors, n_samples: int, transform_batch=None) -> torch.Tensor:
        """Gene rates of a minibatch (used by ``imputation`` and ``imputation_list``)."""
        return self._inference(tensors, n_samples=n_samples, transform_batch=transform_batch)["px_"]["rate"]

    # ------------------------------------------------------------------ metrics
    def _summed_losses(self, vae: TOTALVI, **kwargs) -> torch.Tensor:
        """Per-cell average of the five loss terms over this posterior's cells, shape ``(5,)``."""
        totals = torch.zeros(5, dtype=torch.float64)
        for tensors in self:
            x, local_l_mean, local_l_var, batch_index, labels, y = tensors
            losses = vae(x, y, local_l_mean, local_l_var, batch_index=batch_index, label=labels, **kwargs)
            totals += torch.stack([term.sum() for term in losses]).double().cpu()
        return totals / max(len(self.indices), 1)

    def compute_elbo(self, vae: TOTALVI, **kwargs) -> float:
        """Negative ELBO per cell: reconstruction errors plus all KL divergences."""
        return float(self._summed_losses(vae, **kwargs).sum())

    def compute_reconstruction_error(self, vae: TOTALVI, **kwargs) -> Tuple[float, float]:
        """Negative log-likelihood per cell of genes and of proteins."""
        totals = self._summed_losses(vae, **kwargs)
        return float(totals[0]), float(totals[1])

    @torch.no_grad()
    def elbo(self) -> float:
        """Negative evidence lower bound per cell (lower is better)."""
        return self.compute_elbo(self.model)

    elbo.mode = "min"

    @torch.no_grad()
    def reconstruction_error(self, mode: str = "total") -> float:
        """Reconstruction error per cell of ``'total'`` (genes + proteins), ``'gene'`` or ``'protein'``."""
        if mode not in ("total", "gene", "protein"):
            raise ValueError(f"`mode` must be one of 'total', 'gene', 'protein'; got {mode!r}")
        ll_gene, ll_protein = self.compute_reconstruction_error(self.model)
        return {"total": ll_gene + ll_protein, "gene": ll_gene, "protein": ll_protein}[mode]

    reconstruction_error.mode = "min"

    @torch.no_grad()
    def marginal_ll(self, n_mc_samples: int = 1000) -> float:
        """Importance-sampled negative marginal log-likelihood per cell of genes and proteins."""
        return self.compute_marginal_log_likelihood(n_samples_mc=n_mc_samples)

    @torch.no_grad()
    def compute_marginal_log_likelihood(self, n_samples_mc: int = 100, batch_size: int = 96) -> float:
        """Importance-sampling estimate of ``-log p(x, y)`` per cell (biased, converges as ``n_samples_mc`` grows).

        Parameters
        ----------
        n_samples_mc
            Importance samples per cell.
        batch_size
            Cells per minibatch.
        """
        model = self.model
        log_lkl = 0.0
        for tensors in self.update({"batch_size": batch_size}):
            x, local_l_mean, local_l_var, batch_index, labels, y = tensors
            mask = model.protein_mask_for(batch_index)
            to_sum = torch.empty(x.shape[0], n_samples_mc)
            for i in range(n_samples_mc):
                out = model.inference(x, y, batch_index, labels)
                py_ = out["py_"]
                reconst_gene, reconst_protein = model.get_reconstruction_loss(x, y, out["px_"], py_, mask)
                log_back = out["log_pro_back_mean"]
                log_p_back = out["back_mean_prior"].log_prob(log_back)
                log_q_back = Normal(py_["back_alpha"], py_["back_beta"]).log_prob(log_back)
                if mask is not None:
                    log_p_back, log_q_back = log_p_back * mask, log_q_back * mask
                z, log_library = out["untran_z"], out["untran_l"]
                to_sum[:, i] = (
                    Normal(0, 1).log_prob(z).sum(-1)
                    + Normal(local_l_mean, local_l_var.sqrt()).log_prob(log_library).sum(-1)
                    + log_p_back.sum(-1)
                    - (reconst_gene + reconst_protein)
                    - Normal(out["qz_m"], out["qz_v"].sqrt()).log_prob(z).sum(-1)
                    - Normal(out["ql_m"], out["ql_v"].sqrt()).log_prob(log_library).sum(-1)
                    - log_q_back.sum(-1)
                ).cpu()
            log_lkl += float((torch.logsumexp(to_sum, dim=-1) - np.log(n_samples_mc)).sum())
        return -log_lkl / max(len(self.indices), 1)

    # ------------------------------------------------------------------ latent space
    @torch.no_grad()
    def get_latent(self, sample: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Latent values, batches, labels and library sizes of the cells.

        Parameters
        ----------
        sample
            Draw from the posterior instead of returning its mean.

        Returns
        -------
        tuple
            ``latent`` ``(n_cells, n_latent)``, ``batch_indices`` ``(n_cells, 1)``, ``labels``
            ``(n_cells,)``, ``library_gene`` ``(n_cells,)``.
        """
        latent, batch_indices, labels, library_gene = [], [], [], []
        for tensors in self:
            x, _, _, batch_index, label, y = tensors
            latent.append(self.model.sample_from_posterior_z(x, y, batch_index, give_mean=not sample).cpu())
            library_gene.append(self.model.sample_from_posterior_l(x, y, batch_index, give_mean=not sample).cpu())
            batch_indices.append(batch_index.cpu())
            labels.append(label.cpu())
        return (
            torch.cat(latent).numpy(),
            torch.cat(batch_indices).numpy(),
            torch.cat(labels).numpy().ravel(),
            torch.cat(library_gene).numpy().ravel(),
        )

    @torch.no_grad()
    def nn_overlap_score(self, **kwargs) -> Tuple[float, float]:
        """Agreement of the latent and protein nearest-neighbour graphs (see ``posterior_utils.nn_overlap``).

        Uses the dataset's ``protein_expression_clr`` when it has one, else the centred log-ratio
        transform ``log1p(y) - mean(log1p(y))`` of ``protein_expression`` (per cell).

        Returns
        -------
        spearman_correlation, fold_enrichment
        """
        from scvi.inference.posterior_utils import nn_overlap

        posterior = self.sequential()
        latent = posterior.get_latent()[0]
        proteins = getattr(self.gene_dataset, "protein_expression_clr", None)
        if proteins is None:
            logged = np.log1p(np.asarray(self.gene_dataset.protein_expression, dtype=np.float64))
            proteins = logged - logged.mean(axis=1, keepdims=True)
        return nn_overlap(latent, np.asarray(proteins)[posterior.indices], **kwargs)

    # ------------------------------------------------------------------ model parameters per cell
    def _per_cell(
        self,
        extract: Callable[[dict], Tuple[torch.Tensor, ...]],
        n_samples: int = 1,
        give_mean: bool = True,
        transform_batch: TransformBatch = None,
        samples_last: bool = True,
    ) -> List[np.ndarray]:
        """Run ``model.inference`` over the cells and collect ``extract(outputs)``, averaged over ``transform_batch``.

        Each returned array is ``(n_cells, n_features)`` or, for ``n_samples > 1`` without
        ``give_mean``, ``(n_cells, n_features, n_samples)`` (``(n_samples, n_cells, n_features)``
        when not ``samples_last``).
        """
        batches = _as_batch_list(transform_batch)
        chunks: List[List[torch.Tensor]] = []
        for tensors in self:
            total = None
            for b in batches:
                values = extract(self._inference(tensors, n_samples=n_samples, transform_batch=b))
                total = list(values) if total is None else [t + v for t, v in zip(total, values)]
            chunks.append([(t / len(batches)).cpu() for t in total])
        return [_stack_samples(list(parts), n_samples, give_mean, samples_last) for parts in zip(*chunks)]

    @torch.no_grad()
    def get_protein_background_mean(self) -> np.ndarray:
        """Sampled background mean of each protein in each cell, ``(n_cells, n_proteins)``."""
        return self._per_cell(lambda out: (out["py_"]["rate_back"],))[0]

    @torch.no_grad()
    def get_sample_dropout(self, n_samples: int = 1, give_mean: bool = True) -> np.ndarray:
        """Zero-inflation probability of the genes, ``(n_cells, n_genes)`` (``(…, n_samples)`` if not ``give_mean``)."""
        return self._per_cell(lambda out: (torch.sigmoid(out["px_"]["dropout"]),), n_samples, give_mean)[0]

    @torch.no_grad()
    def get_sample_mixing(
        self, n_samples: int = 1, give_mean: bool = True, transform_batch: TransformBatch = None
    ) -> np.ndarray:
        """Probability that each protein count is background, ``(n_cells, n_proteins)``.

        Parameters
        ----------
        n_samples
            Posterior samples per cell.
        give_mean
            Average the samples (otherwise a trailing ``n_samples`` axis is returned).
        transform_batch
            ``None`` (observed batch), a batch, or a list of batches to average over.
        """
        extract = lambda out: (torch.sigmoid(out["py_"]["mixing"]),)  # noqa: E731
        return self._per_cell(extract, n_samples, give_mean, transform_batch)[0]

    @torch.no_grad()
    def get_normalized_denoised_expression(
        self,
        n_samples: int = 1,
        give_mean: bool = True,
        transform_batch: TransformBatch = None,
        sample_protein_mixing: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Denoised normalised gene expression and denoised (foreground) protein expression.

        Parameters
        ----------
        n_samples
            Posterior samples per cell.
        give_mean
            Average the samples (otherwise a trailing ``n_samples`` axis is returned).
        transform_batch
            ``None`` (observed batch), a batch, or a list of batches to average over.
        sample_protein_mixing
            Sample the background indicator (background values set to 0) instead of weighting
            the foreground by its probability.

        Returns
        -------
        tuple
            Genes ``(n_cells, n_genes)`` and proteins ``(n_cells, n_proteins)``.
        """

        def extract(out):
            py_ = out["py_"]
            background = torch.sigmoid(py_["mixing"])
            if sample_protein_mixing:
                background = Bernoulli(background).sample()
            return out["px_"]["scale"], py_["rate_fore"] * (1 - background)

        genes, proteins = self._per_cell(extract, n_samples, give_mean, transform_batch)
        return genes, proteins

    @torch.no_grad()
    def get_protein_mean(
        self, n_samples: int = 1, give_mean: bool = True, transform_batch: TransformBatch = None
    ) -> np.ndarray:
        """Mean of the protein background/foreground mixture, ``(n_cells, n_proteins)``."""

        def extract(out):
            py_ = out["py_"]
            background = torch.sigmoid(py_["mixing"])
            return (py_["rate_fore"] * (1 - background) + py_["rate_back"] * background,)

        return self._per_cell(extract, n_samples, give_mean, transform_batch)[0]

    @torch.no_grad()
    def get_sample_scale(
        self,
        transform_batch=None,
        eps=0.5,
        normalize_pro=False,
        sample_bern=True,
        include_bg=False,
        n_samples: int = 1,
        return_mean: bool = True,
    ) -> np.ndarray:
        """Normalised expression of genes and proteins for differential expression, ``(n_cells, n_genes + n_proteins)``.

        For denoised expression use :meth:`get_normalized_denoised_expression`.

        Parameters
        ----------
        transform_batch
            Batch to decode every cell in (``None``: observed batch).
        eps
            Prior count added to protein values.
        normalize_pro
            Make protein values sum to one in each cell.
        sample_bern
            Sample the background indicator.
        include_bg
            Include the background component of protein expression.
        n_samples, return_mean
            Posterior samples per cell and whether to average them (otherwise the shape is
            ``(n_samples, n_cells, n_genes + n_proteins)``, as for ``Posterior.get_sample_scale``).
        """

        def extract(out):
            px_, py_ = out["px_"], out["py_"]
            background = torch.sigmoid(py_["mixing"])
            if sample_bern:
                background = Bernoulli(background).sample()
            pro_value = (1 - background) * py_["rate_fore"]
            if include_bg:
                pro_value = pro_value + background * py_["rate_back"]
            if normalize_pro:
                pro_value = torch.nn.functional.normalize(pro_value, p=1, dim=-1)
            return (torch.cat([px_["scale"], pro_value + eps], dim=-1),)

        return self._per_cell(extract, n_samples, return_mean, transform_batch, samples_last=False)[0]

    # ------------------------------------------------------------------ sampling
    @staticmethod
    def _dispersions(out) -> torch.Tensor:
        """Inverse dispersions of genes then proteins, broadcast to the shape of the rates."""
        px_r, py_r = out["px_"]["r"], out["py_"]["r"]
        return torch.cat([px_r.expand_as(out["px_"]["rate"]), py_r.expand_as(out["py_"]["rate_fore"])], dim=-1)

    @torch.no_grad()
    def generate(self, n_samples: int = 100, batch_size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
        """Sample from the posterior predictive; proteins are concatenated after genes.

        Returns
        -------
        tuple
            ``x_new`` ``(n_cells, n_genes + n_proteins, n_samples)`` and ``x_old``
            ``(n_cells, n_genes + n_proteins)``.
        """
        posterior_list, original_list = [], []
        for tensors in self.update({"batch_size": batch_size}):
            x, y = tensors[0], tensors[5]
            out = self._inference(tensors, n_samples=n_samples)
            py_ = out["py_"]
            background = Bernoulli(torch.sigmoid(py_["mixing"])).sample()
            protein_rate = py_["rate_fore"] * (1 - background) + py_["rate_back"] * background
            rate = torch.cat([out["px_"]["rate"], protein_rate], dim=-1)
            data = NegativeBinomial(mu=rate, theta=self._dispersions(out), validate_args=False).sample()
            data = data.reshape((n_samples,) + tuple(rate.shape[-2:]))
            posterior_list.append(data.permute(1, 2, 0).cpu().numpy())
            original_list.append(torch.cat([x, y], dim=-1).cpu().numpy())
        return np.concatenate(posterior_list, axis=0), np.concatenate(original_list, axis=0)

    @torch.no_grad()
    def generate_denoised_samples(
        self,
        n_samples: int = 25,
        batch_size: int = 64,
        rna_size_factor: int = 1,
        transform_batch: Optional[int] = None,
    ) -> np.ndarray:
        """Sample the denoised Gamma means of genes (scaled by ``rna_size_factor``) and foreground proteins.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_genes + n_proteins, n_samples)``; proteins drawn as background are 0.
        """
        posterior_list = []
        for tensors in self.update({"batch_size": batch_size}):
            out = self._inference(tensors, n_samples=n_samples, transform_batch=transform_batch)
            py_ = out["py_"]
            background = Bernoulli(torch.sigmoid(py_["mixing"])).sample()
            rate = torch.cat([rna_size_factor * out["px_"]["scale"], py_["rate_fore"]], dim=-1)
            dispersion = self._dispersions(out)
            data = Gamma(dispersion, dispersion / rate).sample()
            data[..., self.gene_dataset.nb_genes :] *= 1 - background
            data = data.reshape((n_samples,) + tuple(rate.shape[-2:]))
            posterior_list.append(data.permute(1, 2, 0).cpu().numpy())
        return np.concatenate(posterior_list, axis=0)

    @torch.no_grad()
    def generate_feature_correlation_matrix(
        self,
        n_samples: int = 25,
        batch_size: int = 64,
        rna_size_factor: int = 1000,
        transform_batch: TransformBatch = None,
        correlation_mode: str = "pearson",
        log_transform: bool = False,
    ) -> np.ndarray:
        """Gene-and-protein correlation matrix of denoised samples, ``(n_genes + n_proteins,) * 2``.

        Parameters
        ----------
        n_samples, batch_size, rna_size_factor
            As in :meth:`generate_denoised_samples`.
        transform_batch
            ``None``, a batch, or a list of batches whose matrices are averaged.
        correlation_mode
            ``'pearson'`` or ``'spearman'``.
        log_transform
            Log-transform genes (``log(x + 1e-8)``) and proteins (``log1p``) first.
        """
        if correlation_mode not in ("pearson", "spearman"):
            raise ValueError(f"`correlation_mode` must be one of 'pearson', 'spearman'; got {correlation_mode!r}")
        n_genes = self.gene_dataset.nb_genes

        def prepare(flat):
            flattened = flat.astype(np.float64)
            if log_transform:
                flattened[:, :n_genes] = np.log(flattened[:, :n_genes] + 1e-8)
                flattened[:, n_genes:] = np.log1p(flattened[:, n_genes:])
            return flattened

        return self._denoised_correlation(
            n_samples, batch_size, rna_size_factor, transform_batch, correlation_mode, prepare=prepare
        )

    @torch.no_grad()
    def generate_parameters(self):
        """Not available for totalVI (as in the original package); use :meth:`get_protein_mean` and co."""
        raise NotImplementedError("generate_parameters is not implemented for TotalPosterior")

    @torch.no_grad()
    def differential_expression_stats(self, M_sampling: int = 100):
        """Not available for totalVI (as in the original package); use :meth:`differential_expression_score`."""
        raise NotImplementedError("differential_expression_stats is not implemented for TotalPosterior")

    # ------------------------------------------------------------------ differential expression hooks
    def _de_feature_names(self) -> np.ndarray:
        return np.concatenate([self.gene_dataset.gene_names, self.gene_dataset.protein_names])

    def _de_raw_properties(self, idx1, idx2) -> Dict[str, np.ndarray]:
        mean1, mean2, nonz1, nonz2, norm_mean1, norm_mean2 = self.gene_dataset.raw_counts_properties(idx1, idx2)
        proteins = np.asarray(self.gene_dataset.protein_expression)
        nan = np.full(proteins.shape[1], np.nan)
        pro1, pro2 = proteins[np.asarray(idx1)], proteins[np.asarray(idx2)]
        return dict(
            raw_mean1=np.concatenate([mean1, pro1.mean(0)]),
            raw_mean2=np.concatenate([mean2, pro2.mean(0)]),
            non_zeros_proportion1=np.concatenate([nonz1, (pro1 > 0).mean(0)]),
            non_zeros_proportion2=np.concatenate([nonz2, (pro2 > 0).mean(0)]),
            raw_normalized_mean1=np.concatenate([norm_mean1, nan]),
            raw_normalized_mean2=np.concatenate([norm_mean2, nan]),
        )

    @torch.no_grad()
    def differential_expression_score(
        self,
        idx1: Union[List[bool], np.ndarray],
        idx2: Union[List[bool], np.ndarray],
        mode: Optional[str] = "vanilla",
        batchid1: Optional[Union[List[int], np.ndarray]] = None,
        batchid2: Optional[Union[List[int], np.ndarray]] = None,
        use_observed_batches: Optional[bool] = False,
        n_samples: int = 5000,
        use_permutation: bool = True,
        M_permutation: int = 10000,
        all_stats: bool = True,
        change_fn: Optional[Union[str, Callable]] = None,
        m1_domain_fn: Optional[Callable] = None,
        delta: Optional[float] = 0.5,
        cred_interval_lvls: Optional[Union[List[float], np.ndarray]] = None,
        **kwargs,
    ) -> pd.DataFrame:
        """Bayesian differential expression of genes and proteins (see ``Posterior.differential_expression_score``).

        Same algorithm as :class:`~scvi.inference.posterior.Posterior`; the table is indexed by
        gene names then protein names, and ``use_permutation`` defaults to ``True`` as in the
        original totalVI. ``**kwargs`` go to :meth:`get_sample_scale` (``eps``,
        ``normalize_pro``, ``sample_bern``, ``include_bg``).
        """
        return super().differential_expression_score(
            idx1,
            idx2,
            mode=mode,
            batchid1=batchid1,
            batchid2=batchid2,
            use_observed_batches=use_observed_batches,
            n_samples=n_samples,
            use_permutation=use_permutation,
            M_permutation=M_permutation,
            all_stats=all_stats,
            change_fn=change_fn,
            m1_domain_fn=m1_domain_fn,
            delta=delta,
            cred_interval_lvls=cred_interval_lvls,
            **kwargs,
        )

