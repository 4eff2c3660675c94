"""PBMC datasets built from 10x data: ``PbmcDataset`` (4k + 8k with metadata) and ``PurifiedPBMCDataset``."""
import logging
import os
from typing import List, Union

import numpy as np
import pandas as pd

from ._download import DownloadableDataset, _download
from ._safe_pickle import safe_load
from .dataset import remap_categories  # noqa: F401 - legacy re-export of scvi.dataset.pbmc
from .dataset10X import Dataset10X, tenx_source

logger = logging.getLogger(__name__)

__all__ = ["PbmcDataset", "PurifiedPBMCDataset"]


def _download_10x(dataset_names, save_path: str) -> None:
    """Download the archives of 10x datasets into ``save_path/<name>`` (as ``Dataset10X`` would)."""
    for name in dict.fromkeys(dataset_names):
        url, filename = tenx_source(name)
        _download(url, os.path.join(save_path, name), filename)


class PbmcDataset(DownloadableDataset):
    """Loads pbmc dataset.

    We considered scRNA-seq data from two batches of peripheral blood mononuclear cells (PBMCs)
    from a healthy donor (4K PBMCs and 8K PBMCs). We derived quality control metrics using the
    cellrangerRkit R package (v. 1.1.0). Quality metrics were extracted from CellRanger throughout
    the molecule specific information file. After filtering, we extract 12,039 cells with 10,310
    sampled genes and get biologically meaningful clusters with the software Seurat. We then filter
    genes that we could not match with the bulk data used for differential expression to be left
    with g = 3346.

    Besides labels and cell types, the dataset has ``de_metadata`` (the bulk differential
    expression table, one row per gene, in gene order), ``design``, ``raw_qc``, ``qc``,
    ``qc_names``, ``qc_pc`` and ``normalized_qc`` (one row per cell).

    Parameters
    ----------
    save_path
        Location to use when saving/loading the Pbmc metadata.
    save_path_10X
        Location to use when saving/loading the underlying 10X datasets (default: ``save_path``).
    remove_extracted_data
        Whether to remove extracted archives after populating the dataset.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = PbmcDataset()
    """

    _tenx_datasets = ("pbmc8k", "pbmc4k")

    def __init__(
        self,
        save_path: str = "data/",
        save_path_10X: str = None,
        remove_extracted_data: bool = False,
        delayed_populating: bool = False,
    ):
        self.save_path_10X = save_path_10X if save_path_10X is not None else save_path
        self.remove_extracted_data = remove_extracted_data
        self.barcodes = None
        super().__init__(
            urls=[
                "https://github.com/YosefLab/scVI-data/raw/master/gene_info.csv",
                "https://github.com/YosefLab/scVI-data/raw/master/pbmc_metadata.pickle",
            ],
            filenames=["gene_info_pbmc.csv", "pbmc_metadata.pickle"],
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def download(self) -> None:
        """Download the metadata and the two 10x archives."""
        super().download()
        _download_10x(self._tenx_datasets, self.save_path_10X)

    def populate(self) -> None:
        """Merge pbmc8k and pbmc4k, keep the annotated cells and the genes with bulk DE data."""
        de_metadata = pd.read_csv(self._file_path(0), sep=",")
        pbmc_metadata = safe_load(self._file_path(1))
        datasets = [
            Dataset10X(
                name,
                save_path=self.save_path_10X,
                remove_extracted_data=self.remove_extracted_data,
                measurement_names_column=0,
            )
            for name in self._tenx_datasets
        ]
        self.populate_from_datasets(datasets)

        # keep the annotated cells, in the order of the metadata
        position = {barcode: i for i, barcode in enumerate(np.asarray(self.barcodes).ravel())}
        barcodes_metadata = pbmc_metadata["barcodes"].index.values.ravel().astype(str)
        subset_cells = [position[barcode] for barcode in barcodes_metadata if barcode in position]
        self.update_cells(subset_cells=np.asarray(subset_cells, dtype=np.int64))
        # barcodes ending in -11 were filtered on the 10X website (49 cells)
        annotated = np.asarray([not barcode.endswith("11") for barcode in barcodes_metadata], dtype=bool)
        clusters = np.asarray(pbmc_metadata["clusters"])[annotated].ravel()[: len(self)]
        # clusters index list_clusters; keep the names of the clusters present, in order
        present, labels = np.unique(clusters, return_inverse=True)
        self.initialize_cell_attribute("labels", labels.reshape(-1, 1), categorical=True)
        self.initialize_mapped_attribute("labels", "cell_types", np.asarray(pbmc_metadata["list_clusters"])[present])

        # only keep the genes for which we have differential expression data
        gene_names = set(np.asarray(self.gene_names).astype(str))
        genes_to_keep = [gene for gene in de_metadata["ENSG"].values if gene in gene_names]
        self.filter_genes_by_attribute(genes_to_keep)
        by_gene = de_metadata.drop_duplicates("ENSG").set_index("ENSG", drop=False)
        self.de_metadata = by_gene.loc[np.asarray(self.gene_names).astype(str)].reset_index(drop=True)

        self.design = pbmc_metadata["design"][annotated]
        self.raw_qc = pbmc_metadata["raw_qc"][annotated]
        self.qc_names = self.raw_qc.columns
        self.qc = self.raw_qc.values
        self.qc_pc = pbmc_metadata["qc_pc"][annotated]
        self.normalized_qc = pbmc_metadata["normalized_qc"][annotated]


class PurifiedPBMCDataset(DownloadableDataset):
    """Purified PBMC dataset from: "Massively parallel digital transcriptional profiling of single cells".

    Each purified population is a 10x dataset; its name is the cell type of its cells.

    Parameters
    ----------
    save_path
        Location of the 10x datasets (each in ``save_path/<name>``).
    subset_datasets
        index for subsetting the follwing list of datasets which are used to form the
        ``PurifiedPBMCDataset``: "cd4_t_helper", "regulatory_t", "naive_t", "memory_t",
        "cytotoxic_t", "naive_cytotoxic", "b_cells", "cd4_t_helper", "cd34", "cd56_nk",
        "cd14_monocytes".
    remove_extracted_data
        Whether to remove extracted archives after populating the dataset.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = PurifiedPBMCDataset()
    """

    def __init__(
        self,
        save_path: str = "data/",
        subset_datasets: Union[List[int], np.ndarray] = None,
        remove_extracted_data: bool = False,
        delayed_populating: bool = False,
    ):
        self.dataset_names = np.asarray(
            [
                "cd4_t_helper",
                "regulatory_t",
                "naive_t",
                "memory_t",
                "cytotoxic_t",
                "naive_cytotoxic",
                "b_cells",
                "cd4_t_helper",
                "cd34",
                "cd56_nk",
                "cd14_monocytes",
            ]
        )
        if subset_datasets is not None and len(subset_datasets) > 0:
            try:
                self.dataset_names = self.dataset_names[np.asarray(subset_datasets)]
            except IndexError as error:
                raise ValueError(
                    f"`subset_datasets` must index the {len(self.dataset_names)} purified populations; "
                    f"got {list(subset_datasets)}"
                ) from error
        self.remove_extracted_data = remove_extracted_data
        super().__init__(save_path=save_path, delayed_populating=delayed_populating)

    def download(self) -> None:
        """Download the 10x archive of every selected population."""
        _download_10x(self.dataset_names, self.save_path)

    def populate(self) -> None:
        """Merge the purified populations, each labelled by its name."""
        datasets = []
        for dataset_name in self.dataset_names:
            dataset = Dataset10X(
                dataset_name, save_path=self.save_path, remove_extracted_data=self.remove_extracted_data
            )
            dataset.initialize_mapped_attribute("labels", "cell_types", np.asarray([dataset_name], dtype="<U128"))
            datasets.append(dataset)
        self.populate_from_datasets(datasets)
        self.filter_genes_by_count()
        self.filter_cells_by_count()
