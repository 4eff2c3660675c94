"""Populating a GeneExpressionDataset, its registries, properties and library size prior."""
import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import GeneExpressionDataset
from scvi.dataset.dataset import (
    check_nonnegative_integers,
    compute_library_size,
    concatenate_arrays,
    remap_categories,
)


def populated(X, **kwargs) -> GeneExpressionDataset:
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, **kwargs)
    return dataset


def test_unpopulated_dataset_has_legacy_attributes():
    dataset = GeneExpressionDataset()
    assert dataset.X is None and dataset.gene_names is None and dataset.cell_types is None
    assert dataset.dataset_versions == set() and dataset.cell_attribute_names == set()
    assert dataset.protected_attributes == ["X", "_X"]
    assert "unpopulated" in repr(dataset)


@pytest.mark.parametrize("sparse", [False, True])
def test_populate_from_data_defaults(sparse):
    X = np.arange(1, 31, dtype=np.int64).reshape(10, 3)
    dataset = populated(sp_sparse.csr_matrix(X) if sparse else X)
    assert (dataset.nb_cells, dataset.nb_genes, len(dataset)) == (10, 3, 10)
    assert sp_sparse.isspmatrix_csr(dataset.X) == sparse
    assert dataset.X.dtype == np.float32
    np.testing.assert_array_equal(dataset.X.toarray() if sparse else dataset.X, X)
    assert dataset.batch_indices.tolist() == [[0]] * 10 and dataset.labels.tolist() == [[0]] * 10
    assert dataset.batch_indices.dtype == np.int64
    assert (dataset.n_batches, dataset.n_labels) == (1, 1)
    assert dataset.cell_types.tolist() == ["undefined"]
    assert dataset.cell_attribute_names == {"batch_indices", "labels", "local_means", "local_vars"}
    assert dataset.cell_categorical_attribute_names == {"batch_indices", "labels"}
    assert dataset.attribute_mappings["labels"] == ["cell_types"]
    assert dataset[7] == 7


def test_populate_with_labels_but_no_names_keeps_cell_types_none():
    dataset = populated(np.ones((3, 2)), labels=[1, 0, 1])
    assert dataset.cell_types is None and dataset.n_labels == 2


def test_populate_remaps_categories_and_drops_unused_cell_types():
    dataset = populated(
        np.ones((4, 2)), labels=[3, 3, 7, 3], batch_indices=[5, 2, 2, 5], cell_types=[f"t{i}" for i in range(8)]
    )
    assert dataset.labels.ravel().tolist() == [0, 0, 1, 0]
    assert dataset.cell_types.tolist() == ["t3", "t7"]
    assert dataset.batch_indices.ravel().tolist() == [1, 0, 0, 1]
    assert (dataset.n_labels, dataset.n_batches) == (2, 2)


def test_populate_without_remap_keeps_values():
    dataset = populated(np.ones((3, 2)), labels=[0, 2, 2], cell_types=["a", "b", "c"], remap_attributes=False)
    assert dataset.labels.ravel().tolist() == [0, 2, 2]
    assert dataset.cell_types.tolist() == ["a", "b", "c"]


def test_cell_types_are_wide_enough_for_in_place_edits():
    dataset = populated(np.ones((2, 2)), labels=[0, 1], cell_types=["a", "b"])
    dataset.cell_types[0] = "a much longer cell type name"
    assert dataset.cell_types[0] == "a much longer cell type name"


def test_extra_cell_and_gene_attributes_are_registered():
    dataset = populated(
        np.ones((3, 2)),
        gene_names=["g0", "g1"],
        cell_attributes_dict={"barcode": ["a", "b", "c"]},
        gene_attributes_dict={"gene_ids": ["E0", "E1"]},
    )
    assert dataset.barcode.tolist() == ["a", "b", "c"] and "barcode" in dataset.cell_attribute_names
    assert dataset.gene_ids.tolist() == ["E0", "E1"] and "gene_ids" in dataset.gene_attribute_names
    assert "barcode" not in dataset.cell_categorical_attribute_names


def test_protected_and_clashing_attribute_names_get_a_suffix():
    dataset = populated(np.ones((2, 2)), gene_names=["a", "b"])
    dataset.initialize_cell_attribute("X", [1, 2])
    dataset.initialize_cell_attribute("gene_names", [1, 2])
    dataset.initialize_gene_attribute("labels", [3, 4])
    assert dataset.X_cell.tolist() == [1, 2] and dataset.gene_names_cell.tolist() == [1, 2]
    assert dataset.labels_gene.tolist() == [3, 4]
    assert dataset.X.shape == (2, 2)


def test_repopulating_forgets_previous_attributes():
    dataset = populated(np.ones((3, 2)), cell_attributes_dict={"old": [1, 2, 3]})
    dataset.populate_from_data(np.ones((5, 2)))
    assert "old" not in dataset.cell_attribute_names and not hasattr(dataset, "old")
    dataset.update_cells([0, 1])  # would fail on a stale 3-cell attribute
    assert dataset.nb_cells == 2


def test_populate_from_per_batch_list():
    Xs = [np.full((3, 4), 1.0), np.full((2, 4), 2.0), sp_sparse.csr_matrix(np.full((1, 4), 3.0))]
    dataset = GeneExpressionDataset()
    dataset.populate_from_per_batch_list(Xs, labels_per_batch=[[0, 1, 1], [1, 0], [2]], cell_types=["a", "b", "c"])
    assert sp_sparse.issparse(dataset.X)
    assert dataset.batch_indices.ravel().tolist() == [0, 0, 0, 1, 1, 2]
    assert dataset.labels.ravel().tolist() == [0, 1, 1, 1, 0, 2]
    assert np.asarray(dataset.X.sum(axis=1)).ravel().tolist() == [4, 4, 4, 8, 8, 12]
    assert dataset.n_batches == 3


def test_populate_from_per_batch_list_accepts_a_3d_array_like_legacy_synthetic():
    data = np.ones((2, 5, 3))
    labels = np.zeros((2, 5, 1), dtype=int)
    labels[1] = 1
    dataset = GeneExpressionDataset()
    dataset.populate_from_per_batch_list(data, labels_per_batch=labels, cell_types=["u0", "u1"])
    assert dataset.nb_cells == 10 and dataset.labels.ravel().tolist() == [0] * 5 + [1] * 5


def test_populate_from_per_label_list():
    dataset = GeneExpressionDataset()
    dataset.populate_from_per_label_list(
        [np.ones((2, 3)), np.ones((3, 3))], batch_indices_per_label=[[0, 1], [1, 1, 0]], gene_names=list("abc")
    )
    assert dataset.labels.ravel().tolist() == [0, 0, 1, 1, 1]
    assert dataset.batch_indices.ravel().tolist() == [0, 1, 1, 1, 0]
    assert dataset.gene_names.tolist() == ["a", "b", "c"]


def test_populate_from_per_batch_array():
    X = np.stack([np.full((4, 3), 1.0), np.full((4, 3), 5.0)])
    dataset = GeneExpressionDataset()
    dataset.populate_from_per_batch_array(X, labels_per_batch=np.array([[0, 0, 1, 1], [1, 1, 1, 0]]))
    assert dataset.batch_indices.ravel().tolist() == [0] * 4 + [1] * 4
    assert dataset.labels.ravel().tolist() == [0, 0, 1, 1, 1, 1, 1, 0]
    assert dataset.X[5].tolist() == [5.0, 5.0, 5.0]


LN2 = np.log(2.0)


@pytest.mark.parametrize("sparse", [False, True])
def test_library_size_is_per_batch_mean_and_variance_of_log_counts(sparse):
    # batch 0: totals 2 and 8 (log mean 2 ln2, var ln2^2); batch 1: totals 4, 4, 4 (mean 2 ln2, var 0)
    X = np.array([[1, 1], [1, 3], [6, 2], [2, 2], [0, 4]])
    dataset = populated(sp_sparse.csr_matrix(X) if sparse else X, batch_indices=[0, 1, 0, 1, 1])
    np.testing.assert_allclose(dataset.local_means.ravel(), [2 * LN2] * 5, rtol=1e-6)
    np.testing.assert_allclose(dataset.local_vars.ravel(), [LN2**2, 0, LN2**2, 0, 0], atol=1e-6)
    assert dataset.local_means.shape == (5, 1) and dataset.local_means.dtype == np.float32


def test_library_size_is_recomputed_when_cells_or_genes_change():
    X = np.array([[1, 1], [7, 1], [5, 5]])
    dataset = populated(X, batch_indices=[0, 0, 1])
    np.testing.assert_allclose(dataset.local_means.ravel()[2], np.log(10), rtol=1e-6)
    dataset.update_cells([0, 1])  # batch 0 only: totals 2 and 8
    np.testing.assert_allclose(dataset.local_means.ravel(), [2 * LN2] * 2, rtol=1e-6)
    np.testing.assert_allclose(dataset.local_vars.ravel(), [LN2**2] * 2, rtol=1e-5)
    dataset.update_genes([0])  # totals 1 and 7
    np.testing.assert_allclose(dataset.local_means.ravel(), [np.log(7) / 2] * 2, rtol=1e-6)


def test_setting_x_validates_and_recomputes_library_size():
    dataset = populated(np.ones((2, 3)))
    dataset.X = np.array([[1, 1, 0], [4, 2, 2]])
    np.testing.assert_allclose(dataset.local_means.ravel(), [2 * LN2] * 2, rtol=1e-6)
    with pytest.warns(UserWarning, match="non-integer"):
        dataset.X = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="has 4 cells but the dataset has 2"):
        dataset.X = np.ones((4, 3))


def test_numeric_strings_are_accepted_as_categories():
    dataset = populated(np.ones((3, 2)), labels=np.array(["1", "0", "1"]), batch_indices=[2.0, 2.0, 0.0])
    assert dataset.labels.ravel().tolist() == [1, 0, 1] and dataset.batch_indices.ravel().tolist() == [1, 1, 0]


def test_labels_and_batch_setters_update_counts():
    dataset = populated(np.ones((4, 2)))
    dataset.labels = [0, 1, 1, 2]
    dataset.batch_indices = np.array([[1], [1], [0], [0]])
    assert (dataset.n_labels, dataset.n_batches) == (3, 2)
    assert dataset.labels.shape == (4, 1)


def test_remap_categories_legacy_behaviour():
    new, n = remap_categories(np.array([[5], [2], [5]]))
    assert new.ravel().tolist() == [1, 0, 1] and n == 2
    new, n, mappings = remap_categories([2, 0, 2], mappings_dict={"names": ["a", "b", "c"]})
    assert new.tolist() == [1, 0, 1] and mappings["names"].tolist() == ["a", "c"]
    new, _ = remap_categories([0, 1, 2], mapping_from=[0, 1, 2], mapping_to=[2, 0, 1])
    assert new.tolist() == [2, 0, 1]
    strings, n = remap_categories(np.array(["b", "a", "b"]))
    assert strings.tolist() == [1, 0, 1] and n == 2
    with pytest.raises(ValueError, match="mapping_from greater than the number of categories"):
        remap_categories([0, 1, 2], mapping_from=[0, 1], mapping_to=[0, 1])
    with pytest.raises(ValueError, match="Length mismatch"):
        remap_categories([0, 1], mapping_from=[0, 1], mapping_to=[0])


def test_module_level_helpers():
    mean, var = compute_library_size(np.array([[np.e, 0.0], [np.e**3, 0.0]]))
    assert mean.shape == (1, 1) and mean[0, 0] == pytest.approx(2) and var[0, 0] == pytest.approx(1)
    stacked = concatenate_arrays([np.ones((1, 2)), sp_sparse.csr_matrix(np.zeros((2, 2)))])
    assert sp_sparse.issparse(stacked) and stacked.shape == (3, 2)
    assert isinstance(concatenate_arrays([np.ones((1, 2)), np.ones((1, 2))]), np.ndarray)
    assert check_nonnegative_integers(np.array([[0, 3]]))
    assert not check_nonnegative_integers(np.array([[0.5, 3]]))
    assert not check_nonnegative_integers(sp_sparse.csr_matrix(np.array([[-1.0, 3]])))


def test_repr_lists_registries():
    dataset = populated(np.ones((2, 2)), gene_names=["a", "b"])
    text = repr(dataset)
    assert "2 x 2" in text and "gene_attribute_names: 'gene_names'" in text
