"""JVAETrainer (gimVI): adversarial training on a sequencing + a spatial dataset, imputation of
genes hidden from the spatial data, and the tutorial's helper workflow."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from scvi.dataset import GeneExpressionDataset
from scvi.inference import JVAETrainer
from scvi.inference.jvae_trainer import JPosterior
from scvi.models import JVAE, Classifier

N_CELLS, N_GENES, N_LATENT = 300, 50, 5
TUTORIAL_HELPERS = Path(__file__).resolve().parents[2] / "notebooks" / "utils" / "gimvi_tutorial.py"


def _dataset(X, labels, batch=0, gene_names=None, **cell_attributes):
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, labels=labels, gene_names=gene_names, cell_attributes_dict=cell_attributes or None)
    dataset.batch_indices = dataset.batch_indices + batch
    return dataset


def _shared_cell_types(seed=0, seq_library=500.0):
    """Cells of 4 types in a 5-d latent space decoded linearly (softmax) into 50 genes.

    The sequencing-like data measures every gene (NB, ~``seq_library`` counts per cell); the spatial-like
    data measures 40 genes at ~100 counts per cell (Poisson). Returns the truth as well.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (4, N_LATENT))
    labels = rng.integers(0, 4, 2 * N_CELLS)
    z = centers[labels] + rng.normal(0, 0.2, (2 * N_CELLS, N_LATENT))
    logits = np.log(rng.gamma(2, 1, N_GENES)) + z @ rng.normal(0, 1, (N_LATENT, N_GENES))
    scale = np.exp(logits - logits.max(1, keepdims=True))
    scale /= scale.sum(1, keepdims=True)
    held_out = np.sort(rng.choice(N_GENES, 10, replace=False))
    measured = np.setdiff1d(np.arange(N_GENES), held_out)
    library = seq_library * rng.lognormal(0, 0.3, (N_CELLS, 1))
    seq_X = rng.poisson(rng.gamma(5, scale[:N_CELLS] * library / 5)).astype(np.float32)
    spatial_scale = scale[N_CELLS:]
    measured_scale = spatial_scale[:, measured] / spatial_scale[:, measured].sum(1, keepdims=True)
    spatial_X = rng.poisson(measured_scale * 100 * rng.lognormal(0, 0.3, (N_CELLS, 1))).astype(np.float32)
    return seq_X, spatial_X, labels, spatial_scale, held_out, measured


def _model(n_genes_list, total_genes, mappings, **kwargs):
    options = dict(n_latent=N_LATENT, dim_hidden_encoder=64, dim_hidden_decoder_shared=64, n_batch=2)
    options.update(dropout_rate_encoder=0.2, dropout_rate_decoder=0.2, **kwargs)
    return JVAE(n_genes_list, total_genes, mappings, ["nb", "nb"], [True, False], **options)


def _median_spearman(imputed, truth):
    return float(np.median([spearmanr(imputed[:, g], truth[:, g])[0] for g in range(truth.shape[1])]))


def _nearest_neighbour_imputation(seq_X, spatial_X, measured, genes):
    """Impute each spatial cell by its nearest sequenced cell in log-normalised shared-gene space."""

    def lognorm(X):
        return np.log1p(X / X.sum(1, keepdims=True) * 1e4)

    reference, query = lognorm(seq_X[:, measured]), lognorm(spatial_X)
    distances = ((query[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    return (seq_X / seq_X.sum(1, keepdims=True))[distances.argmin(1)][:, genes]


@pytest.fixture(scope="module")
def one_thread():
    """Small networks train faster on one thread, above all on a busy machine."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    import scvi

    scvi.set_seed(0)
    seq_X, spatial_X, labels, spatial_scale, held_out, measured = _shared_cell_types()
    gene_names = np.array([f"gene_{i}" for i in range(N_GENES)])
    data_seq = _dataset(seq_X, labels[:N_CELLS], gene_names=gene_names)
    rng = np.random.default_rng(0)
    coordinates = dict(x_coord=rng.random(N_CELLS), y_coord=rng.random(N_CELLS))
    data_spatial = _dataset(spatial_X, labels[N_CELLS:], batch=1, gene_names=gene_names[measured], **coordinates)
    model = _model([N_GENES, len(measured)], N_GENES, [slice(None), measured])
    discriminator = Classifier(N_LATENT, 32, 2, 3, logits=True)
    trainer = JVAETrainer(
        model, discriminator, [data_seq, data_spatial], 0.95, n_epochs_kl_warmup=15, frequency=30,
        batch_size=64, show_progbar=False,
    )
    trainer.train(n_epochs=30, lr=1e-2)
    return dict(
        trainer=trainer, seq_X=seq_X, spatial_X=spatial_X, spatial_scale=spatial_scale,
        held_out=held_out, measured=measured, data_spatial=data_spatial,
    )


def test_imputation_of_hidden_spatial_genes_beats_nearest_neighbour(trained):
    trainer, held_out = trained["trainer"], trained["held_out"]
    imputed = trainer.get_imputed_values(normalized=True)[1][:, held_out]
    truth = trained["spatial_scale"][:, held_out]
    baseline = _nearest_neighbour_imputation(trained["seq_X"], trained["spatial_X"], trained["measured"], held_out)
    gimvi_score, baseline_score = _median_spearman(imputed, truth), _median_spearman(baseline, truth)
    assert gimvi_score > baseline_score + 0.02, (gimvi_score, baseline_score)


def test_training_lowers_the_elbo_of_both_datasets(trained):
    history = trained["trainer"].history
    for name in ("elbo_train_0", "elbo_train_1", "elbo_test_0", "elbo_test_1"):
        assert len(history[name]) == 2 and history[name][-1] < history[name][0], name


def test_latents_and_imputed_values(trained):
    trainer = trained["trainer"]
    latent_seq, latent_spatial = trainer.get_latent()
    assert latent_seq.shape == (N_CELLS, N_LATENT) and latent_spatial.shape == (N_CELLS, N_LATENT)
    np.testing.assert_allclose(trainer.get_latent()[1], latent_spatial, rtol=1e-5)  # deterministic means
    imputed_seq, imputed_spatial = trainer.get_imputed_values()
    assert imputed_seq.shape == imputed_spatial.shape == (N_CELLS, N_GENES)
    np.testing.assert_allclose(imputed_spatial[:, trained["measured"]].sum(1), 1.0, rtol=1e-4)
    rates = trainer.get_imputed_values(normalized=False)[1]
    np.testing.assert_allclose(rates, imputed_spatial * trained["spatial_X"].sum(1, keepdims=True), rtol=1e-4)
    as_seq = trainer.get_imputed_values(decode_mode=0)[1]
    np.testing.assert_allclose(as_seq.sum(1), 1.0, rtol=1e-4)


def test_discriminator_confusion_and_loss_magnitudes(trained):
    trainer = trained["trainer"]
    confusion = trainer.get_discriminator_confusion()
    assert confusion.shape == (2, 2)
    np.testing.assert_allclose(confusion.sum(1), 1.0, rtol=1e-5)
    assert np.all(np.abs(confusion - 0.5) < 0.25)  # the adversarial training mixed the datasets
    reconstruction, kl_divergence, discriminator = trainer.get_loss_magnitude(one_sample=True)
    for values in (reconstruction, kl_divergence, discriminator):
        assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0)


def test_per_dataset_posteriors(trained):
    trainer = trained["trainer"]
    assert [type(p) for p in trainer.all_dataset] == [JPosterior, JPosterior]
    assert [p.mode for p in trainer.all_train] == [0, 1]
    assert trainer.train_1 is trainer.all_train[1] and trainer.test_0 is trainer.all_test[0]
    assert trainer.posteriors_loop == ["train_0", "train_1"]
    spatial = trainer.all_dataset[1]
    latent, _, _ = spatial.get_latent()
    np.testing.assert_allclose(latent, trainer.get_latent()[1], rtol=1e-5)
    scale = spatial.get_sample_scale()
    np.testing.assert_allclose(scale[:, trained["measured"]].sum(1), 1.0, rtol=1e-4)
    assert np.isfinite(spatial.elbo())


# ------------------------------------------------------------------ the tutorial's helpers
def _tutorial_helpers():
    spec = importlib.util.spec_from_file_location("gimvi_tutorial", TUTORIAL_HELPERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorial_imputation_score_and_spatial_plot(trained, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    helpers = _tutorial_helpers()
    trainer, held_out = trained["trainer"], trained["held_out"]
    # the tutorial scores against the full spatial data; here the held-out counts are re-drawn
    full_counts = np.random.default_rng(5).poisson(trained["spatial_scale"] * 120).astype(np.float32)
    data_full = _dataset(full_counts, np.zeros(N_CELLS, dtype=int))
    score = helpers.imputation_score(trainer, data_full, held_out, True)
    imputed = trainer.get_imputed_values(normalized=True)[1][:, held_out]
    expected = _median_spearman(imputed, full_counts[:, held_out] / full_counts.sum(1, keepdims=True))
    assert score == pytest.approx(expected) and score > 0.3
    data_full.initialize_cell_attribute("x_coord", trained["data_spatial"].x_coord)
    data_full.initialize_cell_attribute("y_coord", trained["data_spatial"].y_coord)
    monkeypatch.setattr(plt, "show", lambda: None)
    helpers.plot_gene_spatial(trainer, data_full, int(held_out[0]))
    helpers.plot_gene_spatial(trainer, data_full, f"gene_{held_out[1]}")
    plt.close("all")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ImportWarning")  # umap-learn without tensorflow (no ParametricUMAP)
def test_tutorial_umap_plot(trained):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _tutorial_helpers().plot_umap(trained["trainer"], random_state=0)
    plt.close("all")


# ------------------------------------------------------------------ training mechanics
def _small(seed=0, kappa=1.0, discriminator=True):
    rng = np.random.default_rng(seed)
    seq = _dataset(rng.poisson(5, (60, 8)).astype(np.float32) + 1, np.zeros(60, dtype=int))
    spatial = _dataset(rng.poisson(5, (25, 4)).astype(np.float32) + 1, np.zeros(25, dtype=int), batch=1)
    model = _model([8, 4], 8, [slice(None), np.arange(4)])
    disc = Classifier(N_LATENT, 16, 2, 2, logits=True) if discriminator else None
    return model, disc, [seq, spatial]


def test_adversarial_step_trains_the_discriminator_only_when_kappa_is_positive():
    for kappa, should_change in ((0.0, False), (1.0, True)):
        model, discriminator, datasets = _small()
        before = [p.detach().clone() for p in discriminator.parameters()]
        trainer = JVAETrainer(
            model, discriminator, datasets, train_size=1.0, kappa=kappa, batch_size=20, show_progbar=False
        )
        trainer.train(n_epochs=1)
        changed = any(not torch.equal(b, p) for b, p in zip(before, discriminator.parameters()))
        assert changed is should_change
        assert trainer.train_discriminator is should_change


def test_epoch_loops_over_the_largest_dataset_and_cycles_the_others():
    model, discriminator, datasets = _small()
    trainer = JVAETrainer(model, discriminator, datasets, train_size=1.0, batch_size=20, show_progbar=False)
    steps = list(trainer.data_loaders_loop())
    assert len(steps) == 3  # ceil(60 / 20) minibatches of the sequencing data
    assert [len(step) for step in steps] == [2, 2, 2]
    assert [step[1][0].shape[1] for step in steps] == [4, 4, 4]
    assert sum(step[1][0].shape[0] for step in steps) == 25 + 20  # the spatial data is cycled


def test_kl_warmup_and_discriminator_losses():
    model, discriminator, datasets = _small()
    trainer = JVAETrainer(model, discriminator, datasets, n_epochs_kl_warmup=4, show_progbar=False)
    trainer.epoch = 2
    assert trainer.kl_weight == pytest.approx(0.5)
    assert JVAETrainer(model, discriminator, datasets, n_epochs_kl_warmup=None, show_progbar=False).kl_weight == 1.0
    z = [torch.randn(7, N_LATENT), torch.randn(5, N_LATENT)]
    discriminator.eval()  # no dropout: the same logits in every call
    true_losses = trainer.loss_discriminator(z, True, return_details=True)
    fool_losses = trainer.loss_discriminator(z, False, return_details=True)
    with torch.no_grad():
        log_probs = [torch.log_softmax(discriminator(t), 1) for t in z]
    torch.testing.assert_close(true_losses[0], -log_probs[0][:, 0].mean())
    torch.testing.assert_close(fool_losses[1], -log_probs[1][:, 0].mean())
    torch.testing.assert_close(trainer.loss_discriminator(z), true_losses[0] + true_losses[1])


def test_single_dataset_without_discriminator():
    model = JVAE([8], 8, [slice(None)], ["nb"], [True], n_latent=3, n_batch=1)
    dataset = _dataset(np.random.default_rng(0).poisson(5, (40, 8)).astype(np.float32), np.zeros(40, dtype=int))
    trainer = JVAETrainer(model, None, [dataset], train_size=1.0, batch_size=20, show_progbar=False)
    trainer.train(n_epochs=2)
    assert trainer.get_latent()[0].shape == (40, 3)
    with pytest.raises(ValueError, match="this trainer has no `discriminator`"):
        trainer.get_discriminator_confusion()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"train_size": 1.5}, "train_size needs to be greater than 0 and less than or equal to 1"),
        ({"kappa": -1.0}, "`kappa` must be a non-negative number"),
        ({"n_epochs_kl_warmup": 2.5}, "`n_epochs_kl_warmup` must be None or a non-negative integer"),
        ({"discriminator": None}, "a `discriminator` is needed to align several datasets with kappa > 0"),
        ({"datasets": "first"}, r"`gene_dataset_list` has 1 datasets but the model has 2 encoder heads"),
        ({"datasets": "swapped"}, r"dataset 0 has 4 genes but the model expects 8 \(`dim_input_list\[0\]`\)"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    model, discriminator, datasets = _small()
    datasets = {"first": datasets[:1], "swapped": datasets[::-1], None: datasets}[kwargs.pop("datasets", None)]
    discriminator = kwargs.pop("discriminator", discriminator)
    with pytest.raises(ValueError, match=match):
        JVAETrainer(model, discriminator, datasets, **kwargs)


def test_legacy_module_exports():
    from scvi.inference import jvae_trainer

    for name in ("JPosterior", "JVAETrainer", "GeneExpressionDataset", "Posterior", "Trainer", "compute_elbo"):
        assert hasattr(jvae_trainer, name)


# ------------------------------------------------------------------ real data
@pytest.mark.data
def test_starmap_held_out_gene_is_imputed(legacy_fixtures, one_thread):
    """STARmap mPFC: half of the cells play the sequencing data, the other half the spatial data
    with ``slc17a7`` (excitatory neurons) hidden; its imputation must follow the measured counts."""
    import scvi
    from scvi.dataset import PreFrontalCortexStarmapDataset

    starmap = PreFrontalCortexStarmapDataset(save_path=str(legacy_fixtures))
    scvi.set_seed(0)
    X, names = np.asarray(starmap.X), np.asarray(starmap.gene_names)
    labels = np.asarray(starmap.labels).ravel()
    cells = np.random.default_rng(0).permutation(len(X))
    seq_cells, spatial_cells = cells[:500], cells[500:1000]
    gene = list(names).index("slc17a7")
    measured = np.setdiff1d(np.arange(len(names)), [gene])
    data_seq = _dataset(X[seq_cells], labels[seq_cells])
    data_spatial = _dataset(X[spatial_cells][:, measured], labels[spatial_cells], batch=1)
    model = _model([len(names), len(measured)], len(names), [slice(None), measured], n_latent=8)
    trainer = JVAETrainer(
        model, Classifier(8, 32, 2, 3, logits=True), [data_seq, data_spatial], 0.95, n_epochs_kl_warmup=8,
        batch_size=64, show_progbar=False,
    )
    trainer.train(n_epochs=15, lr=1e-2)
    imputed = trainer.get_imputed_values()[1][:, gene]
    measured_expression = X[spatial_cells][:, gene] / X[spatial_cells].sum(1)
    correlation, p_value = spearmanr(imputed, measured_expression)
    assert correlation > 0.3 and p_value < 1e-6, correlation
