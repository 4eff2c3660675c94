"""Bayes-factor differential expression as pure functions of posterior scale samples.

Nothing here knows about models or posteriors: the functions take arrays of normalised-expression
samples (rows are posterior samples, columns are genes or other features), or a sampling callable,
and return arrays, dictionaries or tables.
:class:`~scvi.inference._posterior.differential.DifferentialExpressionMixin` draws the samples.

The legacy helpers ``pairs_sampler``, ``credible_intervals``, ``describe_continuous_distrib`` and
``save_cluster_xlsx`` are re-exported by :mod:`scvi.inference.posterior_utils`.
"""
from ._blocks import Block, Spec, chunk_rows, fill_rows, one_vs_all_tables, reduce_blocks
from ._io import save_cluster_xlsx
from ._options import (
    DE_MODES,
    as_cell_indices,
    check_credible_levels,
    check_mode,
    check_positive_int,
    cluster_masks,
    log_fold_change,
    plan_batches,
    resolve_change_fn,
    resolve_m1_domain_fn,
)
from ._stats import (
    EPS,
    PairStatistics,
    credible_intervals,
    de_table,
    describe_continuous_distrib,
    describe_rows,
    hpd_from_sorted_rows,
    iter_pair_slices,
    pairs_sampler,
    weighted_group_means,
)

__all__ = [
    "Block",
    "DE_MODES",
    "EPS",
    "PairStatistics",
    "Spec",
    "as_cell_indices",
    "check_credible_levels",
    "check_mode",
    "check_positive_int",
    "chunk_rows",
    "cluster_masks",
    "credible_intervals",
    "de_table",
    "describe_continuous_distrib",
    "describe_rows",
    "fill_rows",
    "hpd_from_sorted_rows",
    "iter_pair_slices",
    "log_fold_change",
    "one_vs_all_tables",
    "pairs_sampler",
    "plan_batches",
    "reduce_blocks",
    "resolve_change_fn",
    "resolve_m1_domain_fn",
    "save_cluster_xlsx",
    "weighted_group_means",
]
