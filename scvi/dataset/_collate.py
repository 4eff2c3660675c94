"""Minibatch collation: indices -> a named tuple of tensors (the training hot path).

Only the rows of the minibatch are sliced and densified; no per-cell Python work.
"""
import keyword
import sys
from collections import namedtuple
from functools import partial
from typing import Callable, Dict, List, Tuple, Union

import numpy as np
import scipy.sparse as sp_sparse
import torch

DEFAULT_FIELDS = ("X", "local_means", "local_vars", "batch_indices", "labels")

Minibatch = namedtuple("Minibatch", DEFAULT_FIELDS)
Minibatch.__doc__ = """Minibatch of the default attributes (see ``collate_fn_builder``).

Fields: ``X`` float32 ``(n, n_genes)``, ``local_means`` / ``local_vars`` float32 ``(n, 1)``,
``batch_indices`` / ``labels`` int64 ``(n, 1)``. It is a tuple, so
``x, local_l_mean, local_l_var, batch_index, y = minibatch`` keeps working.
"""

_TYPES: Dict[Tuple[str, ...], type] = {DEFAULT_FIELDS: Minibatch}
_TYPES_BY_ATTRIBUTES: Dict[Tuple[str, ...], type] = {}


def field_name(attribute_name: str, attribute_names) -> str:
    """Name of the minibatch field of an attribute: ``corrupted_X`` travels as ``X``."""
    if attribute_name == "corrupted_X" and "X" not in attribute_names:
        return "X"
    return attribute_name


def minibatch_type(attribute_names) -> type:
    """The (cached, picklable) named tuple type whose fields are the given attribute names."""
    cached = _TYPES_BY_ATTRIBUTES.get(attribute_names)
    if cached is not None:
        return cached
    fields = tuple(field_name(name, attribute_names) for name in attribute_names)
    if fields not in _TYPES:
        valid = all(f.isidentifier() and not keyword.iskeyword(f) and not f.startswith("_") for f in fields)
        qualname = "Minibatch_" + "_".join(fields) if valid else f"Minibatch_{len(_TYPES)}"
        cls = namedtuple("Minibatch", fields, rename=not valid)
        # Register under a unique module-level name so DataLoader workers can pickle minibatches.
        cls.__qualname__ = qualname
        cls.__module__ = __name__
        setattr(sys.modules[__name__], qualname, cls)
        _TYPES[fields] = cls
    _TYPES_BY_ATTRIBUTES[tuple(attribute_names)] = _TYPES[fields]
    return _TYPES[fields]


def default_attributes_and_types(corrupted: bool = False) -> Dict[str, type]:
    """The legacy default minibatch content: counts, library size prior, batches, labels."""
    return {
        "corrupted_X" if corrupted else "X": np.float32,
        "local_means": np.float32,
        "local_vars": np.float32,
        "batch_indices": np.int64,
        "labels": np.int64,
    }


def gather_rows(values, indices: np.ndarray, dtype) -> np.ndarray:
    """Rows ``indices`` of a dense or sparse attribute as a dense array of ``dtype``.

    Sparse rows are sliced by scipy's compiled CSR row indexing and densified together.
    """
    if isinstance(values, np.ndarray):
        return values.take(indices, axis=0).astype(dtype, copy=False)
    if sp_sparse.issparse(values):
        return values[indices].toarray().astype(dtype, copy=False)
    return np.asarray(values[indices]).astype(dtype, copy=False)


class CollateMixin:
    """``collate_fn_builder`` / ``collate_fn_base`` of ``GeneExpressionDataset``."""

    def collate_fn_builder(
        self,
        add_attributes_and_types: Dict[str, type] = None,
        override: bool = False,
        corrupted: bool = False,
    ) -> Callable[[Union[List[int], np.ndarray]], Tuple[torch.Tensor, ...]]:
        """Return a function ``indices -> Minibatch`` (a named tuple of tensors).

        Parameters
        ----------
        add_attributes_and_types
            Extra attributes to batch and their numpy dtypes, e.g.
            ``{"protein_expression": np.float32}``; appended after the defaults.
        override
            If true, batch only ``add_attributes_and_types``.
        corrupted
            Batch ``corrupted_X`` (as the field ``X``) instead of ``X``.

        Returns
        -------
        callable
            ``collate_fn(indices)`` returning a named tuple whose fields are, in order, ``X``
            float32 ``(n, nb_genes)``, ``local_means``, ``local_vars`` float32 ``(n, 1)``,
            ``batch_indices``, ``labels`` int64 ``(n, 1)``, then the added attributes.
        """
        attributes_and_types = {} if override else default_attributes_and_types(corrupted)
        attributes_and_types.update(add_attributes_and_types or {})
        minibatch_type(tuple(attributes_and_types))  # create the type in the main process
        return partial(self.collate_fn_base, attributes_and_types)

    def collate_fn_base(
        self, attributes_and_types: Dict[str, type], batch: Union[List[int], np.ndarray]
    ) -> Tuple[torch.Tensor, ...]:
        """Gather the rows ``batch`` of each attribute as tensors of the requested dtype.

        Parameters
        ----------
        attributes_and_types
            Ordered ``{attribute_name: numpy dtype}``.
        batch
            Cell indices, shape ``(n,)``.

        Returns
        -------
        tuple of torch.Tensor
            A named tuple with one field per attribute (see ``collate_fn_builder``).
        """
        indices = np.asarray(batch, dtype=np.int64).reshape(-1)
        tensors = [
            torch.from_numpy(gather_rows(getattr(self, name), indices, dtype))
            for name, dtype in attributes_and_types.items()
        ]
        return minibatch_type(tuple(attributes_and_types))(*tensors)
