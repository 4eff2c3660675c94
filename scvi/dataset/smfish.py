"""The osmFISH dataset of the mouse somatosensory cortex (Codeluppi et al., 2018)."""
import logging
from collections import OrderedDict

import numpy as np

from ._download import DownloadableDataset
from ._loom_io import read_loom

logger = logging.getLogger(__name__)

__all__ = ["SmfishDataset"]

#: Agglomerated clusters: original cluster ids -> high-level cell type.
_MAJOR_CLUSTERS = OrderedDict(
    [
        ((3, 2), "Astrocytes"),
        ((7, 26), "Endothelials"),
        ((18, 17, 14, 19, 15, 16, 20), "Inhibitory"),
        ((29, 28), "Microglias"),
        ((32, 33, 30, 22, 21), "Oligodendrocytes"),
        ((9, 8, 10, 6, 5, 4, 12, 1, 13), "Pyramidals"),
    ]
)


class SmfishDataset(DownloadableDataset):
    """Loads osmFISH data of mouse cortex cells from the Linarsson lab.

    Cells carry their spatial coordinates as the cell attributes ``x_coord`` and ``y_coord``
    (shape ``(n_cells, 1)``).

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    use_high_level_cluster
        If True, use higher-level agglomerate clusters (and drop the cells of the other clusters).
        The resulting cell types are "Astrocytes", "Endothelials", "Inhibitory", "Microglias",
        "Oligodendrocytes" and "Pyramidals".
    delayed_populating
        Switch for delayed populating mechanism.
    """

    def __init__(
        self,
        save_path: str = "data/",
        use_high_level_cluster: bool = True,
        delayed_populating: bool = False,
    ):
        self.use_high_level_cluster = use_high_level_cluster
        super().__init__(
            "http://linnarssonlab.org/osmFISH/osmFISH_SScortex_mouse_all_cells.loom",
            "osmFISH_SScortex_mouse_all_cell.loom",
            save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Read the loom file and populate the dataset (agglomerating clusters if asked)."""
        logger.info("Loading smFISH dataset")
        contents = read_loom(self._file_path())
        gene_names = np.asarray(contents.row_attrs["Gene"], dtype=str)
        labels = np.asarray(contents.col_attrs["ClusterID"]).astype(np.int64).reshape(-1, 1)
        cluster_names = np.asarray(contents.col_attrs["ClusterName"], dtype=str).ravel()

        # name of each cluster id, from its first cell
        unique_labels, first_index = np.unique(labels.ravel(), return_index=True)
        cell_types = np.full(int(unique_labels.max()) + 1 if unique_labels.size else 0, "", dtype=object)
        cell_types[unique_labels] = cluster_names[first_index]

        self.populate_from_data(
            X=contents.matrix.T,
            labels=labels,
            gene_names=gene_names,
            cell_types=cell_types.astype(str),
            cell_attributes_dict={
                "x_coord": np.asarray(contents.col_attrs["X"]).reshape(-1, 1),
                "y_coord": np.asarray(contents.col_attrs["Y"]).reshape(-1, 1),
            },
            remap_attributes=False,
        )
        if self.use_high_level_cluster:
            present = set(unique_labels.tolist())
            self.map_cell_types(
                OrderedDict(
                    (tuple(c for c in clusters if c in present), name)
                    for clusters, name in _MAJOR_CLUSTERS.items()
                    if any(c in present for c in clusters)
                )
            )
            kept = [name for name in _MAJOR_CLUSTERS.values() if name in set(np.asarray(self.cell_types).tolist())]
            self.filter_cell_types(kept)
        self.remap_categorical_attributes()
