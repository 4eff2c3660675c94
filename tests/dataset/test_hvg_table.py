"""The legacy per-gene table ``GeneExpressionDataset._highly_variable_genes`` and the small legacy
behaviours found by the ported scVI 0.6.8 suite (tests/legacy): unknown genes raise ``KeyError``,
merged mappings are lists, identical libraries have a variance of exactly 0."""
import warnings

import numpy as np
import pandas as pd
import pytest

from scvi.dataset import GeneExpressionDataset
from scvi.dataset._gene_selection import highly_variable_genes_indices, highly_variable_genes_table


def _planted(n_cells=300, n_genes=400, n_batches=1, seed=0):
    """Poisson counts plus 5 strongly overdispersed genes (0 in half the cells): genes 10, 100, 200, 300, 390."""
    gene_names = [f"g{i}" for i in range(n_genes)]
    rng = np.random.default_rng(seed)
    means = np.exp(rng.uniform(np.log(0.5), np.log(20), n_genes))
    X = rng.poisson(means, size=(n_cells, n_genes)).astype(np.float32)
    on = rng.permutation(n_cells) < n_cells // 2
    planted = np.array([10, 100, 200, 300, 390])
    for gene, mean in zip(planted, np.geomspace(2, 15, planted.size)):  # different means: different bins
        X[:, gene] = rng.poisson(np.where(on, 2 * mean, 0.0))
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, batch_indices=np.arange(n_cells) % n_batches, gene_names=gene_names)
    return dataset, planted


@pytest.mark.parametrize("flavor", ["seurat_v2", "cell_ranger", "seurat_v3", "poisson_zeros"])
@pytest.mark.parametrize("n_batches", [1, 2])
def test_table_flags_the_planted_genes_and_matches_subsample_genes(flavor, n_batches):
    dataset, planted = _planted(n_batches=n_batches)
    kwargs = dict(random_state=0) if flavor == "poisson_zeros" else {}
    table = dataset._highly_variable_genes(n_top_genes=5, flavor=flavor, **kwargs)
    assert isinstance(table, pd.DataFrame)
    assert table.index.tolist() == [str(i) for i in range(dataset.nb_genes)]  # as the legacy AnnData .var
    assert np.flatnonzero(table["highly_variable"]).tolist() == planted.tolist()
    batches = dataset.batch_indices.ravel() if n_batches > 1 else None
    expected = highly_variable_genes_indices(dataset.X, 5, flavor, batches, **kwargs)
    np.testing.assert_array_equal(np.flatnonzero(table["highly_variable"]), expected)
    nbatches_column = "prob_zero_enriched_nbatches" if flavor == "poisson_zeros" else "highly_variable_nbatches"
    assert (nbatches_column in table.columns) == (n_batches > 1 or flavor == "poisson_zeros")
    if n_batches > 1:
        assert table.loc["10", nbatches_column] == 2


def test_without_batch_correction_there_are_no_batch_columns():
    dataset, _ = _planted(n_batches=3)
    table = dataset._highly_variable_genes(n_top_genes=5, flavor="seurat_v2", batch_correction=False)
    assert "highly_variable_nbatches" not in table.columns
    assert table.columns.tolist() == ["means", "dispersions", "dispersions_norm", "highly_variable"]


def test_dispersion_table_matches_scanpy():
    sc = pytest.importorskip("scanpy")
    import anndata

    dataset, _ = _planted(n_batches=2)
    for flavor, scanpy_flavor in (("seurat_v2", "seurat"), ("cell_ranger", "cell_ranger")):
        ours = dataset._highly_variable_genes(n_top_genes=8, flavor=flavor, n_bins=5)
        obs = pd.DataFrame({"batch": pd.Categorical(dataset.batch_indices.ravel().astype(str))})
        obs.index = obs.index.astype(str)
        adata = anndata.AnnData(X=dataset.X.copy(), obs=obs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sc.pp.normalize_total(adata, target_sum=1e4)
            sc.pp.log1p(adata)
            sc.pp.highly_variable_genes(adata, n_top_genes=8, flavor=scanpy_flavor, batch_key="batch", n_bins=5)
        theirs = adata.var
        np.testing.assert_array_equal(ours["highly_variable"], theirs["highly_variable"])
        np.testing.assert_array_equal(ours["highly_variable_nbatches"], theirs["highly_variable_nbatches"])
        for column in ("means", "dispersions", "dispersions_norm"):  # scanpy computes in float32
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-3, atol=1e-5, err_msg=column)


def test_cutoffs_without_n_top_genes_and_constant_gene_scores_zero():
    dataset, planted = _planted()
    table = dataset._highly_variable_genes(flavor="seurat_v2", n_bins=3)  # scanpy's default cutoffs
    in_range = planted[table["means"].to_numpy()[planted] < 3.0]  # scanpy's default max_mean
    assert in_range.size >= 2 and set(in_range) <= set(np.flatnonzero(table["highly_variable"]))
    dataset.X[:, -1] = 0
    table = dataset._highly_variable_genes(n_top_genes=5, flavor="seurat_v3")
    assert table.loc[str(dataset.nb_genes - 1), "highly_variable_median_variance"] == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(flavor="variance", n_top_genes=3), ValueError, "`flavor` must be one of 'seurat_v2'"),
        (dict(flavor="seurat_v3"), ValueError, "flavor='seurat_v3' requires `n_top_genes`"),
        (dict(flavor="seurat_v2", span=0.3), TypeError, r"unexpected argument\(s\) \['span'\]"),
    ],
)
def test_table_bad_arguments(kwargs, error, match):
    dataset, _ = _planted()
    with pytest.raises(error, match=match):
        dataset._highly_variable_genes(**kwargs)
    with pytest.raises(error, match=match):
        highly_variable_genes_table(dataset.X, **kwargs)


def test_n_bins_is_accepted_and_ignored_by_modes_without_bins():
    dataset, planted = _planted()
    dataset.subsample_genes(new_n_genes=5, mode="seurat_v3", n_bins=3)  # as scVI 0.6
    assert dataset.nb_genes == 5


def test_unknown_gene_is_a_key_error_and_a_value_error():
    dataset, _ = _planted()
    for error in (KeyError, ValueError):
        with pytest.raises(error, match=r"1 gene\(s\) not found in gene_names: \['nope'\]"):
            dataset.reorder_genes(["nope"])


def test_identical_libraries_have_zero_variance_in_every_batch():
    X = np.full((7, 10), np.exp(10) / 10)
    X[4:] *= 3
    dataset = GeneExpressionDataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-integer counts
        dataset.populate_from_data(X, batch_indices=[0, 0, 0, 0, 1, 1, 1])
    assert dataset.local_vars.ravel().tolist() == [0.0] * 7
    np.testing.assert_allclose(dataset.local_means.ravel(), [10.0] * 4 + [10 + np.log(3)] * 3, rtol=1e-6)


def test_merged_mappings_are_lists():
    d1, d2 = GeneExpressionDataset(), GeneExpressionDataset()
    d1.populate_from_data(np.ones((2, 3)), labels=[0, 1], cell_types=["a", "b"], gene_names=["x", "y", "z"])
    d2.populate_from_data(np.ones((2, 3)), labels=[0, 1], cell_types=["c", "a"], gene_names=["x", "y", "z"])
    merged = GeneExpressionDataset()
    merged.populate_from_datasets([d1, d2])
    assert merged.cell_types == ["a", "b", "c"]
    assert merged.labels.ravel().tolist() == [0, 1, 2, 0]
