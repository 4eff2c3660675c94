"""Datasets stored as ``.loom`` files: ``LoomDataset`` and the built-in loom datasets."""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._download import DownloadableDataset
from ._loom_io import read_loom

logger = logging.getLogger(__name__)

__all__ = ["LoomDataset", "RetinaDataset", "PreFrontalCortexStarmapDataset", "FrontalCortexDropseqDataset"]


def _integral_to_int(values: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """Loom stores integer annotations as floats; give them back as int64 when they are integral."""
    if values is None or values.dtype.kind != "f":
        return values
    if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


class LoomDataset(DownloadableDataset):
    """Loads a potentially remote ``.loom`` file.

    Cells that express no gene are removed. Column attributes other than batches and labels become
    cell attributes, row attributes other than gene names become gene attributes, and global
    attributes other than cell types are kept in ``global_attributes_dict``.

    Parameters
    ----------
    filename
        File name to use when saving/loading the data.
    save_path
        Location to use when saving/loading the data.
    url
        URL pointing to the data which will be downloaded if it's not already in ``save_path``.
    batch_indices_attribute_name
        Name of the column attribute containing batch indices.
    labels_attribute_name
        Name of the column attribute containing labels.
    encode_labels_name_into_int
        If the labels are cell type names, turn them into indices of the cell types.
    gene_names_attribute_name
        Name of the row attribute containing gene names.
    cell_types_attribute_name
        Name of the global attribute containing cell types.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> # Loading a remote dataset
    >>> remote_loom_dataset = LoomDataset("osmFISH_SScortex_mouse_all_cell.loom", save_path='data/',
    ... url='http://linnarssonlab.org/osmFISH/osmFISH_SScortex_mouse_all_cells.loom')
    >>> # Loading a local dataset
    >>> local_loom_dataset = LoomDataset("osmFISH_SScortex_mouse_all_cell.loom", save_path='data/')
    """

    #: Cell type names to use when the file has none (by label index).
    _default_cell_types: Optional[Sequence[str]] = None

    def __init__(
        self,
        filename: str,
        save_path: str = "data/",
        url: str = None,
        batch_indices_attribute_name: str = "BatchID",
        labels_attribute_name: str = "ClusterID",
        encode_labels_name_into_int: bool = False,
        gene_names_attribute_name: str = "Gene",
        cell_types_attribute_name: str = "CellTypes",
        delayed_populating: bool = False,
    ):
        self.batch_indices_attribute_name = batch_indices_attribute_name
        self.labels_attribute_name = labels_attribute_name
        self.encode_labels_name_into_int = encode_labels_name_into_int
        self.gene_names_attribute_name = gene_names_attribute_name
        self.cell_types_attribute_name = cell_types_attribute_name
        self.global_attributes_dict = None
        super().__init__(urls=url, filenames=filename, save_path=save_path, delayed_populating=delayed_populating)

    def populate(self) -> None:
        """Read the loom file and populate the dataset."""
        logger.info("Preprocessing dataset")
        contents = read_loom(self._file_path())
        X = np.ascontiguousarray(contents.matrix.T)  # cells x genes
        expressed = np.asarray(X.sum(axis=1) > 0).ravel()
        if not expressed.all():
            logger.warning("Removing %d non-expressing cells", int((~expressed).sum()))

        row_attrs = dict(contents.row_attrs)
        gene_names = row_attrs.pop(self.gene_names_attribute_name, None)
        gene_attributes_dict = row_attrs or None

        col_attrs = {name: values[expressed] for name, values in contents.col_attrs.items()}
        batch_indices = _integral_to_int(col_attrs.pop(self.batch_indices_attribute_name, None))
        labels = _integral_to_int(col_attrs.pop(self.labels_attribute_name, None))
        col_attrs.update(self._extra_cell_attributes(col_attrs))
        cell_attributes_dict = col_attrs or None

        attrs = dict(contents.attrs)
        cell_types = attrs.pop(self.cell_types_attribute_name, None)
        if cell_types is not None:
            cell_types = np.atleast_1d(np.asarray(cell_types, dtype=str))
        elif self._default_cell_types is not None:
            cell_types = np.asarray(self._default_cell_types, dtype=str)
        if attrs:
            self.global_attributes_dict = attrs

        if self.encode_labels_name_into_int and labels is not None and cell_types is not None:
            labels = self._encode_labels(labels, cell_types)

        logger.info("Finished preprocessing dataset")
        self.populate_from_data(
            X=X[expressed],
            batch_indices=batch_indices,
            labels=labels,
            gene_names=gene_names,
            cell_types=cell_types,
            cell_attributes_dict=cell_attributes_dict,
            gene_attributes_dict=gene_attributes_dict,
        )

    def _extra_cell_attributes(self, col_attrs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Cell attributes derived from the column attributes (none by default)."""
        return {}

    def _encode_labels(self, labels: np.ndarray, cell_types: np.ndarray) -> np.ndarray:
        mapping = {name: index for index, name in enumerate(cell_types)}
        names = np.asarray(labels).astype(str)
        unknown = sorted(set(names.ravel()) - set(mapping))
        if unknown:
            raise ValueError(
                f"labels {unknown[:5]} of {self.filenames[0]} are not among the cell types "
                f"(`{self.cell_types_attribute_name}`)"
            )
        return np.vectorize(mapping.__getitem__, otypes=[np.int64])(names)


class RetinaDataset(LoomDataset):
    """Loads retina dataset.

    The dataset of bipolar cells contains after their original pipeline for filtering 27,499 cells
    and 13,166 genes coming from two batches. We use the cluster annotation from 15 cell-types
    from the author. We also extract their normalized data with Combat and use it for benchmarking.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = RetinaDataset()
    """

    _default_cell_types = (
        "RBC",
        "MG",
        "BC5A",
        "BC7",
        "BC6",
        "BC5C",
        "BC1A",
        "BC3B",
        "BC1B",
        "BC2",
        "BC5D",
        "BC3A",
        "BC5B",
        "BC4",
        "BC8_9",
    )

    def __init__(self, save_path: str = "data/", delayed_populating: bool = False):
        super().__init__(
            filename="retina.loom",
            save_path=save_path,
            url="https://github.com/YosefLab/scVI-data/raw/master/retina.loom",
            delayed_populating=delayed_populating,
        )


class PreFrontalCortexStarmapDataset(LoomDataset):
    """Loads a STARmap dataset of 3,704 cells and 166 genes from the mouse pre-frontal cortex (Wang et al., 2018).

    Cells carry their spatial coordinates as ``x_coord`` and ``y_coord`` (and the ``(n_cells, 2)``
    ``Spatial_coordinates``), batches and the 16 cell types of the authors.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    def __init__(self, save_path: str = "data/", delayed_populating: bool = False):
        super().__init__(
            filename="mpfc-starmap.loom",
            save_path=save_path,
            url="https://github.com/YosefLab/scVI-data/raw/master/mpfc-starmap.loom",
            labels_attribute_name="Clusters",
            encode_labels_name_into_int=True,
            delayed_populating=delayed_populating,
        )

    def _extra_cell_attributes(self, col_attrs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        coordinates = col_attrs.get("Spatial_coordinates")
        if coordinates is None:
            raise ValueError(f"{self.filenames[0]} has no `Spatial_coordinates` column attribute")
        return {"x_coord": coordinates[:, 0], "y_coord": coordinates[:, 1]}


class FrontalCortexDropseqDataset(LoomDataset):
    """Load the cells from the mouse frontal cortex sequenced by the Dropseq technology (Saunders et al., 2018).

    Load the 71,639 annotated cells located in the frontal cortex of adult mouses among the 690,000
    cells studied by (Saunders et al., 2018) using the Drop-seq method: a 71,639 x 7,611 gene
    expression matrix. Cell types are ordered so that the layers of the cortex are in order.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    genes_to_keep
        Genes to keep, in this order; all genes when ``None``.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    #: Cell type indices in the order of the cortical layers.
    _layer_order = [5, 6, 3, 2, 4, 0, 1, 8, 7, 9, 10, 11, 12, 13]

    def __init__(
        self,
        save_path: str = "data/",
        genes_to_keep: Optional[List[str]] = None,
        delayed_populating: bool = False,
    ):
        self.genes_to_keep = genes_to_keep
        super().__init__(
            filename="fc-dropseq.loom",
            save_path=save_path,
            url="https://github.com/YosefLab/scVI-data/raw/master/fc-dropseq.loom",
            labels_attribute_name="Clusters",
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Read the loom file, keep ``genes_to_keep`` and order the cell types by cortical layer."""
        super().populate()
        if self.genes_to_keep is not None:
            self.reorder_genes(self.genes_to_keep, drop_omitted_genes=True)
        cell_types = np.asarray(self.cell_types)
        order = [index for index in self._layer_order if index < len(cell_types)]
        self.reorder_cell_types(cell_types[order])
