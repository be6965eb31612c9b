"""Metrics over iterations, one line per dataset × run, drawn from the tidy table.

Usage outside Snakemake: ``python -m ouroboros.figures results/`` (after ouroboros.tables).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

# figure name → (metric in the tidy table, y label, log scale)
FIGURES = {
    "generalization_score": ("generalization_score", "generalization score GS(n)", True),
    "entropy": ("train_entropy", "entropy of D_n (nats, KL estimator)", False),
    "fid": ("fid", "FID of G_n", False),
    "real_share": ("real_share", "share of real images in D_n", False),
}


def plot(table: pd.DataFrame, name: str, out: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    metric, label, log = FIGURES[name]
    data = table[table.metric == metric]
    datasets = sorted(data.dataset.unique()) or ["(no data)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        part = data[data.dataset == dataset]
        for run, line in part.groupby("run"):
            line = line.sort_values("iteration")
            ax.plot(line.iteration, line.value.astype(float), marker="o", label=run)
        if name == "real_share" and len(part):
            n = range(1, int(part.iteration.max()) + 1)
            ax.plot(list(n), [1 / i for i in n], "r--", label="1/n")
        ax.set(title=dataset, xlabel="iteration n", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log and len(part):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
        if len(part):
            ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def stage(table_path: str, outputs: list[str]) -> None:
    table = pd.read_csv(table_path, sep="\t")
    for out in outputs:
        plot(table, Path(out).stem, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    results = sys.argv[1] if len(sys.argv) > 1 else "results"
    stage(f"{results}/tables/metrics.tsv", [f"{results}/figures/{name}.png" for name in FIGURES])
