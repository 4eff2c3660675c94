"""Pure reductions of posterior scale samples: pairing, summaries, credible intervals, the result table."""
import logging
from typing import Callable, Dict, Iterable, List, Optional, Union

import numpy as np
import pandas as pd
import torch

from scvi._utils import RandomState, check_random_state

from ._options import check_mode

logger = logging.getLogger(__name__)

ArrayLike = Union[List[float], np.ndarray, torch.Tensor]

#: numerical guard of the log Bayes factors (legacy value)
EPS = 1e-8


def pairs_sampler(
    arr1: ArrayLike,
    arr2: ArrayLike,
    use_permutation: bool = True,
    M_permutation: int = None,
    sanity_check_perm: bool = False,
    weights1: ArrayLike = None,
    weights2: ArrayLike = None,
    random_state: RandomState = None,
) -> tuple:
    """Pair samples of two populations to estimate a double sum over them.

    Parameters
    ----------
    arr1, arr2
        Samples of population 1 and 2, shapes ``(n1, ...)`` and ``(n2, ...)``.
    use_permutation
        Draw ``M_permutation`` random pairs (with replacement) instead of pairing ``arr1[i]``
        with ``arr2[i]``.
    M_permutation
        Number of pairs to draw when ``use_permutation``.
    sanity_check_perm
        Draw both members of each pair from the union of the two populations (a null check).
    weights1, weights2
        Sampling probabilities of the rows of ``arr1`` and ``arr2``.
    random_state
        Seed or generator of the draws (default: numpy's global state).

    Returns
    -------
    tuple
        ``(new_arr1, new_arr2)``, each of shape ``(M_permutation, ...)`` when
        ``use_permutation``, else the inputs unchanged.
    """
    if not use_permutation:
        return arr1, arr2
    if M_permutation is None or int(M_permutation) < 1:
        raise ValueError(f"`M_permutation` must be a positive integer when use_permutation=True; got {M_permutation!r}")
    rng = check_random_state(random_state)
    n1, n2 = len(arr1), len(arr2)
    if sanity_check_perm:
        concat = np.concatenate((np.asarray(arr1), np.asarray(arr2)))
        u = rng.choice(n1 + n2, size=M_permutation)
        v = rng.choice(n1 + n2, size=M_permutation)
        return concat[u], concat[v]
    u = rng.choice(n1, size=M_permutation, p=_as_probabilities(weights1))
    v = rng.choice(n2, size=M_permutation, p=_as_probabilities(weights2))
    return arr1[u], arr2[v]


def _as_probabilities(weights: Optional[ArrayLike]) -> Optional[np.ndarray]:
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    return weights / weights.sum()


def credible_intervals(ary: np.ndarray, confidence_level: Union[float, List[float], np.ndarray] = 0.94) -> np.ndarray:
    """Highest posterior density (HPD) intervals of samples: the narrowest interval holding
    ``confidence_level`` of them (valid for unimodal distributions; as in arviz).

    Parameters
    ----------
    ary
        Samples, shape ``(n_samples,)`` or ``(n_samples, n_features)``.
    confidence_level
        Mass of the interval, in ``[0, 1)``; a list gives one result per level.

    Returns
    -------
    numpy.ndarray
        ``[min, max]`` of shape ``(2,)`` for 1-d samples, ``(n_features, 2)`` for 2-d samples
        (with a leading ``(n_levels,)`` axis when ``confidence_level`` is a list).
    """
    if np.ndim(confidence_level) > 0:
        return np.stack([credible_intervals(ary, level) for level in np.asarray(confidence_level)])
    ary = np.asarray(ary)
    rows = np.sort(ary.reshape(len(ary), -1).T, axis=1)
    intervals = hpd_from_sorted_rows(rows, confidence_level)
    return intervals[0] if ary.ndim == 1 else intervals


def hpd_from_sorted_rows(rows: np.ndarray, confidence_level: float) -> np.ndarray:
    """HPD intervals of samples sorted along each row.

    Parameters
    ----------
    rows
        Shape ``(n_features, n_samples)``, each row sorted.
    confidence_level
        Mass of the interval, in ``[0, 1)``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_features, 2)``: interval minima and maxima.
    """
    n = rows.shape[1]
    width_idx = int(np.floor(confidence_level * n))
    n_intervals = n - width_idx
    if n_intervals <= 0 or width_idx < 0:
        raise ValueError(
            "Too few elements for interval calculation. "
            "Check that credible_interval meets condition 0 =< credible_interval < 1"
        )
    start = np.argmin(rows[:, width_idx:] - rows[:, :n_intervals], axis=1)
    features = np.arange(rows.shape[0])
    return np.stack([rows[features, start], rows[features, start + width_idx]], axis=1)


def describe_continuous_distrib(
    samples: Union[np.ndarray, torch.Tensor],
    credible_intervals_levels: Optional[Union[List[float], np.ndarray]] = None,
) -> dict:
    """Summaries of a distribution from its samples.

    Parameters
    ----------
    samples
        Samples, shape ``(n_samples, n_features)``.
    credible_intervals_levels
        Levels in ``[0, 1)`` of HPD intervals to compute (see :func:`credible_intervals`).

    Returns
    -------
    dict
        ``mean``, ``median``, ``std``, ``min``, ``max`` (each of shape ``(n_features,)``), then
        ``confidence_interval_{level}_min`` / ``_max`` for each level (``level`` is
        ``str(level)[:5]``).
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    rows = np.ascontiguousarray(samples.reshape(len(samples), -1).T)
    props = describe_rows(rows, credible_intervals_levels)
    return {key: value.reshape(samples.shape[1:]) for key, value in props.items()}


def describe_rows(rows: np.ndarray, credible_intervals_levels=None) -> dict:
    """:func:`describe_continuous_distrib` of samples laid out one feature per row,
    ``(n_features, n_samples)``; reorders each row in place (the rows are a scratch buffer)."""
    levels = [] if credible_intervals_levels is None else list(np.atleast_1d(credible_intervals_levels))
    n = rows.shape[1]
    props = dict(mean=rows.mean(1), median=None, std=rows.std(1), min=rows.min(1), max=rows.max(1))
    middle = [(n - 1) // 2, n // 2]
    if levels:
        rows.sort(axis=1)  # one sort serves the median and every interval
    else:
        rows.partition(middle, axis=1)
    props["median"] = rows[:, middle].mean(1)
    for level in levels:
        interval = hpd_from_sorted_rows(rows, float(level))
        key = str(level)[:5]
        props[f"confidence_interval_{key}_min"] = interval[:, 0]
        props[f"confidence_interval_{key}_max"] = interval[:, 1]
    return props


class PairStatistics:
    """Reduce pairs of scale samples, minibatch by minibatch, into the DE statistics.

    Parameters
    ----------
    mode
        ``"vanilla"`` (count ``s1 > s2``) or ``"change"`` (effect sizes, kept for the median and
        credible intervals).
    n_pairs
        Total number of pairs that will be added (sizes the effect-size buffer).
    change_fn, m1_domain_fn
        Effect size and DE-region indicator (change mode; see :func:`resolve_change_fn`).
    """

    def __init__(self, mode: str, n_pairs: int, change_fn: Callable = None, m1_domain_fn: Callable = None):
        self.mode = check_mode(mode)
        self.n_pairs = n_pairs
        self.change_fn = change_fn
        self.m1_domain_fn = m1_domain_fn
        self._filled = 0
        self._hits = None
        self._effects = None

    def add(self, scales1: np.ndarray, scales2: np.ndarray):
        """Add aligned pairs ``(scales1[i], scales2[i])``, both of shape ``(n, n_features)``."""
        if self.mode == "vanilla":
            hits = (scales1 > scales2).sum(0)
        else:
            try:
                effect = np.asarray(self.change_fn(scales1, scales2))
                hits = np.asarray(self.m1_domain_fn(effect)).sum(0)
            except TypeError as error:
                raise TypeError(
                    "change_fn or m1_domain_fn have has wrong properties. Please ensure that these functions have "
                    "the right signatures and outputs and that they can process numpy arrays"
                ) from error
            if self._effects is None:  # one row per feature: the summaries run along contiguous rows
                self._effects = np.empty((effect.shape[1], self.n_pairs), dtype=effect.dtype)
            self._effects[:, self._filled : self._filled + len(effect)] = effect.T
        self._hits = hits if self._hits is None else self._hits + hits
        self._filled += len(scales1)

    def result(self, scale1: np.ndarray, scale2: np.ndarray, cred_interval_lvls=None) -> Dict[str, np.ndarray]:
        """The legacy result dictionary, given the mean scales of the two groups."""
        if self._filled == 0:
            raise ValueError("no pairs of samples were drawn: increase `n_samples` or `M_permutation`")
        proba = self._hits / self._filled
        if self.mode == "vanilla":
            return dict(
                proba_m1=proba,
                proba_m2=1.0 - proba,
                bayes_factor=np.log(proba + EPS) - np.log(1.0 - proba + EPS),
                scale1=scale1,
                scale2=scale2,
            )
        effects = self._effects if self._filled == self.n_pairs else self._effects[:, : self._filled].copy()
        props = describe_rows(effects, cred_interval_lvls)
        return dict(
            proba_de=proba,
            proba_not_de=1.0 - proba,
            bayes_factor=np.log(proba + EPS) - np.log(1.0 - proba + EPS),
            scale1=scale1,
            scale2=scale2,
            **{"lfc_" + key: value for key, value in props.items()},
        )


def iter_pair_slices(n_pairs: int, chunk_size: int) -> Iterable[slice]:
    """Consecutive slices of at most ``chunk_size`` pairs covering ``range(n_pairs)``."""
    for start in range(0, n_pairs, max(int(chunk_size), 1)):
        yield slice(start, min(start + chunk_size, n_pairs))


def weighted_group_means(props: Dict[str, np.ndarray], counts: np.ndarray, exclude: int) -> Dict[str, np.ndarray]:
    """Per-feature means over the union of all groups but ``exclude``.

    Parameters
    ----------
    props
        Per-group means, each of shape ``(n_groups, n_features)``.
    counts
        Cells per group, shape ``(n_groups,)``.
    exclude
        Group left out.
    """
    weights = np.asarray(counts, dtype=np.float64).copy()
    weights[exclude] = 0.0
    weights /= weights.sum()
    return {key: np.tensordot(weights, value, axes=1) for key, value in props.items()}


def de_table(info: Dict[str, np.ndarray], index, mode: str) -> pd.DataFrame:
    """The result DataFrame: indexed by feature name, sorted as legacy (``proba_de`` in change
    mode, ``bayes_factor`` in vanilla mode, descending)."""
    index = np.asarray(index)
    lengths = {key: len(np.atleast_1d(value)) for key, value in info.items()}
    if any(length != len(index) for length in lengths.values()):
        raise ValueError(
            f"DE statistics cover {sorted(set(lengths.values()))} features but there are {len(index)} feature names; "
            "`gene_list` cannot be used for differential expression"
        )
    table = pd.DataFrame(info, index=index)
    sort_key = "proba_de" if mode == "change" else "bayes_factor"
    return table.sort_values(by=sort_key, ascending=False, kind="mergesort")
