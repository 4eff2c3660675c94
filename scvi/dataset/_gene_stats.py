"""Per-gene statistics of dense or sparse count matrices, shared by the gene selection modes.

A sparse matrix is never densified: sums run over its stored entries, in float64.
"""
from typing import Dict, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp_sparse

Matrix = Union[np.ndarray, sp_sparse.spmatrix]


def mean_var(X: Matrix, ddof: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and variance (float64) of a dense or sparse matrix, without densifying.

    Parameters
    ----------
    X
        Shape ``(n_cells, n_genes)``.
    ddof
        Delta degrees of freedom of the variance.

    Returns
    -------
    tuple of np.ndarray
        ``(mean, var)``, each of shape ``(n_genes,)``.
    """
    n_cells = X.shape[0]
    total, total_sq = column_sums(X)
    mean = total / n_cells
    var = np.maximum(total_sq / n_cells - mean**2, 0.0)
    if ddof and n_cells > ddof:
        var *= n_cells / (n_cells - ddof)
    return mean, var


def check_matrix(X: Matrix) -> Matrix:
    """``X`` as a 2-D ndarray or CSR matrix, with at least 2 cells and 1 gene."""
    if sp_sparse.issparse(X):
        X = sp_sparse.csr_matrix(X)
    else:
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`X` must be a 2-D (n_cells, n_genes) matrix; got shape {X.shape}")
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"`X` needs at least 2 cells and 1 gene; got shape {X.shape}")
    return X


def split_batches(batch_indices: Optional[np.ndarray], n_cells: int) -> Optional[Dict[object, np.ndarray]]:
    """Boolean cell mask of each batch, or ``None`` with fewer than two batches."""
    if batch_indices is None:
        return None
    batch_indices = np.asarray(batch_indices)
    if batch_indices.ndim == 2 and batch_indices.shape[1] == 1:
        batch_indices = batch_indices[:, 0]
    if batch_indices.shape != (n_cells,):
        raise ValueError(
            f"`batch_indices` must have shape ({n_cells},) to match the cells of X; got {batch_indices.shape}"
        )
    values = np.unique(batch_indices)
    if values.size < 2:
        return None
    return {value: batch_indices == value for value in values}


def column_sums(X: Matrix) -> Tuple[np.ndarray, np.ndarray]:
    """Float64 sums of the entries and of their squares, per column."""
    if sp_sparse.issparse(X):
        data = X.data.astype(np.float64)
        total = np.bincount(X.indices, weights=data, minlength=X.shape[1])
        total_sq = np.bincount(X.indices, weights=data**2, minlength=X.shape[1])
        return total, total_sq
    data = X.astype(np.float64, copy=False)
    return data.sum(axis=0), np.einsum("ij,ij->j", data, data)


def n_nonzero(X: Matrix) -> np.ndarray:
    """Number of non-zero entries of each column."""
    if sp_sparse.issparse(X):
        return np.bincount(X.indices[X.data != 0], minlength=X.shape[1])
    return np.count_nonzero(X, axis=0)
