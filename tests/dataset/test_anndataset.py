"""AnnDatasetFromAnnData / to_anndata: a round trip keeps everything."""
import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import AnnDatasetFromAnnData, CellMeasurement, GeneExpressionDataset
from scvi.dataset.anndataset import extract_data_from_anndata

SPARSE = pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])


def dense(X):
    return X.toarray() if sp_sparse.issparse(X) else np.asarray(X)


def rich_dataset(sparse: bool) -> GeneExpressionDataset:
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(12, 5)) + 1
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        sp_sparse.csr_matrix(X) if sparse else X,
        labels=[2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1],
        cell_types=["T cell", "B cell", "NK"],
        batch_indices=[0] * 6 + [1] * 6,
        gene_names=["CD3E", "MS4A1", "NKG7", "LYZ", "GNLY"],
        cell_attributes_dict={"donor": np.array(["d1", "d2"] * 6)},
        gene_attributes_dict={"gene_ids": [f"ENSG{j}" for j in range(5)]},
        Ys=[CellMeasurement("protein_expression", rng.poisson(5, size=(12, 2)), "protein_names", ["CD3", "CD19"])],
    )
    return dataset


@SPARSE
def test_round_trip_keeps_everything(sparse):
    dataset = rich_dataset(sparse)
    ad = dataset.to_anndata()
    assert ad.shape == (12, 5) and sp_sparse.issparse(ad.X) == sparse
    assert list(ad.var_names) == dataset.gene_names.tolist()
    back = AnnDatasetFromAnnData(ad, cell_measurements_col_mappings={"protein_expression": "protein_names"})
    assert sp_sparse.issparse(back.X) == sparse
    np.testing.assert_array_equal(dense(back.X), dense(dataset.X))
    assert back.gene_names.tolist() == dataset.gene_names.tolist()
    assert back.labels.ravel().tolist() == dataset.labels.ravel().tolist()
    assert back.cell_types.tolist() == dataset.cell_types.tolist()
    assert back.batch_indices.ravel().tolist() == dataset.batch_indices.ravel().tolist()
    assert back.donor.tolist() == dataset.donor.tolist()
    assert back.gene_ids.tolist() == dataset.gene_ids.tolist()
    np.testing.assert_array_equal(back.protein_expression, dataset.protein_expression)
    assert back.protein_names.tolist() == ["CD3", "CD19"]
    np.testing.assert_allclose(back.local_means, dataset.local_means)


def test_round_trip_through_h5ad(tmp_path):
    dataset = rich_dataset(True)
    path = tmp_path / "dataset.h5ad"
    dataset.to_anndata().write_h5ad(path)
    back = AnnDatasetFromAnnData(anndata.read_h5ad(path),
                                 cell_measurements_col_mappings={"protein_expression": "protein_names"})
    assert back.cell_types[back.labels.ravel()].tolist() == dataset.cell_types[dataset.labels.ravel()].tolist()
    assert back.labels.ravel().tolist() == dataset.labels.ravel().tolist()
    np.testing.assert_array_equal(back.X.toarray(), dataset.X.toarray())


def test_labels_without_names_round_trip_as_labels():
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(np.ones((3, 2)), labels=[1, 0, 1], gene_names=["a", "b"])
    ad = dataset.to_anndata()
    assert "labels" in ad.obs and "cell_types" not in ad.obs
    back = AnnDatasetFromAnnData(ad)
    assert back.labels.ravel().tolist() == [1, 0, 1] and back.cell_types is None


def test_legacy_data_loader_example():
    data = np.ones((25, 10)) * 100
    paired = np.ones((25, 4)) * np.arange(0, 4)
    y = CellMeasurement("dev", paired, "dev_names", ["gabou", "achille", "pedro", "oclivio"])
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(data, Ys=[y])
    back = AnnDatasetFromAnnData(dataset.to_anndata(), cell_measurements_col_mappings={"dev": "dev_names"})
    assert (paired == back.dev).all() and (dataset.X == back.X).all()
    assert (dataset.cell_types == back.cell_types).all()


def test_obs_columns_become_labels_and_batches():
    ad = anndata.AnnData(np.ones((4, 2), dtype=np.float32))
    ad.obs["cell_types"] = ["mono", "t", "mono", "b"]  # plain strings: order of first appearance
    ad.obs["batch_indices"] = pd.Categorical(["s2", "s1", "s1", "s2"], categories=["s1", "s2"])
    ad.obs["labels"] = [9, 9, 9, 9]  # ignored when cell types are given
    dataset = AnnDatasetFromAnnData(ad)
    assert dataset.cell_types.tolist() == ["mono", "t", "b"] and dataset.labels.ravel().tolist() == [0, 1, 0, 2]
    assert dataset.batch_indices.ravel().tolist() == [1, 0, 0, 1]
    assert "labels" not in dataset.cell_attribute_names - {"labels"}


def test_custom_obs_keys_and_integer_labels():
    ad = anndata.AnnData(np.ones((3, 2), dtype=np.float32))
    ad.obs["cluster"] = [2, 0, 2]
    ad.obs["sample"] = [5, 5, 7]
    dataset = AnnDatasetFromAnnData(ad, batch_label="sample", class_label="cluster")
    assert dataset.labels.ravel().tolist() == [1, 0, 1] and dataset.batch_indices.ravel().tolist() == [0, 0, 1]


def test_use_raw_reads_raw_counts_and_genes():
    raw = anndata.AnnData(np.arange(1, 13, dtype=np.float32).reshape(4, 3))
    raw.var_names = ["a", "b", "c"]
    ad = raw.copy()
    ad.raw = raw
    ad = ad[:, ["b"]].copy()
    ad.X = ad.X * 0.5
    dataset = AnnDatasetFromAnnData(ad, use_raw=True)
    np.testing.assert_array_equal(dataset.X, raw.X)
    assert dataset.gene_names.tolist() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="use_raw=True but the AnnData has no .raw"):
        AnnDatasetFromAnnData(raw, use_raw=True)


def test_empty_cells_are_removed_and_missing_measurement_is_an_error():
    X = np.array([[1, 2], [0, 0], [3, 0]], dtype=np.float32)
    dataset = AnnDatasetFromAnnData(anndata.AnnData(sp_sparse.csr_matrix(X)))
    assert dataset.nb_cells == 2 and sp_sparse.issparse(dataset.X)
    with pytest.raises(ValueError, match="Cell measurement 'protein_expression' not found in the AnnData's obsm"):
        AnnDatasetFromAnnData(anndata.AnnData(X), cell_measurements_col_mappings={"protein_expression": "names"})


def test_extract_data_from_anndata_legacy_tuple():
    ad = anndata.AnnData(np.ones((2, 3), dtype=np.float32))
    ad.obs["cell_types"] = ["x", "y"]
    ad.obs["other"] = [1.0, 2.0]
    result = extract_data_from_anndata(ad)
    assert len(result) == 10
    X, batch_indices, labels, gene_names, cell_types, obs, obsm, var, varm, uns = result
    assert batch_indices is None and labels.tolist() == [0, 1] and cell_types.tolist() == ["x", "y"]
    assert list(obs.columns) == ["other"] and gene_names.tolist() == ["0", "1", "2"]
