"""Validation of the options of differential expression and the batch configurations."""
import inspect
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

#: the modes of :meth:`Posterior.get_bayes_factors`
DE_MODES = ("vanilla", "change")


def check_mode(mode: Optional[str]) -> str:
    """Return ``mode`` if it is one of :data:`DE_MODES`, else raise a ValueError naming them."""
    if mode not in DE_MODES:
        raise ValueError(f"`mode` must be one of {', '.join(repr(m) for m in DE_MODES)}; got {mode!r}")
    return mode


def log_fold_change(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Base-2 log fold change ``log2(x) - log2(y)`` (the default ``change_fn``)."""
    return np.log2(x) - np.log2(y)


def resolve_change_fn(change_fn: Optional[Union[str, Callable]]) -> Callable:
    """The effect-size function: ``None`` or ``"log-fold"`` -> :func:`log_fold_change`, or a
    callable of two arrays (checked to take two positional arguments)."""
    if change_fn is None or (isinstance(change_fn, str) and change_fn == "log-fold"):
        return log_fold_change
    if not callable(change_fn):
        raise ValueError(f"'change_fn' attribute not understood: must be 'log-fold' or a callable; got {change_fn!r}")
    _check_arity(change_fn, 2, "change_fn")
    return change_fn


def resolve_m1_domain_fn(m1_domain_fn: Optional[Callable], delta: Optional[float]) -> Callable:
    """The indicator of the DE region: a callable of one array, or ``|r| >= delta``
    (``delta`` defaults to 0.5)."""
    if m1_domain_fn is not None:
        if not callable(m1_domain_fn):
            raise ValueError(f"`m1_domain_fn` must be a callable of one array; got {m1_domain_fn!r}")
        _check_arity(m1_domain_fn, 1, "m1_domain_fn")
        return m1_domain_fn
    delta = 0.5 if delta is None else delta
    if not isinstance(delta, (int, float, np.integer, np.floating)) or isinstance(delta, bool) or delta < 0:
        raise ValueError(f"`delta` must be a non-negative number; got {delta!r}")

    def outside_delta(samples: np.ndarray) -> np.ndarray:
        return np.abs(samples) >= delta

    return outside_delta


def _check_arity(fn: Callable, n_args: int, name: str):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins / ufuncs without a signature: trust them
        return
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not len(required) <= n_args <= len(positional):
        raise ValueError(
            f"`{name}` must take exactly {n_args} positional argument{'s' if n_args > 1 else ''} "
            "(change_fn: two normalised means; m1_domain_fn: the effect sizes)"
        )


def check_credible_levels(levels) -> List[float]:
    """The credible-interval levels as a list of floats in ``[0, 1)``."""
    if levels is None:
        return []
    levels = list(np.atleast_1d(np.asarray(levels, dtype=float)))
    bad = [lv for lv in levels if not 0 <= lv < 1]
    if bad:
        raise ValueError(f"`cred_interval_lvls` must lie in [0, 1); got {bad}")
    return levels


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, or a ValueError naming ``name`` if it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)


def plan_batches(
    batchid1: Optional[Sequence[int]],
    batchid2: Optional[Sequence[int]],
    use_observed_batches: bool,
    n_batches: int,
) -> Tuple[List[Optional[int]], List[Optional[int]], bool]:
    """Decide which batches each group is decoded in and whether pairs share a batch.

    Returns
    -------
    tuple
        ``(batches1, batches2, same_batches)``: the ``transform_batch`` values of each group
        (``[None]`` for observed batches) and whether samples are paired within each batch
        (configuration 2 of the documentation). Warns for configurations that are not covered
        (different batch sets that intersect).
    """
    if use_observed_batches:
        if batchid1 is not None or batchid2 is not None:
            raise ValueError(
                "Unconsistent batch policy: give `batchid1`/`batchid2` or use_observed_batches=True, not both"
            )
        return [None], [None], False
    batches1 = _batch_values(batchid1, n_batches, "batchid1")
    batches2 = _batch_values(batchid2, n_batches, "batchid2")
    same = set(batches1) == set(batches2)
    if not same and set(batches1) & set(batches2):
        warnings.warn(
            "Batchids of cells groups 1 and 2 are different but have an non-null intersection. Specific handling "
            "of such situations is not implemented yet and batch correction is not trustworthy.",
            UserWarning,
            stacklevel=3,
        )
    return batches1, batches2, same


def _batch_values(batchid, n_batches: int, name: str) -> List[int]:
    if batchid is None:
        return list(range(max(int(n_batches), 1)))
    values = np.unique(np.atleast_1d(np.asarray(batchid)))
    if values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"`{name}` must be a non-empty list of batch ids (integers); got {batchid!r}")
    if values.min() < 0 or values.max() >= max(int(n_batches), 1):
        raise ValueError(f"`{name}` must hold batch ids in [0, {n_batches}); got {values.tolist()}")
    return [int(v) for v in values]




# ---------------------------------------------------------------------------- cells and clusters
def as_cell_indices(selection, n_cells: int, name: str) -> np.ndarray:
    """Dataset indices of a boolean mask (shape ``(n_cells,)``) or of a list of cell indices.

    Raises a ValueError (TypeError for other dtypes) naming ``name`` for a mask of the wrong
    length, indices out of range, or an empty selection.
    """
    selection = np.asarray(selection)
    if selection.dtype == bool:
        if selection.shape != (n_cells,):
            raise ValueError(f"boolean `{name}` must have one entry per cell ({n_cells}); got shape {selection.shape}")
        cells = np.flatnonzero(selection)
    elif selection.size == 0 or np.issubdtype(selection.dtype, np.integer):
        cells = selection.astype(np.int64).ravel()
        if cells.size and (cells.min() < -n_cells or cells.max() >= n_cells):
            raise ValueError(f"`{name}` holds cell indices outside [0, {n_cells})")
        cells = np.where(cells < 0, cells + n_cells, cells)
    else:
        raise TypeError(f"`{name}` must be a boolean mask or integer cell indices; got dtype {selection.dtype}")
    if cells.size == 0:
        raise ValueError(f"`{name}` selects no cells")
    return cells


def cluster_masks(
    cell_labels, dataset_labels: np.ndarray, cell_types, subset, n_cells: int
) -> Tuple[list, List[np.ndarray]]:
    """Cluster names and the boolean mask of the cells of each cluster (within ``subset``).

    ``cell_labels`` (one per cell; negative numbers leave a cell out) take precedence; otherwise
    the dataset's labels index its ``cell_types``.
    """
    if cell_labels is not None:
        labels = np.asarray(cell_labels).ravel()
        if len(labels) != n_cells:
            raise ValueError(" the length of cell_labels have to be the same as the number of cells")
        valid = labels >= 0 if np.issubdtype(labels.dtype, np.number) else np.ones(n_cells, dtype=bool)
        names = list(np.unique(labels[valid]))
        values = names
    else:
        if cell_types is None:
            raise ValueError(
                "If gene_dataset is not annotated with labels and cell types, then must provide cell_labels"
            )
        names = list(cell_types)
        values = list(range(len(names)))
        labels = dataset_labels
    keep = np.ones(n_cells, dtype=bool)
    if subset is not None:
        keep[:] = False
        keep[as_cell_indices(subset, n_cells, "subset")] = True
    return names, [(labels == value) & keep for value in values]
