"""The project's own experiments, beside the user's config.yaml.

config.yaml holds what a user runs: their datasets and runs, the default target and the paper's
experiments (fig01 … fig14). The experiments this project runs to check itself live in
``experiments/*.yaml`` beside it, each file with its datasets, target sets and primary families:
``science.yaml`` (the reproduction at CPU scale, and beyond-digits and beyond-flow on the same
datasets), ``theory.yaml`` (the known answers) and ``beyond.yaml`` (the options beyond the paper on
CIFAR-10). Snakemake plans one when its file is passed (``--configfile experiments/science.yaml``,
which ``make science`` does); it merges over config.yaml as Snakemake merges config files
(:func:`load` does the same in-process).

The findings read every shipped file whether or not it was passed (:func:`for_findings`): an
experiment's primary family is part of its design, and ``snakemake findings`` run without the file
must decide science's claims exactly as with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ouroboros.errors import OuroborosError

# the repository's experiments/ (beside config.yaml and the Snakefile)
DIRECTORY = Path(__file__).resolve().parents[2] / "experiments"
FINDINGS_KEYS = ("targets", "experiments", "primary")  # what decides the findings


def files(directory: str | Path | None = None) -> list[Path]:
    """The experiment files the workflow ships, in name order (none where the directory is absent:
    an installed package without the repository)."""
    root = Path(directory) if directory is not None else DIRECTORY
    return sorted(root.glob("*.yaml")) if root.is_dir() else []


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base`` as Snakemake merges config files: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def read(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise OuroborosError(f"{path}: no such config file")
    return yaml.safe_load(path.read_text()) or {}


def load(*paths: str | Path) -> dict[str, Any]:
    """config.yaml and experiment files merged in order, as ``snakemake --configfile`` merges them."""
    out: dict[str, Any] = {}
    for path in paths:
        out = merge(out, read(path))
    return out


def shipped(directory: str | Path | None = None) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each shipped experiment's name → (its file, the file's content)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in files(directory):
        content = read(path)
        for name in content.get("experiments") or {}:
            if name in out:
                raise OuroborosError(f"{path}: experiment {name} is defined in {out[name][0]} too; keep one")
            out[name] = (path, content)
    return out


def _directories(runs: Mapping[str, Any]) -> dict[str, str]:
    from ouroboros.config import run_directories

    return run_directories(runs)


def _group(group: Mapping[str, Any], directories: Mapping[str, str]) -> dict[str, Any]:
    if "runs" not in group:
        return dict(group)
    return dict(group) | {"runs": [directories.get(r, r) for r in group["runs"]]}


def _claim(claim: Mapping[str, Any], directories: Mapping[str, str]) -> dict[str, Any]:
    """A primary claim with its runs ('a' or 'a vs b') named by their results directories, as the rows are."""
    if "runs" not in claim:
        return dict(claim)
    return dict(claim) | {"runs": " vs ".join(directories.get(r, r) for r in str(claim["runs"]).split(" vs "))}


def for_findings(config: Mapping[str, Any], directory: str | Path | None = None) -> dict[str, Any]:
    """What decides the findings: the config's targets, experiments and primary families, with every
    shipped experiment it lacks (and that experiment's primary family) from its file, runs named by
    their results directories (as metrics.json and the tables name them).

    The order is fixed whatever files were passed: the config's own experiments in its order, then
    the shipped ones in file order, each as the config defines it where it does. So the findings,
    and the findings rule's parameters, are the same with or without ``--configfile experiments/X.yaml``.
    """
    experiments = dict(config.get("experiments") or {})
    primary = dict(config.get("primary") or {})
    ships = shipped(directory)
    names = [n for n in experiments if n not in ships] + list(ships)
    own_primary = {n: primary[n] for n in primary if n not in ships}
    merged_experiments: dict[str, Any] = {}
    merged_primary: dict[str, Any] = dict(own_primary)
    for name in names:
        if name in experiments:
            merged_experiments[name] = experiments[name]
            if name in primary:
                merged_primary[name] = primary[name]
        else:
            content = ships[name][1]
            merged_experiments[name] = content["experiments"][name]
            if name in (content.get("primary") or {}):
                merged_primary[name] = content["primary"][name]
    directories = _directories(config.get("runs") or {})
    targets = config.get("targets")
    return {
        "targets": _group(targets, directories) if targets else targets,
        "experiments": {n: [_group(g, directories) for g in gs] for n, gs in merged_experiments.items()},
        "primary": {n: [_claim(c, directories) for c in cs or []] for n, cs in merged_primary.items()},
    }


def missing(names: Iterable[str], directory: str | Path | None = None) -> dict[str, Path]:
    """The shipped experiments not among ``names`` (the config's), each with the file that defines it."""
    known = set(names)
    return {name: path for name, (path, _) in shipped(directory).items() if name not in known}
