"""The paper's figures, regenerated from whatever results/ holds; never trains anything.

Each figure is drawn from the tidy table (ouroboros.tables) and, for image figures, from the
samples and manifests on disk. A figure whose runs are missing is skipped with one log line
saying which. Every figure is written to results/figures/ as PNG and PDF, with a wide TSV beside
it holding exactly the numbers it plots.

Usage outside Snakemake: ``python -m ouroboros.figures results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ouroboros import paths
from ouroboros.tables import scan, tidy

Drawn = tuple[object, pd.DataFrame]  # (matplotlib figure, the wide table of what it plots)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _lines(ax, data: pd.DataFrame, metric: str, label_by: list[str], ylabel: str, log: bool = False) -> pd.DataFrame:
    """One line per group, value over iteration; returns the wide table of the points."""
    part = data[data.metric == metric]
    wide = part.pivot_table(index="iteration", columns=label_by, values="value", aggfunc="first").sort_index()
    for key in wide.columns:
        series = wide[key].dropna()
        label = key if isinstance(key, str) else " · ".join(map(str, key))
        ax.plot(series.index, series.values, marker="o", label=label)
    ax.set(xlabel="iteration n", ylabel=ylabel)
    _integer_x(ax)
    if log and len(part):
        from matplotlib.ticker import ScalarFormatter

        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
    if len(wide.columns):
        ax.legend(fontsize=7)
    wide.columns = [c if isinstance(c, str) else " · ".join(map(str, c)) for c in wide.columns]
    return wide.add_prefix(f"{metric}: ")


def _vanilla_replace(t: pd.DataFrame) -> pd.DataFrame:
    return t[(t.paradigm == "replace") & (t.selection == "all") & (t.samples_per_iteration == 1)]


def generalization_by_size(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 1 (right): GS over iterations under replace, one line per dataset (size)."""
    data = _vanilla_replace(t).copy()
    if data.empty:
        return "no vanilla replace run (paradigm replace, selection all, samples 1)"
    data["label"] = data.dataset + " (N=" + data.dataset_size.astype(int).astype(str) + ")"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    wide = _lines(ax, data, "generalization_score", ["label"], "generalization score GS(n)", log=True)
    ax.set_title("generalization to memorization (replace)")
    return fig, wide


def entropy_and_generalization(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 2: entropy of D_n over iterations; entropy vs log GS and variance vs GS, with Pearson r."""
    from scipy.stats import pearsonr

    data = _vanilla_replace(t)
    if data.empty:
        return "no vanilla replace run (paradigm replace, selection all, samples 1)"
    points = data.pivot_table(index=["dataset", "dataset_size", "iteration"], columns="metric", values="value",
                              aggfunc="first").reset_index()
    need = {"train_entropy", "generalization_score", "train_covariance_trace"}
    if not need <= set(points.columns) or len(points) < 3:
        return "fewer than 3 (dataset, iteration) points with entropy, GS and variance"
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    data = data.assign(label=data.dataset + " (N=" + data.dataset_size.astype(int).astype(str) + ")")
    _lines(axes[0], data, "train_entropy", ["label"], "entropy of D_n (nats)")
    axes[0].set_title("(a) entropy of the training set")
    out = points[["dataset", "dataset_size", "iteration", "train_entropy", "train_covariance_trace",
                  "generalization_score"]].copy()
    for ax, x, name in ((axes[1], "train_entropy", "entropy of D_n (nats)"),
                        (axes[2], "train_covariance_trace", "trace of covariance of D_n")):
        gs = out.generalization_score.to_numpy(float)
        xs = out[x].to_numpy(float)
        r, p = pearsonr(xs, np.log(gs) if x == "train_entropy" else gs)
        for dataset, part in out.groupby("dataset"):
            ax.scatter(part[x], part.generalization_score, label=dataset, s=18)
        if x == "train_entropy":
            from matplotlib.ticker import ScalarFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.set(xlabel=name, ylabel="GS(n)", title=f"Pearson r = {r:.2f}, p = {p:.1e}")
        ax.legend(fontsize=7)
        out[f"pearson_r_{x}"] = r
        out[f"pearson_p_{x}"] = p
    fig.tight_layout()
    return fig, out


def _per_run(metric: str, ylabel: str, log: bool = False) -> Callable[[pd.DataFrame, Path], Drawn | str]:
    def draw(t: pd.DataFrame, results: Path) -> Drawn | str:
        data = t[t.metric == metric]
        if data.empty:
            return f"no {metric} in any run"
        plt = _plt()
        datasets = sorted(data.dataset.unique())
        fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
        wides = []
        for ax, dataset in zip(axes[0], datasets):
            wides.append(_lines(ax, data[data.dataset == dataset], metric, ["run"], ylabel, log=log).add_prefix(f"{dataset}: "))
            ax.set_title(dataset)
        fig.tight_layout()
        return fig, pd.concat(wides, axis=1)

    draw.__doc__ = f"Figs. 3, 8–10: {ylabel} over iterations, one line per run."
    return draw


def mnnd_and_variance(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 7: MNND and covariance trace of the generated sets over iterations (replace)."""
    data = _vanilla_replace(t)
    if data.empty:
        return "no vanilla replace run (paradigm replace, selection all, samples 1)"
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    data = data.assign(label=data.dataset)
    a = _lines(axes[0], data, "generated_mnnd", ["label"], "MNND of G_n", log=True)
    b = _lines(axes[1], data, "generated_covariance_trace", ["label"], "trace of covariance of G_n")
    fig.tight_layout()
    return fig, pd.concat([a, b], axis=1)


def source_shares(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 11: D_n's share by source (real, G_1, ...) per iteration, against the 1/n curve."""
    data = t[(t.paradigm == "accumulate") & t.metric.str.startswith("share_") & (t.file == "metrics.json")]
    if data.empty:
        return "no accumulate-paradigm run"
    plt = _plt()
    groups = sorted(data.groupby(["dataset", "run"]).groups)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.8), squeeze=False)
    wides = []
    for ax, (dataset, run) in zip(axes[0], groups):
        part = data[(data.dataset == dataset) & (data.run == run)]
        wide = part.pivot_table(index="iteration", columns="metric", values="value", aggfunc="first").fillna(0.0)
        order = ["share_real"] + sorted(c for c in wide.columns if c != "share_real")
        bottom = np.zeros(len(wide))
        colors = ["tab:blue"] + [f"C{i % 9 + 1}" for i in range(len(order) - 1)]  # real is always blue
        for col, color in zip(order, colors):
            ax.bar(wide.index, wide[col], bottom=bottom, label=col.removeprefix("share_"), color=color)
            bottom += wide[col].to_numpy()
        n = wide.index.to_numpy()
        ax.plot(n, 1 / n, "r-o", ms=3, label="1/n")
        ax.set(title=f"{dataset} · {run}", xlabel="iteration n", ylabel="share of D_n", ylim=(0, 1.05))
        _integer_x(ax)
        ax.legend(fontsize=6)
        wides.append(wide[order].add_prefix(f"{dataset} · {run}: "))
    fig.tight_layout()
    return fig, pd.concat(wides, axis=1)


def _ablation(selector: Callable[[pd.DataFrame], pd.DataFrame], why: str, title: str):
    def draw(t: pd.DataFrame, results: Path) -> Drawn | str:
        data = selector(t)
        if data.empty or data.run.nunique() < 2:
            return why
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        wide = _lines(ax, data, "fid", ["dataset", "run"], "FID of G_n")
        ax.set_title(title)
        return fig, wide

    return draw


def _two_n(t: pd.DataFrame) -> pd.DataFrame:
    """Fig. 13: replace with N, replace with all 2N, and replace with 2N filtered to N."""
    rep = t[t.paradigm == "replace"]
    if not (rep.samples_per_iteration > 1).any() or not ((rep.selection == "all") & (rep.samples_per_iteration > 1)).any():
        return rep.iloc[:0]
    return rep


def _decays(t: pd.DataFrame) -> pd.DataFrame:
    """Fig. 14: accumulate with Threshold Decay at several decay rates, against vanilla accumulate."""
    acc = t[t.paradigm == "accumulate"]
    thr = acc[acc.selection == "threshold_decay"]
    if thr.decay.nunique() < 2:
        return acc.iloc[:0]
    return acc[acc.selection.isin(["threshold_decay", "random"])]


def _under(results: Path, path: str) -> Path:
    """A path of ouroboros.paths (relative to the working directory) under this results folder."""
    return results / Path(path).relative_to(paths.RESULTS)


def _generation_dir(results: Path, dataset: str, run: str, n: int) -> Path:
    return _under(results, paths.producer_dir(dataset, run, n))


def _replace_iterations(t: pd.DataFrame) -> list[tuple[str, str, list[int]]]:
    """(dataset, run, [first, last iteration]) of each vanilla replace run."""
    data = _vanilla_replace(t)
    return [(d, r, sorted({int(part.iteration.min()), int(part.iteration.max())}))
            for (d, r), part in data.groupby(["dataset", "run"])]


def nearest_neighbour_grids(t: pd.DataFrame, results: Path, count: int = 8) -> Drawn | str:
    """Fig. 1 (left): generated images (top) above their nearest training image (bottom), pixel space."""
    from ouroboros import manifest
    from ouroboros.features import pixels
    from ouroboros.io import load_images
    from ouroboros.neighbors import knn

    cases = []
    for dataset, run, iterations in _replace_iterations(t):
        for n in iterations:
            samples = _generation_dir(results, dataset, run, n) / "samples.npy"
            train = _under(results, paths.manifest(dataset, run, n))
            if samples.is_file() and train.is_file():
                cases.append((dataset, run, n, samples, train))
    if not cases:
        return "no vanilla replace run with samples and a training manifest on disk"
    plt = _plt()
    fig, axes = plt.subplots(len(cases), 1, figsize=(1.1 * count, 2.4 * len(cases)), squeeze=False)
    rows = []
    for ax, (dataset, run, n, samples, train) in zip(axes[:, 0], cases):
        generated = load_images(samples)[:count]
        m = manifest.read(train)
        # manifest paths are relative to the workflow's working directory, the parent of results/
        training = manifest.gather(m, lambda f: load_images(results.parent / f))
        dist, idx = knn(pixels(generated), pixels(training), 1)
        pairs = np.concatenate([generated, training[idx[:, 0]]])
        ax.imshow(_grid_rows(pairs, 2), cmap="gray" if pairs.shape[-1] == 1 else None)
        ax.set_title(f"{dataset} · {run} · n = {n}: G_n (top) and nearest image of D_n (bottom)", fontsize=8)
        ax.axis("off")
        rows += [{"dataset": dataset, "run": run, "iteration": n, "sample": i, "train_row": int(idx[i, 0]),
                  "distance": float(dist[i, 0])} for i in range(len(generated))]
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def svd_projection(t: pd.DataFrame, results: Path) -> Drawn | str:
    """Fig. 6: real and generated features on the top two singular vectors of the real features."""
    from ouroboros.io import load_features

    data = t[(t.file == "metrics.json")]
    cases = []
    for dataset, run, iterations in _replace_iterations(t):
        space = data[(data.dataset == dataset) & (data.run == run)].feature_extractor.iloc[0]
        real = _under(results, paths.features_of(paths.real_images(dataset), space))
        gens = [(n, _generation_dir(results, dataset, run, n) / f"features-{space}.npy") for n in iterations]
        if real.is_file() and all(f.is_file() for _, f in gens):
            cases.append((dataset, run, space, real, gens))
    if not cases:
        return "no vanilla replace run with real and generated features on disk"
    plt = _plt()
    width = max(len(g) for *_, g in cases)
    fig, axes = plt.subplots(len(cases), width, figsize=(4 * width, 3.6 * len(cases)), squeeze=False)
    rows = []
    for row, (dataset, run, space, real_file, gens) in zip(axes, cases):
        real = load_features(real_file).astype(np.float64)
        mean = real.mean(0)
        basis = np.linalg.svd(real - mean, full_matrices=False)[2][:2].T  # top-2 right singular vectors
        r2 = (real - mean) @ basis
        for ax, (n, f) in zip(row, gens):
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


def _grid_rows(images: np.ndarray, rows: int) -> np.ndarray:
    n, h, w, c = images.shape
    cols = n // rows
    grid = images[: rows * cols].reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    return grid[..., 0] if c == 1 else grid


def sample_grids(results: Path, rows: int = 4) -> dict[str, object]:
    """Figs. 15–20: the first images of G_n for each run and iteration (one figure per run)."""
    plt = _plt()
    out = {}
    runs = [p for p in results.glob("*/*")
            if p.is_dir() and p.name not in (paths.REAL, paths.REFERENCE) and p.parent.name not in ("tables", "figures")]
    for run_dir in sorted(runs):
        iters = sorted(run_dir.glob("iter*/samples.npy"))
        first = run_dir.parent / "real" / "iter01" / "samples.npy"
        files = ([first] if first.is_file() else []) + iters
        if not files:
            continue
        fig, axes = plt.subplots(1, len(files), figsize=(2.2 * len(files), 2.4), squeeze=False)
        for ax, f in zip(axes[0], files):
            images = np.load(f, allow_pickle=False)[: rows * rows]
            ax.imshow(_grid(images, rows), cmap="gray" if images.shape[-1] == 1 else None)
            ax.set_title(f"n = {int(f.parent.name.removeprefix('iter'))}", fontsize=8)
            ax.axis("off")
        fig.suptitle(f"{run_dir.parent.name} · {run_dir.name}", fontsize=9)
        out[f"samples_{run_dir.parent.name}_{run_dir.name}"] = fig
    return out


def _grid(images: np.ndarray, rows: int) -> np.ndarray:
    """A rows × rows grid, padded with black where there are fewer images."""
    full = np.zeros((rows * rows,) + images.shape[1:], dtype=images.dtype)
    full[: len(images)] = images
    return _grid_rows(full, rows)


FIGURES: dict[str, Callable[[pd.DataFrame, Path], Drawn | str]] = {
    "fig01_nearest_neighbours": nearest_neighbour_grids,
    "fig01_generalization_by_size": generalization_by_size,
    "fig02_entropy_vs_generalization": entropy_and_generalization,
    "fig03_generalization_score": _per_run("generalization_score", "generalization score GS(n)", log=True),
    "fig09_fid": _per_run("fid", "FID of G_n"),
    "fig10_entropy": _per_run("train_entropy", "entropy of D_n (nats)"),
    "fig06_svd_projection": svd_projection,
    "fig07_mnnd_variance": mnnd_and_variance,
    "fig11_source_shares": source_shares,
    "fig13_replace_2n": _ablation(_two_n, "no replace run with samples ≥ 2 and selection all (the 2N ablation)",
                                  "training on 2N samples (replace)"),
    "fig14_decay_rates": _ablation(_decays, "fewer than two accumulate threshold_decay runs with different decays",
                                   "Threshold Decay Filter: decay rates"),
}


def build(results: str | Path, out_dir: str | Path | None = None, log=print) -> list[Path]:
    """Every figure that results/ has the runs for; returns the files written."""
    results = Path(results)
    table = tidy(scan(results))
    figures_dir = Path(out_dir) if out_dir else results / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    written = []
    for name, draw in FIGURES.items():
        drawn = draw(table, results) if not table.empty else "results/ holds no metrics.json or fid.json"
        if isinstance(drawn, str):
            log(f"skipped {name}: {drawn}")
            continue
        fig, wide = drawn
        written += _save(fig, figures_dir / name)
        wide.to_csv(figures_dir / f"{name}.tsv", sep="\t")
        written.append(figures_dir / f"{name}.tsv")
        plt.close(fig)
        log(f"wrote {name}")
    for name, fig in sample_grids(results).items():
        written += _save(fig, figures_dir / name)
        plt.close(fig)
    return written


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "results")
