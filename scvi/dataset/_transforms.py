"""Derived versions of the counts (normalised, corrupted) and summary statistics."""
import logging
from typing import List, Tuple, Union

import numpy as np
import scipy.sparse as sp_sparse

from .._utils import RandomState, check_random_state

logger = logging.getLogger(__name__)

_CORRUPTIONS = ("uniform", "binomial")


def _row_scaled(X, scale: np.ndarray):
    """``X / scale[:, None]`` keeping the format of ``X``."""
    if sp_sparse.issparse(X):
        return sp_sparse.diags(1.0 / scale).dot(X).tocsr().astype(np.float32)
    return (X / scale[:, None]).astype(np.float32)


def _nonzero_entries(X) -> Tuple[np.ndarray, np.ndarray]:
    """Flat positions (row * n_genes + col) and storage positions of the non-zeros of ``X``."""
    n_genes = X.shape[1]
    if sp_sparse.issparse(X):
        coo_rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        nonzero = X.data != 0
        flat = coo_rows.astype(np.int64) * n_genes + X.indices
        return flat[nonzero], np.flatnonzero(nonzero)
    flat = np.flatnonzero(X)
    return flat.astype(np.int64), flat


def _column_mean(rows) -> np.ndarray:
    """Mean of each column as a float64 array of shape ``(n_columns,)``."""
    return np.asarray(rows.mean(axis=0, dtype=np.float64)).ravel()


class TransformsMixin:
    """``normalize``, ``corrupt``, ``raw_counts_properties``, ``get_batch_mask_cell_measurement``."""

    def normalize(self) -> None:
        """Set ``norm_X``: each cell divided by its mean count (empty cells stay zero); keeps sparsity."""
        scale = np.asarray(self.X.mean(axis=1, dtype=np.float64)).ravel()
        scale[scale == 0] = 1.0
        self.norm_X = _row_scaled(self.X, scale)

    def corrupt(self, rate: float = 0.1, corruption: str = "uniform", random_state: RandomState = None) -> None:
        """Set ``corrupted_X``, a copy of ``X`` with a fraction ``rate`` of entries perturbed.

        ``"uniform"`` picks ``floor(rate * nnz)`` non-zero entries and multiplies each by a
        Bernoulli(0.9); ``"binomial"`` picks ``floor(rate * nb_cells * nb_genes)`` entries and
        replaces each count ``n`` by a Binomial(n, 0.2) draw. Keeps sparsity.

        Parameters
        ----------
        rate
            Fraction of entries to corrupt, in ``[0, 1]``.
        corruption
            ``"uniform"`` or ``"binomial"``.
        random_state
            Seed or generator (default: drawn from numpy's global state).

        Raises
        ------
        ValueError
            On an unknown ``corruption`` or a ``rate`` outside ``[0, 1]``.
        """
        if corruption not in _CORRUPTIONS:
            raise ValueError(f"`corruption` must be one of {', '.join(map(repr, _CORRUPTIONS))}; got {corruption!r}")
        if not 0 <= rate <= 1:
            raise ValueError(f"`rate` must be in [0, 1]; got {rate}")
        rng = check_random_state(random_state)
        X = self.X
        flat, storage = _nonzero_entries(X)
        if corruption == "uniform":
            chosen = rng.choice(len(flat), int(np.floor(rate * len(flat))), replace=False)
        else:
            n_entries = X.shape[0] * X.shape[1]
            picked = rng.choice(n_entries, int(np.floor(rate * n_entries)), replace=False)
            chosen = np.flatnonzero(np.isin(flat, picked))
        corrupted = X.copy()
        values = corrupted.data if sp_sparse.issparse(corrupted) else corrupted.reshape(-1)
        targets = storage[chosen]
        if corruption == "uniform":
            values[targets] = values[targets] * rng.binomial(1, 0.9, size=len(targets))
        else:
            values[targets] = rng.binomial(values[targets].astype(np.int64), 0.2)
        if sp_sparse.issparse(corrupted):
            corrupted.eliminate_zeros()
        self.corrupted_X = corrupted

    def raw_counts_properties(
        self, idx1: Union[List[int], np.ndarray], idx2: Union[List[int], np.ndarray]
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-gene statistics of the raw counts of two groups of cells.

        Parameters
        ----------
        idx1, idx2
            Cell indices (or boolean masks) of the two groups.

        Returns
        -------
        tuple of numpy.ndarray
            ``(mean1, mean2, nonz1, nonz2, norm_mean1, norm_mean2)``, each of shape ``(nb_genes,)``:
            mean count, fraction of non-zero counts, and mean of ``norm_X`` (computed by
            ``normalize`` if needed) in each group.
        """
        if self.norm_X is None:
            self.normalize()
        idx1, idx2 = np.asarray(idx1), np.asarray(idx2)
        rows1, rows2 = self.X[idx1], self.X[idx2]
        return (
            _column_mean(rows1),
            _column_mean(rows2),
            _column_mean(rows1 != 0),
            _column_mean(rows2 != 0),
            _column_mean(self.norm_X[idx1]),
            _column_mean(self.norm_X[idx2]),
        )

    def get_batch_mask_cell_measurement(self, attribute_name: str) -> List[np.ndarray]:
        """For each batch, which columns of a cell measurement were measured (are not all zero).

        Useful after merging datasets with the union of measurement columns.

        Parameters
        ----------
        attribute_name
            Name of a cell measurement, e.g. ``"protein_expression"``.

        Returns
        -------
        list of numpy.ndarray
            One boolean array of shape ``(n_columns,)`` per batch (in increasing batch order).

        Raises
        ------
        ValueError
            If ``attribute_name`` is not a registered cell measurement.
        """
        if attribute_name not in self.cell_measurements_col_mappings:
            registered = sorted(self.cell_measurements_col_mappings)
            raise ValueError(f"{attribute_name!r} is not a cell measurement; registered: {registered}")
        data = getattr(self, attribute_name)
        batches = self.batch_indices.ravel()
        return [np.asarray(data[batches == b].sum(axis=0)).ravel() != 0 for b in np.unique(batches)]
