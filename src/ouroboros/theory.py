"""Findings rows ``T.*``: the loop's closed-form generators measured against their known answers.

Every replicate shares D_1 (and the fresh rows), so each expectation below is conditional on it,
and each row compares the mean over replicates at iteration n with its value. Replicates that
drew their own D_1 (``real_subset: per_replicate``) average over D_1 too: the closed forms below
hold for them as they stand (each is a ratio to, or linear in, the replicate's own iteration 1),
the two simulated rows are left out (their simulation is conditional on one D_1). With N = |D_n| and
a = (N − 1)/N:

- ``T.gaussian_variance`` (gaussian, replace): the maximum-likelihood covariance Σ̂_n of D_n is
  the model fitted at n. D_(n+1) is N exact draws of N(μ̂_n, Σ̂_n), whose MLE covariance has
  expectation a·Σ̂_n, so E[tr Σ̂_n] = a^(n−1) tr Σ̂_1 (Shumailov et al. 2024; Kazdan et al. 2024).
  Measured: tr Σ̂_n / tr Σ̂_1 against a^(n−1).
- ``T.gaussian_mean`` (gaussian, replace): the sample mean of N draws is unbiased, so
  E[μ̂_n] = μ̂_1. Measured: the mean of μ̂_n's coordinates minus μ̂_1's, against 0.
- ``T.kde_coalescence`` (kde, replace): each item of D_(n+1) picks its parent uniformly among the N
  of D_n, as in a Wright–Fisher population; two distinct items have distinct parents with
  probability a per generation, so they share a D_1 ancestor with probability 1 − a^(n−1).
  Measured: the share of pairs of D_n whose labels (D_1 ancestors) agree.
- ``T.kde_variance`` (kde, replace): D_(n+1) is N draws of the empirical distribution of D_n
  convolved with N(0, h²I), whose variance per coordinate is v_n + h² (v_n: D_n's MLE variance);
  the MLE variance of N draws has expectation a times that, so E[v_(n+1)] = a(E[v_n] + h²) and
  E[V_n] = a^(n−1) V_1 + d (N − 1) h² (1 − a^(n−1)) for the total V over d coordinates: it tends
  to d (N − 1) h², it does not collapse.
- ``T.gaussian_accumulate`` and ``T.gaussian_fresh``: no closed form is known to us; the expected
  trace of D_n's MLE covariance comes from ouroboros.simulate (which shares no code with the
  workflow), as the mean of 4,000 simulated loops from the same D_1 and fresh rows.

- ``T.gaussian_step_ratio`` (gaussian, replace): E[tr Σ̂_(n+1) | D_n] = a·tr Σ̂_n at every step, so
  each replicate's mean of its step ratios tr Σ̂_(n+1)/tr Σ̂_n has expectation a whatever its chain
  did: one row per run that pools every step (a martingale), with the power to tell a refit that
  divides by N − 1 (ratio 1) from one that divides by N, which the rows per iteration lack.
- ``T.accumulate_real_share`` (gaussian, accumulate-subsample): D_n is N drawn uniformly from N real
  and (n − 1)N generated items, so 1/n of it is real in expectation; per replicate the mean over
  n ≥ 2 of (real share − 1/n), against 0.
- ``T.fresh_share`` (gaussian, replace with fresh λ): round(λN) of D_n's N items are fresh, exactly.
- ``T.kde_greedy_coalescence`` (kde, replace-greedy): at n = 2, the share of pairs with one D_1
  ancestor that a reference simulation of the KDE with k-center greedy (ouroboros.simulate, no
  code shared with the workflow) expects; a selection that ignores its distances gives 1/N.

A row ``holds`` when its interval contains the theoretical value and ``fails`` when it excludes
it. The equality rows of one table share a Bonferroni level, 1 − 0.05/m over their m rows, so that
a correct loop fails none of them with probability at least 95 %: a failing row is a bug to find.
They are primary rows of their own family (that correction, stated in each row's method), outside
the Holm family of the paper's claims (their p_value is empty).

``T.kde_selection_coalescence`` (kde, replace with a selection method of 2N): the same share of
common ancestry, compared with uniform selection's closed form (side ``<``: the method slows
coalescence), at 95 %.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ouroboros import stats
from ouroboros.paths import PER_REPLICATE, SHARED, fresh_images, real_images
from ouroboros.verdicts import HOLDS, TOO_FEW, verdict

FAMILY_ERROR = 0.05  # of the equality rows of one table (Bonferroni)
SIMULATED_REPLICATES = 4000
SIMULATED_GREEDY_REPLICATES = 4000  # one greedy selection each: its Monte Carlo sd stays far below the rows' intervals


def _params(row) -> dict:
    try:
        return json.loads(row) if isinstance(row, str) and row else {}
    except ValueError:
        return {}


def _chains(t: pd.DataFrame, metric: str) -> pd.DataFrame:
    """replicate × iteration of one metric."""
    part = t[(t.metric == metric) & (t.file == "metrics.json")]
    return part.pivot_table(index="replicate", columns="iteration", values="value", aggfunc="first").sort_index(axis=1)


def _cases(t: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame, dict]]:
    """(claim kind, statement, per-run rows, settings) of every run of a closed-form generator."""
    if "generator" not in t:
        return []
    out = []
    for (dataset, run), part in t[t.generator.isin(["gaussian", "kde"])].groupby(["dataset", "run"]):
        first = part.iloc[0]
        s = {"dataset": dataset, "run": run, "family": str(first.family), "generator": first.generator,
             "n": int(first.dataset_size), "d": first.get("data_dim"), "params": _params(first.get("model_params")),
             "paradigm": first.paradigm, "selection": first.selection, "samples": float(first.samples_per_iteration),
             "fresh": float(first.fresh) if pd.notna(first.get("fresh")) else 0.0,
             "share": first.get("share") if isinstance(first.get("share"), str) else "uniform",
             "init": first.get("init") if isinstance(first.get("init"), str) else "scratch",
             "real_subset": first.get("real_subset") if isinstance(first.get("real_subset"), str) else SHARED}
        plain = s["init"] == "scratch" and s["share"] == "uniform"
        vanilla = plain and s["samples"] == 1 and s["selection"] == "all" and s["fresh"] == 0
        if s["generator"] == "gaussian" and s["paradigm"] == "replace" and vanilla:
            out += [("gaussian_variance", part, s), ("gaussian_mean", part, s), ("gaussian_step_ratio", part, s)]
        elif s["generator"] == "gaussian" and s["paradigm"] == "accumulate" and plain and s["selection"] == "random" \
                and s["samples"] == 1 and s["fresh"] == 0:
            out += [("gaussian_accumulate", part, s), ("accumulate_real_share", part, s)]
        elif s["generator"] == "gaussian" and s["paradigm"] == "replace" and plain and s["selection"] == "all" \
                and s["samples"] == 1 and s["fresh"] > 0:
            out += [("gaussian_fresh", part, s), ("fresh_share", part, s)]
        elif s["generator"] == "kde" and s["paradigm"] == "replace" and vanilla:
            out += [("kde_coalescence", part, s), ("kde_variance", part, s)]
        elif s["generator"] == "kde" and s["paradigm"] == "replace" and plain and s["selection"] != "all" \
                and s["fresh"] == 0:
            out.append(("kde_selection_coalescence", part, s))
            if s["selection"] == "greedy" and float(s["samples"]).is_integer():
                out.append(("kde_greedy_coalescence", part, s))
    return out


COUNTS = ("kde_coalescence", "kde_selection_coalescence", "kde_greedy_coalescence")  # shares of pairs: counts
POOLED = ("gaussian_step_ratio", "accumulate_real_share", "fresh_share")  # one row per run, every step pooled


def _pooled(kind: str, s: dict, part: pd.DataFrame) -> tuple[np.ndarray, float, str, str] | str:
    """(one value per replicate, the expected value, the statistic, the steps) of a pooled row: per
    replicate the mean over its steps of a quantity whose expectation given the past is known, so
    the replicate's mean has that expectation whatever the chain did before (a martingale
    difference per step): a row per run with the power of every step, not one per iteration."""
    a = (s["n"] - 1) / s["n"]
    if kind == "gaussian_step_ratio":
        v = _chains(part, "train_variance_mle")
        steps = v.columns.to_numpy()
        if len(steps) < 2:
            return "one iteration: no step"
        ratios = v[steps[1:]].to_numpy() / v[steps[:-1]].to_numpy()  # consecutive iterations
        done = np.isfinite(ratios).sum(axis=1)
        values = np.where(np.isfinite(ratios), ratios, 0.0).sum(axis=1)[done > 0] / done[done > 0]  # replicates with a step
        theory = a
        statistic = "tr Σ̂_(n+1) / tr Σ̂_n, per replicate the mean over its steps (E = (N−1)/N at every step)"
    else:
        source = "real" if kind == "accumulate_real_share" else "fresh"
        # a source absent from D_n has no share_ row in the table: its share is 0
        every = part[part.file == "metrics.json"].pivot_table(index="replicate", columns="iteration", values="value",
                                                             aggfunc="size")
        c = _chains(part, f"share_{source}").reindex(index=every.index, columns=every.columns).fillna(0.0)
        c = c.drop(columns=1, errors="ignore")
        if c.empty:
            return "one iteration: no D_n drawn from a pool"
        steps = c.columns.to_numpy()
        if kind == "accumulate_real_share":  # N real among N + (n−1)N candidates, drawn uniformly: 1/n
            values = (c - 1.0 / c.columns.to_numpy()).mean(axis=1).to_numpy()
            theory, statistic = 0.0, "share of D_n from D_1 − 1/n, per replicate the mean over n ≥ 2"
        else:  # round(λN) of N rows fresh: exactly, at every n
            take = math.floor(s["fresh"] * s["n"] + 0.5)
            values = c.mean(axis=1).to_numpy()
            theory, statistic = take / s["n"], "share of D_n from the fresh rows, per replicate the mean over n ≥ 2"
            values = np.round(values, 12)  # a ratio of counts: exact up to the mean's rounding
    span = f"n = {int(steps[0])}…{int(steps[-1])}"
    return np.asarray(values, dtype=float), float(theory), statistic, span


def _expected(kind: str, s: dict, part: pd.DataFrame, results: Path | None) -> tuple[pd.DataFrame, np.ndarray, str] | str:
    """(the measured replicate × iteration table, the expected value per iteration, the statistic),
    or why the rows cannot be formed; ``part`` holds the run's rows of the tidy table."""
    a = (s["n"] - 1) / s["n"]
    metric = {"gaussian_mean": "train_grand_mean", "kde_coalescence": "common_ancestor_share",
              "kde_selection_coalescence": "common_ancestor_share",
              "kde_greedy_coalescence": "common_ancestor_share"}.get(kind, "train_variance_mle")
    if 1 not in _chains(part, metric).columns:
        return f"no {metric} at iteration 1 in the table"
    if kind in ("gaussian_variance",):
        v = _chains(part, "train_variance_mle")
        return v.div(v[1], axis=0), a ** (v.columns.to_numpy() - 1.0), "tr Σ̂_n / tr Σ̂_1 (MLE covariance of D_n)"
    if kind == "gaussian_mean":
        m = _chains(part, "train_grand_mean")
        return m.sub(m[1], axis=0), np.zeros(m.shape[1]), "mean coordinate of μ̂_n − that of μ̂_1"
    if kind in ("kde_coalescence", "kde_selection_coalescence"):
        c = _chains(part, "common_ancestor_share")
        return c, 1 - a ** (c.columns.to_numpy() - 1.0), "share of pairs of D_n with one D_1 ancestor"
    if kind == "kde_variance":
        h = s["params"].get("bandwidth")
        if not isinstance(h, int | float) or s["d"] is None or (isinstance(s["d"], float) and math.isnan(s["d"])):
            return "the bandwidth is auto or the dimension unknown: no closed form to compare with"
        v = _chains(part, "train_variance_mle")
        k = v.columns.to_numpy() - 1.0
        v1 = float(v[1].mean())
        return v, a**k * v1 + int(s["d"]) * (s["n"] - 1) * h**2 * (1 - a**k), "trace of D_n's MLE covariance"
    # the simulated ones: D_1 (and the fresh rows) from results/
    if results is None:
        return "the reference simulation needs results/ (D_1 and the fresh rows)"
    if s["real_subset"] == PER_REPLICATE:
        return "the reference simulation is conditional on one D_1; these replicates drew their own"
    from ouroboros.io import load_data

    root = Path(results).parent
    real = load_data(root / real_images(s["dataset"]))
    if kind == "kde_greedy_coalescence":
        h = s["params"].get("bandwidth")
        if not isinstance(h, int | float):
            return "the bandwidth is auto: the reference simulation needs its value"
        # the first selection only: later shares are right-skewed (a rare replicate coalesces much
        # faster), and a t interval over a few replicates then misses the mean far more than 5 % of
        # the time; at n = 2 the share counts sibling pairs, nearly symmetric, and the effect of a
        # selection that ignores its scores (1/N against about a third of it) is largest
        c = _chains(part, "common_ancestor_share").loc[:, lambda f: f.columns <= 2]
        if 2 not in c.columns:
            return "no iteration 2"
        from ouroboros.simulate import kde_greedy_coalescence

        expected = kde_greedy_coalescence(real, 2, bandwidth=float(h), samples=int(s["samples"]),
                                          replicates=SIMULATED_GREEDY_REPLICATES)
        return (c, expected[c.columns.to_numpy() - 1],
                "share of pairs of D_n with one D_1 ancestor (expected: reference simulation)")
    v = _chains(part, "train_variance_mle")
    if kind == "gaussian_accumulate":
        expected = _simulate(real, int(v.columns.max()), paradigm="accumulate")
    else:
        fresh = load_data(root / fresh_images(s["dataset"]))
        expected = _simulate(real, int(v.columns.max()), paradigm="replace", fresh=fresh, fresh_fraction=s["fresh"])
    return v, expected[v.columns.to_numpy() - 1], "trace of D_n's MLE covariance (expected: reference simulation)"


def _simulate(real, iterations, **options) -> np.ndarray:
    from ouroboros.simulate import gaussian_loop

    return gaussian_loop(real, iterations, replicates=SIMULATED_REPLICATES, **options)


STATEMENTS = {
    "gaussian_variance": "a Gaussian refit loses variance by (N−1)/N per generation",
    "gaussian_mean": "a Gaussian refit keeps its mean in expectation",
    "kde_coalescence": "a KDE's D_n coalesces onto D_1 ancestors as Wright–Fisher: 1 − (1 − 1/N)^(n−1)",
    "kde_variance": "a KDE's variance follows E[V_n] = a^(n−1) V_1 + d(N−1)h²(1 − a^(n−1)), not a collapse",
    "gaussian_accumulate": "accumulate-subsample: the variance the reference simulator expects",
    "gaussian_fresh": "replace with fresh data: the variance the reference simulator expects",
    "kde_selection_coalescence": "the selection method slows the KDE's coalescence below uniform selection's closed form",
    "kde_greedy_coalescence": "Greedy Selection of N of a KDE's 2N samples: the coalescence the reference simulator expects",
    "gaussian_step_ratio": "each Gaussian refit keeps (N−1)/N of the variance it was fitted on, in expectation at every step",
    "accumulate_real_share": "accumulate-subsample keeps D_1's share of the pool: 1/n of D_n is real, in expectation",
    "fresh_share": "replace with fresh data: round(λN) of the N items of D_n are fresh real items, at every n",
}


def claims(t: pd.DataFrame, results: str | Path | None = None) -> list[dict]:
    """Every T row the table's closed-form runs allow (see the module's docstring)."""
    planned = []
    for kind, part, s in _cases(t):
        if kind in POOLED:
            pooled = _pooled(kind, s, part)
            if not isinstance(pooled, str):
                values, theory, statistic, span = pooled
                planned.append((kind, s, span, values, theory, statistic))
            continue
        measured = _expected(kind, s, part, Path(results) if results is not None else None)
        if isinstance(measured, str):
            continue
        values, expected, statistic = measured
        for n, theory in zip(values.columns.to_numpy(), expected, strict=True):
            if n < 2:
                continue
            planned.append((kind, s, int(n), values[n].to_numpy(dtype=float), float(theory), statistic))
    equalities = sum(kind != "kde_selection_coalescence" for kind, *_ in planned)
    level = 1 - FAMILY_ERROR / max(equalities, 1)
    rows = []
    for kind, s, n, values, theory, statistic in planned:
        comparison = kind == "kde_selection_coalescence"
        iv = stats.t_interval(values, stats.LEVEL if comparison else level)
        side = "<" if comparison else "="
        if comparison:
            method = f"{iv.method} at {iv.level:.0%}"
        else:
            method = f"{iv.method}, Bonferroni over {equalities} theory rows ({iv.level:.4g} each)"
        decided = verdict(iv.low, iv.high, side, theory)
        if kind in COUNTS and iv.sd == 0 and decided != HOLDS:
            # a share of pairs is a count: a few replicates can agree exactly, and a zero-width
            # interval then says nothing about the spread it would need
            decided, method = TOO_FEW, f"{method}; every replicate gives the same count: no spread to form an interval"
        bandwidth = f", h = {s['params']['bandwidth']}" if "bandwidth" in s["params"] else ""
        at = f"{n}, pooled" if isinstance(n, str) else f"n = {n}"
        rows.append({"claim": f"T.{kind}", "role": "primary", "scope": f"{s['dataset']} · {s['run']}{bandwidth} · {at}",
                     "family": s["family"], "dataset": s["dataset"], "runs": s["run"],
                     "iteration": None if isinstance(n, str) else n,
                     "feature_extractor": "identity", "statement": STATEMENTS[kind], "statistic": statistic,
                     "side": side, "null": theory, "estimate": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
                     "p_value": math.nan, "p_holm": math.nan, "holm_family_size": None,
                     "level": iv.level, "method": method, "replicates": iv.n, "points": iv.n,
                     "replicates_needed": math.nan, "_effect": math.nan, "_spread": math.nan,
                     "verdict": decided})
    return rows

