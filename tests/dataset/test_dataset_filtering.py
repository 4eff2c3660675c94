"""Filtering keeps every registered attribute, measurement and dataset version consistent with X."""
import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import CellMeasurement, GeneExpressionDataset

SPARSE = pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])


def dense(X) -> np.ndarray:
    return X.toarray() if sp_sparse.issparse(X) else np.asarray(X)


def tagged(sparse: bool) -> GeneExpressionDataset:
    """6 cells x 4 genes where X[i, j] = 10 * (i + 1) + j, so every row / column is recognisable."""
    X = 10 * (np.arange(6)[:, None] + 1) + np.arange(4)[None, :]
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        sp_sparse.csr_matrix(X) if sparse else X,
        Ys=[CellMeasurement("protein_expression", np.arange(12).reshape(6, 2), "protein_names", ["CD4", "CD8"])],
        labels=[0, 1, 2, 0, 1, 2],
        cell_types=["a", "b", "c"],
        batch_indices=[0, 0, 0, 1, 1, 1],
        gene_names=["g0", "g1", "g2", "g3"],
        cell_attributes_dict={"barcode": [f"cell{i}" for i in range(6)]},
        gene_attributes_dict={"gene_ids": [f"E{j}" for j in range(4)]},
    )
    return dataset


def assert_consistent(dataset, cells, genes):
    """Every attribute describes the cells ``cells`` and genes ``genes`` of the tagged dataset."""
    cells, genes = np.asarray(cells), np.asarray(genes)
    expected = 10 * (cells[:, None] + 1) + genes[None, :]
    np.testing.assert_array_equal(dense(dataset.X), expected)
    assert dataset.barcode.tolist() == [f"cell{i}" for i in cells]
    np.testing.assert_array_equal(dataset.protein_expression, np.arange(12).reshape(6, 2)[cells])
    assert dataset.gene_names.tolist() == [f"g{j}" for j in genes]
    assert dataset.gene_ids.tolist() == [f"E{j}" for j in genes]
    names = np.asarray(["a", "b", "c"])[cells % 3]
    assert dataset.cell_types[dataset.labels.ravel()].tolist() == names.tolist()
    assert dataset.n_labels == len(set(names)) == len(dataset.cell_types)
    assert len(dataset.local_means) == len(cells) == dataset.nb_cells


@SPARSE
def test_update_cells_with_indices_and_mask(sparse):
    dataset = tagged(sparse)
    dataset.normalize()
    dataset.corrupt(rate=0.0)
    dataset.update_cells(np.array([4, 1, 5]))
    assert_consistent(dataset, [4, 1, 5], range(4))
    np.testing.assert_array_equal(dense(dataset.corrupted_X), dense(dataset.X))
    np.testing.assert_allclose(dense(dataset.norm_X).mean(axis=1), 1, rtol=1e-6)
    assert sp_sparse.issparse(dataset.X) == sparse
    dataset.update_cells(np.array([True, False, True]))
    assert_consistent(dataset, [4, 5], range(4))


@SPARSE
def test_update_cells_accepts_a_numpy_matrix_mask(sparse):
    dataset = tagged(sparse)
    mask = dataset.X.sum(axis=1) > 100 if sparse else np.asmatrix(dense(dataset.X).sum(axis=1) > 100).T
    dataset.update_cells(mask)  # legacy code builds masks from sparse sums (np.matrix)
    assert_consistent(dataset, [2, 3, 4, 5], range(4))


@SPARSE
def test_update_genes_keeps_gene_attributes_and_versions(sparse):
    dataset = tagged(sparse)
    dataset.normalize()
    dataset.update_genes(np.array([3, 1]))
    assert_consistent(dataset, range(6), [3, 1])
    assert dense(dataset.norm_X).shape == (6, 2)


@SPARSE
def test_update_genes_removes_cells_left_empty(sparse):
    X = np.array([[1, 0], [0, 2], [3, 4]])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(sp_sparse.csr_matrix(X) if sparse else X, labels=[0, 1, 2], cell_types=list("abc"))
    dataset.update_genes([True, False])
    assert dense(dataset.X).ravel().tolist() == [1, 3]
    assert dataset.cell_types.tolist() == ["a", "c"] and dataset.labels.ravel().tolist() == [0, 1]


@SPARSE
def test_filter_cells_by_count_and_subsample_cells(sparse):
    dataset = tagged(sparse)
    dataset.filter_cells_by_count(4 * 30 + 6)  # row sums are 40 i + 46: keeps cells 2..5
    assert_consistent(dataset, [2, 3, 4, 5], range(4))
    dataset.subsample_cells(size=0.5)  # the two largest totals, largest first
    assert_consistent(dataset, [5, 4], range(4))
    dataset.subsample_cells(size=1)
    assert_consistent(dataset, [5], range(4))


def test_subsample_cells_legacy_example():
    data = np.arange(1, 6)[:, None] * np.ones(7)[None, :]
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(data)
    dataset.subsample_cells()
    assert dataset.nb_cells == 5
    dataset.subsample_cells(size=0.8)
    assert dataset.X.tolist() == (np.arange(5, 1, -1)[:, None] * np.ones(7)[None, :]).tolist()


@SPARSE
def test_filter_genes_by_count_per_batch(sparse):
    # gene 0: counts only in batch 0; gene 1: 1 count in each batch; gene 2: 2 counts in each batch
    X = np.array([[3, 1, 2, 1], [0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(sp_sparse.csr_matrix(X) if sparse else X, batch_indices=[0, 0, 1, 1],
                               gene_names=["g0", "g1", "g2", "g3"])
    dataset.filter_genes_by_count(2, per_batch=True)
    assert dataset.gene_names.tolist() == ["g2", "g3"]
    assert sp_sparse.issparse(dataset.X) == sparse


def test_filter_genes_by_count_whole_dataset():
    X = np.array([[3, 1, 2], [0, 0, 2]])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, gene_names=["g0", "g1", "g2"])
    dataset.filter_genes_by_count(3)
    assert dataset.gene_names.tolist() == ["g0", "g2"]


@SPARSE
def test_filter_cells_and_genes_by_attribute(sparse):
    dataset = tagged(sparse)
    dataset.filter_cells_by_attribute(["cell1", "cell4", "cell5"], on="barcode")
    assert_consistent(dataset, [1, 4, 5], range(4))
    dataset.filter_cells_by_attribute([1], on="batch_indices")
    assert_consistent(dataset, [4, 5], range(4))
    dataset.filter_genes_by_attribute(["E2", "E0"], on="gene_ids")
    assert_consistent(dataset, [4, 5], [0, 2])
    dataset.filter_genes_by_attribute(["g2"])
    assert_consistent(dataset, [4, 5], [2])


@SPARSE
def test_filter_cell_types_remaps_labels_and_names(sparse):
    dataset = tagged(sparse)
    dataset.filter_cell_types(["c", "b"])
    assert_consistent(dataset, [1, 2, 4, 5], range(4))
    assert dataset.cell_types.tolist() == ["b", "c"] and dataset.labels.ravel().tolist() == [0, 1, 0, 1]
    dataset.filter_cell_types([1])
    assert dataset.cell_types.tolist() == ["c"] and dataset.n_labels == 1
    assert_consistent(dataset, [2, 5], range(4))


def test_losing_a_batch_remaps_batches_and_library_size():
    X = np.array([[1, 1], [7, 1], [5, 5], [10, 10]])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, batch_indices=[0, 0, 1, 2])
    dataset.update_cells([2, 3])
    assert dataset.batch_indices.ravel().tolist() == [0, 1] and dataset.n_batches == 2
    np.testing.assert_allclose(dataset.local_means.ravel(), np.log([10, 20]), rtol=1e-6)
    np.testing.assert_allclose(dataset.local_vars.ravel(), [0, 0], atol=1e-7)


@SPARSE
def test_reorder_genes(sparse):
    dataset = tagged(sparse)
    dataset.reorder_genes(["g2", "g0"])
    assert_consistent(dataset, range(6), [2, 0, 1, 3])
    dataset.reorder_genes(np.array(["g3"]), drop_omitted_genes=True)
    assert_consistent(dataset, range(6), [3])
    log_totals = np.log(10 * np.arange(1, 7) + 3)
    np.testing.assert_allclose(dataset.local_means.ravel()[:3], log_totals[:3].mean(), rtol=1e-6)
    np.testing.assert_allclose(dataset.local_means.ravel()[3:], log_totals[3:].mean(), rtol=1e-6)


def test_genes_to_index_and_lower_case_names():
    dataset = tagged(False)
    assert dataset.genes_to_index(["g3", "g1"]).tolist() == [3, 1]
    assert dataset.genes_to_index(["E2"], on="gene_ids").tolist() == [2]
    assert dataset.genes_to_index(np.array([2, -1])).tolist() == [2, 3]
    dataset.gene_names = np.char.upper(dataset.gene_names)
    dataset.make_gene_names_lower()
    assert dataset.gene_names.tolist() == ["g0", "g1", "g2", "g3"]


def test_merge_and_map_cell_types_legacy_examples():
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(np.ones((8, 3)), labels=[0, 0, 1, 2, 2, 1, 0, 1], cell_types=["0", "1", "2"])
    dataset.merge_cell_types(["0", "1"], new_cell_type_name="0 and 1")
    assert dataset.labels.tolist() == [[3], [3], [3], [2], [2], [3], [3], [3]]
    assert dataset.cell_types.tolist() == ["0#merged", "1#merged", "2", "0 and 1"]

    dataset.populate_from_data(np.ones((7, 3)), labels=[0, 0, 4, 4, 2, 3, 5], cell_types=list("012345"))
    dataset.map_cell_types({("0", "2"): "6", ("3", "4"): "7"})
    dataset.remap_categorical_attributes()
    assert dataset.cell_types.tolist() == ["5", "6", "7"]
    assert dataset.labels.ravel().tolist() == [1, 1, 2, 2, 1, 2, 0]
    dataset.map_cell_types({"5": "five", 1: "six"})  # single names or labels as keys
    dataset.remap_categorical_attributes()
    assert dataset.cell_types.tolist() == ["7", "five", "six"]
    assert dataset.cell_types[dataset.labels.ravel()].tolist() == ["six"] * 2 + ["7"] * 2 + ["six", "7", "five"]


def test_reorder_cell_types_legacy_example():
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(np.ones((7, 3)), labels=[0, 0, 0, 1, 1, 2, 2], cell_types=["0", "1", "2"])
    dataset.reorder_cell_types(["1", "0"])
    assert dataset.cell_types.tolist() == ["1", "0", "2"]
    assert dataset.labels.ravel().tolist() == [1, 1, 1, 0, 0, 2, 2]


def test_subsample_genes_legacy_variance_example():
    data = np.ones((25, 100)) * 100
    data[0, :] = 1
    data *= np.arange(0, 100)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(data, gene_names=[f"gene_{i}" for i in range(100)])
    dataset.subsample_genes(new_ratio_genes=0.4, mode="variance")
    assert dataset.gene_names.shape == (40,)
    dataset.subsample_genes(new_n_genes=25, mode="variance")
    assert dataset.gene_names.shape == (25,) and dataset.gene_names[0] == "gene_99"
    dataset.subsample_genes(subset_genes=[1, 6, 7])
    assert dataset.gene_names.tolist() == ["gene_98", "gene_93", "gene_92"]


def test_subsample_genes_no_op_when_asking_for_all_genes():
    dataset = tagged(False)
    dataset.subsample_genes(new_n_genes=10)
    dataset.subsample_genes(new_ratio_genes=1.0)
    assert dataset.nb_genes == 4


@pytest.mark.parametrize("batch_correction, n_batches, expect_batches", [(True, 2, True), (False, 2, False)])
def test_subsample_genes_calls_gene_selection(monkeypatch, batch_correction, n_batches, expect_batches):
    calls = {}

    def fake_selection(X, n_top_genes, mode, batch_indices, **kwargs):
        calls.update(n_top_genes=n_top_genes, mode=mode, batch_indices=batch_indices, kwargs=kwargs)
        return np.array([3, 0])

    monkeypatch.setattr("scvi.dataset._gene_selection.highly_variable_genes_indices", fake_selection)
    dataset = tagged(sparse=True)
    dataset.subsample_genes(new_ratio_genes=0.5, mode="cell_ranger", batch_correction=batch_correction, n_bins=5)
    assert calls["n_top_genes"] == 2 and calls["mode"] == "cell_ranger" and calls["kwargs"] == {"n_bins": 5}
    if expect_batches:
        assert calls["batch_indices"].tolist() == [0, 0, 0, 1, 1, 1]
    else:
        assert calls["batch_indices"] is None
    assert_consistent(dataset, range(6), [3, 0])
    assert sp_sparse.issparse(dataset.X)


@SPARSE
@pytest.mark.parametrize("mode", ["variance", "seurat_v2", "cell_ranger", "seurat_v3"])
def test_subsample_genes_modes_keep_planted_variable_genes(sparse, mode):
    from scvi.dataset._planted import planted_counts

    planted = planted_counts(n_cells=300, n_genes=60, n_clusters=3, n_de_genes=5, lfc_scale=3.0, sparse=sparse)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(planted.X, gene_names=planted.gene_names)
    dataset.subsample_genes(new_n_genes=15, mode=mode)
    assert dataset.nb_genes == 15 and sp_sparse.issparse(dataset.X) == sparse
    de_genes = {f"gene_{i}" for i in np.flatnonzero(np.abs(planted.lfc).max(axis=0) > 0)}
    # 15 of 60 genes are DE: 15 random genes would hold 3.75 of them on average
    assert len(de_genes & set(dataset.gene_names.tolist())) >= 7


def test_cell_types_to_labels_and_custom_categorical_attribute():
    dataset = tagged(False)
    assert dataset.cell_types_to_labels(["c", "a", "c"]).tolist() == [2, 0, 2]
    dataset.initialize_cell_attribute("donor", np.array([7, 7, 3, 3, 9, 9]), categorical=True)
    dataset.initialize_mapped_attribute("donor", "donor_names", np.array([f"d{i}" for i in range(10)]))
    dataset.remap_categorical_attributes(["donor"])
    assert dataset.donor.tolist() == [1, 1, 0, 0, 2, 2]
    assert dataset.donor_names.tolist() == ["d3", "d7", "d9"]
    dataset.update_cells([0, 1, 4])  # donor d3 disappears: remapped with its names
    assert dataset.donor.tolist() == [0, 0, 1] and dataset.donor_names.tolist() == ["d7", "d9"]
