"""Synthetic datasets: legacy shapes and numbers, planted clusters, zero-inflation, bad input."""
import shutil

import numpy as np
import pytest

from scvi.dataset import GeneExpressionDataset
from scvi.dataset.synthetic import (
    SyntheticDataset,
    SyntheticDatasetCorr,
    SyntheticRandomDataset,
    ZISyntheticDatasetCorr,
    legacy_random_state,
)


# --------------------------------------------------------------------------- SyntheticDataset
def test_synthetic_dataset_shapes_batches_labels_proteins():
    data = SyntheticDataset(batch_size=50, nb_genes=30, n_proteins=7, n_batches=3, n_labels=4, random_state=1)
    assert isinstance(data, GeneExpressionDataset)
    assert data.X.shape == (150, 30) and data.nb_genes == 30 and data.nb_cells == 150
    assert data.n_batches == 3
    np.testing.assert_array_equal(np.bincount(data.batch_indices.ravel()), [50, 50, 50])
    assert data.n_labels == 4 and set(np.unique(data.labels)) == {0, 1, 2, 3}
    assert list(data.cell_types) == ["undefined_0", "undefined_1", "undefined_2", "undefined_3"]
    assert list(data.gene_names[:3]) == ["0", "1", "2"]
    assert data.protein_expression.shape == (150, 7)
    assert list(data.protein_names) == list(range(7))
    assert data.cell_measurements_col_mappings == {"protein_expression": "protein_names"}
    assert data.local_means.shape == data.local_vars.shape == (150, 1)


def test_synthetic_dataset_is_zero_inflated_nb():
    data = SyntheticDataset(batch_size=500, nb_genes=100, random_state=0)
    # NB(5, 0.3): mean 5 * 0.7 / 0.3, P(0) = 0.3 ** 5; then 30 % dropout
    nb_zero = 0.3**5
    assert abs((data.X == 0).mean() - (0.3 + 0.7 * nb_zero)) < 0.01
    assert abs(data.X.mean() - 0.7 * 5 * 0.7 / 0.3) < 0.2
    # proteins are not zero-inflated
    assert (data.protein_expression == 0).mean() < 0.01


def test_synthetic_dataset_unused_cell_types_are_dropped():
    data = SyntheticDataset(batch_size=2, nb_genes=5, n_proteins=2, n_batches=1, n_labels=50, random_state=0)
    assert data.n_labels == len(data.cell_types) == len(np.unique(data.labels)) <= 2


def test_synthetic_dataset_reproduces_legacy_numbers():
    # scvi 0.6.8: np.random.seed(0); SyntheticDataset()
    np.random.seed(0)
    data = SyntheticDataset()
    np.testing.assert_array_equal(data.X[:2, :5], [[23, 12, 11, 6, 17], [7, 0, 0, 21, 12]])
    np.testing.assert_array_equal(data.labels[:5].ravel(), [2, 2, 0, 0, 2])
    np.testing.assert_array_equal(data.protein_expression[:2, :5], [[10, 19, 12, 5, 11], [9, 8, 8, 6, 14]])
    assert data.X.dtype == np.float32


def test_random_state_is_local_and_reproducible():
    state = np.random.get_state()[1].copy()
    first = SyntheticDataset(batch_size=20, nb_genes=10, n_proteins=3, random_state=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    second = SyntheticDataset(batch_size=20, nb_genes=10, n_proteins=3, random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(first.protein_expression, second.protein_expression)
    third = SyntheticDataset(batch_size=20, nb_genes=10, n_proteins=3, random_state=6)
    assert not np.array_equal(first.X, third.X)
    from_generator = SyntheticDataset(batch_size=20, nb_genes=10, random_state=np.random.default_rng(0))
    assert from_generator.X.shape == (40, 10)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(nb_genes=0), ValueError, "`nb_genes` must be at least 1; got 0"),
        (dict(batch_size=-3), ValueError, "`batch_size` must be at least 1"),
        (dict(n_proteins=-1), ValueError, "`n_proteins` must be at least 0"),
        (dict(n_labels="3"), TypeError, "`n_labels` must be an int; got str"),
        (dict(n_batches=2.0), TypeError, "`n_batches` must be an int; got float"),
        (dict(random_state="seed"), TypeError, "`random_state` must be None, an int"),
    ],
)
def test_synthetic_dataset_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticDataset(**kwargs)


def test_legacy_random_state_rejects_bool():
    with pytest.raises(TypeError, match="`random_state` must be"):
        legacy_random_state(True)


# --------------------------------------------------------------------------- SyntheticDatasetCorr
def _block_assignment(data: SyntheticDatasetCorr) -> np.ndarray:
    """Cluster whose highly expressed block has the most counts in each cell."""
    blocks = data.is_highly_exp[0][np.arange(data.n_clusters) * data.n_cells_cluster]
    return np.argmax(np.asarray(data.X) @ blocks.T, axis=1)


def test_corr_dataset_structure():
    data = SyntheticDatasetCorr(n_cells_cluster=40, n_clusters=4, n_genes_high=10, n_overlap=3)
    n_genes = 4 * (10 - 3) + 3
    assert data.X.shape == (160, n_genes) and data.n_genes_total == n_genes
    assert data.n_batches == 1 and data.n_labels == 4
    np.testing.assert_array_equal(data.labels.ravel(), np.repeat(np.arange(4), 40))
    high = data.is_highly_exp[0]
    assert high.shape == (160, n_genes) and (high.sum(axis=1) == 10).all()
    # consecutive clusters share n_overlap highly expressed genes
    first_cells = np.arange(4) * 40
    assert (high[first_cells[0]] & high[first_cells[1]]).sum() == 3
    assert (high[first_cells[0]] & high[first_cells[2]]).sum() == 0
    # each cell's Poisson rates sum to lam_0, high genes weigh 4 times more
    np.testing.assert_allclose(data.exprs_param[0].sum(axis=1), 50.0)
    rates = data.exprs_param[0, 0]
    np.testing.assert_allclose(rates[high[0]].max() / rates[~high[0]].max(), 4.0)


def test_corr_dataset_planted_clusters_are_separable():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    data = SyntheticDatasetCorr()
    labels = data.labels.ravel()
    assert (_block_assignment(data) == labels).mean() > 0.99
    log_counts = np.log1p(np.asarray(data.X))
    found = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(log_counts)
    assert adjusted_rand_score(labels, found) > 0.95
    # the data is Poisson: mean and variance agree within each cluster
    cluster = np.asarray(data.X)[labels == 0]
    np.testing.assert_allclose(cluster.mean(axis=0), data.exprs_param[0, 0], rtol=0.4)
    np.testing.assert_allclose(cluster.var(axis=0), cluster.mean(axis=0), rtol=0.5)


def test_corr_dataset_is_deterministic_by_default_without_touching_numpy():
    state = np.random.get_state()[1].copy()
    first, second = SyntheticDatasetCorr(n_cells_cluster=20), SyntheticDatasetCorr(n_cells_cluster=20)
    np.testing.assert_array_equal(first.X, second.X)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    other = SyntheticDatasetCorr(n_cells_cluster=20, random_state=1)
    assert not np.array_equal(first.X, other.X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_overlap=25), r"`n_overlap` \(25\) must be less than `n_genes_high` \(25\)"),
        (dict(n_clusters=0), "`n_clusters` must be at least 1"),
        (dict(lam_0=0.0), "`weight_high`, `weight_low` and `lam_0` must be positive"),
    ],
)
def test_corr_dataset_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticDatasetCorr(**kwargs)


# --------------------------------------------------------------------------- ZISyntheticDatasetCorr
def test_zi_dataset_adds_technical_zeros_to_the_same_poisson_counts():
    plain = SyntheticDatasetCorr()
    zi = ZISyntheticDatasetCorr()
    technical = zi.is_technical[0]
    # same seed, same Poisson draws: zero-inflation only zeroes entries
    np.testing.assert_array_equal(zi.X, np.where(technical, 0, plain.X))
    assert (zi.X == 0).mean() > (plain.X == 0).mean() + 0.02
    high = zi.is_highly_exp[0]
    assert abs(technical[high].mean() - 0.05) < 0.01
    assert abs(technical[~high].mean() - 0.08) < 0.01
    # observed zeros match P(Poisson zero) + P(not zero) * P(dropout)
    expected_zeros = zi.poisson_zero + (1 - zi.poisson_zero) * zi.p_dropout
    assert abs((zi.X == 0).mean() - expected_zeros.mean()) < 0.01
    for table in (zi.probas_zero_bio_tech_high, zi.probas_zero_bio_tech_low):
        assert table.shape == (2, 2)
        np.testing.assert_allclose(table.sum(), 1.0)
    np.testing.assert_allclose(zi.probas_zero_bio_tech_high.sum(axis=0), [0.95, 0.05])
    # planted clusters survive the dropout
    assert (_block_assignment(zi) == zi.labels.ravel()).mean() > 0.99


def test_zi_dataset_dropout_decays_with_expression():
    zi = ZISyntheticDatasetCorr(dropout_coef_high=0.5, lam_dropout_high=1.0, dropout_coef_low=0.5, lam_dropout_low=1.0)
    rates = zi.exprs_param[0, 0]
    high = zi.is_highly_exp[0, 0]
    np.testing.assert_allclose(zi.p_dropout[0, 0], 0.5 * np.exp(-(rates**2)))
    assert zi.p_dropout[0, 0][high].max() < zi.p_dropout[0, 0][~high].min()


def test_zi_dataset_reproduces_legacy_numbers():
    zi = ZISyntheticDatasetCorr()
    np.testing.assert_array_equal(zi.X[:2, :8], [[2, 1, 2, 3, 0, 0, 0, 5], [2, 1, 0, 1, 1, 1, 2, 2]])
    np.testing.assert_allclose(
        zi.probas_zero_bio_tech_high, [[0.69958272, 0.03682014], [0.25041728, 0.01317986]], atol=1e-8
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dropout_coef_high=1.0), r"`dropout_coef_high` must be in \[0, 1\); got 1.0"),
        (dict(dropout_coef_low=-0.1), r"`dropout_coef_low` must be in \[0, 1\)"),
        (dict(lam_dropout_low=-1.0), "`lam_dropout_low` must be non-negative"),
    ],
)
def test_zi_dataset_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ZISyntheticDatasetCorr(**kwargs)


# --------------------------------------------------------------------------- SyntheticRandomDataset
@pytest.fixture
def random_metadata_dir(legacy_fixtures, tmp_path):
    shutil.copy(legacy_fixtures / SyntheticRandomDataset.FILENAME, tmp_path)
    return tmp_path


@pytest.mark.data
def test_random_dataset_from_metadata(random_metadata_dir):
    data = SyntheticRandomDataset(save_path=str(random_metadata_dir))
    assert data.X.shape == (1897, 10)
    assert data.n_labels == 11 and data.labels.shape == (1897, 1)
    assert (np.asarray(data.X).sum(axis=1) > 0).all()
    assert set(data.simlr_metadata) >= {"clusters"}
    # legacy numbers (scvi 0.6.8)
    np.testing.assert_array_equal(data.X[0], [0, 4, 0, 0, 7, 0, 0, 3, 4, 0])
    np.testing.assert_array_equal(data.labels[:10].ravel(), [9, 2, 0, 5, 2, 1, 7, 4, 0, 0])
    # zero-inflated: about 70 % dropout on top of the gamma-Poisson zeros
    assert 0.7 < (np.asarray(data.X) == 0).mean() < 0.85


@pytest.mark.data
def test_random_dataset_other_parameters_do_not_fit_the_labels(random_metadata_dir):
    with pytest.raises(ValueError, match="labels 1897 cells but .* leave .* cells with counts"):
        SyntheticRandomDataset(dropout=0.2, save_path=str(random_metadata_dir))


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(dropout=1.0), r"`dropout` must be in \[0, 1\)"), (dict(mu=0.0), "`mu` and `theta` must be positive")],
)
def test_random_dataset_bad_input(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        SyntheticRandomDataset(save_path=str(tmp_path), **kwargs)


def test_random_dataset_missing_file_without_network_names_the_url(tmp_path, monkeypatch):
    from scvi.dataset._download import DownloadError

    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    monkeypatch.setenv("SCVI_DATA_MIRROR", str(empty_mirror))
    with pytest.raises(DownloadError, match="random_metadata.pickle"):
        SyntheticRandomDataset(save_path=str(tmp_path / "data"))
    assert not (tmp_path / "data" / SyntheticRandomDataset.FILENAME).exists()
