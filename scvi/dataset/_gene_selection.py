"""Highly variable gene selection on numpy / scipy, reproducing scanpy's ``highly_variable_genes``.

The modes are those of the legacy ``GeneExpressionDataset.subsample_genes(mode=...)``:

``"variance"``
    The genes of largest variance of the raw counts.
``"seurat_v2"``
    scanpy flavor ``"seurat"`` on library-size normalised (10,000 counts per cell), log1p data:
    log-dispersion z-scored within 20 equal-width bins of log mean expression [Satija15]_.
``"cell_ranger"``
    scanpy flavor ``"cell_ranger"`` on the same log1p data: dispersion scaled by the median and MAD
    within mean-expression percentile bins [Zheng17]_.
``"seurat_v3"``
    scanpy flavor ``"seurat_v3"`` on raw counts: variance of the counts standardised by a LOESS
    fit of log variance against log mean, values clipped at ``sqrt(n_cells)`` [Stuart19]_.
``"poisson_zeros"``
    scVI 0.6.8's selection by enrichment of zeros over a Poisson model (M3Drop), see
    :mod:`scvi.dataset._zero_enrichment`.

With several batches, genes are scored within each batch and merged as scanpy does with
``batch_key``: dispersion flavors rank genes by the number of batches in which they are highly
variable, then by mean normalised dispersion; ``seurat_v3`` ranks genes by their median rank
among the batches where they are in the top ``n_top_genes``, then by that number of batches.
Exact ties: with ``n_top_genes``, the dispersion modes keep every gene tied with the last one
(as scanpy); ``seurat_v3`` ranks tied genes with numpy's default sort, as scanpy does, so both
pick the same genes; ``variance`` and the merging of batches break ties by gene order.

A sparse ``X`` is never densified: every statistic is computed from the stored entries.
"""
import logging
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp_sparse

from ._gene_stats import Matrix, check_matrix, mean_var, n_nonzero, split_batches
from ._seurat_v3 import seurat_v3_highly_variable_genes, seurat_v3_mask, seurat_v3_statistics
from ._zero_enrichment import poisson_gene_selection, poisson_zeros_mask

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "highly_variable_genes_indices",
    "highly_variable_genes_table",
    "highly_variable_genes_mask",
    "mean_var",
    "poisson_gene_selection",
    "seurat_v3_highly_variable_genes",
    "seurat_v3_statistics",
]

MODES = ("variance", "seurat_v2", "cell_ranger", "seurat_v3", "poisson_zeros")
_MODE_KWARGS = {
    "variance": set(),
    "seurat_v2": {"n_bins", "min_disp", "max_disp", "min_mean", "max_mean"},
    "cell_ranger": {"n_bins", "min_disp", "max_disp", "min_mean", "max_mean"},
    # ``n_bins`` is accepted and ignored by the modes without bins, as scVI 0.6 did
    "seurat_v3": {"span", "n_bins"},
    "poisson_zeros": {"n_samples", "minibatch_size", "random_state", "use_cuda", "silent", "n_bins"},
}
# scanpy's default cutoffs, used by the dispersion flavors when ``n_top_genes`` is None.
CUTOFF_DEFAULTS = {"min_disp": 0.5, "max_disp": np.inf, "min_mean": 0.0125, "max_mean": 3.0}
_MAD_SCALE = 0.6744897501960817  # Phi^-1(3/4): MAD of a standard normal
_TARGET_SUM = 1e4


def highly_variable_genes_indices(
    X: Matrix,
    n_top_genes: Optional[int],
    mode: str = "seurat_v3",
    batch_indices: Optional[np.ndarray] = None,
    **kwargs,
) -> np.ndarray:
    """Indices of the highly variable genes of a count matrix.

    Parameters
    ----------
    X
        Raw counts, shape ``(n_cells, n_genes)``, dense or scipy sparse.
    n_top_genes
        Number of genes to select. Required except by the dispersion modes; for the
        dispersion modes ``None`` selects by the cutoffs ``min_mean``, ``max_mean``,
        ``min_disp``, ``max_disp`` instead (scanpy's defaults unless given in ``kwargs``).
        The dispersion modes keep every gene tied with the last one, as scanpy does. Asking for
        at least as many genes as ``X`` has selects them all.
    mode
        One of ``"variance"``, ``"seurat_v2"``, ``"cell_ranger"``, ``"seurat_v3"``,
        ``"poisson_zeros"``.
    batch_indices
        Batch of each cell, shape ``(n_cells,)`` or ``(n_cells, 1)``. With two or more distinct
        batches, genes are selected within each batch and merged (ignored by ``"variance"``).
    **kwargs
        ``n_bins`` (dispersion modes, default 20) and the cutoffs above; ``span``
        (``"seurat_v3"``, default 0.3); ``n_samples``, ``minibatch_size``, ``random_state``
        (``"poisson_zeros"``, see :func:`scvi.dataset._zero_enrichment.poisson_zero_statistics`).

    Returns
    -------
    np.ndarray
        int64 indices of the selected genes, increasing (original gene order).
    """
    mask = highly_variable_genes_mask(X, n_top_genes, mode=mode, batch_indices=batch_indices, **kwargs)
    return np.flatnonzero(mask).astype(np.int64)


def highly_variable_genes_mask(
    X: Matrix,
    n_top_genes: Optional[int],
    mode: str = "seurat_v3",
    batch_indices: Optional[np.ndarray] = None,
    **kwargs,
) -> np.ndarray:
    """Boolean mask of shape ``(n_genes,)`` of the genes :func:`highly_variable_genes_indices` selects."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
    X = check_matrix(X)
    batches = split_batches(batch_indices, X.shape[0])
    if n_top_genes is None:
        if mode in ("variance", "seurat_v3", "poisson_zeros"):
            raise ValueError(f"mode={mode!r} requires `n_top_genes` (or `new_n_genes` / `new_ratio_genes`)")
    elif isinstance(n_top_genes, (bool, np.bool_)) or not isinstance(n_top_genes, (int, np.integer)):
        raise TypeError(f"`n_top_genes` must be an int or None; got {type(n_top_genes).__name__}")
    elif n_top_genes < 1:
        raise ValueError(f"`n_top_genes` must be at least 1; got {n_top_genes}")
    allowed = _MODE_KWARGS[mode]
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)} for mode={mode!r}; allowed: {sorted(allowed)}")
    if n_top_genes is not None and n_top_genes >= X.shape[1]:
        logger.info(f"n_top_genes={n_top_genes} >= the {X.shape[1]} genes: keeping every gene")
        return np.ones(X.shape[1], dtype=bool)
    logger.info(f"Extracting highly variable genes with mode={mode!r}")

    if mode == "variance":
        variance = mean_var(X, ddof=0)[1]
        return _top_mask(variance, n_top_genes)
    if mode == "seurat_v3":
        return seurat_v3_mask(X, batches, n_top_genes, span=kwargs.get("span", 0.3))
    if mode == "poisson_zeros":
        options = {k: v for k, v in kwargs.items() if k in ("n_samples", "minibatch_size", "random_state")}
        return poisson_zeros_mask(X, batches, n_top_genes, **options)
    flavor = "seurat" if mode == "seurat_v2" else "cell_ranger"
    cutoffs = {**CUTOFF_DEFAULTS, **{k: v for k, v in kwargs.items() if k in CUTOFF_DEFAULTS}}
    return _dispersion_mask(X, batches, n_top_genes, flavor, kwargs.get("n_bins", 20), cutoffs)


def highly_variable_genes_table(
    X: Matrix,
    n_top_genes: Optional[int] = None,
    flavor: str = "seurat_v3",
    batch_indices: Optional[np.ndarray] = None,
    **kwargs,
) -> pd.DataFrame:
    """Per-gene table of the highly variable gene selection (legacy ``_highly_variable_genes``).

    Parameters
    ----------
    X
        Raw counts, shape ``(n_cells, n_genes)``, dense or scipy sparse.
    n_top_genes
        Number of genes to select; required by ``"seurat_v3"`` and ``"poisson_zeros"``, optional
        for the dispersion flavors (which otherwise use the cutoffs, as scanpy).
    flavor
        One of ``"seurat_v2"``, ``"cell_ranger"``, ``"seurat_v3"``, ``"poisson_zeros"``.
    batch_indices
        Batch of each cell; with two or more batches genes are scored per batch and merged.
    **kwargs
        As for :func:`highly_variable_genes_mask`.

    Returns
    -------
    pandas.DataFrame
        Indexed by the gene positions as strings (``"0"``, ``"1"``, ...) like the ``.var`` of the
        AnnData the legacy built; column ``highly_variable`` and the flavor's statistics (scanpy's
        ``means``, ``dispersions``, ``dispersions_norm`` for the dispersion flavors; see
        :func:`seurat_v3_highly_variable_genes` and :func:`poisson_gene_selection` for the others),
        plus ``highly_variable_nbatches`` / ``highly_variable_intersection`` with several batches.

    Raises
    ------
    ValueError
        On an unknown ``flavor``, or a flavor that needs ``n_top_genes`` without it.
    """
    flavors = MODES[1:]
    if flavor not in flavors:
        raise ValueError(f"`flavor` must be one of {', '.join(map(repr, flavors))}; got {flavor!r}")
    if n_top_genes is None and flavor in ("seurat_v3", "poisson_zeros"):
        raise ValueError(f"flavor={flavor!r} requires `n_top_genes`")
    unknown = set(kwargs) - _MODE_KWARGS[flavor]
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)} for flavor={flavor!r}")
    X = check_matrix(X)
    batches = split_batches(batch_indices, X.shape[0])
    index = pd.Index(np.arange(X.shape[1]).astype(str))
    if flavor in ("seurat_v2", "cell_ranger"):
        cutoffs = {**CUTOFF_DEFAULTS, **{k: v for k, v in kwargs.items() if k in CUTOFF_DEFAULTS}}
        scanpy_flavor = "seurat" if flavor == "seurat_v2" else "cell_ranger"
        table = dispersion_statistics(X, batches, n_top_genes, scanpy_flavor, kwargs.get("n_bins", 20), cutoffs)
        table.index = index
        return table
    # the legacy helpers annotate an AnnData-like object: X, obs[batch_key], var, var_names
    batch = None if batches is None else np.asarray(batch_indices).ravel()
    adata = SimpleNamespace(X=X, obs={"batch": batch}, var=pd.DataFrame(index=index), var_names=index)
    batch_key = None if batches is None else "batch"
    if flavor == "seurat_v3":
        seurat_v3_highly_variable_genes(adata, n_top_genes=n_top_genes, batch_key=batch_key)
    else:
        options = {k: v for k, v in kwargs.items() if k in ("n_samples", "minibatch_size", "random_state")}
        poisson_gene_selection(adata, n_top_genes, batch_key=batch_key, **options)
    return adata.var


def _top_mask(score: np.ndarray, n_top: int) -> np.ndarray:
    """The ``n_top`` highest scores (NaN lowest), ties broken by position."""
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    mask = np.zeros(score.shape[0], dtype=bool)
    mask[order[:n_top]] = True
    return mask


# --------------------------------------------------------------------------- dispersion flavors
def _log_normalize(X: Matrix) -> Matrix:
    """``log1p`` of the counts scaled to 10,000 per cell (cells without counts stay zero)."""
    if sp_sparse.issparse(X):
        library = np.bincount(
            np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), weights=X.data, minlength=X.shape[0]
        )
        library[library == 0] = 1
        scale = np.repeat(_TARGET_SUM / library, np.diff(X.indptr))
        return sp_sparse.csr_matrix((np.log1p(X.data * scale), X.indices, X.indptr), shape=X.shape)
    data = X.astype(np.float64)
    library = data.sum(axis=1, keepdims=True)
    library[library == 0] = 1
    return np.log1p(data * (_TARGET_SUM / library))


def _expm1(X: Matrix) -> Matrix:
    if sp_sparse.issparse(X):
        return sp_sparse.csr_matrix((np.expm1(X.data), X.indices, X.indptr), shape=X.shape)
    return np.expm1(X)


def _dispersion_mask(X, batches, n_top_genes, flavor, n_bins, cutoffs) -> np.ndarray:
    return dispersion_statistics(X, batches, n_top_genes, flavor, n_bins, cutoffs)["highly_variable"].to_numpy()


def dispersion_statistics(X, batches, n_top_genes, flavor, n_bins, cutoffs) -> pd.DataFrame:
    """scanpy's ``highly_variable_genes`` table for the flavors ``"seurat"`` and ``"cell_ranger"``.

    Returns
    -------
    pandas.DataFrame
        One row per gene: ``means``, ``dispersions``, ``dispersions_norm``, ``highly_variable`` and,
        with several batches, ``highly_variable_nbatches`` and ``highly_variable_intersection``
        (means over the batches, as scanpy with ``batch_key``).
    """
    logged = _log_normalize(X)
    if batches is None:
        mean, dispersion, disp_norm = _normalized_dispersion(logged, flavor, n_bins)
        return pd.DataFrame({
            "means": mean,
            "dispersions": dispersion,
            "dispersions_norm": disp_norm,
            "highly_variable": _dispersion_select(mean, disp_norm, n_top_genes, cutoffs),
        })

    n_genes = X.shape[1]
    n_highly_variable = np.zeros(n_genes, dtype=np.int64)
    means, dispersions, disp_norms = [], [], []
    for cells in batches.values():
        batch = logged[cells]
        expressed = n_nonzero(batch) > 0
        mean, dispersion, disp_norm = np.zeros(n_genes), np.zeros(n_genes), np.zeros(n_genes)
        mean[expressed], dispersion[expressed], disp_norm[expressed] = _normalized_dispersion(
            batch[:, expressed], flavor, n_bins
        )
        selected = np.zeros(n_genes, dtype=bool)
        selected[expressed] = _dispersion_select(mean[expressed], disp_norm[expressed], n_top_genes, cutoffs)
        n_highly_variable += selected
        means.append(mean)
        dispersions.append(dispersion)
        disp_norms.append(disp_norm)
    mean, dispersion, disp_norm = np.mean(means, axis=0), _nanmean_rows(dispersions), _nanmean_rows(disp_norms)
    if n_top_genes is None:
        mask = _in_bounds(mean, np.nan_to_num(disp_norm), cutoffs)
    else:
        # most often highly variable first, then highest mean normalised dispersion (NaN last)
        order = np.lexsort((-np.nan_to_num(disp_norm, nan=-np.inf), -n_highly_variable))
        mask = np.zeros(n_genes, dtype=bool)
        mask[order[:n_top_genes]] = True
    return pd.DataFrame({
        "means": mean,
        "dispersions": dispersion,
        "dispersions_norm": disp_norm,
        "highly_variable_nbatches": n_highly_variable,
        "highly_variable_intersection": n_highly_variable == len(batches),
        "highly_variable": mask,
    })


def _nanmean_rows(rows) -> np.ndarray:
    """Mean over the rows ignoring NaN; NaN where a column is all NaN (without numpy's warning)."""
    rows = np.asarray(rows, dtype=np.float64)
    all_nan = np.all(np.isnan(rows), axis=0)
    result = np.full(rows.shape[1], np.nan)
    result[~all_nan] = np.nanmean(rows[:, ~all_nan], axis=0)
    return result


def _normalized_dispersion(logged: Matrix, flavor: str, n_bins: int):
    """Per-gene mean, dispersion, and dispersion z-scored within bins of mean expression (scanpy's recipe)."""
    mean, var = mean_var(_expm1(logged) if flavor == "seurat" else logged)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = var / mean
        if flavor == "seurat":
            dispersion[dispersion == 0] = np.nan
            dispersion = np.log(dispersion)
            mean = np.log1p(mean)
            bins = pd.cut(mean, bins=n_bins)
        else:
            edges = np.r_[-np.inf, np.percentile(mean, np.arange(10, 105, 5)), np.inf]
            bins = pd.cut(mean, bins=edges, duplicates="drop")
    codes = pd.Series(dispersion).groupby(np.asarray(bins.codes), observed=True)
    if flavor == "seurat":
        avg, dev = codes.transform("mean").to_numpy(), codes.transform("std").to_numpy()
        # a bin with a single gene: its normalised dispersion is set to 1
        single = np.isnan(dev)
        avg, dev = np.where(single, 0.0, avg), np.where(single, avg, dev)
    else:
        avg = codes.transform("median").to_numpy()
        dev = pd.Series(np.abs(dispersion - avg)).groupby(np.asarray(bins.codes)).transform("median").to_numpy()
        dev = dev / _MAD_SCALE
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean, dispersion, (dispersion - avg) / dev


def _dispersion_select(mean, disp_norm, n_top_genes, cutoffs) -> np.ndarray:
    if n_top_genes is None:
        return _in_bounds(mean, np.nan_to_num(disp_norm), cutoffs)
    finite = disp_norm[~np.isnan(disp_norm)]
    if finite.size == 0:
        return np.zeros(mean.shape[0], dtype=bool)
    threshold = np.sort(finite)[::-1][min(n_top_genes, finite.size) - 1]
    return np.nan_to_num(disp_norm, nan=-np.inf) >= threshold


def _in_bounds(mean, disp_norm, cutoffs) -> np.ndarray:
    return (
        (mean > cutoffs["min_mean"])
        & (mean < cutoffs["max_mean"])
        & (disp_norm > cutoffs["min_disp"])
        & (disp_norm < cutoffs["max_disp"])
    )
