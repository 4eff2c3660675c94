"""Bayes-factor differential expression of a trained VAE on counts with planted DE genes."""
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import UnsupervisedTrainer
from scvi.models import VAE

VANILLA_COLUMNS = ["proba_m1", "proba_m2", "bayes_factor", "scale1", "scale2"]
RAW_COLUMNS = [
    "raw_mean1",
    "raw_mean2",
    "non_zeros_proportion1",
    "non_zeros_proportion2",
    "raw_normalized_mean1",
    "raw_normalized_mean2",
]
CHANGE_COLUMNS = ["proba_de", "proba_not_de", "bayes_factor", "scale1", "scale2"] + [
    f"lfc_{k}" for k in ("mean", "median", "std", "min", "max")
]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Small models run much faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted():
    """450 cells, 100 genes, 3 clusters with 15 planted DE genes each, 2 batches, and a VAE
    trained on them (once for the module)."""
    import scvi

    scvi.set_seed(0)
    truth = planted_counts(n_cells=450, n_genes=100, n_clusters=3, n_batches=2, n_de_genes=15, lfc_scale=2.5)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        truth.X,
        batch_indices=truth.batch_indices,
        labels=truth.labels,
        gene_names=truth.gene_names,
        cell_types=truth.cell_types,
    )
    vae = VAE(dataset.nb_genes, dataset.n_batches, n_latent=4, n_hidden=32)
    trainer = UnsupervisedTrainer(
        vae,
        dataset,
        train_size=1.0,
        use_cuda=False,
        n_epochs_kl_warmup=None,
        frequency=None,
        data_loader_kwargs={"batch_size": 64},
    )
    trainer.train(n_epochs=30, lr=1e-2)
    posterior = trainer.create_posterior(vae, dataset, indices=np.arange(len(dataset)))
    return truth, dataset, posterior


def _true_lfc(truth, a=0, b=1):
    """Planted base-2 log fold change between clusters ``a`` and ``b``."""
    return (truth.lfc[a] - truth.lfc[b]) / np.log(2)


# ---------------------------------------------------------------------------- correctness
def test_vanilla_bayes_factors_rank_planted_de_genes(planted):
    truth, _, post = planted
    res = post.differential_expression_score(truth.labels == 0, truth.labels == 1, n_samples=600)
    assert list(res.columns) == VANILLA_COLUMNS + RAW_COLUMNS
    assert (np.diff(res["bayes_factor"].values) <= 0).all()  # sorted, descending
    assert sorted(res.index) == sorted(truth.gene_names)
    res = res.loc[truth.gene_names]
    assert roc_auc_score(_true_lfc(truth) != 0, res["bayes_factor"].abs()) >= 0.9
    np.testing.assert_allclose(res["proba_m1"] + res["proba_m2"], 1.0)
    counts = truth.X[truth.labels == 0]
    np.testing.assert_allclose(res["raw_mean1"], counts.mean(0), rtol=1e-5)
    np.testing.assert_allclose(res["non_zeros_proportion1"], (counts > 0).mean(0), rtol=1e-5)


def test_change_mode_lfc_tracks_planted_and_proba_de_follows_delta(planted):
    truth, _, post = planted
    res = post.differential_expression_score(
        truth.labels == 0, truth.labels == 1, mode="change", delta=1.0, n_samples=600, cred_interval_lvls=[0.5, 0.9]
    )
    interval_columns = [f"lfc_confidence_interval_{lv}_{end}" for lv in ("0.5", "0.9") for end in ("min", "max")]
    assert list(res.columns) == CHANGE_COLUMNS + interval_columns + RAW_COLUMNS
    assert (np.diff(res["proba_de"].values) <= 0).all()
    res = res.loc[truth.gene_names]
    true = _true_lfc(truth)
    assert np.corrcoef(res["lfc_mean"], true)[0, 1] >= 0.8
    far, near = np.abs(true) > 1.5, np.abs(true) < 0.5
    assert roc_auc_score(far[far | near], res["proba_de"][far | near]) >= 0.9
    assert res.loc[far, "proba_de"].mean() > 0.8 > 0.3 > res.loc[near, "proba_de"].mean()
    assert (res["lfc_confidence_interval_0.5_min"] <= res["lfc_confidence_interval_0.5_max"]).all()
    assert (res["lfc_confidence_interval_0.9_min"] <= res["lfc_confidence_interval_0.5_min"]).all()
    assert ((res["lfc_min"] <= res["lfc_median"]) & (res["lfc_median"] <= res["lfc_max"])).all()


def test_a_larger_delta_lowers_proba_de(planted):
    truth, _, post = planted
    kwargs = dict(idx1=truth.labels == 0, idx2=truth.labels == 1, mode="change", n_samples=400)
    small = post.get_bayes_factors(delta=0.2, **kwargs)["proba_de"]
    large = post.get_bayes_factors(delta=2.0, **kwargs)["proba_de"]
    assert small.mean() > large.mean() + 0.2


def test_swapping_the_groups_flips_signs(planted):
    truth, _, post = planted
    a, b = truth.labels == 0, truth.labels == 1
    forward = post.get_bayes_factors(a, b, mode="change", n_samples=600)["lfc_mean"]
    backward = post.get_bayes_factors(b, a, mode="change", n_samples=600)["lfc_mean"]
    assert np.corrcoef(forward, -backward)[0, 1] > 0.95
    bf_forward = post.get_bayes_factors(a, b, n_samples=600)["bayes_factor"]
    bf_backward = post.get_bayes_factors(b, a, n_samples=600)["bayes_factor"]
    de = _true_lfc(truth) != 0
    strong = de & (np.abs(bf_forward) > 3)
    assert strong.sum() >= 15
    assert (np.sign(bf_forward[strong]) == -np.sign(bf_backward[strong])).all()
    assert (np.sign(bf_forward[strong]) == np.sign(_true_lfc(truth)[strong])).all()


def test_legacy_workflow_with_index_lists_and_permutations(planted):
    """The original test suite's calls: integer cell indices, few samples, permuted pairs."""
    _, dataset, post = planted
    res = post.differential_expression_score(
        idx1=[1, 2, 3], idx2=[4, 5, 6, 7], n_samples=10, mode="vanilla", use_permutation=True, M_permutation=100
    )
    assert res.shape == (dataset.nb_genes, len(VANILLA_COLUMNS + RAW_COLUMNS))
    res = post.differential_expression_score(
        idx1=[1, 2, 3],
        idx2=[4, 5, 6, 7],
        n_samples=10,
        mode="change",
        use_permutation=True,
        M_permutation=100,
        cred_interval_lvls=[0.5, 0.95],
    )
    assert (res["lfc_confidence_interval_0.5_min"] <= res["lfc_confidence_interval_0.5_max"]).all()
    assert (res["lfc_confidence_interval_0.95_min"] <= res["lfc_confidence_interval_0.95_max"]).all()
    assert ((0 <= res["proba_de"]) & (res["proba_de"] <= 1)).all()


def test_custom_change_and_domain_functions(planted):
    truth, _, post = planted
    info = post.get_bayes_factors(
        truth.labels == 0,
        truth.labels == 1,
        mode="change",
        n_samples=300,
        change_fn=lambda x, y: x - y,
        m1_domain_fn=lambda r: r > 0,
    )
    vanilla = post.get_bayes_factors(truth.labels == 0, truth.labels == 1, n_samples=300)
    # "x - y > 0" is the vanilla hypothesis: both estimate the same probabilities
    assert np.abs(info["proba_de"] - vanilla["proba_m1"]).mean() < 0.05
    assert np.corrcoef(info["lfc_mean"], info["scale1"] - info["scale2"])[0, 1] > 0.99


# ---------------------------------------------------------------------------- one vs all, within clusters
def test_one_vs_all_tables_per_cluster_in_order(planted, tmp_path):
    truth, dataset, post = planted
    res, names = post.one_vs_all_degenes(n_samples=300, output_file=True, save_dir=str(tmp_path), filename="mine")
    assert names == list(dataset.cell_types)
    assert len(res) == 3
    for k, table in enumerate(res):
        assert list(table.columns) == VANILLA_COLUMNS + RAW_COLUMNS + ["clusters"]
        assert (table["clusters"] == names[k]).all()
        table = table.loc[truth.gene_names]
        assert roc_auc_score(truth.lfc[k] != 0, table["bayes_factor"].abs()) >= 0.85
        np.testing.assert_allclose(table["raw_mean2"], truth.X[truth.labels != k].mean(0), rtol=1e-4)
    sheets = pd.read_excel(tmp_path / "differential_expression.mine.xlsx", sheet_name=None, index_col=0)
    assert list(sheets) == names


def test_one_vs_all_min_cells_and_custom_labels(planted):
    truth, _, post = planted
    labels = truth.labels.copy()
    labels[np.flatnonzero(labels == 2)[:12]] = 7  # exactly min_cells cells: kept
    labels[np.flatnonzero(labels == 2)[:5]] = 5  # fewer: skipped
    labels[np.flatnonzero(labels == 0)[:20]] = -1  # negative labels: left out
    res, names = post.one_vs_all_degenes(cell_labels=labels, min_cells=12, n_samples=200, mode="change")
    assert names == [0, 1, 2, 7]
    assert [t["clusters"].iloc[0] for t in res] == names
    assert all(list(t.columns[:5]) == CHANGE_COLUMNS[:5] for t in res)
    rest_of_0 = (labels != 0) & (labels >= 0)
    np.testing.assert_allclose(res[0].loc[truth.gene_names, "raw_mean2"], truth.X[rest_of_0].mean(0), rtol=1e-4)


def test_one_vs_all_within_a_subset(planted):
    truth, _, post = planted
    subset = truth.batch_indices == 0
    res, names = post.one_vs_all_degenes(subset=subset, n_samples=200, use_observed_batches=True)
    assert len(res) == 3
    in_0 = subset & (truth.labels == 0)
    np.testing.assert_allclose(res[0].loc[truth.gene_names, "raw_mean1"], truth.X[in_0].mean(0), rtol=1e-4)


def test_within_cluster_degenes(planted, tmp_path):
    truth, dataset, post = planted
    states = truth.batch_indices == 0
    res, names = post.within_cluster_degenes(
        states, n_samples=200, batch1=[0], batch2=[1], output_file=True, save_dir=str(tmp_path)
    )
    assert names == list(dataset.cell_types) and len(res) == 3
    in_cluster = (truth.labels == 1) & states
    np.testing.assert_allclose(res[1].loc[truth.gene_names, "raw_mean1"], truth.X[in_cluster].mean(0), rtol=1e-4)
    assert (tmp_path / "differential_expression.within_cluster.xlsx").exists()
    res, names = post.within_cluster_degenes(states, min_cells=200, n_samples=50)
    assert res == [] and names == []


# ---------------------------------------------------------------------------- sampling and batches
def test_scale_sampler_batches_and_sizes(planted):
    truth, dataset, post = planted
    out = post.scale_sampler(truth.labels == 0, n_samples=100)
    assert out["scale"].shape == (100, dataset.nb_genes)
    assert sorted(np.unique(out["batch"])) == [0.0, 1.0] and (out["batch"] == 0).sum() == 50
    np.testing.assert_allclose(out["scale"].sum(1), 1.0, rtol=1e-4)
    observed = post.scale_sampler([0, 1, 2], n_samples=None, n_samples_per_cell=4, use_observed_batches=True)
    assert observed["scale"].shape == (12, dataset.nb_genes) and np.isnan(observed["batch"]).all()
    mean = post.scale_sampler(truth.labels == 0, n_samples=10, batchid=[1], give_mean=True)
    assert mean["scale"].shape == (dataset.nb_genes,) and (mean["batch"] == 1).all()
    with pytest.warns(UserWarning, match="Ignoring n_samples_per_cell"):
        post.scale_sampler([0, 1], n_samples=4, n_samples_per_cell=3)
    with pytest.warns(UserWarning, match="very small sample size"):
        assert post.scale_sampler([0, 1], n_samples=1)["scale"].shape[0] == 4


def test_sampling_restores_the_posterior_loader(planted):
    _, dataset, post = planted
    loader, sampler = post.data_loader, post.data_loader_kwargs["sampler"]
    draws = np.array([3, 3, 3, 5, 8, 8])
    rows = np.concatenate(list(post._iter_scales(draws, batch=0)))
    assert rows.shape == (6, dataset.nb_genes)
    assert post.data_loader is loader and post.data_loader_kwargs["sampler"] is sampler
    np.testing.assert_array_equal(np.sort(post.indices), np.arange(len(dataset)))


def test_batch_configurations(planted):
    truth, _, post = planted
    a, b = truth.labels == 0, truth.labels == 1
    disjoint = post.get_bayes_factors(a, b, batchid1=[0], batchid2=[1], n_samples=200, mode="change")
    assert disjoint["lfc_mean"].shape == (100,)
    with pytest.warns(UserWarning, match="non-null intersection"):
        post.get_bayes_factors(a, b, batchid1=[0, 1], batchid2=[1], n_samples=200)
    observed = post.get_bayes_factors(a, b, use_observed_batches=True, n_samples=400, mode="change")
    same = post.get_bayes_factors(a, b, n_samples=400, mode="change")
    assert np.corrcoef(observed["lfc_mean"], same["lfc_mean"])[0, 1] > 0.9


def test_posterior_on_part_of_the_cells_logs_a_warning(planted, caplog):
    truth, dataset, post = planted
    partial = type(post)(post.model, dataset, indices=np.arange(100), use_cuda=False)
    scvi_logger = logging.getLogger("scvi")  # does not propagate to the root logger
    scvi_logger.addHandler(caplog.handler)
    try:
        partial.get_bayes_factors(truth.labels == 0, truth.labels == 1, n_samples=20)
    finally:
        scvi_logger.removeHandler(caplog.handler)
    assert "requires a Posterior object created with all indices" in caplog.text


def test_differential_expression_stats_is_deprecated(planted):
    truth, dataset, post = planted
    with pytest.warns(DeprecationWarning, match="deprecated"):
        scales, labels = post.differential_expression_stats(M_sampling=3)
    assert scales.shape == (3 * len(dataset), dataset.nb_genes)
    np.testing.assert_array_equal(np.bincount(labels), 3 * np.bincount(truth.labels))


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(mode="bayes"), ValueError, "`mode` must be one of 'vanilla', 'change'"),
        (dict(mode="change", change_fn="fold"), ValueError, "change_fn"),
        (dict(mode="change", m1_domain_fn=lambda a, b: a), ValueError, "m1_domain_fn"),
        (dict(mode="change", delta=-1), ValueError, "delta"),
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(use_permutation=True, M_permutation=0), ValueError, "M_permutation"),
        (dict(cred_interval_lvls=[1.5], mode="change"), ValueError, "cred_interval_lvls"),
        (dict(batchid1=[0], use_observed_batches=True), ValueError, "Unconsistent batch policy"),
        (dict(batchid1=[9]), ValueError, "batchid1"),
        (dict(idx1=np.zeros(450, dtype=bool)), ValueError, "`idx1` selects no cells"),
        (dict(idx2=[0.5, 1.5]), TypeError, "idx2"),
        (dict(idx2=[1000]), ValueError, "idx2"),
        (dict(gene_list=["gene_0", "gene_1"]), ValueError, "gene_list"),
    ],
)
def test_bad_arguments(planted, kwargs, error, match):
    truth, _, post = planted
    call = dict(idx1=truth.labels == 0, idx2=truth.labels == 1, n_samples=20)
    call.update(kwargs)
    with pytest.raises(error, match=match):
        post.differential_expression_score(**call)


def test_bad_cluster_arguments(planted):
    truth, _, post = planted
    with pytest.raises(ValueError, match="cell_labels"):
        post.one_vs_all_degenes(cell_labels=[0, 1])
    with pytest.raises(ValueError, match="states"):
        post.within_cluster_degenes(states=[True, False])
    with pytest.raises(TypeError, match="states"):
        post.within_cluster_degenes(states=truth.labels)
    with pytest.raises(ValueError, match="selections"):
        post.scale_sampler(None)
    with pytest.raises(ValueError, match="mode"):
        post.one_vs_all_degenes(mode="vanila")
