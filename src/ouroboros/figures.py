"""The paper's figures, regenerated from whatever results/ holds; never trains anything.

Each figure is drawn from the tidy table (ouroboros.tables) and, for image figures, from the
samples, features and manifests on disk (ouroboros.grids). A figure whose runs are missing is
skipped with one log line saying which. Every figure is written to results/figures/ as PNG and
PDF, with a wide TSV beside it holding exactly the numbers it plots. The training loss of each run
(ouroboros.loss_curves) is drawn from its ``train-stats.jsonl`` files, not from the table.

Evidence: a line is the mean over replicates with a shaded 95 % Student-t band when a point has
≥ 2 replicates, the plain line otherwise; each run keeps one colour in every figure. Statistics
that pool points (Fig. 2b's Pearson r) pool one family only: a base dataset and its size sweep,
in one feature space, with the findings' chain-bootstrap interval (whole replicates resampled).

Usage outside Snakemake: ``python -m ouroboros.figures results/``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ouroboros import grids, loss_curves, stats
from ouroboros.metrics import PIXEL_METRICS
from ouroboros.tables import by_design, paper_loop, scan, tidy

Drawn = tuple[object, pd.DataFrame]  # (matplotlib figure, the wide table of what it plots)

LEVEL = stats.LEVEL  # one confidence level for figures, summary and findings
BAND_METHOD = "Student t over replicates (scipy.stats.t.interval); none with one replicate"
BOOTSTRAP_SEED = 0
BOOTSTRAP_METHOD = ("chain bootstrap: whole replicate chains resampled, 1999 resamples, seed 0; Fisher z ± t_{G−1} · se "
                    "(ouroboros.stats.chain_bootstrap, as the findings' III.entropy_gs_r)")
STATS = ["mean", "ci_low", "ci_high", "n"]


_plt = grids.pyplot


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_y(ax) -> None:
    from matplotlib.ticker import ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())


def with_defaults(t: pd.DataFrame) -> pd.DataFrame:
    """Tables from before replicates and size sweeps: replicate 0, and each dataset its own family."""
    t = t.copy()
    t["replicate"] = t["replicate"].fillna(0).astype(int) if "replicate" in t else 0
    t["family"] = t["family"].fillna(t.dataset) if "family" in t else t.dataset
    return t


# --- colours: one per run, the same in every figure ----------------------------------------------

def run_colours(runs) -> dict[str, object]:
    """Run name → colour, by sorted name: the whole table's runs, so every figure agrees."""
    import matplotlib

    names = sorted(set(runs))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _size_labels(data: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, object]]:
    """A label per dataset of a size sweep, "name (N=…)", coloured from small (dark) to large."""
    import matplotlib

    data = data.assign(label=data.dataset + " (N=" + data.dataset_size.astype(int).astype(str) + ")")
    order = data.drop_duplicates("label").sort_values(["dataset_size", "label"]).label.tolist()
    cmap = matplotlib.colormaps["viridis"]
    return data, {label: cmap(i / max(1, len(order) - 1) * 0.9) for i, label in enumerate(order)}


# --- statistics -----------------------------------------------------------------------------------

def band(values) -> dict[str, float]:
    """Mean of replicate values with a 95 % Student-t interval (NaN with one replicate)."""
    i = stats.t_interval(values, LEVEL)
    return {"mean": i.mean, "ci_low": i.low, "ci_high": i.high, "n": i.n}


def summarise(values: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per group of ``by``: the band of its ``value`` column over replicates."""
    rows = [dict(zip(by, key, strict=True)) | band(group.value) for key, group in values.groupby(by, sort=True)]
    return pd.DataFrame(rows, columns=by + STATS)


def correlation(x, y, chains) -> dict[str, float]:
    """Pearson r over the points (x_i, y_i) with the findings' 95 % chain-bootstrap interval (whole
    replicates resampled: the iterations of one replicate are not independent points) and the
    p-value of r = 0 that the interval inverts; both NaN with one replicate."""
    x, y, chains = np.asarray(x, float), np.asarray(y, float), np.asarray(chains)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    c = stats.chain_bootstrap(chains[keep], lambda w: stats.pooled_r(w, x, y), seed=BOOTSTRAP_SEED, level=LEVEL,
                              fisher=True)
    return {"r": c.estimate, "p": c.p_value(0.0), "ci_low": c.low, "ci_high": c.high, "n": c.points}


# --- line figures ---------------------------------------------------------------------------------

def _lines(ax, data: pd.DataFrame, metric: str, by: str, ylabel: str, colours: dict, log: bool = False) -> pd.DataFrame:
    """One line per value of column ``by`` (in the order of ``colours``), over iteration: the mean
    over replicates, with its band where ≥ 2 replicates; returns the wide table of what it draws."""
    points = summarise(data[data.metric == metric], [by, "iteration"])
    for label in (c for c in colours if c in set(points[by])):
        line = points[points[by] == label]
        ax.plot(line.iteration, line["mean"], marker="o", ms=3, color=colours[label], label=label)
        if (line.n >= 2).any():
            ax.fill_between(line.iteration, line.ci_low, line.ci_high, color=colours[label], alpha=0.2, lw=0)
    ax.set(xlabel="iteration n", ylabel=ylabel)
    _integer_x(ax)
    if log and len(points):
        _log_y(ax)
    if len(points):
        ax.legend(fontsize=7)
    wide = points.astype({"n": "Int64"}).pivot(index="iteration", columns=by, values=STATS).sort_index()
    wide.columns = [f"{metric}: {label}: {stat}" for stat, label in wide.columns]
    return wide[sorted(wide.columns, key=lambda c: (c.rsplit(": ", 1)[0], STATS.index(c.rsplit(": ", 1)[1])))]


def _noted(wides: list[pd.DataFrame]) -> pd.DataFrame:
    """The wide tables of a figure's panels, with the level and method of their intervals."""
    return pd.concat(wides, axis=1).assign(ci_level=LEVEL, ci_method=BAND_METHOD)


def _vanilla_replace(t: pd.DataFrame) -> pd.DataFrame:
    return t[(t.paradigm == "replace") & (t.selection == "all") & (t.samples_per_iteration == 1) & paper_loop(t)]


NO_REPLACE = "no vanilla replace run (paradigm replace, selection all, samples 1)"


def _families(t: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(family, feature space, its metrics rows) of the vanilla replace runs: what may be pooled."""
    # the pixel-space copy measures would form a group of their own in a dataset of another space
    data = _vanilla_replace(t[(t.file == "metrics.json") & ~t.metric.isin(PIXEL_METRICS)])
    return [(f, s, part) for (f, s), part in data.groupby(["family", "feature_extractor"], sort=True)]


def _family_title(family: str, space: str) -> str:
    return f"family {family} ({space})"


def generalization_by_size(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 1 (right): GS over iterations under replace, one panel per family, one line per size."""
    families = _families(t)
    if not families:
        return NO_REPLACE
    fig, axes = _plt().subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    wides = []
    for ax, (family, space, part) in zip(axes[0], families, strict=True):
        data, colours = _size_labels(part)
        wide = _lines(ax, data, "generalization_score", "label", "generalization score GS(n)", colours, log=True)
        ax.set_title(f"generalization to memorization (replace)\n{_family_title(family, space)}", fontsize=9)
        wides.append(wide.add_prefix(f"{family}: "))
    fig.tight_layout()
    return fig, _noted(wides)


def entropy_and_generalization(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 2 per family: (a) entropy of D_n over iterations; (b) entropy vs log GS and (c) variance
    vs GS over the family's points, with Pearson r, p and a chain-bootstrap 95 % interval."""
    need = ["train_entropy", "train_covariance_trace", "generalization_score"]
    cases = []
    for family, space, part in _families(t):
        points = part.pivot_table(index=["dataset", "dataset_size", "replicate", "iteration"], columns="metric",
                                  values="value", aggfunc="first").reset_index()
        if set(need) <= set(points.columns) and len(points.dropna(subset=need)) >= 3:
            cases.append((family, space, part, points.dropna(subset=need)))
    if not cases:
        return "no family with 3 or more vanilla replace points holding entropy, GS and variance"
    fig, axes = _plt().subplots(len(cases), 3, figsize=(14, 3.9 * len(cases)), squeeze=False)
    tables = []
    for row, (family, space, part, points) in zip(axes, cases, strict=True):
        data, colours = _size_labels(part)
        lines = summarise(data[data.metric == "train_entropy"], ["dataset", "iteration"])
        _lines(row[0], data, "train_entropy", "label", "entropy of D_n (nats)", colours)
        row[0].set_title(f"(a) entropy of the training set\n{_family_title(family, space)}", fontsize=9)
        out = points[["dataset", "dataset_size", "replicate", "iteration"] + need].copy()
        out.insert(0, "feature_extractor", space)
        out.insert(0, "family", family)
        labelled, _ = _size_labels(out)
        for ax, x, name, panel in ((row[1], "train_entropy", "entropy of D_n (nats)", "b"),
                                   (row[2], "train_covariance_trace", "trace of covariance of D_n", "c")):
            gs = out.generalization_score.to_numpy(float)
            c = correlation(out[x], np.log(gs) if x == "train_entropy" else gs, out.replicate)
            for label, colour in colours.items():
                pts = labelled[labelled.label == label]
                ax.scatter(pts[x], pts.generalization_score, label=label, s=18, color=colour)
            if x == "train_entropy":
                _log_y(ax)
            ax.set(xlabel=name, ylabel="GS(n)" + (" (log)" if x == "train_entropy" else ""))
            ax.set_title(f"({panel}) {_family_title(family, space)}\nPearson r = {c['r']:.2f} (95 % chain-bootstrap CI "
                         f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}]), p = {c['p']:.1e}, n = {c['n']}", fontsize=9)
            ax.legend(fontsize=7)
            for key in ("r", "p", "ci_low", "ci_high"):
                out[f"pearson_{key}_{x}"] = c[key]
        out["pearson_n"] = len(out)
        out["pearson_ci_level"] = LEVEL
        out["pearson_ci_method"] = BOOTSTRAP_METHOD
        # panel (a): the entropy line each point belongs to (mean and band over replicates)
        lines = lines.rename(columns={s: f"entropy_line_{s}" for s in STATS})
        tables.append(out.merge(lines, on=["dataset", "iteration"], how="left").assign(
            entropy_line_ci_level=LEVEL, entropy_line_ci_method=BAND_METHOD))
    fig.tight_layout()
    return fig, pd.concat(tables, ignore_index=True)


Panel = tuple[str, str]  # (metric of the tidy table, its y-axis label): one row of a per-run figure


def _drawable(t: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of ``metric`` that hold a number: optional values (FD_DINOv2 on the datasets that
    set it) may be absent or null elsewhere, and an older table lacks the newer metrics."""
    rows = t[t.metric == metric]
    return rows[pd.to_numeric(rows.value, errors="coerce").notna()]


def _per_run(*panels: Panel, log: bool = False,
             paper: str = "Figs. 3, 8–10") -> Callable[[pd.DataFrame, Path], Drawn | str]:
    """A figure of one row per panel whose metric some run holds, one line per run: every run of
    the table, whatever its name or paradigm, so new runs get their line without a change here."""
    def draw(t: pd.DataFrame, results: Path) -> Drawn | str:
        present = [(metric, ylabel) for metric, ylabel in panels if not _drawable(t, metric).empty]
        if not present:
            return f"no {' or '.join(metric for metric, _ in panels)} in any run"
        data = pd.concat([_drawable(t, metric) for metric, _ in present])
        return _run_panels(data, run_colours(t.run), present, "", log)

    draw.__doc__ = (f"{paper}: {'; '.join(y for _, y in panels)} over iterations, "
                    "a row per metric, a panel per dataset, a line per run.")
    return draw


def _run_panels(data: pd.DataFrame, colours: dict, panels: list[Panel], title: str, log: bool = False) -> Drawn:
    """One row per panel, one column per dataset, one line per run."""
    datasets = sorted(data.dataset.unique())
    fig, axes = _plt().subplots(len(panels), len(datasets), figsize=(5 * len(datasets), 3.8 * len(panels)),
                                squeeze=False)
    wides = []
    for row, (metric, ylabel) in zip(axes, panels, strict=True):
        for ax, dataset in zip(row, datasets, strict=True):
            part = data[(data.dataset == dataset) & (data.metric == metric)]
            ax.set_title(f"{title}{dataset}", fontsize=9)
            if part.empty:  # this dataset lacks one of the figure's metrics: say so in its panel
                ax.text(0.5, 0.5, f"no {metric}", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            wides.append(_lines(ax, part, metric, "run", ylabel, colours, log=log).add_prefix(f"{dataset}: "))
    fig.tight_layout()
    return fig, _noted(wides)


def mnnd_and_variance(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 7: MNND and covariance trace of the generated sets over iterations (replace), per family."""
    families = _families(t)
    if not families:
        return NO_REPLACE
    fig, axes = _plt().subplots(len(families), 2, figsize=(10, 3.9 * len(families)), squeeze=False)
    wides = []
    for row, (family, space, part) in zip(axes, families, strict=True):
        data, colours = _size_labels(part)
        a = _lines(row[0], data, "generated_mnnd", "label", "MNND of G_n", colours, log=True)
        b = _lines(row[1], data, "generated_covariance_trace", "label", "trace of covariance of G_n", colours)
        for ax in row:
            ax.set_title(_family_title(family, space), fontsize=9)
        wides += [a.add_prefix(f"{family}: "), b.add_prefix(f"{family}: ")]
    fig.tight_layout()
    return fig, _noted(wides)


def source_shares(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 11: D_n's share by source (real, G_1, ...) per iteration, mean over replicates, against 1/n."""
    data = t[(t.paradigm == "accumulate") & t.metric.str.startswith("share_") & (t.file == "metrics.json")]
    if data.empty:
        return "no accumulate-paradigm run"
    groups = sorted(data.groupby(["dataset", "run"]).groups)
    fig, axes = _plt().subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), squeeze=False)
    wides = []
    for ax, (dataset, run) in zip(axes[0], groups, strict=True):
        part = data[(data.dataset == dataset) & (data.run == run)]
        # a source a replicate never drew from has share 0 there, not a missing value
        each = part.pivot_table(index=["replicate", "iteration"], columns="metric", values="value",
                                aggfunc="first").fillna(0.0)
        wide = each.groupby("iteration").mean()
        order = ["share_real"] + sorted(c for c in wide.columns if c != "share_real")
        bottom = np.zeros(len(wide))
        colors = ["tab:blue"] + [f"C{i % 9 + 1}" for i in range(len(order) - 1)]  # real is always blue
        for col, color in zip(order, colors, strict=True):
            ax.bar(wide.index, wide[col], bottom=bottom, label=col.removeprefix("share_"), color=color)
            bottom += wide[col].to_numpy()
        n = wide.index.to_numpy()
        ax.plot(n, 1 / n, "r-o", ms=3, label="1/n")
        reps = each.groupby("iteration").size()
        suffix = f" (mean of {reps.max()} replicates)" if reps.max() > 1 else ""
        ax.set(title=f"{dataset} · {run}{suffix}", xlabel="iteration n", ylabel="share of D_n", ylim=(0, 1.05))
        _integer_x(ax)
        ax.legend(fontsize=6)
        wides.append(wide[order].assign(replicates=reps).add_prefix(f"{dataset} · {run}: "))
    fig.tight_layout()
    return fig, pd.concat(wides, axis=1)


def _ablation(selector: Callable[[pd.DataFrame], pd.DataFrame], why: str, title: str):
    def draw(t: pd.DataFrame, results: Path) -> Drawn | str:
        data = selector(t)
        if data.empty or data.run.nunique() < 2:
            return why
        return _run_panels(data, run_colours(t.run), [("fid", "FID of G_n")], f"{title}\n")

    return draw


def _two_n(t: pd.DataFrame) -> pd.DataFrame:
    """Fig. 13: replace with N, replace with all 2N, and replace with 2N filtered to N."""
    rep = t[(t.paradigm == "replace") & paper_loop(t)]
    if not ((rep.selection == "all") & (rep.samples_per_iteration > 1)).any():
        return rep.iloc[:0]
    return rep


def _decays(t: pd.DataFrame) -> pd.DataFrame:
    """Fig. 14: accumulate with Threshold Decay at several decay rates, against vanilla accumulate
    and Greedy Selection (the paper's "data selection methods")."""
    acc = t[(t.paradigm == "accumulate") & paper_loop(t)]
    if acc[acc.selection == "threshold_decay"].decay.nunique() < 2:
        return acc.iloc[:0]
    return acc[acc.selection.isin(["threshold_decay", "random", "greedy"])]


# --- image figures (replicate 0's files) ----------------------------------------------------------

def _space(t: pd.DataFrame, dataset: str, run: str) -> str:
    """The distance feature space of a run: the one its metrics.json were computed in."""
    rows = t[(t.file == "metrics.json") & (t.dataset == dataset) & (t.run == run)]
    return str(rows.feature_extractor.iloc[0])


def _replace_iterations(t: pd.DataFrame) -> list[tuple[str, str, list[int]]]:
    """(dataset, run, [first, last iteration]) of each vanilla replace run."""
    data = _vanilla_replace(t[(t.replicate == 0) & (t.file == "metrics.json")])
    return [(d, r, sorted({int(part.iteration.min()), int(part.iteration.max())}))
            for (d, r), part in data.groupby(["dataset", "run"])]


def nearest_neighbour_grids(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 1 (left): G_n of the first and last iteration of each vanilla replace run, each image
    above its nearest image of D_n in the run's distance feature space."""
    cases = [(d, r, [n for n in ns if grids.has_pairs(results, d, r, n, _space(t, d, r))], _space(t, d, r))
             for d, r, ns in _replace_iterations(t)]
    cases = [[c] for c in cases if c[2]]
    if not cases:
        return "no vanilla replace run with samples, their features and a training manifest on disk"
    return grids.pairs_figure(results, cases)


def nearest_pairs_by_selection(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 12: at the last iteration both have, G_n of vanilla accumulate and of Greedy Selection,
    side by side, each image above its nearest training image (distance feature space)."""
    data = t[(t.paradigm == "accumulate") & (t.replicate == 0) & (t.file == "metrics.json") & paper_loop(t)]
    vanilla = data[(data.selection == "random") & (data.samples_per_iteration == 1)]
    greedy = data[data.selection == "greedy"]
    rows = []
    for dataset in sorted(set(vanilla.dataset) & set(greedy.dataset)):
        runs = [sorted(part[part.dataset == dataset].run.unique()) for part in (vanilla, greedy)]
        runs = runs[0] + runs[1]
        on_disk = [{int(n) for n in data[(data.dataset == dataset) & (data.run == r)].iteration.unique()
                    if n >= 2 and grids.has_pairs(results, dataset, r, int(n), _space(t, dataset, r))} for r in runs]
        if common := set.intersection(*on_disk):
            rows.append([(dataset, r, [max(common)], _space(t, dataset, r)) for r in runs])
    if not rows:
        return ("no dataset with a vanilla accumulate run and a greedy run whose samples, features and "
                "manifests of one iteration ≥ 2 are on disk")
    return grids.pairs_figure(results, rows)


def svd_projection(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 6: real and generated features on the top two singular vectors of the real features."""
    from ouroboros import paths
    from ouroboros.io import load_features

    cases = []
    for dataset, run, iterations in _replace_iterations(t):
        space = _space(t, dataset, run)
        real = grids.under(results, paths.features_of(paths.real_images(dataset), space))
        gens = [(n, grids.under(results, paths.features_of(f"{paths.producer_dir(dataset, run, n)}/samples.npy", space)))
                for n in iterations]
        if real.is_file() and all(f.is_file() for _, f in gens):
            cases.append((dataset, run, space, real, gens))
    if not cases:
        return "no vanilla replace run with real and generated features on disk"
    width = max(len(g) for *_, g in cases)
    fig, axes = _plt().subplots(len(cases), width, figsize=(4 * width, 3.6 * len(cases)), squeeze=False)
    rows = []
    for row, (dataset, run, space, real_file, gens) in zip(axes, cases, strict=True):
        real = load_features(real_file).astype(np.float64)
        mean = real.mean(0)
        basis = np.linalg.svd(real - mean, full_matrices=False)[2][:2].T  # top-2 right singular vectors
        r2 = (real - mean) @ basis
        for ax, (n, f) in zip(row, gens, strict=False):
            g2 = (load_features(f).astype(np.float64) - mean) @ basis
            ax.scatter(r2[:, 0], r2[:, 1], s=3, c="0.7", label="real")
            ax.scatter(g2[:, 0], g2[:, 1], s=3, c="tab:orange", label=f"G_{n}")
            ax.set(title=f"{dataset} · {run} · n = {n} ({space})", xlabel="singular direction 1",
                   ylabel="singular direction 2")
            ax.legend(fontsize=7, markerscale=3)
            rows += [{"dataset": dataset, "run": run, "iteration": n, "point": i, "x": float(a), "y": float(b)}
                     for i, (a, b) in enumerate(g2)]
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


FIGURES: dict[str, Callable[[pd.DataFrame, Path], Drawn | str]] = {
    "fig01_nearest_neighbours": nearest_neighbour_grids,
    "fig01_generalization_by_size": generalization_by_size,
    "fig02_entropy_vs_generalization": entropy_and_generalization,
    "fig03_generalization_score": _per_run(("generalization_score", "generalization score GS(n)"), log=True),
    "fig09_fid": _per_run(("fid", "FID of G_n")),
    "fig10_entropy": _per_run(("train_entropy", "entropy of D_n (nats)")),
    "fig06_svd_projection": svd_projection,
    "fig07_mnnd_variance": mnnd_and_variance,
    "fig11_source_shares": source_shares,
    "fig12_nearest_accumulate_greedy": nearest_pairs_by_selection,
    "fig13_replace_2n": _ablation(_two_n, "no replace run with samples ≥ 2 and selection all (the 2N ablation)",
                                  "training on 2N samples (replace)"),
    "fig14_decay_rates": _ablation(_decays, "fewer than two accumulate threshold_decay runs with different decays",
                                   "Threshold Decay Filter: decay rates, greedy and vanilla accumulate"),
    # beyond the paper: diversity and memorization metrics of other papers, and FIDs in other spaces
    "extra_vendi": _per_run(("train_vendi", "Vendi score of D_n"), ("generated_vendi", "Vendi score of G_n"),
                            paper="not in the paper (Friedman & Dieng 2023)"),
    "extra_authenticity": _per_run(("authenticity", "authenticity of G_n against D_n"),
                                   paper="not in the paper (Alaa et al. 2022)"),
    "extra_fd_dinov2": _per_run(("fd_dinov2", "FD_DINOv2 of G_n"), paper="not in the paper"),
    "extra_fid_torchvision": _per_run(("fid_torchvision", "FID of G_n (torchvision InceptionV3)"),
                                      paper="not in the paper"),
}


# the figures drawn from replicate 0's files (images, features): they read the table as it is, the
# others with each real-subset design a dataset of its own (tables.by_design), so that no band mixes
# replicates on the shared D_1 with replicates that drew their own
FROM_FILES = {"fig01_nearest_neighbours", "fig06_svd_projection", "fig12_nearest_accumulate_greedy"}


def build(results: str | Path, out_dir: str | Path | None = None, log=print) -> list[Path]:
    """Every figure that results/ has the runs for; returns the files written."""
    results = Path(results)
    files = with_defaults(tidy(scan(results)))
    table = by_design(files)
    figures_dir = Path(out_dir) if out_dir else results / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    written = []
    for name, draw in FIGURES.items():
        drawn = (draw(files if name in FROM_FILES else table, results) if not table.empty
                 else "results/ holds no metrics.json or fid.json")
        if isinstance(drawn, str):
            log(f"skipped {name}: {drawn}")
            continue
        fig, wide = drawn
        written += _save(fig, figures_dir / name)
        wide.to_csv(figures_dir / f"{name}.tsv", sep="\t")
        written.append(figures_dir / f"{name}.tsv")
        plt.close(fig)
        log(f"wrote {name}")
    for name, fig in grids.sample_grids(results, log=log).items():
        written += _save(fig, figures_dir / name)
        plt.close(fig)
    for name, (fig, data) in loss_curves.loss_curves(results, log=log).items():
        written += _save(fig, figures_dir / name)
        data.to_csv(figures_dir / f"{name}.tsv", sep="\t", index=False)
        written.append(figures_dir / f"{name}.tsv")
        plt.close(fig)
    if first := write_first_screen(figures_dir):
        written.append(first)
    return written


FIRST_SCREEN = "first_screen.rst"  # beside the figures: workflow/report/workflow.rst includes it
NEAREST = "fig01_nearest_neighbours"
LINE = 4000


def first_screen_figures(figures_dir: Path) -> list[Path]:
    """The pictures that show the collapse at a glance, in the order the report's first screen shows
    them: the nearest neighbours (a sample on its neighbour is a copy), then each run's sample grid,
    vanilla replace first."""
    grids_ = sorted(figures_dir.glob("samples_*.png"), key=lambda p: (not p.stem.endswith("_replace"), p.stem))
    return [p for p in [figures_dir / f"{NEAREST}.png", *grids_] if p.is_file()]


def write_first_screen(figures_dir: Path) -> Path | None:
    """first_screen.rst: those pictures as one block of HTML, each image inline (a data URI: the
    report is one self-contained file), floated beside the primary findings of the first screen.
    None (and no file) where there is none of them: the report then includes nothing."""
    import base64
    import html

    figures = []
    for png in first_screen_figures(figures_dir):
        data = base64.b64encode(png.read_bytes()).decode()
        kind = "nearest" if png.stem == NEAREST else "grid"
        figures.append(f'<figure class="ouroboros-{kind}"><img alt="{html.escape(png.stem)}" '
                       f'title="results/figures/{html.escape(png.name)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{html.escape(png.name)}</figcaption></figure>")
    out = figures_dir / FIRST_SCREEN
    if not figures:
        out.unlink(missing_ok=True)
        return None
    html_ = "<div class=\"ouroboros-first-figures\">" + "".join(figures) + "</div>"
    # docutils refuses lines over 10,000 characters: the data URIs go on lines of 4,000, and a
    # browser drops the line breaks from a URL (the URL standard strips ASCII tabs and newlines)
    lines = [html_[i:i + LINE] for i in range(0, len(html_), LINE)]
    out.write_text(".. raw:: html\n\n" + "".join(f"   {line}\n" for line in lines))
    return out


def _save(fig, stem: Path) -> list[Path]:
    """The PNG and the PDF, cropped to the figure's tight box plus savefig's padding. The box is measured
    once (one draw) for both: bbox_inches="tight" would draw each file twice, to measure and to render."""
    import matplotlib as mpl

    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(mpl.rcParams["savefig.pad_inches"])
    fig.savefig(paths[0], dpi=120, bbox_inches=box)
    fig.savefig(paths[1], bbox_inches=box)
    return paths


def run(args) -> int:
    """``ouroboros figures`` and ``python -m ouroboros.figures`` (their parser: ouroboros.cli.figures_arguments)."""
    build(args.results, args.out)
    return 0


if __name__ == "__main__":
    from ouroboros.cli import module_main

    sys.exit(module_main("figures"))
