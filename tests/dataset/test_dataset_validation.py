"""Bad input gets a clear error (or warning) naming the problem, and leaves the dataset intact."""
import logging
import warnings

import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import CellMeasurement, GeneExpressionDataset


def small(sparse: bool = False, **kwargs) -> GeneExpressionDataset:
    X = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 5]])
    defaults = dict(
        labels=[0, 1, 1, 0], cell_types=["a", "b"], batch_indices=[0, 0, 1, 1], gene_names=["g0", "g1", "g2"]
    )
    defaults.update(kwargs)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(sp_sparse.csr_matrix(X) if sparse else X, **defaults)
    return dataset


def populate(X, **kwargs):
    GeneExpressionDataset().populate_from_data(X, **kwargs)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    "bad, match",
    [(-1.0, "negative values"), (np.nan, "non-finite"), (np.inf, "non-finite")],
)
def test_bad_counts_are_rejected(sparse, bad, match):
    X = np.ones((3, 2))
    X[1, 1] = bad
    with pytest.raises(ValueError, match=match):
        populate(sp_sparse.csr_matrix(X) if sparse else X)


@pytest.mark.parametrize("sparse", [False, True])
def test_non_integer_counts_warn(sparse):
    X = np.array([[0.5, 1.0], [2.0, 3.0]])
    with pytest.warns(UserWarning, match="non-integer values.*normalised"):
        populate(sp_sparse.csr_matrix(X) if sparse else X)


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.ones(5), ValueError, "2-dimensional"),
        (np.ones((2, 3, 4)), ValueError, "2-dimensional"),
        (np.array([["a", "b"]]), TypeError, "numeric matrix"),
    ],
)
def test_bad_matrix_shape_or_type(X, error, match):
    with pytest.raises(error, match=match):
        populate(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gene_names=["a", "b"]), r"`gene_names` has 2 entries but the data has 3 genes"),
        (dict(labels=[0, 1]), r"`labels` has 2 entries but the data has 4 cells"),
        (dict(batch_indices=[0, 0, 0, 0, 0]), r"`batch_indices` has 5 entries but the data has 4 cells"),
        (dict(cell_attributes_dict={"donor": [1, 2]}), r"`donor` has 2 entries but the data has 4 cells"),
        (dict(gene_attributes_dict={"ids": [1]}), r"`ids` has 1 entries but the data has 3 genes"),
    ],
)
def test_lengths_that_disagree_with_x(kwargs, match):
    with pytest.raises(ValueError, match=match):
        populate(np.ones((4, 3)), **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(labels=[0, 1, 2, 0], cell_types=["a", "b"]), ValueError, "`labels` has value 2 but only 2 `cell_types`"),
        (dict(labels=[0, -1, 0, 0]), ValueError, "`labels` must be non-negative"),
        (dict(batch_indices=[0, 0, -3, 0]), ValueError, "`batch_indices` must be non-negative"),
        (dict(labels=[0, 1.5, 0, 0]), ValueError, "`labels` must contain integers"),
        (dict(batch_indices=[0, np.nan, 0, 0]), ValueError, "`batch_indices` must contain integers"),
        (dict(labels=["x", "y", "x", "y"]), TypeError, "`labels` must be integers.*cell_types"),
    ],
)
def test_labels_and_batches_out_of_range(kwargs, error, match):
    with pytest.raises(error, match=match):
        populate(np.ones((4, 3)), **kwargs)


def test_setters_validate_categories():
    dataset = small()
    with pytest.raises(ValueError, match="`labels` must be non-negative"):
        dataset.labels = [0, -1, 0, 0]
    with pytest.raises(ValueError, match="`batch_indices` has 2 entries"):
        dataset.batch_indices = [0, 1]


def test_mapping_out_of_range():
    dataset = small()
    with pytest.raises(ValueError, match="out of range for cell_types"):
        dataset.initialize_mapped_attribute("labels", "cell_types", ["only one"])


def test_measurement_shape_mismatch():
    dataset = small()
    bad = CellMeasurement("protein_expression", np.ones((4, 2)), "protein_names", ["p0", "p1", "p2"])
    with pytest.raises(ValueError, match="`protein_expression` has shape \\(4, 2\\) but 3 column names"):
        dataset.initialize_cell_measurement(bad)
    with pytest.raises(ValueError, match="`protein_expression` has 3 entries but the data has 4 cells"):
        dataset.initialize_cell_measurement(CellMeasurement("protein_expression", np.ones((3, 1)), "names", ["p"]))


def test_duplicate_gene_names_are_logged_and_made_unique(caplog):
    # logged, not warned (as scVI 0.6): loading a real 10x dataset must not trip `-W error`
    scvi_logger = logging.getLogger("scvi")
    scvi_logger.addHandler(caplog.handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dataset = GeneExpressionDataset()
            dataset.populate_from_data(np.ones((2, 4)), gene_names=["A", "B", "A", "A"])
    finally:
        scvi_logger.removeHandler(caplog.handler)
    assert "1 duplicated gene names (e.g. ['A'])" in caplog.text
    assert dataset.gene_names.tolist() == ["A", "B", "A-1", "A-2"]


@pytest.mark.parametrize("sparse", [False, True])
def test_unknown_genes(sparse):
    dataset = small(sparse)
    with pytest.raises(ValueError, match=r"1 gene\(s\) not found in gene_names: \['nope'\]"):
        dataset.reorder_genes(["g1", "nope"])
    with pytest.raises(ValueError, match="not found in gene_names"):
        dataset.genes_to_index(["g0", "G1"])
    with pytest.raises(ValueError, match="out of range for 3 genes"):
        dataset.genes_to_index([0, 3])
    assert dataset.gene_names.tolist() == ["g0", "g1", "g2"]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    "operation, match",
    [
        (lambda d: d.update_cells([]), "Cell filtering would leave no cell"),
        (lambda d: d.update_cells(np.zeros(4, dtype=bool)), "would leave no cell"),
        (lambda d: d.filter_cells_by_count(100), r"filter_cells_by_count\(min_count=100\) would leave no cell"),
        (lambda d: d.filter_cells_by_attribute([7], on="batch_indices"), "would leave no cell"),
        (lambda d: d.subsample_cells(0), "would keep no cell"),
        (lambda d: d.update_genes([]), "Gene filtering would leave no gene"),
        (lambda d: d.filter_genes_by_count(100), "would leave no gene"),
        (lambda d: d.filter_genes_by_attribute(["zz"]), "would leave no gene"),
        (lambda d: d.subsample_genes(new_n_genes=0), "`new_n_genes` must be at least 1"),
        (lambda d: d.subsample_genes(new_ratio_genes=0.0), r"`new_ratio_genes` must be in \(0, 1\)"),
        (lambda d: d.reorder_genes([], drop_omitted_genes=True), "would leave no gene"),
    ],
)
def test_filters_that_would_empty_the_dataset_raise_and_change_nothing(sparse, operation, match):
    dataset = small(sparse)
    before = dataset.X.toarray() if sparse else dataset.X.copy()
    with pytest.raises(ValueError, match=match):
        operation(dataset)
    after = dataset.X.toarray() if sparse else dataset.X
    np.testing.assert_array_equal(after, before)
    assert dataset.labels.ravel().tolist() == [0, 1, 1, 0] and dataset.gene_names.tolist() == ["g0", "g1", "g2"]


@pytest.mark.parametrize("sparse", [False, True])
def test_gene_filter_leaving_only_empty_cells_raises(sparse):
    X = np.array([[1, 0], [2, 0]])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(sp_sparse.csr_matrix(X) if sparse else X)
    with pytest.raises(ValueError, match="would leave no cell with a non-zero count"):
        dataset.update_genes([1])
    assert dataset.nb_genes == 2 and dataset.nb_cells == 2


def test_bad_indices():
    dataset = small()
    with pytest.raises(ValueError, match="Boolean mask `subset_cells` has length 2 but there are 4 cells"):
        dataset.update_cells([True, False])
    with pytest.raises(ValueError, match="indices out of range for 4 cells"):
        dataset.update_cells([0, 9])
    with pytest.raises(TypeError, match="integer indices or a boolean mask"):
        dataset.update_genes(np.array([0.5]))


def test_unknown_attributes_and_cell_types():
    dataset = small()
    with pytest.raises(ValueError, match="donor is not a registered cell attribute"):
        dataset.filter_cells_by_attribute([1], on="donor")
    with pytest.raises(ValueError, match="ids is not a registered gene attribute"):
        dataset.filter_genes_by_attribute([1], on="ids")
    with pytest.raises(ValueError, match=r"Unknown cell type\(s\) \['c'\]"):
        dataset.filter_cell_types(["c"])
    with pytest.raises(ValueError, match="Unknown cell type"):
        dataset.reorder_cell_types(["b", "zz"])
    with pytest.raises(ValueError, match="No cell types to merge"):
        dataset.merge_cell_types([], "new")
    with pytest.raises(TypeError, match="names \\(str\\) or labels \\(int\\)"):
        dataset.filter_cell_types([0.5])
    with pytest.raises(ValueError, match="needs cell type names"):
        unnamed = GeneExpressionDataset()
        unnamed.populate_from_data(np.ones((2, 2)), labels=[0, 1])
        unnamed.cell_types_to_labels(["a"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(new_n_genes=2, mode="seurat"), "`mode` must be one of 'variance', 'seurat_v2', 'cell_ranger'"),
        (dict(mode="seurat_v3"), "requires `new_n_genes` or `new_ratio_genes`"),
        (dict(mode="variance"), "requires `new_n_genes` or `new_ratio_genes`"),
    ],
)
def test_subsample_genes_bad_mode(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small().subsample_genes(**kwargs)


def test_bad_corruption_and_subsample_size():
    dataset = small()
    with pytest.raises(ValueError, match="`corruption` must be one of 'uniform', 'binomial'; got 'gauss'"):
        dataset.corrupt(corruption="gauss")
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\]"):
        dataset.corrupt(rate=2)
    with pytest.raises(TypeError, match="`size` must be an int"):
        dataset.subsample_cells("half")


def test_per_batch_lists_need_same_genes():
    with pytest.raises(ValueError, match="same number of genes"):
        GeneExpressionDataset().populate_from_per_batch_list([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="`Xs` is empty"):
        GeneExpressionDataset().populate_from_per_label_list([])
    with pytest.raises(ValueError, match=r"shape \(n_batches, n_cells, n_genes\)"):
        GeneExpressionDataset().populate_from_per_batch_array(np.ones((2, 3)))


def test_cell_measurement_lookup():
    with pytest.raises(ValueError, match="'protein_expression' is not a cell measurement"):
        small().get_batch_mask_cell_measurement("protein_expression")
