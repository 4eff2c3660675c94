"""The hematopoiesis dataset of Tusi et al. (2018)."""
import logging
import os
import zipfile

import numpy as np
import pandas as pd

from ._download import DownloadableDataset

logger = logging.getLogger(__name__)

__all__ = ["HematoDataset"]


def _logit(p: pd.Series) -> np.ndarray:
    """Logit of probabilities, with exact 0 and 1 moved to the nearest observed values."""
    p = np.array(p.values, dtype=np.float64)
    p[p == 0] = np.min(p[p > 0])
    p[p == 1] = np.max(p[p < 1])
    return np.log(p / (1 - p))


class HematoDataset(DownloadableDataset):
    """Loads the hemato dataset.

    This dataset contains continuous gene expression variations from hematopoeitic progenitor
    cells [31] contains 4,016 cells and 7,397 genes. We removed the library basal-bm1 which was of
    poor quality based on authors recommendation. We use their population balance analysis result
    as a potential function for differentiation.

    The SPRING layout coordinates are the cell attributes ``x_coord`` and ``y_coord``; ``meta``
    holds the potential and fate probabilities; ``labels`` rank the cells by the logit of the
    granulocytic minus the logit of the erythroid fate probability (as in scVI 0.6), whose value
    is the cell attribute ``gr_er_logit``.

    Parameters
    ----------
    save_path
        Location to use when saving/loading the data.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = HematoDataset()
    """

    gene_names_filename = "bBM.filtered_gene_list.paper.txt"
    spring_and_pba_filename = "bBM.spring_and_pba.csv"

    def __init__(self, save_path: str = "data/HEMATO/", delayed_populating: bool = False):
        self.cell_types_levels = [
            "Erythroid",
            "Granulocytic Neutrophil",
            "Lymphocytic",
            "Dendritic",
            "Megakaryocytic",
            "Monocytic",
            "Basophilic",
        ]
        super().__init__(
            urls=[
                "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
                "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz",
                "https://github.com/romain-lopez/scVI-reproducibility/raw/master/additional/data.zip",
            ],
            filenames=["bBM.raw_umifm_counts.csv.gz", "data.zip"],
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def _extract_annotations(self) -> None:
        """Take the gene list and the SPRING / PBA table out of ``data.zip`` (whatever its folder layout)."""
        wanted = (self.gene_names_filename, self.spring_and_pba_filename)
        missing = [name for name in wanted if not os.path.exists(os.path.join(self.save_path, name))]
        if not missing:
            return
        with zipfile.ZipFile(self._file_path(1)) as archive:
            members = {os.path.basename(member): member for member in archive.namelist() if not member.endswith("/")}
            for name in missing:
                if name not in members:
                    raise FileNotFoundError(f"{name} is neither in {self.save_path} nor in {self._file_path(1)}")
                with archive.open(members[name]) as source, open(os.path.join(self.save_path, name), "wb") as target:
                    target.write(source.read())

    def populate(self) -> None:
        """Read the counts, the gene list and the SPRING / PBA annotations and populate the dataset."""
        logger.info("Preprocessing Hemato data")
        self._extract_annotations()
        raw_counts = pd.read_csv(self._file_path(0), compression="gzip")
        # remove this library to avoid dealing with batch effects
        raw_counts = raw_counts[raw_counts["library_id"] != "basal_bm1"]
        spring_and_pba = pd.read_csv(os.path.join(self.save_path, self.spring_and_pba_filename))
        gene_names = np.loadtxt(os.path.join(self.save_path, self.gene_names_filename), dtype=str, ndmin=1)

        data = raw_counts.merge(spring_and_pba, how="inner")
        self.meta = data[["Potential", "Pr_Er", "Pr_Gr", "Pr_Ly", "Pr_DC", "Pr_Mk", "Pr_Mo", "Pr_Ba"]]
        gr_er_logit = _logit(self.meta["Pr_Gr"]) - _logit(self.meta["Pr_Er"])
        _, labels = np.unique(gr_er_logit, return_inverse=True)

        logger.info("Finished preprocessing Hemato data")
        self.populate_from_data(
            X=data[gene_names].values,
            labels=labels,
            gene_names=gene_names,
            cell_attributes_dict={
                "x_coord": data["x_spring"].values,
                "y_coord": data["y_spring"].values,
                "gr_er_logit": gr_er_logit,
            },
        )
        self.filter_cells_by_count()
