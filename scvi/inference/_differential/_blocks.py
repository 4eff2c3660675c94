"""Comparisons of groups of scale samples, batch block by batch block, and one-vs-all with a shared pool.

The functions take the sampler as an injected callable ``sample(cells, batch, n)`` yielding
minibatches of ``n`` scale samples in total (uniform draws of ``cells`` with replacement, one
posterior sample of the scale each, decoded in ``batch``), so they know nothing about models or
posteriors.
"""
import itertools
import logging
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from scvi._utils import track

from ._stats import PairStatistics, de_table, iter_pair_slices, weighted_group_means

logger = logging.getLogger(__name__)

#: scale values (samples x features) handled per minibatch of the reductions (~16 MB of float32)
CHUNK_VALUES = 4_000_000

Sampler = Callable[[np.ndarray, Optional[int], int], Iterator[np.ndarray]]
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
    """Samples of the two groups decoded in one batch (or in all batches).

    Group 1 arrives as minibatches (``chunks1``, ``n1`` rows in total, possibly grouped by cell);
    group 2 is the rows ``rows2`` of ``samples2`` (all rows when ``None``). ``n_permuted_pairs``
    random pairs are drawn when ``use_permutation``.
    """

    chunks1: Iterable[np.ndarray]
    n1: int
    samples2: np.ndarray
    rows2: Optional[np.ndarray]
    n_permuted_pairs: int


def chunk_rows(n_features: int) -> int:
    """Rows of samples per minibatch so that a minibatch holds about :data:`CHUNK_VALUES` values."""
    return max(64, CHUNK_VALUES // max(int(n_features), 1))


def reduce_blocks(blocks: Sequence[Block], spec: Spec, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """The DE statistics of the pairs of all blocks (see :class:`PairStatistics`).

    Without permutation, each group-1 row is paired with a group-2 row taken in random order
    (so pairs are exchangeable as in the original, although rows may come grouped by cell) and
    group 1 is never held in memory; with permutation, ``n_permuted_pairs`` pairs are drawn with
    replacement in each block. ``scale1``/``scale2`` are the means of all samples of each group.
    """
    n_pairs = sum(
        b.n_permuted_pairs if spec.use_permutation else min(b.n1, _n_rows(b.samples2, b.rows2)) for b in blocks
    )
    stats = PairStatistics(spec.mode, n_pairs, spec.change_fn, spec.m1_domain_fn)
    sums = [0.0, 0.0]
    counts = [0, 0]
    dtype = None
    for block in blocks:
        rows2 = np.arange(len(block.samples2)) if block.rows2 is None else block.rows2
        step = chunk_rows(block.samples2.shape[1])
        for part in iter_pair_slices(len(rows2), step):
            sums[1] = sums[1] + block.samples2[rows2[part]].sum(0, dtype=np.float64)
        counts[1] += len(rows2)
        dtype = block.samples2.dtype
        if spec.use_permutation:
            samples1 = np.concatenate(list(block.chunks1))
            sums[0] = sums[0] + samples1.sum(0, dtype=np.float64)
            counts[0] += len(samples1)
            u = rng.integers(len(samples1), size=block.n_permuted_pairs)
            v = rows2[rng.integers(len(rows2), size=block.n_permuted_pairs)]
            for part in iter_pair_slices(len(u), step):
                stats.add(samples1[u[part]], block.samples2[v[part]])
            continue
        n = min(block.n1, len(rows2))
        partners = rng.permutation(rows2)[:n]
        keep = None
        if block.n1 > n:  # a random subset of group 1 gets partners
            keep = np.zeros(block.n1, dtype=bool)
            keep[rng.choice(block.n1, size=n, replace=False)] = True
        seen = paired = 0
        for chunk in block.chunks1:
            sums[0] = sums[0] + chunk.sum(0, dtype=np.float64)
            counts[0] += len(chunk)
            if keep is not None:
                seen, chunk = seen + len(chunk), chunk[keep[seen : seen + len(chunk)]]
            for part in iter_pair_slices(len(chunk), step):
                rows = chunk[part]
                stats.add(rows, block.samples2[partners[paired : paired + len(rows)]])
                paired += len(rows)
    scale1 = (sums[0] / counts[0]).astype(dtype)
    scale2 = (sums[1] / counts[1]).astype(dtype)
    return stats.result(scale1, scale2, spec.levels)


def _n_rows(samples: np.ndarray, rows: Optional[np.ndarray]) -> int:
    return len(samples) if rows is None else len(rows)


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
        ``sample(cells, batch, n)``: ``n`` scale samples of uniform draws of ``cells``, as an
        iterator of minibatches ``(rows, n_features)``.
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
    rest = counts.sum() - counts
    tested = [k for k in range(len(cells)) if min(counts[k], rest[k]) >= max(min_cells, 1)]
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
    offsets = np.concatenate([np.zeros((len(batches), 1), np.int64), np.cumsum(need, axis=1)], axis=1)
    pools = [
        fill_rows((chunk for j in range(len(cells)) for chunk in sample(cells[j], b, int(need[t, j]))), offsets[t, -1])
        for t, b in enumerate(batches)
    ]

    n_perm = max(1, (spec.M_permutation or 1) // len(batches))
    tables, tested_names = [], []
    for k in track(tested, description="one-vs-all DE"):
        blocks = []
        for t, b in enumerate(batches):
            own = pools[t][offsets[t, k] : offsets[t, k + 1]]
            chunks1 = itertools.chain([own] if len(own) else [], sample(cells[k], b, n_per_batch - len(own)))
            rest = np.concatenate(
                [offsets[t, j] + rng.choice(need[t, j], size=m, replace=False) for j, m in enumerate(plan[k, t]) if m]
            )
            blocks.append(Block(chunks1, n_per_batch, pools[t], rest, n_perm))
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


def fill_rows(chunks: Iterable[np.ndarray], n_rows: int) -> np.ndarray:
    """Stack minibatches of rows into one preallocated ``(n_rows, n_features)`` array."""
    out, filled = None, 0
    for chunk in chunks:
        if out is None:
            out = np.empty((n_rows,) + chunk.shape[1:], dtype=chunk.dtype)
        out[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if filled != n_rows:
        raise ValueError(f"expected {n_rows} rows of samples, got {filled}")
    return out if out is not None else np.zeros((0, 0), np.float32)


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
