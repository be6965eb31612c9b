"""ouroboros.stats against scipy called directly and against textbook formulas, on fixed data."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ouroboros import stats

VALUES = [2.1, 2.5, 1.9, 2.8, 2.2]


def test_t_interval_matches_scipy_and_the_textbook_formula():
    iv = stats.t_interval(VALUES)
    mean, sd, n = np.mean(VALUES), np.std(VALUES, ddof=1), len(VALUES)
    low, high = sps.t.interval(0.95, n - 1, loc=mean, scale=sd / math.sqrt(n))
    assert (iv.mean, iv.sd, iv.n) == pytest.approx((mean, sd, n))
    assert (iv.low, iv.high) == pytest.approx((low, high))
    # mean ± t_{0.975, 4} · sd / √n, with the tabulated quantile t_{0.975, 4} = 2.776445
    half = 2.7764451051977987 * sd / math.sqrt(n)
    assert (iv.low, iv.high) == pytest.approx((mean - half, mean + half))
    assert iv.level == 0.95 and "Student t" in iv.method


def test_t_interval_other_level_is_narrower():
    assert stats.t_interval(VALUES, 0.5).high - stats.t_interval(VALUES, 0.5).low < \
        stats.t_interval(VALUES).high - stats.t_interval(VALUES).low


def test_t_interval_needs_two_values():
    one = stats.t_interval([3.0])
    assert one.mean == 3.0 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high)
    none = stats.t_interval([math.nan])
    assert none.n == 0 and math.isnan(none.mean)
    # non-finite values are left out, and n counts what remains
    assert stats.t_interval([1.0, 3.0, math.nan]).n == 2


def test_identical_values_give_a_zero_width_interval():
    iv = stats.t_interval([0.5, 0.5, 0.5])
    assert (iv.low, iv.high, iv.sd) == (0.5, 0.5, 0.0)


def tidy_rows():
    base = {"dataset": "digits", "family": "digits", "dataset_size": 64, "paradigm": "replace", "selection": "all",
            "samples_per_iteration": 1, "tau0": math.nan, "decay": math.nan, "file": "metrics.json",
            "feature_extractor": "pixels"}
    rows = []
    for rep, value in enumerate([1.0, 2.0, 6.0]):
        rows.append(base | {"run": "replace", "replicate": rep, "iteration": 2, "metric": "generalization_score",
                            "value": value})
    rows.append(base | {"run": "replace", "replicate": 0, "iteration": 3, "metric": "generalization_score",
                        "value": 0.5})
    rows += [base | {"run": "thr", "selection": "threshold_decay", "tau0": 2.0, "decay": 0.5, "replicate": rep,
                     "iteration": 2, "metric": "generalization_score", "value": 4.0} for rep in range(2)]
    return pd.DataFrame(rows)


def test_summary_of_a_hand_made_table():
    out = stats.summary(tidy_rows())
    assert len(out) == 3
    assert {"mean", "sd", "n", "ci_low", "ci_high", "level", "method"} <= set(out.columns)
    assert "replicate" not in out.columns and "value" not in out.columns
    three = out[(out.run == "replace") & (out.iteration == 2)].iloc[0]
    # mean 3, sd √7, t_{0.975, 2} = 4.302653
    assert (three["mean"], three.sd, three.n) == pytest.approx((3.0, math.sqrt(7), 3))
    half = 4.302652729911275 * math.sqrt(7) / math.sqrt(3)
    assert (three.ci_low, three.ci_high) == pytest.approx((3 - half, 3 + half))
    assert three.level == 0.95 and "Student t" in three.method
    one = out[(out.run == "replace") & (out.iteration == 3)].iloc[0]
    assert one.n == 1 and math.isnan(one.ci_low)
    # a run without Threshold Decay keeps its NaN tau0 in the key rather than vanishing
    assert math.isnan(three.tau0)
    flat = out[out.run == "thr"].iloc[0]
    assert (flat.ci_low, flat.ci_high, flat.tau0) == (4.0, 4.0, 2.0)


def test_summary_agrees_with_t_interval():
    out = stats.summary(tidy_rows())
    three = out[(out.run == "replace") & (out.iteration == 2)].iloc[0]
    iv = stats.t_interval([1.0, 2.0, 6.0])
    assert (three.ci_low, three.ci_high) == pytest.approx((iv.low, iv.high))


def test_slope_is_the_ols_slope():
    assert stats.slope([1, 2, 3, 4], [1, 4, 7, 10]) == pytest.approx(3.0)
    x, y = [1, 2, 3, 4, 5], [2.0, 1.1, 0.9, 0.2, -0.4]
    assert stats.slope(x, y) == pytest.approx(sps.linregress(x, y).slope)
    assert math.isnan(stats.slope([2, 2], [1, 3]))
    assert stats.slope([1, 2, 3], [1.0, math.nan, 3.0]) == pytest.approx(1.0)


def correlated(n=40, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, 0.8 * x + rng.normal(scale=0.6, size=n)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_pearson_bootstrap_matches_scipy_called_directly(method):
    x, y = correlated()
    got = stats.pearson_bootstrap(x, y, seed=7, n_resamples=2000, method=method)
    want = sps.bootstrap((x, y), lambda a, b, axis: sps.pearsonr(a, b, axis=axis).statistic, paired=True,
                         vectorized=True, n_resamples=2000, method=method, rng=np.random.default_rng(7))
    assert (got.low, got.high) == pytest.approx((want.confidence_interval.low, want.confidence_interval.high))
    r = sps.pearsonr(x, y)
    assert (got.estimate, got.p_value, got.n) == pytest.approx((r.statistic, r.pvalue, 40))
    assert got.low < got.estimate < got.high
    assert method in got.method and "paired" in got.method and "n = 40" in got.method and got.level == 0.95


def test_pearson_bootstrap_is_reproducible_and_needs_points():
    x, y = correlated()
    assert stats.pearson_bootstrap(x, y, seed=3, n_resamples=500) == stats.pearson_bootstrap(x, y, seed=3,
                                                                                             n_resamples=500)
    few = stats.pearson_bootstrap([1.0, 2.0], [2.0, 1.0], seed=0)
    assert few.n == 2 and math.isnan(few.low) and math.isnan(few.estimate)


def test_pearson_gap_is_the_difference_of_absolute_r():
    x, y = correlated()
    z = np.random.default_rng(5).normal(size=len(x))
    gap = stats.pearson_gap(x, y, z, y, seed=0, n_resamples=2000)
    want = abs(sps.pearsonr(x, y).statistic) - abs(sps.pearsonr(z, y).statistic)
    assert gap.estimate == pytest.approx(want)
    assert gap.low < gap.estimate < gap.high and gap.low > 0


def chains_data(g=4, k=5, seed=2):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(g), k)
    x = rng.normal(size=g * k) + rng.normal(size=g)[labels]
    return labels, x, 0.7 * x + rng.normal(size=g * k)


def test_weighted_pooled_statistics_equal_the_statistic_over_repeated_points():
    labels, x, y = chains_data()
    w = np.array([2, 0, 1, 3])[labels].astype(float)
    rx, ry = np.repeat(x, w.astype(int)), np.repeat(y, w.astype(int))
    assert stats.pooled_r(w, x, y) == pytest.approx(sps.pearsonr(rx, ry).statistic)
    assert stats.pooled_slope(w, x, y) == pytest.approx(sps.linregress(rx, ry).slope)
    both = stats.pooled_r(np.stack([w, np.ones_like(w)]), x, y)
    assert both == pytest.approx([sps.pearsonr(rx, ry).statistic, sps.pearsonr(x, y).statistic])


def test_chain_bootstrap_against_a_brute_force_resampling_of_chains():
    """Draw chains with the same generator, concatenate them, compute r with scipy: the same interval."""
    labels, x, y = chains_data()
    got = stats.chain_bootstrap(labels, lambda w: stats.pooled_r(w, x, y), seed=5, n_resamples=300, fisher=True)
    rng = np.random.default_rng(5)
    counts = rng.multinomial(4, np.full(4, 0.25), size=300)
    z = []
    for c in counts:
        keep = np.concatenate([np.flatnonzero(labels == g).repeat(1) for g in range(4) for _ in range(c[g])])
        z.append(np.arctanh(sps.pearsonr(x[keep], y[keep]).statistic))
    se = np.std(z, ddof=1) * math.sqrt(4 / 3)
    centre = np.arctanh(sps.pearsonr(x, y).statistic)
    half = sps.t.ppf(0.975, 3) * se
    assert (got.low, got.high) == pytest.approx((math.tanh(centre - half), math.tanh(centre + half)))
    assert got.estimate == pytest.approx(sps.pearsonr(x, y).statistic)
    assert (got.chains, got.points, got.level) == (4, 20, 0.95) and "G = 4 chains" in got.method


def test_chain_bootstrap_of_a_balanced_slope_tends_to_the_t_interval_of_per_chain_slopes():
    labels, x, y = chains_data(g=5, k=6)
    n = np.tile(np.arange(1.0, 7.0), 5)
    y = y + 0.5 * n
    got = stats.chain_bootstrap(labels, lambda w: stats.pooled_slope(w, n, y), seed=0, n_resamples=20000)
    per_chain = [sps.linregress(n[labels == g], y[labels == g]).slope for g in range(5)]
    want = stats.t_interval(per_chain)
    assert got.estimate == pytest.approx(want.mean)
    assert (got.low, got.high) == pytest.approx((want.low, want.high), rel=0.02)


def test_chain_interval_p_value_inverts_the_interval():
    labels, x, y = chains_data(g=5)
    iv = stats.chain_bootstrap(labels, lambda w: stats.pooled_r(w, x, y), seed=1, fisher=True)
    assert iv.p_value(iv.low) == pytest.approx(0.05) and iv.p_value(iv.high) == pytest.approx(0.05)
    assert iv.p_value(iv.estimate) == pytest.approx(1.0)
    t = stats.t_interval(VALUES)
    assert t.p_value(t.low) == pytest.approx(0.05) and t.p_value(2.0) == pytest.approx(sps.ttest_1samp(VALUES, 2.0).pvalue)


def test_one_chain_gives_no_interval():
    iv = stats.chain_bootstrap(np.zeros(6), lambda w: stats.pooled_slope(w, np.arange(6.0), np.arange(6.0) ** 2), seed=0)
    assert iv.chains == 1 and math.isnan(iv.low) and math.isnan(iv.p_value()) and iv.estimate == pytest.approx(5.0)


def test_holm_against_its_definition():
    p = np.array([0.04, 0.01, math.nan, 0.03, 0.2])
    got = stats.holm(p)
    # brute force: sorted p_(1..m), adjusted_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)), m = 4 tests
    assert got[[1, 3, 0, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert math.isnan(got[2])
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0] and stats.holm([]).size == 0


@pytest.mark.parametrize("d, n", [(1.0, 10), (0.5, 34), (0.8, 15)])
def test_replicates_for_power_matches_the_tabulated_one_sample_t(d, n):
    """Cohen's table for the two-sided one-sample t at 5 % and 80 % power (G*Power agrees)."""
    assert stats.replicates_for_power(d, 1.0) == n
    assert stats.t_power(n, d, 1.0) >= 0.8 > stats.t_power(n - 1, d, 1.0)


def test_t_power_against_simulation():
    rng = np.random.default_rng(0)
    x = rng.normal(0.6, 1.0, size=(20000, 8))
    simulated = (sps.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05).mean()
    assert stats.t_power(8, 0.6, 1.0) == pytest.approx(simulated, abs=0.015)
    assert math.isinf(stats.replicates_for_power(0.0, 1.0)) and math.isinf(stats.replicates_for_power(0.01, 1.0))
