"""The pure pieces of differential expression (scvi.inference._differential), without a model."""
import builtins
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from scvi.inference._differential import (
    Block,
    PairStatistics,
    Spec,
    as_cell_indices,
    cluster_masks,
    credible_intervals,
    de_table,
    describe_continuous_distrib,
    one_vs_all_tables,
    pairs_sampler,
    plan_batches,
    reduce_blocks,
    resolve_change_fn,
    resolve_m1_domain_fn,
    save_cluster_xlsx,
    weighted_group_means,
)
from scvi.inference.posterior_utils import credible_intervals as legacy_path_credible_intervals


def _loop_hpd(samples, level):
    """Reference HPD: the narrowest window of floor(level * n) + 1 sorted samples, column by column."""
    out = []
    for column in samples.T:
        ordered = np.sort(column)
        k = int(np.floor(level * len(ordered)))
        widths = ordered[k:] - ordered[: len(ordered) - k]
        start = int(np.argmin(widths))
        out.append([ordered[start], ordered[start + k]])
    return np.array(out)


# ---------------------------------------------------------------------------- legacy helpers
def test_legacy_helpers_are_reexported():
    assert legacy_path_credible_intervals is credible_intervals
    from scvi.inference.posterior import describe_continuous_distrib as d, pairs_sampler as p, save_cluster_xlsx as s

    assert (d, p, s) == (describe_continuous_distrib, pairs_sampler, save_cluster_xlsx)


def test_pairs_sampler_without_permutation_returns_inputs():
    a, b = np.arange(5), np.arange(7)
    first, second = pairs_sampler(a, b, use_permutation=False)
    assert first is a and second is b


def test_pairs_sampler_draws_pairs_with_weights():
    a, b = np.arange(4.0), 10 + np.arange(3.0)
    first, second = pairs_sampler(a, b, M_permutation=2000, weights1=[0, 0, 1, 1], random_state=0)
    assert first.shape == second.shape == (2000,)
    assert set(np.unique(first)) == {2.0, 3.0}
    assert set(np.unique(second)) == {10.0, 11.0, 12.0}
    mixed, _ = pairs_sampler(a, b, M_permutation=2000, sanity_check_perm=True, random_state=0)
    assert mixed.min() == 0 and mixed.max() == 12  # drawn from the union


def test_pairs_sampler_needs_a_number_of_pairs():
    with pytest.raises(ValueError, match="M_permutation"):
        pairs_sampler(np.arange(3), np.arange(3), use_permutation=True, M_permutation=None)


def test_credible_intervals_match_the_window_definition_and_normal_quantiles():
    rng = np.random.default_rng(0)
    samples = rng.normal(loc=[0.0, 3.0], scale=[1.0, 2.0], size=(4000, 2))
    for level in (0.5, 0.9):
        np.testing.assert_array_equal(credible_intervals(samples, level), _loop_hpd(samples, level))
    interval = credible_intervals(samples, 0.95)
    sd = np.array([1.0, 2.0])  # the 95% HPD of a normal is mean -/+ 1.96 sd
    np.testing.assert_allclose((interval[:, 0] - [0.0, 3.0]) / sd, -1.96, atol=0.12)
    np.testing.assert_allclose((interval[:, 1] - [0.0, 3.0]) / sd, 1.96, atol=0.12)
    assert credible_intervals(samples[:, 0], 0.5).shape == (2,)
    assert credible_intervals(samples, [0.5, 0.9]).shape == (2, 2, 2)


def test_credible_intervals_reject_a_level_of_one():
    with pytest.raises(ValueError, match="Too few elements"):
        credible_intervals(np.arange(10.0), 1.0)


def test_describe_continuous_distrib_keys_and_values():
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((501, 3)).astype(np.float32)
    props = describe_continuous_distrib(torch.from_numpy(samples), credible_intervals_levels=[0.5, 0.949999])
    assert list(props) == [
        "mean",
        "median",
        "std",
        "min",
        "max",
        "confidence_interval_0.5_min",
        "confidence_interval_0.5_max",
        "confidence_interval_0.949_min",
        "confidence_interval_0.949_max",
    ]
    np.testing.assert_allclose(props["median"], np.median(samples, 0))
    np.testing.assert_allclose(props["std"], samples.std(0), rtol=1e-5)
    np.testing.assert_array_equal(props["confidence_interval_0.5_min"], _loop_hpd(samples, 0.5)[:, 0])
    plain = describe_continuous_distrib(samples[:500])
    assert list(plain) == ["mean", "median", "std", "min", "max"]
    np.testing.assert_allclose(plain["median"], np.median(samples[:500], 0))


# ---------------------------------------------------------------------------- options
def test_change_fn_and_domain_validation():
    lfc = resolve_change_fn("log-fold")
    np.testing.assert_allclose(lfc(np.array([4.0]), np.array([1.0])), [2.0])
    assert resolve_change_fn(None) is lfc
    with pytest.raises(ValueError, match="change_fn"):
        resolve_change_fn("fold")
    with pytest.raises(ValueError, match="change_fn.*2 positional"):
        resolve_change_fn(lambda x: x)
    with pytest.raises(ValueError, match="m1_domain_fn.*1 positional"):
        resolve_m1_domain_fn(lambda x, y: x, 0.5)
    with pytest.raises(ValueError, match="delta"):
        resolve_m1_domain_fn(None, -1.0)
    inside = resolve_m1_domain_fn(None, None)  # legacy default delta=0.5
    np.testing.assert_array_equal(inside(np.array([-0.6, 0.2, 0.5])), [True, False, True])


def test_plan_batches_configurations():
    assert plan_batches(None, None, False, 3) == ([0, 1, 2], [0, 1, 2], True)
    assert plan_batches([1, 0], [0, 1], False, 3) == ([0, 1], [0, 1], True)
    assert plan_batches([0], [1, 2], False, 3) == ([0], [1, 2], False)
    assert plan_batches(None, None, True, 3) == ([None], [None], False)
    with pytest.warns(UserWarning, match="non-null intersection"):
        assert plan_batches([0, 1], [1, 2], False, 3)[2] is False
    with pytest.raises(ValueError, match="Unconsistent batch policy"):
        plan_batches([0], None, True, 3)
    with pytest.raises(ValueError, match="batchid2"):
        plan_batches([0], [5], False, 3)


def test_cell_selections():
    np.testing.assert_array_equal(as_cell_indices([True, False, True], 3, "idx1"), [0, 2])
    np.testing.assert_array_equal(as_cell_indices([2, -1], 3, "idx1"), [2, 2])
    with pytest.raises(ValueError, match="boolean `idx1` must have one entry per cell"):
        as_cell_indices([True, False], 3, "idx1")
    with pytest.raises(ValueError, match="`subset` selects no cells"):
        as_cell_indices([], 3, "subset")


def test_cluster_masks_from_labels_names_and_subsets():
    names, masks = cluster_masks(None, np.array([1, 0, 1, 1]), np.array(["a", "b"]), [True, True, False, True], 4)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(masks[1], [True, False, False, True])
    names, masks = cluster_masks(["t", "b", "t", "b"], None, None, None, 4)
    assert names == ["b", "t"] and masks[0].tolist() == [False, True, False, True]
    names, masks = cluster_masks([2, -1, 2, 5], None, None, None, 4)
    assert names == [2, 5] and not any(m[1] for m in masks)
    with pytest.raises(ValueError, match="must provide cell_labels"):
        cluster_masks(None, np.zeros(4), None, None, 4)


# ---------------------------------------------------------------------------- reductions
def _spec(mode="vanilla", use_permutation=False, M=None, levels=()):
    change_fn = resolve_change_fn(None) if mode == "change" else None
    domain = resolve_m1_domain_fn(None, 0.5) if mode == "change" else None
    return Spec(mode, change_fn, domain, list(levels), use_permutation, M)


def test_pair_statistics_in_minibatches_equal_the_whole_computation():
    rng = np.random.default_rng(2)
    s1 = rng.gamma(2.0, size=(300, 4)).astype(np.float32)
    s2 = rng.gamma(2.0, size=(300, 4)).astype(np.float32) * np.array([1, 1, 4, 0.25], dtype=np.float32)
    stats = PairStatistics("change", 300, resolve_change_fn(None), resolve_m1_domain_fn(None, 1.0))
    for start in range(0, 300, 70):
        stats.add(s1[start : start + 70], s2[start : start + 70])
    out = stats.result(s1.mean(0), s2.mean(0), [0.9])
    lfc = np.log2(s1) - np.log2(s2)
    np.testing.assert_allclose(out["proba_de"], (np.abs(lfc) >= 1.0).mean(0))
    np.testing.assert_allclose(out["lfc_median"], np.median(lfc, 0))
    np.testing.assert_allclose(out["bayes_factor"], np.log(out["proba_de"] + 1e-8) - np.log(out["proba_not_de"] + 1e-8))
    assert out["lfc_mean"][2] < -1.5 and out["lfc_mean"][3] > 1.5
    vanilla = PairStatistics("vanilla", 300)
    vanilla.add(s1, s2)
    np.testing.assert_allclose(vanilla.result(s1.mean(0), s2.mean(0))["proba_m1"], (s1 > s2).mean(0))


def test_reduce_blocks_counts_pairs_and_means():
    rng = np.random.default_rng(3)
    def up():
        return Block([np.full((20, 2), 2.0), np.full((30, 2), 2.0)], 50, np.ones((40, 2)), None, 30)

    out = reduce_blocks([up(), up()], _spec(mode="change"), rng)
    np.testing.assert_allclose(out["proba_de"], 1.0)
    np.testing.assert_allclose(out["lfc_median"], 1.0)
    assert out["bayes_factor"][0] > 15
    out = reduce_blocks([up()], _spec(use_permutation=True, M=30), rng)
    np.testing.assert_allclose(out["scale1"], 2.0)
    np.testing.assert_allclose(out["scale2"], 1.0)
    # group 2 restricted to some rows; more group-1 rows than partners
    samples2 = np.vstack([np.ones((10, 2)), np.full((10, 2), 3.0)])
    block = Block([np.full((25, 2), 2.0)], 25, samples2, np.arange(10, 20), 0)
    out = reduce_blocks([block], _spec(), rng)
    np.testing.assert_allclose(out["proba_m1"], 0.0)
    np.testing.assert_allclose(out["scale2"], 3.0)


def test_one_vs_all_complements_have_the_original_composition():
    """With a fake sampler whose samples are the cluster id, the "rest" of each cluster mixes the
    other clusters in proportion to their sizes, as uniform draws of the rest of the cells do."""
    sizes = [100, 300, 600, 5]
    labels = np.repeat(np.arange(4), sizes)
    membership = [labels == k for k in range(4)]
    cluster_of = labels.astype(np.float32)
    drawn = []

    def sample(cells, batch, n):
        rng = np.random.default_rng(len(drawn))
        chosen = rng.choice(cells, size=n)
        drawn.append(n)
        values = cluster_of[chosen][:, None] + rng.normal(scale=0.01, size=(n, 1))
        samples = np.hstack([values, np.ones((n, 1))]).astype(np.float32)
        return iter([samples[: n // 2], samples[n // 2 :]])

    def raw(c1, c2):
        return dict(raw_mean1=cluster_of[c1].mean().repeat(2), raw_mean2=cluster_of[c2].mean().repeat(2))

    tables, names = one_vs_all_tables(
        sample, raw, np.array(["g0", "g1"]), ["a", "b", "c", "d"], membership, 10, _spec(), [0, 1], 2000,
        np.random.default_rng(0),
    )
    assert names == ["a", "b", "c"]  # "d" has fewer than min_cells cells
    for k, table in enumerate(tables):
        weights = np.array(sizes, dtype=float)
        weights[k] = 0
        expected = (weights * np.arange(4)).sum() / weights.sum()
        assert table.loc["g0", "scale2"] == pytest.approx(expected, abs=0.1)
        assert table.loc["g0", "raw_mean2"] == pytest.approx(expected)
        assert table.loc["g0", "scale1"] == pytest.approx(k, abs=0.01)
        assert list(table["clusters"].unique()) == [names[k]]
    # the original decodes 2 groups x 3 tested clusters x 2 batches x 2000 samples; a shared pool about half
    assert sum(drawn) < 0.55 * (2 * 3 * 2 * 2000)


def test_weighted_group_means_leaves_one_group_out():
    props = {"m": np.array([[1.0], [3.0], [5.0]])}
    np.testing.assert_allclose(weighted_group_means(props, np.array([1, 1, 2]), exclude=0)["m"], [13 / 3])


def test_de_table_sorting_and_feature_check():
    info = dict(proba_de=np.array([0.1, 0.9, 0.5]), bayes_factor=np.array([3.0, 1.0, 2.0]))
    assert list(de_table(info, ["a", "b", "c"], "change").index) == ["b", "c", "a"]
    assert list(de_table(info, ["a", "b", "c"], "vanilla").index) == ["a", "c", "b"]
    with pytest.raises(ValueError, match="feature names"):
        de_table(info, ["a", "b"], "vanilla")


# ---------------------------------------------------------------------------- files
def _tables():
    frames = [pd.DataFrame({"bayes_factor": [1.5, -2.25]}, index=["g1", "g2"]) for _ in range(2)]
    return frames, ["T/cells", "B"]


def test_save_cluster_xlsx_writes_one_sheet_per_cluster(tmp_path):
    frames, names = _tables()
    path = save_cluster_xlsx(str(tmp_path / "de.xlsx"), frames, names)
    sheets = pd.read_excel(path, sheet_name=None, index_col=0)
    assert list(sheets) == ["T_cells", "B"]
    pd.testing.assert_frame_equal(sheets["B"], frames[1])
    assert [p.name for p in tmp_path.iterdir()] == ["de.xlsx"]  # no temporary file left


def test_save_cluster_xlsx_falls_back_to_csv(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_openpyxl(name, *args, **kwargs):
        if name == "openpyxl":
            raise ImportError("no openpyxl")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openpyxl)
    frames, names = _tables()
    with pytest.warns(UserWarning, match="openpyxl"):
        path = save_cluster_xlsx(str(tmp_path / "de.xlsx"), frames, names)
    table = pd.read_csv(path, index_col=0)
    assert path.endswith("de.csv") and list(table["clusters"]) == ["T/cells", "T/cells", "B", "B"]


def test_save_cluster_xlsx_checks_lengths(tmp_path):
    frames, _ = _tables()
    with pytest.raises(ValueError, match="same length"):
        save_cluster_xlsx(str(tmp_path / "de.xlsx"), frames, ["only one"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not list(tmp_path.iterdir())
