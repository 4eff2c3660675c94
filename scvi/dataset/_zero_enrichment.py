"""Gene selection by enrichment of zeros over a Poisson model (legacy ``poisson_zeros`` mode).

Based on M3Drop [Andrews & Hemberg 2019]: a gene whose counts are zero more often than a
Poisson model with the gene's share of each cell's library predicts is likely variable. scVI 0.6
scored each gene by the probability that an observed zero indicator exceeds an expected one,
``P(obs) * (1 - P(exp))``, estimated from ``n_samples`` Bernoulli comparisons; their count is
``Binomial(n_samples, P(obs) * (1 - P(exp)))``, which is drawn here in one step per gene.
"""
import logging
from typing import Dict, Optional

import numpy as np
import pandas as pd

from .._utils import RandomState, check_random_state
from ._gene_stats import Matrix, check_matrix, column_sums, n_nonzero, split_batches

logger = logging.getLogger(__name__)

# Largest number of entries of the temporary (cells x genes) matrix of Poisson zero probabilities.
_MAX_CHUNK_ENTRIES = 2**22


def poisson_zero_statistics(
    X: Matrix,
    batches: Optional[Dict[object, np.ndarray]] = None,
    n_samples: Optional[int] = 10000,
    minibatch_size: int = 5000,
    random_state: RandomState = None,
) -> Dict[str, np.ndarray]:
    """Observed and Poisson-expected fractions of zeros of each gene, and the enrichment score.

    Parameters
    ----------
    X
        Raw counts, shape ``(n_cells, n_genes)``, dense or CSR.
    batches
        ``None`` or a dict of boolean cell masks, one per batch.
    n_samples
        Number of Bernoulli comparisons of the legacy Monte Carlo estimate; ``None`` returns
        the exact probability ``P(obs) * (1 - P(exp))``.
    minibatch_size
        Cells per chunk when computing the expected zeros.
    random_state
        Seed or generator of the Monte Carlo draws.

    Returns
    -------
    dict
        ``observed_fraction_zeros``, ``expected_fraction_zeros``, ``prob_zero_enrichment``,
        each of shape ``(n_batches, n_genes)`` (one row without batches).
    """
    rng = check_random_state(random_state)
    groups = [slice(None)] if batches is None else list(batches.values())
    stats = {"observed_fraction_zeros": [], "expected_fraction_zeros": [], "prob_zero_enrichment": []}
    for cells in groups:
        batch = X[cells]
        n_cells = batch.shape[0]
        gene_totals = column_sums(batch)[0]
        library = np.asarray(batch.sum(axis=1), dtype=np.float64).ravel()
        share = gene_totals / max(gene_totals.sum(), 1.0)
        observed = 1.0 - n_nonzero(batch) / n_cells
        chunk = max(1, min(minibatch_size, _MAX_CHUNK_ENTRIES // max(X.shape[1], 1)))
        expected = np.zeros(X.shape[1])
        for start in range(0, n_cells, chunk):
            expected += np.exp(-np.outer(library[start : start + chunk], share)).sum(axis=0)
        expected /= n_cells
        enrichment = observed * (1.0 - expected)
        if n_samples:
            enrichment = rng.binomial(int(n_samples), np.clip(enrichment, 0.0, 1.0)) / n_samples
        stats["observed_fraction_zeros"].append(observed)
        stats["expected_fraction_zeros"].append(expected)
        stats["prob_zero_enrichment"].append(enrichment)
    return {name: np.stack(rows) for name, rows in stats.items()}


def _rank_zero_enrichment(enrichment: np.ndarray, n_top_genes: int):
    """Legacy ranking: batches where the gene is in the top list, then median (ascending) rank."""
    n_genes = enrichment.shape[1]
    ranks = np.argsort(np.argsort(enrichment, axis=1), axis=1)  # as scVI 0.6, ties included
    n_batches_top = (ranks >= n_genes - n_top_genes).sum(axis=0)
    median_rank = np.median(ranks, axis=0)
    order = np.lexsort((-median_rank, -n_batches_top))
    selected = np.zeros(n_genes, dtype=bool)
    selected[order[:n_top_genes]] = True
    return selected, n_batches_top, median_rank


def poisson_zeros_mask(
    X: Matrix,
    batches,
    n_top_genes: int,
    n_samples: Optional[int] = 10000,
    minibatch_size: int = 5000,
    random_state: RandomState = None,
) -> np.ndarray:
    """Boolean mask of the ``n_top_genes`` genes with the most enriched zeros."""
    stats = poisson_zero_statistics(X, batches, n_samples, minibatch_size, random_state)
    return _rank_zero_enrichment(stats["prob_zero_enrichment"], n_top_genes)[0]


def poisson_gene_selection(
    adata,
    n_top_genes: int = 4000,
    use_cuda=True,
    n_samples: int = 10000,
    batch_key: str = None,
    silent: bool = False,
    minibatch_size: int = 5000,
    random_state: RandomState = None,
    **kwargs,
) -> None:
    """Rank and select genes by the enrichment of zero counts over a Poisson model (M3Drop).

    Parameters
    ----------
    adata
        ``anndata.AnnData`` of raw counts, shape ``(n_cells, n_genes)``.
    n_top_genes
        How many genes to select.
    use_cuda
        Ignored (kept for legacy calls): the computation is cheap on the CPU.
    n_samples
        Number of Bernoulli comparisons of the Monte Carlo estimate; ``None`` for the exact
        probability.
    batch_key
        Column of ``adata.obs`` with the batch of each cell; ``None`` ignores batches.
    silent
        Ignored (kept for legacy calls).
    minibatch_size
        Cells per chunk when computing the expected zeros.
    random_state
        Seed or generator of the Monte Carlo draws (default: numpy's global state).
    **kwargs
        Ignored (legacy).

    Returns
    -------
    None
        Writes the ``adata.var`` columns ``observed_fraction_zeros``,
        ``expected_fraction_zeros``, ``prob_zero_enriched_nbatches``, ``prob_zero_enrichment``,
        ``prob_zero_enrichment_rank`` (medians over batches) and ``highly_variable``.
    """
    X = check_matrix(adata.X)
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"`batch_key` {batch_key!r} is not a column of adata.obs")
    batches = None if batch_key is None else split_batches(np.asarray(adata.obs[batch_key]), X.shape[0])
    stats = poisson_zero_statistics(X, batches, n_samples, minibatch_size, random_state)
    selected, n_batches_top, median_rank = _rank_zero_enrichment(stats["prob_zero_enrichment"], n_top_genes)
    var = pd.DataFrame(index=adata.var_names)
    var["observed_fraction_zeros"] = np.median(stats["observed_fraction_zeros"], axis=0)
    var["expected_fraction_zeros"] = np.median(stats["expected_fraction_zeros"], axis=0)
    var["prob_zero_enriched_nbatches"] = n_batches_top
    var["prob_zero_enrichment"] = np.median(stats["prob_zero_enrichment"], axis=0)
    var["prob_zero_enrichment_rank"] = median_rank
    var["highly_variable"] = selected
    for column in var.columns:
        adata.var[column] = var[column].to_numpy()
