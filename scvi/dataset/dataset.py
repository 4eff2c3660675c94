"""Public legacy module ``scvi.dataset.dataset``: the dataset container and its helpers.

Implementation lives in private modules split by concern (``_registry``, ``_populate``,
``_merge``, ``_filtering``, ``_cell_types``, ``_transforms``, ``_collate``, ``_anndata_io``); the
gene selection functions come from ``_gene_selection``.
"""
from ._arrays import (
    check_nonnegative_integers,
    compute_library_size,
    concatenate_arrays,
    remap_categories,
)
from ._base import GeneExpressionDataset
from ._collate import Minibatch
from ._gene_selection import poisson_gene_selection, seurat_v3_highly_variable_genes
from ._measurement import CellMeasurement

# After GeneExpressionDataset is bound: the download module subclasses it.
from ._download import DownloadableDataset  # noqa: E402

__all__ = [
    "CellMeasurement",
    "DownloadableDataset",
    "GeneExpressionDataset",
    "Minibatch",
    "check_nonnegative_integers",
    "compute_library_size",
    "concatenate_arrays",
    "poisson_gene_selection",
    "remap_categories",
    "seurat_v3_highly_variable_genes",
]
