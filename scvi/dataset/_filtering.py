"""Cell and gene filtering: every operation goes through ``update_cells`` / ``update_genes``,
which carry all registered attributes, measurements and dataset versions along with ``X``.

Validation happens before anything is modified: a filter that fails leaves the dataset intact.
"""
import logging
from typing import List, Optional, Union

import numpy as np
import pandas as pd

from ._validation import require_nonempty, resolve_index

logger = logging.getLogger(__name__)


class GeneNotFoundError(ValueError, KeyError):
    """A gene name that is not in the dataset (a ``KeyError`` as in scVI 0.6, and a ``ValueError``)."""

    __str__ = ValueError.__str__


class FilteringMixin:
    """Subsetting, filtering and reordering of cells and genes."""

    # ------------------------------------------------------------------------------ cells
    def update_cells(self, subset_cells) -> None:
        """Keep the cells ``subset_cells`` (int indices or boolean mask), in place.

        ``X``, its registered versions (``norm_X``, ``corrupted_X``), every cell attribute and
        measurement are subset; categorical attributes that lose a category are remapped onto
        ``0..N-1`` (with their mappings, e.g. ``cell_types``), and the library size prior is
        recomputed.

        Parameters
        ----------
        subset_cells
            Int array of cell indices (any shape) or boolean mask of shape ``(nb_cells,)``.

        Raises
        ------
        ValueError
            If no cell would be left, or the index is out of range.
        """
        indices = resolve_index(subset_cells, self.nb_cells, "subset_cells", "cells")
        require_nonempty(len(indices), "cell", "Cell filtering")
        nb_cells_old = self.nb_cells
        categories_before = {
            name: np.unique(getattr(self, name)) for name in self.cell_categorical_attribute_names
        }
        self._X = self._X[indices]
        for name in self.cell_attribute_names:
            setattr(self, name, getattr(self, name)[indices])
        for version_name in self.dataset_versions:
            data = getattr(self, version_name)
            if data is not None:
                setattr(self, version_name, data[indices])
        vanished = [
            name
            for name, before in categories_before.items()
            if len(np.unique(getattr(self, name))) != len(before)
        ]
        if vanished:
            self.remap_categorical_attributes(sorted(vanished))
        self.compute_library_size_batch()
        logger.info(f"Downsampled from {nb_cells_old} to {self.nb_cells} cells")

    def subsample_cells(self, size: Union[int, float] = 1.0) -> None:
        """Keep the cells with the largest total counts.

        Parameters
        ----------
        size
            A float in ``(0, 1]``: the fraction of cells to keep; an int: the number of cells.
        """
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, float, np.integer, np.floating)):
            raise TypeError(f"`size` must be an int (number of cells) or a float (fraction); got {size!r}")
        new_n_cells = int(size) if isinstance(size, (int, np.integer)) else int(size * self.nb_cells)
        if new_n_cells < 1:
            raise ValueError(f"`size`={size} would keep no cell; give a positive number or fraction of cells.")
        totals = np.asarray(self.X.sum(axis=1)).ravel()
        self.update_cells(np.argsort(totals, kind="stable")[::-1][:new_n_cells])

    def filter_cells_by_count(self, min_count: int = 1) -> None:
        """Keep the cells whose total count is at least ``min_count``.

        Parameters
        ----------
        min_count
            Minimum total count of a kept cell.

        Raises
        ------
        ValueError
            If no cell has that many counts.
        """
        totals = np.asarray(self.X.sum(axis=1)).ravel()
        mask = totals >= min_count
        require_nonempty(int(mask.sum()), "cell", f"filter_cells_by_count(min_count={min_count})")
        self.update_cells(mask)

    def filter_cells_by_attribute(self, values_to_keep: Union[List, np.ndarray], on: str = "labels") -> None:
        """Keep the cells whose attribute ``on`` takes one of ``values_to_keep``.

        Parameters
        ----------
        values_to_keep
            Accepted values of the attribute.
        on
            Name of a registered cell attribute (``labels`` by default).

        Raises
        ------
        ValueError
            If ``on`` is not a registered cell attribute, or no cell would be left.
        """
        mask = self._cells_mask_by_attribute(values_to_keep, on)
        require_nonempty(int(mask.sum()), "cell", f"filter_cells_by_attribute(on={on!r})")
        self.update_cells(mask)

    def _cells_mask_by_attribute(self, values_to_keep, attribute_name: str) -> np.ndarray:
        if attribute_name not in self.cell_attribute_names:
            raise ValueError(
                f"{attribute_name} is not a registered cell attribute; registered: {sorted(self.cell_attribute_names)}"
            )
        values = np.asarray(getattr(self, attribute_name))
        if values.ndim > 1:
            values = values.reshape(values.shape[0], -1)[:, 0]
        return np.isin(values, np.asarray(values_to_keep))

    # ------------------------------------------------------------------------------ genes
    def update_genes(self, subset_genes: np.ndarray) -> None:
        """Keep the genes ``subset_genes`` (int indices or boolean mask), in place.

        ``X``, its versions and every gene attribute are subset; then cells left without counts
        are removed (``filter_cells_by_count``) and the library size prior is recomputed.

        Parameters
        ----------
        subset_genes
            Int array of gene indices (any shape) or boolean mask of shape ``(nb_genes,)``.

        Raises
        ------
        ValueError
            If no gene, or no cell with a non-zero count, would be left.
        """
        indices = resolve_index(subset_genes, self.nb_genes, "subset_genes", "genes")
        require_nonempty(len(indices), "gene", "Gene filtering")
        new_X = self._X[:, indices]
        require_nonempty(
            int((np.asarray(new_X.sum(axis=1)).ravel() > 0).sum()), "cell with a non-zero count", "Gene filtering"
        )
        logger.info(f"Downsampling from {self.nb_genes} to {len(indices)} genes")
        self._subset_gene_axis(indices, new_X)
        logger.info("Filtering non-expressing cells.")
        self.filter_cells_by_count()
        if self.local_means is None or len(self.local_means) != self.nb_cells:
            self.compute_library_size_batch()

    def _subset_gene_axis(self, indices: np.ndarray, new_X=None) -> None:
        """Apply a gene index to X, its versions and gene attributes, and recompute the library size."""
        self._X = self._X[:, indices] if new_X is None else new_X
        for version_name in self.dataset_versions:
            data = getattr(self, version_name)
            if data is not None:
                setattr(self, version_name, data[:, indices])
        for name in self.gene_attribute_names:
            setattr(self, name, np.asarray(getattr(self, name))[indices])
        logger.info("Computing the library size for the new data")
        self.compute_library_size_batch()

    def subsample_genes(
        self,
        new_n_genes: Optional[int] = None,
        new_ratio_genes: Optional[float] = None,
        subset_genes: Optional[Union[List[int], List[bool], np.ndarray]] = None,
        mode: Optional[str] = "seurat_v3",
        batch_correction: Optional[bool] = True,
        **highly_var_genes_kwargs,
    ) -> None:
        """Keep the genes ``subset_genes``, or the ``new_n_genes`` most variable genes.

        Either ``subset_genes`` is given, or the genes are ranked by ``mode``: ``"variance"``
        (variance of the counts), ``"seurat_v2"``, ``"cell_ranger"``, ``"seurat_v3"`` (as scanpy's
        ``highly_variable_genes`` flavors ``seurat``, ``cell_ranger``, ``seurat_v3``) or
        ``"poisson_zeros"`` (enrichment of zeros over a Poisson model); see
        :mod:`scvi.dataset._gene_selection`. ``new_n_genes`` (or ``new_ratio_genes``) is required
        except for ``seurat_v2`` / ``cell_ranger``, which then use their dispersion cut-offs.
        ``new_n_genes >= nb_genes`` or ``new_ratio_genes >= 1`` keep every gene (legacy no-op).

        Parameters
        ----------
        new_n_genes
            Number of genes to keep.
        new_ratio_genes
            Fraction of genes to keep, in ``(0, 1)``.
        subset_genes
            Indices or boolean mask of the genes to keep.
        mode
            Gene selection method (see above).
        batch_correction
            Select genes per batch and merge (when there are at least 2 batches).
        highly_var_genes_kwargs
            Passed to the gene selection (e.g. ``min_mean``, ``max_mean``, ``min_disp``).

        Raises
        ------
        ValueError
            On an unknown ``mode``, a non-positive number of genes, or a ``mode`` that needs
            ``new_n_genes``.
        """
        if subset_genes is None:
            subset_genes = self._genes_to_keep(
                new_n_genes, new_ratio_genes, mode, batch_correction, **highly_var_genes_kwargs
            )
            if subset_genes is None:
                return
        self.update_genes(np.asarray(subset_genes))

    def _genes_to_keep(
        self, new_n_genes, new_ratio_genes, mode, batch_correction, **highly_var_genes_kwargs
    ) -> Optional[np.ndarray]:
        """Indices of the genes ``subsample_genes`` keeps, or None to keep them all."""
        from ._gene_selection import MODES, highly_variable_genes_indices, mean_var

        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
        if new_ratio_genes is not None:
            if new_ratio_genes <= 0:
                raise ValueError(f"`new_ratio_genes` must be in (0, 1); got {new_ratio_genes}")
            if new_ratio_genes >= 1:
                logger.info(f"Not subsampling. Expecting 0 < (new_ratio_genes={new_ratio_genes}) < 1.")
                return None
            new_n_genes = int(new_ratio_genes * self.nb_genes)
        if new_n_genes is not None:
            if new_n_genes < 1:
                raise ValueError(f"`new_n_genes` must be at least 1; got {new_n_genes}")
            if new_n_genes >= self.nb_genes:
                logger.info(f"Not subsampling. Expecting: 1 < (new_n_genes={new_n_genes}) <= self.nb_genes")
                return None
        elif mode not in ("seurat_v2", "cell_ranger"):
            raise ValueError(f"mode={mode!r} requires `new_n_genes` or `new_ratio_genes`.")
        use_batches = batch_correction and (self.n_batches or 0) >= 2
        indices = highly_variable_genes_indices(
            self.X,
            new_n_genes,
            mode,
            self.batch_indices.ravel() if use_batches else None,
            **highly_var_genes_kwargs,
        )
        if mode == "variance":  # legacy order: most variable gene first
            variance = mean_var(self.X[:, indices], ddof=0)[1]
            indices = indices[np.argsort(-variance, kind="stable")]
        return indices

    def _highly_variable_genes(
        self,
        n_top_genes: Optional[int] = None,
        flavor: Optional[str] = "seurat_v3",
        batch_correction: Optional[bool] = True,
        **highly_var_genes_kwargs,
    ) -> pd.DataFrame:
        """Per-gene table of the highly variable gene selection (legacy private method).

        See :func:`scvi.dataset._gene_selection.highly_variable_genes_table`; batches are used when
        ``batch_correction`` and the dataset has at least 2 of them.

        Returns
        -------
        pandas.DataFrame
            ``nb_genes`` rows indexed ``"0"``, ``"1"``, ...; column ``highly_variable`` and statistics.
        """
        from ._gene_selection import highly_variable_genes_table

        use_batches = batch_correction and (self.n_batches or 0) >= 2
        batch_indices = self.batch_indices.ravel() if use_batches else None
        return highly_variable_genes_table(self.X, n_top_genes, flavor, batch_indices, **highly_var_genes_kwargs)

    def filter_genes_by_count(self, min_count: int = 1, per_batch: bool = False) -> None:
        """Keep the genes with a total count of at least ``min_count`` (in every batch if ``per_batch``).

        Parameters
        ----------
        min_count
            Minimum total count of a kept gene.
        per_batch
            Require ``min_count`` within every batch instead of overall.

        Raises
        ------
        ValueError
            If no gene would be left.
        """
        if per_batch:
            batches = self.batch_indices.ravel()
            mask = np.ones(self.nb_genes, dtype=bool)
            for b in np.unique(batches):
                mask &= np.asarray(self.X[batches == b].sum(axis=0)).ravel() >= min_count
        else:
            mask = np.asarray(self.X.sum(axis=0)).ravel() >= min_count
        require_nonempty(int(mask.sum()), "gene", f"filter_genes_by_count(min_count={min_count})")
        self.update_genes(mask)

    def filter_genes_by_attribute(self, values_to_keep: Union[List, np.ndarray], on: str = "gene_names") -> None:
        """Keep the genes whose attribute ``on`` (``gene_names`` by default) is in ``values_to_keep``.

        Parameters
        ----------
        values_to_keep
            Accepted values of the attribute.
        on
            Name of a registered gene attribute.

        Raises
        ------
        ValueError
            If ``on`` is not a registered gene attribute, or no gene would be left.
        """
        if on not in self.gene_attribute_names:
            registered = sorted(self.gene_attribute_names)
            raise ValueError(f"{on} is not a registered gene attribute; registered: {registered}")
        mask = np.isin(getattr(self, on), np.asarray(values_to_keep))
        require_nonempty(int(mask.sum()), "gene", f"filter_genes_by_attribute(on={on!r})")
        self.update_genes(mask)

    def make_gene_names_lower(self) -> None:
        """Lower-case the gene names."""
        logger.info("Making gene names lower case")
        self.gene_names = np.char.lower(self.gene_names)

    def reorder_genes(self, first_genes: Union[List[str], np.ndarray], drop_omitted_genes: bool = False) -> None:
        """Put the genes ``first_genes`` (names) first, in that order; drop or append the others.

        Parameters
        ----------
        first_genes
            Gene names in the new order.
        drop_omitted_genes
            Drop the genes absent from ``first_genes`` instead of keeping them after, in their order.

        Raises
        ------
        ValueError
            If a name is not a gene of the dataset (a ``GeneNotFoundError``, also a ``KeyError``).
        """
        first = self.genes_to_index(np.asarray(first_genes).astype(str), on="gene_names")
        if drop_omitted_genes:
            require_nonempty(len(first), "gene", "reorder_genes(drop_omitted_genes=True)")
            new_order = first
        else:
            rest = np.setdiff1d(np.arange(self.nb_genes), first, assume_unique=False)
            new_order = np.concatenate([first, rest]).astype(np.int64)
        self._subset_gene_axis(new_order)

    def genes_to_index(self, genes: Union[List[str], List[int], np.ndarray], on: str = None) -> np.ndarray:
        """Indices of ``genes`` given by their ``on`` attribute (``gene_names`` by default).

        Integers are returned as they are (after a range check).

        Parameters
        ----------
        genes
            Gene names (or values of ``on``), or integer indices.
        on
            Gene attribute to look the genes up in.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(len(genes),)``.

        Raises
        ------
        ValueError
            If a gene is unknown or an index out of range.
        """
        genes = np.asarray(genes)
        if genes.size and np.issubdtype(genes.dtype, np.integer):
            return resolve_index(genes, self.nb_genes, "genes", "genes")
        on = "gene_names" if on is None else on
        values = getattr(self, on, None)
        if values is None:
            raise ValueError(f"The dataset has no gene attribute {on!r} to look genes up in.")
        lookup = {}
        for index, name in enumerate(np.asarray(values).tolist()):
            lookup.setdefault(name, index)
        missing = [g for g in genes.tolist() if g not in lookup]
        if missing:
            raise GeneNotFoundError(f"{len(missing)} gene(s) not found in {on}: {missing[:5]}")
        return np.asarray([lookup[g] for g in genes.tolist()], dtype=np.int64)
