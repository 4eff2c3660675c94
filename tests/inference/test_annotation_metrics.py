"""Accuracy summaries and the scikit-learn baselines of scvi.inference.annotation."""
import numpy as np
import pytest

from scvi.inference.annotation import (
    Accuracy,
    compute_accuracy_nn,
    compute_accuracy_rf,
    compute_accuracy_svc,
    compute_accuracy_tuple,
    unsupervised_clustering_accuracy,
)


def test_accuracy_tuple_table():
    acc = compute_accuracy_tuple(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]))
    assert isinstance(acc, Accuracy)
    assert acc.unweighted == pytest.approx(3 / 5)  # every cell counts the same
    assert acc.weighted == pytest.approx(0.5)  # every class counts the same
    assert acc.worst == 0.0
    assert acc.accuracy_classes == [0.5, 1.0, 0.0]


def test_accuracy_tuple_with_non_contiguous_labels():
    acc = compute_accuracy_tuple(np.array([3, 3, 7]), np.array([3, 0, 7]))
    assert acc.accuracy_classes == [0.5, 1.0]


def test_accuracy_tuple_errors():
    with pytest.raises(ValueError, match="same length"):
        compute_accuracy_tuple(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="is empty"):
        compute_accuracy_tuple(np.array([]), np.array([]))


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, size=(3, 4))
    labels = np.repeat([0, 1, 2], 40)
    data = centers[labels] + rng.normal(size=(120, 4))
    train = np.arange(120) % 2 == 0
    return data[train], labels[train], data[~train], labels[~train]


@pytest.mark.parametrize("func", [compute_accuracy_nn, compute_accuracy_svc, compute_accuracy_rf])
def test_baselines_separate_clean_clusters(blobs, func):
    kwargs = {"param_grid": {"max_depth": [3], "n_estimators": [10]}} if func is compute_accuracy_rf else {}
    (train, test), y_pred = func(*blobs, **kwargs)
    assert test.unweighted > 0.9 and train.unweighted > 0.9
    assert y_pred.shape == blobs[3].shape


def test_unsupervised_clustering_accuracy_is_reexported():
    accuracy, _ = unsupervised_clustering_accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    assert accuracy == 1.0
