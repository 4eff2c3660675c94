"""Operations on labels and their names (``cell_types``)."""
import logging
from collections import OrderedDict
from typing import Dict, List, Tuple, Union

import numpy as np

from ._validation import as_str_array, require_nonempty

logger = logging.getLogger(__name__)


class CellTypesMixin:
    """Filtering, merging and reordering of cell types."""

    def _require_cell_types(self, operation: str) -> np.ndarray:
        if self.cell_types is None:
            raise ValueError(f"{operation} needs cell type names, but the dataset has no `cell_types`.")
        return np.asarray(self.cell_types)

    def cell_types_to_labels(self, cell_types: Union[List[str], np.ndarray]) -> np.ndarray:
        """Labels of the given cell type names.

        Parameters
        ----------
        cell_types
            Cell type names, shape ``(n,)``.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(len(cell_types),)``.

        Raises
        ------
        ValueError
            If a name is not in ``cell_types``.
        """
        names = self._require_cell_types("cell_types_to_labels").tolist()
        lookup = {}
        for index, name in enumerate(names):
            lookup.setdefault(name, index)
        requested = np.atleast_1d(np.asarray(cell_types)).astype(str).tolist()
        missing = [c for c in requested if c not in lookup]
        if missing:
            raise ValueError(f"Unknown cell type(s) {missing}; known cell types: {names}")
        return np.asarray([lookup[c] for c in requested], dtype=np.int64)

    def _labels_of(self, cell_types) -> np.ndarray:
        """Labels from names (str) or labels (int)."""
        values = np.atleast_1d(np.asarray(cell_types))
        if values.size == 0:
            return values.astype(np.int64)
        if values.dtype.kind in "US":
            return self.cell_types_to_labels(values)
        if np.issubdtype(values.dtype, np.integer):
            return values.astype(np.int64)
        raise TypeError(f"cell types must be names (str) or labels (int); got dtype {values.dtype}")

    def filter_cell_types(self, cell_types: Union[List[str], List[int], np.ndarray]) -> None:
        """Keep the cells whose cell type is in ``cell_types`` (names or integer labels).

        Parameters
        ----------
        cell_types
            Names (str) or labels (int) of the cell types to keep.

        Raises
        ------
        ValueError
            If a name is unknown or no cell would be left.
        TypeError
            If ``cell_types`` are neither names nor integers.
        """
        labels_to_keep = self._labels_of(cell_types)
        mask = np.isin(self.labels.ravel(), labels_to_keep)
        require_nonempty(int(mask.sum()), "cell", f"filter_cell_types({list(np.atleast_1d(cell_types))})")
        self.update_cells(mask)

    def merge_cell_types(
        self,
        cell_types: Union[Tuple[int, ...], Tuple[str, ...], List[int], List[str], np.ndarray],
        new_cell_type_name: str,
    ) -> None:
        """Give the cells of ``cell_types`` a new label named ``new_cell_type_name``.

        The new label is ``len(cell_types)`` (appended); the old names stay with ``#merged``
        appended (call ``remap_categorical_attributes`` to drop them).

        Parameters
        ----------
        cell_types
            Names or labels of the cell types to merge.
        new_cell_type_name
            Name of the merged cell type.

        Raises
        ------
        ValueError
            If ``cell_types`` is empty or has an unknown name.
        """
        if isinstance(cell_types, (str, int, np.integer)):
            cell_types = [cell_types]
        if not len(cell_types):
            raise ValueError("No cell types to merge.")
        names = self._require_cell_types("merge_cell_types")
        labels_subset = self._labels_of(cell_types)
        labels = self.labels.copy()
        labels[np.isin(labels, labels_subset)] = len(names)
        new_names = names.astype(str).tolist() + [str(new_cell_type_name)]
        for label in np.unique(labels_subset):
            new_names[label] = new_names[label] + "#merged"
        self.labels = labels
        self.cell_types = as_str_array(new_names, min_width=128)

    def map_cell_types(self, cell_types_dict: Dict[Union[int, str, Tuple[int, ...], Tuple[str, ...]], str]) -> None:
        """Merge cell types: each key (a name, label, or tuple of them) becomes the value's name.

        Parameters
        ----------
        cell_types_dict
            ``{cell types to merge: new name}``, applied in order with ``merge_cell_types``.
        """
        for cell_types, new_cell_type_name in cell_types_dict.items():
            self.merge_cell_types(cell_types, new_cell_type_name)

    def reorder_cell_types(self, new_order: Union[List[str], np.ndarray]) -> None:
        """Reorder the cell types: ``new_order`` first, the others after in their current order.

        Labels are renumbered accordingly.

        Parameters
        ----------
        new_order
            Cell type names to put first, in this order.

        Raises
        ------
        ValueError
            If a name of ``new_order`` is not a cell type.
        """
        names = self._require_cell_types("reorder_cell_types").astype(str).tolist()
        new_order = [str(c) for c in np.atleast_1d(np.asarray(new_order)).tolist()]
        self.cell_types_to_labels(new_order)  # validates the names
        new_order += [c for c in names if c not in new_order]
        self.map_cell_types(OrderedDict(((name,), name) for name in new_order))
        self.remap_categorical_attributes(["labels"])
