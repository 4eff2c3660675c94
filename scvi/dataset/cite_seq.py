"""CITE-seq datasets of Stoeckius et al. (2017): RNA and antibody-derived tag (protein) counts."""
import logging
import os
from collections import namedtuple

import numpy as np
import pandas as pd

from ._download import DownloadableDataset
from .dataset import CellMeasurement

logger = logging.getLogger(__name__)

__all__ = ["CiteSeqDataset", "CbmcDataset", "CiteSeqFilenames", "available_datasets"]

available_datasets = {
    "cbmc": "CBMC_8K_13AB_10X",
    "pbmc": "PBMC_vs_flow_10X",
    "cd8": "CD8_merged",
}
CiteSeqFilenames = namedtuple("CiteSeqFilenames", field_names=["rna", "adt", "adt_centered"])

_GEO_URL = "ftp://ftp.ncbi.nlm.nih.gov/geo/series/GSE100nnn/GSE100866/suppl/GSE100866_{}-{}.csv.gz"


class CiteSeqDataset(DownloadableDataset):
    """Allows to form 3 different CiteSeq datasets.

    Only human genes are kept (the files also count mouse genes), named without their ``HUMAN_``
    prefix. Protein counts are the cell measurement ``protein_expression`` (names in
    ``protein_names``) and their centered log ratio transform ``protein_expression_clr`` (names in
    ``protein_names_clr``).

    Note that their centered log ratio transformation for ADT counts is different from the
    standard clr transformation: they explain they add pseudocounts (for 0 values), but do not
    explicit the actual transformation. It doesn't seem to be simply adding count 1 to all entries,
    or only 0 entries.

    Parameters
    ----------
    name
        Name of the CiteSeq dataset to load. Either "cbmc", "pbmc" or "cd8".
    save_path
        Location to use when saving/loading the data (files go to ``save_path/name``).
    delayed_populating
        Switch for delayed populating mechanism.
    """

    def __init__(self, name: str = "cbmc", save_path: str = "data/citeSeq/", delayed_populating: bool = False):
        if name not in available_datasets:
            raise ValueError(f"`name` must be one of {sorted(available_datasets)}; got {name!r}")
        series = available_datasets[name]
        filenames = CiteSeqFilenames(
            rna=f"{name}_rna.csv.gz",
            adt=f"{name}_adt.csv.gz",
            adt_centered=f"{name}_adt_centered.csv.gz",
        )
        super().__init__(
            urls=[
                _GEO_URL.format(series, "RNA_umi"),
                _GEO_URL.format(series, "ADT_umi"),
                _GEO_URL.format(series, "ADT_clr-transformed"),
            ],
            filenames=filenames,
            save_path=os.path.join(save_path, name),
            delayed_populating=delayed_populating,
        )

    def _read(self, filename: str) -> pd.DataFrame:
        """A features x cells table."""
        return pd.read_csv(os.path.join(self.save_path, filename), index_col=0, compression="gzip")

    def populate(self) -> None:
        """Read RNA and protein counts and populate the dataset."""
        logger.info("Preprocessing data")
        self.expression = self._read(self.filenames.rna).T

        adt = self._read(self.filenames.adt)
        protein_names = np.asarray(adt.index).astype(str)
        adt_centered = self._read(self.filenames.adt_centered)
        if not np.array_equal(np.asarray(adt_centered.index).astype(str), protein_names):
            raise ValueError("Protein names are not the same for raw and centered counts.")
        adt = _align_cells(adt, self.expression.index, "raw")
        adt_centered = _align_cells(adt_centered, self.expression.index, "centered")

        # keep only human genes (there are also mouse genes)
        gene_names = np.asarray(self.expression.columns, dtype=str)
        human_filter = np.char.startswith(gene_names, "HUMAN")
        logger.info("Selecting only HUMAN genes (%d / %d)", human_filter.sum(), len(human_filter))
        X = self.expression.values[:, human_filter]
        gene_names = np.asarray([name.split("_")[-1] if "_" in name else name for name in gene_names[human_filter]])

        logger.info("Finish preprocessing data")
        self.populate_from_data(
            X=X,
            gene_names=gene_names,
            Ys=[
                CellMeasurement(
                    name="protein_expression",
                    data=adt.T.values,
                    columns_attr_name="protein_names",
                    columns=protein_names,
                ),
                CellMeasurement(
                    name="protein_expression_clr",
                    data=adt_centered.T.values,
                    columns_attr_name="protein_names_clr",
                    columns=protein_names,
                ),
            ],
        )
        self.filter_cells_by_count()


def _align_cells(table: pd.DataFrame, cells: pd.Index, what: str) -> pd.DataFrame:
    """Protein table (proteins x cells) with its columns in the order of the RNA cells."""
    if table.columns.equals(cells):
        return table
    if set(table.columns) != set(cells) or table.columns.has_duplicates:
        raise ValueError(f"The cells of the {what} protein counts differ from those of the RNA counts.")
    return table[cells]


class CbmcDataset(CiteSeqDataset):
    """Loads cbmc dataset.

    This dataset that includes 8,617 cord blood mononuclear cells profiled using 10x along with for
    each cell 13 well-characterized mononuclear antibodies. We kept the top 600 genes by variance.

    Parameters
    ----------
    save_path
        Save path of raw data file.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = CbmcDataset()
    """

    def __init__(self, save_path: str = "data/citeSeq/", delayed_populating: bool = False):
        super().__init__(name="cbmc", save_path=save_path, delayed_populating=delayed_populating)
