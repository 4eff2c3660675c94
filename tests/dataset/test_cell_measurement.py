"""CellMeasurement: paired per-cell data registered, filtered, merged, converted and batched."""
import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import CellMeasurement, GeneExpressionDataset
from scvi.dataset.dataset import CellMeasurement as LegacyPathCellMeasurement


def with_proteins(proteins, names=("CD3", "CD4", "CD8")):
    dataset = GeneExpressionDataset()
    X = np.arange(1, 13).reshape(4, 3)
    measurement = CellMeasurement("protein_expression", proteins, "protein_names", list(names))
    dataset.populate_from_data(X, batch_indices=[0, 0, 1, 1], Ys=[measurement])
    return dataset


def test_same_class_at_legacy_path():
    assert LegacyPathCellMeasurement is CellMeasurement
    measurement = CellMeasurement(name="p", data=np.ones((2, 1)), columns_attr_name="p_names", columns=["a"])
    assert (measurement.name, measurement.columns_attr_name) == ("p", "p_names")


@pytest.mark.parametrize("sparse", [False, True])
def test_measurement_registered_and_filtered_with_cells(sparse):
    proteins = np.arange(12).reshape(4, 3)
    dataset = with_proteins(sp_sparse.csr_matrix(proteins) if sparse else proteins)
    assert dataset.cell_measurements_col_mappings == {"protein_expression": "protein_names"}
    assert "protein_expression" in dataset.cell_attribute_names
    assert dataset.protein_names.tolist() == ["CD3", "CD4", "CD8"]
    dataset.update_cells([3, 1])
    got = dataset.protein_expression.toarray() if sparse else dataset.protein_expression
    np.testing.assert_array_equal(got, proteins[[3, 1]])
    dataset.update_genes([0])  # genes do not touch measurements
    assert dataset.protein_expression.shape == (2, 3)


def test_initialize_cell_measurement_after_populating():
    dataset = with_proteins(np.ones((4, 3)))
    dataset.initialize_cell_measurement(CellMeasurement("spatial", np.arange(8).reshape(4, 2), "axes", ["x", "y"]))
    assert dataset.cell_measurements_col_mappings["spatial"] == "axes" and dataset.axes.tolist() == ["x", "y"]


def test_protected_measurement_name_is_renamed():
    dataset = with_proteins(np.ones((4, 3)))
    dataset.initialize_cell_measurement(CellMeasurement("X", np.ones((4, 1)), "x_names", ["a"]))
    assert "X_cell" in dataset.cell_measurements_col_mappings and dataset.X_cell.shape == (4, 1)


def test_batch_mask_of_measured_columns():
    proteins = np.array([[1, 0, 2], [3, 0, 0], [0, 5, 0], [0, 6, 0]])
    dataset = with_proteins(proteins)
    masks = dataset.get_batch_mask_cell_measurement("protein_expression")
    assert [m.tolist() for m in masks] == [[True, False, True], [False, True, False]]


def test_measurement_in_minibatch_and_anndata():
    proteins = np.arange(12).reshape(4, 3)
    dataset = with_proteins(proteins)
    batch = dataset.collate_fn_builder({"protein_expression": np.float32})([2])
    assert batch.protein_expression.tolist() == [[6.0, 7.0, 8.0]]
    ad = dataset.to_anndata()
    np.testing.assert_array_equal(ad.obsm["protein_expression"], proteins)
    assert ad.uns["protein_names"].tolist() == ["CD3", "CD4", "CD8"]
    assert ad.uns["cell_measurements_col_mappings"] == {"protein_expression": "protein_names"}
