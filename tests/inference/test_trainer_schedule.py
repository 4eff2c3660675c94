"""Pure pieces of the training loop: KL warm-up, split sizes, early stopping decisions."""
import numpy as np
import pytest

from scvi.inference._kl_schedule import kl_weight
from scvi.inference._splits import split_indices, split_sizes
from scvi.inference.trainer import EarlyStopping


@pytest.mark.parametrize(
    "epoch, n_iter, n_epochs_kl, n_iter_kl, expected",
    [
        (0, 0, 400, None, 0.0),
        (100, 0, 400, None, 0.25),
        (400, 0, 400, None, 1.0),
        (900, 0, 400, None, 1.0),
        (10, 50, None, 100, 0.5),
        (10, 500, None, 100, 1.0),
        (10, 50, 20, 100, 0.5),  # the epoch criterion wins
        (3, 3, None, None, 1.0),
        (0, 0, 0, None, 1.0),
    ],
)
def test_kl_weight_table(epoch, n_iter, n_epochs_kl, n_iter_kl, expected):
    assert kl_weight(epoch, n_iter, n_epochs_kl, n_iter_kl) == pytest.approx(expected)


@pytest.mark.parametrize(
    "n, train, test, expected",
    [
        (100, 0.9, None, (90, 10)),
        (101, 0.9, None, (90, 11)),
        (100, 0.8, 0.1, (80, 10)),
        (10, 0.75, 0.25, (7, 3)),  # floor / ceil as scVI 0.6 (scikit-learn)
        (100, 1.0, None, (100, 0)),
        (100, 0.5, 20, (50, 20)),
    ],
)
def test_split_sizes_table(n, train, test, expected):
    assert split_sizes(n, train, test) == expected


@pytest.mark.parametrize(
    "train, test, match",
    [(0.9, 0.2, "more than"), (1.5, None, "train_size"), (0.5, -0.1, "test_size"), (0.5, "a", "test_size")],
)
def test_split_sizes_errors(train, test, match):
    with pytest.raises((ValueError, TypeError), match=match):
        split_sizes(100, train, test)


def test_split_indices_partition_and_legacy_permutation():
    train, test, validation = split_indices(50, 0.6, 0.2, seed=3)
    assert (len(train), len(test), len(validation)) == (30, 10, 10)
    assert np.array_equal(np.sort(np.concatenate([train, test, validation])), np.arange(50))
    permutation = np.random.RandomState(3).permutation(50)
    assert np.array_equal(test, permutation[:10]) and np.array_equal(train, permutation[10:40])


def test_early_stopping_stops_after_patience_without_improvement():
    stopping = EarlyStopping(early_stopping_metric="elbo", patience=2, threshold=1.0)
    decisions = [stopping.update(value)[0] for value in (100.0, 99.5, 99.2, 99.0)]
    assert decisions == [True, True, True, False]


def test_early_stopping_keeps_going_while_improving_and_reduces_lr():
    stopping = EarlyStopping(
        early_stopping_metric="elbo", patience=10, threshold=1.0, reduce_lr_on_plateau=True, lr_patience=2
    )
    results = [stopping.update(v) for v in (100.0, 90.0, 80.0, 79.9, 79.8, 79.7)]
    assert all(cont for cont, _ in results)
    assert [reduce for _, reduce in results] == [False, False, False, False, False, True]


def test_early_stopping_max_mode_and_best_state():
    stopping = EarlyStopping(early_stopping_metric="knn_purity", save_best_state_metric="elbo", threshold=0)
    assert stopping.mode == "max" and stopping.mode_save_state == "min"
    assert [stopping.update_state(v) for v in (5.0, 4.0, 4.5, 3.0)] == [True, True, False, True]
    stopping.update(0.5)
    assert stopping.best_performance == 0.5


def test_early_stopping_benchmark_never_stops():
    stopping = EarlyStopping(early_stopping_metric="elbo", patience=0, benchmark=True)
    assert all(stopping.update(1.0) == (True, False) for _ in range(5))


@pytest.mark.parametrize("kwargs, match", [({"early_stopping_metric": "elbow"}, "elbow"),
                                           ({"save_best_state_metric": "nope"}, "nope"),
                                           ({"lr_factor": 0}, "lr_factor")])
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)
