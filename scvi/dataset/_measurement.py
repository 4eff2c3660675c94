"""Paired per-cell measurements (e.g. CITE-seq protein counts, spatial coordinates)."""
from dataclasses import dataclass
from typing import List, Union

import numpy as np
import scipy.sparse as sp_sparse


@dataclass
class CellMeasurement:
    """A matrix measured on the same cells as the gene expression, with named columns.

    Registered on a dataset with ``GeneExpressionDataset.initialize_cell_measurement``, it
    becomes the cell attribute ``name`` (filtered with the cells, merged across datasets by
    column name) and its column names become the attribute ``columns_attr_name``.

    Parameters
    ----------
    name
        Attribute name of the data, e.g. ``"protein_expression"``.
    data
        The measurement, shape ``(n_cells, n_columns)``, dense or CSR.
    columns_attr_name
        Attribute name of the column names, e.g. ``"protein_names"``.
    columns
        Column names, shape ``(n_columns,)``.
    """

    name: str
    data: Union[np.ndarray, sp_sparse.csr_matrix]
    columns_attr_name: str
    columns: Union[np.ndarray, List[str]]
