"""Conversion between ``GeneExpressionDataset`` and ``anndata.AnnData``.

A round trip keeps counts (dense or sparse), gene names, batches, labels with their cell type
names (written as an ordered categorical, so label ``k`` stays label ``k``), other cell / gene
attributes, and cell measurements (``obsm`` + column names in ``uns``).
"""
import logging
from typing import Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp_sparse

from ._registry import LIBRARY_ATTRIBUTES

logger = logging.getLogger(__name__)


def _codes(column: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
    """Integer codes and category names of an obs column (categorical order, else first appearance)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        if (column.cat.codes < 0).any():
            raise ValueError(f"obs column {column.name!r} has missing values; every cell needs a category.")
        return column.cat.codes.to_numpy().astype(np.int64), np.asarray(column.cat.categories).astype(str)
    codes, uniques = pd.factorize(column)
    if (codes < 0).any():
        raise ValueError(f"obs column {column.name!r} has missing values; every cell needs a category.")
    return codes.astype(np.int64), np.asarray(uniques).astype(str)


def _batch_values(column: pd.Series) -> np.ndarray:
    """Batch indices from an obs column: integers as they are, names (or categories) coded."""
    if not isinstance(column.dtype, pd.CategoricalDtype) and pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype) and pd.api.types.is_integer_dtype(column.cat.categories.dtype):
        return column.astype(column.cat.categories.dtype).to_numpy()
    return _codes(column)[0]


def extract_data_from_anndata(
    ad,
    batch_label: str = "batch_indices",
    ctype_label: str = "cell_types",
    class_label: str = "labels",
    use_raw: bool = False,
):
    """Split an ``AnnData`` into what ``populate_from_data`` takes.

    Parameters
    ----------
    ad
        The ``anndata.AnnData`` (cells x genes).
    batch_label
        ``obs`` column of the batches (integers, or names coded in order of appearance).
    ctype_label
        ``obs`` column of the cell type names; labels are their codes (category order for a
        categorical column, order of first appearance otherwise).
    class_label
        ``obs`` column of integer labels, used when ``ctype_label`` is absent.
    use_raw
        Read the counts and genes from ``ad.raw``.

    Returns
    -------
    tuple
        ``(X, batch_indices, labels, gene_names, cell_types, obs, obsm, var, varm, uns)``; ``X``
        stays sparse (CSR) if it is sparse, ``obs`` has the columns used above removed.

    Raises
    ------
    ValueError
        If ``use_raw`` is true but ``ad.raw`` is absent.
    """
    if use_raw and ad.raw is None:
        raise ValueError("use_raw=True but the AnnData has no .raw")
    source = ad.raw if use_raw else ad
    counts = source.X
    if sp_sparse.issparse(counts):
        data = sp_sparse.csr_matrix(counts, dtype=np.float32, copy=True)
    elif isinstance(counts, pd.DataFrame):
        data = counts.to_numpy(dtype=np.float32, copy=True)
    else:
        data = np.array(counts, dtype=np.float32)
    var = source.var
    gene_names = np.asarray(source.var_names).astype(str)

    obs = ad.obs.copy()
    batch_indices, labels, cell_types = None, None, None
    if batch_label in obs.columns:
        batch_indices = _batch_values(obs.pop(batch_label))
    if ctype_label in obs.columns:
        labels, cell_types = _codes(obs.pop(ctype_label))
        if class_label in obs.columns and class_label != ctype_label:
            obs.pop(class_label)
    elif class_label in obs.columns:
        labels = obs.pop(class_label).to_numpy()
    varm = source.varm if use_raw else ad.varm
    return data, batch_indices, labels, gene_names, cell_types, obs, ad.obsm, var, varm, ad.uns


class AnnDataMixin:
    """``to_anndata`` of ``GeneExpressionDataset``."""

    def to_anndata(self):
        """Convert to an ``anndata.AnnData`` (saved / read with the anndata API).

        ``obs`` holds ``batch_indices``, ``cell_types`` (an ordered categorical whose codes are
        the labels; ``labels`` when there are no names) and the other cell attributes; ``var`` is
        indexed by the gene names and holds the other gene attributes; cell measurements go to
        ``obsm`` with their column names and ``cell_measurements_col_mappings`` in ``uns``.

        Returns
        -------
        anndata.AnnData
            Shape ``(nb_cells, nb_genes)``; ``X`` is sparse if the dataset's is.
        """
        import anndata

        obs, obsm = {}, {}
        for name in sorted(self.cell_attribute_names):
            if name in LIBRARY_ATTRIBUTES:
                continue
            values = getattr(self, name)
            if name in self.cell_measurements_col_mappings:
                obsm[name] = values
            elif name == "labels" and self.cell_types is not None:
                obs["cell_types"] = _labels_as_categorical(values.ravel(), np.asarray(self.cell_types).astype(str))
            elif sp_sparse.issparse(values):
                obsm[name] = values
            else:
                values = np.asarray(values)
                if values.ndim > 1 and values.shape[1] != 1:
                    obsm[name] = values
                else:
                    obs[name] = values.reshape(-1)
        obs = pd.DataFrame(obs, index=pd.Index(np.arange(self.nb_cells).astype(str)))
        var = {
            name: np.asarray(getattr(self, name))
            for name in sorted(self.gene_attribute_names)
            if name != "gene_names"
        }
        gene_names = self.gene_names if self.gene_names is not None else np.arange(self.nb_genes)
        var = pd.DataFrame(var, index=pd.Index(np.asarray(gene_names).astype(str)))
        column_names = {attr: np.asarray(getattr(self, attr)) for attr in self.cell_measurements_col_mappings.values()}
        uns = dict(cell_measurements_col_mappings=dict(self.cell_measurements_col_mappings), **column_names)
        X = self.X.copy()
        return anndata.AnnData(X=X, obs=obs, obsm=obsm, var=var, uns=uns)


def _labels_as_categorical(labels: np.ndarray, names: np.ndarray):
    """Cell type of each cell as a categorical with the categories in label order (if names are unique)."""
    if len(np.unique(names)) == len(names):
        return pd.Categorical.from_codes(labels, categories=names)
    return names[labels]
