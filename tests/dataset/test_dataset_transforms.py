"""normalize, corrupt, raw_counts_properties and dataset versions."""
import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts

SPARSE = pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])


def dense(X):
    return X.toarray() if sp_sparse.issparse(X) else np.asarray(X)


def make(X, sparse=False, **kwargs) -> GeneExpressionDataset:
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(sp_sparse.csr_matrix(X) if sparse else X, **kwargs)
    return dataset


@SPARSE
def test_normalize_divides_each_cell_by_its_mean(sparse):
    dataset = make(np.array([[2, 0, 4], [0, 0, 0], [1, 1, 1]]), sparse)
    dataset.normalize()
    assert "norm_X" in dataset.dataset_versions and sp_sparse.issparse(dataset.norm_X) == sparse
    np.testing.assert_allclose(dense(dataset.norm_X), [[1, 0, 2], [0, 0, 0], [1, 1, 1]])


@SPARSE
def test_raw_counts_properties(sparse):
    X = np.array([[2, 0, 4], [0, 3, 3], [1, 1, 1], [5, 0, 1]])
    dataset = make(X, sparse)
    mean1, mean2, nonz1, nonz2, norm1, norm2 = dataset.raw_counts_properties([0, 1], np.array([2, 3]))
    np.testing.assert_allclose(mean1, [1, 1.5, 3.5])
    np.testing.assert_allclose(mean2, [3, 0.5, 1])
    np.testing.assert_allclose(nonz1, [0.5, 0.5, 1])
    np.testing.assert_allclose(nonz2, [1, 0.5, 1])
    np.testing.assert_allclose(norm1, [0.5, 0.75, 1.75])  # rows [1, 0, 2] and [0, 1.5, 1.5]
    np.testing.assert_allclose(norm2, [1.75, 0.5, 0.75])  # rows [1, 1, 1] and [2.5, 0, 0.5]
    assert all(a.shape == (3,) for a in (mean1, nonz2, norm2))


@SPARSE
@pytest.mark.parametrize("corruption", ["uniform", "binomial"])
def test_corrupt_only_lowers_counts_and_is_reproducible(sparse, corruption):
    X = planted_counts(n_cells=200, n_genes=30, n_de_genes=5, sparse=sparse, random_state=1).X
    dataset = make(X)
    dataset.corrupt(rate=0.5, corruption=corruption, random_state=3)
    corrupted, original = dense(dataset.corrupted_X), dense(dataset.X)
    assert "corrupted_X" in dataset.dataset_versions and sp_sparse.issparse(dataset.corrupted_X) == sparse
    assert (corrupted <= original).all() and (corrupted >= 0).all()
    changed = corrupted != original
    assert changed.any() and np.all(original[changed] > 0)
    again = make(X)
    again.corrupt(rate=0.5, corruption=corruption, random_state=3)
    np.testing.assert_array_equal(dense(again.corrupted_X), corrupted)


def test_corrupt_rates_match_their_definition():
    X = planted_counts(n_cells=400, n_genes=50, n_de_genes=5, mean_library=500, random_state=2).X
    dataset = make(X)
    nonzero = X > 0
    dataset.corrupt(rate=1.0, corruption="uniform", random_state=0)
    zeroed = (dataset.corrupted_X == 0) & nonzero
    assert zeroed.sum() / nonzero.sum() == pytest.approx(0.1, abs=0.01)  # every non-zero times Bernoulli(0.9)
    dataset.corrupt(rate=1.0, corruption="binomial", random_state=0)
    assert dataset.corrupted_X.sum() / X.sum() == pytest.approx(0.2, abs=0.01)  # every count thinned to 20%
    dataset.corrupt(rate=0.0, random_state=0)
    np.testing.assert_array_equal(dataset.corrupted_X, X)


def test_dense_and_sparse_corruption_agree():
    X = planted_counts(n_cells=60, n_genes=20, n_de_genes=5, random_state=4).X
    dense_dataset, sparse_dataset = make(X), make(X, sparse=True)
    for corruption in ("uniform", "binomial"):
        dense_dataset.corrupt(rate=0.3, corruption=corruption, random_state=7)
        sparse_dataset.corrupt(rate=0.3, corruption=corruption, random_state=7)
        np.testing.assert_array_equal(dense(sparse_dataset.corrupted_X), dense_dataset.corrupted_X)


def test_corrupt_uses_numpy_global_state_by_default():
    X = planted_counts(n_cells=30, n_genes=10, n_de_genes=2, random_state=0).X
    results = []
    for _ in range(2):
        np.random.seed(5)
        dataset = make(X)
        dataset.corrupt(rate=0.5)
        results.append(dataset.corrupted_X)
    np.testing.assert_array_equal(*results)


def test_custom_dataset_version_is_filtered_with_x():
    dataset = make(np.arange(1, 13).reshape(4, 3))
    dataset.log_X = np.log1p(dataset.X)
    dataset.register_dataset_version("log_X")
    dataset.update_cells([3, 0])
    dataset.update_genes([2])
    np.testing.assert_allclose(dataset.log_X, np.log1p([[12], [3]]))
