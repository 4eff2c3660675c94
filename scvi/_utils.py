"""Small helpers used across the package: device choice, progress bars, randomness, atomic writes,
per-minibatch caches."""
import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Optional, TypeVar, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

RandomState = Union[None, int, np.random.Generator, np.random.RandomState]

_warned_no_cuda = False


def resolve_device(use_cuda: Union[bool, str, None] = True) -> torch.device:
    """Return the device to compute on.

    ``use_cuda=True`` on a machine without a usable GPU falls back to the CPU with one warning per
    process (legacy scripts pass ``use_cuda=True`` everywhere).

    Parameters
    ----------
    use_cuda
        ``True`` to use the GPU if there is one, ``False`` for the CPU, ``"auto"`` for the GPU when
        available without warning.

    Returns
    -------
    torch.device
    """
    global _warned_no_cuda
    available = torch.cuda.is_available()
    if use_cuda == "auto":
        return torch.device("cuda" if available else "cpu")
    if use_cuda and not available:
        if not _warned_no_cuda:
            warnings.warn(
                "use_cuda=True but no CUDA device is available: running on the CPU.",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_no_cuda = True
        return torch.device("cpu")
    return torch.device("cuda" if use_cuda else "cpu")


def check_random_state(random_state: RandomState = None) -> np.random.Generator:
    """Turn ``None``, a seed, a ``Generator`` or a legacy ``RandomState`` into a ``Generator``.

    ``None`` draws from numpy's global state, so that ``scvi.set_seed`` (which seeds numpy) makes
    legacy workflows reproducible without library code reseeding anything.
    """
    if random_state is None:
        return np.random.default_rng(np.random.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(int(random_state))
    raise TypeError(f"`random_state` must be None, an int or a numpy Generator; got {type(random_state)!r}")


def track(
    iterable: Iterable[T],
    description: str = "",
    total: Optional[int] = None,
    disable: bool = False,
    **tqdm_kwargs,
) -> Iterator[T]:
    """Iterate with a tqdm progress bar (the one progress helper of the package).

    The bar writes to stderr and is disabled when ``disable`` is true or the ``scvi`` logger is
    above WARNING.
    """
    from tqdm.auto import tqdm

    quiet = logging.getLogger("scvi").getEffectiveLevel() > logging.WARNING
    return tqdm(iterable, desc=description, total=total, disable=disable or quiet, file=sys.stderr, **tqdm_kwargs)


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike], mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path`` and rename it into place only on success.

    A failure (exception, interruption) leaves any existing file at ``path`` untouched and removes
    the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_name)
        raise


def atomic_path(path: Union[str, os.PathLike]) -> "contextlib.AbstractContextManager[Path]":
    """Yield a temporary path next to ``path`` (for writers that want a filename, e.g. h5py,
    torch.save, pandas) and rename it to ``path`` on success."""
    return _atomic_path(Path(path))


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_name)
        raise


class LastTensorResult:
    """A one-entry cache of a value computed from a tensor, such as a minibatch that several layers read.

    The value is reused while the tensor is the same object, unmodified (its version counter), with
    an equal ``key``. The entry holds a reference to the tensor, so ``is`` stays valid, and is one
    tuple, read and replaced atomically. Inference tensors (no version counter) are not cached.
    """

    def __init__(self) -> None:
        self._entry: tuple = (None, -1, None, None)

    def get(self, tensor: torch.Tensor, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value for ``(tensor, key)``, or ``compute()`` (then cached)."""
        if tensor.is_inference():
            return compute()
        last_tensor, version, last_key, value = self._entry
        if tensor is last_tensor and tensor._version == version and key == last_key:
            return value
        value = compute()
        self._entry = (tensor, tensor._version, key, value)
        return value
