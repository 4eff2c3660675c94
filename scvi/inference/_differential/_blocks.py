"""Comparisons of groups of scale samples, batch block by batch block, and one-vs-all with a shared pool.

The functions take the sampler as an injected callable ``sample(cells, batch, n) -> (n, n_features)``
(uniform draws of ``cells`` with replacement, one posterior sample of the scale each, decoded in
``batch``), so they know nothing about models or posteriors.
"""
import logging
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from scvi._utils import track

from ._stats import PairStatistics, de_table, iter_pair_slices, weighted_group_means

logger = logging.getLogger(__name__)

#: scale values (samples x features) handled per minibatch of the reductions (~16 MB of float32)
CHUNK_VALUES = 4_000_000

Sampler = Callable[[np.ndarray, Optional[int], int], np.ndarray]
RawProperties = Callable[[np.ndarray, np.ndarray], Dict[str, np.ndarray]]


class Spec(NamedTuple):
    """Validated hypothesis-testing options of one DE call."""

    mode: str
    change_fn: Optional[Callable]
    m1_domain_fn: Optional[Callable]
    levels: List[float]
    use_permutation: bool
    M_permutation: Optional[int]


class Block(NamedTuple):
    """Samples of the two groups decoded in one batch (or in all batches) and the number of
    random pairs to draw between them when ``use_permutation``."""

    samples1: np.ndarray
    samples2: np.ndarray
    n_permuted_pairs: int


def chunk_rows(n_features: int) -> int:
    """Rows of samples per minibatch so that a minibatch holds about :data:`CHUNK_VALUES` values."""
    return max(64, CHUNK_VALUES // max(int(n_features), 1))


def reduce_blocks(blocks: Sequence[Block], spec: Spec, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """The DE statistics of the pairs of all blocks (see :class:`PairStatistics`).

    Without permutation, block samples are paired in a random order (rows may come grouped by
    cell), so pairs are exchangeable as in the original; with permutation, ``n_permuted_pairs``
    pairs are drawn with replacement in each block. ``scale1``/``scale2`` are the means of all
    samples of each group.
    """
    plans, n_pairs = [], 0
    for block in blocks:
        n1, n2 = len(block.samples1), len(block.samples2)
        if spec.use_permutation:
            u, v = rng.integers(n1, size=block.n_permuted_pairs), rng.integers(n2, size=block.n_permuted_pairs)
        else:
            n = min(n1, n2)
            u, v = rng.permutation(n1)[:n], rng.permutation(n2)[:n]
        plans.append((block.samples1, u, block.samples2, v))
        n_pairs += len(u)
    stats = PairStatistics(spec.mode, n_pairs, spec.change_fn, spec.m1_domain_fn)
    step = chunk_rows(blocks[0].samples1.shape[1])
    for samples1, u, samples2, v in plans:
        for rows in iter_pair_slices(len(u), step):
            stats.add(samples1[u[rows]], samples2[v[rows]])
    scale1 = _mean_of([b.samples1 for b in blocks])
    scale2 = _mean_of([b.samples2 for b in blocks])
    return stats.result(scale1, scale2, spec.levels)


def _mean_of(arrays: List[np.ndarray]) -> np.ndarray:
    """Column means over the rows of several arrays (float64 accumulation, dtype of the samples)."""
    total = sum(a.sum(0, dtype=np.float64) for a in arrays)
    return (total / sum(len(a) for a in arrays)).astype(arrays[0].dtype)


def one_vs_all_tables(
    sample: Sampler,
    raw_properties: Optional[RawProperties],
    feature_names: np.ndarray,
    names: list,
    membership: List[np.ndarray],
    min_cells: int,
    spec: Spec,
    batches: List[Optional[int]],
    n_per_batch: int,
    rng: np.random.Generator,
) -> Tuple[List[pd.DataFrame], list]:
    """Each cluster against all other clusters, drawing the "rest" samples from one shared pool.

    For cluster ``k`` in batch ``b``, the original draws ``n_per_batch`` uniform cells of the rest
    of the cells, i.e. draws how many come from each other cluster ``j`` (multinomial with weights
    ``n_j / n_rest``) and then uniform cells of ``j``. Here the multinomial counts are drawn first
    for every cluster; cluster ``j`` gets one pool of as many samples as the largest count asks for,
    each complement takes a random subset of each pool, and cluster ``k``'s own samples start with
    its pool. Each comparison has the original's distribution; about half as many samples are
    decoded, and memory holds about ``n_samples x n_features`` pooled values whatever the number
    of clusters.

    Parameters
    ----------
    sample
        ``sample(cells, batch, n)``: ``n`` scale samples of uniform draws of ``cells``.
    raw_properties
        ``raw_properties(cells1, cells2)``: raw-count statistics (keys ending in ``1``/``2``);
        ``None`` to skip them.
    feature_names
        Index of the tables.
    names, membership
        Cluster names and boolean masks of their cells.
    min_cells
        Clusters (or complements) with fewer cells are not tested.
    spec
        Testing options.
    batches
        ``transform_batch`` values (``[None]``: observed batches).
    n_per_batch
        Samples per group and batch.
    rng
        Generator of the draws.

    Returns
    -------
    tuple
        ``(tables, tested_names)``.
    """
    cells = [np.flatnonzero(mask) for mask in membership]
    counts = np.array([len(c) for c in cells])
    tested = [k for k in range(len(cells)) if counts[k] >= min_cells and counts.sum() - counts[k] >= min_cells]
    if not tested:
        return [], []
    per_group = _group_properties(raw_properties, cells) if raw_properties is not None else None

    # how many samples each complement takes from each cluster, then one pool per cluster and batch
    plan = {}
    need = np.zeros((len(batches), len(cells)), dtype=np.int64)
    for t in range(len(batches)):
        for k in tested:
            weights = counts.astype(np.float64)
            weights[k] = 0.0
            plan[k, t] = rng.multinomial(n_per_batch, weights / weights.sum())
            need[t] = np.maximum(need[t], plan[k, t])
    pools = [
        [sample(cells[j], b, int(need[t, j])) if need[t, j] > 0 else None for j in range(len(cells))]
        for t, b in enumerate(batches)
    ]

    n_perm = max(1, (spec.M_permutation or 1) // len(batches))
    tables, tested_names = [], []
    for k in track(tested, description="one-vs-all DE"):
        blocks = []
        for t, b in enumerate(batches):
            own = pools[t][k] if pools[t][k] is not None else np.zeros((0, len(feature_names)), np.float32)
            fresh = sample(cells[k], b, n_per_batch - len(own))
            rest = [
                pools[t][j][rng.permutation(len(pools[t][j]))[:m]] for j, m in enumerate(plan[k, t]) if m > 0
            ]
            blocks.append(Block(np.concatenate([own, fresh]), np.concatenate(rest), n_perm))
        info = reduce_blocks(blocks, spec, rng)
        del blocks
        if per_group is not None:
            rest_means = weighted_group_means(per_group, counts, exclude=k)
            for key in per_group:
                info[key + "1"] = per_group[key][k]
                info[key + "2"] = rest_means[key]
        table = de_table(info, feature_names, spec.mode)
        table["clusters"] = np.repeat(names[k], len(table.index))
        tables.append(table)
        tested_names.append(names[k])
    return tables, tested_names


def _group_properties(raw_properties: RawProperties, cells: List[np.ndarray]) -> Dict[str, np.ndarray]:
    """Raw statistics of every group, ``key -> (n_groups, n_features)`` (zeros for empty groups),
    computed two groups per call."""
    filled = [j for j in range(len(cells)) if len(cells[j])]
    rows: Dict[int, Dict[str, np.ndarray]] = {}
    for first, second in zip(filled[::2], filled[1::2] + [filled[-1]] * (len(filled) % 2)):
        props = raw_properties(cells[first], cells[second])
        rows[first] = {key[:-1]: np.asarray(value) for key, value in props.items() if key.endswith("1")}
        rows[second] = {key[:-1]: np.asarray(value) for key, value in props.items() if key.endswith("2")}
    keys = list(rows[filled[0]])
    n_features = len(rows[filled[0]][keys[0]])
    out = {key: np.zeros((len(cells), n_features)) for key in keys}
    for j, values in rows.items():
        for key in keys:
            out[key][j] = values[key]
    return out
