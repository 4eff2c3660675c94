"""TotalTrainer and TotalPosterior on synthetic CITE-seq data with planted protein background/foreground."""
from typing import NamedTuple

import numpy as np
import pytest
import torch

from scvi.dataset import CellMeasurement, GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import TotalPosterior, TotalTrainer
from scvi.inference.posterior_utils import load_posterior
from scvi.models import TOTALVI
from scvi.models.totalvi import protein_background_prior

N_PROTEINS = 8


class PlantedCiteSeq(NamedTuple):
    dataset: GeneExpressionDataset
    positive: np.ndarray  # (n_cells, n_proteins): planted foreground entries
    labels: np.ndarray


def planted_citeseq(n_cells=500, n_genes=60, n_batches=2, missing_protein_in_batch1=False, seed=0) -> PlantedCiteSeq:
    """Three clusters; protein p (< 6) is foreground (8-15x its background) in cluster p % 3 only;
    proteins 6 and 7 are background everywhere. Background levels differ between batches."""
    truth = planted_counts(
        n_cells=n_cells, n_genes=n_genes, n_clusters=3, n_batches=n_batches, n_de_genes=10,
        mean_library=1500, random_state=seed,
    )
    rng = np.random.default_rng(seed + 1)
    background = np.exp(rng.normal(np.log(15), 0.4, size=(n_batches, N_PROTEINS)))
    per_cluster = np.zeros((3, N_PROTEINS), dtype=bool)
    per_cluster[np.arange(6) % 3, np.arange(6)] = True
    positive = per_cluster[truth.labels]
    mean = background[truth.batch_indices] * np.where(positive, rng.uniform(8, 15, N_PROTEINS), 1.0)
    proteins = rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(np.float32)
    if missing_protein_in_batch1:
        proteins[truth.batch_indices == 1, 0] = 0
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        truth.X,
        batch_indices=truth.batch_indices,
        labels=truth.labels,
        gene_names=truth.gene_names,
        cell_types=truth.cell_types,
        Ys=[
            CellMeasurement(
                name="protein_expression",
                data=proteins,
                columns_attr_name="protein_names",
                columns=np.array([f"protein_{i}" for i in range(N_PROTEINS)]),
            )
        ],
    )
    return PlantedCiteSeq(dataset, positive, truth.labels)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The test machine is shared: one torch thread avoids oversubscription stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def citeseq():
    return planted_citeseq()


@pytest.fixture(scope="module")
def trained(citeseq, one_thread):
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = citeseq.dataset
    prior_mean, prior_scale = protein_background_prior(dataset.protein_expression, dataset.batch_indices, n_batch=2)
    model = TOTALVI(
        dataset.nb_genes,
        N_PROTEINS,
        n_batch=dataset.n_batches,
        n_hidden=64,
        n_latent=5,
        protein_background_prior_mean=prior_mean,
        protein_background_prior_scale=prior_scale,
    )
    trainer = TotalTrainer(
        model, dataset, early_stopping_kwargs=None, frequency=20, n_iter_kl_warmup=100, show_progbar=False
    )
    trainer.train(n_epochs=60)
    return trainer


@pytest.fixture(scope="module")
def full(trained, citeseq):
    return trained.create_posterior(
        trained.model, citeseq.dataset, indices=np.arange(len(citeseq.dataset)), type_class=TotalPosterior
    ).sequential()


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(scores)) + 1
    n_pos = positive.sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (~positive).sum())


def separation(values: np.ndarray, positive: np.ndarray) -> float:
    """|mean difference| / pooled standard deviation."""
    a, b = values[positive], values[~positive]
    return abs(a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)


# ---------------------------------------------------------------------------------------- training
def test_training_lowers_the_elbo(trained):
    for name in ("elbo_train_set", "elbo_test_set"):
        history = trained.history[name]
        assert len(history) >= 3
        assert history[-1] < 0.5 * history[0]
        assert history[-1] < history[-2] * 1.05


def test_foreground_probability_high_where_planted(full, citeseq):
    foreground = 1 - full.get_sample_mixing(n_samples=10)
    assert foreground.shape == (len(citeseq.dataset), N_PROTEINS)
    planted = citeseq.positive[:, :6]
    on, off = foreground[:, :6][planted].mean(), foreground[:, :6][~planted].mean()
    assert on > 0.75 and off < 0.5, (on, off)
    for p in range(6):
        assert auroc(foreground[:, p], planted[:, p]) > 0.95


def test_denoised_proteins_separate_populations_better_than_raw(full, citeseq):
    _, denoised = full.get_normalized_denoised_expression(n_samples=10, sample_protein_mixing=False)
    raw = citeseq.dataset.protein_expression
    planted = citeseq.positive
    raw_sep = [separation(np.log1p(raw[:, p]), planted[:, p]) for p in range(6)]
    denoised_sep = [separation(np.log1p(denoised[:, p]), planted[:, p]) for p in range(6)]
    assert np.median(denoised_sep) > np.median(raw_sep)


def test_protein_de_finds_planted_proteins(full, citeseq):
    in_cluster0 = citeseq.labels == 0
    table = full.differential_expression_score(in_cluster0, ~in_cluster0, n_samples=200, M_permutation=2000)
    names = list(citeseq.dataset.gene_names) + list(citeseq.dataset.protein_names)
    assert sorted(table.index) == sorted(names)
    proteins = table.loc[list(citeseq.dataset.protein_names), "bayes_factor"]
    # cluster 0 carries the foreground of proteins 0 and 3; proteins 1, 2, 4, 5 are foreground elsewhere
    assert set(proteins.sort_values(ascending=False).index[:2]) == {"protein_0", "protein_3"}
    assert (proteins[["protein_1", "protein_2", "protein_4", "protein_5"]] < 0).all()
    assert np.isnan(table.loc["protein_0", "raw_normalized_mean1"])
    assert table.loc["protein_0", "raw_mean1"] > table.loc["protein_0", "raw_mean2"]


def test_missing_protein_is_masked_for_its_batch(one_thread):
    data = planted_citeseq(n_cells=120, missing_protein_in_batch1=True)
    mask = data.dataset.get_batch_mask_cell_measurement("protein_expression")
    assert not mask[1][0] and mask[0][0] and mask[1][1:].all()
    model = TOTALVI(data.dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=16, n_latent=4, protein_batch_mask=mask)
    trainer = TotalTrainer(model, data.dataset, early_stopping_kwargs=None, frequency=1, show_progbar=False)
    batch1 = trainer.create_posterior(
        model, data.dataset, indices=np.flatnonzero(data.dataset.batch_indices.ravel() == 1), type_class=TotalPosterior
    )
    model.zero_grad()
    for tensors in batch1:
        trainer.loss(tensors).backward()
    assert model.py_r.grad[0] == 0 and model.background_pro_alpha.grad[0, 1] == 0
    assert model.py_r.grad[1] != 0
    assert batch1.nb_cells == (data.dataset.batch_indices == 1).sum()
    trainer.train(n_epochs=2)
    assert np.isfinite(trainer.history["elbo_test_set"]).all()


# ---------------------------------------------------------------------------------------- posterior API
def test_latent_and_parameter_outputs(full, citeseq):
    n_cells, n_genes = len(citeseq.dataset), citeseq.dataset.nb_genes
    latent, batch_indices, labels, library = full.get_latent()
    assert latent.shape == (n_cells, 5) and batch_indices.shape == (n_cells, 1)
    np.testing.assert_array_equal(labels, citeseq.dataset.labels.ravel())
    np.testing.assert_allclose(latent.sum(1), 1, rtol=1e-4)  # logistic-normal latent space
    assert library.shape == (n_cells,) and (library > 0).all()
    # library size tracks the observed total counts
    assert np.corrcoef(np.log(library), np.log(citeseq.dataset.X.sum(1)))[0, 1] > 0.6
    assert full.get_latent(sample=True)[0].shape == (n_cells, 5)

    assert full.get_protein_background_mean().shape == (n_cells, N_PROTEINS)
    assert full.get_sample_dropout().shape == (n_cells, n_genes)
    assert full.get_sample_dropout(n_samples=3, give_mean=False).shape == (n_cells, n_genes, 3)
    assert full.get_sample_mixing(n_samples=2, transform_batch=[0, 1]).shape == (n_cells, N_PROTEINS)
    protein_mean = full.get_protein_mean(n_samples=4, give_mean=False)
    assert protein_mean.shape == (n_cells, N_PROTEINS, 4) and (protein_mean > 0).all()
    genes, proteins = full.get_normalized_denoised_expression(n_samples=3, give_mean=False, transform_batch=0)
    assert genes.shape == (n_cells, n_genes, 3) and proteins.shape == (n_cells, N_PROTEINS, 3)
    np.testing.assert_allclose(genes.sum(1), 1, rtol=1e-4)
    scale = full.get_sample_scale(eps=0.5)
    assert scale.shape == (n_cells, n_genes + N_PROTEINS) and (scale[:, n_genes:] >= 0.5).all()
    samples = full.get_sample_scale(n_samples=3, return_mean=False, transform_batch=1)
    assert samples.shape == (3, n_cells, n_genes + N_PROTEINS)  # as Posterior.get_sample_scale
    imputed = full.imputation()
    assert imputed.shape == (n_cells, n_genes)
    # cells with planted up-regulated genes get higher imputed values for them
    assert np.corrcoef(np.log1p(imputed).ravel(), np.log1p(citeseq.dataset.X).ravel())[0, 1] > 0.6


def test_generation(full, citeseq):
    n_cells, n_features = len(citeseq.dataset), citeseq.dataset.nb_genes + N_PROTEINS
    new, old = full.generate(n_samples=10, batch_size=100)
    assert new.shape == (n_cells, n_features, 10) and old.shape == (n_cells, n_features)
    observed = np.concatenate([citeseq.dataset.X, citeseq.dataset.protein_expression], axis=1)
    np.testing.assert_array_equal(old, observed)
    # the posterior-predictive samples have the model's means: gene rates and the protein mixture mean
    # (10 draws per cell: the sample means of the sparsest features stay within the tolerance)
    gene_means = full.imputation(n_samples=10).mean((0, 1))
    model_means = np.concatenate([gene_means, full.get_protein_mean(n_samples=10).mean(0)])
    np.testing.assert_allclose(new.mean((0, 2)), model_means, rtol=0.15)
    denoised = full.generate_denoised_samples(n_samples=2, rna_size_factor=1000)
    assert denoised.shape == (n_cells, n_features, 2) and (denoised >= 0).all()
    for mode in ("pearson", "spearman"):
        corr = full.generate_feature_correlation_matrix(n_samples=2, correlation_mode=mode, transform_batch=[0, 1])
        assert corr.shape == (n_features, n_features)
        np.testing.assert_allclose(np.diag(corr), 1, rtol=1e-6)
    logged = full.generate_feature_correlation_matrix(n_samples=2, log_transform=True)
    assert np.isfinite(logged).all()


def test_nn_overlap_score(full):
    """Planted clusters drive both RNA and proteins: latent neighbours are protein neighbours."""
    spearman, fold_enrichment = full.nn_overlap_score(k=30)
    assert fold_enrichment > 1.5 and spearman > 0


def test_metrics(trained):
    test_set = trained.test_set
    elbo = test_set.elbo()
    gene, protein = (test_set.reconstruction_error(mode) for mode in ("gene", "protein"))
    assert test_set.reconstruction_error() == pytest.approx(gene + protein, rel=0.02)  # sampled
    assert 0 < gene + protein < elbo
    marginal = test_set.marginal_ll(n_mc_samples=10)
    assert np.isfinite(marginal) and marginal < elbo * 1.02  # importance sampling is no looser than the ELBO


def test_save_and_load_posterior(trained, citeseq, tmp_path):
    posterior = trained.create_posterior(
        trained.model, citeseq.dataset, indices=np.arange(len(citeseq.dataset)), type_class=TotalPosterior
    )
    posterior.save_posterior(str(tmp_path / "post"))
    model = TOTALVI(citeseq.dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=64, n_latent=5)
    loaded = load_posterior(str(tmp_path / "post"), model=model, use_cuda=False)
    assert loaded.posterior_type == "TotalPosterior"
    np.testing.assert_array_equal(loaded.gene_dataset.protein_expression, citeseq.dataset.protein_expression)
    model.eval()
    torch.manual_seed(1)
    before = posterior.sequential().get_latent()[0]
    torch.manual_seed(1)
    after = loaded.sequential().get_latent()[0]
    np.testing.assert_array_equal(before, after)


def test_imputation_of_corrupted_entries(one_thread, tmp_path):
    data = planted_citeseq(n_cells=120)
    model = TOTALVI(data.dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=16, n_latent=4)
    trainer = TotalTrainer(model, data.dataset, early_stopping_kwargs=None, show_progbar=False)
    trainer.corrupt_posteriors(rate=0.1)
    trainer.train(n_epochs=3)
    trainer.uncorrupt_posteriors()
    test_set = trainer.test_set
    original, imputed = test_set.imputation_list()
    cells = test_set.sequential().indices
    X, corrupted = data.dataset.X[cells], data.dataset.corrupted_X[cells]
    assert len(original) == len(imputed) == len(cells)
    assert sum(len(o) for o in original) == int((X != corrupted).sum())
    np.testing.assert_array_equal(np.concatenate(original), X[X != corrupted])
    assert all((i > 0).all() for i in imputed)  # imputed values are negative-binomial means
    original, _ = test_set.imputation_benchmark(n_samples=1, show_plot=False, save_path=str(tmp_path))
    assert len(original) == len(cells)


def test_default_early_stopping_runs_on_the_test_elbo(one_thread):
    data = planted_citeseq(n_cells=120)
    model = TOTALVI(data.dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=16, n_latent=4)
    trainer = TotalTrainer(model, data.dataset, show_progbar=False)  # early_stopping_kwargs="auto"
    assert trainer.frequency == 1
    assert trainer.n_iter_kl_warmup == int(0.75 * len(data.dataset))
    trainer.train(n_epochs=3)
    assert len(trainer.history["elbo_test_set"]) >= 3
    assert trainer.early_stopping.early_stopping_metric == "elbo"


def test_adversarial_training(citeseq, one_thread):
    dataset = citeseq.dataset
    model = TOTALVI(dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=16, n_latent=4)
    trainer = TotalTrainer(
        model, dataset, early_stopping_kwargs=None, use_adversarial_loss=True, kappa=1.0, show_progbar=False
    )
    weights = [p.detach().clone() for p in trainer.discriminator.parameters()]
    trainer.train(n_epochs=2)
    assert any(not torch.equal(w, p) for w, p in zip(weights, trainer.discriminator.parameters()))
    assert not trainer.discriminator.training  # back in eval mode after training


def test_discriminator_loss_targets():
    """A classifier sure of the true batch has a low loss for the true class and a high 'fooling' loss."""
    data = planted_citeseq(n_cells=60, n_batches=3)
    model = TOTALVI(data.dataset.nb_genes, N_PROTEINS, n_batch=3, n_hidden=8, n_latent=3)
    trainer = TotalTrainer(
        model, data.dataset, early_stopping_kwargs=None, use_adversarial_loss=True, show_progbar=False
    )
    batch = torch.tensor([[0], [1], [2]])

    class Sure(torch.nn.Module):
        def forward(self, z):
            return 20 * torch.nn.functional.one_hot(batch.view(-1), 3).float()

    trainer.discriminator = Sure()
    z = torch.zeros(3, 3)
    assert trainer.loss_discriminator(z, batch, predict_true_class=True) < 1e-3
    assert trainer.loss_discriminator(z, batch, predict_true_class=False) > 10


# ---------------------------------------------------------------------------------------- bad input
def test_bad_input_raises(citeseq):
    dataset = citeseq.dataset
    model = TOTALVI(dataset.nb_genes, N_PROTEINS, n_batch=2, n_hidden=8, n_latent=3)
    with pytest.raises(ValueError, match="n_iter_kl_warmup"):
        TotalTrainer(model, dataset, n_iter_kl_warmup="always")
    with pytest.raises(ValueError, match="early_stopping_kwargs"):
        TotalTrainer(model, dataset, early_stopping_kwargs="yes")
    with pytest.raises(ValueError, match="train_size"):
        TotalTrainer(model, dataset, train_size=1.5)
    with pytest.raises(ValueError, match="pro_recons_weight"):
        TotalTrainer(model, dataset, pro_recons_weight=-1)
    with pytest.raises(ValueError, match="kappa"):
        TotalTrainer(model, dataset, kappa=-0.5)
    with pytest.raises(ValueError, match="n_input_proteins=3"):
        TotalTrainer(TOTALVI(dataset.nb_genes, 3), dataset)
    one_batch = planted_citeseq(n_cells=60, n_batches=1).dataset
    with pytest.raises(ValueError, match="use_adversarial_loss"):
        TotalTrainer(TOTALVI(one_batch.nb_genes, N_PROTEINS), one_batch, use_adversarial_loss=True)

    no_proteins = GeneExpressionDataset()
    no_proteins.populate_from_data(dataset.X)
    with pytest.raises(ValueError, match="protein_expression"):
        TotalPosterior(model, no_proteins)
    with pytest.raises(ValueError, match="protein_expression"):
        TotalTrainer(model, no_proteins)

    posterior = TotalPosterior(model, dataset, indices=np.arange(20))
    with pytest.raises(ValueError, match="mode"):
        posterior.reconstruction_error(mode="genes")
    with pytest.raises(ValueError, match="correlation_mode"):
        posterior.generate_feature_correlation_matrix(n_samples=1, correlation_mode="kendall")
    with pytest.raises(NotImplementedError, match="generate_parameters"):
        posterior.generate_parameters()
