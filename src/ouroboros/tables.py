"""The tidy table: one row per dataset × run × iteration × metric, from metrics.json and fid.json.

Usage outside Snakemake: ``python -m ouroboros.tables results/`` scans whatever results/ holds;
``python -m ouroboros.tables --summary results/tables/metrics.tsv`` prints the headline metrics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from ouroboros.config import RUN_OPTION_DEFAULTS
from ouroboros.errors import OuroborosError
from ouroboros.io import load_json
from ouroboros.metrics import PIXEL_METRICS
from ouroboros.paths import PER_REPLICATE, SHARED

ID_COLUMNS = ["dataset", "family", "dataset_size", "run", "paradigm", "selection", "samples_per_iteration", "tau0",
              "decay", "share", "fresh", "init", "select_features", "generator", "model_params", "data_dim", "replicate",
              "real_subset", "iteration"]
# the run options beyond the paper's loop: their files record them only when set (select_features:
# empty unless a run selects in a space other than its dataset's)
RUN_OPTIONS = [*RUN_OPTION_DEFAULTS, "select_features"]


def is_default(key: str, value) -> bool:
    """Whether a run option has its default (missing, NaN or empty in older tables counts so)."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return True
    default = RUN_OPTION_DEFAULTS.get(key)
    return default is not None and (value == default or str(value) == str(default))


def paper_loop(frame: pd.DataFrame) -> pd.Series:
    """Rows of runs of the paper's loop: no run option beyond it (fresh data, equal shares,
    fine-tuning, a selection space of their own), so that such runs never stand in for the paper's."""
    mask = pd.Series(True, index=frame.index)
    for key in RUN_OPTIONS:
        if key in frame:
            mask &= frame[key].map(lambda v, key=key: is_default(key, v))
    return mask


def rows(path: str | Path) -> list[dict]:
    """One row per value; D_n's share by source becomes metrics ``share_real``, ``share_G01``, ..."""
    record = load_json(path)
    if "feature_extractor" not in record:
        # metrics.json of older versions named it feature_space, and their entropy left duplicates out
        raise OuroborosError(f"{path}: no feature_extractor key: an older version wrote it, with another entropy; "
                             "delete it and run the workflow again to rebuild it")
    space = record["feature_extractor"]
    base = {k: record.get(k) for k in ID_COLUMNS} | {"file": Path(path).name, "feature_extractor": space}
    base["family"] = base["family"] or base["dataset"]  # files from before size sweeps recorded it
    base["replicate"] = base["replicate"] or 0  # and from before replicates: replicate 0's paths
    base["real_subset"] = base["real_subset"] or SHARED  # a replicate on a D_1 of its own records it
    base |= {k: v for k, v in RUN_OPTION_DEFAULTS.items() if base[k] is None}
    base["generator"] = base["generator"] or "ddpm"  # DDPM results record no generator
    if base["model_params"] is not None:  # one cell: the generator's parameters as JSON
        base["model_params"] = json.dumps(base["model_params"], sort_keys=True)
    values = dict(record["values"]) | {f"share_{k}": v for k, v in record.get("source_shares", {}).items()}
    # fid.json's extra distances (fd_dinov2, fid_torchvision) name their own space under `metrics`
    spaces = {metric: m["extractor"] for metric, m in record.get("metrics", {}).items() if "extractor" in m}
    # and metrics.json's copy and memorization measures are taken in pixels, not the file's space
    spaces |= {metric: "pixels" for metric in PIXEL_METRICS if metric in values}
    return [base | {"metric": metric, "value": value, "feature_extractor": spaces.get(metric, space)}
            for metric, value in values.items()]


def tidy(paths: list[str | Path]) -> pd.DataFrame:
    columns = ID_COLUMNS + ["file", "feature_extractor", "metric", "value"]
    frame = pd.DataFrame([r for p in paths for r in rows(p)], columns=columns)
    return frame.sort_values(["dataset", "run", "replicate", "iteration", "metric"], kind="stable").reset_index(drop=True)


def stage(inputs: list[str], out: str) -> pd.DataFrame:
    from ouroboros.io import save_text

    frame = tidy(inputs)
    save_text(out, frame.to_csv(sep="\t", index=False))
    print(f"{len(frame)} rows from {len(inputs)} files → {out}")
    print(summary(frame))
    return frame


def scan(results: str | Path) -> list[Path]:
    """Every metrics.json and fid.json under results/{dataset}/{run}/iter{NN}/ and, for replicates
    r ≥ 1, results/{dataset}/{run}/rep{r}/iter{NN}/ and .../draw{r}/iter{NN}/."""
    root = Path(results)
    return sorted(p for name in ("metrics.json", "fid.json") for folder in ("*/*", "*/*/rep*", "*/*/draw*")
                  for p in root.glob(f"{folder}/iter*/{name}"))


PER_REPLICATE_SUFFIX = " · D_1 per replicate"


def by_design(frame: pd.DataFrame) -> pd.DataFrame:
    """Each real-subset design as datasets of its own, so that every pairing, band and interval
    stays within one design: the rows of replicates that drew their own D_1 move to dataset (and
    family) ``X · D_1 per replicate``, with replicate 0 of the same run, which both designs share
    (its D_1 is the dataset's). A run whose replicates ≥ 1 all drew their own D_1 keeps no
    one-replicate copy under the shared design."""
    if "real_subset" not in frame or not (frame.real_subset == PER_REPLICATE).any():
        return frame
    per = frame.real_subset == PER_REPLICATE
    runs = pd.MultiIndex.from_frame(frame[["dataset", "run"]])  # one (dataset, run) key per row
    zero = runs.isin(runs[per]) & ~per & (frame.replicate == 0)  # replicate 0 of a run with drawn replicates
    keep_zero = runs.isin(runs[~per & (frame.replicate > 0)])  # ... which also has shared replicates ≥ 1
    drawn = pd.concat([frame[per], frame[zero].assign(real_subset=PER_REPLICATE)])
    drawn = drawn.assign(dataset=drawn.dataset + PER_REPLICATE_SUFFIX, family=drawn.family + PER_REPLICATE_SUFFIX)
    shared = frame[~per & ~(zero & ~keep_zero)]
    return pd.concat([shared, drawn], ignore_index=True)


def signature(results: str | Path) -> str:
    """A digest of which result files exist and when they changed: as a rule parameter, it makes
    Snakemake redraw tables and figures whenever results/ changes, without depending on (and so
    triggering) the jobs that made them."""
    import hashlib

    h = hashlib.sha256()
    for p in scan(results):
        h.update(f"{p}:{p.stat().st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


HEADLINE = ["generalization_score", "train_entropy", "generated_entropy", "real_share", "fid"]


def summary(frame: pd.DataFrame, metrics: list[str] = HEADLINE) -> str:
    """The headline metrics as one block per metric: runs down, iterations across (the mean over
    replicates where there are several; ouroboros.stats gives their intervals)."""
    blocks = []
    for metric in metrics:
        part = frame[frame.metric == metric]
        if part.empty:
            continue
        wide = part.pivot_table(index=["dataset", "run"], columns="iteration", values="value", aggfunc="mean")
        blocks.append(f"{metric}\n{wide.to_string(float_format=lambda v: f'{v:.3f}')}")
    return "\n\n".join(blocks)


def run(args) -> int:
    """``ouroboros tables`` and ``python -m ouroboros.tables`` (their parser: ouroboros.cli.tables_arguments)."""
    if args.summary:
        if not Path(args.summary).is_file():
            raise OuroborosError(f"{args.summary}: no such table; `ouroboros tables` (or `ouroboros report`) writes it")
        print(summary(pd.read_csv(args.summary, sep="\t")))
    else:
        stage([str(p) for p in scan(args.results)], f"{args.results}/tables/metrics.tsv")
    return 0


if __name__ == "__main__":
    from ouroboros.cli import module_main

    sys.exit(module_main("tables"))
