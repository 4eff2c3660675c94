"""Populating a dataset from matrices: ``populate_from_data`` and its per-batch / per-label variants."""
import logging
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp_sparse

from ._arrays import concatenate_arrays
from ._measurement import CellMeasurement
from ._validation import as_categorical_column, as_count_matrix, as_str_array, check_length, make_unique

logger = logging.getLogger(__name__)

Matrix = Union[np.ndarray, sp_sparse.csr_matrix]


class PopulateMixin:
    """The ``populate_from_*`` constructors of ``GeneExpressionDataset``."""

    def populate_from_data(
        self,
        X: Matrix,
        Ys: List[CellMeasurement] = None,
        batch_indices: Union[List[int], np.ndarray, sp_sparse.csr_matrix] = None,
        labels: Union[List[int], np.ndarray, sp_sparse.csr_matrix] = None,
        gene_names: Union[List[str], np.ndarray] = None,
        cell_types: Union[List[str], np.ndarray] = None,
        cell_attributes_dict: Dict[str, Union[List, np.ndarray]] = None,
        gene_attributes_dict: Dict[str, Union[List, np.ndarray]] = None,
        remap_attributes: bool = True,
    ) -> None:
        """Populate the dataset from a ``(nb_cells, nb_genes)`` count matrix.

        Parameters
        ----------
        X
            Counts, shape ``(nb_cells, nb_genes)``, ``numpy.ndarray`` or sparse (kept as float32 CSR).
        Ys
            Paired measurements (e.g. CITE-seq proteins), each ``(nb_cells, n_columns)``.
        batch_indices
            Batch of each cell, shape ``(nb_cells,)``, non-negative integers; all 0 by default.
        labels
            Label of each cell, shape ``(nb_cells,)``, non-negative integers; all 0 by default.
        gene_names
            Name of each gene, shape ``(nb_genes,)``; duplicates are made unique with a warning.
        cell_types
            Name of each label: ``cell_types[k]`` names label ``k``. Defaults to ``["undefined"]``
            when ``labels`` is not given either.
        cell_attributes_dict
            Extra cell attributes, each of length ``nb_cells``.
        gene_attributes_dict
            Extra gene attributes, each of length ``nb_genes``.
        remap_attributes
            Remap categorical attributes (labels, batches) onto ``0..N-1`` at the end.

        Raises
        ------
        ValueError
            On negative or non-finite counts, on lengths that disagree with the shape of ``X``,
            on a negative batch index or label, or a label without a cell type.
        """
        X = as_count_matrix(X, "X")
        n_cells, n_genes = X.shape
        batch_indices = (
            np.zeros((n_cells, 1), dtype=np.int64)
            if batch_indices is None
            else as_categorical_column(batch_indices, n_cells, "batch_indices")
        )
        labels_given = labels is not None
        labels = (
            np.zeros((n_cells, 1), dtype=np.int64)
            if labels is None
            else as_categorical_column(labels, n_cells, "labels")
        )
        if gene_names is not None:
            check_length(gene_names, n_genes, "gene_names", "genes (columns of X)")
            gene_names = make_unique(as_str_array(gene_names, min_width=64))
        if cell_types is not None:
            cell_types = as_str_array(cell_types, min_width=128)
            if labels.size and labels.max() >= len(cell_types):
                raise ValueError(
                    f"`labels` has value {labels.max()} but only {len(cell_types)} `cell_types` are given "
                    "(label k is named cell_types[k])."
                )
        elif not labels_given:
            cell_types = as_str_array(["undefined"], min_width=128)

        self._clear_registered_attributes()
        self._X = X
        self.initialize_cell_attribute("batch_indices", batch_indices, categorical=True)
        self.initialize_cell_attribute("labels", labels, categorical=True)
        self.compute_library_size_batch()
        if gene_names is not None:
            self.initialize_gene_attribute("gene_names", gene_names)
        if cell_types is not None:
            self.initialize_mapped_attribute("labels", "cell_types", cell_types)
        for name, values in (cell_attributes_dict or {}).items():
            self.initialize_cell_attribute(name, values)
        for measurement in Ys or []:
            self.initialize_cell_measurement(measurement)
        for name, values in (gene_attributes_dict or {}).items():
            self.initialize_gene_attribute(name, values)
        if remap_attributes:
            self.remap_categorical_attributes()

    def populate_from_per_batch_list(
        self,
        Xs: List[Matrix],
        labels_per_batch: Union[np.ndarray, List[np.ndarray]] = None,
        gene_names: Union[List[str], np.ndarray] = None,
        cell_types: Union[List[str], np.ndarray] = None,
        remap_attributes: bool = True,
    ) -> None:
        """Populate from a list of ``n_batches`` count matrices, ``(n_cells_b, nb_genes)`` each.

        Cells of ``Xs[b]`` get batch index ``b``.

        Parameters
        ----------
        Xs
            One count matrix per batch, same number of genes.
        labels_per_batch
            Labels of the cells of each batch.
        gene_names, cell_types, remap_attributes
            As in ``populate_from_data``.
        """
        _check_same_genes(Xs, "Xs")
        batch_indices = _position_of_each_cell(Xs)
        labels = None
        if labels_per_batch is not None:
            labels = _concatenate_flat(labels_per_batch)
        self.populate_from_data(
            X=concatenate_arrays(list(Xs)),
            batch_indices=batch_indices,
            labels=labels,
            gene_names=gene_names,
            cell_types=cell_types,
            remap_attributes=remap_attributes,
        )

    def populate_from_per_label_list(
        self,
        Xs: List[Matrix],
        batch_indices_per_label: List[Union[List[int], np.ndarray]] = None,
        gene_names: Union[List[str], np.ndarray] = None,
        remap_attributes: bool = True,
    ) -> None:
        """Populate from a list of ``n_labels`` count matrices; cells of ``Xs[k]`` get label ``k``.

        Parameters
        ----------
        Xs
            One count matrix per label, same number of genes.
        batch_indices_per_label
            Batch indices of the cells of each label.
        gene_names, remap_attributes
            As in ``populate_from_data``.
        """
        _check_same_genes(Xs, "Xs")
        labels = _position_of_each_cell(Xs)
        batch_indices = None
        if batch_indices_per_label is not None and len(batch_indices_per_label):
            batch_indices = _concatenate_flat(batch_indices_per_label)
        self.populate_from_data(
            X=concatenate_arrays(list(Xs)),
            batch_indices=batch_indices,
            labels=labels,
            gene_names=gene_names,
            remap_attributes=remap_attributes,
        )

    def populate_from_per_batch_array(
        self,
        X: np.ndarray,
        labels_per_batch: Optional[np.ndarray] = None,
        gene_names: Union[List[str], np.ndarray] = None,
        remap_attributes: bool = True,
    ) -> None:
        """Populate from a ``(n_batches, n_cells_per_batch, nb_genes)`` array.

        Parameters
        ----------
        X
            Counts of each batch stacked along the first axis.
        labels_per_batch
            Labels, shape ``(n_batches, n_cells_per_batch)`` (or with a trailing axis of 1).
        gene_names, remap_attributes
            As in ``populate_from_data``.

        Raises
        ------
        ValueError
            If ``X`` is not 3-dimensional.
        """
        X = np.asarray(X)
        if X.ndim != 3:
            raise ValueError(
                f"`X` must have shape (n_batches, n_cells, n_genes); got {X.ndim} dimensions. "
                "Use populate_from_data for a (n_cells, n_genes) matrix."
            )
        labels = None if labels_per_batch is None else np.asarray(labels_per_batch).reshape(-1)
        self.populate_from_data(
            X=X.reshape(-1, X.shape[2]),
            batch_indices=np.repeat(np.arange(X.shape[0]), X.shape[1]),
            labels=labels,
            gene_names=gene_names,
            remap_attributes=remap_attributes,
        )


def _position_of_each_cell(Xs: Sequence[Matrix]) -> np.ndarray:
    """For each cell of the stacked ``Xs``, the position of its matrix in ``Xs`` (int64)."""
    return np.concatenate([np.full(X.shape[0], i, dtype=np.int64) for i, X in enumerate(Xs)])


def _concatenate_flat(values: Sequence) -> np.ndarray:
    """Concatenate per-matrix value lists, each flattened to 1-D."""
    return np.concatenate([np.asarray(v).reshape(-1) for v in values])


def _check_same_genes(Xs: Sequence[Matrix], name: str) -> None:
    if len(Xs) == 0:
        raise ValueError(f"`{name}` is empty: give at least one count matrix.")
    shapes = [np.shape(X) if not sp_sparse.issparse(X) else X.shape for X in Xs]
    if any(len(shape) != 2 for shape in shapes):
        raise ValueError(f"Every matrix of `{name}` must be 2-dimensional (cells x genes).")
    if len({shape[1] for shape in shapes}) != 1:
        raise ValueError(f"All matrices of `{name}` must have the same number of genes; got {[s[1] for s in shapes]}.")
