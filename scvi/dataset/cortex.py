"""The mouse cortex dataset of Zeisel et al. (2015)."""
import csv
import logging
from typing import List, Optional

import numpy as np

from ._download import DownloadableDataset

logger = logging.getLogger(__name__)

__all__ = ["CortexDataset"]

# Layout of the Linnarsson lab's text file: annotation rows, then one row per gene.
_PRECISE_CLUSTERS_ROW = 1
_CLUSTERS_ROW = 8
_FIRST_GENE_ROW = 11
_FIRST_CELL_COLUMN = 2


class CortexDataset(DownloadableDataset):
    """Loads cortex dataset.

    The `Mouse Cortex Cells dataset
    <https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt>`_
    contains 3005 mouse cortex cells and gold-standard labels for seven distinct cell types. Each
    cell type corresponds to a cluster to recover. We retain top 558 genes ordered by variance.

    Parameters
    ----------
    save_path
        Path indicating where to save/load data.
    genes_to_keep
        Gene names to keep (first, in this order).
    total_genes
        Total number of genes to keep: ``genes_to_keep`` then the most variable other genes, by
        decreasing standard deviation. If ``None`` and ``genes_to_keep`` is empty/None, all genes
        are loaded.
    delayed_populating
        Boolean switch for delayed population mechanism.

    Examples
    --------
    >>> gene_dataset = CortexDataset()
    """

    def __init__(
        self,
        save_path: str = "data/",
        genes_to_keep: Optional[List[str]] = None,
        total_genes: Optional[int] = 558,
        delayed_populating: bool = False,
    ):
        is_int = isinstance(total_genes, (int, np.integer)) and not isinstance(total_genes, bool)
        if total_genes is not None and not is_int:
            raise TypeError(f"`total_genes` must be None or an int; got {total_genes!r}")
        if total_genes is not None and total_genes < 0:
            raise ValueError(f"`total_genes` must be non-negative; got {total_genes}")
        self.genes_to_keep = genes_to_keep
        self.total_genes = total_genes
        self.precise_labels = None
        super().__init__(
            urls="https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt",
            filenames="expression.bin",
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Parse the text file, select genes and populate the dataset."""
        logger.info("Loading Cortex data")
        rows, gene_names = [], []
        precise_clusters = clusters = None
        with open(self._file_path(), "r", newline="") as handle:
            for i, row in enumerate(csv.reader(handle, delimiter="\t")):
                if i == _PRECISE_CLUSTERS_ROW:
                    precise_clusters = np.asarray(row[_FIRST_CELL_COLUMN:], dtype=str)
                elif i == _CLUSTERS_ROW:
                    clusters = np.asarray(row[_FIRST_CELL_COLUMN:], dtype=str)
                elif i >= _FIRST_GENE_ROW:
                    rows.append(row[_FIRST_CELL_COLUMN:])
                    gene_names.append(row[0])
        if clusters is None or precise_clusters is None or not rows:
            raise ValueError(f"{self._file_path()} does not have the layout of the cortex expression file")
        cell_types, labels = np.unique(clusters, return_inverse=True)
        X = np.asarray(rows, dtype=np.int64).T
        gene_names = np.asarray(gene_names, dtype=str)

        gene_indices = self._select_genes(X, gene_names)
        if gene_indices is not None:
            X = X[:, gene_indices]
            gene_names = gene_names[gene_indices]

        logger.info("Finished preprocessing Cortex data")
        self.populate_from_data(
            X=X,
            labels=labels,
            gene_names=gene_names,
            cell_types=cell_types,
            cell_attributes_dict={"precise_labels": precise_clusters},
        )

    def _select_genes(self, X: np.ndarray, gene_names: np.ndarray) -> Optional[np.ndarray]:
        """``genes_to_keep`` first, then the most variable genes up to ``total_genes`` (None: all)."""
        kept: List[int] = []
        if self.genes_to_keep is not None:
            look_up = {gene: i for i, gene in enumerate(gene_names)}
            missing = [gene for gene in self.genes_to_keep if gene not in look_up]
            if missing:
                raise ValueError(f"`genes_to_keep` has genes absent from the cortex data: {missing[:10]}")
            kept = [look_up[gene] for gene in self.genes_to_keep]
        if self.total_genes is not None and len(kept) < self.total_genes:
            by_variance = np.std(X, axis=0).argsort()[::-1]
            already = set(kept)
            extra = [int(i) for i in by_variance if i not in already]
            kept += extra[: self.total_genes - len(kept)]
        if not kept:
            return None
        return np.asarray(kept, dtype=np.int64)
