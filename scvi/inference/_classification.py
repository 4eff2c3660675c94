"""Classification helpers of :mod:`scvi.inference.annotation`: predictions of a model over a
posterior, accuracy summaries, and the scikit-learn baselines (kNN, SVC, random forest)."""
import logging
from collections import namedtuple
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

Accuracy = namedtuple("Accuracy", ["unweighted", "weighted", "worst", "accuracy_classes"])
Accuracy.__doc__ = """Accuracy summary of a classification.

Attributes
----------
unweighted
    Fraction of correctly classified cells (each cell counts the same).
weighted
    Mean of the per-class accuracies (each class counts the same).
worst
    Lowest per-class accuracy.
accuracy_classes
    Accuracy (recall) of each class present in the true labels, in increasing label order.
"""


def _outputs_probabilities(module: nn.Module) -> bool:
    """Whether a classifier network ends with a softmax (else it returns logits)."""
    layers = getattr(module, "classifier", None)
    if isinstance(layers, nn.Sequential) and len(layers):
        return isinstance(layers[-1], nn.Softmax)
    return True


def cross_entropy(output: torch.Tensor, labels: torch.Tensor, probabilities: bool = True) -> torch.Tensor:
    """Mean cross-entropy of class probabilities (or logits) against integer labels.

    Parameters
    ----------
    output
        Class probabilities (``probabilities=True``) or logits, shape ``(n, n_labels)``.
    labels
        Labels, shape ``(n, 1)`` or ``(n,)``.
    probabilities
        Whether ``output`` holds probabilities.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    labels = labels.reshape(-1).long()
    if probabilities:
        return F.nll_loss(torch.log(output + 1e-8), labels)
    return F.cross_entropy(output, labels)


def encode_for_classifier(model, x: torch.Tensor, model_zl: bool = False) -> torch.Tensor:
    """Features a classifier trained on a model's latent space reads: the mean of ``q(z | x)``,
    concatenated with the mean of ``q(l | x)`` when ``model_zl``.

    Parameters
    ----------
    model
        A ``VAE``-like model with ``z_encoder`` and ``l_encoder``.
    x
        Counts, shape ``(n, n_genes)``.
    model_zl
        Append the log-library mean.

    Returns
    -------
    torch.Tensor
        Shape ``(n, n_latent)`` or ``(n, n_latent + 1)``.
    """
    if getattr(model, "log_variational", False):
        x = torch.log1p(x)
    z = model.z_encoder(x)[0]
    if model_zl:
        return torch.cat((z, model.l_encoder(x)[0]), dim=-1)
    return z


def predict_batch(model, x: torch.Tensor, classifier: Optional[nn.Module] = None, model_zl: bool = False):
    """Class scores of one minibatch (see :func:`compute_predictions` for the three cases)."""
    if hasattr(model, "classify"):
        return model.classify(x)
    if classifier is not None:
        if model is not None:
            x = encode_for_classifier(model, x, model_zl)
        return classifier(x)
    return model(x)


@torch.no_grad()
def compute_predictions(model, data_loader, classifier=None, soft: bool = False, model_zl: bool = False):
    """True labels and predictions of every cell of a posterior, in iteration order.

    Three cases: ``model`` has ``classify`` (``SCANVI``, ``VAEC``) and classifies the counts;
    or ``classifier`` classifies the latent means of ``model`` (a ``VAE``; ``model=None``: the
    counts); or ``model`` is itself a classifier of the counts.

    Parameters
    ----------
    model
        A model with ``classify``, a ``VAE`` whose latent space ``classifier`` reads, a classifier
        network, or ``None``.
    data_loader
        A posterior (iterable of minibatches).
    classifier
        A classifier of the latent space of ``model``.
    soft
        Return the class probabilities instead of the predicted labels.
    model_zl
        The classifier reads ``z`` and the log-library mean.

    Returns
    -------
    y
        True labels, shape ``(n_cells,)``.
    y_pred
        Predicted labels, shape ``(n_cells,)``, or probabilities ``(n_cells, n_labels)`` if ``soft``.
    """
    modules = [m for m in (model, classifier) if isinstance(m, nn.Module)]
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        all_y, all_y_pred = [], []
        for tensors in data_loader:
            x, labels = tensors[0], tensors[4]
            all_y.append(labels.reshape(-1).cpu())
            y_pred = predict_batch(model, x, classifier, model_zl)
            all_y_pred.append((y_pred if soft else y_pred.argmax(dim=-1)).cpu())
    finally:
        for m, mode in zip(modules, was_training):
            m.train(mode)
    if not all_y:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32 if soft else np.int64)
    return torch.cat(all_y).numpy(), torch.cat(all_y_pred).numpy()


@torch.no_grad()
def compute_accuracy(vae, data_loader, classifier=None, model_zl: bool = False) -> float:
    """Fraction of the cells of ``data_loader`` whose predicted label is right (see
    :func:`compute_predictions` for the arguments)."""
    all_y, all_y_pred = compute_predictions(vae, data_loader, classifier=classifier, model_zl=model_zl)
    return float(np.mean(all_y == all_y_pred)) if len(all_y) else float("nan")


def compute_accuracy_tuple(y, y_pred) -> Accuracy:
    """Overall, class-averaged, worst and per-class accuracies.

    Parameters
    ----------
    y
        True labels, shape ``(n,)``.
    y_pred
        Predicted labels, shape ``(n,)``.

    Returns
    -------
    Accuracy
        ``(unweighted, weighted, worst, accuracy_classes)``.
    """
    y, y_pred = np.asarray(y).ravel(), np.asarray(y_pred).ravel()
    if y.shape != y_pred.shape:
        raise ValueError(f"`y` and `y_pred` must have the same length; got {len(y)} and {len(y_pred)}")
    if not len(y):
        raise ValueError("`y` is empty: no accuracy to compute")
    classes = np.unique(y)
    accuracy_classes = [float(np.mean(y_pred[y == c] == c)) for c in classes]
    return Accuracy(
        unweighted=float(np.mean(y == y_pred)),
        weighted=float(np.mean(accuracy_classes)),
        worst=float(np.min(accuracy_classes)),
        accuracy_classes=accuracy_classes,
    )


def compute_accuracy_classifier(clf, data_train, labels_train, data_test, labels_test) -> Tuple[Tuple, np.ndarray]:
    """Fit a scikit-learn classifier and score it on the training and test sets.

    Parameters
    ----------
    clf
        An unfitted scikit-learn estimator.
    data_train, labels_train
        Training features ``(n_train, n_features)`` and labels ``(n_train,)``.
    data_test, labels_test
        Test features ``(n_test, n_features)`` and labels ``(n_test,)``.

    Returns
    -------
    tuple
        ``((train_accuracy, test_accuracy), y_pred_test)``: two :class:`Accuracy` tuples and the
        test predictions, shape ``(n_test,)``.
    """
    clf.fit(data_train, labels_train)
    y_pred_test = clf.predict(data_test)
    y_pred_train = clf.predict(data_train)
    train_accuracy = compute_accuracy_tuple(labels_train, y_pred_train)
    return (train_accuracy, compute_accuracy_tuple(labels_test, y_pred_test)), y_pred_test


def compute_accuracy_nn(data_train, labels_train, data_test, labels_test, k: int = 5):
    """:func:`compute_accuracy_classifier` with a distance-weighted ``k``-nearest-neighbour classifier."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(k, weights="distance")
    return compute_accuracy_classifier(clf, data_train, labels_train, data_test, labels_test)


def compute_accuracy_svc(
    data_train, labels_train, data_test, labels_test, param_grid=None, verbose: int = 0, max_iter: int = -1
):
    """:func:`compute_accuracy_classifier` with a support vector classifier tuned by 3-fold grid search.

    Parameters
    ----------
    param_grid
        Grid of ``GridSearchCV``; default: linear kernel with ``C`` in 1, 10, 100, 1000, and RBF
        kernel with the same ``C`` and ``gamma`` in 0.001, 0.0001.
    verbose
        Verbosity of the grid search.
    max_iter
        Iteration limit of the solver (-1: none).
    """
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    if param_grid is None:
        param_grid = [
            {"C": [1, 10, 100, 1000], "kernel": ["linear"]},
            {"C": [1, 10, 100, 1000], "gamma": [0.001, 0.0001], "kernel": ["rbf"]},
        ]
    clf = GridSearchCV(SVC(max_iter=max_iter), param_grid, verbose=verbose, cv=3)
    return compute_accuracy_classifier(clf, data_train, labels_train, data_test, labels_test)


def compute_accuracy_rf(data_train, labels_train, data_test, labels_test, param_grid=None, verbose: int = 0):
    """:func:`compute_accuracy_classifier` with a random forest tuned by 3-fold grid search.

    Parameters
    ----------
    param_grid
        Grid of ``GridSearchCV``; default: ``max_depth`` 3 to 9 and ``n_estimators`` in 10, 50,
        100, 200.
    verbose
        Verbosity of the grid search.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV

    if param_grid is None:
        param_grid = {"max_depth": np.arange(3, 10), "n_estimators": [10, 50, 100, 200]}
    clf = GridSearchCV(RandomForestClassifier(max_depth=2, random_state=0), param_grid, verbose=verbose, cv=3)
    return compute_accuracy_classifier(clf, data_train, labels_train, data_test, labels_test)
