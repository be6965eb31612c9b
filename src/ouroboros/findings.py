"""The paper's claims, one row each, with a statistic, its 95 % interval and a verdict.

Verdicts (``ouroboros.verdicts``; no tuned threshold, the interval and its tests decide): ``holds``,
``fails``, ``no effect`` (a primary row whose equivalence test puts it within its declared margin of
the null), ``inconclusive``, ``too few replicates``, ``not applicable``, ``not run``.

A two-sided claim that a statistic equals a value (side ``=``, null = the value, e.g. a closed-form
theory or the paper's r = 0.91) holds when the interval contains the value and fails otherwise; as a
primary row with a margin it holds where the equivalence test puts it within the margin of the value
and fails where the test of equality rejects it (inconclusive otherwise).

Experiments and their primary families. config.yaml's ``primary`` declares, for each experiment
(a name of ``experiments``, or ``demo`` for ``targets``), the claims it was run to decide, each at
one scope (dataset or family, runs, feature space) with an equivalence margin in the statistic's
units, before the run. Each experiment's rows are computed from its own targets only (its datasets,
runs, replicates and iterations: whatever else results/ holds never enters them), its declared
rows are its primary family and Holm's correction runs within that family only; every other row
of the experiment is ``secondary`` (exploratory, unadjusted, never changing a primary verdict).
Adding another experiment's results, or a target of one's own on the same datasets, never changes
an experiment's verdicts. Rows of data no experiment holds (a user's own targets) are secondary
only. With a config, the project's own experiments (experiments/*.yaml: science, theory, beyond, ...)
count too, whether or not their file was passed (ouroboros.experiments.for_findings), and runs are
named by their results directories, as metrics.json names them. Called without a config
(``findings(tidy)``, the library on a table of one's own), the whole table is one ad-hoc family
whose primary rows are each claim's row per scope.

Within a family each primary row with a test carries two hypotheses: statistic = null (its
rejection, on the claimed side, is ``holds``; on the other side ``fails``), and |statistic − null| ≥
margin (two one-sided tests, TOST; its rejection is ``no effect``). At most one of a row's two is
true, and Holm's correction runs over all of them (``holm_family_size`` says how many), so the
family-wise error of the primary verdicts stays at most 5 %. An inconclusive primary row says how
many replicates a study of the observed effect and spread would need to decide with 80 % power
(``replicates_needed``).

Where the claim is about every iteration, the scope's row is the mean over the iterations every
replicate reached, and the per-iteration rows are secondary. Claims apply only where they fit the
data: no pixel-yardstick claim (memorization, copies) on vectors (a dataset whose metrics record
``data_dim``: ``source: gaussian``), whatever generator fits them.

Intervals: Student t over replicates for per-replicate values (paired differences, per-replicate
slopes); a chain bootstrap (``stats.chain_bootstrap``) for statistics that pool the iterations of
several replicates (the trend slopes, Fig. 2b's r): whole replicate chains are resampled, never
points. Runs are recognised by (paradigm, selection, samples_per_iteration), never by name, so
user-named runs count; when several runs fill a role, each gets its rows. A claim whose runs are
missing gives no row.

Adding a claim: a function ``(tidy, runs) -> Iterator[dict]`` appended to ``CLAIMS`` that yields
rows made by ``_row`` (any interval), ``_t_row`` (a ``stats.Interval``) or ``_chain_row`` (a
``stats.ChainInterval``). Each takes ``side`` (``>``, ``<`` or ``=``), ``null`` and ``primary``.
A row that checks a measured statistic against a closed-form value is
``_t_row(claim, scope, statement, statistic, "=", stats.t_interval(values), points, detail,
null=theory)``: it holds when the theory lies in the interval and fails when it does not.

Usage outside Snakemake: ``python -m ouroboros.findings results/ [config.yaml]`` reads
results/tables/metrics.tsv (or scans results/ when it is absent), writes
results/tables/findings.tsv (with findings.md and findings.rst beside it) and
results/tables/summary.tsv, and prints the report; with the config the results were made with,
the experiments' primary families decide (without it, one ad-hoc family over the table).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ouroboros import stats, theory
from ouroboros.errors import OuroborosError
from ouroboros.metrics import PIXEL_METRICS
from ouroboros.paths import SHARED
from ouroboros.tables import RUN_OPTIONS, by_design, is_default
from ouroboros.verdicts import FAILS, HOLDS, INCONCLUSIVE, NO_EFFECT, NOT_APPLICABLE, NOT_RUN, TOO_FEW, VERDICTS, verdict

SEED = 0  # the bootstrap's stream: findings.tsv is the same on every rebuild of the same table
ALPHA = 0.05  # the family-wise error of the primary verdicts (Holm), and 1 − the intervals' level
POWER = 0.8  # the power at which replicates_needed decides
PRIMARY, SECONDARY = "primary", "secondary"
NO_EXPERIMENT = "none"  # the experiment column of rows of data no experiment holds
DEMO = "demo"  # the primary key that names config.yaml's targets (what `snakemake` builds with no target)
COLUMNS = ["experiment", "claim", "role", "scope", "family", "dataset", "runs", "iteration", "feature_extractor",
           "statement", "statistic", "side", "null", "margin", "estimate", "ci_low", "ci_high", "p_value", "p_no_effect",
           "p_holm", "p_holm_no_effect", "holm_family_size", "level", "method", "replicates", "points",
           "replicates_needed", "verdict"]
_HIDDEN = ["_effect", "_spread", "_test"]  # replicates_needed's inputs, and the row's test (null -> two-sided p)


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
    vectors: bool = False  # vectors (source: gaussian), not images
    generator: str = "ddpm"  # the family that trained it (ouroboros.generators): ddpm, flow, gaussian, kde
    root: str = ""  # the `base:` chain's root: datasets of one root share D_1 (family adds a non-DDPM UNet family)

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
    sweeps existed is one replicate (0) of datasets that are their own family; each real-subset
    design is a dataset of its own (``tables.by_design``)."""
    t = tidy.copy()
    if "replicate" not in t:
        t["replicate"] = 0
    t["family"] = t["family"].fillna(t["dataset"]) if "family" in t else t["dataset"]
    t["root"] = t["family"]
    if "generator" in t:
        # a size sweep pools one generator: a flow dataset built on a DDPM one (base:) shares its D_1,
        # and its root, but is a family of its own for III's pooled r and Finding I's slope over N
        t["generator"] = t["generator"].fillna("ddpm")
        other = t["generator"].map({g: _other_unet_family(g) for g in t["generator"].unique()})
        t["family"] = t["family"].where(~other, t["family"] + " · " + t["generator"])
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    return by_design(t)  # replicates with a D_1 of their own are a dataset apart: no claim mixes designs


def _other_unet_family(name: str) -> bool:
    """A UNet generator other than the DDPM (flow): the families the G.* claims compare with it."""
    from ouroboros import generators

    try:
        return name != "ddpm" and generators.get(name).unet
    except OuroborosError:  # a generator of one's own, not loaded here: compared with nothing
        return False


def _options(row) -> str:
    """How a run's label names its options beyond the paper's loop ("fresh 0.5, init previous")."""
    return ", ".join(f"{key.replace('_', ' ')} {getattr(row, key)}" for key in RUN_OPTIONS
                     if not is_default(key, getattr(row, key)))


def run_list(t: pd.DataFrame) -> list[Run]:
    """Every (dataset, run) of the table with its settings."""
    cols = ["family", "dataset", "run", "dataset_size", "paradigm", "selection", "samples_per_iteration", "data_dim",
            "generator", "root"]
    extra = [*RUN_OPTIONS, "data_dim", "generator", "root"]
    first = t.assign(**{k: t[k] if k in t else None for k in extra}).drop_duplicates(["dataset", "run"])
    return [Run(str(r.family), str(r.dataset), str(r.run), float(r.dataset_size), str(r.paradigm), str(r.selection),
                float(r.samples_per_iteration), _options(r), bool(pd.notna(r.data_dim)),
                str(r.generator) if pd.notna(r.generator) else "ddpm", str(r.root) if pd.notna(r.root) else str(r.family))
            for r in first.sort_values(["family", "dataset", "run"])[cols + RUN_OPTIONS].itertuples(index=False)]


def _values(t: pd.DataFrame, run: Run, metric: str) -> pd.DataFrame:
    part = t[(t.dataset == run.dataset) & (t.run == run.name) & (t.metric == metric)]
    return part[["feature_extractor", "replicate", "iteration", "value"]]


# ---------------------------------------------------------------------------------------------
# Rows


def _row(claim: str, scope: str, statement: str, statistic: str, side: str, estimate: float, low: float,
         high: float, level: float, method: str, replicates: int, points: int, *, family: str = "",
         dataset: str = "", runs: str = "", iteration: int | None = None, space: str = "",
         p_value: float = math.nan, null: float = 0.0, primary: bool = True, effect: float = math.nan,
         spread: float = math.nan, applicable: bool = True, test: Callable[[float], float] | None = None) -> dict:
    """One findings row. ``p_value`` is the two-sided test of statistic = null that the interval
    inverts (it enters Holm's correction when the row is primary); ``effect`` and ``spread`` (the
    difference from the null and one replicate's sd, on the test's scale) size the study that would
    decide an inconclusive row; ``applicable=False`` marks a claim whose premise is absent; ``test``
    (null value -> the two-sided p of statistic = that value) gives the equivalence test its p."""
    return {"experiment": "", "claim": claim, "role": PRIMARY if primary else SECONDARY, "scope": scope, "family": family,
            "dataset": dataset, "runs": runs, "iteration": iteration, "feature_extractor": space,
            "statement": statement, "statistic": statistic, "side": side, "null": null, "margin": math.nan,
            "estimate": estimate, "ci_low": low, "ci_high": high, "p_value": p_value, "p_no_effect": math.nan,
            "p_holm": math.nan, "p_holm_no_effect": math.nan, "holm_family_size": math.nan,
            "level": level, "method": method, "replicates": replicates, "points": points,
            "replicates_needed": math.nan,
            "verdict": verdict(low, high, side, null) if applicable else NOT_APPLICABLE,
            "_effect": effect, "_spread": spread, "_test": test}


def _t_row(claim: str, scope: str, statement: str, statistic: str, side: str, iv: stats.Interval, points: int,
           detail: str, *, null: float = 0.0, **where) -> dict:
    """A row from a Student t interval over replicates (its p-value: the one-sample t-test)."""
    method = f"{iv.method} ({detail}, scipy.stats.t.interval), {iv.level:.0%}, n = {iv.n} replicates"
    return _row(claim, scope, statement, statistic, side, iv.mean, iv.low, iv.high, iv.level, method, iv.n,
                points, null=null, p_value=iv.p_value(null), effect=iv.mean - null, spread=iv.sd, test=iv.p_value,
                **where)


def _chain_row(claim: str, scope: str, statement: str, statistic: str, side: str, iv: stats.ChainInterval,
               detail: str = "", *, null: float = 0.0, **where) -> dict:
    """A row from a chain-bootstrap interval (its p-value: the t test the interval inverts)."""
    method = iv.method + (f"; {detail}" if detail else "")
    return _row(claim, scope, statement, statistic, side, iv.estimate, iv.low, iv.high, iv.level, method,
                iv.chains, iv.points, null=null, p_value=iv.p_value(null), effect=iv.effect(null),
                spread=iv.spread, test=iv.p_value, **where)


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
    Trend("I.gs_falls", "generalization_score", False, "<",
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
    """The OLS slope of the metric (or its log) on n over every point of every replicate, with a
    chain-bootstrap interval (``stats.chain_bootstrap``): the iterations of one replicate are one
    chain, so whole replicates are resampled. With every replicate at the same iterations the
    pooled slope is the mean of the per-replicate slopes, and the interval tends to their Student t
    interval; replicates that stopped at different n still pool.

    Every point counts: the slope of GS is taken on GS itself, not its log, so exact copies
    everywhere (GS = 0, the most collapsed points) stay in; the claim is the direction (falls), which
    a slope on GS answers as well as one on log GS. The Vendi score is at least 1 (one distinct
    point), so its log is always defined and its slopes stay on the log scale.
    """
    for run in filter(vanilla_replace, all_runs):
        for trend in TRENDS:
            if run.vectors and trend.metric in PIXEL_METRICS:
                continue  # a yardstick of pixels: no claim about copies of images on vectors
            for space, part in _values(t, run, trend.metric).groupby("feature_extractor"):
                y = np.log(part.value.where(part.value > 0)) if trend.log else part.value  # Vendi ≥ 1: nothing left out
                part = part.assign(y=y).dropna(subset=["y"])
                if part.empty:
                    continue
                x, yv = part.iteration.to_numpy(float), part.y.to_numpy(float)
                what = f"log {trend.metric}" if trend.log else trend.metric
                iv = stats.chain_bootstrap(part.replicate.to_numpy(), lambda w, x=x, y=yv: stats.pooled_slope(w, x, y),
                                           seed=SEED, what=f"the OLS slope of {what} on n")
                n_range = f"n = {part.iteration.min()}…{part.iteration.max()}"
                yield _chain_row(trend.claim, f"{run.dataset} · {run.name} · {n_range} · {space}", trend.statement,
                                 f"slope of {what} on n (OLS over every replicate's points)", trend.side, iv,
                                 family=run.family, dataset=run.dataset, runs=run.name, space=space)


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
            sizes = ", ".join(f"{s:g}" for s in sorted(sp["size"].unique()))  # one point per replicate and size
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


PAPER_R = 0.91  # Fig. 2b: r(entropy of D_n, log GS) over sizes and iterations, CIFAR-10


def correlation_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """Finding III per family and feature space, over the vanilla replace runs of every size.

    - ``III.entropy_gs_r``: Pearson r(entropy of D_n, log GS) > 0 over sizes × iterations;
    - ``III.entropy_gs_r_is_0.91``: the same r equals the paper's 0.91 (side ``=``);
    - ``III.one_line_across_sizes``: the slope of log GS on entropy is the same at every size. The
      statistic is the slope at the largest size minus the slope at the smallest (each an OLS slope
      over that size's points), side ``=`` with null 0; with two sizes that is the interaction
      test of size × entropy, with more it is the contrast along which a drift with N shows most.
      Each size's own slope is a secondary row (``III.slope_at_size``), > 0. One size: not
      applicable.
    - ``III.entropy_beats_variance``: |r(entropy, log GS)| − |r(log trace of D_n's covariance,
      log GS)| > 0. Both sides on the same footing: the same outcome (log GS) and a log-scale
      measure of spread on each side (the KL entropy is d × a mean log distance; log trace is the
      variance's log), so the gap does not measure a transform (Fig. 2b vs 2c).

    Every interval resamples whole replicates (``stats.chain_bootstrap``): a replicate holds one
    chain per size, and its iterations are not independent points. r's interval is formed on
    Fisher's z. Points with GS = 0 have no log and are left out of III (the method says how many).
    """
    families: dict[str, list[Run]] = {}
    for run in filter(vanilla_replace, all_runs):
        families.setdefault(run.family, []).append(run)
    for family, members in families.items():
        for space, p in _points(t, members).groupby("feature_extractor"):
            p = p.dropna(subset=["train_entropy", "generalization_score"])
            zero = int((p.generalization_score <= 0).sum())
            p = p[p.generalization_score > 0].reset_index(drop=True)
            if p.empty:
                continue
            log_gs = np.log(p.generalization_score.to_numpy(float))
            entropy = p.train_entropy.to_numpy(float)
            chains = p.replicate.to_numpy()
            size_of = {r.dataset: r.size for r in members}
            size = p.dataset.map(size_of).to_numpy(float)
            sizes = sorted(set(size))
            scope = f"{family} · N = {', '.join(f'{v:g}' for v in sizes)} · vanilla replace · {space}"
            where = {"family": family, "runs": ", ".join(sorted({r.name for r in members})), "space": space}
            left = f"; {zero} points with GS = 0 left out (no log)" if zero else ""
            r = stats.chain_bootstrap(chains, lambda w, h=entropy, y=log_gs: stats.pooled_r(w, h, y), seed=SEED, fisher=True,
                                      what="Pearson r over sizes × iterations")
            statistic = "Pearson r(train_entropy, log generalization_score)"
            yield _chain_row("III.entropy_gs_r", scope,
                             "Over sizes and iterations, training sets of higher entropy give higher log GS (Fig. 2b).",
                             statistic, ">", r, left.lstrip("; "), **where)
            yield _chain_row(f"III.entropy_gs_r_is_{PAPER_R}", scope,
                             f"Over sizes and iterations, r(entropy of D_n, log GS) is the paper's {PAPER_R} (Fig. 2b).",
                             statistic, "=", r, left.lstrip("; "), null=PAPER_R, **where)
            yield from _one_line(p, chains, entropy, log_gs, size, sizes, scope, where)
            q = p.train_covariance_trace.to_numpy(float)
            if not (np.isfinite(q).all() and (q > 0).all()):
                continue
            log_trace = np.log(q)

            def gap(w, h=entropy, v=log_trace, y=log_gs):
                return np.abs(stats.pooled_r(w, h, y)) - np.abs(stats.pooled_r(w, v, y))

            g = stats.chain_bootstrap(chains, gap, seed=SEED, what="|r(entropy, log GS)| − |r(log trace, log GS)|",
                                      bounds=(-1.0, 1.0))
            beside = stats.chain_bootstrap(chains, lambda w, v=log_trace, y=log_gs: stats.pooled_r(w, v, y), seed=SEED,
                                           fisher=True)
            text = (f"r(log train_covariance_trace, log GS) = {beside.estimate:.3g} [{beside.low:.3g}, "
                    f"{beside.high:.3g}]{left}")
            yield _chain_row("III.entropy_beats_variance", scope,
                             "Entropy of D_n tracks log GS more closely than the variance of D_n does, both against "
                             "log GS with spread on a log scale (Fig. 2b vs 2c).",
                             "|r(train_entropy, log GS)| − |r(log train_covariance_trace, log GS)|", ">", g, text,
                             **where)


def _one_line(p: pd.DataFrame, chains: np.ndarray, entropy: np.ndarray, log_gs: np.ndarray, size: np.ndarray,
              sizes: list[float], scope: str, where: dict) -> Iterator[dict]:
    """III's "one line across sizes" (see ``correlation_claims``): per-size slopes of log GS on
    entropy as secondary rows, the largest size's minus the smallest's as the primary row."""
    statement = "Every dataset size lies on one line: the slope of log GS on the entropy of D_n is the same at every N."
    statistic = "slope of log GS on train_entropy at the largest N − at the smallest N"
    if len(sizes) < 2:
        yield _row("III.one_line_across_sizes", scope, statement, statistic, "=", math.nan, math.nan, math.nan,
                   stats.LEVEL, "one dataset size: no line across sizes to test", int(p.replicate.nunique()),
                   len(p), applicable=False, **where)
        return
    masks = {v: (size == v).astype(float) for v in sizes}
    for v in sizes:
        iv = stats.chain_bootstrap(chains, lambda w, m=masks[v]: stats.pooled_slope(w * m, entropy, log_gs), seed=SEED,
                                   what=f"the OLS slope at N = {v:g}")
        yield _chain_row("III.slope_at_size", f"{scope} · N = {v:g}",
                         f"At N = {v:g}, training sets of higher entropy give higher log GS (one size's line).",
                         "slope of log GS on train_entropy", ">", iv, primary=False, **where)
    small, large = masks[sizes[0]], masks[sizes[-1]]

    def contrast(w):
        return stats.pooled_slope(w * large, entropy, log_gs) - stats.pooled_slope(w * small, entropy, log_gs)

    iv = stats.chain_bootstrap(chains, contrast, seed=SEED, what=f"slope at N = {sizes[-1]:g} − slope at N = {sizes[0]:g}")
    yield _chain_row("III.one_line_across_sizes", scope, statement, statistic, "=", iv, **where)


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
    """The primary row: per replicate, the mean over every n that all replicates reached, then a t
    interval over replicates (the claim is about every iteration); a secondary row at each n."""
    for space, d in differences.groupby("feature_extractor"):
        reached = d.groupby("replicate").iteration.apply(set)
        common = sorted(set.intersection(*reached)) if len(reached) else []
        if common:
            mean = d[d.iteration.isin(common)].groupby("replicate").value.mean()
            iv = stats.t_interval(mean)
            span = f"n = {common[0]}…{common[-1]}" if len(common) > 1 else f"n = {common[0]}"
            yield _t_row(claim, f"{scope} · mean over {span} · {space}", sentence(f"averaged over {span}"),
                         statistic, side, iv, int(d.iteration.isin(common).sum()),
                         f"{detail}, averaged per replicate over {span}", space=space, **where)
        for n, at in d.groupby("iteration"):
            iv = stats.t_interval(at.value)
            yield _t_row(claim, f"{scope} · n = {n} · {space}", sentence(f"at n = {n}"), statistic, side, iv,
                         len(at), detail, iteration=int(n), space=space, primary=False, **where)


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


# ---------------------------------------------------------------------------------------------
# Beyond the paper: another UNet family (flow matching) against the DDPM, the same run on the same D_1


FAMILY_VS_DDPM = [
    Comparison("G.copies_more", "copy_share", ">", "the share of G_n that copies a training image is higher"),
    Comparison("G.gs_lower", "generalization_score", "<", "the generalization score is lower"),
    Comparison("G.entropy_lower", "train_entropy", "<", "the entropy of D_n is lower"),
]


def _across(t: pd.DataFrame, a: Run, b: Run, metric: str) -> pd.DataFrame:
    """a − b per (feature space, replicate, iteration), iteration 1 included: two datasets do not
    share their iteration 1, only its training set."""
    both = _values(t, a, metric).merge(_values(t, b, metric), on=["feature_extractor", "replicate", "iteration"],
                                       suffixes=("_a", "_b"))
    return both.assign(value=both.value_a - both.value_b)


def family_claims(t: pd.DataFrame, all_runs: list[Run]) -> Iterator[dict]:
    """The same run of the loop under two generator families that share D_1: a dataset of another
    UNet family (flow) built on a DDPM dataset with ``base:`` (same root, same N). Replicate r of
    each trains on the same D_1 in either real-subset design (the root's permutation, drawn with r),
    so replicates pair by their index; their random streams differ (seeds derive from the dataset's
    name), as two independent loops on one D_1 should. The primary row is the mean difference over
    every iteration all replicates reached, a t interval over replicates; a row at each n besides.
    The sides say the other family collapses faster than the DDPM (the direction the flow pilot
    showed at N = 48; docs/flow.md); ``fails`` reads the other way."""
    pairs = [(a, b) for a in all_runs for b in all_runs
             if a.generator != b.generator and b.generator == "ddpm" and _other_unet_family(a.generator)
             and a.root == b.root and a.size == b.size and a.name == b.name and a.options == b.options
             and a.vectors == b.vectors]
    for a, b in pairs:
        for c in FAMILY_VS_DDPM:
            if a.vectors and c.metric in PIXEL_METRICS:
                continue
            d = _across(t, a, b, c.metric)
            if d.empty:
                continue

            def sentence(when: str, c=c, a=a, b=b) -> str:
                return (f"Under {a.label}, with {a.generator} ({a.dataset}) {c.says} than with the DDPM ({b.dataset}) "
                        f"on the same D_1, {when}.")

            yield from _per_iteration(
                c.claim, d, c.side, f"{a.dataset} vs {b.dataset} · {a.name}", sentence,
                f"mean difference of {c.metric} ({a.generator} − ddpm)", "paired by replicate (the same D_1)",
                family=a.root, dataset=a.dataset, runs=a.name)


CLAIMS = [trend_claims, size_claims, correlation_claims, selection_claims, real_share_claims, two_n_claims,
          option_claims, family_claims]


def _one_sided(test: Callable[[float], float], estimate: float, x: float, greater: bool) -> float:
    """The p of 'statistic ≤ x' (``greater``) or 'statistic ≥ x' from the two-sided test at x."""
    p2 = test(x)
    if not np.isfinite(p2):
        return math.nan
    return p2 / 2 if (estimate > x if greater else estimate < x) else 1 - p2 / 2


def p_no_effect(test: Callable[[float], float] | None, estimate: float, null: float, margin: float) -> float:
    """Two one-sided tests (TOST) of |statistic − null| ≥ margin: the larger of the two p-values.
    Small: the statistic lies within the margin of the null. NaN without a margin or a test."""
    if test is None or not (np.isfinite(margin) and margin > 0 and np.isfinite(estimate)):
        return math.nan
    with np.errstate(all="ignore"):  # a Fisher-scale test has no p beyond r = ±1: NaN, no decision
        return max(_one_sided(test, estimate, null - margin, True), _one_sided(test, estimate, null + margin, False))


def decide(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm's correction over the hypotheses of the primary rows, the verdicts it allows, and the
    replicates an undecided row needs. Each primary row with a test brings 'statistic = null'
    (``p_value``) and, where it declares a margin, 'the statistic lies at least the margin away'
    (``p_no_effect``, TOST); at most one of a row's two is true, and Holm runs over all of them.

    Side ``>``/``<``: ``holds``/``fails`` (the interval's side) where Holm rejects the null;
    else ``no effect`` where Holm rejects the second; else ``inconclusive``. Side ``=``: ``holds``
    where Holm rejects the second (within the margin of the value), ``fails`` where Holm rejects
    the value, else ``inconclusive``; without a margin, ``holds`` (the value lies in the interval)
    stays and ``fails`` stands only where Holm rejects the value. Secondary rows are left as they are.
    """
    out = table.copy()
    for col in ("margin", "p_no_effect", "p_holm", "p_holm_no_effect", "holm_family_size"):
        out[col] = out[col].astype(float)
    role = out.role == PRIMARY
    out.loc[role, "p_no_effect"] = [p_no_effect(test, e, n, m) for test, e, n, m in
                                    zip(out.loc[role, "_test"], out.loc[role, "estimate"].astype(float),
                                        out.loc[role, "null"].astype(float), out.loc[role, "margin"], strict=True)]
    tested = role & np.isfinite(out.p_value.astype(float))
    equivalent = role & np.isfinite(out.p_no_effect)
    p = np.concatenate([out.loc[tested, "p_value"].astype(float), out.loc[equivalent, "p_no_effect"]])
    adjusted = stats.holm(p) if len(p) else p
    out.loc[tested, "p_holm"] = adjusted[: int(tested.sum())]
    out.loc[equivalent, "p_holm_no_effect"] = adjusted[int(tested.sum()):]
    m = len(p)
    out.loc[role, "holm_family_size"] = m
    differs, within = tested & (out.p_holm < alpha), equivalent & (out.p_holm_no_effect < alpha)
    open_verdict = out.verdict.isin([HOLDS, FAILS, INCONCLUSIVE])
    directional = out.side.isin([">", "<"])
    out.loc[tested & directional & ~differs & open_verdict, "verdict"] = INCONCLUSIVE
    out.loc[directional & ~differs & within & open_verdict, "verdict"] = NO_EFFECT
    margin = np.isfinite(out.margin)
    equality = tested & (out.side == "=")
    out.loc[equality & ~margin & ~differs & (out.verdict == FAILS), "verdict"] = INCONCLUSIVE
    out.loc[equality & margin & open_verdict, "verdict"] = INCONCLUSIVE
    out.loc[equality & margin & differs & open_verdict, "verdict"] = FAILS
    out.loc[equality & margin & within & open_verdict, "verdict"] = HOLDS
    open_rows = role & (out.verdict == INCONCLUSIVE)
    rows = out.loc[open_rows]
    out.loc[open_rows, "replicates_needed"] = [
        min(replicates_needed(e, s, max(m, 1), alpha), no_effect_needed(e, s, x - n, g, max(m, 1), alpha))
        for e, s, x, n, g in zip(rows._effect, rows._spread, rows.estimate.astype(float), rows.null.astype(float),
                                 rows.margin, strict=True)]
    return out


def replicates_needed(effect: float, spread: float, family_size: int, alpha: float = ALPHA) -> float:
    """The replicates at which a study whose true effect and spread are the observed ones would
    decide the row with 80 % power: the paired (one-sample) t-test, power from the noncentral t
    (``stats.replicates_for_power``), at level alpha / family_size, the level at which Holm decides a
    row whatever the other rows do.

    For a t row, effect = mean − null and spread = the sd over replicates. For a chain-bootstrap
    row (a pooled slope or r), the chain bootstrap's standard error stands in for the sd of a mean
    over chains: spread = se·√G and effect = estimate − null, both on the scale the interval is
    formed on (Fisher's z for r); the study is then read as a t test over chains, which is how the
    interval itself is formed. inf: even 1000 replicates would not decide (an effect near 0).
    """
    return stats.replicates_for_power(effect, spread, alpha=alpha / family_size, power=POWER)


def no_effect_needed(effect: float, spread: float, distance: float, margin: float, family_size: int,
                     alpha: float = ALPHA) -> float:
    """The replicates at which the same study would decide *no effect* (TOST within ±margin) with
    80 % power, where the observed effect lies inside the margin; inf where it does not (or no
    margin is declared). An estimate near 0 needs no end of replicates to take a side, but a finite
    number to be shown negligible: the smaller of the two is the row's ``replicates_needed``.

    Each one-sided test of TOST runs at alpha / family_size (Holm's strictest step); the nearer
    bound decides its power, so the study is read as a one-sided t-test of the distance to that
    bound (margin − |effect|): a two-sided test at twice the level. An approximation that the
    farther bound, rejected too with near certainty at these sizes, makes slightly optimistic.
    ``distance`` (estimate − null) guards the units: the margin is in the statistic's, and a row
    whose test runs on another scale (Fisher's z for r) is sized for its direction alone."""
    if not (np.isfinite(margin) and margin > 0 and np.isfinite(effect)):
        return math.inf
    if not math.isclose(effect, distance, rel_tol=1e-9, abs_tol=1e-12) or abs(effect) >= margin:
        return math.inf
    return stats.replicates_for_power(margin - abs(effect), spread, alpha=min(2 * alpha / family_size, 1.0),
                                      power=POWER)


# ---------------------------------------------------------------------------------------------
# Experiments: what each one holds, and its primary family, from config.yaml


SCOPE_KEYS = ("dataset", "family", "runs", "space")  # what a primary claim may name to pick its one scope


@dataclass(frozen=True)
class Primary:
    """A claim an experiment declares primary before its run, at one scope, with its equivalence
    margin (in the statistic's units; NaN: no margin, so no row of it can end ``no effect``)."""

    claim: str
    where: tuple[tuple[str, str], ...] = ()  # (key of SCOPE_KEYS, value) the row must match
    margin: float = math.nan

    def matches(self, row: Mapping[str, Any]) -> bool:
        column = {"space": "feature_extractor"}
        return row["claim"] == self.claim and all(str(row[column.get(k, k)]) == v for k, v in self.where)

    @property
    def scope(self) -> str:
        return " · ".join(v for _, v in self.where) or "every scope"


@dataclass(frozen=True)
class Experiment:
    name: str
    groups: tuple[Mapping[str, Any], ...]  # config.yaml's target groups: datasets, runs, iterations, replicates
    primaries: tuple[Primary, ...] = ()

    def select(self, tidy: pd.DataFrame) -> pd.DataFrame:
        """The rows of the tidy table this experiment's targets hold, and nothing else."""
        keep = pd.Series(False, index=tidy.index)
        replicate = tidy["replicate"] if "replicate" in tidy else pd.Series(0, index=tidy.index)
        design = tidy["real_subset"].fillna(SHARED) if "real_subset" in tidy else pd.Series(SHARED, index=tidy.index)
        for g in self.groups:
            keep |= (tidy.dataset.isin(g["datasets"]) & tidy.run.isin(g["runs"])
                     & (replicate < int(g.get("replicates", 1))) & (tidy.iteration <= int(g["iterations"]))
                     # replicate 0 trains on the dataset's D_1 in either design (tables.by_design)
                     & ((design == g.get("real_subset", SHARED)) | (replicate == 0)))
        return tidy[keep]


def experiments_of(config: Mapping[str, Any]) -> list[Experiment]:
    """Every experiment of config.yaml (``demo`` is ``targets``) and every one the workflow ships in
    experiments/*.yaml, passed or not (ouroboros.experiments), with its declared primary claims."""
    from ouroboros import experiments

    config = experiments.for_findings(config)
    groups = {name: tuple(gs) for name, gs in (config.get("experiments") or {}).items()}
    if config.get("targets"):
        groups = {DEMO: (config["targets"],), **groups}
    declared = config.get("primary") or {}
    for name in declared:
        if name not in groups:
            raise OuroborosError(f"config.yaml: primary.{name} names no experiment; experiments: {sorted(groups)} "
                                 f"({DEMO} is targets)")
    out = []
    for name, gs in groups.items():
        primaries = []
        for i, spec in enumerate(declared.get(name) or []):
            where = tuple((k, str(spec[k])) for k in SCOPE_KEYS if k in spec)
            primaries.append(Primary(str(spec["claim"]), where, float(spec.get("margin", math.nan))))
            if len(set(primaries)) < len(primaries):
                raise OuroborosError(f"config.yaml: primary.{name}[{i}] repeats a claim and scope; remove one")
        out.append(Experiment(name, gs, tuple(primaries)))
    return out


def _roles(rows: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """The experiment's declared claims primary (a ``not run`` row for each that has no row), every
    other row secondary."""
    candidates = rows[rows.role == PRIMARY]  # each claim's row per scope (not per iteration or size)
    out = rows.assign(role=SECONDARY, experiment=experiment.name)
    missing = []
    for i, primary in enumerate(experiment.primaries):
        hits = [k for k, r in candidates.iterrows() if primary.matches(r)]
        tested = [k for k in hits if np.isfinite(float(rows.at[k, "p_value"]))]
        if len(tested) > 1:
            scopes = "; ".join(rows.loc[tested, "scope"])
            raise OuroborosError(f"config.yaml: primary.{experiment.name}[{i}] ({primary.claim}) matches {len(tested)} "
                                 f"rows; name its {', '.join(SCOPE_KEYS)} to pick one of: {scopes}")
        out.loc[hits, ["role", "margin"]] = [PRIMARY, primary.margin]
        if not hits:
            missing.append(_row(primary.claim, primary.scope, "A primary claim of this experiment: none of its data "
                                "are in results/.", "", ">", math.nan, math.nan, math.nan, math.nan,
                                "no row: its runs are not in results/", 0, 0, applicable=False)
                           | {"experiment": experiment.name, "margin": primary.margin, "verdict": NOT_RUN})
    return pd.concat([out, pd.DataFrame(missing, columns=out.columns)]) if missing else out


def _rows(tidy: pd.DataFrame, results: str | Path | None) -> pd.DataFrame:
    """Every claim's rows for one tidy table (default roles: each claim's row per scope primary)."""
    t = complete(tidy)
    if t.empty:
        return pd.DataFrame(columns=COLUMNS + _HIDDEN)
    all_runs = run_list(t)
    rows = [row for claims in CLAIMS for row in claims(t, all_runs)] + theory.claims(t, results)
    return pd.DataFrame(rows, columns=COLUMNS + _HIDDEN)


def findings(tidy: pd.DataFrame, results: str | Path | None = None,
             config: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per claim × scope (dataset or family, runs, iteration, feature space), per
    experiment: primary rows first, experiment by experiment, each family decided alone (``decide``),
    then the secondary rows. With ``results`` (the results/ folder), also the theory rows
    (ouroboros.theory), which read D_1 from it. Without ``config``: one ad-hoc family over the table."""
    if tidy.empty:
        return pd.DataFrame(columns=COLUMNS)
    if config is None:
        parts = [decide(_rows(tidy, results))]
    else:
        parts, seen = [], pd.Series(False, index=tidy.index)
        for experiment in experiments_of(config):
            part = experiment.select(tidy)
            seen |= tidy.index.isin(part.index)
            if not part.empty:
                parts.append(decide(_roles(_rows(part, results), experiment)))
        if not seen.all():  # data of no experiment: secondary rows, where no experiment has the same scope
            rest = _rows(tidy, results).assign(role=SECONDARY, experiment=NO_EXPERIMENT)
            known = {(r.claim, r.scope) for p in parts for r in p.itertuples()}
            parts.append(rest[[(r.claim, r.scope) not in known for r in rest.itertuples()]])
    out = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    out = out.sort_values("role", kind="stable", key=lambda r: r != PRIMARY).reset_index(drop=True)
    out["iteration"] = out["iteration"].astype("Int64")
    out["holm_family_size"] = out["holm_family_size"].astype("Int64")
    return out[COLUMNS]


# ---------------------------------------------------------------------------------------------
# Report and command line


def _number(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v:.3g}"


def _needed(v: float) -> str:
    """replicates_needed as read: '—' where the row needs none (or none can be computed)."""
    if not isinstance(v, int | float) or math.isnan(v):
        return "—"
    return "> 1000" if math.isinf(v) else f"{int(v)}"


def _p(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v:.2g}"


def _interval(r) -> str:
    return f"{_number(r.estimate)} [{_number(r.ci_low)}, {_number(r.ci_high)}]"


def _tally(rows: pd.DataFrame) -> str:
    counts = rows.verdict.value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)) or "none"


def _claimed(r) -> str:
    margin = f" (margin {r.margin:g})" if isinstance(r.margin, float) and np.isfinite(r.margin) else ""
    return f"{r.side} {r.null:g}{margin}"


def _family_line(name: str, primary: pd.DataFrame) -> str:
    m = int(primary.holm_family_size.dropna().max()) if primary.holm_family_size.notna().any() else 0
    who = "the ad-hoc family of this table" if not name else f"experiment `{name}`"
    if not m:  # the T rows: a Bonferroni family of their own (ouroboros.theory), no Holm
        return f"{who}: {len(primary)} primary findings, {_tally(primary)}."
    return (f"{who}: {len(primary)} primary findings, {_tally(primary)}; Holm's correction over its {m} hypotheses "
            f"(each row's 'statistic = null' and, with a margin, its equivalence test) keeps their family-wise error "
            f"at {ALPHA:.0%}.")


def _families(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    primary = table[table.role == PRIMARY]
    return [(str(name), rows) for name, rows in primary.groupby(primary.experiment.fillna(""), sort=False)]


def _headline(table: pd.DataFrame) -> list[str]:
    """The lines above the tables: each experiment's primary family and its tally."""
    lines = [f"Intervals at {1 - ALPHA:.0%} (T rows: each at its Bonferroni level, in findings.tsv); Holm's correction "
             "within each experiment's "
             "primary family. Each experiment's primary claims are declared in config.yaml (`primary`) before its run "
             "and decided within that experiment only: holds / "
             "fails (the interval on the claimed / the other side), no effect (within the declared margin of the null: "
             "two one-sided tests), inconclusive. Every other row is secondary: exploratory, unadjusted."]
    lines += [f"- {_family_line(name, rows)}" for name, rows in _families(table)]
    if (table.verdict == TOO_FEW).any():
        lines.append(f"{int((table.verdict == TOO_FEW).sum())} rows say {TOO_FEW}: every interval here is over "
                     "replicates, so one replicate decides nothing; a second replicate gives each paired difference "
                     "and slope a Student t interval and each pooled statistic a chain-bootstrap interval (1 degree "
                     "of freedom, wide), a third and more narrow them (`targets: replicates: 3`).")
    return lines


def report(table: pd.DataFrame) -> str:
    """Markdown for the terminal and findings.md: the primary rows of each experiment first (claim,
    scope, estimate [low, high], Holm-adjusted p, replicates, replicates needed, verdict, statement),
    then the secondary rows (per iteration, per size, undeclared; unadjusted, never changing a
    primary verdict)."""
    if table.empty:
        return "No claim could be checked: results/ holds none of the runs the claims compare."
    lines = [*_headline(table)]
    for name, rows in _families(table):
        lines += ["", f"## Primary findings: {name or 'this table'}", "",
                  "| claim | scope | claimed | estimate [low, high] | p (Holm) | p no effect (Holm) | n | replicates needed "
                  "| verdict | statement |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples(index=False):
            n = f"{r.replicates} rep" + (f", {r.points} pts" if r.points != r.replicates else "")
            lines.append(f"| {r.claim} | {r.scope} | {_claimed(r)} | {_interval(r)} | {_p(r.p_holm)} | "
                         f"{_p(r.p_holm_no_effect)} | {n} | {_needed(r.replicates_needed)} | {r.verdict} | {r.statement} |")
    secondary = table[table.role == SECONDARY]
    if not secondary.empty:
        lines += ["", "## Secondary rows (exploratory)", "",
                  f"Per iteration, per size and every claim no experiment declared: {_tally(secondary)}. Unadjusted "
                  "95 % intervals, each read alone; they never change a primary verdict.", "",
                  "| experiment | claim | scope | claimed | estimate [low, high] | p | n | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in secondary.itertuples(index=False):
            n = f"{r.replicates} rep" + (f", {r.points} pts" if r.points != r.replicates else "")
            lines.append(f"| {r.experiment if isinstance(r.experiment, str) else ''} | {r.claim} | {r.scope} | "
                         f"{r.side} {r.null:g} | {_interval(r)} | {_p(r.p_value)} | {n} | {r.verdict} |")
    return "\n".join(lines)


def _rst(text: str) -> str:
    """Plain text for an rst table cell: inline markup characters escaped."""
    return "".join("\\" + c if c in "\\*`_|" else c for c in str(text))


def report_rst(table: pd.DataFrame) -> str:
    """The primary findings of each experiment as reStructuredText, for the first screen of
    ``snakemake --report`` (workflow/report/workflow.rst includes it): verdict, estimate, interval,
    Holm's p and the replicates needed per claim and scope."""
    lines = ["Primary findings", "----------------", ""]
    if table.empty:
        return "\n".join([*lines, "No claim could be checked: results/ holds none of the runs the claims compare.", ""])
    for line in _headline(table)[1:]:  # the families' tallies, a paragraph each; the verdicts' words are in the caption
        lines += [_rst(line.removeprefix("- ")), ""]
    for name, rows in _families(table):
        lines += ["", _rst(f"Experiment {name}" if name else "This table"), "",
                  ".. list-table::", "   :header-rows: 1", "   :widths: 10 20 36 20 7 7", "",
                  "   * - verdict", "     - claim", "     - scope", "     - estimate [95 % interval]", "     - p (Holm)",
                  "     - replicates (needed)"]
        for r in rows.itertuples(index=False):
            needed = _needed(r.replicates_needed)
            cells = [f"**{r.verdict}**", _rst(f"{r.claim} ({_claimed(r)})"), _rst(r.scope), _rst(_interval(r)),
                     _p(r.p_holm), f"{r.replicates}" + (f" ({_rst(needed)})" if needed != "—" else "")]
            lines += [f"   * - {cells[0]}"] + [f"     - {c}" for c in cells[1:]]
    n_secondary = int((table.role == SECONDARY).sum())
    lines += ["", _rst(f"{n_secondary} secondary rows (exploratory: per iteration, per size, undeclared) and each "
                       "claim's statement and method are in findings.tsv under Findings; the figures are under Figures."), ""]
    return "\n".join(lines)


def load(results: str | Path) -> pd.DataFrame:
    """results/tables/metrics.tsv, or the tidy table of what results/ holds when it is absent."""
    table = Path(results) / "tables" / "metrics.tsv"
    if table.is_file():
        return pd.read_csv(table, sep="\t")
    from ouroboros.tables import scan, tidy

    return tidy(scan(results))


def write(tidy: pd.DataFrame, findings_out: str | Path, summary_out: str | Path,
          results: str | Path | None = None, config: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """findings.tsv, the readable findings.md and the report's findings.rst beside it, and
    summary.tsv from a tidy table."""
    from ouroboros.io import save_text

    table = findings(tidy, results, config)
    text = report(table)
    save_text(findings_out, table.to_csv(sep="\t", index=False))
    save_text(Path(findings_out).with_suffix(".md"), text + "\n")
    save_text(Path(findings_out).with_suffix(".rst"), report_rst(table))
    save_text(summary_out, stats.summary(complete(tidy)).to_csv(sep="\t", index=False))
    print(text)
    return table


def stage(table: str, findings_out: str, summary_out: str, config: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The workflow's findings step: from results/tables/metrics.tsv, with config.yaml's experiments."""
    return write(pd.read_csv(table, sep="\t"), findings_out, summary_out, results=Path(table).parent.parent,
                 config=config)


def run(args) -> int:
    """``ouroboros findings [results/] [config.yaml [experiments/X.yaml ...]]`` and ``python -m
    ouroboros.findings`` (their parser: ouroboros.cli.findings_arguments)."""
    from ouroboros import experiments

    results = Path(args.results)
    config = None
    if args.config:
        for file in map(Path, args.config):
            if not file.is_file():
                raise OuroborosError(f"{file}: no such config; name the config.yaml the results were made with, then "
                                     "any --configfile files the run was given")
        config = experiments.load(*args.config)
        # an experiment file alone names runs that only config.yaml defines: its rows would match no
        # results directory (accumulate-greedy is greedy/) and its primaries would read "not run"
        if not config.get("runs"):
            raise OuroborosError(f"{args.config[0]}: defines no runs; pass config.yaml first, then the --configfile "
                                 f"files the run was given (e.g. `ouroboros findings results config.yaml {args.config[0]}`)")
    write(load(results), results / "tables" / "findings.tsv", results / "tables" / "summary.tsv", results=results,
          config=config)
    return 0


if __name__ == "__main__":
    from ouroboros.cli import module_main

    sys.exit(module_main("findings"))
