"""Graph clustering of a latent space (``louvain_clusters``), without igraph/leidenalg.

A symmetric k-nearest-neighbour graph is partitioned by the Louvain method (local moving of
nodes to the neighbouring community with the largest modularity gain, then aggregation of
communities into nodes, until modularity stops improving), written here with numpy/scipy.
"""
import logging

import numpy as np
import scipy.sparse as sp_sparse

from scvi._utils import check_random_state

logger = logging.getLogger(__name__)


def _local_moving(adjacency: sp_sparse.csr_matrix, rng: np.random.Generator) -> np.ndarray:
    """One Louvain level: move nodes between communities while modularity increases."""
    n = adjacency.shape[0]
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    two_m = degree.sum()
    community = np.arange(n)
    total = degree.copy()  # sum of degrees in each community
    indptr, neighbours, weights = adjacency.indptr, adjacency.indices, adjacency.data
    moved = True
    while moved:
        moved = False
        for node in rng.permutation(n):
            start, stop = indptr[node], indptr[node + 1]
            others = neighbours[start:stop] != node
            neighbour_comms = community[neighbours[start:stop][others]]
            links = weights[start:stop][others]
            current = community[node]
            total[current] -= degree[node]
            candidates, inverse = np.unique(np.append(neighbour_comms, current), return_inverse=True)
            link_to = np.bincount(inverse[:-1], weights=links, minlength=len(candidates))
            gain = link_to - total[candidates] * degree[node] / two_m
            best = candidates[np.argmax(gain)]
            if gain[np.argmax(gain)] <= gain[inverse[-1]] + 1e-12:
                best = current
            total[best] += degree[node]
            if best != current:
                community[node] = best
                moved = True
    return np.unique(community, return_inverse=True)[1]


def louvain_clusters(latent, k=10, rands=0) -> np.ndarray:
    """Clusters of a k-nearest-neighbour graph of ``latent`` maximising modularity (Louvain).

    Parameters
    ----------
    latent
        Shape ``(n_cells, n_latent)``.
    k
        Neighbours per cell.
    rands
        Seed of the node order.

    Returns
    -------
    numpy.ndarray
        Cluster of each cell, shape ``(n_cells,)``, numbered from 0.
    """
    from sklearn.neighbors import kneighbors_graph

    latent = np.asarray(latent)
    if latent.ndim != 2 or len(latent) < 2:
        raise ValueError(f"`latent` must be a 2D array with at least 2 cells; got shape {latent.shape}")
    rng = check_random_state(rands)
    graph = kneighbors_graph(latent, min(k, len(latent) - 1), include_self=False)
    adjacency = ((graph + graph.T) > 0).astype(float).tocsr()
    membership = np.arange(len(latent))
    while True:
        communities = _local_moving(adjacency, rng)
        if communities.max() + 1 == adjacency.shape[0]:
            break
        membership = communities[membership]
        assign = sp_sparse.csr_matrix(
            (np.ones(len(communities)), (np.arange(len(communities)), communities)),
            shape=(len(communities), communities.max() + 1),
        )
        adjacency = (assign.T @ adjacency @ assign).tocsr()
    return np.unique(membership, return_inverse=True)[1]
