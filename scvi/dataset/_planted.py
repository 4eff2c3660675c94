"""Deterministic count matrices with planted structure, for tests, benchmarks and examples.

Unlike the legacy ``SyntheticDataset`` classes (kept in :mod:`scvi.dataset.synthetic`), this
factory returns the ground truth it planted: cluster labels, batches, the log fold-change of each
gene in each cluster, and the true normalised expression.
"""
from typing import NamedTuple, Optional

import numpy as np
import scipy.sparse as sp_sparse


class PlantedCounts(NamedTuple):
    """Counts and the truth they were drawn from.

    Attributes
    ----------
    X
        Counts, shape ``(n_cells, n_genes)``, float32 (dense or CSR).
    labels
        Cluster of each cell, shape ``(n_cells,)``, int64.
    batch_indices
        Batch of each cell, shape ``(n_cells,)``, int64.
    lfc
        Planted natural-log fold change of each cluster against the base profile,
        shape ``(n_clusters, n_genes)``; zero for genes that are not DE in that cluster.
    scale
        True normalised expression of each cell (rows sum to 1), shape ``(n_cells, n_genes)``.
    library
        Expected library size of each cell, shape ``(n_cells,)``.
    gene_names
        ``"gene_0"``, ``"gene_1"``, …
    cell_types
        ``"type_0"``, ``"type_1"``, …
    """

    X: np.ndarray
    labels: np.ndarray
    batch_indices: np.ndarray
    lfc: np.ndarray
    scale: np.ndarray
    library: np.ndarray
    gene_names: np.ndarray
    cell_types: np.ndarray


def planted_counts(
    n_cells: int = 600,
    n_genes: int = 100,
    n_clusters: int = 3,
    n_batches: int = 1,
    n_de_genes: int = 10,
    lfc_scale: float = 2.0,
    batch_effect: float = 0.0,
    mean_library: float = 2000.0,
    theta: float = 5.0,
    zero_inflation: float = 0.0,
    sparse: bool = False,
    random_state: Optional[int] = 0,
) -> PlantedCounts:
    """Draw negative-binomial counts from clusters with planted differentially expressed genes.

    Each cluster up- or down-regulates ``n_de_genes`` genes (disjoint blocks, half up, half down,
    |LFC| between ``lfc_scale / 2`` and ``lfc_scale``); the remaining genes are null.
    Batches multiply each gene by ``exp(batch_effect * N(0, 1))``.

    Parameters
    ----------
    n_cells, n_genes, n_clusters, n_batches
        Sizes. Cells are assigned to clusters and batches round-robin, then shuffled.
    n_de_genes
        DE genes per cluster; ``n_clusters * n_de_genes`` must not exceed ``n_genes``.
    lfc_scale
        Largest absolute natural-log fold change.
    batch_effect
        Standard deviation of the per-gene log batch effect.
    mean_library
        Mean total count per cell.
    theta
        Inverse dispersion of the negative binomial.
    zero_inflation
        Probability that an entry is replaced by a zero.
    sparse
        Return ``X`` as ``scipy.sparse.csr_matrix``.
    random_state
        Seed of the generator.

    Returns
    -------
    PlantedCounts
    """
    if n_clusters * n_de_genes > n_genes:
        raise ValueError("n_clusters * n_de_genes must not exceed n_genes")
    rng = np.random.default_rng(random_state)
    labels = rng.permutation(np.arange(n_cells) % n_clusters).astype(np.int64)
    batch_indices = rng.permutation(np.arange(n_cells) % max(n_batches, 1)).astype(np.int64)

    base = np.log(rng.gamma(shape=1.0, scale=1.0, size=n_genes) + 0.05)
    lfc = np.zeros((n_clusters, n_genes))
    for k in range(n_clusters):
        block = np.arange(k * n_de_genes, (k + 1) * n_de_genes)
        magnitude = rng.uniform(lfc_scale / 2, lfc_scale, size=n_de_genes)
        sign = np.where(np.arange(n_de_genes) % 2 == 0, 1.0, -1.0)
        lfc[k, block] = sign * magnitude
    batch_shift = batch_effect * rng.standard_normal((max(n_batches, 1), n_genes))

    log_expr = base[None, :] + lfc[labels] + batch_shift[batch_indices]
    scale = np.exp(log_expr)
    scale /= scale.sum(axis=1, keepdims=True)
    library = mean_library * rng.lognormal(mean=0.0, sigma=0.3, size=n_cells)
    mu = scale * library[:, None]
    # Gamma-Poisson mixture == negative binomial with mean mu and inverse dispersion theta.
    counts = rng.poisson(rng.gamma(shape=theta, scale=mu / theta)).astype(np.float32)
    if zero_inflation > 0:
        counts[rng.random(counts.shape) < zero_inflation] = 0
    X = sp_sparse.csr_matrix(counts) if sparse else counts
    return PlantedCounts(
        X=X,
        labels=labels,
        batch_indices=batch_indices,
        lfc=lfc,
        scale=scale,
        library=library,
        gene_names=np.array([f"gene_{i}" for i in range(n_genes)]),
        cell_types=np.array([f"type_{k}" for k in range(n_clusters)]),
    )
