"""Latent-space scores and helpers of scvi.inference.posterior_utils / utils, on hand-made data."""
import numpy as np
import pytest
import torch

from scvi.inference.posterior import unsupervised_clustering_accuracy as reexported
from scvi.inference.posterior_utils import (
    entropy_batch_mixing,
    entropy_from_indices,
    knn_purity,
    nn_overlap,
    plot_imputation,
    proximity_imputation,
    unsupervised_clustering_accuracy,
)
from scvi.inference.utils import louvain_clusters


def blobs(n_per=40, centers=((0, 0), (20, 0), (0, 20)), seed=0):
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])
    return points, np.repeat(np.arange(len(centers)), n_per)


def test_clustering_accuracy_is_invariant_to_cluster_names():
    y = np.array([0, 0, 1, 1, 2, 2])
    accuracy, assignments = unsupervised_clustering_accuracy(y, np.array([2, 2, 0, 0, 1, 1]))
    assert accuracy == 1.0 and assignments.shape == (3, 2)
    assert unsupervised_clustering_accuracy(y, np.array([0, 0, 1, 1, 1, 1]))[0] == pytest.approx(4 / 6)
    assert unsupervised_clustering_accuracy(torch.tensor(y), torch.tensor(y))[0] == 1.0
    assert reexported is unsupervised_clustering_accuracy
    with pytest.raises(ValueError, match="same length"):
        unsupervised_clustering_accuracy(y, y[:3])


def test_entropy_batch_mixing_separated_versus_mixed():
    points, clusters = blobs()
    separated = (clusters == 0).astype(int)  # the batch is one blob: no mixing
    assert entropy_batch_mixing(points, separated, n_neighbors=10, random_state=0) < 0.05
    mixed = np.arange(len(points)) % 2
    score = entropy_batch_mixing(points, mixed, n_neighbors=10, random_state=0)
    assert 0.55 < score <= np.log(2)
    assert score == entropy_batch_mixing(points, mixed, n_neighbors=10, random_state=0)
    with pytest.raises(ValueError, match="two batches"):
        entropy_batch_mixing(points, clusters)


def test_knn_purity_and_nn_overlap():
    points, clusters = blobs()
    assert knn_purity(points, clusters, n_neighbors=10) == 1.0
    shuffled = np.random.default_rng(0).permutation(clusters)
    assert knn_purity(points, shuffled, n_neighbors=10) < 0.6
    spearman, enrichment = nn_overlap(points, points * 3.0, k=5)
    assert spearman == pytest.approx(1.0) and enrichment > 10
    spearman, enrichment = nn_overlap(points, np.random.default_rng(1).normal(size=points.shape), k=5)
    assert spearman < 0.3 and enrichment < 5
    with pytest.raises(ValueError, match="same number"):
        nn_overlap(points, points[:5])


def test_entropy_from_indices():
    assert entropy_from_indices([1, 1, 2, 2]) == pytest.approx(np.log(2))
    assert entropy_from_indices([3, 3, 3]) == 0.0


def test_louvain_recovers_separated_blobs():
    from sklearn.metrics import adjusted_rand_score

    points, clusters = blobs(n_per=30)
    found = louvain_clusters(points, k=10, rands=0)
    assert found.shape == (90,) and found.min() == 0
    # modularity may split a blob, never merge two: every cluster lies within one blob
    assert all(len(np.unique(clusters[found == c])) == 1 for c in np.unique(found))
    assert 3 <= found.max() + 1 <= 6 and adjusted_rand_score(clusters, found) > 0.7
    assert np.array_equal(found, louvain_clusters(points, k=10, rands=0))
    with pytest.raises(ValueError, match="latent"):
        louvain_clusters(np.zeros(5))


def test_proximity_imputation_copies_nearby_expression():
    latent = np.array([[0.0], [1.0], [10.0], [11.0]])
    expression = np.array([[1.0], [1.0], [5.0], [5.0]])
    assert np.allclose(proximity_imputation(latent, expression, np.array([[0.5], [10.5]]), k=2).ravel(), [1, 5])


def test_plot_imputation_writes_png(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    original = rng.poisson(3, size=200).astype(float)
    figure = plot_imputation(original, original + rng.normal(0, 0.5, 200), show_plot=False,
                             title=str(tmp_path / "imputation"))
    assert (tmp_path / "imputation.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(figure)
