"""populate_from_datasets: gene intersection, shared or offset categories, attributes, measurements."""
import copy

import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import CellMeasurement, GeneExpressionDataset


def make(X, **kwargs) -> GeneExpressionDataset:
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, **kwargs)
    return dataset


def two_datasets(sparse_second: bool = False):
    """Dataset 1: genes A B C D, types T/B; dataset 2: genes D B E, types NK/T. Cells are tagged by value."""
    d1 = make(
        np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]),
        labels=[0, 1, 0],
        cell_types=["T", "B"],
        batch_indices=[0, 1, 1],
        gene_names=["A", "B", "C", "D"],
        gene_attributes_dict={"chrom": ["1", "2", "3", "4"]},
        cell_attributes_dict={"donor": ["x", "x", "y"]},
    )
    X2 = np.array([[40, 20, 1], [80, 60, 1]])
    d2 = make(
        sp_sparse.csr_matrix(X2) if sparse_second else X2,
        labels=[0, 1],
        cell_types=["NK", "T"],
        gene_names=["D", "B", "E"],
        gene_attributes_dict={"chrom": ["d", "b", "e"]},
        cell_attributes_dict={"donor": ["z", "z"]},
    )
    return d1, d2


@pytest.mark.parametrize("sparse_second", [False, True])
def test_merge_gives_gene_intersection_and_label_union(sparse_second):
    d1, d2 = two_datasets(sparse_second)
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2])
    assert merged.gene_names.tolist() == ["B", "D"]  # order of the first dataset
    X = merged.X.toarray() if sparse_second else merged.X
    assert sp_sparse.issparse(merged.X) == sparse_second
    np.testing.assert_array_equal(X, [[2, 4], [6, 8], [10, 12], [20, 40], [60, 80]])
    assert merged.cell_types == ["T", "B", "NK"]  # a list right after merging, as in scVI 0.6
    names = np.asarray(merged.cell_types)[merged.labels.ravel()].tolist()
    assert names == ["T", "B", "T", "NK", "T"]
    assert merged.n_labels == 3
    assert merged.batch_indices.ravel().tolist() == [0, 1, 1, 2, 2] and merged.n_batches == 3
    assert merged.chrom.tolist() == ["2", "4"]  # gene attributes of the first dataset win
    assert merged.donor.tolist() == ["x", "x", "y", "z", "z"]
    np.testing.assert_allclose(merged.local_means.ravel()[3:], np.log([60, 140]).mean(), rtol=1e-6)


def test_merge_without_sharing_offsets_labels():
    d1, d2 = two_datasets()
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2], shared_labels=False)
    assert merged.labels.ravel().tolist() == [0, 1, 0, 2, 3]
    assert merged.cell_types == ["T", "B", "NK", "T"]


def test_merge_legacy_example_with_sharing_and_batches():
    d1 = make(np.random.randint(1, 5, size=(5, 10)), gene_names=np.arange(10).astype(str),
              labels=[0, 0, 1, 1, 1], cell_types=["0", "1"])
    d2 = make(np.random.randint(1, 5, size=(7, 3)), gene_names=np.arange(3).astype(str))
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2])
    assert (merged.nb_cells, merged.nb_genes) == (12, 3)
    d2.labels = [0, 0, 0, 1, 1, 1, 1]
    d2.initialize_mapped_attribute("labels", "cell_types", ["0", "2"])
    merged.populate_from_datasets([d1, d2], shared_labels=True)
    assert merged.labels.ravel().tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 2, 2, 2, 2]
    merged.populate_from_datasets([d1, d2], shared_labels=False)
    assert merged.labels.ravel().tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    d1.batch_indices = [0, 0, 0, 1, 1]
    d2.batch_indices = [0, 0, 1, 1, 1, 1, 1]
    merged.populate_from_datasets([d1, d2])
    assert merged.batch_indices.ravel().tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3]


def test_merge_labels_without_names_drops_placeholder_cell_types():
    d1 = make(np.ones((2, 2)), labels=[0, 1], gene_names=["a", "b"])
    d2 = make(np.ones((2, 2)), labels=[1, 0], gene_names=["a", "b"])
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2], shared_labels=False)
    assert merged.labels.ravel().tolist() == [0, 1, 3, 2] and merged.cell_types is None
    with pytest.raises(ValueError, match="Reference mapping cell_types for labels merging is not registered"):
        GeneExpressionDataset().populate_from_datasets([d1, d2], shared_labels=True)


def test_merge_shares_other_attributes_through_a_mapping():
    d1 = make(np.ones((2, 2)), batch_indices=[0, 1], gene_names=["a", "b"])
    d1.initialize_mapped_attribute("batch_indices", "batch_names", np.array(["lab1", "lab2"]))
    d2 = make(np.ones((2, 2)), batch_indices=[0, 1], gene_names=["a", "b"])
    d2.initialize_mapped_attribute("batch_indices", "batch_names", np.array(["lab2", "lab3"]))
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2], mapping_reference_for_sharing={"batch_indices": "batch_names"})
    assert merged.batch_names == ["lab1", "lab2", "lab3"]  # a list right after merging, as in scVI 0.6
    assert np.asarray(merged.batch_names)[merged.batch_indices.ravel()].tolist() == ["lab1", "lab2", "lab2", "lab3"]


def test_merge_measurements_by_column_name():
    data = np.random.randint(1, 5, size=(5, 10))
    gene_names = [f"gene_{i}" for i in range(10)]
    y1 = CellMeasurement("dev", np.ones((5, 5)) * np.arange(5), "dev_names",
                         ["gabou", "achille", "pedro", "oclivio", "gayoso"])
    y2 = CellMeasurement(
        "dev", np.ones((5, 4)) * np.arange(1, 5), "dev_names", ["gabou", "oclivio", "achille", "pedro"]
    )
    d1, d2 = make(data, Ys=[y1], gene_names=gene_names), make(data, Ys=[y2], gene_names=gene_names)

    merged = GeneExpressionDataset()
    merged.populate_from_datasets([copy.deepcopy(d1), copy.deepcopy(d2)])
    assert merged.dev_names.tolist() == ["achille", "gabou", "oclivio", "pedro"]
    assert merged.dev[0].tolist() == [1, 0, 3, 2] and merged.dev[5].tolist() == [3, 1, 2, 4]
    assert merged.cell_measurements_col_mappings == {"dev": "dev_names"}

    union = GeneExpressionDataset()
    union.populate_from_datasets([copy.deepcopy(d1), copy.deepcopy(d2)], cell_measurement_intersection={"dev": False})
    assert union.dev_names.tolist() == ["achille", "gabou", "gayoso", "oclivio", "pedro"]
    assert union.dev[5].tolist() == [3, 1, 0, 2, 4]  # gayoso was not measured in dataset 2
    mask = union.get_batch_mask_cell_measurement("dev")
    assert mask[1].tolist() == [True, True, False, True, True]
    assert mask[0].tolist() == [True, False, True, True, True]  # gabou is all 0 in dataset 1


def test_merge_sparse_measurements():
    y1 = CellMeasurement("adt", sp_sparse.csr_matrix(np.array([[1, 2], [3, 4]])), "adt_names", ["p", "q"])
    y2 = CellMeasurement("adt", sp_sparse.csr_matrix(np.array([[5, 6]])), "adt_names", ["q", "r"])
    d1 = make(np.ones((2, 2)), Ys=[y1], gene_names=["a", "b"])
    d2 = make(np.ones((1, 2)), Ys=[y2], gene_names=["a", "b"])
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2], cell_measurement_intersection={"adt": False})
    assert sp_sparse.issparse(merged.adt)
    np.testing.assert_array_equal(merged.adt.toarray(), [[1, 2, 0], [3, 4, 0], [0, 5, 6]])


def test_merge_errors():
    d1, d2 = two_datasets()
    with pytest.raises(ValueError, match="`gene_datasets_list` is empty"):
        GeneExpressionDataset().populate_from_datasets([])
    no_names = make(np.ones((2, 2)))
    with pytest.raises(ValueError, match="Dataset 1 of `gene_datasets_list` has no gene_names"):
        GeneExpressionDataset().populate_from_datasets([d1, no_names])
    other = make(np.ones((2, 2)), gene_names=["X1", "X2"])
    with pytest.raises(ValueError, match="no gene name in common"):
        GeneExpressionDataset().populate_from_datasets([d1, other])
