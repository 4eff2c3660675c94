"""10x Genomics datasets: ``Dataset10X`` (Cell Ranger outputs, remote or local) and ``BrainSmallDataset``."""
import logging
import os
import shutil
import tarfile
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from ._download import DownloadableDataset, _download
from ._safe_pickle import safe_load
from ._tenx_io import (
    TenXMatrix,
    batch_indices_from_barcodes,
    extract_tar,
    find_matrix_folder,
    read_10x_h5,
    read_10x_mtx,
)
from .dataset import CellMeasurement

logger = logging.getLogger(__name__)

__all__ = ["Dataset10X", "BrainSmallDataset", "available_datasets", "tenx_source"]

available_datasets = {
    "1.1.0": [
        "frozen_pbmc_donor_a",
        "frozen_pbmc_donor_b",
        "frozen_pbmc_donor_c",
        "fresh_68k_pbmc_donor_a",
        "cd14_monocytes",
        "b_cells",
        "cd34",
        "cd56_nk",
        "cd4_t_helper",
        "regulatory_t",
        "naive_t",
        "memory_t",
        "cytotoxic_t",
        "naive_cytotoxic",
    ],
    "2.1.0": ["pbmc8k", "pbmc4k", "t_3k", "t_4k", "neuron_9k"],
    "3.0.0": [
        "pbmc_1k_protein_v3",
        "pbmc_10k_protein_v3",
        "malt_10k_protein_v3",
        "pbmc_1k_v2",
        "pbmc_1k_v3",
        "pbmc_10k_v3",
        "hgmm_1k_v2",
        "hgmm_1k_v3",
        "hgmm_5k_v3",
        "hgmm_10k_v3",
        "neuron_1k_v2",
        "neuron_1k_v3",
        "neuron_10k_v3",
        "heart_1k_v2",
        "heart_1k_v3",
        "heart_10k_v3",
    ],
    "3.1.0": ["5k_pbmc_protein_v3", "5k_pbmc_protein_v3_nextgem"],
}

dataset_to_group = {name: group for group, names in available_datasets.items() for name in names}

group_to_url_skeleton = {
    "1.1.0": "http://cf.10xgenomics.com/samples/cell-exp/{}/{}/{}_{}_gene_bc_matrices.tar.gz",
    "2.1.0": "http://cf.10xgenomics.com/samples/cell-exp/{}/{}/{}_{}_gene_bc_matrices.tar.gz",
    "3.0.0": "http://cf.10xgenomics.com/samples/cell-exp/{}/{}/{}_{}_feature_bc_matrix.tar.gz",
    "3.1.0": "http://cf.10xgenomics.com/samples/cell-exp/{}/{}/{}_{}_feature_bc_matrix.tar.gz",
}

group_to_filename_skeleton = {
    "1.1.0": "{}_gene_bc_matrices.tar.gz",
    "2.1.0": "{}_gene_bc_matrices.tar.gz",
    "3.0.0": "{}_feature_bc_matrix.tar.gz",
    "3.1.0": "{}_feature_bc_matrix.tar.gz",
}

available_specification = ["filtered", "raw"]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def tenx_source(dataset_name: str, type: str = "filtered") -> Tuple[str, str]:
    """URL and file name of one of the 10x datasets known to scvi.

    Raises
    ------
    ValueError
        If ``dataset_name`` or ``type`` is unknown.
    """
    if dataset_name not in dataset_to_group:
        raise ValueError(
            f"`dataset_name` must be one of the 10x datasets {sorted(dataset_to_group)}; got {dataset_name!r}"
        )
    if type not in available_specification:
        raise ValueError(f"`type` must be one of {available_specification}; got {type!r}")
    group = dataset_to_group[dataset_name]
    url = group_to_url_skeleton[group].format(group, dataset_name, dataset_name, type)
    return url, group_to_filename_skeleton[group].format(type)


def _strip_archive_suffix(path: str) -> Optional[str]:
    for suffix in _ARCHIVE_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return None


class Dataset10X(DownloadableDataset):
    """Loads a file from the `10x <http://cf.10xgenomics.com/>`_ website, or local Cell Ranger outputs.

    Reads matrix folders in the Cell Ranger 2 (``genes.tsv``, ``matrix.mtx``) and 3
    (``features.tsv.gz``, ``matrix.mtx.gz``) layouts, ``.tar.gz`` archives of them, and ``.h5``
    matrix files. Batches are read off the barcodes' ``-<n>`` suffix. Features other than
    ``Gene Expression`` become cell measurements: ``Antibody Capture`` is
    ``protein_expression`` (dense, names in ``protein_names``), any other type ``<type>`` (lower
    case, ``_`` for spaces) with names in ``<type>_names``.

    Parameters
    ----------
    dataset_name
        Name of the dataset file. Has to be one of:
        "frozen_pbmc_donor_a", "frozen_pbmc_donor_b", "frozen_pbmc_donor_c", "fresh_68k_pbmc_donor_a",
        "cd14_monocytes", "b_cells", "cd34", "cd56_nk", "cd4_t_helper", "regulatory_t", "naive_t",
        "memory_t", "cytotoxic_t", "naive_cytotoxic", "pbmc8k", "pbmc4k", "t_3k", "t_4k", "neuron_9k",
        "pbmc_1k_protein_v3", "pbmc_10k_protein_v3", "malt_10k_protein_v3", "pbmc_1k_v2", "pbmc_1k_v3",
        "pbmc_10k_v3", "hgmm_1k_v2", "hgmm_1k_v3", "hgmm_5k_v3", "hgmm_10k_v3", "neuron_1k_v2",
        "neuron_1k_v3", "neuron_10k_v3", "heart_1k_v2", "heart_1k_v3", "heart_10k_v3",
        "5k_pbmc_protein_v3", "5k_pbmc_protein_v3_nextgem".
    filename
        Manual override of the filename to write to (a ``.tar.gz`` archive or a ``.h5`` file).
    save_path
        Location to use when saving/loading the data (the dataset goes to ``save_path/dataset_name``).
    url
        Manual override of the download remote location. Note that we already provide urls for
        most 10X datasets, which are automatically formed only using the ``dataset_name``.
    type
        Either ``filtered`` data or ``raw`` data.
    dense
        Whether to load as dense or sparse. If False, data is cast to sparse using
        ``scipy.sparse.csr_matrix``.
    measurement_names_column
        Column in which to find measurement names in the corresponding ``.tsv`` file (0: ids,
        1: names).
    remove_extracted_data
        Whether to remove extracted archives after populating the dataset.
    delayed_populating
        Switch for delayed populating mechanism.
    remote
        If ``False``, never download: read the files already in ``save_path`` (scVI 0.5's option).

    Examples
    --------
    >>> tenX_dataset = Dataset10X("neuron_9k")
    """

    def __init__(
        self,
        dataset_name: str = None,
        filename: str = None,
        save_path: str = "data/10X",
        url: str = None,
        type: str = "filtered",
        dense: bool = False,
        measurement_names_column: int = 1,
        remove_extracted_data: bool = False,
        delayed_populating: bool = False,
        remote: bool = True,
    ):
        if type not in available_specification:
            raise ValueError(f"`type` must be one of {available_specification}; got {type!r}")
        if isinstance(measurement_names_column, bool) or not isinstance(measurement_names_column, (int, np.integer)):
            raise TypeError(f"`measurement_names_column` must be an int; got {measurement_names_column!r}")
        self.barcodes = None
        self.dense = dense
        self.measurement_names_column = int(measurement_names_column)
        self.remove_extracted_data = remove_extracted_data

        # form data url and filename unless manual override
        if dataset_name is not None:
            known_url, known_filename = tenx_source(dataset_name, type)
            if url is not None:
                logger.warning("dataset_name provided, manual url is disregarded.")
            if filename is not None:
                logger.warning("dataset_name provided, manual filename is disregarded.")
            url, filename = known_url, known_filename
            save_path = os.path.join(save_path, dataset_name)
        elif filename is not None and url is not None:
            logger.debug("Loading 10X dataset with custom url and filename")
        elif filename is not None:
            logger.debug("Loading local 10X dataset with custom filename")
        else:
            logger.debug("Loading extracted local 10X dataset")
        if not remote:
            url = None
        super().__init__(
            urls=url,
            filenames=filename,
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Read the Cell Ranger output (extracting the archive if needed) and populate the dataset."""
        logger.info("Preprocessing dataset")
        matrix, extracted = self._read()
        gene_X, gene_names, Ys = self._split_measurements(matrix)

        batch_indices, cell_attributes_dict = None, None
        if matrix.barcodes is not None:
            cell_attributes_dict = {"barcodes": matrix.barcodes}
            batch_indices = batch_indices_from_barcodes(matrix.barcodes)

        logger.info("Finished preprocessing dataset")
        self.populate_from_data(
            X=gene_X,
            batch_indices=batch_indices,
            gene_names=gene_names,
            cell_attributes_dict=cell_attributes_dict,
            Ys=Ys,
        )
        self.filter_cells_by_count()

        if extracted is not None and self.remove_extracted_data:
            logger.info("Removing extracted data at %s", extracted)
            shutil.rmtree(extracted)

    def _read(self) -> Tuple[TenXMatrix, Optional[str]]:
        """The counts, and the folder extracted from the archive (``None`` if nothing was extracted)."""
        extracted = None
        if len(self.filenames) > 0:
            file_path = self._file_path()
            if file_path.endswith(".h5"):
                return read_10x_h5(file_path), None
            target = _strip_archive_suffix(file_path)
            if target is not None and not os.path.exists(target) and os.path.isfile(file_path):
                if not tarfile.is_tarfile(file_path):
                    raise ValueError(f"{file_path} is not a tar archive")
                logger.info("Extracting tar file")
                extract_tar(file_path, self.save_path)
                extracted = target if os.path.isdir(target) else None
        path_to_data, _ = self.find_path_to_data()
        return read_10x_mtx(path_to_data), extracted

    def _split_measurements(self, matrix: TenXMatrix):
        """Gene expression, gene names and the other feature types as a list of ``CellMeasurement``."""
        features = matrix.features
        column = self.measurement_names_column
        if not 0 <= column < features.shape[1]:
            raise ValueError(
                f"`measurement_names_column` must be between 0 and {features.shape[1] - 1} for this feature file; "
                f"got {column}"
            )
        X = matrix.X.toarray() if self.dense else matrix.X
        names = np.asarray(features[column], dtype=str)
        if features.shape[1] < 3:
            return X, names, None

        feature_types = np.asarray(features[2], dtype=str)
        gene_X, gene_names, Ys = None, None, []
        for feature_type in np.unique(feature_types):
            mask = feature_types == feature_type
            data, type_names = X[:, mask], names[mask]
            if feature_type == "Gene Expression":
                gene_X, gene_names = data, type_names
                continue
            if feature_type == "Antibody Capture":
                name, columns_attr_name = "protein_expression", "protein_names"
                # protein counts do not have many zeros: always dense
                data = data if isinstance(data, np.ndarray) else data.toarray()
            else:
                name = feature_type.lower().replace(" ", "_")
                columns_attr_name = name + "_names"
            Ys.append(CellMeasurement(name=name, data=data, columns_attr_name=columns_attr_name, columns=type_names))
        if gene_names is None:
            raise ValueError("When loading measurements, no 'Gene Expression' category was found.")
        return gene_X, gene_names, Ys or None

    def find_path_to_data(self) -> Tuple[str, str]:
        """Returns exact path for the data in the archive.

        This is required because 10X doesn't have a consistent way of storing their data.
        Additionally, the function returns whether the data is stored in compressed format.

        Returns
        -------
        path in which files are contains and their suffix if compressed.
        """
        return find_matrix_folder(self.save_path)


class BrainSmallDataset(Dataset10X):
    """This dataset consists in 9,128 mouse brain cells profiled using `10x Genomics`.

    It is used as a complement of PBMC for our study of zero abundance and quality control metrics
    correlation with our generative posterior parameters.

    We derived quality control metrics using the cellrangerRkit R package (v.1.1.0). Quality
    metrics were extracted from CellRanger throughout the molecule specific information file. We
    kept the top 3000 genes by variance. We used the clusters provided by cellRanger for the
    correlation analysis of zero probabilities.

    Parameters
    ----------
    save_path
        Location of the metadata pickle (labels and quality control metrics).
    save_path_10X
        Location of the underlying 10x dataset (``neuron_9k``).
    delayed_populating
        Switch for delayed populating mechanism.
    remove_extracted_data
        Whether to remove extracted archives after populating the dataset.

    Examples
    --------
    >>> gene_dataset = BrainSmallDataset()
    """

    _metadata_url = "https://github.com/YosefLab/scVI-data/raw/master/brain_small_metadata.pickle"
    _metadata_filename = "brain_small_metadata.pickle"

    def __init__(
        self,
        save_path: str = "data/",
        save_path_10X: str = "data/",
        delayed_populating: bool = False,
        remove_extracted_data: bool = False,
    ):
        self.metadata_save_path = os.path.abspath(save_path)
        super().__init__(
            dataset_name="neuron_9k",
            save_path=save_path_10X if save_path_10X is not None else save_path,
            remove_extracted_data=remove_extracted_data,
            delayed_populating=delayed_populating,
        )

    def download(self) -> None:
        """Download the 10x archive and the metadata pickle."""
        super().download()
        _download(self._metadata_url, self.metadata_save_path, self._metadata_filename)

    def populate(self) -> None:
        """Populate from the 10x data, then add the cluster labels and quality control metrics."""
        super().populate()
        metadata = safe_load(os.path.join(self.metadata_save_path, self._metadata_filename))
        barcodes = np.asarray(self.barcodes).ravel()
        missing = _missing(metadata["clusters"].index, barcodes)
        if missing:
            raise ValueError(f"brain_small_metadata.pickle lacks {len(missing)} barcodes, e.g. {missing[:3]}")
        clusters = np.asarray(metadata["clusters"].loc[barcodes]).reshape(-1, 1) - 1
        raw_qc = metadata["raw_qc"].loc[barcodes]
        self.labels = clusters
        self.initialize_cell_attribute("raw_qc", raw_qc)
        self.initialize_cell_attribute("qc", raw_qc.values)
        self.qc_names = raw_qc.columns


def _missing(index: pd.Index, barcodes: np.ndarray) -> List[str]:
    present = set(index.astype(str))
    return [barcode for barcode in barcodes if barcode not in present]
