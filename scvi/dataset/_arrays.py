"""Array helpers of the dataset: categorical remapping, library size, concatenation, count checks.

These are the legacy module-level functions of ``scvi.dataset.dataset`` (re-exported there).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp_sparse

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, sp_sparse.spmatrix]


def remap_categories(
    original_categories: Union[List[int], np.ndarray],
    mapping_from: Union[List[int], np.ndarray] = None,
    mapping_to: Union[List[int], np.ndarray] = None,
    mappings_dict: Dict[str, Union[List[str], List[int], np.ndarray]] = None,
) -> Union[Tuple[np.ndarray, int], Tuple[np.ndarray, int, Dict[str, np.ndarray]]]:
    """Remap a categorical array, by default onto ``0, ..., N-1`` in sorted order of its values.

    Parameters
    ----------
    original_categories
        Categorical array to remap, any shape (e.g. ``(n_cells, 1)``).
    mapping_from
        Source values; defaults to ``np.unique(original_categories)``. Values absent from it are
        left unchanged.
    mapping_to
        Destination values, same length as ``mapping_from``; defaults to ``0, ..., N-1``.
    mappings_dict
        Mappings indexed by the old categories (e.g. ``{"cell_types": cell_types}``); they are
        re-indexed by the new categories and returned.

    Returns
    -------
    tuple
        ``(new_categories, n_categories)`` with ``new_categories`` int64 of the input shape and
        ``n_categories`` the number of distinct input values, plus the remapped
        ``{name: mapping}`` dict when ``mappings_dict`` is given.

    Raises
    ------
    ValueError
        If ``mapping_from`` is shorter than the number of categories, or ``mapping_to`` and
        ``mapping_from`` differ in length.
    """
    original = np.asarray(original_categories)
    unique_categories = np.unique(original)
    n_categories = len(unique_categories)
    mapping_from = unique_categories if mapping_from is None else np.asarray(mapping_from)
    mapping_to = np.arange(n_categories) if mapping_to is None else np.asarray(mapping_to)
    if n_categories > len(mapping_from):
        raise ValueError("Size of provided mapping_from greater than the number of categories.")
    if len(mapping_to) != len(mapping_from):
        raise ValueError("Length mismatch between mapping_to and mapping_from.")

    new_categories = _apply_mapping(original, mapping_from, mapping_to)
    if mappings_dict is None:
        return new_categories, n_categories

    size = len(np.unique(new_categories))
    if len(mapping_to):
        size = max(size, int(np.max(mapping_to)) + 1)
    new_mappings = {}
    for name, mapping in mappings_dict.items():
        mapping = np.asarray(mapping)
        new_mapping = np.empty(size, dtype=mapping.dtype)
        new_mapping[mapping_to.astype(np.int64)] = mapping[np.asarray(mapping_from).astype(np.int64)]
        new_mappings[name] = new_mapping
    return new_categories, n_categories, new_mappings


def _apply_mapping(original: np.ndarray, mapping_from: np.ndarray, mapping_to: np.ndarray) -> np.ndarray:
    """Vectorised ``original -> mapping_to[mapping_from.index(original)]``; unmatched values kept."""
    if len(mapping_from) == 0:
        return original.astype(np.int64)
    sorter = np.argsort(mapping_from, kind="stable")
    positions = np.searchsorted(mapping_from, original, sorter=sorter)
    positions = np.clip(positions, 0, len(mapping_from) - 1)
    matched = mapping_from[sorter[positions]] == original
    mapped = mapping_to[sorter[positions]]
    if matched.all():
        return mapped.astype(np.int64)
    try:
        return np.where(matched, mapped, original).astype(np.int64)
    except (TypeError, ValueError) as error:
        raise ValueError("remap_categories: some categories are not in mapping_from and are not integers") from error


def compute_library_size(data: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the log library size (total count) of the cells of ``data``.

    Empty cells contribute a log library of 0 (as in scVI 0.6) and trigger a logged warning.

    Parameters
    ----------
    data
        Counts, shape ``(n_cells, n_genes)``, dense or sparse.

    Returns
    -------
    tuple of numpy.ndarray
        ``(local_mean, local_var)``, each float32 of shape ``(1, 1)``.
    """
    log_counts = _log_library(data)
    # variance of the values shifted by the first one: exactly 0 for identical libraries (as scVI 0.6
    # in float32), where float64 rounding of the mean would leave ~1e-30
    shift = log_counts[0] if log_counts.size else 0.0
    return (
        np.asarray(np.mean(log_counts), dtype=np.float32).reshape(-1, 1),
        np.asarray(np.var(log_counts - shift), dtype=np.float32).reshape(-1, 1),
    )


def _log_library(data: ArrayLike) -> np.ndarray:
    """Log of the total count of each cell (0 for empty cells), shape ``(n_cells,)``, float64."""
    sums = np.asarray(data.sum(axis=1, dtype=np.float64)).ravel()
    empty = sums <= 0
    if empty.any():
        logger.warning(
            "This dataset has some empty cells, this might fail scVI inference."
            "Data should be filtered with `my_dataset.filter_cells_by_count()`"
        )
    return np.log(np.where(empty, 1.0, sums))


def library_size_per_batch(data: ArrayLike, batch_indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-batch mean and variance of the log library size, broadcast to every cell.

    Parameters
    ----------
    data
        Counts, shape ``(n_cells, n_genes)``.
    batch_indices
        Batch of each cell, shape ``(n_cells,)`` or ``(n_cells, 1)``, non-negative integers.

    Returns
    -------
    tuple of numpy.ndarray
        ``(local_means, local_vars)``, float32, shape ``(n_cells, 1)``.
    """
    log_counts = _log_library(data)
    batches = np.asarray(batch_indices).ravel().astype(np.int64)
    if log_counts.size == 0:
        empty = np.zeros((0, 1), dtype=np.float32)
        return empty, empty.copy()
    size = np.bincount(batches).astype(np.float64)
    present = size > 0
    total = np.bincount(batches, weights=log_counts)
    mean = np.zeros_like(size)
    mean[present] = total[present] / size[present]
    # centre values shifted by each batch's first one: the variance is exactly 0 for identical
    # libraries (as scVI 0.6 in float32), where float64 rounding of the mean would leave ~1e-30
    first = np.zeros_like(size)
    first[batches[::-1]] = log_counts[::-1]
    shifted = log_counts - first[batches]
    shifted_mean = np.zeros_like(size)
    shifted_mean[present] = np.bincount(batches, weights=shifted)[present] / size[present]
    centred = shifted - shifted_mean[batches]
    var = np.zeros_like(size)
    var[present] = np.bincount(batches, weights=centred**2)[present] / size[present]
    return (
        mean[batches].astype(np.float32).reshape(-1, 1),
        var[batches].astype(np.float32).reshape(-1, 1),
    )


def concatenate_arrays(arrays: Sequence[ArrayLike]) -> ArrayLike:
    """Stack arrays along the cells: dense if all are dense, else CSR."""
    if all(isinstance(array, np.ndarray) for array in arrays):
        return np.concatenate(arrays)
    return sp_sparse.vstack([sp_sparse.csr_matrix(array) for array in arrays], format="csr")


def check_nonnegative_integers(X: ArrayLike) -> bool:
    """Return whether every entry of ``X`` is a non-negative integer (i.e. ``X`` looks like counts)."""
    data = X.data if sp_sparse.issparse(X) else np.asarray(X)
    if data.size == 0:
        return True
    if np.any(data < 0):
        return False
    return bool(np.all(np.mod(data, 1) == 0))


def n_categories(values: Optional[np.ndarray]) -> int:
    """Number of distinct values of a categorical array (0 for ``None``)."""
    return 0 if values is None else len(np.unique(values))
