"""Seurat v3 ("vst") gene selection [Stuart19]_, as scanpy's ``flavor="seurat_v3"`` and as scVI 0.6.

Each gene's counts are standardised by a regularised standard deviation (a LOESS fit of log
variance on log mean across genes), clipped at ``sqrt(n_cells)``, and genes are ranked by the
variance of the result, within each batch.
"""
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp_sparse

from ._gene_stats import Matrix, check_matrix, mean_var, split_batches
from ._loess import loess_fit

logger = logging.getLogger(__name__)


def seurat_v3_statistics(X: Matrix, batches=None, n_top_genes: int = 2000, span: float = 0.3) -> pd.DataFrame:
    """Per-gene Seurat v3 statistics, one row per gene in gene order.

    Parameters
    ----------
    X
        Raw counts, shape ``(n_cells, n_genes)``, dense or CSR.
    batches
        ``None`` or a dict of boolean cell masks, one per batch.
    n_top_genes
        Size of the per-batch top list that defines ranks and ``highly_variable_nbatches``.
    span
        LOESS span.

    Returns
    -------
    pandas.DataFrame
        ``variances_norm`` (mean over batches of the normalised variance),
        ``median_variance_norm``, ``highly_variable_nbatches`` (batches where the gene is in the
        top ``n_top_genes``) and ``highly_variable_rank`` (median of those ranks, 0 = most
        variable; NaN when the gene is in no top list).
    """
    norm_vars = _seurat_v3_norm_vars(X, batches, span)
    # numpy's default (unstable) sort orders exact ties as scanpy does
    ranks = np.argsort(np.argsort(-norm_vars, axis=1), axis=1).astype(np.float64)
    in_top = ranks < n_top_genes
    ranks[~in_top] = np.nan
    any_top = in_top.any(axis=0)
    median_rank = np.full(X.shape[1], np.nan)
    median_rank[any_top] = np.nanmedian(ranks[:, any_top], axis=0)
    return pd.DataFrame(
        {
            "variances_norm": norm_vars.mean(axis=0),
            "median_variance_norm": np.median(norm_vars, axis=0),
            "highly_variable_nbatches": in_top.sum(axis=0),
            "highly_variable_rank": median_rank,
        }
    )


def seurat_v3_mask(X: Matrix, batches, n_top_genes: int, span: float) -> np.ndarray:
    """Boolean mask of the genes scanpy's ``flavor="seurat_v3"`` selects.

    Genes are sorted by median rank (ascending, NaN last), then by number of batches (descending);
    ``batches`` is as in :func:`seurat_v3_statistics`.
    """
    stats = seurat_v3_statistics(X, batches, n_top_genes, span)
    rank = stats["highly_variable_rank"].fillna(np.inf).to_numpy()
    order = np.lexsort((-stats["highly_variable_nbatches"].to_numpy(), rank))
    mask = np.zeros(X.shape[1], dtype=bool)
    mask[order[:n_top_genes]] = True
    return mask


def seurat_v3_highly_variable_genes(adata, n_top_genes: int = 4000, batch_key: str = None) -> None:
    """Legacy scVI's Seurat v3 selection: annotate ``adata.var`` in place.

    Unlike scanpy's ``flavor="seurat_v3"`` (which ranks genes by their median rank among the
    batches where they are highly variable), genes are ranked first by the number of batches in
    which they are among the ``n_top_genes`` most variable, then by their median rank over all
    batches, as in scVI 0.6.

    Parameters
    ----------
    adata
        ``anndata.AnnData`` of raw counts, shape ``(n_cells, n_genes)``.
    n_top_genes
        How many variable genes to select.
    batch_key
        Column of ``adata.obs`` with the batch of each cell; ``None`` ignores batches.

    Returns
    -------
    None
        Writes the ``adata.var`` columns ``highly_variable``, ``highly_variable_median_rank``,
        ``highly_variable_median_variance`` and, with several batches,
        ``highly_variable_nbatches`` and ``highly_variable_intersection``.
    """
    X = check_matrix(adata.X)
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"`batch_key` {batch_key!r} is not a column of adata.obs")
    batches = None if batch_key is None else split_batches(np.asarray(adata.obs[batch_key]), X.shape[0])
    norm_vars = _seurat_v3_norm_vars(X, batches, span=0.3)
    # as in scVI 0.6: ascending ranks (the most variable gene has rank n_genes - 1)
    # numpy's default (unstable) sort orders exact ties as scVI 0.6 did
    ranks = np.argsort(np.argsort(norm_vars, axis=1), axis=1)
    n_batches_high = (ranks >= X.shape[1] - n_top_genes).sum(axis=0)
    median_rank = np.median(ranks, axis=0)
    order = np.lexsort((-median_rank, -n_batches_high))
    selected = np.zeros(X.shape[1], dtype=bool)
    selected[order[:n_top_genes]] = True
    adata.var["highly_variable"] = selected
    if batches is not None:
        adata.var["highly_variable_nbatches"] = n_batches_high
        adata.var["highly_variable_intersection"] = n_batches_high == len(batches)
    adata.var["highly_variable_median_rank"] = median_rank
    adata.var["highly_variable_median_variance"] = np.median(norm_vars, axis=0)


def _seurat_v3_norm_vars(X: Matrix, batches, span: float) -> np.ndarray:
    """Normalised variances, shape ``(n_batches, n_genes)`` (one row without batches)."""
    groups = [slice(None)] if batches is None else list(batches.values())
    return np.stack([_seurat_v3_variance(X[cells], span) for cells in groups])


def _seurat_v3_variance(X: Matrix, span: float) -> np.ndarray:
    """Variance of each gene after standardising by the LOESS-regularised standard deviation."""
    n_cells = X.shape[0]
    mean, var = mean_var(X)
    not_const = var > 0
    log_fit = np.zeros(X.shape[1])
    log_fit[not_const] = loess_fit(np.log10(mean[not_const]), np.log10(var[not_const]), span=span)
    reg_std = np.sqrt(10**log_fit)
    clip = reg_std * np.sqrt(n_cells) + mean
    if sp_sparse.issparse(X):
        data = np.minimum(X.data.astype(np.float64), clip[X.indices])
        total = np.bincount(X.indices, weights=data, minlength=X.shape[1])
        total_sq = np.bincount(X.indices, weights=data**2, minlength=X.shape[1])
    else:
        clipped = np.minimum(X.astype(np.float64), clip[None, :])
        total, total_sq = clipped.sum(axis=0), np.einsum("ij,ij->j", clipped, clipped)
    return (n_cells * mean**2 + total_sq - 2 * total * mean) / ((n_cells - 1) * reg_std**2)
