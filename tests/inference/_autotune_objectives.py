"""Objectives for the autotune tests, pickled by value so that any worker process can load them."""
import os
import sys
import time

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def quadratic(space, is_best_training=False, target=0.3):
    """A trivial objective: ``(x - target) ** 2``; records which process evaluated it."""
    if is_best_training:
        return {"trained_on": space}
    return {"loss": (space["x"] - target) ** 2, "status": "ok", "space": space, "pid": os.getpid()}


def fails_above(space, is_best_training=False, threshold=0.5):
    """Raises for ``x > threshold``: the failed trials must not stop the search."""
    if space["x"] > threshold:
        raise RuntimeError(f"planted failure at x={space['x']:.3f}")
    return quadratic(space, is_best_training)


def sleepy(space, is_best_training=False, seconds=1.0):
    """Like :func:`quadratic`, but each evaluation takes ``seconds`` (to kill a worker mid-trial)."""
    if not is_best_training:
        time.sleep(seconds)
    return quadratic(space, is_best_training)


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def recorded(space, is_best_training=False, marker_dir=".", min_workers=1, seconds=0.0):
    """Record each evaluation as a file ``<x>_<pid>`` in ``marker_dir``; with ``min_workers``,
    wait (at most 120 s) until that many distinct processes have evaluated something, so that
    every worker is sure to take jobs however slowly it started."""
    if is_best_training:
        return {"trained_on": space}
    pid = os.getpid()
    with open(os.path.join(marker_dir, f"{space['x']!r}_{pid}"), "w"):
        pass

    def n_workers():
        return len({name.rsplit("_", 1)[1] for name in os.listdir(marker_dir)})

    _wait_for(lambda: n_workers() >= min_workers, 120.0)
    time.sleep(seconds)
    return quadratic(space)


from scvi.dataset.dataset import DownloadableDataset  # noqa: E402


class PlantedFileDataset(DownloadableDataset):
    """A 'downloadable' dataset read from ``planted.npz`` in ``save_path``; every populate()
    leaves a ``populated_<pid>`` file there, to tell which processes populated it."""

    def __init__(self, save_path, delayed_populating=False):
        super().__init__(
            urls=None, filenames=["planted.npz"], save_path=save_path, delayed_populating=delayed_populating
        )

    def populate(self):
        data = __import__("numpy").load(self._file_path(0))
        self.populate_from_data(data["X"], batch_indices=data["batch_indices"], labels=data["labels"])
        with open(os.path.join(self.save_path, f"populated_{os.getpid()}"), "w"):
            pass


def exits(space, is_best_training=False):
    """Ends its worker process abruptly (as an out-of-memory kill would)."""
    os._exit(3)
