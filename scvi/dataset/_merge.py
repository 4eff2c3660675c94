"""Merging datasets: ``populate_from_datasets``.

Genes: intersection of ``gene_names`` (order of the first dataset); gene attributes of the first
dataset that has them win. Cells: concatenated; categorical attributes are either shared through
a mapping (``labels`` through ``cell_types`` by default: the union of the names, in order of
first appearance) or offset; cell measurements are aligned by column name (intersection or union).
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp_sparse

from ._arrays import concatenate_arrays, remap_categories
from ._measurement import CellMeasurement
from ._registry import LIBRARY_ATTRIBUTES

logger = logging.getLogger(__name__)


class MergeMixin:
    """``populate_from_datasets`` of ``GeneExpressionDataset``."""

    def populate_from_datasets(
        self,
        gene_datasets_list: List["GeneExpressionDataset"],  # noqa: F821
        shared_labels: bool = True,
        mapping_reference_for_sharing: Dict[str, Optional[str]] = None,
        cell_measurement_intersection: Dict[str, bool] = None,
    ) -> None:
        """Populate by merging datasets on the intersection of their ``gene_names``.

        The input datasets are modified in place (their genes are reordered / dropped).

        Parameters
        ----------
        gene_datasets_list
            The datasets to merge; cells are concatenated in this order.
        shared_labels
            Share labels through ``cell_types``: cells of the same cell type name get the same
            label. Otherwise labels are offset per dataset.
        mapping_reference_for_sharing
            ``{cell attribute: mapping name}`` of other categorical attributes to share through a
            mapping; categorical attributes without one are offset (e.g. ``batch_indices``: the
            batches of dataset 2 follow those of dataset 1).
        cell_measurement_intersection
            ``{measurement name: bool}``: ``True`` (default) keeps the columns measured in every
            dataset, ``False`` the union (missing columns filled with 0).

        Raises
        ------
        ValueError
            If fewer than one dataset is given, a dataset has no ``gene_names``, the datasets share
            no gene, or a sharing mapping is missing from a dataset.
        """
        datasets = list(gene_datasets_list)
        if not datasets:
            raise ValueError("`gene_datasets_list` is empty: give at least one dataset to merge.")
        for i, dataset in enumerate(datasets):
            if dataset.gene_names is None:
                raise ValueError(f"Dataset {i} of `gene_datasets_list` has no gene_names; genes are merged by name.")
        logger.info("Merging datasets. Input objects are modified in place.")
        sharing = dict(mapping_reference_for_sharing or {})
        if shared_labels:
            sharing["labels"] = "cell_types"
        intersection = cell_measurement_intersection or {}

        common = set.intersection(*[set(np.asarray(d.gene_names).tolist()) for d in datasets])
        genes_to_keep = [g for g in np.asarray(datasets[0].gene_names).tolist() if g in common]
        if not genes_to_keep:
            raise ValueError("The datasets have no gene name in common; nothing to merge.")
        logger.info(f"Keeping {len(genes_to_keep)} genes")
        for dataset in datasets:
            dataset.reorder_genes(first_genes=genes_to_keep, drop_omitted_genes=True)
            dataset.remap_categorical_attributes()

        self.populate_from_data(X=concatenate_arrays([d.X for d in datasets]), remap_attributes=False)
        _merge_gene_attributes(self, datasets)
        cell_attributes = set.intersection(*[set(d.cell_attribute_names) for d in datasets]) - set(LIBRARY_ATTRIBUTES)
        for name in sorted(cell_attributes):
            first = datasets[0]
            if name in first.cell_categorical_attribute_names:
                _merge_categorical(self, datasets, name, sharing.get(name))
            elif name in first.cell_measurements_col_mappings:
                _merge_measurement(self, datasets, name, intersection.get(name, True))
            else:
                self.initialize_cell_attribute(name, concatenate_arrays([getattr(d, name) for d in datasets]))
        self.compute_library_size_batch()


def _merge_gene_attributes(target, datasets) -> None:
    """Gene attributes (and their mappings) of every dataset; the first dataset that has one wins."""
    for dataset in datasets[::-1]:
        for name in dataset.gene_attribute_names:
            target.initialize_gene_attribute(name, getattr(dataset, name))
            for mapping_name in dataset.attribute_mappings[name]:
                target.initialize_mapped_attribute(name, mapping_name, getattr(dataset, mapping_name))


def _merge_categorical(target, datasets, name: str, reference: Optional[str]) -> None:
    mapping_names = sorted(set.intersection(*[set(d.attribute_mappings[name]) for d in datasets]))
    values = []
    if reference is not None:
        missing = [i for i, d in enumerate(datasets) if reference not in d.attribute_mappings[name]]
        if missing:
            raise ValueError(
                f"Reference mapping {reference} for {name} merging is not registered in all datasets "
                f"(missing in datasets {missing})."
            )
        mappings = {m: OrderedDict() for m in mapping_names}
        for mapping_name in mapping_names:
            for dataset in datasets:
                mappings[mapping_name].update((v, None) for v in np.asarray(getattr(dataset, mapping_name)).tolist())
        mappings = {m: list(v) for m, v in mappings.items()}
        position = {v: i for i, v in enumerate(mappings[reference])}
        for dataset in datasets:
            old_mapping = np.asarray(getattr(dataset, reference)).tolist()
            new_categories = [position[v] for v in old_mapping]
            local, _ = remap_categories(
                getattr(dataset, name), mapping_from=list(range(len(old_mapping))), mapping_to=new_categories
            )
            values.append(local)
    else:
        mappings = {m: [] for m in mapping_names}
        offset = 0
        for dataset in datasets:
            local = np.asarray(getattr(dataset, name))
            values.append(local + offset)
            offset += int(local.max()) + 1 if local.size else 0
            for mapping_name in mapping_names:
                mappings[mapping_name].extend(np.asarray(getattr(dataset, mapping_name)).tolist())
    # forget the placeholder mappings of the target (e.g. cell_types=["undefined"])
    for mapping_name in target.attribute_mappings.pop(name, []):
        setattr(target, mapping_name, None)
    target.initialize_cell_attribute(name, concatenate_arrays(values), categorical=True)
    for mapping_name, mapping_values in mappings.items():
        # a list, as scVI 0.6 (``remap_categorical_attributes`` makes it an array)
        target.initialize_mapped_attribute(name, mapping_name, list(mapping_values))


def _merge_measurement(target, datasets, name: str, intersect: bool) -> None:
    columns_attr_name = datasets[0].cell_measurements_col_mappings[name]
    column_sets = [set(np.asarray(getattr(d, columns_attr_name)).tolist()) for d in datasets]
    columns = set.intersection(*column_sets) if intersect else set.union(*column_sets)
    if not intersect:
        logger.info(f"Taking the union for {name}. Missing data will be replaced with 0. Use with care.")
    columns = np.asarray(sorted(columns))
    logger.info(f"Keeping {len(columns)} columns in {name}")
    values = []
    for dataset in datasets:
        data = getattr(dataset, name)
        _, source, destination = np.intersect1d(
            np.asarray(getattr(dataset, columns_attr_name)), columns, return_indices=True
        )
        if sp_sparse.issparse(data):
            data = data.tocsc()
            aligned = sp_sparse.lil_matrix((data.shape[0], len(columns)), dtype=data.dtype)
            aligned[:, destination] = data[:, source]
            aligned = aligned.tocsr()
        else:
            data = np.asarray(data)
            aligned = np.zeros((data.shape[0], len(columns)), dtype=data.dtype)
            aligned[:, destination] = data[:, source]
        # the input dataset is updated in place, as in scVI 0.6
        setattr(dataset, name, aligned)
        setattr(dataset, columns_attr_name, columns)
        values.append(aligned)
    merged = CellMeasurement(
        name=name, data=concatenate_arrays(values), columns_attr_name=columns_attr_name, columns=columns
    )
    target.initialize_cell_measurement(merged)
