"""Highly variable gene selection: known answers on hand-made counts, sparse == dense, batches,
bad input, and agreement with scanpy / scikit-misc on a real matrix when they are installed."""
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp_sparse

from scvi.dataset._gene_selection import (
    MODES,
    highly_variable_genes_indices,
    mean_var,
    seurat_v3_highly_variable_genes,
    seurat_v3_statistics,
)
from scvi.dataset._loess import loess_fit
from scvi.dataset._seurat_v3 import _seurat_v3_norm_vars

HVG_MODES = ("seurat_v2", "cell_ranger", "seurat_v3")


def _select(X, n_top_genes, mode, batch_indices=None):
    """``highly_variable_genes_indices`` with the Monte Carlo of ``poisson_zeros`` seeded."""
    kwargs = dict(random_state=0) if mode == "poisson_zeros" else {}
    return highly_variable_genes_indices(X, n_top_genes, mode, batch_indices, **kwargs)


def _counts_with_planted(n_cells=300, n_genes=600, n_planted=6, seed=0):
    """Poisson genes (variance = mean, means from 0.3 to 30) plus ``n_planted`` genes of means 2
    to 15 that are 0 in half the cells and twice their mean in the other half (variance about
    ``mean ** 2`` larger than a Poisson gene of the same mean). Returns counts and planted genes."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.uniform(np.log(0.3), np.log(30), n_genes))
    X = rng.poisson(means, size=(n_cells, n_genes)).astype(np.float32)
    planted = np.linspace(7, n_genes - 7, n_planted).astype(int) if n_planted else np.zeros(0, dtype=int)
    on = rng.permutation(n_cells) < n_cells // 2
    for gene, mean in zip(planted, np.geomspace(2, 15, n_planted)):
        X[:, gene] = rng.poisson(np.where(on, 2 * mean, 0.0))
    return X, planted


# --------------------------------------------------------------------------- known answers
def test_variance_mode_picks_largest_variances_in_gene_order():
    X = np.zeros((4, 5), dtype=np.float32)
    X[:, 0] = 3  # constant
    X[:, 1] = [0, 1, 0, 1]  # variance 0.25
    X[:, 2] = [0, 10, 0, 10]  # variance 25
    X[:, 3] = [0, 4, 0, 4]  # variance 4
    X[:, 4] = [0, 10, 0, 10]  # tie with gene 2
    assert highly_variable_genes_indices(X, 2, "variance").tolist() == [2, 4]
    assert highly_variable_genes_indices(X, 3, "variance").tolist() == [2, 3, 4]
    # exact ties are broken by gene order
    assert highly_variable_genes_indices(X, 1, "variance").tolist() == [2]
    out = highly_variable_genes_indices(X, 2, "variance")
    assert out.dtype == np.int64


@pytest.mark.parametrize("mode", HVG_MODES)
def test_planted_overdispersed_genes_are_selected(mode):
    X, planted = _counts_with_planted()
    selected = highly_variable_genes_indices(X, len(planted), mode)
    assert selected.tolist() == sorted(planted.tolist())


def test_planted_de_genes_are_recovered():
    from scvi.dataset._planted import planted_counts

    data = planted_counts(n_cells=600, n_genes=500, n_clusters=3, n_de_genes=10, lfc_scale=2.5, random_state=0)
    de_genes = np.flatnonzero(np.abs(data.lfc).sum(axis=0) > 0)
    recall = {mode: np.isin(de_genes, _select(data.X, de_genes.size, mode)).mean() for mode in MODES}
    assert recall["seurat_v3"] >= 0.85, recall
    assert min(recall["seurat_v2"], recall["cell_ranger"]) >= 0.7, recall
    # raw variance favours highly expressed genes: the normalised modes do better
    assert 0.2 <= recall["variance"] < min(recall[mode] for mode in HVG_MODES), recall


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_batches", [False, True])
def test_sparse_and_dense_give_identical_results(mode, with_batches):
    X, _ = _counts_with_planted(seed=3)
    batches = np.arange(X.shape[0]) % 3 if with_batches else None
    dense = _select(X, 20, mode, batches)
    sparse = _select(sp_sparse.csr_matrix(X), 20, mode, batches)
    csc = _select(sp_sparse.csc_matrix(X), 20, mode, batches)
    np.testing.assert_array_equal(dense, sparse)
    np.testing.assert_array_equal(dense, csc)


def test_mean_var_sparse_matches_numpy():
    X, _ = _counts_with_planted(n_cells=50, n_genes=30, n_planted=0)
    for matrix in (X, sp_sparse.csr_matrix(X)):
        mean, var = mean_var(matrix)
        np.testing.assert_allclose(mean, X.mean(axis=0, dtype=np.float64))
        np.testing.assert_allclose(var, X.astype(np.float64).var(axis=0, ddof=1), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- batches
@pytest.mark.parametrize("mode", HVG_MODES)
def test_batch_effect_gene_is_dropped_when_batches_are_given(mode):
    X, planted = _counts_with_planted(n_cells=400, seed=2)
    batches = np.arange(X.shape[0]) % 2
    batchy = 60  # Poisson within each batch, but its mean jumps from 1 to 30 between batches
    X[:, batchy] = np.random.default_rng(5).poisson(np.where(batches == 0, 1.0, 30.0))
    assert batchy in highly_variable_genes_indices(X, planted.size + 3, mode)
    assert batchy not in highly_variable_genes_indices(X, planted.size + 3, mode, batches)
    assert highly_variable_genes_indices(X, planted.size, mode, batches).tolist() == planted.tolist()


@pytest.mark.parametrize("mode", MODES)
def test_a_single_batch_is_the_same_as_no_batches(mode):
    X, _ = _counts_with_planted(seed=4)
    np.testing.assert_array_equal(
        _select(X, 15, mode, np.zeros((X.shape[0], 1), dtype=np.int64)),
        _select(X, 15, mode),
    )


def _batch_specific_counts():
    """Two batches: genes 10 > 11 > 12 are overdispersed in both; gene 0 is the most
    overdispersed of all in batch 0 and a Poisson gene in batch 1."""
    X, _ = _counts_with_planted(n_cells=400, n_planted=0, seed=7)
    rng = np.random.default_rng(8)
    batches = np.arange(X.shape[0]) % 2
    on = rng.random(X.shape[0]) < 0.5
    for gene, mean in [(10, 8.0), (11, 6.0), (12, 4.0)]:
        X[:, gene] = rng.poisson(np.where(on, 2 * mean, 0.0))
    X[:, 0] = np.where(batches == 0, rng.poisson(np.where(on, 30.0, 0.0)), rng.poisson(15.0, X.shape[0]))
    return X, batches


def test_seurat_v3_batches_rank_by_median_rank_then_nbatches():
    X, batches = _batch_specific_counts()
    stats = seurat_v3_statistics(X, {b: batches == b for b in (0, 1)}, n_top_genes=3)
    assert stats.loc[0, "highly_variable_nbatches"] == 1 and stats.loc[0, "highly_variable_rank"] == 0
    assert stats.loc[[10, 11], "highly_variable_nbatches"].tolist() == [2, 2]
    assert stats.loc[12, "highly_variable_nbatches"] == 1
    assert np.isnan(stats.loc[20, "highly_variable_rank"])
    # scanpy's flavor="seurat_v3": the median rank among the batches where a gene is in the top list
    # comes first, so gene 0 (rank 0 in one batch) beats gene 12 (rank 2 in one batch)
    assert highly_variable_genes_indices(X, 3, "seurat_v3", batches).tolist() == [0, 10, 11]


def test_legacy_seurat_v3_function_ranks_by_nbatches_first():
    anndata = pytest.importorskip("anndata")
    X, batches = _batch_specific_counts()
    obs = pd.DataFrame({"batch": pd.Categorical(batches)}, index=[str(i) for i in range(X.shape[0])])
    adata = anndata.AnnData(X=sp_sparse.csr_matrix(X), obs=obs)
    seurat_v3_highly_variable_genes(adata, n_top_genes=3, batch_key="batch")
    # scVI 0.6: genes highly variable in both batches first, then the best median rank over batches
    assert np.flatnonzero(adata.var["highly_variable"]).tolist() == [10, 11, 12]
    assert adata.var["highly_variable_nbatches"].iloc[[0, 10, 12]].tolist() == [1, 2, 1]
    assert adata.var["highly_variable_intersection"].sum() == 2
    with pytest.raises(KeyError, match="'missing' is not a column of adata.obs"):
        seurat_v3_highly_variable_genes(adata, n_top_genes=3, batch_key="missing")


@pytest.mark.parametrize("mode", ["seurat_v2", "cell_ranger"])
def test_dispersion_modes_merge_batches_by_count_of_batches(mode):
    X, batches = _batch_specific_counts()
    per_batch = [set(highly_variable_genes_indices(X[batches == b], 3, mode).tolist()) for b in (0, 1)]
    merged = set(highly_variable_genes_indices(X, 3, mode, batches).tolist())
    # genes in the top list of both batches come first, the rest are taken from the union
    assert per_batch[0] & per_batch[1] <= merged <= per_batch[0] | per_batch[1]


@pytest.mark.parametrize("mode", ["seurat_v2", "cell_ranger"])
def test_cutoffs_select_without_n_top_genes(mode):
    X, planted = _counts_with_planted(n_cells=400)
    if mode == "seurat_v2":
        # the two most expressed planted genes have log1p(mean) above the default max_mean (3)
        assert not set(planted[-2:].tolist()) & set(highly_variable_genes_indices(X, None, mode).tolist())
    loose = highly_variable_genes_indices(X, None, mode, max_mean=10.0)
    strict = highly_variable_genes_indices(X, None, mode, max_mean=10.0, min_disp=3.0)
    assert set(planted.tolist()) <= set(strict.tolist()) <= set(loose.tolist())
    assert strict.size < loose.size
    assert highly_variable_genes_indices(X, None, mode, max_mean=0.0).size == 0


# --------------------------------------------------------------------------- poisson_zeros
def test_poisson_zeros_selects_genes_with_excess_zeros():
    from scvi.dataset._zero_enrichment import poisson_zero_statistics

    X, planted = _counts_with_planted()
    assert _select(X, planted.size, "poisson_zeros").tolist() == planted.tolist()
    exact = poisson_zero_statistics(X, n_samples=None)
    sampled = poisson_zero_statistics(sp_sparse.csr_matrix(X), n_samples=10000, minibatch_size=7, random_state=0)
    np.testing.assert_allclose(exact["observed_fraction_zeros"], sampled["observed_fraction_zeros"])
    np.testing.assert_allclose(exact["expected_fraction_zeros"], sampled["expected_fraction_zeros"], rtol=1e-10)
    np.testing.assert_allclose(exact["prob_zero_enrichment"], sampled["prob_zero_enrichment"], atol=0.02)
    # a Poisson gene has as many zeros as expected
    background = np.setdiff1d(np.arange(X.shape[1]), planted)
    gap = exact["observed_fraction_zeros"][0, background] - exact["expected_fraction_zeros"][0, background]
    assert np.abs(gap).max() < 0.15


def test_legacy_poisson_gene_selection_writes_var_columns():
    anndata = pytest.importorskip("anndata")
    from scvi.dataset._zero_enrichment import poisson_gene_selection

    X, planted = _counts_with_planted(n_cells=200)
    batches = np.arange(X.shape[0]) % 2
    obs = pd.DataFrame({"batch": pd.Categorical(batches)}, index=[str(i) for i in range(X.shape[0])])
    adata = anndata.AnnData(X=sp_sparse.csr_matrix(X), obs=obs)
    poisson_gene_selection(adata, n_top_genes=planted.size, batch_key="batch", use_cuda=False, random_state=0)
    assert np.flatnonzero(adata.var["highly_variable"]).tolist() == planted.tolist()
    assert (adata.var["prob_zero_enriched_nbatches"].iloc[planted] == 2).all()
    for column in ("observed_fraction_zeros", "expected_fraction_zeros", "prob_zero_enrichment"):
        assert adata.var[column].between(0, 1).all()


# --------------------------------------------------------------------------- bad input
def test_unknown_mode_lists_the_modes():
    X, _ = _counts_with_planted(n_cells=20, n_genes=10, n_planted=0)
    match = "`mode` must be one of 'variance', 'seurat_v2', 'cell_ranger', 'seurat_v3', 'poisson_zeros'; got 'seurat'"
    with pytest.raises(ValueError, match=match):
        highly_variable_genes_indices(X, 5, "seurat")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(n_top_genes=None, mode="seurat_v3"), ValueError, "mode='seurat_v3' requires `n_top_genes`"),
        (dict(n_top_genes=None, mode="variance"), ValueError, "mode='variance' requires `n_top_genes`"),
        (dict(n_top_genes=0, mode="seurat_v3"), ValueError, "`n_top_genes` must be at least 1"),
        (dict(n_top_genes=2.5, mode="seurat_v3"), TypeError, "`n_top_genes` must be an int or None"),
        (dict(n_top_genes=5, mode="cell_ranger", batch_indices=np.zeros(3)), ValueError, r"`batch_indices` must have"),
        (dict(n_top_genes=5, mode="seurat_v3", min_disp=1.0), TypeError, r"unexpected argument\(s\) \['min_disp'\]"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    X, _ = _counts_with_planted(n_cells=20, n_genes=10, n_planted=0)
    with pytest.raises(error, match=match):
        highly_variable_genes_indices(X, **kwargs)


def test_bad_matrix_shape():
    with pytest.raises(ValueError, match=r"`X` must be a 2-D \(n_cells, n_genes\) matrix"):
        highly_variable_genes_indices(np.ones(5), 2, "variance")
    with pytest.raises(ValueError, match="needs at least 2 cells"):
        highly_variable_genes_indices(np.ones((1, 5)), 2, "variance")


def test_more_genes_requested_than_available_returns_all():
    X, _ = _counts_with_planted(n_cells=50, n_genes=12, n_planted=0)
    for mode in MODES:
        assert _select(X, 100, mode).tolist() == list(range(12)), mode


# --------------------------------------------------------------------------- LOESS
def test_loess_reproduces_a_quadratic_exactly():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=500), 2)  # with ties
    y = 1.5 - 2.0 * x + 0.7 * x**2
    np.testing.assert_allclose(loess_fit(x, y), y, atol=1e-9)


def test_loess_bad_arguments():
    with pytest.raises(ValueError, match="`span` must be in"):
        loess_fit(np.arange(10.0), np.arange(10.0), span=1.5)
    with pytest.raises(ValueError, match="span too small"):
        loess_fit(np.arange(10.0), np.arange(10.0), span=0.1)
    with pytest.raises(ValueError, match="same length"):
        loess_fit(np.arange(10.0), np.arange(9.0))


def test_loess_matches_scikit_misc():
    loess = pytest.importorskip("skmisc.loess").loess
    rng = np.random.default_rng(1)
    x = np.log10(rng.integers(1, 400, 3000) / 300)  # heavy ties, like log mean counts
    y = 0.2 + 1.1 * x + 0.1 * np.sin(3 * x) + rng.normal(scale=0.2, size=x.size)
    model = loess(x, y, span=0.3, degree=2)
    model.fit()
    np.testing.assert_allclose(loess_fit(x, y), model.outputs.fitted_values, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- scanpy, real data
@pytest.fixture(scope="module")
def pbmc_counts(real_data):
    anndata = pytest.importorskip("anndata")
    adata = anndata.read_h5ad(real_data / "pbmc3k_raw.h5ad")
    X = sp_sparse.csr_matrix(adata.X)
    rng = np.random.default_rng(0)
    X = X[np.sort(rng.choice(X.shape[0], 800, replace=False))]
    X = X[:, np.asarray((X > 0).sum(axis=0)).ravel() >= 3]
    return X, rng.integers(0, 2, X.shape[0])


def _scanpy_hvg(X, batches, flavor, n_top_genes):
    sc = pytest.importorskip("scanpy")
    import anndata

    obs = pd.DataFrame({"batch": pd.Categorical(batches.astype(str))}, index=[str(i) for i in range(X.shape[0])])
    adata = anndata.AnnData(X=X.copy(), obs=obs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if flavor != "seurat_v3":
            sc.pp.normalize_total(adata, target_sum=1e4)
            sc.pp.log1p(adata)
        batch_key = "batch" if np.unique(batches).size > 1 else None
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes, flavor=flavor, batch_key=batch_key)
    return adata.var


@pytest.mark.data
@pytest.mark.parametrize("with_batches", [False, True])
@pytest.mark.parametrize("mode, flavor", [("seurat_v2", "seurat"), ("cell_ranger", "cell_ranger")])
@pytest.mark.parametrize("n_top_genes", [1000, None])
def test_dispersion_modes_match_scanpy(pbmc_counts, mode, flavor, with_batches, n_top_genes):
    pytest.importorskip("scanpy")
    X, batches = pbmc_counts
    batches = batches if with_batches else np.zeros_like(batches)
    expected = np.flatnonzero(_scanpy_hvg(X, batches, flavor, n_top_genes)["highly_variable"])
    ours = highly_variable_genes_indices(X, n_top_genes, mode, batches)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.data
@pytest.mark.parametrize("with_batches", [False, True])
def test_seurat_v3_matches_scanpy(pbmc_counts, with_batches):
    pytest.importorskip("scanpy")
    pytest.importorskip("skmisc")
    X, batches = pbmc_counts
    batches = batches if with_batches else np.zeros_like(batches)
    n_top = 1000
    var = _scanpy_hvg(X, batches, "seurat_v3", n_top)
    expected = np.flatnonzero(var["highly_variable"])
    ours = highly_variable_genes_indices(X, n_top, "seurat_v3", batches)
    assert ours.size == expected.size == n_top
    stats = seurat_v3_statistics(X, None if not with_batches else {b: batches == b for b in (0, 1)}, n_top)
    np.testing.assert_allclose(stats["variances_norm"], var["variances_norm"], rtol=1e-9)
    differing = np.setxor1d(ours, expected)
    if not with_batches:
        # only genes tied exactly with the last selected one may differ (scanpy breaks ties arbitrarily)
        cutoff = np.sort(var["variances_norm"].to_numpy())[::-1][n_top - 1]
        np.testing.assert_allclose(var["variances_norm"].to_numpy()[differing], cutoff, rtol=1e-12)
    else:
        # likewise, per-batch ranks differ only within groups of genes tied at a batch's cutoff
        norm_vars = _seurat_v3_norm_vars(X, {b: batches == b for b in (0, 1)}, span=0.3)
        cutoffs = np.sort(norm_vars, axis=1)[:, ::-1][:, n_top - 1]
        other = np.flatnonzero(stats["highly_variable_nbatches"].to_numpy() != var["highly_variable_nbatches"])
        assert np.all(np.isclose(norm_vars[:, other], cutoffs[:, None], rtol=1e-12).any(axis=0))
        assert differing.size <= 0.01 * 2 * n_top
