"""Checks of user input to the dataset, with errors that name the problem."""
import logging
import warnings
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp_sparse

from ._arrays import ArrayLike

logger = logging.getLogger(__name__)


def as_count_matrix(X: ArrayLike, name: str = "X") -> ArrayLike:
    """Validate a count matrix and return it as C-contiguous float32 ndarray or float32 CSR.

    Raises
    ------
    TypeError
        If ``X`` is not array-like numeric.
    ValueError
        If ``X`` is not 2-dimensional, or has a negative or non-finite entry.

    Warns
    -----
    UserWarning
        If ``X`` has non-integer entries (normalised data passed by mistake?).
    """
    if sp_sparse.issparse(X):
        X = sp_sparse.csr_matrix(X, dtype=np.float32)
        X.sum_duplicates()
        values = X.data
    else:
        X = np.asarray(X)
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise TypeError(f"`{name}` must be a numeric matrix of counts; got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(
                f"Gene expression data `{name}` should be 2-dimensional (cells x genes), not {X.ndim}-dimensional."
            )
        X = np.ascontiguousarray(X, dtype=np.float32)
        values = X
    check_count_values(values, name)
    return X


def check_count_values(values: np.ndarray, name: str = "X") -> None:
    """Raise on negative / non-finite values, warn on non-integer values."""
    if values.size == 0:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`{name}` contains non-finite values (NaN or inf); counts must be finite.")
    if values.min() < 0:
        raise ValueError(f"`{name}` contains negative values; counts must be non-negative.")
    if np.any(np.mod(values, 1) != 0):
        warnings.warn(
            f"`{name}` contains non-integer values. scVI models raw counts (UMI or reads); "
            "did you pass normalised or log-transformed data?",
            UserWarning,
            stacklevel=4,
        )


def as_categorical_column(values, n_cells: int, name: str) -> np.ndarray:
    """Return categorical cell values (labels, batch indices) as int64 of shape ``(n_cells, 1)``.

    Raises
    ------
    TypeError
        If the values are not numbers (e.g. strings: pass names through ``cell_types``).
    ValueError
        If the length differs from ``n_cells`` or a value is negative / not an integer.
    """
    if sp_sparse.issparse(values):
        values = values.toarray()
    array = np.asarray(values)
    if array.dtype.kind in "OUS":  # numbers stored as objects or strings ("0", "1") are accepted
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(
            f"`{name}` must be integers (categories 0, 1, ...); got dtype {array.dtype}. "
            "Map names to integers first (e.g. pass names as `cell_types`)."
        )
    array = array.reshape(-1)
    if len(array) != n_cells:
        raise ValueError(f"`{name}` has {len(array)} entries but the data has {n_cells} cells (rows of X).")
    if array.size:
        if not np.all(np.isfinite(array)) or np.any(np.mod(array, 1) != 0):
            raise ValueError(f"`{name}` must contain integers; got non-integer values.")
        if array.min() < 0:
            raise ValueError(f"`{name}` must be non-negative; got minimum {array.min():g}.")
    return array.astype(np.int64).reshape(-1, 1)


def check_length(values, expected: int, name: str, what: str) -> None:
    """Raise if ``len(values) != expected``."""
    length = values.shape[0] if hasattr(values, "shape") and len(values.shape) else len(values)
    if length != expected:
        raise ValueError(f"`{name}` has {length} entries but the data has {expected} {what}.")


def as_str_array(values: Sequence, min_width: int) -> np.ndarray:
    """Unicode array wide enough for later in-place edits (``<U{min_width}`` at least)."""
    array = np.asarray(values).astype(str)
    width = max(min_width, int(np.char.str_len(array).max()) if array.size else 0)
    return array.astype(f"<U{width}")


def make_unique(names: np.ndarray, what: str = "gene names", min_width: int = 64) -> np.ndarray:
    """Append ``-1``, ``-2``, … to repeated names (as ``AnnData.var_names_make_unique``).

    This is logged as a warning (as scVI 0.6's "Gene names are not unique."), not raised through
    ``warnings``: real files have duplicated names (10x mm10 has two 'Rp1') and the user cannot act on it.
    """
    names = np.asarray(names)
    unique, counts = np.unique(names, return_counts=True)
    if (counts <= 1).all():
        return names
    duplicated = unique[counts > 1]
    logger.warning(
        f"{len(duplicated)} duplicated {what} (e.g. {duplicated[:3].tolist()}); "
        "making them unique by appending '-1', '-2', ..."
    )
    taken = set(names.tolist())
    last_suffix = {}
    result = names.tolist()
    for i, name in enumerate(result):
        if name not in last_suffix:
            last_suffix[name] = 0
            continue
        suffix, candidate = last_suffix[name], name
        while candidate in taken:
            suffix += 1
            candidate = f"{name}-{suffix}"
        last_suffix[name] = suffix
        taken.add(candidate)
        result[i] = candidate
    return as_str_array(result, min_width=min_width)


def resolve_index(subset, size: int, name: str, what: str) -> np.ndarray:
    """Turn an int index or boolean mask (list, array, ``np.matrix``) into sorted-as-given int64 indices.

    Raises
    ------
    ValueError
        If a mask has the wrong length or an index is out of ``[-size, size)``.
    """
    array = np.asarray(subset)
    if array.ndim > 1:
        array = array.reshape(-1)
    if array.dtype == bool:
        if len(array) != size:
            raise ValueError(f"Boolean mask `{name}` has length {len(array)} but there are {size} {what}.")
        return np.flatnonzero(array)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            array = array.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must be integer indices or a boolean mask; got dtype {array.dtype}.")
    if array.max() >= size or array.min() < -size:
        raise ValueError(f"`{name}` has indices out of range for {size} {what}.")
    return np.where(array < 0, array + size, array).astype(np.int64)


def require_nonempty(n_left: int, what: str, operation: str, hint: Optional[str] = None) -> None:
    """Raise a ValueError when a filtering operation would leave no cell / gene."""
    if n_left == 0:
        message = f"{operation} would leave no {what}; nothing was changed."
        if hint:
            message += f" {hint}"
        raise ValueError(message)
