"""Datasets stored as delimited text: ``CsvDataset`` and the spatial transcriptomics count matrices."""
import logging
import os
import re
from typing import Dict, Iterable, Optional, Tuple, Union

import numpy as np
import pandas as pd

from ._download import DownloadableDataset

logger = logging.getLogger(__name__)

__all__ = ["CsvDataset", "BreastCancerDataset", "MouseOBDataset"]

_SPOT_COORDINATES = re.compile(r"^\s*(-?\d+(?:\.\d+)?)x(-?\d+(?:\.\d+)?)\s*$")


class CsvDataset(DownloadableDataset):
    """Loads a ``.csv`` file (or any delimited text file).

    Parameters
    ----------
    filename
        File name to use when saving/loading the data.
    save_path
        Location to use when saving/loading the data.
    url
        URL pointing to the data which will be downloaded if it's not already in ``save_path``.
    new_n_genes
        Number of subsampled genes.
    subset_genes
        List of genes for subsampling.
    compression
        For on-the-fly decompression of on-disk data. If 'infer', detect compression from the
        extensions '.gz', '.bz2', '.zip' or '.xz' (otherwise no decompression). If 'zip', the ZIP
        file must contain only one data file to be read in.
    sep
        Delimiter of the file.
    gene_by_cell
        Whether the file has genes in rows and cells in columns (``True``) or the transpose.
    labels_file
        Name of the ``.csv`` file (in ``save_path``) with labels: a header row, then cell names
        and labels (integers or cell type names).
    batch_ids_file
        Name of the ``.csv`` file (in ``save_path``) with batch indices: a header row, then cell
        names and integer batch indices.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> # Loading a remote dataset
    >>> remote_url = "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSE100866&format=file&file=" \\
    ... "GSE100866%5FCBMC%5F8K%5F13AB%5F10X%2DRNA%5Fumi%2Ecsv%2Egz"
    >>> remote_csv_dataset = CsvDataset("GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz", save_path='data/',
    ... compression="gzip", url=remote_url)
    >>> # Loading a local dataset
    >>> local_csv_dataset = CsvDataset("GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz",
    ... save_path="data/", compression='gzip')
    """

    #: Whether the row names are spot coordinates ``"<x>x<y>"`` (spatial transcriptomics).
    _index_is_spot_coordinates = False

    def __init__(
        self,
        filename: str,
        save_path: str = "data/",
        url: str = None,
        new_n_genes: int = None,
        subset_genes: Iterable[Union[int, str]] = None,
        compression: str = None,
        sep: str = ",",
        gene_by_cell: bool = True,
        labels_file: str = None,
        batch_ids_file: str = None,
        delayed_populating: bool = False,
    ):
        self.compression = compression
        self.sep = sep
        self.gene_by_cell = gene_by_cell  # whether the file is genes x cells
        self.labels_file = labels_file
        self.batch_ids_file = batch_ids_file
        super().__init__(urls=url, filenames=filename, save_path=save_path, delayed_populating=delayed_populating)
        if (new_n_genes is not None) or (subset_genes is not None):
            self.subsample_genes(new_n_genes=new_n_genes, subset_genes=subset_genes)

    def populate(self) -> None:
        """Read the file (and the label / batch files) and populate the dataset."""
        logger.info("Preprocessing dataset")
        data = pd.read_csv(self._file_path(), sep=self.sep, index_col=0, compression=self.compression)
        if self.gene_by_cell:
            data = data.T
        gene_names = np.asarray(data.columns, dtype=str)

        labels, cell_types = self._read_labels()
        batch_indices = None
        if self.batch_ids_file is not None:
            batch_indices = self._read_annotation(self.batch_ids_file).astype(np.int64)
        cell_attributes_dict = self._spot_coordinates(data.index) if self._index_is_spot_coordinates else None

        logger.info("Finished preprocessing dataset")
        self.populate_from_data(
            X=data.values,
            batch_indices=batch_indices,
            labels=labels,
            gene_names=gene_names,
            cell_types=cell_types,
            cell_attributes_dict=cell_attributes_dict,
        )
        self.filter_cells_by_count()

    def _read_annotation(self, filename: str) -> np.ndarray:
        values = pd.read_csv(os.path.join(self.save_path, filename), header=0, index_col=0).values
        return values.reshape(-1, 1)

    def _read_labels(self) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        if self.labels_file is None:
            return None, None
        labels = self._read_annotation(self.labels_file).ravel()
        if labels.dtype.kind not in "OUS":
            labels = labels.astype(np.int64)
        # labels (integers or names) become 0..K-1, named by their original value
        cell_types, codes = np.unique(labels, return_inverse=True)
        return codes.reshape(-1, 1).astype(np.int64), cell_types.astype(str)

    @staticmethod
    def _spot_coordinates(index: pd.Index) -> Optional[Dict[str, np.ndarray]]:
        matches = [_SPOT_COORDINATES.match(str(name)) for name in index]
        if not all(matches):
            return None
        coordinates = np.asarray([[float(m.group(1)), float(m.group(2))] for m in matches], dtype=np.float64)
        return {"x_coord": coordinates[:, 0], "y_coord": coordinates[:, 1]}


class _SpatialTranscriptomicsDataset(CsvDataset):
    """A count matrix of the Spatial Transcriptomics Research site (Ståhl et al., 2016), spots x genes,
    whose row names ``"<x>x<y>"`` give the spot coordinates; subclasses set ``_filename``."""

    _index_is_spot_coordinates = True
    _filename: str

    def __init__(self, save_path: str = "data/", delayed_populating: bool = False):
        super().__init__(
            self._filename,
            save_path=save_path,
            url="http://www.spatialtranscriptomicsresearch.org/wp-content/uploads/2016/07/" + self._filename,
            sep="\t",
            gene_by_cell=False,
            delayed_populating=delayed_populating,
        )


class BreastCancerDataset(_SpatialTranscriptomicsDataset):
    """Spatial transcriptomics of a breast cancer section (layer 2; Ståhl et al., 2016).

    Spots are cells; their array coordinates (parsed from the row names ``"<x>x<y>"``) are the
    cell attributes ``x_coord`` and ``y_coord``.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    _filename = "Layer2_BC_count_matrix-1.tsv"


class MouseOBDataset(_SpatialTranscriptomicsDataset):
    """Spatial transcriptomics of the mouse olfactory bulb (replicate 11; Ståhl et al., 2016).

    Spots are cells; their array coordinates (parsed from the row names ``"<x>x<y>"``) are the
    cell attributes ``x_coord`` and ``y_coord``.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.
    """

    _filename = "Rep11_MOB_count_matrix-1.tsv"
