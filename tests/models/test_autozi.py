"""AutoZIVAE: Beta machinery, the NB/ZINB mixture likelihood, training through UnsupervisedTrainer,
and recovery of planted zero-inflated genes."""
import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist

from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import UnsupervisedTrainer
from scvi.models import VAE, AutoZIVAE
from scvi.models.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.models.log_likelihood import compute_marginal_log_likelihood_autozi


def _dataset(X, labels=None, batch_indices=None):
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, labels=labels, batch_indices=batch_indices)
    return dataset


@pytest.fixture(scope="module")
def planted_zi():
    """NB counts where half of the genes get extra zeros (dropout 40-70 %), and a trained AutoZI."""
    import scvi

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks train faster on one thread, above all on a busy machine
    scvi.set_seed(0)
    n_genes = 30
    truth = planted_counts(n_cells=300, n_genes=n_genes, n_clusters=3, n_de_genes=5, mean_library=1500, random_state=0)
    rng = np.random.default_rng(1)
    is_zi = np.zeros(n_genes, dtype=bool)
    is_zi[rng.choice(n_genes, n_genes // 2, replace=False)] = True
    X = truth.X.copy()
    X[(rng.random(X.shape) < rng.uniform(0.4, 0.7, n_genes)) & is_zi] = 0
    dataset = _dataset(X, labels=truth.labels)
    model = AutoZIVAE(n_genes, n_latent=5, n_hidden=64)
    trainer = UnsupervisedTrainer(
        model, dataset, train_size=1.0, batch_size=32, n_epochs_kl_warmup=None, frequency=40, show_progbar=False
    )
    trainer.train(n_epochs=40, lr=1e-2)
    torch.set_num_threads(n_threads)
    return model, trainer, is_zi


def test_planted_zero_inflated_genes_are_recovered(planted_zi):
    model, _, is_zi = planted_zi
    outputs = model.get_alphas_betas()
    # the tutorial's decision rule: ZI when q(delta_g < 0.5) > 0.5
    is_zi_pred = beta_dist.cdf(0.5, outputs["alpha_posterior"], outputs["beta_posterior"]) > 0.5
    assert (is_zi_pred == is_zi).mean() >= 0.8


def test_training_lowers_the_elbo_without_normalising_the_loss(planted_zi):
    _, trainer, _ = planted_zi
    assert trainer.normalize_loss is False  # the AutoZI default, as documented
    elbo = trainer.history["elbo_train_set"]
    assert len(elbo) == 2 and elbo[-1] < 0.5 * elbo[0]


def test_marginal_ll_uses_the_autozi_estimator(planted_zi):
    model, trainer, _ = planted_zi
    posterior = trainer.train_set.sequential()
    torch.manual_seed(3)
    through_posterior = posterior.marginal_ll(n_mc_samples=3)
    torch.manual_seed(3)
    direct = compute_marginal_log_likelihood_autozi(model, posterior, n_samples_mc=3)
    assert np.isfinite(through_posterior)
    assert through_posterior == pytest.approx(direct, rel=1e-5)
    # the negative ELBO bounds -log p(x) from above; the importance-sampling estimate is tighter
    assert through_posterior <= posterior.elbo() + 1.0


def test_generic_posterior_algorithms_read_the_model_through_inference(planted_zi):
    _, trainer, _ = planted_zi
    scale = trainer.train_set.sequential().get_sample_scale()
    assert scale.shape == (300, 30)
    np.testing.assert_allclose(scale.sum(axis=1), 1.0, rtol=1e-4)
    assert np.isfinite(trainer.train_set.reconstruction_error())


def test_normalize_loss_defaults_to_true_for_other_models():
    dataset = _dataset(planted_counts(n_cells=40, n_genes=10, n_clusters=2, n_de_genes=2).X)
    assert UnsupervisedTrainer(VAE(10), dataset, show_progbar=False).normalize_loss is True
    assert UnsupervisedTrainer(AutoZIVAE(10), dataset, normalize_loss=True, show_progbar=False).normalize_loss


# ------------------------------------------------------------------ Beta parameters
@pytest.mark.parametrize(
    "zero_inflation, kwargs, shape",
    [("gene", {}, (12,)), ("gene-batch", {"n_batch": 3}, (12, 3)), ("gene-label", {"n_labels": 4}, (12, 4))],
)
def test_alphas_betas_shapes_and_range(zero_inflation, kwargs, shape):
    model = AutoZIVAE(12, zero_inflation=zero_inflation, **kwargs)
    outputs = model.get_alphas_betas()
    assert outputs["alpha_posterior"].shape == shape and outputs["beta_posterior"].shape == shape
    assert isinstance(outputs["alpha_prior"], np.ndarray)
    for value in outputs.values():
        assert np.all((value > 0) & (value < 1))
    np.testing.assert_allclose(outputs["alpha_prior"], 0.5, rtol=1e-6)
    tensors = model.get_alphas_betas(as_numpy=False)
    assert tensors["alpha_posterior"].requires_grad


def test_priors_fixed_derived_or_learnt():
    fixed = AutoZIVAE(5, alpha_prior=0.3, beta_prior=None)
    outputs = fixed.get_alphas_betas()
    np.testing.assert_allclose([outputs["alpha_prior"][0], outputs["beta_prior"][0]], [0.3, 0.7], rtol=1e-5)
    assert "alpha_prior_logit" not in fixed.state_dict()  # fixed priors are not saved, as in scVI 0.6
    learnt = AutoZIVAE(5, alpha_prior=None, beta_prior=None, zero_inflation="gene-batch", n_batch=2)
    names = dict(learnt.named_parameters())
    assert names["alpha_prior_logit"].shape == (1, 2) and names["beta_prior_logit"].shape == (1, 2)


def test_beta_sampling_is_reparameterised_with_the_right_mean():
    model = AutoZIVAE(3)
    alpha = torch.tensor([0.3, 0.5, 0.9], requires_grad=True)
    beta = torch.tensor([0.6, 0.5, 0.1])
    samples = model.sample_from_beta_distribution(alpha.expand(20000, 3), beta.expand(20000, 3))
    assert torch.all((samples > 0) & (samples < 1))
    np.testing.assert_allclose(samples.mean(0).detach().numpy(), [1 / 3, 0.5, 0.9], atol=0.02)
    samples.sum().backward()
    assert torch.all(alpha.grad > 0)  # on average, a larger alpha pushes the draws up


def test_reshape_and_sample_bernoulli_params_per_batch():
    model = AutoZIVAE(4, zero_inflation="gene-batch", n_batch=3)
    table = torch.arange(12.0).reshape(4, 3)  # (genes, batches)
    batch_index = torch.tensor([[2], [0], [2]])
    np.testing.assert_array_equal(model.reshape_bernoulli(table, batch_index).numpy(), table.T[[2, 0, 2]].numpy())
    stacked = model.reshape_bernoulli(torch.stack([table, -table]), batch_index)
    assert stacked.shape == (2, 3, 4)
    np.testing.assert_array_equal(stacked[1].numpy(), -table.T[[2, 0, 2]].numpy())
    assert model.sample_bernoulli_params(batch_index, n_samples=5).shape == (5, 3, 4)
    gene_model = AutoZIVAE(4)
    assert gene_model.sample_bernoulli_params(n_samples=5).shape == (5, 1, 4)  # broadcasts over cells


def test_missing_category_for_per_label_params_raises():
    model = AutoZIVAE(4, zero_inflation="gene-label", n_labels=2)
    with pytest.raises(ValueError, match="zero_inflation='gene-label' needs `y`"):
        model.sample_bernoulli_params(batch_index=torch.zeros(3, 1, dtype=torch.long))


def test_global_kl_vanishes_when_posterior_equals_prior():
    model = AutoZIVAE(6, alpha_prior=0.4, beta_prior=0.7)
    with torch.no_grad():
        model.alpha_posterior_logit.fill_(np.log(0.4 / 0.6))
        model.beta_posterior_logit.fill_(np.log(0.7 / 0.3))
    assert model.compute_global_kl_divergence().item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        model.alpha_posterior_logit.fill_(3.0)
    assert model.compute_global_kl_divergence().item() > 0.1


# ------------------------------------------------------------------ likelihood
def test_rescaled_dropout_is_bounded_below():
    logits = torch.linspace(-30, 5, 50)
    rescaled = AutoZIVAE(3, minimal_dropout=0.1).rescale_dropout(logits)
    assert torch.all(torch.sigmoid(rescaled) >= 0.1 - 1e-6)
    assert torch.equal(AutoZIVAE(3, minimal_dropout=0.0).rescale_dropout(logits), logits)


def test_mixture_likelihood_limits_are_nb_and_zinb():
    torch.manual_seed(0)
    model = AutoZIVAE(7)
    x = torch.poisson(torch.rand(5, 7) * 4)
    mu, theta, logits = torch.rand(5, 7) * 5 + 0.1, torch.rand(5, 7) * 3 + 0.1, torch.randn(5, 7)
    nb = -NegativeBinomial(mu=mu, theta=theta).log_prob(x).sum(-1)
    zinb = -ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=logits).log_prob(x).sum(-1)
    ones, zeros = torch.ones(7), torch.zeros(7)
    torch.testing.assert_close(model.get_reconstruction_loss(x, mu, theta, logits, ones), nb, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(model.get_reconstruction_loss(x, mu, theta, logits, zeros), zinb, rtol=1e-4, atol=1e-3)
    half = model.get_reconstruction_loss(x, mu, theta, logits, 0.5 * ones)
    assert torch.all(half <= torch.maximum(nb, zinb) + 1e-4) and torch.all(half >= torch.minimum(nb, zinb) - 1e-4)


def test_inference_and_forward_outputs():
    model = AutoZIVAE(8, n_batch=2, zero_inflation="gene-batch", dispersion="gene-batch", n_latent=3)
    x = torch.poisson(torch.rand(6, 8) * 5)
    batch_index = torch.tensor([[0], [1], [1], [0], [1], [0]])
    outputs = model.inference(x, batch_index, n_samples=4)
    assert outputs["bernoulli_params"].shape == (4, 6, 8) and outputs["px_rate"].shape == (4, 6, 8)
    assert torch.all(torch.sigmoid(outputs["px_dropout"]) >= model.minimal_dropout - 1e-6)
    reconst_loss, kl_local, kl_global = model(x, torch.zeros(6, 1), torch.ones(6, 1), batch_index)
    assert reconst_loss.shape == (6,) and kl_local.shape == (6,)
    assert kl_global.dim() == 0
    torch.testing.assert_close(kl_global, model.compute_global_kl_divergence())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reconstruction_loss": "zinb"}, "No reconstruction loss must be specified"),
        ({"zero_inflation": "genes"}, "`zero_inflation` must be one of 'gene', 'gene-batch', 'gene-label'"),
        ({"alpha_prior": 1.5}, r"`alpha_prior` must be None or in the open interval \(0, 1\)"),
        ({"beta_prior": 0.0}, r"`beta_prior` must be None or in the open interval \(0, 1\)"),
        ({"minimal_dropout": 1.0}, r"`minimal_dropout` must be in \[0, 1\)"),
        ({"zero_inflation": "gene-batch"}, "zero_inflation='gene-batch' needs `n_batch` >= 1"),
        ({"zero_inflation": "gene-label"}, "zero_inflation='gene-label' needs `n_labels` >= 1"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoZIVAE(5, **kwargs)


def test_gene_cell_zero_inflation_is_not_implemented():
    with pytest.raises(NotImplementedError, match="zero_inflation='gene-cell' is not implemented"):
        AutoZIVAE(5, zero_inflation="gene-cell")
