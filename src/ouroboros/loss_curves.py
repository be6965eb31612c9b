"""The training loss of every iteration of a run, from each training's ``train-stats.jsonl``.

One figure per run (replicate 0's chain, as the sample grids): a line per iteration, the shared
iteration 1 included, over the steps of that training. A training writes its stats file a line per
step as it goes, so ``python -m ouroboros.figures results/`` draws a training still under way (a
last line cut short by the writer is left out). Beside each figure, a TSV holds exactly what is
plotted: the raw loss of every step, as the stats file holds it, and the running mean drawn over it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ouroboros import grids, paths
from ouroboros.errors import OuroborosError

STATS_FILE = "train-stats.jsonl"
WINDOW = 50  # steps in the running mean: the training bar's own window (ouroboros.train)
COLUMNS = ["dataset", "run", "iteration", "step", "loss", "running_mean"]
# folders of results/{dataset}/ that are not runs: the real subset (iteration 1 lives there), the
# FID reference and the fresh rows; results/tables and results/figures are not datasets
NOT_RUNS = {paths.REAL, paths.REFERENCE, paths.FRESH}
NOT_DATASETS = {"tables", "figures"}


def read_stats(path: str | Path) -> pd.DataFrame:
    """(step, loss) of every step a stats file records. A closed-form fit's single summary line has
    no loss (no rows); a last line without its newline is a training still writing it (left out);
    any other line that is not JSON names the file and line."""
    path = Path(path)
    text = path.read_text()
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # cut short by the writer, or empty
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise OuroborosError(f"{path}:{number}: not a JSON line ({e.msg}); delete the file and train again") from e
        if "loss" in record and "step" in record:
            rows.append((int(record["step"]), float(record["loss"])))
    return pd.DataFrame(rows, columns=["step", "loss"])


def running_mean(loss: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at each step (of all of them before the window fills)."""
    total = np.cumsum(np.concatenate([[0.0], np.asarray(loss, dtype=np.float64)]))
    ends = np.arange(1, len(loss) + 1)
    starts = np.maximum(ends - window, 0)
    return (total[ends] - total[starts]) / (ends - starts)


def chains(results: str | Path) -> dict[tuple[str, str], list[tuple[int, Path]]]:
    """(dataset, run) → [(iteration, stats file)] of replicate 0, iteration 1 (shared, under real/)
    first. A dataset whose runs have no training of their own yet is one chain named ``real``."""
    root = Path(results)
    out = {}
    for dataset_dir in sorted(p for p in root.glob("*") if p.is_dir() and p.name not in NOT_DATASETS):
        first = dataset_dir / paths.REAL / paths.iter_name(1) / STATS_FILE
        shared = [(1, first)] if first.is_file() else []
        for run_dir in sorted(p for p in dataset_dir.glob("*") if p.is_dir() and p.name not in NOT_RUNS):
            own = [(int(f.parent.name.removeprefix("iter")), f) for f in sorted(run_dir.glob(f"iter[0-9][0-9]/{STATS_FILE}"))]
            if own:
                out[(dataset_dir.name, run_dir.name)] = shared + own
        if shared and not any(d == dataset_dir.name for d, _ in out):
            out[(dataset_dir.name, paths.REAL)] = shared
    return out


def table(dataset: str, run: str, chain: list[tuple[int, Path]]) -> pd.DataFrame:
    """What the figure of one chain plots: every step's loss and its running mean, per iteration."""
    parts = []
    for iteration, path in chain:
        stats = read_stats(path)
        if stats.empty:
            continue
        parts.append(stats.assign(dataset=dataset, run=run, iteration=iteration,
                                  running_mean=running_mean(stats.loss.to_numpy())))
    return pd.concat(parts)[COLUMNS].reset_index(drop=True) if parts else pd.DataFrame(columns=COLUMNS)


def figure(data: pd.DataFrame):
    """One line per iteration (the running mean) over its faint raw loss, on a log scale."""
    plt = grids.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    iterations = sorted(data.iteration.unique())
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(iterations)))
    for colour, n in zip(colours, iterations, strict=True):
        part = data[data.iteration == n]
        ax.plot(part.step, part.loss, color=colour, alpha=0.2, linewidth=0.6)
        ax.plot(part.step, part.running_mean, color=colour, linewidth=1.6, label=f"n = {n}")
    ax.set_yscale("log")
    ax.set(xlabel="training step", ylabel="loss (MSE of the network's target: ε, or v for flow)",
           title=f"{data.dataset.iloc[0]} · {data.run.iloc[0]}: training loss per iteration\n"
                 f"(lines: running mean of {WINDOW} steps; faint: every step)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2 if len(iterations) > 6 else 1)
    fig.tight_layout()
    return fig


def loss_curves(results: str | Path, log=print) -> dict[str, tuple[object, pd.DataFrame]]:
    """``loss_{dataset}_{run}`` → (figure, the table it plots) for every chain with a loss per step;
    a chain whose generator logs none (a closed-form fit) is skipped with one log line."""
    out = {}
    for (dataset, run), chain in chains(results).items():
        name = f"loss_{dataset}_{run}"
        data = table(dataset, run, chain)
        if data.empty:
            log(f"skipped {name}: its training logs no loss per step (a closed-form generator)")
            continue
        out[name] = (figure(data), data)
    return out
