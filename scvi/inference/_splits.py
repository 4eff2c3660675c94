"""Train / test / validation split of the cells (legacy-compatible sizes and permutation)."""
import math
import numbers
from typing import Optional, Tuple, Union

import numpy as np

Size = Optional[Union[int, float]]


def _check_size(name: str, value: Size, n: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be None, an int or a float; got {value!r}")
    if isinstance(value, numbers.Integral):
        if not 0 <= value <= n:
            raise ValueError(f"`{name}`={value} must be between 0 and the number of cells ({n})")
    elif not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}`={value} must be a fraction between 0 and 1")


def split_sizes(n: int, train_size: Size, test_size: Size) -> Tuple[int, int]:
    """Number of training and test cells, as scVI 0.6 computed them.

    Fractions: ``n_test = ceil(test_size * n)``, ``n_train = floor(train_size * n)``; a missing
    size is the complement of the other; integers are counts. ``train_size=1.0`` keeps every cell
    for training.

    Parameters
    ----------
    n
        Number of cells.
    train_size, test_size
        Fractions in ``[0, 1]``, counts, or ``None``.

    Returns
    -------
    n_train, n_test

    Raises
    ------
    ValueError
        If the sizes are out of range or exceed ``n`` together.
    """
    _check_size("train_size", train_size, n)
    _check_size("test_size", test_size, n)
    if train_size is None and test_size is None:
        test_size = 0.25

    def count(size, rounding):
        return int(size) if isinstance(size, numbers.Integral) else int(rounding(size * n))

    if train_size is not None and not isinstance(train_size, numbers.Integral) and train_size == 1.0:
        if test_size not in (None, 0, 0.0):
            raise ValueError(f"Choice of train_size={train_size} and test_size={test_size} not understood")
        return n, 0
    n_test = count(test_size, math.ceil) if test_size is not None else None
    n_train = count(train_size, math.floor) if train_size is not None else None
    if n_train is None:
        n_train = n - n_test
    if n_test is None:
        n_test = n - n_train
    if n_train + n_test > n:
        raise ValueError(f"train_size={train_size} and test_size={test_size} add up to more than the {n} cells")
    if n_train == 0:
        raise ValueError(f"train_size={train_size} leaves no training cell out of {n}")
    return n_train, n_test


def split_indices(n: int, train_size: Size, test_size: Size, seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, test and validation indices from a seeded permutation of the cells.

    The permutation is ``np.random.RandomState(seed).permutation(n)`` (scVI 0.6's), test cells
    first, then training cells; the rest is the validation set.
    """
    n_train, n_test = split_sizes(n, train_size, test_size)
    permutation = np.random.RandomState(seed=seed).permutation(n)
    return (
        permutation[n_test : n_test + n_train],
        permutation[:n_test],
        permutation[n_test + n_train :],
    )
