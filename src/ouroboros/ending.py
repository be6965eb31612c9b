"""What ``ouroboros report`` (and so ``make demo``) ends on: where the report is, a headline table
and the primary findings, in a few dozen lines a person reads at the end of a run.

    report    /…/report.html  (first screen: the sample grids, the nearest neighbours, the primary findings)
    ...
    at the last iteration of each run (mean over replicates)
    dataset  run         n  replicates  copy share  GS     entropy of D_n
    digits   replace     4  1           0.62        0.031  -40.2

The table and the findings come from results/tables/ (metrics.tsv, findings.tsv), which the
workflow's tables and findings steps write; nothing here computes a statistic of its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

# (metric, column): the collapse at a glance. The copy share rises, GS and the entropy of D_n fall.
HEADLINE = [("copy_share", "copy share"), ("generalization_score", "GS"), ("train_entropy", "entropy of D_n")]
MAX_FINDINGS = 12  # primary rows shown; the rest are in findings.md, which the ending names
MAX_RUNS = 15  # headline rows shown (the science experiment has dozens of dataset × run); the rest: summary.tsv
MAX_LINES = 40  # the ending's length at most (tests/test_cli.py holds it to this)


def headline(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and run, its last iteration: the replicates' mean of each HEADLINE metric."""
    part = tidy[tidy.metric.isin([m for m, _ in HEADLINE])]
    if part.empty:
        return pd.DataFrame(columns=["dataset", "run", "n", "replicates", *(c for _, c in HEADLINE)])
    last = part.groupby(["dataset", "run"]).iteration.transform("max")
    part = part[part.iteration == last]
    wide = part.pivot_table(index=["dataset", "run", "iteration"], columns="metric", values="value", aggfunc="mean")
    replicates = part.groupby(["dataset", "run", "iteration"]).replicate.nunique().rename("replicates")
    wide = wide.join(replicates).reset_index().rename(columns={"iteration": "n", **dict(HEADLINE)})
    return wide[["dataset", "run", "n", "replicates", *(c for m, c in HEADLINE if m in part.metric.values)]]


def _cell(v) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def aligned(frame: pd.DataFrame) -> list[str]:
    """The table as left-aligned columns two spaces apart (a header that holds spaces stays one column)."""
    cells = [list(map(str, frame.columns)), *([_cell(v) for v in row] for row in frame.itertuples(index=False))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(frame.columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def findings_lines(table: pd.DataFrame, limit: int = MAX_FINDINGS) -> list[str]:
    """Each primary row in one line (verdict: claim, scope, estimate [interval]), then one sentence on
    what replicates add."""
    from ouroboros.findings import PRIMARY, _interval, _number
    from ouroboros.verdicts import TOO_FEW

    primary = table[table.role == PRIMARY]
    if primary.empty:
        return ["no primary findings: no experiment's declared claims (config.yaml: primary) have their runs in results/"]
    lines = []
    for name, rows in primary.groupby(primary.experiment.fillna("none"), sort=False):
        lines.append(f"primary findings of experiment {name} (config.yaml: primary: {name}):")
        lines += [f"  {r.verdict}: {r.claim}, {r.scope}: "
                  + (_interval(r) if np.isfinite(r.ci_low) else f"{_number(r.estimate)} (no interval)")
                  for r in rows.itertuples(index=False)]
    if len(lines) > limit:
        lines = [*lines[:limit], f"  ... and {len(lines) - limit} more lines: findings.md"]
    if (primary.verdict == TOO_FEW).any():
        lines.append("One replicate gives no interval, so these say 'too few replicates': with `replicates: 3` under "
                     "`targets:` in config.yaml each claim gets a 95 % interval over replicates and a verdict (holds, "
                     "fails, no effect or inconclusive).")
    else:
        lines.append("More replicates narrow the intervals: findings.tsv's replicates_needed says how many would decide "
                     "an inconclusive row.")
    return lines


def text(workdir: Path, report: Path, log: Path | None = None) -> str:
    """The ending: the report's path, where the figures and tables are, the headline table and the
    primary findings."""
    results = workdir / "results"
    tables, figures = results / "tables", results / "figures"
    shown = sorted(figures.glob("*.png")) if figures.is_dir() else []
    lines = [f"report    {report.absolute()}  (its first screen: the sample grids, the nearest neighbours and the "
             "primary findings)",
             f"figures   {figures.absolute()}/  ({len(shown)} figures, each as PNG and PDF)",
             f"tables    {tables.absolute()}/  (metrics.tsv, summary.tsv; findings.md: every claim, primary first)"]
    if log is not None:
        lines.append(f"snakemake's report log: {log}")
    metrics = tables / "metrics.tsv"
    if metrics.is_file():
        head = headline(pd.read_csv(metrics, sep="\t"))
        if not head.empty:
            lines += ["", "at the last iteration of each run (mean over replicates):", *aligned(head.head(MAX_RUNS))]
            if len(head) > MAX_RUNS:
                lines.append(f"... and {len(head) - MAX_RUNS} more runs: summary.tsv")
    findings = tables / "findings.tsv"
    if findings.is_file():
        lines += ["", *findings_lines(pd.read_csv(findings, sep="\t"))]
    return "\n".join(lines)
