"""Bayes-factor differential expression of a posterior (issue 5).

The algorithm reads the model only through ``self.get_sample_scale`` (after
``self.update_sampler_indices``), ``self.gene_dataset`` and ``self.indices``, so every posterior
type reuses it; a posterior with other features (``TotalPosterior``: genes then proteins)
overrides the two hooks :meth:`DifferentialExpressionMixin._de_feature_names` and
:meth:`DifferentialExpressionMixin._de_raw_properties`.

Samples are drawn and reduced in minibatches (see :mod:`scvi.inference._differential`): a cell
drawn ``m`` times is encoded once and decoded ``m`` times, and ``one_vs_all_degenes`` shares one
pool of samples between the "rest of the cells" groups of all clusters instead of drawing a fresh
complement for each cluster. Every comparison keeps the original's distribution: both groups are
``n_samples`` independent draws of (uniform cell of the group, posterior sample of its scale).
"""
import contextlib
import functools
import itertools
import inspect
import logging
import os
import warnings
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch

from scvi._utils import check_random_state, track
from scvi.inference._differential import (
    Block,
    Spec,
    as_cell_indices,
    check_credible_levels,
    check_mode,
    check_positive_int,
    chunk_rows,
    cluster_masks,
    de_table,
    fill_rows,
    iter_pair_slices,
    one_vs_all_tables,
    plan_batches,
    reduce_blocks,
    resolve_change_fn,
    resolve_m1_domain_fn,
    save_cluster_xlsx,
)

logger = logging.getLogger(__name__)

Selection = Union[List[bool], List[int], np.ndarray]


class DifferentialExpressionMixin:
    """Differential-expression methods of :class:`~scvi.inference.posterior.Posterior`."""

    # ------------------------------------------------------------------ hooks (overridable)
    def _de_feature_names(self) -> np.ndarray:
        """Names of the columns of the scale samples (the index of the result tables)."""
        return np.asarray(self.gene_dataset.gene_names)

    def _de_raw_properties(self, idx1, idx2) -> Dict[str, np.ndarray]:
        """Raw-count statistics of two groups of cells, each of shape ``(n_features,)``."""
        mean1, mean2, nonz1, nonz2, norm_mean1, norm_mean2 = self.gene_dataset.raw_counts_properties(idx1, idx2)
        return dict(
            raw_mean1=mean1,
            raw_mean2=mean2,
            non_zeros_proportion1=nonz1,
            non_zeros_proportion2=nonz2,
            raw_normalized_mean1=norm_mean1,
            raw_normalized_mean2=norm_mean2,
        )

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def scale_sampler(
        self,
        selection: Selection,
        n_samples: Optional[int] = 5000,
        n_samples_per_cell: Optional[int] = None,
        batchid: Optional[Union[List[int], np.ndarray]] = None,
        use_observed_batches: Optional[bool] = False,
        give_mean: Optional[bool] = False,
        **kwargs,
    ) -> dict:
        """Sample the posterior scale of random cells of a selection.

        Parameters
        ----------
        selection
            Boolean mask over the dataset's cells, or dataset indices of the cells to sample from.
        n_samples
            Number of samples in total, split evenly over the batches (fill either
            ``n_samples`` or ``n_samples_per_cell``).
        n_samples_per_cell
            Samples per selected cell (used when ``n_samples`` is ``None``).
        batchid
            Batches to decode the cells in (default: all batches).
        use_observed_batches
            Decode each cell in its own batch (exclusive with ``batchid``).
        give_mean
            Return the mean over the samples.
        **kwargs
            Other keyword arguments of ``get_sample_scale``.

        Returns
        -------
        dict
            ``scale``: samples, shape ``(n_samples, n_features)`` (``(n_features,)`` with
            ``give_mean``); ``batch``: the batch each sample was decoded in, shape
            ``(n_samples,)`` (``nan`` for observed batches).
        """
        if selection is None:
            raise ValueError("selections should be a list of cell subsets indices")
        cells = self._de_cells(selection, "selection")
        if use_observed_batches:
            if batchid is not None:
                raise ValueError("Unconsistent batch policy: give `batchid` or use_observed_batches=True, not both")
            batches = [None]
        else:
            batches, _, _ = plan_batches(batchid, batchid, False, self.gene_dataset.n_batches)
        if n_samples is None:
            n_samples = 5000 if n_samples_per_cell is None else int(n_samples_per_cell) * len(cells)
        elif n_samples_per_cell is not None:
            warnings.warn("n_samples and n_samples_per_cell were provided. Ignoring n_samples_per_cell", stacklevel=2)
        n_per_batch = self._per_batch(n_samples, len(batches))
        rng = check_random_state(None)
        scales = [self._fresh_samples(cells, b, n_per_batch, rng, **kwargs) for b in batches]
        batch_ids = [np.full(len(s), np.nan if b is None else b, dtype=float) for s, b in zip(scales, batches)]
        scales = np.concatenate(scales)
        if give_mean:
            scales = scales.mean(0)
        return dict(scale=scales, batch=np.concatenate(batch_ids))

    def _fresh_samples(self, cells: np.ndarray, batch, n: int, rng: np.random.Generator, **kwargs) -> np.ndarray:
        """``n`` samples ``(n, n_features)``: uniform draws (with replacement) of ``cells``, one
        posterior sample of the scale each, decoded in ``batch``."""
        chunks = self._fresh_chunks(cells, batch, n, rng, **kwargs)
        return fill_rows(chunks, n) if n else np.zeros((0, len(self._de_feature_names())), np.float32)

    def _fresh_chunks(
        self, cells: np.ndarray, batch, n: int, rng: np.random.Generator, **kwargs
    ) -> Iterator[np.ndarray]:
        """The samples of :meth:`_fresh_samples` as minibatches (rows grouped by cell)."""
        return self._iter_scales(rng.choice(cells, size=n), batch, **kwargs)

    def _iter_scales(self, draws: np.ndarray, batch, **kwargs) -> Iterator[np.ndarray]:
        """Scale samples for ``draws`` (dataset indices, repeats allowed), grouped by cell.

        A cell drawn ``m`` times is encoded once and gets ``m`` posterior samples (when
        ``get_sample_scale`` takes ``n_samples``); otherwise every draw is a separate row.
        """
        if len(draws) == 0:
            return
        step = chunk_rows(len(self._de_feature_names()))
        if not self._multi_sample_scales():
            for rows in iter_pair_slices(len(draws), step):
                yield self._scales_of(draws[rows], batch, 1, **kwargs)
            return
        cells, counts = np.unique(draws, return_counts=True)
        for m in np.unique(counts):
            group = cells[counts == m]
            per_call = max(1, step // int(m))
            for start in range(0, len(group), per_call):
                yield self._scales_of(group[start : start + per_call], batch, int(m), **kwargs)

    def _multi_sample_scales(self) -> bool:
        params = inspect.signature(self.get_sample_scale).parameters
        return "n_samples" in params and "return_mean" in params

    def _scales_of(self, cells: np.ndarray, batch, n_per_cell: int, **kwargs) -> np.ndarray:
        """``n_per_cell`` scale samples of each of ``cells``, shape ``(len(cells) * n_per_cell, n_features)``."""
        kwargs.pop("return_mean", None)
        if n_per_cell > 1:
            kwargs.update(n_samples=n_per_cell, return_mean=False)
            if "gene_list" in kwargs:
                kwargs.setdefault("return_df", False)
        with self._restored_loader():
            self.update_sampler_indices(cells)
            scales = np.asarray(self.get_sample_scale(transform_batch=batch, **kwargs))
        if scales.ndim == 2:
            return scales
        n = len(cells)
        if scales.shape[:2] == (n_per_cell, n):  # (samples, cells, features)
            return scales.reshape(-1, scales.shape[-1])
        if scales.shape[0] == n and scales.shape[-1] == n_per_cell:  # (cells, features, samples)
            return np.moveaxis(scales, -1, 1).reshape(-1, scales.shape[1])
        raise ValueError(f"get_sample_scale returned an array of unexpected shape {scales.shape}")

    @contextlib.contextmanager
    def _restored_loader(self):
        """Give back the data loader (and its options) the posterior had before."""
        loader = getattr(self, "data_loader", None)
        loader_kwargs = dict(getattr(self, "data_loader_kwargs", {}) or {})
        try:
            yield
        finally:
            self.data_loader = loader
            if hasattr(self, "data_loader_kwargs"):
                self.data_loader_kwargs = loader_kwargs

    # ------------------------------------------------------------------ input handling
    def _de_cells(self, selection: Selection, name: str) -> np.ndarray:
        return as_cell_indices(selection, len(self.gene_dataset), name)

    @staticmethod
    def _per_batch(n_samples, n_batches: int) -> int:
        n_samples = check_positive_int(n_samples, "n_samples")
        n_per_batch = int(n_samples / n_batches)
        if n_per_batch == 0:
            warnings.warn("very small sample size, please consider increasing `n_samples`", UserWarning, stacklevel=3)
            n_per_batch = 2
        return n_per_batch

    @staticmethod
    def _de_spec(mode, use_permutation, M_permutation, change_fn, m1_domain_fn, delta, cred_interval_lvls) -> Spec:
        mode = check_mode(mode)
        if use_permutation:
            M_permutation = check_positive_int(M_permutation, "M_permutation")
        if mode == "change":
            change_fn = resolve_change_fn(change_fn)
            m1_domain_fn = resolve_m1_domain_fn(m1_domain_fn, delta)
        levels = check_credible_levels(cred_interval_lvls)
        return Spec(mode, change_fn, m1_domain_fn, levels, bool(use_permutation), M_permutation)

    def _warn_if_not_all_cells(self):
        if not np.array_equal(np.sort(self.indices), np.arange(len(self.gene_dataset))):
            logger.warning("Differential expression requires a Posterior object created with all indices.")

    # ------------------------------------------------------------------ public API
    @torch.no_grad()
    def get_bayes_factors(
        self,
        idx1: Selection,
        idx2: Selection,
        mode: Optional[str] = "vanilla",
        batchid1: Optional[Union[List[int], np.ndarray]] = None,
        batchid2: Optional[Union[List[int], np.ndarray]] = None,
        use_observed_batches: Optional[bool] = False,
        n_samples: int = 5000,
        use_permutation: bool = False,
        M_permutation: int = 10000,
        change_fn: Optional[Union[str, Callable]] = None,
        m1_domain_fn: Optional[Callable] = None,
        delta: Optional[float] = 0.5,
        cred_interval_lvls: Optional[Union[List[float], np.ndarray]] = None,
        **kwargs,
    ) -> Dict[str, np.ndarray]:
        r"""Bayesian differential expression between two groups of cells.

        ``mode="vanilla"`` [Lopez18]_ tests :math:`M_1: h_1 > h_2` against
        :math:`M_2: h_1 \leq h_2` and reports :math:`\log p(M_1) / p(M_2)`. ``mode="change"``
        [Boyeau19]_ computes an effect size :math:`r` = ``change_fn(h1, h2)`` (default base-2
        log fold change) and the probability that it falls in the DE region (``m1_domain_fn``,
        default :math:`|r| \geq \delta`).

        Both groups are sampled ``n_samples`` times (uniform cell of the group, posterior sample
        of its normalised expression), split evenly over batches. Batch configurations:

        1. ``use_observed_batches=True``: each cell is decoded in its own batch;
        2. ``set(batchid1) == set(batchid2)`` (or both ``None``: all batches): both groups are
           decoded in each batch and pairs are formed within each batch;
        3. disjoint ``batchid1`` and ``batchid2``: pairs ignore batches.

        Other configurations (different sets that intersect) run as 3 with a warning.

        Parameters
        ----------
        idx1, idx2
            Cells of group 1 and 2: boolean masks over the dataset, or dataset indices.
        mode
            ``"vanilla"`` or ``"change"``.
        batchid1, batchid2
            Batches each group is decoded in (default: all batches).
        use_observed_batches
            Decode cells in their observed batch (exclusive with ``batchid1``/``batchid2``).
        n_samples
            Posterior samples per group.
        use_permutation
            Compare ``M_permutation`` random pairs of samples instead of ``n_samples`` aligned pairs.
        M_permutation
            Number of random pairs (``use_permutation=True``).
        change_fn
            ``"log-fold"`` (default) or a function of the two scale arrays.
        m1_domain_fn
            Indicator function of the effect sizes inducing DE (default ``|r| >= delta``).
        delta
            Half-width of the no-DE region of the effect size (change mode).
        cred_interval_lvls
            Levels of credible intervals of the effect size (change mode).
        **kwargs
            Other keyword arguments of ``get_sample_scale``.

        Returns
        -------
        dict
            Arrays of shape ``(n_features,)``. Vanilla: ``proba_m1``, ``proba_m2``,
            ``bayes_factor``, ``scale1``, ``scale2``. Change: ``proba_de``, ``proba_not_de``,
            ``bayes_factor``, ``scale1``, ``scale2``, ``lfc_mean``, ``lfc_median``, ``lfc_std``,
            ``lfc_min``, ``lfc_max`` and ``lfc_confidence_interval_{level}_min``/``_max``.
        """
        spec = self._de_spec(mode, use_permutation, M_permutation, change_fn, m1_domain_fn, delta, cred_interval_lvls)
        cells1, cells2 = self._de_cells(idx1, "idx1"), self._de_cells(idx2, "idx2")
        batches1, batches2, same = plan_batches(batchid1, batchid2, use_observed_batches, self.gene_dataset.n_batches)
        self._warn_if_not_all_cells()
        rng = check_random_state(None)
        if same:
            n_per_batch = self._per_batch(n_samples, len(batches1))
            n_perm = max(1, spec.M_permutation // len(batches1)) if spec.use_permutation else 0
            plans = [([b], [b], n_per_batch, n_per_batch, n_perm) for b in batches1]
        else:
            n1, n2 = self._per_batch(n_samples, len(batches1)), self._per_batch(n_samples, len(batches2))
            plans = [(batches1, batches2, n1, n2, spec.M_permutation)]
        blocks = []
        for b1, b2, n1, n2, n_perm in plans:
            chunks1 = itertools.chain.from_iterable(self._fresh_chunks(cells1, b, n1, rng, **kwargs) for b in b1)
            samples2 = np.concatenate([self._fresh_samples(cells2, b, n2, rng, **kwargs) for b in b2])
            blocks.append(Block(chunks1, n1 * len(b1), samples2, None, n_perm))
        return reduce_blocks(blocks, spec, rng)

    @torch.no_grad()
    def differential_expression_score(
        self,
        idx1: Selection,
        idx2: Selection,
        mode: Optional[str] = "vanilla",
        batchid1: Optional[Union[List[int], np.ndarray]] = None,
        batchid2: Optional[Union[List[int], np.ndarray]] = None,
        use_observed_batches: Optional[bool] = False,
        n_samples: int = 5000,
        use_permutation: bool = False,
        M_permutation: int = 10000,
        all_stats: bool = True,
        change_fn: Optional[Union[str, Callable]] = None,
        m1_domain_fn: Optional[Callable] = None,
        delta: Optional[float] = 0.5,
        cred_interval_lvls: Optional[Union[List[float], np.ndarray]] = None,
        **kwargs,
    ) -> pd.DataFrame:
        """Differential expression between two groups of cells, as a table.

        Runs :meth:`get_bayes_factors` (see it for the modes, batch configurations and
        parameters) and adds raw-count statistics of both groups.

        Parameters
        ----------
        idx1, idx2, mode, batchid1, batchid2, use_observed_batches, n_samples, use_permutation,
        M_permutation, change_fn, m1_domain_fn, delta, cred_interval_lvls, **kwargs
            See :meth:`get_bayes_factors`.
        all_stats
            Add ``raw_mean1/2``, ``non_zeros_proportion1/2``, ``raw_normalized_mean1/2``.

        Returns
        -------
        pandas.DataFrame
            One row per gene (indexed by gene name) with the columns of :meth:`get_bayes_factors`
            (then the raw statistics), sorted by ``proba_de`` (change mode) or
            ``bayes_factor`` (vanilla mode), descending.
        """
        info = self.get_bayes_factors(
            idx1=idx1,
            idx2=idx2,
            mode=mode,
            batchid1=batchid1,
            batchid2=batchid2,
            use_observed_batches=use_observed_batches,
            n_samples=n_samples,
            use_permutation=use_permutation,
            M_permutation=M_permutation,
            change_fn=change_fn,
            m1_domain_fn=m1_domain_fn,
            delta=delta,
            cred_interval_lvls=cred_interval_lvls,
            **kwargs,
        )
        if all_stats is True:
            info = {**info, **self._de_raw_properties(np.asarray(idx1), np.asarray(idx2))}
        return de_table(info, self._de_feature_names(), mode)

    @torch.no_grad()
    def differential_expression_stats(self, M_sampling: int = 100) -> Tuple:
        """Scale samples of every cell with its label (deprecated).

        Parameters
        ----------
        M_sampling
            Posterior samples per cell.

        Returns
        -------
        tuple
            ``(px_scales, all_labels)``: scales of shape ``(n_cells * M_sampling, n_genes)``
            (the samples of a cell are consecutive) and labels of shape ``(n_cells * M_sampling,)``.
        """
        warnings.warn(
            "differential_expression_stats() is deprecated; use differential_expression_score() or get_sample_scale().",
            DeprecationWarning,
            stacklevel=2,
        )
        M_sampling = check_positive_int(M_sampling, "M_sampling")
        posterior = self.sequential()
        if M_sampling == 1:
            scales = np.asarray(posterior.get_sample_scale())
        else:
            scales = np.asarray(posterior.get_sample_scale(n_samples=M_sampling, return_mean=False))
            scales = scales.transpose(1, 0, 2).reshape(-1, scales.shape[-1])
        labels = np.asarray(self.gene_dataset.labels).ravel()[posterior.indices]
        return scales, np.repeat(labels, M_sampling)

    @torch.no_grad()
    def one_vs_all_degenes(
        self,
        subset: Optional[Union[List[bool], np.ndarray]] = None,
        cell_labels: Optional[Union[List, np.ndarray]] = None,
        use_observed_batches: bool = False,
        min_cells: int = 10,
        n_samples: int = 5000,
        use_permutation: bool = False,
        M_permutation: int = 10000,
        output_file: bool = False,
        mode: Optional[str] = "vanilla",
        change_fn: Optional[Union[str, Callable]] = None,
        m1_domain_fn: Optional[Callable] = None,
        delta: Optional[float] = 0.5,
        cred_interval_lvls: Optional[Union[List[float], np.ndarray]] = None,
        save_dir: str = "./",
        filename="one2all",
        **kwargs,
    ) -> tuple:
        """Differential expression of each cluster against all other cells.

        Parameters
        ----------
        subset
            Boolean mask of the cells to consider (default: all).
        cell_labels
            Cluster of each cell, shape ``(n_cells,)`` (default: the dataset's ``labels``, named
            by its ``cell_types``). Cells with a negative label are left out.
        use_observed_batches
            See :meth:`get_bayes_factors`.
        min_cells
            Clusters (and their complements) with fewer cells are skipped.
        n_samples, use_permutation, M_permutation, mode, change_fn, m1_domain_fn, delta,
        cred_interval_lvls
            See :meth:`get_bayes_factors`.
        output_file
            Also write the tables to ``save_dir/differential_expression.{filename}.xlsx`` (csv
            without openpyxl).
        save_dir, filename
            Where to write them.
        **kwargs
            Other keyword arguments of ``get_sample_scale``.

        Returns
        -------
        tuple
            ``(de_res, de_cluster)``: one table per tested cluster (as
            :meth:`differential_expression_score`, plus a ``clusters`` column) and the cluster
            names, in the order of the clusters.
        """
        spec = self._de_spec(mode, use_permutation, M_permutation, change_fn, m1_domain_fn, delta, cred_interval_lvls)
        names, membership = self._de_clusters(cell_labels, subset)
        batches = [None] if use_observed_batches else list(range(max(int(self.gene_dataset.n_batches), 1)))
        n_per_batch = self._per_batch(n_samples, len(batches))
        self._warn_if_not_all_cells()
        rng = check_random_state(None)
        de_res, de_cluster = one_vs_all_tables(
            sample=functools.partial(self._fresh_chunks, rng=rng, **kwargs),
            raw_properties=self._de_raw_properties,
            feature_names=self._de_feature_names(),
            names=names,
            membership=membership,
            min_cells=min_cells,
            spec=spec,
            batches=batches,
            n_per_batch=n_per_batch,
            rng=rng,
        )
        if output_file:
            self._save_tables(save_dir, filename, de_res, de_cluster)
        return de_res, de_cluster

    @torch.no_grad()
    def within_cluster_degenes(
        self,
        states: Union[List[bool], np.ndarray],
        cell_labels: Optional[Union[List, np.ndarray]] = None,
        min_cells: int = 10,
        batch1: Optional[Union[List[int], np.ndarray]] = None,
        batch2: Optional[Union[List[int], np.ndarray]] = None,
        use_observed_batches: bool = False,
        subset: Optional[Union[List[bool], np.ndarray]] = None,
        n_samples: int = 5000,
        use_permutation: bool = False,
        M_permutation: int = 10000,
        mode: Optional[str] = "vanilla",
        change_fn: Optional[Union[str, Callable]] = None,
        m1_domain_fn: Optional[Callable] = None,
        delta: Optional[float] = 0.5,
        cred_interval_lvls: Optional[Union[List[float], np.ndarray]] = None,
        output_file: bool = False,
        save_dir: str = "./",
        filename: str = "within_cluster",
        **kwargs,
    ) -> tuple:
        """Differential expression between two cell states inside each cluster.

        Parameters
        ----------
        states
            Boolean state of each cell, shape ``(n_cells,)``: group 1 is ``True``, group 2 ``False``.
        cell_labels
            Cluster of each cell (default: the dataset's labels named by ``cell_types``).
        min_cells
            Clusters where either state has fewer cells are skipped.
        batch1, batch2
            Batches of groups 1 and 2 (``batchid1``/``batchid2`` of :meth:`get_bayes_factors`).
        subset
            Boolean mask of the cells to consider.
        use_observed_batches, n_samples, use_permutation, M_permutation, mode, change_fn,
        m1_domain_fn, delta, cred_interval_lvls
            See :meth:`get_bayes_factors`.
        output_file, save_dir, filename
            Write the tables to ``save_dir/differential_expression.{filename}.xlsx``.
        **kwargs
            Other keyword arguments of ``get_sample_scale``.

        Returns
        -------
        tuple
            ``(de_res, de_cluster)``: one table per tested cluster (with a ``clusters`` column)
            and the cluster names.
        """
        states = np.asarray(states)
        if states.shape != (len(self.gene_dataset),):
            raise ValueError(" the length of states have to be the same as the number of cells")
        if states.dtype != bool:
            raise TypeError(f"`states` must be a boolean array; got dtype {states.dtype}")
        self._de_spec(mode, use_permutation, M_permutation, change_fn, m1_domain_fn, delta, cred_interval_lvls)
        names, membership = self._de_clusters(cell_labels, subset)
        de_res, de_cluster = [], []
        for name, in_cluster in track(list(zip(names, membership)), description="within-cluster DE"):
            idx1, idx2 = in_cluster & states, in_cluster & ~states
            if idx1.sum() < min_cells or idx2.sum() < min_cells:
                continue
            res = self.differential_expression_score(
                idx1=idx1,
                idx2=idx2,
                batchid1=batch1,
                batchid2=batch2,
                use_observed_batches=use_observed_batches,
                M_permutation=M_permutation,
                n_samples=n_samples,
                use_permutation=use_permutation,
                mode=mode,
                change_fn=change_fn,
                m1_domain_fn=m1_domain_fn,
                delta=delta,
                cred_interval_lvls=cred_interval_lvls,
                **kwargs,
            )
            res["clusters"] = np.repeat(name, len(res.index))
            de_res.append(res)
            de_cluster.append(name)
        if output_file:
            self._save_tables(save_dir, filename, de_res, de_cluster)
        return de_res, de_cluster

    # ------------------------------------------------------------------ clusters and files
    def _de_clusters(self, cell_labels, subset) -> Tuple[list, List[np.ndarray]]:
        """Cluster names and, for each, the boolean mask of its cells (within ``subset``)."""
        return cluster_masks(
            cell_labels,
            np.asarray(self.gene_dataset.labels).ravel(),
            getattr(self.gene_dataset, "cell_types", None),
            subset,
            len(self.gene_dataset),
        )

    @staticmethod
    def _save_tables(save_dir: str, filename: str, de_res: List[pd.DataFrame], de_cluster: list) -> str:
        path = os.path.join(str(save_dir), f"differential_expression.{filename}.xlsx")
        return save_cluster_xlsx(filepath=path, de_results=de_res, cluster_names=de_cluster)
