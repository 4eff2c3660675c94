"""Every built-in dataset downloads its original files from a local mirror, parses and populates.

The mirror (``_mirror_server``) serves the legacy package's fixture files under the original URLs'
paths; ``save_path`` is always a fresh temporary folder, so each test really downloads.
"""
import gzip
import shutil
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _mirror_server import mirror, mirror_server  # noqa: F401 - fixtures

from scvi.dataset import (
    BrainLargeDataset,
    BreastCancerDataset,
    CbmcDataset,
    CiteSeqDataset,
    CortexDataset,
    CsvDataset,
    DownloadableAnnDataset,
    FrontalCortexDropseqDataset,
    HematoDataset,
    LoomDataset,
    MouseOBDataset,
    PreFrontalCortexStarmapDataset,
    RetinaDataset,
    SeqfishDataset,
    SeqFishPlusDataset,
    SmfishDataset,
)

pytestmark = pytest.mark.data


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


# ------------------------------------------------------------------------------------------ cortex
def test_cortex_parses_labels_cell_types_and_keeps_genes_by_variance(mirror, tmp_path):
    full = CortexDataset(save_path=tmp_path, total_genes=None)
    assert (full.nb_cells, full.nb_genes) == (62, 63)
    assert mirror.requested(
        "https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt"
    ) == 1
    assert list(full.cell_types) == sorted(full.cell_types) and len(full.cell_types) == 7
    assert "pyramidal SS" in full.cell_types
    assert full.gene_names[0] == "THY1" and full.X[0, 0] == 10  # first gene, first cell (third column) of the file
    assert full.precise_labels.shape == (62,)

    to_keep = ["THY1", "sst", "Tomem2", "Crhbp"]
    small = CortexDataset(save_path=tmp_path, genes_to_keep=to_keep, total_genes=10)
    assert small.gene_names[:4].tolist() == to_keep
    # the other genes are the most variable ones, by decreasing standard deviation
    extra_std = np.std(_dense(small.X)[:, 4:], axis=0)
    assert np.all(np.diff(extra_std) <= 1e-6)
    by_std = full.gene_names[np.argsort(-np.std(_dense(full.X), axis=0), kind="stable")]
    assert set(small.gene_names[4:]) == set([g for g in by_std if g not in to_keep][:6])
    np.testing.assert_array_equal(small.labels, full.labels)


def test_cortex_rejects_unknown_genes_and_bad_totals(mirror, tmp_path):
    with pytest.raises(ValueError, match="absent from the cortex data.*NOT_A_GENE"):
        CortexDataset(save_path=tmp_path, genes_to_keep=["THY1", "NOT_A_GENE"])
    with pytest.raises(TypeError, match="`total_genes` must be None or an int"):
        CortexDataset(save_path=tmp_path, total_genes="all")


# ------------------------------------------------------------------------------------- brain large
def _brain_large_dense(path):
    with h5py.File(path, "r") as f:
        g = f["mm10"]
        n_genes, n_cells = g["shape"][()]
        return sp.csc_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=(n_genes, n_cells)).T.toarray()


def test_brain_large_keeps_the_most_variable_genes_chunk_by_chunk(mirror, tmp_path, legacy_fixtures, monkeypatch):
    full = _brain_large_dense(legacy_fixtures / "brain_large.h5")
    variance = full[:10].astype(np.float64).var(axis=0)
    top = np.argsort(variance, kind="stable")[-10:][::-1]
    expected = full[:, top]
    expected = expected[expected.sum(axis=1) > 0]

    dataset = BrainLargeDataset(save_path=tmp_path, sample_size_gene_var=10, nb_genes_to_keep=10, max_cells_to_keep=128)
    assert sp.issparse(dataset.X)
    np.testing.assert_array_equal(dataset.subset_genes, top)
    np.testing.assert_array_equal(_dense(dataset.X), expected)

    # small chunks, and reads cut inside chunks, give the same matrix
    monkeypatch.setattr("scvi.dataset.brain_large._MAX_NNZ_PER_READ", 97)
    chunked = BrainLargeDataset(
        save_path=tmp_path, sample_size_gene_var=10, nb_genes_to_keep=10, loading_batch_size=7, max_cells_to_keep=128
    )
    np.testing.assert_array_equal(_dense(chunked.X), expected)

    first = BrainLargeDataset(save_path=tmp_path, sample_size_gene_var=10, nb_genes_to_keep=10, max_cells_to_keep=30)
    head = full[:30][:, top]
    np.testing.assert_array_equal(_dense(first.X), head[head.sum(axis=1) > 0])


@pytest.mark.parametrize(
    "name", ["sample_size_gene_var", "nb_genes_to_keep", "loading_batch_size", "max_cells_to_keep"]
)
def test_brain_large_validates_sizes(name, tmp_path):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        BrainLargeDataset(save_path=tmp_path, **{name: 0})


# -------------------------------------------------------------------------------------------- loom
def test_retina_has_batches_labels_and_the_authors_cell_types(mirror, tmp_path):
    dataset = RetinaDataset(save_path=tmp_path)
    assert (dataset.nb_cells, dataset.nb_genes) == (25, 1316)
    assert dataset.n_batches == 2 and np.bincount(dataset.batch_indices.ravel()).tolist() == [15, 10]
    assert dataset.n_labels == 5
    assert list(dataset.cell_types) == ["RBC", "MG", "BC5A", "BC7", "BC6"]
    assert dataset.gene_names[:2].tolist() == ["Gene0", "Gene1"]


def test_starmap_has_spatial_coordinates_and_named_clusters(mirror, tmp_path, legacy_fixtures):
    dataset = PreFrontalCortexStarmapDataset(save_path=tmp_path)
    assert (dataset.nb_cells, dataset.nb_genes) == (3704, 158)
    assert dataset.n_batches == 3 and len(dataset.cell_types) == 16
    with h5py.File(legacy_fixtures / "mpfc-starmap.loom", "r") as f:
        coordinates = f["col_attrs/Spatial_coordinates"][()]
        clusters = f["col_attrs/Clusters"][()].astype(str)
        first_gene = f["matrix"][0, :]
    np.testing.assert_allclose(dataset.x_coord, coordinates[:, 0])
    np.testing.assert_allclose(dataset.y_coord, coordinates[:, 1])
    np.testing.assert_array_equal(np.asarray(dataset.cell_types)[dataset.labels.ravel()], clusters)
    np.testing.assert_allclose(_dense(dataset.X)[:, 0], first_gene)


def test_frontal_cortex_dropseq_orders_cell_types_by_layer_and_keeps_genes(mirror, tmp_path):
    dataset = FrontalCortexDropseqDataset(save_path=tmp_path)
    assert (dataset.nb_cells, dataset.n_labels) == (25, 14)
    cell_types_in_file = ["Astro", "Endo", "L5-1", "Lhx6", "NA", "NPY", "Oligo", "Reln", "SST", "Smc", "VIP", "eL2/3"]
    assert list(dataset.cell_types[:3]) == [cell_types_in_file[i] for i in (5, 6, 3)]

    subset = FrontalCortexDropseqDataset(save_path=tmp_path, genes_to_keep=["Gene7", "Gene2"])
    assert subset.gene_names.tolist() == ["Gene7", "Gene2"]
    np.testing.assert_array_equal(_dense(subset.X)[:, 0], _dense(dataset.X)[:, 7])


def test_loom_dataset_from_any_url(mirror, tmp_path):
    dataset = LoomDataset("Cortex.loom", save_path=tmp_path, url="https://example.org/data/Cortex.loom")
    assert (dataset.nb_cells, dataset.nb_genes) == (50, 10)
    assert dataset.gene_names[1] == "TTR"
    assert "CreationDate" in dataset.global_attributes_dict


def test_smfish_agglomerates_clusters_and_keeps_coordinates(mirror, tmp_path, legacy_fixtures):
    high = SmfishDataset(save_path=tmp_path)
    assert list(high.cell_types) == ["Astrocytes", "Endothelials", "Inhibitory", "Microglias", "Oligodendrocytes",
                                     "Pyramidals"][: high.n_labels]
    assert high.nb_genes == 33 and high.gene_names[0] == "Gad2"
    assert high.x_coord.shape == (high.nb_cells, 1)

    low = SmfishDataset(save_path=tmp_path, use_high_level_cluster=False)
    assert low.nb_cells == 64
    with h5py.File(legacy_fixtures / "osmFISH_SScortex_mouse_all_cell.loom", "r") as f:
        x = f["col_attrs/X"][()]
        names = f["col_attrs/ClusterName"][()].astype(str)
        cluster_ids = f["col_attrs/ClusterID"][()]
    np.testing.assert_allclose(low.x_coord.ravel(), x)
    np.testing.assert_array_equal(np.asarray(low.cell_types)[low.labels.ravel()], names)
    # cells of the clusters outside the agglomerates are dropped; the others keep their coordinates
    agglomerated = set(range(1, 34)) - {11, 23, 24, 25, 27, 31}
    kept = np.isin(cluster_ids, sorted(agglomerated))
    assert high.nb_cells == kept.sum() < 64
    np.testing.assert_allclose(high.x_coord.ravel(), x[kept])
    inhibitory = list(high.cell_types).index("Inhibitory")
    is_inhibitory = np.isin(cluster_ids[kept], [18, 17, 14, 19, 15, 16, 20])
    np.testing.assert_array_equal(high.labels.ravel() == inhibitory, is_inhibitory)


# --------------------------------------------------------------------------------------------- csv
def test_breast_cancer_and_mouse_ob_spots(mirror, tmp_path, legacy_fixtures):
    dataset = BreastCancerDataset(save_path=tmp_path)
    table = pd.read_csv(legacy_fixtures / "Layer2_BC_count_matrix-1.tsv", sep="\t", index_col=0)
    assert (dataset.nb_cells, dataset.nb_genes) == table.shape
    assert dataset.gene_names[0] == "GAPDH"
    assert dataset.x_coord[0] == pytest.approx(17.907) and dataset.y_coord[0] == pytest.approx(4.967)
    np.testing.assert_array_equal(_dense(dataset.X)[0], table.values[0])

    mouse = MouseOBDataset(save_path=tmp_path)
    assert mouse.nb_genes == 50 and mouse.gene_names[0] == "Nrf1"


def test_csv_dataset_with_labels_and_batches(mirror, tmp_path):
    filename = "GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz"
    url = f"https://example.org/data/{filename}"
    plain = CsvDataset(filename, save_path=tmp_path, url=url, compression="gzip")
    assert (plain.nb_cells, plain.nb_genes) == (50, 10)
    cells = [f"Barcode{i}" for i in range(1, 51)]
    names = np.where(np.arange(50) % 3 == 0, "T cell", "B cell")
    pd.DataFrame({"cell": cells, "type": names}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"cell": cells, "batch": np.arange(50) % 2}).to_csv(tmp_path / "batches.csv", index=False)
    annotated = CsvDataset(
        filename, save_path=tmp_path, compression="gzip", labels_file="labels.csv", batch_ids_file="batches.csv"
    )
    assert list(annotated.cell_types) == ["B cell", "T cell"]
    np.testing.assert_array_equal(np.asarray(annotated.cell_types)[annotated.labels.ravel()], names)
    assert annotated.n_batches == 2
    subset = CsvDataset(filename, save_path=tmp_path, compression="gzip", subset_genes=[0, 2])
    assert subset.gene_names.tolist() == ["MOUSE_ACTB", "MOUSE_MALAT1"]
    most_variable = CsvDataset(filename, save_path=tmp_path, compression="gzip", new_n_genes=5)
    assert most_variable.nb_genes == 5

    # integer labels that are not 0..K-1 keep their values as cell type names
    clusters = np.where(np.arange(50) < 10, 7, 3)
    pd.DataFrame({"cell": cells, "cluster": clusters}).to_csv(tmp_path / "ids.csv", index=False)
    numeric = CsvDataset(filename, save_path=tmp_path, compression="gzip", labels_file="ids.csv")
    assert list(numeric.cell_types) == ["3", "7"]
    assert np.bincount(numeric.labels.ravel()).tolist() == [40, 10]


# ------------------------------------------------------------------------------------------ hemato
def _hemato_zip(path, legacy_fixtures):
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("bBM.filtered_gene_list.paper.txt", "bBM.spring_and_pba.csv"):
            archive.write(legacy_fixtures / "HEMATO" / name, f"data/HEMATO/{name}")


def test_hemato_reads_counts_spring_coordinates_and_potential(mirror, tmp_path, legacy_fixtures):
    counts = pd.read_csv(legacy_fixtures / "HEMATO/bBM.raw_umifm_counts.csv.gz")
    counts.loc[:4, "library_id"] = "basal_bm1"  # this library is removed by the loader
    with gzip.open(tmp_path / "counts.csv.gz", "wt") as handle:
        counts.to_csv(handle, index=False)
    _hemato_zip(tmp_path / "data.zip", legacy_fixtures)
    mirror.add(
        "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
        "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz",
        tmp_path / "counts.csv.gz",
    )
    mirror.add("https://github.com/romain-lopez/scVI-reproducibility/raw/master/additional/data.zip",
               tmp_path / "data.zip")
    try:
        dataset = HematoDataset(save_path=tmp_path / "HEMATO")
    finally:
        mirror.add(
            "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
            "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz",
            legacy_fixtures / "HEMATO/bBM.raw_umifm_counts.csv.gz",
        )
        mirror.add("https://github.com/romain-lopez/scVI-reproducibility/raw/master/additional/data.zip",
                   legacy_fixtures / "HEMATO/data.zip")
    genes = np.loadtxt(legacy_fixtures / "HEMATO/bBM.filtered_gene_list.paper.txt", dtype=str)
    spring = pd.read_csv(legacy_fixtures / "HEMATO/bBM.spring_and_pba.csv").set_index("cell_id")
    assert (dataset.nb_cells, dataset.nb_genes) == (45, len(genes))
    assert dataset.gene_names.tolist() == genes.tolist()
    kept = counts.iloc[5:]
    np.testing.assert_allclose(dataset.x_coord, spring.loc[kept["cell_id"], "x_spring"].values)
    # labels rank cells by the granulocytic-vs-erythroid logit
    order = np.argsort(dataset.gr_er_logit)
    assert np.all(np.diff(dataset.labels.ravel()[order]) >= 0)


def test_hemato_archive_without_the_annotations_is_reported(mirror, tmp_path):
    with pytest.raises(FileNotFoundError, match="bBM.filtered_gene_list.paper.txt"):
        HematoDataset(save_path=tmp_path)  # the fixture data.zip is an empty stub


# ---------------------------------------------------------------------------------------- cite-seq
@pytest.mark.parametrize("name", ["cbmc", "pbmc"])
def test_cite_seq_keeps_human_genes_and_reads_proteins(mirror, tmp_path, legacy_fixtures, name):
    dataset = CbmcDataset(save_path=tmp_path) if name == "cbmc" else CiteSeqDataset(name, save_path=tmp_path)
    assert (tmp_path / name / f"{name}_adt_centered.csv.gz").exists()
    rna = pd.read_csv(legacy_fixtures / f"citeSeq/{name}/{name}_rna.csv.gz", index_col=0)
    adt = pd.read_csv(legacy_fixtures / f"citeSeq/{name}/{name}_adt.csv.gz", index_col=0)
    human = [g for g in rna.index if g.startswith("HUMAN")]
    assert dataset.nb_genes == len(human) and dataset.gene_names[0] == "A1BG"
    assert list(dataset.protein_names) == list(adt.index)
    assert list(dataset.protein_names_clr) == list(adt.index)
    np.testing.assert_array_equal(dataset.protein_expression, adt.T.values[: dataset.nb_cells])
    assert dataset.protein_expression_clr.shape == (dataset.nb_cells, len(adt.index))
    assert dataset.cell_measurements_col_mappings["protein_expression"] == "protein_names"


def test_cite_seq_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match=r"`name` must be one of \['cbmc', 'cd8', 'pbmc'\]"):
        CiteSeqDataset("mouse", save_path=tmp_path)


# ---------------------------------------------------------------------------------------- seqfish
def test_seqfish_reads_genes_by_cells(mirror, tmp_path, legacy_fixtures):
    dataset = SeqfishDataset(save_path=tmp_path)
    sheet = pd.read_excel(legacy_fixtures / "SeqFISH.xlsx", header=None, index_col=0)
    assert (dataset.nb_cells, dataset.nb_genes) == (sheet.shape[1], sheet.shape[0])
    assert dataset.gene_names[:2].tolist() == ["Dmbx1", "Emx2"]
    np.testing.assert_array_equal(_dense(dataset.X)[:, 0], sheet.values[0])


@pytest.mark.parametrize("region, prefix", [("subventricular cortex", "cortex_svz"), ("olfactory bulb", "ob")])
def test_seqfish_plus_regions(mirror, tmp_path, legacy_fixtures, region, prefix):
    dataset = SeqFishPlusDataset(tissue_region=region, save_path=tmp_path)
    counts = pd.read_csv(legacy_fixtures / f"seqfishplus/sourcedata/{prefix}_counts.csv", index_col=0)
    centroids = pd.read_csv(legacy_fixtures / f"seqfishplus/sourcedata/{prefix}_cellcentroids.csv", index_col=0)
    assert dataset.gene_names.tolist() == list(counts.columns)
    np.testing.assert_array_equal(_dense(dataset.X), counts.values)
    np.testing.assert_allclose(dataset.coords, centroids[["X", "Y"]].values)
    assert list(dataset.axis) == ["x", "y"]
    assert hasattr(dataset, "region") == (region == "subventricular cortex")


def test_seqfish_plus_rejects_unknown_regions(tmp_path):
    with pytest.raises(ValueError, match="`tissue_region` must be"):
        SeqFishPlusDataset(tissue_region="hippocampus", save_path=tmp_path)


# ---------------------------------------------------------------------------------------- anndata
def test_downloadable_anndataset(mirror, tmp_path, legacy_fixtures):
    import anndata

    dataset = DownloadableAnnDataset(
        "TM_droplet_mat.h5ad", save_path=tmp_path, url="https://example.org/data/TM_droplet_mat.h5ad"
    )
    ad = anndata.read_h5ad(legacy_fixtures / "TM_droplet_mat.h5ad")
    assert dataset.gene_names.tolist() == list(ad.var_names)
    assert dataset.nb_cells == int((np.asarray(ad.X.sum(axis=1)).ravel() > 0).sum())
    shutil.rmtree(tmp_path)


def test_loom_reader_decodes_escaped_strings_and_global_attribute_arrays(tmp_path):
    from scvi.dataset._loom_io import read_loom

    with h5py.File(tmp_path / "tiny.loom", "w") as f:
        f["matrix"] = np.arange(6, dtype=np.float32).reshape(3, 2)
        f["row_attrs/Gene"] = np.asarray([b"A&amp;B", b"C", b"D"])
        f["col_attrs/ClusterID"] = np.asarray([0, 1])
        f.attrs["CellTypes"] = np.asarray([b"T cell", b"B&lt;cell"])
    contents = read_loom(tmp_path / "tiny.loom")
    assert contents.row_attrs["Gene"].tolist() == ["A&B", "C", "D"]
    assert contents.attrs["CellTypes"].tolist() == ["T cell", "B<cell"]
    dataset = LoomDataset("tiny.loom", save_path=tmp_path)
    assert dataset.gene_names.tolist() == ["A&B", "C", "D"]
    assert list(dataset.cell_types) == ["T cell", "B<cell"]
    np.testing.assert_array_equal(_dense(dataset.X), np.arange(6).reshape(3, 2).T)
    with pytest.raises(ValueError, match="is not a loom file"):
        with h5py.File(tmp_path / "empty.loom", "w"):
            pass
        LoomDataset("empty.loom", save_path=tmp_path)


@pytest.mark.slow
def test_brain_large_peak_memory_stays_within_three_times_the_result():
    """The benchmark at 20,000 cells (the full 300,000-cell run is ``benchmarks/brain_large_memory.py``)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "brain_large_memory.py"
    command = [sys.executable, str(script), "--n-cells", "20000"]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)["scvi"]
    assert report["shape"] == [20000, 720]
    assert report["within_limit"], report
