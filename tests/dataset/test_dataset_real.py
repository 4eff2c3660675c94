"""The dataset on a real matrix: 10x PBMC 3k raw counts (sparse, 2,700 cells x 32,738 genes)."""
import numpy as np
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset import AnnDatasetFromAnnData, GeneExpressionDataset


@pytest.mark.data
def test_pbmc3k_workflow_stays_sparse_and_consistent(real_data):
    import anndata

    ad = anndata.read_h5ad(real_data / "pbmc3k_raw.h5ad")
    dataset = AnnDatasetFromAnnData(ad)
    assert sp_sparse.isspmatrix_csr(dataset.X) and dataset.nb_cells == 2700
    assert dataset.X.sum() == pytest.approx(float(ad.X.sum()))
    assert set(dataset.gene_attribute_names) >= {"gene_names", "gene_ids", "gene_symbols"}

    dataset.filter_genes_by_count(10)
    dataset.subsample_genes(new_n_genes=1000, mode="seurat_v3")
    dataset.filter_cells_by_count(100)
    assert sp_sparse.isspmatrix_csr(dataset.X) and dataset.nb_genes == 1000
    assert len(dataset.gene_ids) == 1000 and len(dataset.barcode) == dataset.nb_cells
    # the gene ids still belong to the gene names they came with
    lookup = dict(zip(np.asarray(ad.var_names), np.asarray(ad.var["gene_ids"])))
    assert all(lookup[name] == gene_id for name, gene_id in zip(dataset.gene_names[:50], dataset.gene_ids[:50]))
    # the library size prior is that of the kept counts
    log_library = np.log(np.asarray(dataset.X.sum(axis=1)).ravel())
    assert dataset.local_means[0, 0] == pytest.approx(log_library.mean(), rel=1e-5)

    batch = dataset.collate_fn_builder()(np.arange(128))
    np.testing.assert_array_equal(batch.X.numpy(), dataset.X[:128].toarray())

    back = GeneExpressionDataset()
    back.populate_from_datasets([AnnDatasetFromAnnData(dataset.to_anndata())])
    assert (back.X != dataset.X).nnz == 0 and back.gene_names.tolist() == dataset.gene_names.tolist()
