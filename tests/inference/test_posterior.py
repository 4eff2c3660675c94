"""Posterior: latent space, decoded expression, metrics, persistence, plots (on planted data)."""
import numpy as np
import pandas as pd
import pytest
import torch

import scvi
from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import Posterior, UnsupervisedTrainer, load_posterior
from scvi.models import VAE

N_CELLS, N_GENES = 450, 60


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the test machine is shared and oversubscribed threads spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def model_kwargs(dataset):
    return dict(n_batch=dataset.n_batches, n_hidden=32, n_latent=5)


@pytest.fixture(scope="module")
def trained():
    """A VAE trained on 3 planted clusters in 2 batches."""
    scvi.set_seed(0)
    truth = planted_counts(n_cells=N_CELLS, n_genes=N_GENES, n_clusters=3, n_batches=2, n_de_genes=12,
                           lfc_scale=3.0, theta=20.0, batch_effect=0.3, random_state=0)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(truth.X, batch_indices=truth.batch_indices, labels=truth.labels,
                               gene_names=truth.gene_names, cell_types=truth.cell_types)
    vae = VAE(dataset.nb_genes, **model_kwargs(dataset))
    trainer = UnsupervisedTrainer(vae, dataset, train_size=0.8, use_cuda=False, show_progbar=False,
                                  frequency=10, n_epochs_kl_warmup=None, batch_size=64)
    trainer.train(n_epochs=30, lr=1e-2)
    trainer.train(n_epochs=10, lr=1e-6)  # let the batch-norm running statistics settle
    full = trainer.create_posterior(trainer.model, dataset, indices=np.arange(len(dataset)))
    return trainer, full, dataset


# ------------------------------------------------------------------------------- iteration
def test_sequential_iterates_in_index_order_and_subsets(trained):
    trainer, full, dataset = trained
    posterior = trainer.test_set.sequential(batch_size=32)
    labels = np.concatenate([t.labels.numpy().ravel() for t in posterior])
    assert np.array_equal(labels, dataset.labels.ravel()[trainer.test_set.indices])
    assert posterior.nb_cells == len(trainer.test_set.indices) == 90
    assert [len(t[0]) for t in posterior][:2] == [32, 32]
    assert full.posterior_type == "Posterior"
    batch = next(iter(posterior))
    assert batch.X.dtype == torch.float32 and batch.batch_indices.shape == (32, 1)


def test_random_order_covers_each_cell_once(trained):
    trainer, _, _ = trained
    seen = np.concatenate([t.labels.numpy().ravel() for t in trainer.train_set])
    assert np.array_equal(np.sort(seen), np.sort(trained[2].labels.ravel()[trainer.train_set.indices]))


def test_minibatches_and_random_draws_are_those_of_torchs_loader(trained, monkeypatch):
    """The in-process loader yields what torch's DataLoader iterator would, from the same draws."""
    from torch.utils.data import DataLoader

    trainer, _, _ = trained

    def epoch_and_next_draw():
        torch.manual_seed(3)
        iterators = [iter(trainer.train_set), iter(trainer.test_set)]  # as zipped by the trainer
        batches = [[b.X.clone() for b in iterator] for iterator in iterators]
        return batches, torch.rand(3)

    ours, next_draw = epoch_and_next_draw()
    monkeypatch.setattr(type(trainer.train_set.data_loader), "__iter__", DataLoader.__iter__)
    reference, reference_next_draw = epoch_and_next_draw()
    assert len(ours[0]) == len(trainer.train_set.data_loader) > 1
    for our_batches, torch_batches in zip(ours, reference):
        assert len(our_batches) == len(torch_batches)
        assert all(torch.equal(a, b) for a, b in zip(our_batches, torch_batches))
    assert torch.equal(next_draw, reference_next_draw)


def test_update_sampler_indices_and_boolean_masks(trained):
    _, full, dataset = trained
    mask = np.zeros(len(dataset), dtype=bool)
    mask[:10] = True
    masked = Posterior(full.model, dataset, indices=mask, use_cuda=False)
    assert np.array_equal(masked.indices, np.arange(10))
    copy = full.sequential()
    old_loader = copy.data_loader
    copy.update_sampler_indices(np.array([5, 6, 7]))
    assert copy.nb_cells == 3 and full.nb_cells == N_CELLS
    assert sorted(torch.cat([t.labels for t in copy]).ravel().tolist()) == sorted(dataset.labels.ravel()[5:8])
    copy.data_loader = old_loader  # the documented way back
    assert copy.nb_cells == N_CELLS
    X, labels = masked.raw_data()
    assert X.shape == (10, N_GENES) and labels.shape == (10,)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"indices": np.arange(3), "shuffle": True}, ValueError, "mutually exclusive"),
    ({"indices": np.array([0, 10**6])}, ValueError, "indices"),
    ({"indices": np.array([0.5, 1.5])}, TypeError, "indices"),
])
def test_posterior_rejects_bad_indices(trained, kwargs, error, match):
    _, full, dataset = trained
    with pytest.raises(error, match=match):
        Posterior(full.model, dataset, use_cuda=False, **kwargs)


# ------------------------------------------------------------------------------- latent space
def test_latent_space_separates_planted_clusters(trained):
    _, full, _ = trained
    latent, batch_indices, labels = full.sequential().get_latent()
    assert latent.shape == (N_CELLS, 5) and batch_indices.shape == (N_CELLS, 1) and labels.shape == (N_CELLS,)
    asw, nmi, ari, uca = full.clustering_scores(random_state=0)
    assert asw > 0.2 and nmi > 0.7 and ari > 0.7 and uca > 0.85  # chance: ~0, 0, 0, 1/3
    assert full.knn_purity() > 0.85
    gmm_scores = full.clustering_scores(prediction_algorithm="gmm", random_state=0)
    assert gmm_scores[1] > 0.6


def test_clustering_scores_rejects_unknown_algorithm(trained):
    with pytest.raises(ValueError, match="prediction_algorithm"):
        trained[1].clustering_scores(prediction_algorithm="kmeans")


def test_entropy_batch_mixing_is_between_zero_and_log2(trained):
    score = trained[1].entropy_batch_mixing(random_state=0)
    assert 0.0 < score <= np.log(2)


# ------------------------------------------------------------------------------- decoded expression
def test_transform_batch_changes_outputs_only_through_the_batch(trained):
    _, full, dataset = trained
    posterior = full.sequential()
    batches = dataset.batch_indices.ravel()

    def rate(transform_batch):
        torch.manual_seed(1)
        return posterior.imputation(transform_batch=transform_batch)

    observed, in_0, in_1, both = rate(None), rate(0), rate(1), rate([0, 1])
    np.testing.assert_allclose(in_0[batches == 0], observed[batches == 0], rtol=1e-5)
    np.testing.assert_allclose(in_1[batches == 1], observed[batches == 1], rtol=1e-5)
    assert not np.allclose(in_0[batches == 1], observed[batches == 1], rtol=1e-2)
    torch.manual_seed(1)  # a list averages passes in each batch, drawn one after the other
    sequential_passes = [posterior.imputation(transform_batch=b) for b in (0, 1)]
    np.testing.assert_allclose(both, np.mean(sequential_passes, axis=0), rtol=1e-5)


def test_imputation_shapes(trained):
    _, full, _ = trained
    assert full.imputation().shape == (N_CELLS, N_GENES)
    assert full.imputation(n_samples=3).shape == (3, N_CELLS, N_GENES)


def test_sample_scale_frequencies_and_gene_list(trained):
    _, full, dataset = trained
    scale = full.sequential().get_sample_scale()
    np.testing.assert_allclose(scale.sum(axis=1), 1.0, rtol=1e-4)
    frame = full.sequential().get_sample_scale(gene_list=["gene_3", "gene_1"], library_size=1e4)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["gene_1", "gene_3"]
    torch.manual_seed(0)
    samples = full.get_sample_scale(n_samples=4, return_mean=False)
    assert samples.shape == (4, N_CELLS, N_GENES)
    with pytest.raises(ValueError, match="absent"):
        full.get_sample_scale(gene_list=["no_such_gene"])
    with pytest.raises(ValueError, match="return_df"):
        full.get_sample_scale(n_samples=2, return_mean=False, return_df=True)


def test_sample_scale_recovers_planted_up_regulation(trained):
    _, full, dataset = trained
    scale = full.sequential().get_sample_scale()
    labels = dataset.labels.ravel()
    # cluster 0 up-regulates genes 0, 2, 4 ... (planted); their scale is higher in cluster 0
    up = np.arange(0, 12, 2)
    assert np.all(scale[labels == 0][:, up].mean(0) > scale[labels != 0][:, up].mean(0))


def test_generate_and_parameters_shapes(trained):
    _, full, _ = trained
    posterior = full.sequential()
    x_new, x_old = posterior.generate(n_samples=3)
    assert x_new.shape == (N_CELLS, N_GENES, 3) and x_old.shape == (N_CELLS, N_GENES)
    assert np.all(x_new >= 0) and np.allclose(x_new, np.round(x_new))
    one_gene = posterior.generate(n_samples=1, genes=["gene_7"])[0]
    assert one_gene.shape == (N_CELLS, 1, 1)
    # posterior-predictive means follow the observed totals
    assert np.corrcoef(x_new.mean(2).sum(1), x_old.sum(1))[0, 1] > 0.5
    dropout, means, dispersions = posterior.generate_parameters()
    assert dropout.shape == means.shape == dispersions.shape == (N_CELLS, N_GENES)
    dropout, means, _ = posterior.generate_parameters(n_samples=2)
    assert means.shape == (2, N_CELLS, N_GENES)
    assert posterior.get_stats().shape == (N_CELLS,)


def test_denoised_samples_and_correlation(trained):
    _, full, _ = trained
    denoised = full.generate_denoised_samples(n_samples=2, rna_size_factor=100)
    assert denoised.shape == (N_CELLS, N_GENES, 2) and np.all(denoised >= 0)
    for kind in ("pearson", "spearman"):
        corr = full.generate_feature_correlation_matrix(n_samples=2, correlation_type=kind, transform_batch=[0, 1])
        assert corr.shape == (N_GENES, N_GENES)
        np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-6)
        np.testing.assert_allclose(corr, corr.T, atol=1e-8)
    with pytest.raises(ValueError, match="correlation_type"):
        full.generate_feature_correlation_matrix(correlation_type="kendall")


# ------------------------------------------------------------------------------- likelihood
def test_elbo_reconstruction_and_marginal_ll_are_consistent(trained):
    trainer, _, _ = trained
    torch.manual_seed(0)
    elbo = trainer.test_set.elbo()
    reconstruction = trainer.test_set.reconstruction_error()
    marginal = trainer.test_set.marginal_ll(n_mc_samples=30)
    assert all(np.isfinite([elbo, reconstruction, marginal]))
    assert reconstruction < elbo  # the ELBO adds the KL terms
    assert marginal < elbo + 1.0  # importance sampling tightens the bound
    assert Posterior.elbo.mode == "min" and Posterior.knn_purity.mode == "max"


# ------------------------------------------------------------------------------- persistence
def test_save_and_load_give_bit_identical_latent_means(trained, tmp_path):
    trainer, _, dataset = trained
    path = tmp_path / "train_posterior"
    trainer.train_set.save_posterior(str(path))
    loaded = load_posterior(str(path), model=VAE(dataset.nb_genes, **model_kwargs(dataset)), use_cuda=False)
    assert type(loaded) is Posterior
    assert np.array_equal(loaded.indices, trainer.train_set.indices)
    original = trainer.train_set.sequential().get_latent()
    reloaded = loaded.sequential().get_latent()
    for a, b in zip(original, reloaded):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="already exists"):
        trainer.train_set.save_posterior(str(path))
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


def test_load_posterior_rejects_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="posterior_type"):
        load_posterior(str(tmp_path), model=torch.nn.Linear(1, 1))
    (tmp_path / "posterior_type.txt").write_text("MysteryPosterior")
    with pytest.raises(ValueError, match="MysteryPosterior"):
        load_posterior(str(tmp_path), model=torch.nn.Linear(1, 1))


# ------------------------------------------------------------------------------- corruption, plots
def test_corrupted_posterior_reads_corrupted_counts(trained, tmp_path):
    trainer, _, dataset = trained
    dataset.corrupt(rate=0.5, corruption="binomial", random_state=0)
    try:
        clean, dirty = trainer.test_set.sequential(), trainer.test_set.sequential().corrupted()
        x_clean = torch.cat([t.X for t in clean]).numpy()
        x_dirty = torch.cat([t.X for t in dirty]).numpy()
        assert np.array_equal(x_clean, np.asarray(dataset.X)[clean.indices])
        assert np.array_equal(x_dirty, np.asarray(dataset.corrupted_X)[clean.indices])
        assert np.array_equal(torch.cat([t.X for t in dirty.uncorrupted()]).numpy(), x_clean)
        original, imputed = trainer.test_set.imputation_benchmark(
            n_samples=2, show_plot=False, title_plot="imp", save_path=str(tmp_path))
        assert len(original) == len(imputed) == trainer.test_set.nb_cells
        assert all(len(i) == 2 * len(o) // 2 for o, i in zip(original, imputed))
        assert (tmp_path / "imp.png").read_bytes()[:4] == b"\x89PNG"
        assert trainer.test_set.imputation_score(original, imputed) > 0
    finally:
        dataset.corrupted_X = None


def test_show_t_sne_writes_a_png(trained, tmp_path):
    import matplotlib.pyplot as plt

    _, full, _ = trained
    target = tmp_path / "tsne.png"
    plt.close(full.show_t_sne(n_samples=60, color_by="batches and labels", save_name=str(target), random_state=0))
    assert target.read_bytes()[:4] == b"\x89PNG"
    latent, batches, labels = full.get_latent()
    embedding, idx = full.apply_t_sne(latent, n_samples=60, random_state=0)
    for color_by in ("", "batches", "labels", "scalar"):
        target = tmp_path / f"tsne_{color_by or 'plain'}.png"
        figure = full.show_t_sne(color_by=color_by, save_name=str(target), latent=embedding,
                                 batch_indices=batches[idx], labels=labels[idx])
        assert target.read_bytes()[:4] == b"\x89PNG"
        plt.close(figure)
    with pytest.raises(ValueError, match="color_by"):
        full.show_t_sne(color_by="colour")


def test_apply_t_sne_subsamples_reproducibly(trained):
    latent = np.random.default_rng(0).normal(size=(80, 5))
    embedding, idx = Posterior.apply_t_sne(latent, n_samples=40, random_state=3)
    again, idx_again = Posterior.apply_t_sne(latent, n_samples=40, random_state=3)
    assert embedding.shape == (40, 2) and np.array_equal(idx, idx_again)
    np.testing.assert_allclose(embedding, again)
