"""10x loaders through the local mirror: Dataset10X (v2 / v3 folders and archives, .h5), BrainSmall, PBMC."""
import contextlib
import pickle
import shutil
import tarfile
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from _mirror_server import mirror, mirror_server  # noqa: F401 - fixtures

from scvi.dataset import BrainSmallDataset, Dataset10X, PbmcDataset, PurifiedPBMCDataset
from scvi.dataset._safe_pickle import UnsafePickleError
from scvi.dataset.dataset10X import tenx_source

pytestmark = pytest.mark.data


@contextlib.contextmanager
def _duplicate_gene_names_tolerated():
    """The mm10 fixture files name two genes 'Rp1' (as the real ones do): the dataset may warn about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*duplicated gene names.*", category=UserWarning)
        yield


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _extract(archive, destination):
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination


def _protein_v3_folder(legacy_fixtures, tmp_path):
    root = _extract(legacy_fixtures / "10X/pbmc_10k_protein_v3/filtered_feature_bc_matrix.tar.gz", tmp_path / "ref")
    return root / "filtered_feature_bc_matrix"


# ------------------------------------------------------------------------------------- Dataset10X
def test_v2_archive_is_downloaded_extracted_and_removed(mirror, tmp_path, legacy_fixtures):
    with _duplicate_gene_names_tolerated():
        dataset = Dataset10X("cd4_t_helper", save_path=tmp_path, remove_extracted_data=True)
    url, filename = tenx_source("cd4_t_helper")
    assert mirror.requested(url) == 1
    assert (tmp_path / "cd4_t_helper" / filename).exists()
    assert not (tmp_path / "cd4_t_helper/filtered_gene_bc_matrices").exists()  # removed after populating

    folder = _extract(legacy_fixtures / "10X/cd4_t_helper/filtered_gene_bc_matrices.tar.gz", tmp_path / "ref")
    counts = scipy.io.mmread(folder / "filtered_gene_bc_matrices/mm10/matrix.mtx").T.toarray()
    genes = pd.read_csv(folder / "filtered_gene_bc_matrices/mm10/genes.tsv", sep="\t", header=None)
    expressed = counts.sum(axis=1) > 0
    np.testing.assert_array_equal(_dense(dataset.X), counts[expressed])
    assert dataset.gene_names[0] == genes[1][0] == "Xkr4"
    assert dataset.n_batches == 1  # no barcodes file in this archive


def test_v3_archive_with_antibody_capture_becomes_protein_measurement(mirror, tmp_path, legacy_fixtures):
    dataset = Dataset10X("pbmc_10k_protein_v3", save_path=tmp_path, measurement_names_column=1)
    folder = _protein_v3_folder(legacy_fixtures, tmp_path)
    features = pd.read_csv(folder / "features.tsv.gz", sep="\t", header=None)
    counts = scipy.io.mmread(folder / "matrix.mtx.gz").T.tocsr()
    is_gene = (features[2] == "Gene Expression").values
    expressed = np.asarray(counts[:, is_gene].sum(axis=1)).ravel() > 0

    assert dataset.nb_genes == is_gene.sum() == 100
    assert dataset.gene_names.tolist() == features[1][is_gene].tolist()
    assert dataset.protein_names.tolist() == features[1][~is_gene].tolist()
    assert isinstance(dataset.protein_expression, np.ndarray)  # proteins are always dense
    np.testing.assert_array_equal(dataset.protein_expression, counts[:, ~is_gene].toarray()[expressed])
    np.testing.assert_array_equal(_dense(dataset.X), counts[:, is_gene].toarray()[expressed])
    assert dataset.cell_measurements_col_mappings == {"protein_expression": "protein_names"}
    barcodes = pd.read_csv(folder / "barcodes.tsv.gz", header=None)[0].values
    assert dataset.barcodes.tolist() == barcodes[expressed].tolist()


def test_measurement_names_column_and_dense(mirror, tmp_path):
    dataset = Dataset10X("pbmc_10k_protein_v3", save_path=tmp_path, measurement_names_column=0, dense=True)
    assert isinstance(dataset.X, np.ndarray)
    assert dataset.gene_names[0].startswith("ENSG")
    assert dataset.protein_names[0] == "CD3"


def test_local_folder_with_batches_from_barcodes(tmp_path, legacy_fixtures, monkeypatch):
    monkeypatch.delenv("SCVI_DATA_MIRROR", raising=False)
    local = tmp_path / "local/filtered_gene_bc_matrices/hg19"
    shutil.copytree(legacy_fixtures / "filtered_gene_bc_matrices/hg19", local)
    barcodes = pd.read_csv(local / "barcodes.tsv", header=None)[0].str.replace("-1", "", regex=False)
    suffix = np.where(np.arange(len(barcodes)) < 20, "-1", "-2")
    (local / "barcodes.tsv").write_text("\n".join(barcodes + suffix) + "\n")

    dataset = Dataset10X(save_path=tmp_path / "local")
    assert dataset.gene_names[:2].tolist() == ["GALE", "S100PBP"]
    expected_batches = (suffix == "-2").astype(int)
    kept = np.isin(np.asarray(barcodes + suffix), dataset.barcodes)
    np.testing.assert_array_equal(dataset.batch_indices.ravel(), expected_batches[kept])
    assert dataset.n_batches == 2


def _write_h5(path, folder, version):
    features = pd.read_csv(folder / "features.tsv.gz", sep="\t", header=None)
    counts = scipy.io.mmread(folder / "matrix.mtx.gz").tocsc()  # features x cells
    barcodes = pd.read_csv(folder / "barcodes.tsv.gz", header=None)[0].values.astype("S")
    with h5py.File(path, "w") as f:
        group = f.create_group("matrix" if version == 3 else "GRCh38")
        group["data"], group["indices"], group["indptr"] = counts.data.astype(np.int32), counts.indices, counts.indptr
        group["shape"] = np.asarray(counts.shape)
        group["barcodes"] = barcodes
        if version == 3:
            group["features/id"] = features[0].values.astype("S")
            group["features/name"] = features[1].values.astype("S")
            group["features/feature_type"] = features[2].values.astype("S")
        else:
            group["genes"] = features[0].values.astype("S")
            group["gene_names"] = features[1].values.astype("S")


@pytest.mark.parametrize("version", [2, 3])
def test_h5_files_are_read_like_matrix_folders(mirror, tmp_path, legacy_fixtures, version):
    folder = _protein_v3_folder(legacy_fixtures, tmp_path)
    _write_h5(tmp_path / "matrix.h5", folder, version)
    url = f"https://example.org/10x/v{version}/filtered_feature_bc_matrix.h5"
    mirror.add(url, tmp_path / "matrix.h5")
    from_h5 = Dataset10X(filename="filtered.h5", url=url, save_path=tmp_path / "h5")
    from_mtx = Dataset10X(save_path=folder.parent)
    assert mirror.requested(url) == 1
    if version == 3:  # genes and proteins split as in the folder
        np.testing.assert_array_equal(_dense(from_h5.X), _dense(from_mtx.X))
        np.testing.assert_array_equal(from_h5.protein_expression, from_mtx.protein_expression)
        assert from_h5.gene_names.tolist() == from_mtx.gene_names.tolist()
        assert from_h5.barcodes.tolist() == from_mtx.barcodes.tolist()
    else:  # Cell Ranger 2 files have no feature types: every feature is a gene
        counts = scipy.io.mmread(folder / "matrix.mtx.gz").T.toarray()
        expressed = counts.sum(axis=1) > 0
        np.testing.assert_array_equal(_dense(from_h5.X), counts[expressed])
        assert from_h5.nb_genes == from_mtx.nb_genes + len(from_mtx.protein_names)


def test_remote_false_reads_local_files_without_downloading(mirror, tmp_path, legacy_fixtures):
    url, filename = tenx_source("pbmc_10k_protein_v3")
    (tmp_path / "pbmc_10k_protein_v3").mkdir()
    shutil.copy(legacy_fixtures / "10X/pbmc_10k_protein_v3" / filename, tmp_path / "pbmc_10k_protein_v3" / filename)
    dataset = Dataset10X("pbmc_10k_protein_v3", save_path=tmp_path, remote=False)
    assert mirror.requested(url) == 0 and dataset.nb_genes == 100


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dataset_name": "pbmc_20k"}, ValueError, "`dataset_name` must be one of the 10x datasets"),
        ({"dataset_name": "pbmc8k", "type": "unfiltered"}, ValueError, r"`type` must be one of \['filtered', 'raw'\]"),
        ({"measurement_names_column": "name"}, TypeError, "`measurement_names_column` must be an int"),
    ],
)
def test_dataset10x_validates_its_arguments(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        Dataset10X(save_path=tmp_path, **kwargs)


def test_dataset10x_reports_bad_columns_and_missing_gene_expression(tmp_path, legacy_fixtures):
    folder = _protein_v3_folder(legacy_fixtures, tmp_path)
    with pytest.raises(ValueError, match="`measurement_names_column` must be between 0 and 2"):
        Dataset10X(save_path=folder.parent, measurement_names_column=3)
    features = pd.read_csv(folder / "features.tsv.gz", sep="\t", header=None)
    features[2] = "Antibody Capture"
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    with pytest.raises(ValueError, match="no 'Gene Expression' category was found"):
        Dataset10X(save_path=folder.parent)
    with pytest.raises(FileNotFoundError, match=r"No matrix.mtx\(.gz\) found"):
        Dataset10X(save_path=tmp_path / "empty")


# ------------------------------------------------------------------------------------ BrainSmall
def test_brain_small_adds_clusters_and_quality_control(mirror, tmp_path, legacy_fixtures):
    with _duplicate_gene_names_tolerated():
        dataset = BrainSmallDataset(save_path=tmp_path / "meta", save_path_10X=tmp_path / "10X")
    assert (tmp_path / "meta/brain_small_metadata.pickle").exists()
    metadata = pd.read_pickle(legacy_fixtures / "brain_small_metadata.pickle")  # trusted fixture
    barcodes = dataset.barcodes.ravel()
    np.testing.assert_array_equal(dataset.labels.ravel(), metadata["clusters"].loc[barcodes].values.ravel() - 1)
    np.testing.assert_array_equal(dataset.qc, metadata["raw_qc"].loc[barcodes].values)
    assert list(dataset.qc_names) == list(metadata["raw_qc"].columns)


def test_brain_small_refuses_a_tampered_metadata_pickle(mirror, tmp_path):
    (tmp_path / "meta").mkdir()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    (tmp_path / "meta/brain_small_metadata.pickle").write_bytes(pickle.dumps({"clusters": Payload()}))
    with _duplicate_gene_names_tolerated(), pytest.raises(UnsafePickleError, match="refusing to load"):
        BrainSmallDataset(save_path=tmp_path / "meta", save_path_10X=tmp_path / "10X")
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ PBMC
def test_pbmc_merges_4k_and_8k_with_metadata(mirror, tmp_path, legacy_fixtures):
    dataset = PbmcDataset(save_path=tmp_path, save_path_10X=tmp_path / "10X", remove_extracted_data=True)
    metadata = pd.read_pickle(legacy_fixtures / "pbmc_metadata.pickle")  # trusted fixture
    assert dataset.nb_cells == 91 == len(dataset.design) == dataset.qc.shape[0]
    assert dataset.n_batches == 2
    assert dataset.barcodes.tolist() == metadata["barcodes"].index.astype(str).tolist()
    names = np.asarray(metadata["list_clusters"])[metadata["clusters"]]
    np.testing.assert_array_equal(np.asarray(dataset.cell_types)[dataset.labels.ravel()], names)
    assert dataset.de_metadata["ENSG"].tolist() == dataset.gene_names.tolist()
    assert dataset.gene_names[0].startswith("ENSG")
    assert not (tmp_path / "10X/pbmc8k/filtered_gene_bc_matrices").exists()


def test_pbmc_delayed_populating_downloads_everything_first(mirror, tmp_path):
    dataset = PbmcDataset(save_path=tmp_path, delayed_populating=True)
    assert dataset.X is None
    for name in ("pbmc8k", "pbmc4k"):
        assert (tmp_path / name / tenx_source(name)[1]).exists()
    assert {p.name for p in tmp_path.iterdir()} >= {"gene_info_pbmc.csv", "pbmc_metadata.pickle"}
    dataset.populate()
    assert dataset.nb_cells == 91


def test_purified_pbmc_labels_cells_by_population(mirror, tmp_path, legacy_fixtures):
    with _duplicate_gene_names_tolerated():
        dataset = PurifiedPBMCDataset(save_path=tmp_path, subset_datasets=[0, 1, 6])
    assert sorted(dataset.cell_types) == ["b_cells", "cd4_t_helper", "regulatory_t"]
    sizes = {}
    for name in ("cd4_t_helper", "regulatory_t", "b_cells"):
        folder = _extract(legacy_fixtures / f"10X/{name}/filtered_gene_bc_matrices.tar.gz", tmp_path / "ref" / name)
        counts = scipy.io.mmread(folder / "filtered_gene_bc_matrices/mm10/matrix.mtx").T
        sizes[name] = int((counts.sum(axis=1) > 0).sum())
    per_type = pd.Series(np.asarray(dataset.cell_types)[dataset.labels.ravel()]).value_counts().to_dict()
    assert per_type == sizes


def test_purified_pbmc_rejects_bad_subsets(tmp_path):
    with pytest.raises(ValueError, match="`subset_datasets` must index the 11 purified populations"):
        PurifiedPBMCDataset(save_path=tmp_path, subset_datasets=[42])
