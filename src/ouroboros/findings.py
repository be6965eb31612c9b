"""The paper's claims, one row each, with a statistic, its 95 % interval and a verdict.

A verdict is read off the interval alone, with no tuned threshold: ``holds`` when the interval
lies wholly on the claimed side of the null value, ``fails`` when it lies wholly on the other
side, ``insufficient data`` otherwise (including when there are too few replicates or points to
form an interval). Runs are recognised by (paradigm, selection, samples_per_iteration), never by
name, so user-named runs count; when several runs fill a role, each gets its rows. A claim whose
runs are missing gives no row.

Usage outside Snakemake: ``python -m ouroboros.findings results/`` reads
results/tables/metrics.tsv (or scans results/ when it is absent), writes
results/tables/findings.tsv and results/tables/summary.tsv, and prints the report.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ouroboros import stats
from ouroboros.tables import RUN_OPTIONS, is_default

SEED = 0  # the bootstrap's stream: findings.tsv is the same on every rebuild of the same table
HOLDS, FAILS, UNDECIDED = "holds", "fails", "insufficient data"
COLUMNS = ["claim", "scope", "family", "dataset", "runs", "iteration", "feature_extractor", "statement",
           "statistic", "side", "null", "estimate", "ci_low", "ci_high", "p_value", "level", "method",
           "replicates", "points", "verdict"]


def verdict(low: float, high: float, side: str, null: float = 0.0) -> str:
    """holds / fails / insufficient data from where the interval lies relative to the null value."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return UNDECIDED
    above, below = low > null, high < null
    if side == ">":
        return HOLDS if above else FAILS if below else UNDECIDED
    if side == "<":
        return HOLDS if below else FAILS if above else UNDECIDED
    raise ValueError(f"side must be '>' or '<', not {side!r}")


# ---------------------------------------------------------------------------------------------
# Runs and their roles


@dataclass(frozen=True)
class Run:
    family: str
    dataset: str
    name: str
    size: float
    paradigm: str
    selection: str
    samples: float
    options: str = ""  # the run options beyond the paper's loop ("fresh 0.5, init previous"); "" = none

    @property
    def label(self) -> str:
        extra = f", {self.options}" if self.options else ""
        return f"{self.name} ({self.paradigm}, {self.selection}, ×{self.samples:g}{extra})"

    @property
    def paper(self) -> bool:
        """A run of the paper's loop: the roles below are the paper's, and runs with options
        beyond it (fresh data, fine-tuning, ...) must not stand in for them."""
        return not self.options


Role = Callable[[Run], bool]


def vanilla_replace(r: Run) -> bool:
    return r.paper and r.paradigm == "replace" and r.selection == "all" and r.samples == 1


def replace_kn(r: Run) -> bool:
    """Replace, training on all of kN generated images (Fig. 13's 2N line)."""
    return r.paper and r.paradigm == "replace" and r.selection == "all" and r.samples > 1


def selecting(paradigm: str, selection: str) -> Role:
    return lambda r: r.paper and r.paradigm == paradigm and r.selection == selection


vanilla_accumulate = selecting("accumulate", "random")  # vanilla accumulate-subsample: N uniformly at random
SELECTIONS = ("greedy", "threshold_decay")


def complete(tidy: pd.DataFrame) -> pd.DataFrame:
    """The tidy table with the columns this module reads: a table from before replicates and size
    sweeps existed is one replicate (0) of datasets that are their own family."""
    t = tidy.copy()
    if "replicate" not in t:
        t["replicate"] = 0
    t["family"] = t["family"].fillna(t["dataset"]) if "family" in t else t["dataset"]
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    return t


def _options(row) -> str:
    """How a run's label names its options beyond the paper's loop ("fresh 0.5, init previous")."""
    return ", ".join(f"{key.replace('_', ' ')} {getattr(row, key)}" for key in RUN_OPTIONS
                     if not is_default(key, getattr(row, key)))


def run_list(t: pd.DataFrame) -> list[Run]:
    """Every (dataset, run) of the table with its settings."""
    cols = ["family", "dataset", "run", "dataset_size", "paradigm", "selection", "samples_per_iteration"]
    first = t.assign(**{k: t[k] if k in t else None for k in RUN_OPTIONS}).drop_duplicates(["dataset", "run"])
    return [Run(str(r.family), str(r.dataset), str(r.run), float(r.dataset_size), str(r.paradigm), str(r.selection),
                float(r.samples_per_iteration), _options(r))
            for r in first.sort_values(["family", "dataset", "run"])[cols + RUN_OPTIONS].itertuples(index=False)]


def _values(t: pd.DataFrame, run: Run, metric: str) -> pd.DataFrame:
    part = t[(t.dataset == run.dataset) & (t.run == run.name) & (t.metric == metric)]
    return part[["feature_extractor", "replicate", "iteration", "value"]]


# ---------------------------------------------------------------------------------------------
# Rows


def _row(claim: str, scope: str, statement: str, statistic: str, side: str, estimate: float, low: float,
         high: float, level: float, method: str, replicates: int, points: int, *, family: str = "",
         dataset: str = "", runs: str = "", iteration: int | None = None, space: str = "",
         p_value: float = math.nan, null: float = 0.0) -> dict:
    return {"claim": claim, "scope": scope, "family": family, "dataset": dataset, "runs": runs,
            "iteration": iteration, "feature_extractor": space, "statement": statement, "statistic": statistic,
            "side": side, "null": null, "estimate": estimate, "ci_low": low, "ci_high": high, "p_value": p_value,
            "level": level, "method": method, "replicates": replicates, "points": points,
            "verdict": verdict(low, high, side, null)}


def _t_row(claim: str, scope: str, statement: str, statistic: str, side: str, iv: stats.Interval, points: int,
           detail: str, **where) -> dict:
    method = f"{iv.method} ({detail}, scipy.stats.t.interval), {iv.level:.0%}, n = {iv.n} replicates"
    return _row(claim, scope, statement, statistic, side, iv.mean, iv.low, iv.high, iv.level, method, iv.n,
                points, **where)


# ---------------------------------------------------------------------------------------------
# Findings I and II: trends over iterations under vanilla replace


@dataclass(frozen=True)
class Trend:
    claim: str
    metric: str
    log: bool
    side: str
    statement: str


TRENDS = [
    Trend("I.gs_falls", "generalization_score", True, "<",
          "Under vanilla replace the generalization score falls over iterations: G_n moves towards copies of D_n."),
    Trend("I.memorization_rises", "memorization_ratio", False, ">",
          "Under vanilla replace the share of memorized samples in G_n rises over iterations."),
    Trend("I.copies_rise", "copy_share", False, ">",
          "Under vanilla replace the share of samples closer to a training image than a third of the real "
          "images' typical spacing rises over iterations (copies, measured with a fixed yardstick)."),
    # authenticity (Alaa et al. 2022) is the share of G_n that are not copies of D_n: the mirror of copy_share
    Trend("I.authenticity_falls", "authenticity", False, "<",
          "Under vanilla replace the share of authentic samples in G_n (not copies of D_n, Alaa et al. 2022) "
          "falls over iterations."),
    Trend("II.train_entropy_falls", "train_entropy", False, "<",
          "Under vanilla replace the entropy of the training set D_n falls over iterations."),
    Trend("II.generated_entropy_falls", "generated_entropy", False, "<",
          "Under vanilla replace the entropy of the generated set G_n falls over iterations."),
    # log Vendi is the entropy (nats) of the similarity kernel's eigenvalues: its slope reads like the
    # KL entropy's, in a second, kernel-based measure of how many distinct points a set holds
    Trend("II.train_vendi_falls", "train_vendi", True, "<",
          "Under vanilla replace the Vendi score of D_n (its effective number of distinct images) falls over "
          "iterations."),
    Trend("II.generated_vendi_falls", "generated_vendi", True, "<",
          "Under vanilla replace the Vendi score of G_n (its effective number of distinct images) falls over "
          "iterations."),
]


def trend_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Per replicate, the OLS slope of the metric (or its log) on n; a t interval over replicates."""
    for run in filter(vanilla_replace, all_runs):
        for trend in TRENDS:
            for space, part in _values(t, run, trend.metric).groupby("feature_extractor"):
                y = np.log(part.value.where(part.value > 0)) if trend.log else part.value  # log of 0: left out
                part = part.assign(y=y)
                slopes = [stats.slope(g.iteration, g.y) for _, g in part.groupby("replicate")]
                iv = stats.t_interval(slopes)
                what = f"log {trend.metric}" if trend.log else trend.metric
                n_range = f"n = {part.iteration.min()}…{part.iteration.max()}"
                yield _t_row(trend.claim, f"{run.dataset} · {run.name} · {n_range} · {space}", trend.statement,
                             f"mean slope of {what} on n", trend.side, iv, int(part.y.notna().sum()),
                             "per-replicate OLS slope, scipy.stats.linregress", family=run.family,
                             dataset=run.dataset, runs=run.name, space=space)


def size_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Finding I at n = 1: within a family of ≥ 2 sizes, larger N gives larger GS.

    Iteration 1 is the same in every run of a dataset, so each (dataset, replicate) counts once,
    from whichever run holds it. Per replicate, the OLS slope of GS on log N; a t interval over them.
    """
    by_family: dict[str, list[Run]] = {}
    for run in all_runs:
        by_family.setdefault(run.family, []).append(run)
    for family, members in by_family.items():
        if len({r.size for r in members}) < 2:
            continue
        part = pd.concat([_values(t, r, "generalization_score").assign(size=r.size, of=r.dataset) for r in members])
        part = part[part.iteration == 1].drop_duplicates(["feature_extractor", "of", "replicate"])
        for space, sp in part.groupby("feature_extractor"):
            slopes = [stats.slope(np.log(g["size"]), g.value) for _, g in sp.groupby("replicate")]
            iv = stats.t_interval(slopes)
            sizes = ", ".join(f"{s:g}" for s in sorted(sp["size"].unique()))
            yield _t_row("I.gs_grows_with_size", f"{family} · N = {sizes} · n = 1 · {space}",
                         "At the first iteration, models trained on more real images generalize more (higher GS).",
                         "mean slope of generalization_score on log N", ">", iv, len(sp),
                         "per-replicate OLS slope over sizes, scipy.stats.linregress", family=family, iteration=1,
                         space=space)


# ---------------------------------------------------------------------------------------------
# Finding III: entropy of D_n and log GS over sizes × iterations of one family


def _points(t: pd.DataFrame, members: list[Run]) -> pd.DataFrame:
    """(dataset, run, replicate, iteration) × metric of the vanilla replace runs of one family;
    iteration 1 once per dataset and replicate (it is the same point in every run)."""
    metrics = ["train_entropy", "generalization_score", "train_covariance_trace"]
    chosen = pd.DataFrame([(m.dataset, m.name) for m in members], columns=["dataset", "run"])
    part = t[t.metric.isin(metrics) & (t.file == "metrics.json")].merge(chosen, on=["dataset", "run"])
    wide = part.pivot_table(index=["feature_extractor", "dataset", "run", "replicate", "iteration"],
                            columns="metric", values="value", aggfunc="first").reset_index()
    order = ["feature_extractor", "dataset", "replicate", "iteration", "run"]
    wide = wide.sort_values(order)
    first = wide.iteration == 1
    wide = pd.concat([wide[~first], wide[first].drop_duplicates(["feature_extractor", "dataset", "replicate"])])
    # one fixed order of the points: the bootstrap's resamples, and so its interval, depend on it
    wide = wide.sort_values(order).reset_index(drop=True)
    return wide.reindex(columns=list(wide.columns) + [m for m in metrics if m not in wide.columns])


def correlation_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Pearson r(entropy of D_n, log GS) per family and feature space, and how much it exceeds
    |r(variance of D_n, GS)| (Fig. 2b vs 2c, whose variance is the trace of D_n's covariance).

    Points of all replicates are pooled, as the paper pools sizes and iterations into one scatter;
    the bootstrap resamples points, so it treats them as exchangeable, which points of one replicate
    (successive iterations of one chain) are not quite: read the interval as a lower bound on the
    uncertainty.
    """
    families: dict[str, list[Run]] = {}
    for run in filter(vanilla_replace, all_runs):
        families.setdefault(run.family, []).append(run)
    for family, members in families.items():
        for space, p in _points(t, members).groupby("feature_extractor"):
            p = p.dropna(subset=["train_entropy", "generalization_score"])
            p = p[p.generalization_score > 0]
            if p.empty:
                continue
            log_gs = np.log(p.generalization_score.to_numpy(float))
            entropy = p.train_entropy.to_numpy(float)
            reps = p.replicate.nunique()
            sizes = ", ".join(f"{s:g}" for s in sorted({r.size for r in members if r.dataset in set(p.dataset)}))
            scope = f"{family} · N = {sizes} · vanilla replace · {space}"
            where = {"family": family, "runs": ", ".join(sorted({r.name for r in members})), "space": space}
            pooled = f"points (size × iteration) pooled over {reps} replicates"
            r = stats.pearson_bootstrap(entropy, log_gs, seed=SEED)
            yield _row("III.entropy_gs_r", scope,
                       "Over sizes and iterations, training sets of higher entropy give higher log GS (Fig. 2b).",
                       "Pearson r(train_entropy, log generalization_score)", ">", r.estimate, r.low, r.high,
                       r.level, f"{r.method}; {pooled}; p from scipy.stats.pearsonr", reps, r.n,
                       p_value=r.p_value, **where)
            q = p.dropna(subset=["train_covariance_trace"])
            if q.empty:
                continue
            variance = stats.pearson_bootstrap(q.train_covariance_trace, q.generalization_score, seed=SEED)
            gap = stats.pearson_gap(q.train_entropy, np.log(q.generalization_score),
                                    q.train_covariance_trace, q.generalization_score, seed=SEED)
            beside = (f"r(train_covariance_trace, generalization_score) = {variance.estimate:.3g} "
                      f"[{variance.low:.3g}, {variance.high:.3g}], p = {variance.p_value:.2g}")
            yield _row("III.entropy_beats_variance", scope,
                       "Entropy of D_n tracks log GS more closely than the variance of D_n tracks GS (Fig. 2b vs 2c).",
                       "|r(train_entropy, log GS)| - |r(train_covariance_trace, GS)|", ">", gap.estimate, gap.low,
                       gap.high, gap.level, f"{gap.method}; {pooled}; {beside}", q.replicate.nunique(), gap.n,
                       **where)


# ---------------------------------------------------------------------------------------------
# Section 5, Figs. 11 and 13: one run against another at each n ≥ 2, paired by replicate


def _paired(t: pd.DataFrame, treated: Run, base: Run, metric: str) -> pd.DataFrame:
    """treated − base per (feature space, replicate, iteration ≥ 2) present in both runs."""
    a = _values(t, treated, metric)
    b = _values(t, base, metric)
    both = a.merge(b, on=["feature_extractor", "replicate", "iteration"], suffixes=("_a", "_b"))
    both = both[both.iteration >= 2]  # iteration 1 is shared: its difference is 0 by construction
    return both.assign(value=both.value_a - both.value_b)


def _per_iteration(claim: str, differences: pd.DataFrame, side: str, scope: str, sentence: Callable[[str], str],
                   statistic: str, detail: str, **where) -> Iterator[dict]:
    """A row at each n, and one for the mean over every n that all replicates reached."""
    for space, d in differences.groupby("feature_extractor"):
        for n, at in d.groupby("iteration"):
            iv = stats.t_interval(at.value)
            yield _t_row(claim, f"{scope} · n = {n} · {space}", sentence(f"at n = {n}"), statistic, side, iv,
                         len(at), detail, iteration=int(n), space=space, **where)
        reached = d.groupby("replicate").iteration.apply(set)
        common = sorted(set.intersection(*reached)) if len(reached) else []
        if len(common) < 2:
            continue
        mean = d[d.iteration.isin(common)].groupby("replicate").value.mean()
        iv = stats.t_interval(mean)
        span = f"n = {common[0]}…{common[-1]}"
        yield _t_row(claim, f"{scope} · mean over {span} · {space}", sentence(f"averaged over {span}"),
                     statistic, side, iv, int(d.iteration.isin(common).sum()),
                     f"{detail}, averaged per replicate over {span}", space=space, **where)


@dataclass(frozen=True)
class Comparison:
    claim: str
    metric: str
    side: str
    says: str  # "{what} {when}" completes the sentence


SELECTION_VS_VANILLA = [
    Comparison("S5.entropy_higher", "train_entropy", ">", "the entropy of D_n is higher"),
    Comparison("S5.vendi_higher", "train_vendi", ">", "the Vendi score of D_n is higher"),
    Comparison("S5.gs_higher", "generalization_score", ">", "the generalization score is higher"),
    Comparison("S5.fid_lower", "fid", "<", "FID is lower"),
    # the same claim in the distances the field reports beside FID (rows only where a dataset computes them)
    Comparison("S5.fd_dinov2_lower", "fd_dinov2", "<", "FD_DINOv2 is lower"),
    Comparison("S5.fid_torchvision_lower", "fid_torchvision", "<", "FID with torchvision's InceptionV3 is lower"),
]


def _compare(t: pd.DataFrame, pairs: list[tuple[Run, Run]], comparisons: list[Comparison]) -> Iterator[dict]:
    for treated, base in pairs:
        for c in comparisons:
            d = _paired(t, treated, base, c.metric)
            if d.empty:
                continue

            def sentence(when: str, c=c, treated=treated, base=base) -> str:
                return f"With {treated.label} {c.says} than with {base.label}, {when}."

            yield from _per_iteration(
                c.claim, d, c.side, f"{treated.dataset} · {treated.name} vs {base.name}", sentence,
                f"mean paired difference of {c.metric} ({treated.name} − {base.name})",
                "paired by replicate", family=treated.family, dataset=treated.dataset,
                runs=f"{treated.name} vs {base.name}")


def _pairs(all_runs: list[Run], treated: Role, base: Role, same_samples: bool = False) -> list[tuple[Run, Run]]:
    return [(a, b) for a in all_runs for b in all_runs
            if a.dataset == b.dataset and a.name != b.name and treated(a) and base(b)
            and (not same_samples or a.samples == b.samples)]


def selection_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """§5: Greedy Selection and Threshold Decay against the vanilla run of their paradigm, and so
    every registered method of one's own (knn_entropy, ...): the paper's claim is about raising
    the entropy of D_n by selection, whatever the method."""
    own = sorted({r.selection for r in all_runs} - set(SELECTIONS) - {"all", "random"})
    for selection in (*SELECTIONS, *own):
        pairs = (_pairs(all_runs, selecting("accumulate", selection), vanilla_accumulate)
                 + _pairs(all_runs, selecting("replace", selection), vanilla_replace))
        yield from _compare(t, pairs, SELECTION_VS_VANILLA)


def real_share_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Fig. 11: under accumulate, the selections keep more real images in D_n than uniform
    subsampling keeps in expectation, N real among N + (n−1)·kN candidates: 1/(1 + (n−1)k), which
    is the paper's 1/n for k = 1 sample per image; one-sample t interval of the difference."""
    for run in all_runs:
        if not (run.paper and run.paradigm == "accumulate" and run.selection not in ("all", "random")):
            continue
        v = _values(t, run, "real_share")
        v = v[v.iteration >= 2]
        if v.empty:
            continue
        d = v.assign(value=v.value - 1.0 / (1 + (v.iteration - 1) * run.samples))

        def sentence(when: str, run=run) -> str:
            return f"With {run.label} the share of real images in D_n is above uniform subsampling's, {when}."

        yield from _per_iteration("F11.real_share_above_1/n", d, ">", f"{run.dataset} · {run.name}", sentence,
                                  "mean of real_share − 1/(1 + (n−1)k)", "one sample", family=run.family,
                                  dataset=run.dataset, runs=run.name)


TWO_N = [  # (treated, baseline, same samples per iteration, comparison)
    (replace_kn, vanilla_replace, False, Comparison("F13.kn_fid_lower", "fid", "<", "FID is lower")),
    (selecting("replace", "greedy"), replace_kn, True,
     Comparison("F13.greedy_fid_lower_than_kn", "fid", "<", "FID is lower")),
    (selecting("replace", "greedy"), replace_kn, True,
     Comparison("F13.greedy_gs_higher_than_kn", "generalization_score", ">", "the generalization score is higher")),
]


def two_n_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Fig. 13: training on all kN images beats vanilla replace, and selecting N of the same kN
    beats training on all of them (replace-greedy against the replace-kN run of the same k)."""
    for treated, base, same, comparison in TWO_N:
        yield from _compare(t, _pairs(all_runs, treated, base, same), [comparison])


OPTION_VS_PAPER = [
    Comparison("X.entropy_vs_paper", "train_entropy", ">", "the entropy of D_n is higher"),
    Comparison("X.gs_vs_paper", "generalization_score", ">", "the generalization score is higher"),
    Comparison("X.fid_vs_paper", "fid", "<", "FID is lower"),
]


def option_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Beyond the paper: each run with options (fresh real data, equal shares, fine-tuning,
    another selection space) against the run of the paper's loop with its paradigm, selection and
    samples, on the metrics of the paper's claims. Fresh data is expected to help (Bertrand et al.
    2024); for the others the side is the paper's direction of a better loop, and ``fails`` says
    the option made it worse."""
    def base_of(a: Run) -> Role:
        return lambda b: b.paper and (b.paradigm, b.selection, b.samples) == (a.paradigm, a.selection, a.samples)

    pairs = [pair for a in all_runs if not a.paper for pair in _pairs(all_runs, lambda r, a=a: r is a, base_of(a))]
    yield from _compare(t, pairs, OPTION_VS_PAPER)


CLAIMS = [trend_claims, size_claims, correlation_claims, selection_claims, real_share_claims, two_n_claims,
          option_claims]


def findings(tidy: pd.DataFrame, results: str | Path | None = None) -> pd.DataFrame:
    """One row per claim × scope (dataset or family, runs, iteration, feature space); with
    ``results`` (the results/ folder), also the theory rows that read D_1 from it."""
    from ouroboros import theory

    t = complete(tidy)
    if t.empty:
        return pd.DataFrame(columns=COLUMNS)
    all_runs = run_list(t)
    rows = [row for claims in CLAIMS for row in claims(t, all_runs)] + theory.claims(t, results)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["iteration"] = out["iteration"].astype("Int64")
    return out


# ---------------------------------------------------------------------------------------------
# Report and command line


def _number(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v:.3g}"


def report(table: pd.DataFrame) -> str:
    """A markdown table for the terminal and the report: claim, scope, estimate [low, high], n,
    verdict and the statement, under a one-line tally of the verdicts."""
    if table.empty:
        return "No claim could be checked: results/ holds none of the runs the claims compare."
    counts = table.verdict.value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in (HOLDS, FAILS, UNDECIDED))
    level = table.level.dropna()
    lines = [f"{len(table)} findings: {tally} (intervals at {level.iloc[0]:.0%}; verdict from the interval alone)",
             "",
             "| claim | scope | claimed | estimate [low, high] | n | verdict | statement |",
             "|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        estimate = f"{_number(r.estimate)} [{_number(r.ci_low)}, {_number(r.ci_high)}]"
        n = f"{r.replicates} rep" + (f", {r.points} pts" if r.points != r.replicates else "")
        lines.append(f"| {r.claim} | {r.scope} | {r.side} {r.null:g} | {estimate} | {n} | {r.verdict} | "
                     f"{r.statement} |")
    return "\n".join(lines)


def load(results: str | Path) -> pd.DataFrame:
    """results/tables/metrics.tsv, or the tidy table of what results/ holds when it is absent."""
    table = Path(results) / "tables" / "metrics.tsv"
    if table.is_file():
        return pd.read_csv(table, sep="\t")
    from ouroboros.tables import scan, tidy

    return tidy(scan(results))


def write(tidy: pd.DataFrame, findings_out: str | Path, summary_out: str | Path,
          results: str | Path | None = None) -> pd.DataFrame:
    """findings.tsv, the readable findings.md beside it, and summary.tsv from a tidy table."""
    from ouroboros.io import save_text

    table = findings(tidy, results)
    text = report(table)
    save_text(findings_out, table.to_csv(sep="\t", index=False))
    save_text(Path(findings_out).with_suffix(".md"), text + "\n")
    save_text(summary_out, stats.summary(complete(tidy)).to_csv(sep="\t", index=False))
    print(text)
    return table


def stage(table: str, findings_out: str, summary_out: str) -> pd.DataFrame:
    """The workflow's findings step: from results/tables/metrics.tsv."""
    return write(pd.read_csv(table, sep="\t"), findings_out, summary_out, results=Path(table).parent.parent)


def main(argv: list[str]) -> int:
    results = Path(argv[0] if argv else "results")
    write(load(results), results / "tables" / "findings.tsv", results / "tables" / "summary.tsv", results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
