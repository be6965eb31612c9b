"""Intervals over replicates and bootstrap correlations: small pure functions on top of scipy.stats.

Every interval carries its level, its method and the n it rests on, so a table or a figure can
say what it shows. Means over replicates use Student's t (``scipy.stats.t.interval``); Pearson
correlations over pooled points use a paired bootstrap (``scipy.stats.bootstrap``, BCa unless
told otherwise). numpy, scipy and pandas only: the jobs that use this must start fast.
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
