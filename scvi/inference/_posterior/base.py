"""Data access of a posterior: which cells, in which order, in minibatches on the model's device."""
import copy
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data.sampler import RandomSampler, SequentialSampler, SubsetRandomSampler

from scvi._utils import resolve_device

from ._sampling import BatchIndexSampler, SequentialSubsetSampler, build_data_loader

logger = logging.getLogger(__name__)

#: data-loader options that describe how to iterate rather than objects; saved with a posterior
_SAVED_LOADER_KEYS = ("batch_size", "pin_memory", "drop_last", "num_workers")


def _as_index_array(indices: Union[Sequence[int], np.ndarray], n_cells: int) -> np.ndarray:
    """Turn integer indices or a boolean mask into an int64 array and check the range."""
    indices = np.asarray(indices)
    if indices.dtype == bool:
        if indices.shape != (n_cells,):
            raise ValueError(f"a boolean `indices` mask must have shape ({n_cells},); got {indices.shape}")
        return np.flatnonzero(indices).astype(np.int64)
    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"`indices` must be integers or a boolean mask; got dtype {indices.dtype}")
    indices = indices.astype(np.int64).ravel()
    if indices.min() < 0 or indices.max() >= n_cells:
        raise ValueError(f"`indices` must lie in [0, {n_cells}); got values in [{indices.min()}, {indices.max()}]")
    return indices


class PosteriorBase:
    """A model and a subset of the cells of a dataset, iterated in minibatches.

    Parameters
    ----------
    model
        A model (``VAE``, ``VAEC``, ``SCANVI`` ...).
    gene_dataset
        A ``GeneExpressionDataset``.
    shuffle
        Iterate over all cells in random order (exclusive with ``indices``).
    indices
        Cells of the posterior: integer indices or a boolean mask, shape ``(n_cells,)``; iterated in
        random order (use :meth:`sequential` for a fixed order).
    use_cuda
        Compute on the GPU if there is one (CPU fallback with one warning).
    data_loader_kwargs
        Data-loader options, e.g. ``{"batch_size": 128}``.
    """

    def __init__(
        self,
        model,
        gene_dataset,
        shuffle=False,
        indices=None,
        use_cuda=True,
        data_loader_kwargs={},  # noqa: B006 - legacy signature; never mutated
    ):
        if indices is not None and shuffle:
            raise ValueError("`indices` and `shuffle=True` are mutually exclusive")
        self.model = model
        self.gene_dataset = gene_dataset
        self.to_monitor: List[str] = []
        self.device = resolve_device(use_cuda)
        self.use_cuda = self.device.type == "cuda"
        if indices is None:
            sampler = RandomSampler(gene_dataset) if shuffle else SequentialSampler(gene_dataset)
        else:
            sampler = SubsetRandomSampler(_as_index_array(indices, len(gene_dataset)))
        self.data_loader_kwargs = dict(data_loader_kwargs or {})
        self.data_loader_kwargs.update({"collate_fn": gene_dataset.collate_fn_builder(), "sampler": sampler})
        self.data_loader = build_data_loader(gene_dataset, self.data_loader_kwargs, self.device)
        self.original_indices = self.indices

    # ------------------------------------------------------------------ what is iterated
    @property
    def indices(self) -> np.ndarray:
        """Indices of the cells of this posterior in the dataset, shape ``(nb_cells,)``."""
        sampler = getattr(self.data_loader, "sampler", None)
        if isinstance(sampler, BatchIndexSampler):
            sampler = sampler.sampler
        if hasattr(sampler, "indices"):
            return np.asarray(sampler.indices)
        return np.arange(len(self.gene_dataset))

    @property
    def nb_cells(self) -> int:
        """Number of cells of this posterior."""
        return len(self.indices)

    @property
    def posterior_type(self) -> str:
        """Name of the posterior class (saved by :meth:`save_posterior`)."""
        return self.__class__.__name__

    def __iter__(self):
        return map(self.to_cuda, iter(self.data_loader))

    def to_cuda(self, tensors):
        """Move a minibatch to the posterior's device (a no-op on the CPU).

        Parameters
        ----------
        tensors
            A minibatch (named tuple or list of tensors).
        """
        if self.device.type == "cpu":
            return tensors
        moved = [t.to(self.device, non_blocking=True) for t in tensors]
        return type(tensors)._make(moved) if hasattr(tensors, "_make") else moved

    # ------------------------------------------------------------------ derived posteriors
    def update(self, data_loader_kwargs: dict) -> "PosteriorBase":
        """A shallow copy of this posterior with updated data-loader options.

        Parameters
        ----------
        data_loader_kwargs
            Options overriding the current ones (``batch_size``, ``sampler``, ``collate_fn`` ...).
        """
        posterior = copy.copy(self)
        posterior.data_loader_kwargs = dict(self.data_loader_kwargs)
        posterior.data_loader_kwargs.update(data_loader_kwargs)
        posterior.data_loader = build_data_loader(self.gene_dataset, posterior.data_loader_kwargs, self.device)
        return posterior

    def sequential(self, batch_size: Optional[int] = 128) -> "PosteriorBase":
        """A copy iterating over the same cells in the order of :attr:`indices`.

        Parameters
        ----------
        batch_size
            Cells per minibatch.
        """
        return self.update({"batch_size": batch_size, "sampler": SequentialSubsetSampler(indices=self.indices)})

    def corrupted(self) -> "PosteriorBase":
        """A copy whose minibatches hold the corrupted counts (``gene_dataset.corrupted_X``)."""
        return self.update({"collate_fn": self.gene_dataset.collate_fn_builder(corrupted=True)})

    def uncorrupted(self) -> "PosteriorBase":
        """A copy whose minibatches hold the original counts."""
        return self.update({"collate_fn": self.gene_dataset.collate_fn_builder()})

    def update_sampler_indices(self, idx: Union[List, np.ndarray]):
        """Iterate (in random order) over the cells ``idx`` from now on, in place.

        Parameters
        ----------
        idx
            Indices in ``[0, len(gene_dataset))``; keep ``self.data_loader`` to restore it.
        """
        sampler = SubsetRandomSampler(_as_index_array(idx, len(self.gene_dataset)))
        self.data_loader_kwargs.update({"sampler": sampler})
        self.data_loader = build_data_loader(self.gene_dataset, self.data_loader_kwargs, self.device)

    def raw_data(self):
        """Counts and labels of the posterior's cells.

        Returns
        -------
        X
            Counts, shape ``(nb_cells, n_genes)`` (dense or sparse like the dataset).
        labels
            Labels, shape ``(nb_cells,)``.
        """
        return self.gene_dataset.X[self.indices], self.gene_dataset.labels[self.indices].ravel()

    def accuracy(self):
        """Classification accuracy (defined by ``AnnotationPosterior``; ``None`` here)."""
        return None

    accuracy.mode = "max"

    # ------------------------------------------------------------------ persistence
    def save_posterior(self, dir_path: str):
        """Save the dataset, the model weights, the indices and the loader options into ``dir_path``.

        The directory must not exist; it is written in a temporary directory renamed into place.
        Reload with :func:`scvi.inference.posterior_utils.load_posterior`.

        Parameters
        ----------
        dir_path
            A directory that does not exist yet.

        Raises
        ------
        ValueError
            If ``dir_path`` already exists.
        """
        target = Path(dir_path)
        if target.exists():
            raise ValueError(f"{dir_path} already exists. Please provide an unexisting directory for saving.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            self.gene_dataset.to_anndata().write(tmp / "anndata_dataset.h5ad", compression="lzf")
            (tmp / "posterior_type.txt").write_text(self.posterior_type)
            torch.save(self.model.state_dict(), tmp / "model_params.pt")
            options = {k: self.data_loader_kwargs[k] for k in _SAVED_LOADER_KEYS if k in self.data_loader_kwargs}
            (tmp / "data_loader_kwargs.json").write_text(json.dumps(options))
            np.save(tmp / "indices.npy", np.asarray(self.indices))
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ model access (overridable)
    def _inference(self, tensors, n_samples: int = 1, transform_batch: Optional[int] = None) -> dict:
        """The model's ``inference`` outputs for a minibatch (the one place reading parameters).

        Subclasses whose model takes other inputs (e.g. proteins) override this.
        """
        x, _, _, batch_index, labels = tensors[:5]
        return self.model.inference(
            x, batch_index=batch_index, y=labels, n_samples=n_samples, transform_batch=transform_batch
        )
