"""The 1.3 million mouse brain cells of 10x Genomics, loaded in chunks."""
import logging
from typing import List, Tuple

import numpy as np
import scipy.sparse as sp

from .._utils import track
from ._download import DownloadableDataset

logger = logging.getLogger(__name__)

__all__ = ["BrainLargeDataset"]

# Reads from the h5 file never exceed this many non-zero entries, whatever ``loading_batch_size``.
_MAX_NNZ_PER_READ = 1 << 22


def _check_positive_int(value, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        allowed = "None or a positive int" if allow_none else "a positive int"
        raise ValueError(f"`{name}` must be {allowed}; got {value!r}")


class BrainLargeDataset(DownloadableDataset):
    """Loads brain-large dataset.

    This dataset contains 1.3 million brain cells from
    `10x Genomics <https://support.10xgenomics.com/single-cell-gene-expression/datasets>`_. We
    randomly shuffle the data to get a 1M subset of cells and order genes by variance to retain
    first 10,000 and then 720 sampled variable genes. This dataset is then sampled multiple times
    in cells for the runtime and goodness-of-fit analysis. We report imputation scores on the 10k
    cells and 720 genes samples only.

    The 10x h5 file (genes x cells, CSC) is read in chunks of at most ``loading_batch_size`` cells;
    gene variances are estimated on the first ``sample_size_gene_var`` cells, the
    ``nb_genes_to_keep`` most variable genes are kept (by decreasing variance) and only those
    columns of each chunk are kept, so neither the dense matrix nor the full sparse one is ever in
    memory. Cells without any count on the kept genes are dropped.

    Parameters
    ----------
    filename
        File name to use when saving/loading the data.
    save_path
        Location to use when saving/loading the data.
    sample_size_gene_var
        Number of cells to use to estimate gene variances.
    max_cells_to_keep
        Maximum number of cells to keep (the first ones); all when ``None``.
    nb_genes_to_keep
        Number of genes to keep, ordered by decreasing variance.
    loading_batch_size
        Number of cells to use for each chunk loaded.
    delayed_populating
        Switch for delayed populating mechanism.

    Examples
    --------
    >>> gene_dataset = BrainLargeDataset()
    """

    def __init__(
        self,
        filename: str = None,
        save_path: str = "data/",
        sample_size_gene_var: int = 10000,
        max_cells_to_keep: int = None,
        nb_genes_to_keep: int = 720,
        loading_batch_size: int = 100000,
        delayed_populating: bool = False,
    ):
        _check_positive_int(sample_size_gene_var, "sample_size_gene_var")
        _check_positive_int(max_cells_to_keep, "max_cells_to_keep", allow_none=True)
        _check_positive_int(nb_genes_to_keep, "nb_genes_to_keep")
        _check_positive_int(loading_batch_size, "loading_batch_size")
        # used in populate, set before the call to super().__init__()
        self.sample_size_gene_var = sample_size_gene_var
        self.max_cells_to_keep = max_cells_to_keep
        self.nb_genes_to_keep = nb_genes_to_keep
        self.loading_batch_size = loading_batch_size
        super().__init__(
            urls=(
                "http://cf.10xgenomics.com/samples/cell-exp/1.3.0/1M_neurons/"
                "1M_neurons_filtered_gene_bc_matrices_h5.h5"
            ),
            filenames=filename if filename is not None else "brain_large.h5",
            save_path=save_path,
            delayed_populating=delayed_populating,
        )

    def populate(self) -> None:
        """Select the most variable genes, then load the cells chunk by chunk."""
        import h5py

        logger.info("Preprocessing Brain Large data")
        with h5py.File(self._file_path(), "r") as handle:
            group = handle[_genome_group(handle)]
            nb_genes, nb_cells = (int(n) for n in group["shape"][()])
            indptr = group["indptr"][()].astype(np.int64)
            self.n_cells_to_keep = nb_cells if self.max_cells_to_keep is None else min(self.max_cells_to_keep, nb_cells)
            self.subset_genes = self._most_variable_genes(group, indptr, nb_genes)
            matrix, kept_cells = _load_columns(
                group, indptr[: self.n_cells_to_keep + 1], nb_genes, self.subset_genes, self.loading_batch_size
            )
            barcodes = group["barcodes"][()] if "barcodes" in group else None
            gene_ids = group["genes"][()] if "genes" in group else None
            gene_names = group["gene_names"][()] if "gene_names" in group else None
        logger.info("%d cells subsampled", matrix.shape[0])
        logger.info("%d genes subsampled", matrix.shape[1])
        if kept_cells.size < self.n_cells_to_keep:
            logger.info("Removed %d cells without counts on the kept genes", self.n_cells_to_keep - kept_cells.size)

        cell_attributes = None
        if barcodes is not None:
            cell_attributes = {"barcodes": _strings(barcodes[kept_cells])}
        gene_attributes = {"gene_ids": _strings(gene_ids[self.subset_genes])} if gene_ids is not None else None
        self.populate_from_data(
            matrix,
            gene_names=None if gene_names is None else _strings(gene_names[self.subset_genes]),
            cell_attributes_dict=cell_attributes,
            gene_attributes_dict=gene_attributes,
        )

    def _most_variable_genes(self, group, indptr: np.ndarray, nb_genes: int) -> np.ndarray:
        """Indices of the ``nb_genes_to_keep`` genes of highest variance on the first cells, by decreasing variance."""
        n_sample = min(self.sample_size_gene_var, len(indptr) - 1)
        end = int(indptr[n_sample])
        sums = np.zeros(nb_genes, dtype=np.float64)
        sums_of_squares = np.zeros(nb_genes, dtype=np.float64)
        for start, stop in _spans(0, end, _MAX_NNZ_PER_READ):
            values = group["data"][start:stop].astype(np.float64)
            genes = group["indices"][start:stop]
            sums += np.bincount(genes, weights=values, minlength=nb_genes)
            np.multiply(values, values, out=values)
            sums_of_squares += np.bincount(genes, weights=values, minlength=nb_genes)
            del values, genes
        mean = sums / max(n_sample, 1)
        variance = sums_of_squares / max(n_sample, 1) - mean * mean
        n_keep = min(self.nb_genes_to_keep, nb_genes)
        return np.argsort(variance, kind="stable")[-n_keep:][::-1].copy()


def _genome_group(handle) -> str:
    """The group of a Cell Ranger 1-2 h5 file (``mm10`` for the brain data)."""
    groups = [name for name in handle if "indptr" in handle[name]]
    if not groups:
        raise ValueError(f"{handle.filename} is not a 10x h5 matrix file (no group with indptr)")
    return "mm10" if "mm10" in groups else groups[0]


def _strings(values: np.ndarray) -> np.ndarray:
    return np.asarray([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def _spans(start: int, stop: int, size: int):
    for begin in range(start, stop, size):
        yield begin, min(begin + size, stop)


def _load_columns(
    group, indptr: np.ndarray, nb_genes: int, subset_genes: np.ndarray, loading_batch_size: int
) -> Tuple[sp.csr_matrix, np.ndarray]:
    """CSR ``(n_kept_cells, len(subset_genes))`` of the cells of ``indptr``, and the indices of the kept cells.

    Each chunk of cells is read in pieces of whole cells of at most ``_MAX_NNZ_PER_READ`` entries
    (or one cell); only the entries of ``subset_genes`` are kept, renumbered in their order.
    """
    new_position = np.full(nb_genes, -1, dtype=np.int32)
    new_position[subset_genes] = np.arange(len(subset_genes), dtype=np.int32)
    n_cells = len(indptr) - 1
    data_parts: List[np.ndarray] = []
    index_parts: List[np.ndarray] = []
    counts = np.zeros(n_cells, dtype=np.int64)  # kept entries per cell
    chunks = list(_spans(0, n_cells, loading_batch_size))
    for first_cell, last_cell in track(chunks, description="Loading Brain Large chunks"):
        for cell_start, cell_stop in _cell_pieces(indptr, first_cell, last_cell):
            start, stop = int(indptr[cell_start]), int(indptr[cell_stop])
            genes = new_position[group["indices"][start:stop]]
            keep = genes >= 0
            data_parts.append(group["data"][start:stop][keep].astype(np.float32))
            index_parts.append(genes[keep])
            kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
            np.cumsum(keep, out=kept_before[1:])
            local = indptr[cell_start : cell_stop + 1] - start
            counts[cell_start:cell_stop] = kept_before[local[1:]] - kept_before[local[:-1]]
            del genes, keep, kept_before
        logger.info("loaded %d / %d cells", last_cell, n_cells)
    data = np.concatenate(data_parts) if data_parts else np.zeros(0, dtype=np.float32)
    del data_parts
    indices = np.concatenate(index_parts) if index_parts else np.zeros(0, dtype=np.int32)
    del index_parts
    kept_cells = np.flatnonzero(counts > 0)
    new_indptr = np.concatenate([[0], np.cumsum(counts[kept_cells])])
    matrix = sp.csr_matrix((data, indices, new_indptr), shape=(len(kept_cells), len(subset_genes)))
    matrix.has_sorted_indices = False
    matrix.sort_indices()  # in place
    return matrix, kept_cells


def _cell_pieces(indptr: np.ndarray, first_cell: int, last_cell: int):
    """Ranges of whole cells covering ``[first_cell, last_cell)``, each of at most ``_MAX_NNZ_PER_READ``
    entries (or a single cell)."""
    cell = first_cell
    while cell < last_cell:
        limit = indptr[cell] + _MAX_NNZ_PER_READ
        stop = int(np.searchsorted(indptr, limit, side="right")) - 1
        stop = min(max(stop, cell + 1), last_cell)
        yield cell, stop
        cell = stop
