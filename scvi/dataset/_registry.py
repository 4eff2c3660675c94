"""Registries of a dataset: the counts ``X``, cell / gene attributes, attribute mappings, versions.

Every filtering operation iterates over these registries, which is what keeps labels, batches,
cell measurements, gene names, ``norm_X`` … consistent with ``X``.
"""
import logging
from collections import defaultdict
from typing import List, Optional, Union

import numpy as np
import scipy.sparse as sp_sparse

from ._arrays import ArrayLike, library_size_per_batch, n_categories, remap_categories
from ._measurement import CellMeasurement
from ._validation import as_categorical_column, as_count_matrix, check_length

logger = logging.getLogger(__name__)

# Attributes recomputed from X rather than carried along by the registries.
LIBRARY_ATTRIBUTES = ("local_means", "local_vars")


class RegistryMixin:
    """Attribute registries and the core properties of ``GeneExpressionDataset``."""

    def _init_registries(self) -> None:
        self.dataset_versions = set()
        self.gene_attribute_names = set()
        self.cell_attribute_names = set()
        self.cell_categorical_attribute_names = set()
        self.attribute_mappings = defaultdict(list)
        self.cell_measurements_col_mappings = dict()
        self._X = None
        self._batch_indices = None
        self._labels = None
        self.n_batches = None
        self.n_labels = None
        self.gene_names = None
        self.cell_types = None
        self.local_means = None
        self.local_vars = None
        self._norm_X = None
        self._corrupted_X = None
        # attributes that initialisation methods must not overwrite
        self.protected_attributes = ["X", "_X"]

    def _clear_registered_attributes(self) -> None:
        """Forget everything registered by a previous populate call (repopulating starts afresh)."""
        names = set(self.cell_attribute_names) | set(self.gene_attribute_names)
        names |= {m for mappings in self.attribute_mappings.values() for m in mappings}
        names |= set(self.cell_measurements_col_mappings.values())
        for name in names:
            self.__dict__.pop(name, None)
        self._init_registries()

    # ----------------------------------------------------------------------------- properties
    @property
    def X(self) -> Optional[ArrayLike]:
        """Counts, shape ``(nb_cells, nb_genes)``: float32 ``numpy.ndarray`` or ``scipy.sparse.csr_matrix``."""
        return self._X

    @X.setter
    def X(self, X: ArrayLike) -> None:
        X = as_count_matrix(X, "X")
        if self._X is not None and self._batch_indices is not None and X.shape[0] != self.nb_cells:
            raise ValueError(
                f"The new X has {X.shape[0]} cells but the dataset has {self.nb_cells}; "
                "use update_cells to subset cells, or populate_from_data for new data."
            )
        self._X = X
        if self._batch_indices is not None:
            logger.info("Computing the library size for the new data")
            self.compute_library_size_batch()

    @property
    def nb_cells(self) -> int:
        """Number of cells (rows of ``X``)."""
        return 0 if self._X is None else self._X.shape[0]

    @property
    def nb_genes(self) -> int:
        """Number of genes (columns of ``X``)."""
        return 0 if self._X is None else self._X.shape[1]

    @property
    def batch_indices(self) -> np.ndarray:
        """Batch of each cell, int64, shape ``(nb_cells, 1)``; setting it updates ``n_batches``."""
        return self._batch_indices

    @batch_indices.setter
    def batch_indices(self, batch_indices: Union[List[int], np.ndarray]) -> None:
        batch_indices = as_categorical_column(batch_indices, self.nb_cells, "batch_indices")
        self._batch_indices = batch_indices
        self.n_batches = n_categories(batch_indices)

    @property
    def labels(self) -> np.ndarray:
        """Label of each cell, int64, shape ``(nb_cells, 1)``; setting it updates ``n_labels``."""
        return self._labels

    @labels.setter
    def labels(self, labels: Union[List[int], np.ndarray]) -> None:
        labels = as_categorical_column(labels, self.nb_cells, "labels")
        self._labels = labels
        self.n_labels = n_categories(labels)

    @property
    def norm_X(self) -> Optional[ArrayLike]:
        """Normalised version of ``X`` (see ``normalize``), filtered along with ``X``."""
        return self._norm_X

    @norm_X.setter
    def norm_X(self, norm_X: ArrayLike) -> None:
        self._norm_X = norm_X
        self.register_dataset_version("norm_X")

    @property
    def corrupted_X(self) -> Optional[ArrayLike]:
        """Corrupted version of ``X`` (see ``corrupt``), filtered along with ``X``."""
        return self._corrupted_X

    @corrupted_X.setter
    def corrupted_X(self, corrupted_X: ArrayLike) -> None:
        self._corrupted_X = corrupted_X
        self.register_dataset_version("corrupted_X")

    # ---------------------------------------------------------------------------- registries
    def register_dataset_version(self, version_name: str) -> None:
        """Register a version of the data (e.g. ``"norm_X"``), filtered along with ``X``.

        Parameters
        ----------
        version_name
            Attribute name of a matrix with the shape of ``X``.
        """
        self.dataset_versions.add(version_name)

    def initialize_cell_attribute(self, attribute_name: str, attribute, categorical: bool = False) -> None:
        """Set and register a cell-wise attribute (e.g. annotations), filtered with the cells.

        Parameters
        ----------
        attribute_name
            Name of the attribute; a protected name (``X``) or the name of a gene attribute gets
            the suffix ``_cell``.
        attribute
            Values, first dimension ``nb_cells``.
        categorical
            Whether the attribute holds integer categories (remapped to ``0..N-1`` by
            ``remap_categorical_attributes``).

        Raises
        ------
        ValueError
            If the length of ``attribute`` differs from ``nb_cells``.
        """
        if attribute_name in self.protected_attributes or attribute_name in self.gene_attribute_names:
            valid_name = attribute_name + "_cell"
            logger.warning(
                f"{attribute_name} is a protected attribute or already exists as a gene attribute and cannot be set "
                f"with this name in initialize_cell_attribute, changing name to {valid_name} and setting"
            )
            attribute_name = valid_name
        check_length(attribute, self.nb_cells, attribute_name, "cells")
        if not sp_sparse.issparse(attribute):
            attribute = np.asarray(attribute)
        setattr(self, attribute_name, attribute)
        self.cell_attribute_names.add(attribute_name)
        if categorical:
            self.cell_categorical_attribute_names.add(attribute_name)

    def initialize_cell_measurement(self, measurement: CellMeasurement) -> None:
        """Register a paired measurement (e.g. protein counts) and its column names.

        Parameters
        ----------
        measurement
            The measurement; ``measurement.data`` has shape ``(nb_cells, n_columns)`` and
            ``measurement.columns`` shape ``(n_columns,)``.

        Raises
        ------
        ValueError
            If the data has the wrong number of cells, or the columns the wrong length.
        """
        if measurement.name in self.protected_attributes:
            valid_name = measurement.name + "_cell"
            logger.warning(
                f"{measurement.name} is a protected attribute and cannot be set with this name "
                f"in initialize_cell_attribute, changing name to {valid_name} and setting"
            )
            measurement.name = valid_name
        data = measurement.data
        if not sp_sparse.issparse(data):
            data = np.asarray(data)
            if data.ndim == 1:
                data = data.reshape(-1, 1)
        columns = np.asarray(measurement.columns)
        if data.ndim != 2 or data.shape[1] != len(columns):
            raise ValueError(
                f"Cell measurement `{measurement.name}` has shape {data.shape} but {len(columns)} column names "
                f"(`{measurement.columns_attr_name}`)."
            )
        self.initialize_cell_attribute(measurement.name, data)
        setattr(self, measurement.columns_attr_name, columns)
        self.cell_measurements_col_mappings[measurement.name] = measurement.columns_attr_name

    def initialize_gene_attribute(self, attribute_name: str, attribute) -> None:
        """Set and register a gene-wise attribute (e.g. gene names), filtered with the genes.

        Parameters
        ----------
        attribute_name
            Name of the attribute; a protected name or the name of a cell attribute gets the
            suffix ``_gene``.
        attribute
            Values, first dimension ``nb_genes``.

        Raises
        ------
        ValueError
            If the length of ``attribute`` differs from ``nb_genes``.
        """
        if attribute_name in self.protected_attributes or attribute_name in self.cell_attribute_names:
            valid_name = attribute_name + "_gene"
            logger.warning(
                f"{attribute_name} is a protected attribute or already exists as a cell attribute and cannot be set "
                f"with this name in initialize_gene_attribute, changing name to {valid_name} and setting"
            )
            attribute_name = valid_name
        check_length(attribute, self.nb_genes, attribute_name, "genes")
        setattr(self, attribute_name, np.asarray(attribute))
        self.gene_attribute_names.add(attribute_name)

    def initialize_mapped_attribute(self, source_attribute_name: str, mapping_name: str, mapping_values) -> None:
        """Set and register a mapping of a categorical attribute, e.g. ``labels`` -> ``cell_types``.

        Parameters
        ----------
        source_attribute_name
            Registered categorical attribute whose values index ``mapping_values``.
        mapping_name
            Attribute name of the mapping.
        mapping_values
            One entry per category.

        Raises
        ------
        ValueError
            If the source attribute is not integer-valued or has a value ``>= len(mapping_values)``.
        """
        source = np.asarray(getattr(self, source_attribute_name))
        if not np.issubdtype(source.dtype, np.integer):
            raise ValueError(f"Mapped attribute {source_attribute_name} should be categorical not {source.dtype}")
        if source.size and source.max() >= len(mapping_values):
            raise ValueError(
                f"Max value for {source_attribute_name} ({source.max()}) is out of range for {mapping_name} "
                f"({len(mapping_values)} values): every {source_attribute_name} value must index {mapping_name}."
            )
        if mapping_name not in self.attribute_mappings[source_attribute_name]:
            self.attribute_mappings[source_attribute_name].append(mapping_name)
        setattr(self, mapping_name, mapping_values)

    def remap_categorical_attributes(self, attributes_to_remap: Optional[List[str]] = None) -> None:
        """Remap categorical attributes onto ``0..N-1`` (sorted), dropping unused entries of their mappings.

        Parameters
        ----------
        attributes_to_remap
            Names of categorical cell attributes; all of them by default.
        """
        if attributes_to_remap is None:
            attributes_to_remap = sorted(self.cell_categorical_attribute_names)
        for attribute_name in attributes_to_remap:
            logger.info(f"Remapping {attribute_name} to [0,N]")
            mappings = {name: getattr(self, name) for name in self.attribute_mappings[attribute_name]}
            new_values, _, new_mappings = remap_categories(getattr(self, attribute_name), mappings_dict=mappings)
            setattr(self, attribute_name, new_values)
            for name, mapping in new_mappings.items():
                setattr(self, name, mapping)

    def compute_library_size_batch(self) -> None:
        """Compute ``local_means`` / ``local_vars``: per-batch mean / variance of the log library size.

        Both are float32 of shape ``(nb_cells, 1)`` and registered as cell attributes.
        """
        self.local_means, self.local_vars = library_size_per_batch(self._X, self._batch_indices)
        self.cell_attribute_names.update(LIBRARY_ATTRIBUTES)
