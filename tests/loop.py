"""The loop of closed-form generators in-process: the library's stage functions (data, train,
sample, select, evaluate) called in the workflow's order, with the workflow's paths, pools, fresh
rows and seeds (ouroboros.paths, ouroboros.seeds), but without Snakemake. A bug planted in a
production function (monkeypatch) therefore reaches the T rows as it would through `make theory`,
in seconds. Run it in an empty working directory: it writes results/ there."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ouroboros import config, data, evaluate, paths, sample, seeds, select, tables, theory, train
from ouroboros.config import RUN_OPTION_DEFAULTS


def _meta(cfg: config.Config, dataset: str, name: str, replicate: int, n: int) -> dict:
    """metrics.json's metadata as the workflow writes it (common.smk: run_meta)."""
    d, run = cfg.dataset(dataset), cfg.run(name)
    options = {k: getattr(run, k) for k, default in RUN_OPTION_DEFAULTS.items() if getattr(run, k) != default}
    return {"dataset": dataset, "family": d.family, "run": name, "replicate": replicate, "paradigm": run.paradigm,
            "selection": run.selection, "samples_per_iteration": run.samples, "iteration": n, "tau0": None,
            "decay": run.decay, "dataset_size": d.size, "generator": d.generator, "model_params": dict(d.model_params),
            "data_dim": int(d.source_spec["dim"]), **options}


def _fit_and_sample(cfg: config.Config, dataset: str, ref: str, n: int, replicate: int) -> None:
    """Iteration n's model (shared by a replicate's runs at n = 1) and the sample files the run reads."""
    d = cfg.dataset(dataset)
    model = paths.model_dir(dataset, ref, n)
    if not Path(model).is_dir():
        train.stage(paths.manifest(dataset, ref, n), d.model, dict(d.model_params),
                    seed=seeds.derive(cfg.seed, dataset, n, "train", replicate), model_out=model,
                    stats_out=f"{paths.producer_dir(dataset, ref, n)}/train-stats.jsonl",
                    labelled=d.generator_spec.inherits_labels)
    for out in paths.sample_files(cfg, dataset, ref, n):
        if Path(out).is_file():
            continue
        producer = str(Path(out).parent.relative_to(Path(paths.RESULTS) / dataset))
        start, count = paths.sample_range(cfg, dataset, producer)
        sample.stage(model, start, count, seed=seeds.derive(cfg.seed, dataset, n, "sample", replicate), inference_steps=1,
                     batch_size=count, out=out, labels_out=paths.labels_of(out))


def run(raw: dict, dataset: str, name: str, replicates: int, iterations: int) -> None:
    """Replicates 0 … R−1 of one run, iterations 1 … I, each ending in its metrics.json."""
    cfg = config.parse(raw)
    d = cfg.dataset(dataset)
    if not Path(paths.real_images(dataset)).is_file():
        data.stage(d.source_spec, d.root, d.size, seed=cfg.seed, dataset=dataset, images_out=paths.real_images(dataset),
                   labels_out=paths.real_labels(dataset), manifest_out=paths.manifest(dataset, "", 1), family=d.family)
    if cfg.run(name).fresh and not Path(paths.fresh_images(dataset)).is_file():
        data.fresh_stage(d.source_spec, d.root, d.size, seed=cfg.seed, dataset=dataset,
                         images_out=paths.fresh_images(dataset), labels_out=paths.labels_of(paths.fresh_images(dataset)),
                         family=d.family)
    spec = cfg.run(name)
    for replicate in range(replicates):
        ref = paths.with_replicate(name, replicate)
        if replicate and not Path(paths.manifest(dataset, ref, 1)).is_file():  # replicates share D_1
            Path(paths.manifest(dataset, ref, 1)).parent.mkdir(parents=True, exist_ok=True)
            Path(paths.manifest(dataset, ref, 1)).write_text(Path(paths.manifest(dataset, "", 1)).read_text())
        for n in range(1, iterations + 1):
            if n > 1:
                sources = [(s.name, f) for s in paths.pool(cfg, dataset, ref, n) for f in s.files]
                start, count = paths.fresh_rows(cfg, dataset, ref, n)
                fresh = select.Fresh(paths.fresh_images(dataset, ref), start, count) if count else None
                select.stage(sources, d.features, d.size, spec.selection,
                             seed=seeds.derive(cfg.seed, dataset, n, "select", replicate),
                             params=cfg.selection_params(dataset, name), manifest_out=paths.manifest(dataset, ref, n),
                             info_out=f"{paths.iteration_dir(dataset, ref, n)}/selection.json", share=spec.share,
                             fresh=fresh)
            _fit_and_sample(cfg, dataset, ref, n, replicate)
            evaluate.stage(paths.manifest(dataset, ref, n), paths.sample_files(cfg, dataset, ref, n),
                           paths.real_images(dataset, ref), d.features, count=d.size,
                           meta=_meta(cfg, dataset, name, replicate, n),
                           out=f"{paths.iteration_dir(dataset, ref, n)}/metrics.json", ancestry=d.traces_ancestry)


def t_rows(results: str = paths.RESULTS) -> pd.DataFrame:
    """The T rows of what results/ holds (ouroboros.theory, as the findings step reads them)."""
    tidy = tables.tidy(tables.scan(results))
    from ouroboros.findings import complete

    return pd.DataFrame(theory.claims(complete(tidy), results))
