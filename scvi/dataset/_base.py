"""``GeneExpressionDataset``: counts with their cell / gene annotations, kept consistent.

The behaviour lives in mixins split by concern; this module only assembles them.
"""
import logging

from torch.utils.data import Dataset

from ._anndata_io import AnnDataMixin
from ._cell_types import CellTypesMixin
from ._collate import CollateMixin
from ._filtering import FilteringMixin
from ._merge import MergeMixin
from ._populate import PopulateMixin
from ._registry import RegistryMixin
from ._transforms import TransformsMixin

logger = logging.getLogger(__name__)


class GeneExpressionDataset(
    RegistryMixin,
    PopulateMixin,
    MergeMixin,
    FilteringMixin,
    CellTypesMixin,
    TransformsMixin,
    CollateMixin,
    AnnDataMixin,
    Dataset,
):
    """RNA counts (``X``, cells x genes, dense or CSR) with cell and gene annotations.

    The constructor creates an empty dataset; fill it with one of:

    * ``populate_from_data``: a ``(nb_cells, nb_genes)`` matrix;
    * ``populate_from_per_batch_array``: a ``(n_batches, nb_cells, nb_genes)`` array;
    * ``populate_from_per_batch_list``: a list of ``(n_cells_b, nb_genes)`` matrices, one per batch;
    * ``populate_from_per_label_list``: a list of matrices, one per label;
    * ``populate_from_datasets``: several datasets merged on their common genes.

    Cell attributes (``batch_indices``, ``labels``, ``local_means``, ``local_vars``, cell
    measurements such as ``protein_expression``, annotations), gene attributes (``gene_names``, …),
    attribute mappings (``labels`` -> ``cell_types``) and versions of the data (``norm_X``,
    ``corrupted_X``) are kept in registries (``cell_attribute_names``, ``gene_attribute_names``,
    ``attribute_mappings``, ``cell_measurements_col_mappings``, ``dataset_versions``) that every
    filtering operation goes through. A sparse ``X`` is never densified as a whole.

    Indexing returns the index (``dataset[i] == i``); minibatches are built by the function of
    ``collate_fn_builder``.

    Examples
    --------
    >>> import numpy as np
    >>> dataset = GeneExpressionDataset()
    >>> dataset.populate_from_data(np.ones((4, 3)), labels=[0, 1, 1, 0], cell_types=["a", "b"])
    >>> dataset.nb_cells, dataset.nb_genes, dataset.n_labels
    (4, 3, 2)
    """

    def __init__(self):
        self._init_registries()

    def __len__(self) -> int:
        return self.nb_cells

    def __getitem__(self, idx):
        """Return the index itself; ``collate_fn_builder`` turns a list of indices into a minibatch."""
        return idx

    def __repr__(self) -> str:
        if self.X is None:
            return "GeneExpressionDataset object (unpopulated)"
        descr = f"GeneExpressionDataset object with n_cells x nb_genes = {self.nb_cells} x {self.nb_genes}"
        for name in (
            "dataset_versions",
            "gene_attribute_names",
            "cell_attribute_names",
            "cell_categorical_attribute_names",
            "cell_measurements_col_mappings",
        ):
            attr = getattr(self, name)
            if len(attr) == 0:
                continue
            shown = ", ".join(repr(a) for a in sorted(attr)) if isinstance(attr, set) else str(attr)
            descr += f"\n    {name}: {shown}"
        return descr
