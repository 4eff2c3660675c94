"""The seqFISH dataset of the mouse hippocampus (Shah et al., 2016)."""
import logging

import numpy as np
import pandas as pd

from ._download import DownloadableDataset

logger = logging.getLogger(__name__)

__all__ = ["SeqfishDataset"]


class SeqfishDataset(DownloadableDataset):
    """seqFISH counts of 249 genes in single cells of the mouse hippocampus (Shah et al., 2016).

    The sheet "Hippocampus Counts" has one row per gene (its quoted name, then its count in each
    cell) and no header row. scVI 0.6 read it as cells x genes, taking the first gene as a header
    and genes for cells; here genes are genes, with their names.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    def __init__(self, save_path: str = "data/", delayed_populating: bool = False):
        super().__init__(
            urls="https://www.cell.com/cms/attachment/2080562255/2072099886/mmc6.xlsx",
            filenames="SeqFISH.xlsx",
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Read the Excel sheet (genes x cells) and populate the dataset."""
        logger.info("Preprocessing dataset")
        with pd.ExcelFile(self._file_path()) as workbook:
            counts = workbook.parse("Hippocampus Counts", header=None, index_col=0)
        gene_names = [str(name).strip().strip("'\"") for name in counts.index]
        logger.info("Finished preprocessing dataset")
        self.populate_from_data(counts.values.T.astype(np.int64), gene_names=gene_names)
