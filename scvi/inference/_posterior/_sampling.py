"""Samplers and the data loader of a posterior: one collate call per minibatch.

A :class:`torch.utils.data.DataLoader` with ``batch_size=n`` asks the dataset for each cell, then
collates a list of ``n`` indices. Here the sampler yields whole index arrays instead
(:class:`BatchIndexSampler`), so the dataset's ``collate_fn`` slices the count matrix once per
minibatch. The legacy ``data_loader_kwargs`` (``batch_size``, ``sampler``, ``collate_fn``,
``pin_memory``, ``drop_last``, ...) keep their meaning.
"""
import logging
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler

logger = logging.getLogger(__name__)


class SequentialSubsetSampler(SubsetRandomSampler):
    """Iterate over ``indices`` in the order given (no shuffling).

    Parameters
    ----------
    indices
        Cell indices, shape ``(n,)``.
    generator
        Unused; kept for the signature of :class:`~torch.utils.data.SubsetRandomSampler`.
    """

    def __init__(self, indices: Sequence[int], generator=None) -> None:
        super().__init__(indices, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def sampler_order(sampler: Sampler) -> np.ndarray:
    """One epoch of ``sampler`` as an int64 array, drawn without a Python loop when possible.

    Random samplers consume the torch generator exactly as their own ``__iter__`` would (one
    ``randperm``), so seeded runs match iteration through the sampler itself.
    """
    if isinstance(sampler, SequentialSubsetSampler):
        return np.asarray(sampler.indices, dtype=np.int64).ravel()
    if type(sampler) is SubsetRandomSampler:
        indices = np.asarray(sampler.indices, dtype=np.int64).ravel()
        permutation = torch.randperm(len(indices), generator=sampler.generator).numpy()
        return indices[permutation]
    if type(sampler) is SequentialSampler:
        return np.arange(len(sampler.data_source), dtype=np.int64)
    if type(sampler) is RandomSampler and not sampler.replacement and sampler._num_samples is None:
        generator = sampler.generator
        if generator is None:
            # RandomSampler draws its own seed from the global generator first.
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator().manual_seed(seed)
        return torch.randperm(len(sampler.data_source), generator=generator).numpy()
    return np.fromiter(iter(sampler), dtype=np.int64)


class BatchIndexSampler(Sampler):
    """Group the indices drawn by ``sampler`` into arrays of ``batch_size`` indices.

    Parameters
    ----------
    sampler
        The cell sampler (sequential, random, subset ...).
    batch_size
        Cells per minibatch.
    drop_last
        Drop the last, incomplete minibatch.
    """

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    @property
    def indices(self):
        """The indices of the wrapped sampler (when it has some)."""
        return self.sampler.indices

    def __iter__(self) -> Iterator[np.ndarray]:
        order = sampler_order(self.sampler)
        size = self.batch_size
        stop = len(order) - (len(order) % size if self.drop_last else 0)
        for start in range(0, stop, size):
            yield order[start : start + size]

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class IndexBatchDataLoader(DataLoader):
    """A ``DataLoader`` whose sampler yields whole index arrays.

    Torch sees ``batch_size=None`` (no automatic batching: the dataset's ``collate_fn`` receives one
    index array per minibatch), but ``batch_size`` and ``drop_last`` report the logical values, as
    ``posterior.data_loader.batch_size`` did in scVI 0.6.
    """

    def __iter__(self):
        if self.num_workers or self.pin_memory or self.timeout or not isinstance(self.sampler, BatchIndexSampler):
            return super().__iter__()
        # In-process loading is one collate call per minibatch: torch's iterator around it (its
        # fetcher, a profiler record per minibatch) costs about a third as much again. The same
        # draws as torch's iterator: it takes a base seed for its workers from the generator when
        # created, before the sampler draws its permutation (at the first minibatch).
        batches = iter(self.sampler)
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return (self.collate_fn(self.dataset[indices]) for indices in batches)

    @property
    def batch_size(self) -> Optional[int]:
        sampler = self.__dict__.get("sampler")
        if isinstance(sampler, BatchIndexSampler):
            return sampler.batch_size
        return self.__dict__.get("_raw_batch_size")

    @batch_size.setter
    def batch_size(self, value: Optional[int]) -> None:  # set once by DataLoader.__init__
        self.__dict__["_raw_batch_size"] = value

    @property
    def drop_last(self) -> bool:
        sampler = self.__dict__.get("sampler")
        if isinstance(sampler, BatchIndexSampler):
            return sampler.drop_last
        return self.__dict__.get("_raw_drop_last", False)

    @drop_last.setter
    def drop_last(self, value: bool) -> None:
        self.__dict__["_raw_drop_last"] = value


def build_data_loader(dataset, data_loader_kwargs: dict, device: Optional[torch.device] = None) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` that collates each minibatch from one index array.

    Parameters
    ----------
    dataset
        A dataset whose ``__getitem__`` returns its argument (``GeneExpressionDataset`` does).
    data_loader_kwargs
        Legacy data-loader keyword arguments: ``batch_size`` (default 1), ``sampler``,
        ``collate_fn``, ``drop_last``, ``shuffle``, ``pin_memory``, ``num_workers`` ...
    device
        Pinned memory is only requested when this is a CUDA device.
    """
    kwargs = dict(data_loader_kwargs)
    batch_size = kwargs.pop("batch_size", 1)
    drop_last = kwargs.pop("drop_last", False)
    shuffle = kwargs.pop("shuffle", False)
    sampler = kwargs.pop("sampler", None)
    if sampler is None:
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    pin_memory = bool(kwargs.pop("pin_memory", False)) and device is not None and device.type == "cuda"
    if batch_size is None:
        return DataLoader(dataset, batch_size=None, sampler=sampler, pin_memory=pin_memory, **kwargs)
    return IndexBatchDataLoader(
        dataset,
        batch_size=None,
        sampler=BatchIndexSampler(sampler, batch_size, drop_last),
        pin_memory=pin_memory,
        **kwargs,
    )
