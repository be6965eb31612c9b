"""Intervals over replicates and bootstrap correlations: small pure functions on top of scipy.stats.

Every interval carries its level, its method and the n it rests on, so a table or a figure can
say what it shows. Means over replicates use Student's t (``scipy.stats.t.interval``).
Statistics that pool the iterations of several replicate chains (a trend slope, Fig. 2b's r)
resample whole chains (``chain_bootstrap``), which the findings and figures use;
``pearson_bootstrap`` (a paired bootstrap of points, BCa unless told otherwise) is for points that
are independent, which the points of a few chains are not. ``holm`` adjusts a family of p-values and
``replicates_for_power`` sizes the study that would decide. numpy, scipy and pandas only: the jobs
that use this must start fast.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
T_METHOD = "Student t over replicates"
BOOTSTRAP_METHOD = "BCa"
N_RESAMPLES = 9999  # scipy.stats.bootstrap's default
CHAIN_RESAMPLES = 1999  # the chain bootstrap estimates a standard error, not tail quantiles: 2k resamples suffice
CHAIN_METHOD = "chain bootstrap"


@dataclass(frozen=True)
class Interval:
    """A mean with its Student t interval; low and high are NaN when n < 2."""

    mean: float
    sd: float
    n: int
    low: float
    high: float
    level: float = LEVEL
    method: str = T_METHOD

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided one-sample t-test of mean = null, the test this interval inverts (NaN when n < 2;
        with sd = 0, 0 when the mean differs from the null and 1 when it equals it)."""
        if self.n < 2 or not np.isfinite(self.sd):
            return math.nan
        if self.sd == 0:
            return 1.0 if self.mean == null else 0.0
        t = (self.mean - null) / (self.sd / math.sqrt(self.n))
        return float(2 * stats.t.sf(abs(t), self.n - 1))

    @property
    def spread(self) -> float:
        """The sd of one replicate's value, on the scale the test works in (for power)."""
        return self.sd


@dataclass(frozen=True)
class Correlation:
    """A Pearson r (or a statistic of several r) with its bootstrap interval over paired points."""

    estimate: float
    p_value: float
    n: int
    low: float
    high: float
    level: float
    method: str


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Mean of the finite values with its two-sided Student t interval (n - 1 degrees of freedom).

    Non-finite values are left out and n counts what remains. With n < 2 there is no spread to
    estimate, so low and high are NaN. Identical values (sd = 0) give the zero-width interval
    [mean, mean] that the formula gives; scipy returns NaN for a zero scale.
    """
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1, math.nan, math.nan, level)
    sd = float(x.std(ddof=1))
    if sd == 0:
        return Interval(mean, 0.0, n, mean, mean, level)
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Interval(mean, sd, n, float(low), float(high), level)


def summary(tidy: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Mean, sd, n and the Student t interval over replicates of every value of the tidy table.

    One row per combination of the table's other identifying columns (dataset × run × iteration ×
    metric × feature_extractor, with the run's settings alongside). Missing settings (tau0 of a
    run without Threshold Decay) stay in the key as NaN rather than dropping the row.
    """
    keys = [c for c in tidy.columns if c not in ("replicate", "value")]
    finite = tidy.assign(value=pd.to_numeric(tidy["value"], errors="coerce"))
    finite = finite[np.isfinite(finite["value"])]
    grouped = finite.groupby(keys, dropna=False, sort=True)["value"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    n = out["n"].to_numpy()
    mean = out["mean"].to_numpy(float)
    sd = out["sd"].to_numpy(float)
    low = np.full(len(out), np.nan)
    high = np.full(len(out), np.nan)
    spread = (n >= 2) & (sd > 0)
    if spread.any():
        low[spread], high[spread] = stats.t.interval(level, n[spread] - 1, loc=mean[spread],
                                                     scale=sd[spread] / np.sqrt(n[spread]))
    flat = (n >= 2) & (sd == 0)  # as in t_interval: a zero-width interval, not scipy's NaN
    low[flat] = high[flat] = mean[flat]
    return out.assign(ci_low=low, ci_high=high, level=level, method=T_METHOD)


def slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """The OLS slope of y on x (scipy.stats.linregress) over the pairs where both are finite;
    NaN when fewer than two distinct x remain."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if len(np.unique(x[keep])) < 2:
        return math.nan
    return float(stats.linregress(x[keep], y[keep]).slope)


def bootstrap_interval(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], *, seed: int,
                       n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                       method: str = BOOTSTRAP_METHOD) -> tuple[float, float]:
    """scipy.stats.bootstrap over paired points (one resample draws whole rows of ``data``).

    ``statistic(*data, axis=-1)`` must be vectorized. A resample whose points are all equal has no
    correlation (NaN, with a warning from scipy): the warnings are silenced here, and an interval
    that such resamples leave undefined comes back as NaN, which callers read as too little data.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=n_resamples,
                              confidence_level=level, method=method, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _r(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.pearsonr(x, y, axis=axis).statistic


def _method(n: int, n_resamples: int, level: float, method: str, seed: int) -> str:
    return (f"{method} bootstrap {level:.0%} interval (scipy.stats.bootstrap, paired, {n_resamples} resamples, "
            f"seed {seed}) over n = {n} points")


def pearson_bootstrap(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, seed: int,
                      n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                      method: str = BOOTSTRAP_METHOD) -> Correlation:
    """Pearson r and its p-value (scipy.stats.pearsonr) with a paired bootstrap interval.

    Pairs where either value is not finite are left out. Fewer than three points leave r or its
    interval undefined (NaN).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    text = _method(n, n_resamples, level, method, seed)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(math.nan, math.nan, n, math.nan, math.nan, level, text)
    result = stats.pearsonr(x, y)
    low, high = bootstrap_interval((x, y), _r, seed=seed, n_resamples=n_resamples, level=level, method=method)
    return Correlation(float(result.statistic), float(result.pvalue), n, low, high, level, text)


def pearson_gap(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, *, seed: int,
                n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                method: str = BOOTSTRAP_METHOD) -> Correlation:
    """|r(x1, y1)| - |r(x2, y2)| over the same points, with a paired bootstrap interval: each
    resample draws whole points, so both correlations see the same resampled points.

    How much more strongly one property tracks an outcome than another does (Fig. 2b vs 2c);
    p_value is NaN (no test is attached to the gap).
    """
    arrays = [np.asarray(a, dtype=float) for a in (x1, y1, x2, y2)]
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
    arrays = [a[keep] for a in arrays]
    n = int(keep.sum())
    text = _method(n, n_resamples, level, method, seed)
    if n < 3 or any(np.ptp(a) == 0 for a in arrays):
        return Correlation(math.nan, math.nan, n, math.nan, math.nan, level, text)

    def gap(a, b, c, d, axis=-1):
        return np.abs(_r(a, b, axis)) - np.abs(_r(c, d, axis))

    low, high = bootstrap_interval(tuple(arrays), gap, seed=seed, n_resamples=n_resamples, level=level,
                                   method=method)
    return Correlation(float(gap(*arrays)), math.nan, n, low, high, level, text)


# ---------------------------------------------------------------------------------------------
# Statistics that pool the iterations of several replicate chains


def pooled_slope(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of y on x over points weighted by w (shape (points,) or (resamples, points)).

    An integer weight is a point's multiplicity, so the slope equals the slope over the points
    repeated that many times: a resample of whole chains is a weight per point.
    """
    s = w.sum(-1)
    mx, my = (w @ x) / s, (w @ y) / s
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((w @ (x * y)) / s - mx * my) / ((w @ (x * x)) / s - mx**2)


def pooled_r(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of x and y over points weighted by w (see ``pooled_slope``)."""
    s = w.sum(-1)
    mx, my = (w @ x) / s, (w @ y) / s
    sxy = (w @ (x * y)) / s - mx * my
    sxx = (w @ (x * x)) / s - mx**2
    syy = (w @ (y * y)) / s - my**2
    with np.errstate(invalid="ignore", divide="ignore"):
        return sxy / np.sqrt(sxx * syy)


@dataclass(frozen=True)
class ChainInterval:
    """A statistic of pooled points with its chain-bootstrap interval.

    ``se`` is the standard error on the scale the interval is formed on (Fisher's z = atanh r when
    ``fisher``), ``chains`` the number of replicate chains G (the interval has G − 1 degrees of
    freedom) and ``points`` the number of pooled points.
    """

    estimate: float
    low: float
    high: float
    se: float
    chains: int
    points: int
    level: float
    method: str
    fisher: bool = False

    def _scale(self, v: float) -> float:
        return float(np.arctanh(np.clip(v, -1 + 1e-15, 1 - 1e-15))) if self.fisher else float(v)

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided test of statistic = null that this interval inverts: (f(estimate) − f(null)) / se
        against Student's t with G − 1 degrees of freedom (f = atanh for r, identity otherwise)."""
        if self.chains < 2 or not (np.isfinite(self.se) and np.isfinite(self.estimate)):
            return math.nan
        gap = self._scale(self.estimate) - self._scale(null)
        if self.se == 0:
            return 1.0 if gap == 0 else 0.0
        return float(2 * stats.t.sf(abs(gap) / self.se, self.chains - 1))

    @property
    def spread(self) -> float:
        """The sd of one chain's contribution implied by the standard error (se·√G), for power."""
        return self.se * math.sqrt(self.chains) if self.chains >= 2 else math.nan

    def effect(self, null: float = 0.0) -> float:
        """estimate − null on the scale of the test (Fisher's z for r)."""
        return self._scale(self.estimate) - self._scale(null)


def chain_bootstrap(chains: Sequence | np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *, seed: int,
                    n_resamples: int = CHAIN_RESAMPLES, level: float = LEVEL, fisher: bool = False,
                    what: str = "", bounds: tuple[float, float] = (-math.inf, math.inf)) -> ChainInterval:
    """A statistic of pooled points with an interval that resamples whole replicate chains.

    ``chains`` labels each point with its chain (a replicate); ``statistic(w)`` takes point weights
    of shape (resamples, points) and returns one value per row (``pooled_slope``, ``pooled_r``, or
    any smooth statistic of weighted points). A resample draws G chains with replacement from the G
    chains and weights each point by how often its chain was drawn.

    Why whole chains: successive iterations of one replicate are one chain of the loop, each
    D_n built from the last, so its points share the chain's history and are not independent; the
    replicates are. Resampling points would treat 3 chains × 8 iterations as 24 independent
    draws and give too narrow an interval. Resampling chains keeps whatever dependence lies within
    a chain (Cameron, Gelbach & Miller 2008, the cluster bootstrap).

    Why a standard error and Student's t rather than percentiles: with G = 3 chains there are only
    10 distinct resamples, and a percentile interval covers the truth about 75 % of the time. The
    interval is f(estimate) ± t_{G−1} · se, where se is the resamples' sd times √(G/(G−1)): for a
    mean of per-chain values the ideal bootstrap variance is (G−1)/G · s²/G, so this recovers s²/G
    and the interval is then Student's, exact for normal chains (Cameron & Miller 2015 advise the
    G − 1 reference for few clusters). f is Fisher's z (atanh) for a correlation (``fisher``), so
    the interval stays within (−1, 1). tests/test_calibration.py measures the coverage by
    simulation. With fewer than 2 chains, or a statistic undefined on the points, the interval is
    NaN: no interval can be formed. ``bounds``: the range the statistic can take (a difference of
    two |r| lies in [−1, 1]); the interval is clipped to it, the p-value is not.
    """
    labels = np.unique(np.asarray(chains), return_inverse=True)[1].ravel()
    g, points = int(labels.max()) + 1 if len(labels) else 0, len(labels)
    text = (f"{CHAIN_METHOD} of {what or 'the pooled statistic'}: whole replicate chains resampled ({n_resamples} "
            f"resamples, seed {seed}), se × √(G/(G−1)) with Student t, G − 1 df"
            f"{' on Fisher z' if fisher else ''}, {level:.0%}, G = {g} chains, {points} points")
    with np.errstate(all="ignore"):  # a resample may leave the statistic undefined (NaN): left out below
        estimate = float(statistic(np.ones((1, points)))[0]) if points else math.nan
    nan = ChainInterval(estimate, math.nan, math.nan, math.nan, g, points, level, text, fisher)
    if g < 2 or not np.isfinite(estimate):
        return nan
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(g, np.full(g, 1 / g), size=n_resamples)
    with np.errstate(all="ignore"):
        values = np.asarray(statistic(counts[:, labels].astype(float)), dtype=float)
    if fisher:
        values = np.arctanh(np.clip(values, -1 + 1e-15, 1 - 1e-15))
    values = values[np.isfinite(values)]
    if len(values) < n_resamples / 2:  # most resamples leave the statistic undefined
        return nan
    se = float(values.std(ddof=1) * math.sqrt(g / (g - 1)))
    centre = float(np.arctanh(np.clip(estimate, -1 + 1e-15, 1 - 1e-15))) if fisher else estimate
    half = float(stats.t.ppf(0.5 + level / 2, g - 1)) * se
    low, high = centre - half, centre + half
    if fisher:
        low, high = math.tanh(low), math.tanh(high)
    low, high = max(low, bounds[0]), min(high, bounds[1])
    return ChainInterval(estimate, low, high, se, g, points, level, text, fisher)


# ---------------------------------------------------------------------------------------------
# A family of tests, and the study that would decide


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): the i-th smallest of m becomes
    max over j ≤ i of min(1, (m − j + 1) · p_(j)). Rejecting where the adjusted p < α keeps the
    family-wise error at most α whatever the dependence between the tests. NaN entries are no test:
    they stay NaN and do not count in m."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def t_power(n: int, effect: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample (paired) t-test with n replicates when the true mean
    difference is ``effect`` and one replicate's sd is ``sd``: the noncentral t with n − 1
    degrees of freedom and noncentrality effect/sd·√n beyond ±t_{1−α/2, n−1}."""
    df, nc = n - 1, effect / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if not np.isfinite(power):  # scipy's nct gives NaN far in its tails: the normal limit there
        power = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return power


def replicates_for_power(effect: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                         most: int = 1000) -> float:
    """The fewest replicates n ≥ 2 at which a paired t-test of an effect this large with this
    spread rejects with the given power (``t_power``); inf when even ``most`` would not (or the
    effect is 0), NaN when effect or sd is not a finite number."""
    if not (np.isfinite(effect) and np.isfinite(sd)) or sd < 0:
        return math.nan
    if effect == 0:
        return math.inf
    if sd == 0:
        return 2.0
    if t_power(most, effect, sd, alpha) < power:
        return math.inf
    low, high = 2, most  # power rises with n: bisect for the first n that reaches it
    if t_power(low, effect, sd, alpha) >= power:
        return float(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if t_power(mid, effect, sd, alpha) >= power else (mid, high)
    return float(high)
