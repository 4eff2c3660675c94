"""Semi-supervised annotation: ``AnnotationPosterior``, the classifier trainer and the
semi-supervised trainers of SCANVI / VAEC, and the classification helpers."""
import logging
import numbers
from typing import List, Optional, Tuple

import numpy as np
import torch

from ._classification import (
    Accuracy,
    compute_accuracy,
    compute_accuracy_classifier,
    compute_accuracy_nn,
    compute_accuracy_rf,
    compute_accuracy_svc,
    compute_accuracy_tuple,
    compute_predictions,
    cross_entropy,
    encode_for_classifier,
    _outputs_probabilities,
)
from .inference import UnsupervisedTrainer
from .posterior import Posterior
from .posterior_utils import unsupervised_clustering_accuracy
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "AnnotationPosterior",
    "ClassifierTrainer",
    "SemiSupervisedTrainer",
    "JointSemiSupervisedTrainer",
    "AlternateSemiSupervisedTrainer",
    "Accuracy",
    "compute_accuracy",
    "compute_accuracy_tuple",
    "compute_accuracy_nn",
    "compute_accuracy_svc",
    "compute_accuracy_rf",
    "compute_accuracy_classifier",
    "compute_predictions",
    "unsupervised_clustering_accuracy",
    "Posterior",
    "Trainer",
    "UnsupervisedTrainer",
]


def _check_count(name: str, value, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}")


class AnnotationPosterior(Posterior):
    """A posterior that also classifies its cells.

    The cells are classified by ``model.classify`` (``SCANVI``, ``VAEC``) or, when a
    ``ClassifierTrainer`` set ``sampling_model``, by the classifier ``model`` reading the latent
    space of ``sampling_model``.

    Parameters
    ----------
    *args, **kwargs
        Arguments of :class:`~scvi.inference.Posterior`.
    model_zl
        The classifier reads the latent mean of ``z`` and of the log library size.

    Examples
    --------
    >>> trainer = SemiSupervisedTrainer(scanvi, gene_dataset)
    >>> trainer.train(n_epochs=50)
    >>> trainer.unlabelled_set.accuracy()
    """

    def __init__(self, *args, model_zl: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_zl = model_zl
        #: model whose latent space the classifier ``model`` reads (set by ``ClassifierTrainer``)
        self.sampling_model = None

    def _classification_models(self) -> Tuple[torch.nn.Module, Optional[torch.nn.Module]]:
        """``(model, classifier)`` arguments of :func:`compute_predictions`."""
        if self.sampling_model is not None:
            return self.sampling_model, self.model
        return self.model, None

    @torch.no_grad()
    def compute_predictions(self, soft: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """True and predicted labels of the posterior's cells, in iteration order.

        Parameters
        ----------
        soft
            Return class probabilities, shape ``(nb_cells, n_labels)``, instead of labels.

        Returns
        -------
        y
            True labels, shape ``(nb_cells,)``.
        y_pred
            Predicted labels ``(nb_cells,)`` or probabilities.
        """
        model, classifier = self._classification_models()
        return compute_predictions(model, self, classifier=classifier, soft=soft, model_zl=self.model_zl)

    @torch.no_grad()
    def accuracy(self) -> float:
        """Fraction of the posterior's cells whose predicted label is their label."""
        model, classifier = self._classification_models()
        acc = compute_accuracy(model, self, classifier=classifier, model_zl=self.model_zl)
        logger.debug("Acc: %.4f", acc)
        return acc

    accuracy.mode = "max"

    @torch.no_grad()
    def hierarchical_accuracy(self) -> float:
        """Fraction of cells whose predicted label is in the group of their label (``labels_groups``
        of the model).

        Raises
        ------
        ValueError
            If the model has no ``labels_groups``.
        """
        groups = getattr(self.model, "labels_groups", None)
        if groups is None:
            raise ValueError("hierarchical_accuracy needs a model built with `labels_groups`")
        all_y, all_y_pred = self.compute_predictions()
        h_acc = float(np.mean(groups[all_y] == groups[all_y_pred]))
        logger.debug("Hierarchical Acc : %.4f", h_acc)
        return h_acc

    hierarchical_accuracy.mode = "max"

    @torch.no_grad()
    def unsupervised_classification_accuracy(self) -> float:
        """Accuracy of the best one-to-one matching of predicted to true labels (Hungarian)."""
        all_y, all_y_pred = self.compute_predictions()
        uca = unsupervised_clustering_accuracy(all_y, all_y_pred)[0]
        logger.debug("UCA : %.4f", uca)
        return uca

    unsupervised_classification_accuracy.mode = "max"

    @torch.no_grad()
    def nn_latentspace(self, posterior: Posterior) -> float:
        """Accuracy on ``posterior``'s cells of a 5-nearest-neighbour classifier fitted on this
        posterior's latent space and labels.

        Parameters
        ----------
        posterior
            Posterior of the cells to classify.
        """
        from sklearn.neighbors import KNeighborsClassifier

        data_train, _, labels_train = self.get_latent()
        data_test, _, labels_test = posterior.get_latent()
        nn = KNeighborsClassifier()
        nn.fit(data_train, labels_train)
        return float(nn.score(data_test, labels_test))


class ClassifierTrainer(Trainer):
    """Train a classifier on the counts, or on the latent space of another model (VAE, VAEC, SCANVI).

    Parameters
    ----------
    model
        The classifier (e.g. :class:`~scvi.models.Classifier`).
    gene_dataset
        A ``GeneExpressionDataset``.
    train_size
        Fraction of the cells for training, in ``(0, 1]``.
    test_size
        Fraction or number of test cells (default: the others).
    sampling_model
        Model whose ``z_encoder`` transforms the counts first (or whose ``classify`` is used
        when it has one); not trained here.
    sampling_zl
        Concatenate the latent means of ``z`` and of the log library size.
    use_cuda
        Train on the GPU if there is one.
    **kwargs
        Arguments of :class:`~scvi.inference.Trainer`.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> vae = VAE(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    >>> classifier = Classifier(vae.n_latent, n_labels=cortex_dataset.n_labels)
    >>> trainer = ClassifierTrainer(classifier, gene_dataset, sampling_model=vae, train_size=0.5)
    >>> trainer.train(n_epochs=20, lr=1e-3)
    >>> trainer.test_set.accuracy()
    """

    def __init__(
        self,
        *args,
        train_size: float = 0.9,
        test_size=None,
        sampling_model=None,
        sampling_zl: bool = False,
        use_cuda: bool = True,
        **kwargs,
    ):
        self.sampling_model = sampling_model
        self.sampling_zl = sampling_zl
        super().__init__(*args, use_cuda=use_cuda, **kwargs)
        if sampling_model is not None and not hasattr(sampling_model, "classify"):
            if not hasattr(sampling_model, "z_encoder"):
                raise TypeError(f"`sampling_model` must have a `z_encoder` or `classify`; got {type(sampling_model)}")
        self.train_set, self.test_set, self.validation_set = self.train_test_validation(
            self.model, self.gene_dataset, train_size=train_size, test_size=test_size, type_class=AnnotationPosterior
        )
        for posterior in (self.train_set, self.test_set, self.validation_set):
            posterior.to_monitor = ["accuracy"]
            posterior.model_zl = sampling_zl

    def register_posterior(self, name, value):
        """Register a posterior; ``train_set`` / ``test_set`` classify through ``sampling_model``."""
        if name.strip("_") in ("train_set", "test_set", "validation_set") and isinstance(value, AnnotationPosterior):
            value.sampling_model = self.sampling_model
        super().register_posterior(name, value)

    @property
    def posteriors_loop(self) -> List[str]:
        """``["train_set"]``."""
        return ["train_set"]

    def train(self, n_epochs=400, lr=1e-3, eps=0.01, params=None, **extras_kwargs):
        """Train the classifier (see :meth:`Trainer.train`); the parameters of ``sampling_model``
        outside the classifier get no gradient meanwhile (they are not trained here)."""
        own = {id(p) for p in self.model.parameters()}
        frozen = []
        if isinstance(self.sampling_model, torch.nn.Module):
            frozen = [p for p in self.sampling_model.parameters() if p.requires_grad and id(p) not in own]
        for p in frozen:
            p.requires_grad_(False)
        try:
            super().train(n_epochs=n_epochs, lr=lr, eps=eps, params=params, **extras_kwargs)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def loss(self, tensors_labelled):
        """Cross-entropy of the predicted labels of a minibatch.

        Parameters
        ----------
        tensors_labelled
            A minibatch ``(X, local_l_mean, local_l_var, batch_index, labels)``.
        """
        x, labels = tensors_labelled[0], tensors_labelled[4]
        sampling_model = self.sampling_model
        if sampling_model is not None and hasattr(sampling_model, "classify"):
            return cross_entropy(sampling_model.classify(x), labels)
        if sampling_model is not None:
            x = encode_for_classifier(sampling_model, x, self.sampling_zl)
        return cross_entropy(self.model(x), labels, probabilities=_outputs_probabilities(self.model))

    @torch.no_grad()
    def compute_predictions(self, soft: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """True and predicted labels of every cell of the dataset.

        Parameters
        ----------
        soft
            Return class probabilities instead of labels.

        Returns
        -------
        y
            Shape ``(n_cells,)``.
        y_pred
            Shape ``(n_cells,)`` (or ``(n_cells, n_labels)`` if ``soft``).
        """
        if self.sampling_model is not None:
            model, classifier = self.sampling_model, self.model
        else:
            model, classifier = self.model, None
        full_set = self.create_posterior(model=model, type_class=AnnotationPosterior)
        return compute_predictions(model, full_set, classifier=classifier, soft=soft, model_zl=self.sampling_zl)


def labelled_split(labels: np.ndarray, n_labels: int, n_per_class: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pick ``n_per_class`` labelled cells of each label at random, as scVI 0.6 did.

    The cells are permuted with ``np.random.RandomState(seed)`` (a local generator: the global
    seed is untouched); the first ``n_per_class`` cells of each label in that order are labelled.

    Parameters
    ----------
    labels
        Label of each cell, shape ``(n_cells,)``.
    n_labels
        Number of labels.
    n_per_class
        Labelled cells per label (all of a label's cells if it has fewer).
    seed
        Seed of the permutation.

    Returns
    -------
    labelled, unlabelled
        Cell indices, in permutation order.
    """
    labels = np.asarray(labels).ravel().astype(np.int64)
    permutation = np.random.RandomState(seed).permutation(len(labels))
    permuted = labels[permutation]
    is_labelled = np.zeros(len(labels), dtype=bool)
    for label in range(n_labels):
        is_labelled[np.flatnonzero(permuted == label)[:n_per_class]] = True
    return permutation[is_labelled], permutation[~is_labelled]


class SemiSupervisedTrainer(UnsupervisedTrainer):
    """Semi-supervised training of SCANVI or VAEC.

    Each step minimises the unsupervised loss of a minibatch of all cells (``full_dataset``,
    labels hidden) plus ``classification_ratio`` times the cross-entropy of the classifier on a
    minibatch of ``labelled_set``. After each epoch, the classifier alone is trained on
    ``labelled_set`` for ``n_epochs_classifier`` epochs (by ``classifier_trainer``).

    Assigning ``trainer.labelled_set = trainer.create_posterior(indices=...)`` replaces the
    labelled cells (for training and for the classifier).

    Parameters
    ----------
    model
        A ``SCANVI`` or ``VAEC`` (a model with ``classify`` and ``classifier``).
    gene_dataset
        A ``GeneExpressionDataset`` with labels.
    n_labelled_samples_per_class
        Labelled cells drawn at random from each label.
    n_epochs_classifier
        Epochs of classifier training after each epoch.
    lr_classification
        Learning rate of that classifier training.
    classification_ratio
        Weight of the classification loss.
    seed
        Seed of the choice of labelled cells (and of the trainer's split).
    **kwargs
        Arguments of :class:`~scvi.inference.UnsupervisedTrainer` (``n_epochs_kl_warmup``,
        ``frequency``, ``batch_size`` ...).

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    >>> scanvi = SCANVI(gene_dataset.nb_genes, n_batch=gene_dataset.n_batches * False,
    ... n_labels=gene_dataset.n_labels)
    >>> trainer = SemiSupervisedTrainer(scanvi, gene_dataset)
    >>> trainer.train(n_epochs=20)
    >>> trainer.unlabelled_set.accuracy()
    """

    def __init__(
        self,
        model,
        gene_dataset,
        n_labelled_samples_per_class: int = 50,
        n_epochs_classifier: int = 1,
        lr_classification: float = 5 * 1e-3,
        classification_ratio: float = 50,
        seed: int = 0,
        **kwargs,
    ):
        if not (hasattr(model, "classify") and hasattr(model, "classifier")):
            raise TypeError(f"SemiSupervisedTrainer needs a model with a classifier (SCANVI, VAEC); got {type(model)}")
        _check_count("n_labelled_samples_per_class", n_labelled_samples_per_class)
        _check_count("n_epochs_classifier", n_epochs_classifier)
        if not lr_classification > 0:
            raise ValueError(f"`lr_classification` must be positive; got {lr_classification!r}")
        if not classification_ratio >= 0:
            raise ValueError(f"`classification_ratio` must be non-negative; got {classification_ratio!r}")
        if gene_dataset.n_labels > model.n_labels:
            raise ValueError(
                f"the dataset has {gene_dataset.n_labels} labels but the model was built with "
                f"n_labels={model.n_labels}"
            )
        super().__init__(model, gene_dataset, seed=seed, **kwargs)
        self.n_epochs_classifier = n_epochs_classifier
        self.lr_classification = lr_classification
        self.classification_ratio = classification_ratio
        self.n_labelled_samples_per_class = n_labelled_samples_per_class
        labelled, unlabelled = labelled_split(
            gene_dataset.labels, gene_dataset.n_labels, n_labelled_samples_per_class, seed
        )
        self.classifier_trainer = ClassifierTrainer(
            model.classifier,
            gene_dataset,
            metrics_to_monitor=[],
            show_progbar=False,
            frequency=None,
            sampling_model=self.model,
            use_cuda=self.use_cuda,
            data_loader_kwargs=self.data_loader_kwargs,
        )
        self.full_dataset = self.create_posterior(shuffle=True)
        self.labelled_set = self.create_posterior(indices=labelled)
        self.unlabelled_set = self.create_posterior(indices=unlabelled)
        for posterior in (self.labelled_set, self.unlabelled_set):
            posterior.to_monitor = ["reconstruction_error", "accuracy"]

    def register_posterior(self, name, value):
        """Register a posterior; a new ``labelled_set`` is also the classifier's training set."""
        super().register_posterior(name, value)
        if name.strip("_") == "labelled_set":
            self.classifier_trainer.train_set = value

    @property
    def posteriors_loop(self) -> List[str]:
        """``["full_dataset", "labelled_set"]``."""
        return ["full_dataset", "labelled_set"]

    def train(self, n_epochs=400, lr=1e-3, eps=0.01, params=None, **extras_kwargs):
        """Train for ``n_epochs`` epochs (see :meth:`Trainer.train`).

        Raises
        ------
        ValueError
            If a posterior iterated in training (``labelled_set`` ...) has no cell.
        """
        for name in self.posteriors_loop:
            if getattr(self, name).nb_cells == 0:
                raise ValueError(f"`{name}` has no cell: give it cells before training")
        super().train(n_epochs=n_epochs, lr=lr, eps=eps, params=params, **extras_kwargs)

    def loss(self, tensors_all, tensors_labelled):
        """Unsupervised loss of ``tensors_all`` plus ``classification_ratio`` times the
        cross-entropy of the classifier on ``tensors_labelled``.

        Parameters
        ----------
        tensors_all
            Minibatch of ``full_dataset`` (its labels are not used).
        tensors_labelled
            Minibatch of ``labelled_set``.
        """
        loss = super().loss(tensors_all, feed_labels=False)
        x, labels = tensors_labelled[0], tensors_labelled[4]
        return loss + self.classification_ratio * cross_entropy(self.model.classify(x), labels)

    def on_epoch_end(self) -> bool:
        """Train the classifier for ``n_epochs_classifier`` epochs, then record metrics."""
        if self.n_epochs_classifier > 0:
            self.model.eval()
            self.classifier_trainer.train(self.n_epochs_classifier, lr=self.lr_classification)
            self.model.train()
        return super().on_epoch_end()

    def create_posterior(
        self, model=None, gene_dataset=None, shuffle=False, indices=None, type_class=AnnotationPosterior
    ):
        """An :class:`AnnotationPosterior` (by default) over ``indices`` (see :meth:`Trainer.create_posterior`)."""
        return super().create_posterior(model, gene_dataset, shuffle, indices, type_class)


class JointSemiSupervisedTrainer(SemiSupervisedTrainer):
    """:class:`SemiSupervisedTrainer` without the separate classifier epochs
    (``n_epochs_classifier=0``): the classifier learns only through the joint loss.

    Parameters
    ----------
    model, gene_dataset, **kwargs
        As in :class:`SemiSupervisedTrainer`.
    """

    def __init__(self, model, gene_dataset, **kwargs):
        kwargs.update({"n_epochs_classifier": 0})
        super().__init__(model, gene_dataset, **kwargs)


class AlternateSemiSupervisedTrainer(SemiSupervisedTrainer):
    """Alternate an unsupervised epoch over all cells and classifier epochs on the labelled cells.

    Parameters
    ----------
    *args, **kwargs
        As in :class:`SemiSupervisedTrainer`.
    """

    def loss(self, all_tensor):
        """Unsupervised loss of a minibatch of all cells (labels hidden).

        Parameters
        ----------
        all_tensor
            Minibatch of ``full_dataset``.
        """
        return UnsupervisedTrainer.loss(self, all_tensor, feed_labels=False)

    @property
    def posteriors_loop(self) -> List[str]:
        """``["full_dataset"]``."""
        return ["full_dataset"]
