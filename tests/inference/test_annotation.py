"""Semi-supervised trainers and AnnotationPosterior on planted cell types."""
import numpy as np
import pytest
import torch

from scvi.dataset import GeneExpressionDataset
from scvi.dataset._planted import planted_counts
from scvi.inference import (
    AlternateSemiSupervisedTrainer,
    ClassifierTrainer,
    JointSemiSupervisedTrainer,
    SemiSupervisedTrainer,
    UnsupervisedTrainer,
)
from scvi.inference.annotation import AnnotationPosterior, labelled_split
from scvi.models import SCANVI, VAE, VAEC, Classifier

N_TYPES = 3


@pytest.fixture(scope="module")
def planted():
    truth = planted_counts(n_cells=300, n_genes=50, n_clusters=N_TYPES, n_de_genes=10, random_state=0)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(truth.X, labels=truth.labels, batch_indices=np.arange(300) % 2)
    return dataset


@pytest.fixture(scope="module")
def trained(planted):
    """SCANVI trained with 5 labelled cells per type."""
    torch.manual_seed(0)
    model = SCANVI(planted.nb_genes, n_labels=N_TYPES, labels_groups=[0, 0, 1])
    trainer = SemiSupervisedTrainer(
        model, planted, n_labelled_samples_per_class=5, frequency=10, show_progbar=False, use_cuda=False
    )
    trainer.train(n_epochs=20, lr=1e-2)
    return trainer


# ---------------------------------------------------------------------------------- labelled split
def test_labelled_split_picks_n_per_class_with_a_local_generator():
    labels = np.repeat([0, 1, 2], [10, 20, 3])
    state = np.random.get_state()
    labelled, unlabelled = labelled_split(labels, 3, 5, seed=0)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global seed untouched
    assert np.bincount(labels[labelled]).tolist() == [5, 5, 3]  # label 2 has only 3 cells
    assert sorted(np.concatenate([labelled, unlabelled]).tolist()) == list(range(33))
    again, _ = labelled_split(labels, 3, 5, seed=0)
    other, _ = labelled_split(labels, 3, 5, seed=1)
    np.testing.assert_array_equal(again, labelled)
    assert set(other.tolist()) != set(labelled.tolist())


def test_labelled_split_matches_the_original_choice():
    """scVI 0.6 labelled the first cells of each label in np.random.seed(seed) permutation order."""
    labels = np.random.default_rng(3).integers(0, 4, 200)
    permutation = np.random.RandomState(7).permutation(200)
    expected = [i for label in range(4) for i in permutation[labels[permutation] == label][:6]]
    labelled, _ = labelled_split(labels, 4, 6, seed=7)
    assert sorted(labelled.tolist()) == sorted(expected)


# ---------------------------------------------------------------------------------- semi-supervised
def test_semi_supervised_trainer_predicts_unlabelled_cells_far_above_chance(trained):
    assert isinstance(trained.labelled_set, AnnotationPosterior)
    assert isinstance(trained.unlabelled_set, AnnotationPosterior)
    assert trained.labelled_set.nb_cells == 5 * N_TYPES
    assert trained.unlabelled_set.nb_cells == 300 - 5 * N_TYPES
    assert trained.full_dataset.nb_cells == 300
    accuracy = trained.unlabelled_set.accuracy()
    assert accuracy > 0.85  # chance: 1/3
    history = trained.history["accuracy_unlabelled_set"]
    assert history[-1] > history[0] + 0.3
    reconstruction = trained.history["reconstruction_error_labelled_set"]
    assert reconstruction[-1] < reconstruction[0]
    # the inner classifier trainer ran one epoch per epoch on the labelled cells
    assert trained.classifier_trainer.train_set is trained.labelled_set
    assert trained.classifier_trainer.n_iter == 20


def test_annotation_posterior_metrics(trained):
    posterior = trained.unlabelled_set
    y, y_pred = posterior.compute_predictions()
    assert y.shape == y_pred.shape == (posterior.nb_cells,)
    _, soft = posterior.compute_predictions(soft=True)
    assert soft.shape == (posterior.nb_cells, N_TYPES)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
    accuracy = posterior.accuracy()
    assert posterior.unsupervised_classification_accuracy() >= accuracy - 1e-9
    groups = np.array([0, 0, 1])
    expected = np.mean(groups[y] == groups[y_pred])
    assert posterior.hierarchical_accuracy() == pytest.approx(expected)
    assert posterior.hierarchical_accuracy() >= accuracy - 0.05
    assert trained.labelled_set.nn_latentspace(posterior) > 0.8


def test_explicit_labelled_set_reregisters_with_the_classifier(planted):
    torch.manual_seed(0)
    model = SCANVI(planted.nb_genes, n_labels=N_TYPES)
    trainer = SemiSupervisedTrainer(model, planted, n_labelled_samples_per_class=5, show_progbar=False)
    batch0 = (planted.batch_indices == 0).ravel()
    trainer.labelled_set = trainer.create_posterior(indices=batch0)
    trainer.unlabelled_set = trainer.create_posterior(indices=~batch0)
    assert trainer.labelled_set.nb_cells == 150
    assert trainer.classifier_trainer.train_set is trainer.labelled_set
    assert trainer.labelled_set.sampling_model is model
    trainer.train(n_epochs=10, lr=1e-2)  # 3 epochs are too few to be robust to the seed
    assert trainer.unlabelled_set.accuracy() > 0.6


def test_joint_and_alternate_trainers(planted):
    torch.manual_seed(0)
    joint = JointSemiSupervisedTrainer(
        SCANVI(planted.nb_genes, n_labels=N_TYPES), planted, n_labelled_samples_per_class=5, show_progbar=False
    )
    assert joint.n_epochs_classifier == 0
    joint.train(n_epochs=2, lr=1e-2)
    assert joint.classifier_trainer.n_iter == 0  # the classifier learns only through the joint loss

    alternate = AlternateSemiSupervisedTrainer(
        SCANVI(planted.nb_genes, n_labels=N_TYPES), planted, n_labelled_samples_per_class=5,
        n_epochs_classifier=5, show_progbar=False,
    )
    assert alternate.posteriors_loop == ["full_dataset"]
    alternate.train(n_epochs=4, lr=1e-2)
    assert alternate.classifier_trainer.n_iter == 20
    assert alternate.unlabelled_set.accuracy() > 0.6


def test_vaec_trains_semi_supervised(planted):
    torch.manual_seed(0)
    trainer = SemiSupervisedTrainer(
        VAEC(planted.nb_genes, n_batch=0, n_labels=N_TYPES), planted, n_labelled_samples_per_class=5,
        show_progbar=False,
    )
    # 25 epochs: above 0.95 for every seed tried (6 epochs ranged from 0.34 to 1.0 across seeds)
    trainer.train(n_epochs=25, lr=1e-2)
    assert trainer.unlabelled_set.accuracy() > 0.9


def test_y_prior_pulls_the_unsupervised_classifier(planted):
    """Without classification loss, only KL(q(y | z1) || y_prior) shapes the classifier."""
    mean_q0 = []
    for prior in (None, [0.98, 0.01, 0.01]):
        torch.manual_seed(0)
        model = SCANVI(planted.nb_genes, n_labels=N_TYPES, y_prior=prior)
        trainer = JointSemiSupervisedTrainer(
            model, planted, n_labelled_samples_per_class=2, classification_ratio=0, show_progbar=False,
            n_epochs_kl_warmup=None,
        )
        trainer.train(n_epochs=3, lr=1e-2)
        mean_q0.append(trainer.unlabelled_set.compute_predictions(soft=True)[1][:, 0].mean())
    assert mean_q0[1] > 0.8 > 0.5 > mean_q0[0]


# ---------------------------------------------------------------------------------- classifier trainer
def test_classifier_trainer_on_vae_latent_space(planted):
    torch.manual_seed(0)
    vae = VAE(planted.nb_genes, n_latent=5)
    UnsupervisedTrainer(vae, planted, show_progbar=False).train(n_epochs=30, lr=1e-2)  # 15 epochs are not robust to the seed
    classifier = Classifier(vae.n_latent, n_labels=N_TYPES)
    trainer = ClassifierTrainer(
        classifier, planted, sampling_model=vae, train_size=0.5, frequency=5, show_progbar=False
    )
    before = [p.detach().clone() for p in vae.parameters()]
    trainer.train(n_epochs=15, lr=1e-2)
    assert trainer.test_set.accuracy() > 0.9
    assert trainer.history["accuracy_test_set"][-1] > trainer.history["accuracy_test_set"][0]
    for p, q in zip(before, vae.parameters()):  # the sampling model is not trained
        assert torch.equal(p, q) and q.requires_grad
    y, y_pred = trainer.compute_predictions()
    assert y.shape == y_pred.shape == (300,)
    _, soft = trainer.compute_predictions(soft=True)
    assert soft.shape == (300, N_TYPES)

    zl = ClassifierTrainer(
        Classifier(vae.n_latent + 1, n_labels=N_TYPES), planted, sampling_model=vae, sampling_zl=True,
        show_progbar=False,
    )
    zl.train(n_epochs=3, lr=1e-2)
    assert zl.test_set.model_zl and 0 <= zl.test_set.accuracy() <= 1


def test_classifier_trainer_on_raw_counts(planted):
    torch.manual_seed(0)
    classifier = Classifier(planted.nb_genes, n_labels=N_TYPES, logits=True)
    trainer = ClassifierTrainer(classifier, planted, show_progbar=False)
    trainer.train(n_epochs=10, lr=1e-2)
    assert trainer.test_set.accuracy() > 0.8


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_labelled_samples_per_class": -1}, ValueError, "`n_labelled_samples_per_class` must be an integer"),
        ({"n_epochs_classifier": 1.5}, ValueError, "`n_epochs_classifier` must be an integer"),
        ({"lr_classification": 0}, ValueError, "`lr_classification` must be positive"),
        ({"classification_ratio": -1}, ValueError, "`classification_ratio` must be non-negative"),
    ],
)
def test_semi_supervised_trainer_rejects_bad_arguments(planted, kwargs, error, match):
    with pytest.raises(error, match=match):
        SemiSupervisedTrainer(SCANVI(planted.nb_genes, n_labels=N_TYPES), planted, **kwargs)


def test_semi_supervised_trainer_rejects_bad_models_and_empty_sets(planted):
    with pytest.raises(TypeError, match="needs a model with a classifier"):
        SemiSupervisedTrainer(VAE(planted.nb_genes), planted)
    with pytest.raises(ValueError, match="the dataset has 3 labels but the model was built with n_labels=2"):
        SemiSupervisedTrainer(SCANVI(planted.nb_genes, n_labels=2), planted)
    trainer = SemiSupervisedTrainer(
        SCANVI(planted.nb_genes, n_labels=N_TYPES), planted, n_labelled_samples_per_class=0, show_progbar=False
    )
    with pytest.raises(ValueError, match="`labelled_set` has no cell"):
        trainer.train(n_epochs=1)


def test_classifier_trainer_and_posterior_errors(planted):
    with pytest.raises(TypeError, match="`sampling_model` must have a `z_encoder` or `classify`"):
        ClassifierTrainer(Classifier(5, n_labels=N_TYPES), planted, sampling_model=torch.nn.Linear(2, 2))
    trainer = SemiSupervisedTrainer(SCANVI(planted.nb_genes, n_labels=N_TYPES), planted, show_progbar=False)
    with pytest.raises(ValueError, match="hierarchical_accuracy needs a model built with `labels_groups`"):
        trainer.unlabelled_set.hierarchical_accuracy()


def test_annotation_posterior_save_and_load(trained, tmp_path):
    from scvi.inference import load_posterior

    trained.unlabelled_set.save_posterior(str(tmp_path / "post"))
    model = SCANVI(trained.gene_dataset.nb_genes, n_labels=N_TYPES, labels_groups=[0, 0, 1])
    loaded = load_posterior(str(tmp_path / "post"), model=model, use_cuda=False)
    assert isinstance(loaded, AnnotationPosterior)
    y, y_pred = trained.unlabelled_set.sequential().compute_predictions()
    y2, y_pred2 = loaded.sequential().compute_predictions()
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(y_pred, y_pred2)
