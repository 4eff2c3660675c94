"""Datasets built from ``anndata.AnnData`` objects."""
import logging
from typing import Dict, Optional

import numpy as np
import pandas as pd

from ._anndata_io import extract_data_from_anndata
from .dataset import CellMeasurement, DownloadableDataset, GeneExpressionDataset

logger = logging.getLogger(__name__)


def _measurements_from_anndata(obsm, uns, cell_measurements_col_mappings: Optional[Dict[str, str]]):
    """``CellMeasurement`` objects from ``obsm[name]`` and column names ``uns[columns_attr_name]``."""
    measurements = []
    for name, columns_attr_name in (cell_measurements_col_mappings or {}).items():
        if name not in obsm:
            raise ValueError(f"Cell measurement {name!r} not found in the AnnData's obsm (keys: {list(obsm.keys())})")
        data = obsm[name]
        if columns_attr_name in uns:
            columns = np.asarray(uns[columns_attr_name])
        elif isinstance(data, pd.DataFrame):
            columns = np.asarray(data.columns)
        else:
            raise ValueError(
                f"Column names {columns_attr_name!r} of cell measurement {name!r} not found in the AnnData's uns."
            )
        if isinstance(data, pd.DataFrame):
            data = data.to_numpy()
        measurements.append(CellMeasurement(name=name, data=data, columns_attr_name=columns_attr_name, columns=columns))
    return measurements


def populate_from_anndata(
    dataset: GeneExpressionDataset,
    ad,
    batch_label: str = "batch_indices",
    ctype_label: str = "cell_types",
    class_label: str = "labels",
    use_raw: bool = False,
    cell_measurements_col_mappings: Optional[Dict[str, str]] = None,
) -> None:
    """Populate ``dataset`` from an AnnData (shared by ``AnnDatasetFromAnnData`` and the loaders).

    Cells without counts are removed at the end (as in scVI 0.6).

    Parameters
    ----------
    dataset
        The dataset to fill.
    ad
        The ``anndata.AnnData`` (cells x genes).
    batch_label, ctype_label, class_label, use_raw
        See :func:`extract_data_from_anndata`.
    cell_measurements_col_mappings
        ``{obsm key: uns key of its column names}``.
    """
    X, batch_indices, labels, gene_names, cell_types, obs, obsm, var, _, uns = extract_data_from_anndata(
        ad, batch_label=batch_label, ctype_label=ctype_label, class_label=class_label, use_raw=use_raw
    )
    dataset.populate_from_data(
        X=X,
        Ys=_measurements_from_anndata(obsm, uns, cell_measurements_col_mappings),
        labels=labels,
        batch_indices=batch_indices,
        gene_names=gene_names,
        cell_types=cell_types,
        cell_attributes_dict={name: obs[name].to_numpy() for name in obs.columns},
        gene_attributes_dict={name: var[name].to_numpy() for name in var.columns},
    )
    dataset.filter_cells_by_count()


class AnnDatasetFromAnnData(GeneExpressionDataset):
    """A ``GeneExpressionDataset`` built from an ``anndata.AnnData`` object.

    Counts come from ``ad.X`` (or ``ad.raw.X``) and stay sparse if they are; gene names from
    ``var_names``; other ``obs`` / ``var`` columns become cell / gene attributes. Cells without
    counts are removed.

    Parameters
    ----------
    ad
        The ``anndata.AnnData`` (cells x genes).
    batch_label
        ``obs`` column of the batches.
    ctype_label
        ``obs`` column of the cell type names (labels are their codes).
    class_label
        ``obs`` column of integer labels, used when ``ctype_label`` is absent.
    use_raw
        Read the counts and genes from ``ad.raw``.
    cell_measurements_col_mappings
        ``{obsm key: uns key of its column names}``, e.g.
        ``{"protein_expression": "protein_names"}``.

    Examples
    --------
    >>> import anndata, numpy as np
    >>> dataset = AnnDatasetFromAnnData(anndata.AnnData(np.ones((5, 3), dtype=np.float32)))
    >>> dataset.nb_cells
    5
    """

    def __init__(
        self,
        ad,
        batch_label: str = "batch_indices",
        ctype_label: str = "cell_types",
        class_label: str = "labels",
        use_raw: bool = False,
        cell_measurements_col_mappings: Optional[Dict[str, str]] = None,
    ):
        super().__init__()
        populate_from_anndata(
            self,
            ad,
            batch_label=batch_label,
            ctype_label=ctype_label,
            class_label=class_label,
            use_raw=use_raw,
            cell_measurements_col_mappings=cell_measurements_col_mappings,
        )


__all__ = [
    "AnnDatasetFromAnnData",
    "CellMeasurement",
    "DownloadableDataset",
    "GeneExpressionDataset",
    "extract_data_from_anndata",
]


class DownloadableAnnDataset(DownloadableDataset):
    """Forms a ``DownloadableDataset`` from a ``.h5ad`` file using the ``anndata`` package.

    Parameters
    ----------
    filename
        Name of the ``.h5ad`` file to save/load.
    save_path
        Location to use when saving/loading the data.
    url
        URL pointing to the data which will be downloaded if it's not already in ``save_path``.
    delayed_populating
        Switch for delayed populating mechanism.
    batch_label
        AnnData obs column name for batches.
    ctype_label
        AnnData obs column name for cell_types.
    class_label
        AnnData obs column name for labels.
    use_raw
        If True, copies data from ``.raw`` attribute of AnnData.
    cell_measurements_col_mappings
        ``{obsm key: uns key of its column names}``, e.g. ``{"protein_expression": "protein_names"}``.

    Examples
    --------
    >>> # Loading a local dataset
    >>> dataset = DownloadableAnnDataset("TM_droplet_mat.h5ad", save_path = 'data/')
    """

    def __init__(
        self,
        filename: str = "anndataset",
        save_path: str = "data/",
        url: str = None,
        delayed_populating: bool = False,
        batch_label: str = "batch_indices",
        ctype_label: str = "cell_types",
        class_label: str = "labels",
        use_raw: bool = False,
        cell_measurements_col_mappings: Optional[Dict[str, str]] = None,
    ):
        self.batch_label = batch_label
        self.ctype_label = ctype_label
        self.class_label = class_label
        self.use_raw = use_raw
        self.cell_measurements_col_mappings_temp = cell_measurements_col_mappings
        super().__init__(urls=url, filenames=filename, save_path=save_path, delayed_populating=delayed_populating)

    def populate(self) -> None:
        """Read the ``.h5ad`` file and populate the dataset from it."""
        import anndata

        ad = anndata.read_h5ad(self._file_path())  # obs = cells, var = genes
        populate_from_anndata(
            self,
            ad,
            batch_label=self.batch_label,
            ctype_label=self.ctype_label,
            class_label=self.class_label,
            use_raw=self.use_raw,
            cell_measurements_col_mappings=self.cell_measurements_col_mappings_temp,
        )


__all__.append("DownloadableAnnDataset")
