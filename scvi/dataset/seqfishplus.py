"""The seqFISH+ dataset of the mouse brain (Eng et al., 2019)."""
import logging
import os
import zipfile

import numpy as np
import pandas as pd

from ._download import DownloadableDataset
from .dataset import CellMeasurement

logger = logging.getLogger(__name__)

__all__ = ["SeqFishPlusDataset"]

_TISSUE_PREFIXES = {"subventricular cortex": "cortex_svz", "olfactory bulb": "ob"}


class SeqFishPlusDataset(DownloadableDataset):
    """seqFISH+ can image mRNAs for 10,000 genes in single cells—with high accuracy and
    sub-diffraction-limit resolution—in the cortex, subventricular zone and olfactory bulb of mouse
    brain.

    Cell centroids are the cell measurement ``coords`` (``(n_cells, 2)``, columns ``axis`` =
    ``["x", "y"]``); ``cell_id``, ``field_of_view`` (and ``region`` for the cortex) are cell
    attributes.

    Parameters
    ----------
    tissue_region
        Region of the mouse brain, Either "subventricular cortex" or "olfactory bulb"
    save_path
        Location to use when saving/loading the SeqFish+ data.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    def __init__(
        self,
        tissue_region: str = "subventricular cortex",
        save_path: str = "data",
        delayed_populating: bool = False,
    ):
        if tissue_region not in _TISSUE_PREFIXES:
            raise ValueError(
                f'`tissue_region` must be "subventricular cortex" or "olfactory bulb"; got {tissue_region!r}'
            )
        self.tissue_region = tissue_region
        self.file_prefix = _TISSUE_PREFIXES[tissue_region]
        super().__init__(
            urls="https://github.com/CaiGroup/seqFISH-PLUS/raw/master/sourcedata.zip",
            filenames="seqfishplus.zip",
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Extract the region's counts and centroids from the archive and populate the dataset."""
        counts_filename = f"sourcedata/{self.file_prefix}_counts.csv"
        coordinates_filename = f"sourcedata/{self.file_prefix}_cellcentroids.csv"
        data_path = os.path.join(self.save_path, "seqfishplus")
        os.makedirs(data_path, exist_ok=True)
        with zipfile.ZipFile(self._file_path()) as archive:
            for member in (counts_filename, coordinates_filename):
                archive.extract(member, path=data_path)
        df_counts = pd.read_csv(os.path.join(data_path, counts_filename), index_col=0)
        df_coordinates = pd.read_csv(os.path.join(data_path, coordinates_filename), index_col=0)
        if len(df_counts) != len(df_coordinates):
            raise ValueError(
                f"{counts_filename} has {len(df_counts)} cells but {coordinates_filename} {len(df_coordinates)}"
            )
        coordinates = CellMeasurement(
            name="coords",
            data=df_coordinates[["X", "Y"]].to_numpy(dtype=np.float64),
            columns_attr_name="axis",
            columns=np.asarray(["x", "y"]),
        )
        attribute_names = {"Cell ID": "cell_id", "Field of View": "field_of_view"}
        if self.tissue_region == "subventricular cortex":
            attribute_names["Region"] = "region"
        cell_attributes_dict = {
            attribute: df_coordinates[column].to_numpy() for column, attribute in attribute_names.items()
        }
        self.populate_from_data(
            X=df_counts.values,
            gene_names=np.asarray(df_counts.columns, dtype=str),
            Ys=[coordinates],
            cell_attributes_dict=cell_attributes_dict,
        )
