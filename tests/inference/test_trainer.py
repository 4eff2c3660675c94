"""The training loop: loss goes down, seeded runs repeat, early stopping, NaN guard, registry."""
import numpy as np
import pytest
import torch

import scvi
from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import Posterior, Trainer, UnsupervisedTrainer
from scvi.inference.inference import AdapterTrainer
from scvi.models import VAE


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the test machine is shared and oversubscribed threads spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_dataset(n_cells=240, n_genes=40, n_batches=2, seed=0):
    truth = planted_counts(n_cells=n_cells, n_genes=n_genes, n_clusters=3, n_batches=n_batches,
                           n_de_genes=8, random_state=seed)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(truth.X, batch_indices=truth.batch_indices, labels=truth.labels,
                               gene_names=truth.gene_names)
    return dataset


@pytest.fixture(scope="module")
def dataset():
    return make_dataset()


def make_trainer(dataset, **kwargs):
    kwargs.setdefault("use_cuda", False)
    kwargs.setdefault("show_progbar", False)
    kwargs.setdefault("n_epochs_kl_warmup", None)
    vae = VAE(dataset.nb_genes, n_batch=dataset.n_batches, n_hidden=32, n_latent=4)
    return UnsupervisedTrainer(vae, dataset, **kwargs)


def test_training_lowers_the_elbo_on_train_and_test(dataset):
    trainer = make_trainer(dataset, train_size=0.8, frequency=5)
    trainer.train(n_epochs=20, lr=1e-2)
    for name in ("elbo_train_set", "elbo_test_set"):
        values = trainer.history[name]
        assert len(values) == 5  # epochs 0, 5, 10, 15, 20
        assert values[-1] < 0.8 * values[0]
    assert trainer.epoch == 19 and trainer.n_iter > 0
    assert not trainer.model.training  # eval mode after training


def test_seeded_runs_are_reproducible(dataset):
    results = []
    for _ in range(2):
        scvi.set_seed(7)
        trainer = make_trainer(dataset, frequency=1)
        trainer.train(n_epochs=3, lr=1e-2)
        latent = trainer.train_set.sequential().get_latent()[0]
        results.append((trainer.history["elbo_train_set"], latent))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_split_follows_seed_and_sizes(dataset):
    trainer = make_trainer(dataset, train_size=0.5, test_size=0.25, seed=3)
    sets = [trainer.train_set.indices, trainer.test_set.indices, trainer.validation_set.indices]
    assert [len(s) for s in sets] == [120, 60, 60]
    assert np.array_equal(np.sort(np.concatenate(sets)), np.arange(len(dataset)))
    assert trainer.n_samples == 120
    other = make_trainer(dataset, train_size=0.5, test_size=0.25, seed=4)
    assert not np.array_equal(other.train_set.indices, trainer.train_set.indices)


def test_early_stopping_stops_after_patience(dataset):
    trainer = make_trainer(dataset, frequency=1, early_stopping_kwargs={
        "early_stopping_metric": "elbo", "on": "test_set", "patience": 2, "threshold": 1e9})
    trainer.train(n_epochs=20, lr=1e-3)
    # the first epoch improves on +inf; then 2 epochs without improvement; the 4th stops
    assert trainer.epoch == 3
    assert len(trainer.history["elbo_test_set"]) == 5


def test_reduce_lr_on_plateau_halves_the_learning_rate(dataset):
    trainer = make_trainer(dataset, frequency=1, early_stopping_kwargs={
        "early_stopping_metric": "elbo", "patience": 100, "threshold": 1e9,
        "reduce_lr_on_plateau": True, "lr_patience": 2, "lr_factor": 0.5})
    trainer.train(n_epochs=7, lr=1e-3)
    # no epoch counts as an improvement: reductions at epochs 3 and 6
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)


def test_best_state_is_a_deep_copy_restored_at_the_end(dataset):
    trainer = make_trainer(dataset, frequency=1, early_stopping_kwargs={"save_best_state_metric": "elbo"})
    trainer.train(n_epochs=4, lr=1e-2)
    best_elbo = trainer.early_stopping.best_performance_state
    assert min(trainer.history["elbo_test_set"][:-1]) == pytest.approx(best_elbo)
    live = trainer.model.state_dict()
    for key, value in trainer.best_state_dict.items():
        assert torch.equal(value, live[key])
        assert value.data_ptr() != live[key].data_ptr()
    # the final metrics are those of the restored state (the ELBO is a Monte-Carlo estimate)
    assert trainer.history["elbo_test_set"][-1] == pytest.approx(best_elbo, rel=0.05)


def test_early_stopping_needs_a_frequency(dataset):
    trainer = make_trainer(dataset, early_stopping_kwargs={"early_stopping_metric": "elbo"})
    with pytest.raises(ValueError, match="frequency"):
        trainer.train(n_epochs=1)


def test_nan_guard_raises_after_max_nans(dataset):
    trainer = make_trainer(dataset, max_nans=3, batch_size=32)
    with torch.no_grad():
        trainer.model.px_r.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN 3 consecutive times"):
        trainer.train(n_epochs=5)
    assert trainer.n_iter == 2 and trainer.nan_counter == 3


def test_nan_loss_skips_the_optimisation_step(dataset):
    """A NaN loss must not write NaN weights: the step is skipped and only counted."""
    trainer = make_trainer(dataset, max_nans=5, batch_size=32)
    trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=1e-2)
    # parameters only: batch-norm running statistics move in any forward pass
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    real_loss = trainer.loss
    trainer.loss = lambda *tensors: real_loss(*tensors) * float("nan")
    tensors = next(iter(trainer.train_set))
    trainer.on_training_loop([tensors])
    trainer.check_training_status()
    assert trainer.nan_counter == 1
    for key, value in trainer.model.named_parameters():
        assert torch.equal(value, before[key]), key
    trainer.loss = real_loss
    trainer.on_training_loop([tensors])
    changed = [v for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])]
    assert changed and all(torch.isfinite(v).all() for v in changed)


def test_nan_counter_resets_on_a_finite_loss(dataset):
    trainer = make_trainer(dataset, max_nans=2)
    for loss, expected in ((float("nan"), 1), (1.0, 0), (float("nan"), 1)):
        trainer.current_loss = torch.tensor(loss)
        trainer.check_training_status()
        assert trainer.nan_counter == expected
    assert trainer.previous_loss_was_nan


def test_posterior_registry(dataset):
    trainer = make_trainer(dataset)
    assert isinstance(trainer.train_set, Posterior)
    assert list(trainer._posteriors) == ["train_set", "test_set", "validation_set"]
    labelled = trainer.create_posterior(indices=np.arange(10))
    trainer.labelled_set = labelled
    assert trainer._posteriors["labelled_set"] is labelled and trainer.labelled_set is labelled
    trainer.register_posterior("_extra_", labelled)
    assert trainer.extra is labelled
    del trainer.labelled_set
    assert "labelled_set" not in trainer._posteriors
    with pytest.raises(AttributeError, match="labelled_set"):
        trainer.labelled_set
    trainer.plain = 3  # other attributes are ordinary
    assert trainer.plain == 3 and "plain" not in trainer._posteriors


def test_created_posteriors_share_device_and_loader_options(dataset):
    trainer = make_trainer(dataset, batch_size=50, data_loader_kwargs={"drop_last": True})
    posterior = trainer.create_posterior(shuffle=True)
    sizes = [len(t[0]) for t in posterior]
    assert sizes == [50] * (len(dataset) // 50)
    assert posterior.use_cuda is False


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"max_nans": -1}, "max_nans"),
    ({"frequency": 0}, "frequency"),
    ({"train_size": 1.5}, "train_size"),
    ({"train_size": 0}, "train_size"),
    ({"n_epochs_kl_warmup": -3}, "n_epochs_kl_warmup"),
    ({"weight_decay": -1.0}, "weight_decay"),
])
def test_trainer_rejects_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(dataset, **kwargs)


@pytest.mark.parametrize("kwargs, match", [({"n_epochs": -1}, "n_epochs"), ({"lr": 0}, "lr")])
def test_train_rejects_bad_arguments(dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(dataset).train(**kwargs)


def test_base_trainer_needs_loss_and_posteriors_loop(dataset):
    trainer = Trainer(VAE(dataset.nb_genes), dataset, use_cuda=False)
    with pytest.raises(NotImplementedError, match="posteriors_loop"):
        trainer.train(n_epochs=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without GPU")
def test_use_cuda_without_gpu_falls_back_to_cpu_with_a_warning(dataset, monkeypatch):
    monkeypatch.setattr(scvi._utils, "_warned_no_cuda", False)
    with pytest.warns(RuntimeWarning, match="no CUDA device"):
        trainer = make_trainer(dataset, use_cuda=True)
    assert trainer.use_cuda is False and trainer.device.type == "cpu"


def test_kl_warmup_by_epochs_and_iterations(dataset):
    trainer = make_trainer(dataset, n_epochs_kl_warmup=4)
    trainer.train(n_epochs=2)
    assert trainer.kl_weight == pytest.approx(0.25)
    trainer = make_trainer(dataset, n_epochs_kl_warmup=None, n_iter_kl_warmup=100, batch_size=64)
    trainer.train(n_epochs=2)
    assert trainer.kl_weight == pytest.approx(trainer.n_iter / 100)


def test_corrupted_training_imputes_better_than_the_gene_mean():
    # Little NB noise and strong clusters: knowing a cell's cluster and library size must help.
    truth = planted_counts(n_cells=300, n_genes=40, n_clusters=3, n_de_genes=10, lfc_scale=3.0, theta=50.0,
                           random_state=1)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(truth.X, labels=truth.labels)
    dataset.corrupt(rate=0.6, corruption="uniform", random_state=0)
    trainer = make_trainer(dataset, train_size=1.0, batch_size=32)
    trainer.corrupt_posteriors(update_corruption=False)
    trainer.train(n_epochs=40, lr=5e-3)
    trainer.train(n_epochs=25, lr=1e-6)  # let the batch-norm running statistics settle
    trainer.uncorrupt_posteriors()
    original, imputed = trainer.train_set.imputation_list()
    model_error = trainer.train_set.imputation_score(original, imputed)

    X, corrupted = np.asarray(dataset.X), np.asarray(dataset.corrupted_X)
    rows, cols = np.nonzero(X != corrupted)
    assert len(rows) > 300
    assert np.isclose(np.concatenate(original).sum(), X[rows, cols].sum())
    gene_mean = corrupted.mean(axis=0)
    baseline = np.median(np.abs(X[rows, cols] - gene_mean[cols]))
    assert model_error < 0.75 * baseline


def test_adapter_trainer_fits_only_the_encoders(dataset):
    trainer = make_trainer(dataset)
    trainer.train(n_epochs=2, lr=1e-2)
    decoder_before = {k: v.clone() for k, v in trainer.model.decoder.named_parameters()}
    encoder_before = {k: v.clone() for k, v in trainer.model.z_encoder.named_parameters()}
    adapter = AdapterTrainer(trainer.model, dataset, trainer.test_set, frequency=1)
    adapter.show_progbar = False
    best = adapter.train(n_path=2, n_epochs=2, lr=1e-2)
    assert best == min(adapter.history["elbo_test_set"])
    assert len(adapter.history["elbo_test_set"]) == 2 * 3
    for key, value in trainer.model.decoder.named_parameters():  # weights, not batch-norm statistics
        assert torch.equal(value, decoder_before[key])
    assert any(not torch.equal(v, encoder_before[k]) for k, v in trainer.model.z_encoder.named_parameters())


class _FixedLossModel(torch.nn.Module):
    """Returns fixed per-cell terms (to check how the trainer combines them)."""

    def __init__(self, reconst, kl_local, kl_global):
        super().__init__()
        self.terms = (reconst, kl_local, kl_global)

    def forward(self, *tensors):
        return self.terms


@pytest.mark.parametrize("normalize_loss", [True, False])
@pytest.mark.parametrize("kl_weight", [1.0, 0.25, 0.0])
@pytest.mark.parametrize("kl_global", [0.0, 3.5])
def test_unsupervised_loss_is_the_legacy_formula(dataset, normalize_loss, kl_weight, kl_global, monkeypatch):
    """n_samples * mean(reconst + kl_weight * kl_local) + kl_global, over n_samples when normalised."""
    trainer = UnsupervisedTrainer(VAE(dataset.nb_genes), dataset, normalize_loss=normalize_loss, show_progbar=False)
    monkeypatch.setattr(UnsupervisedTrainer, "kl_weight", property(lambda self: kl_weight))
    reconst, kl_local = torch.tensor([10.0, 20.0, 40.0]), torch.tensor([1.0, 2.0, 6.0])
    global_term = kl_global if kl_global == 0.0 else torch.tensor(kl_global)
    trainer.model = _FixedLossModel(reconst, kl_local, global_term)
    expected = trainer.n_samples * (reconst + kl_weight * kl_local).mean() + kl_global
    if normalize_loss:
        expected = expected / trainer.n_samples
    loss = trainer.loss((torch.zeros(3, 1), None, None, None, None))
    torch.testing.assert_close(torch.as_tensor(loss), torch.as_tensor(expected))
