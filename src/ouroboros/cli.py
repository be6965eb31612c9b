"""The ``ouroboros`` command line: one entry point, one subcommand per task.

    ouroboros check results/cifar/greedy/iter08/fid.json   # preflight: CUDA, data, weights, disk, cost

A subcommand is a function that takes the parsed arguments and returns the exit status, registered
with its parser in :data:`COMMANDS` (``add_check`` shows the pattern); ``python -m ouroboros`` runs
the same :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ouroboros.errors import OuroborosError

# the repository's Snakefile, for a working directory that has none of its own (config.yaml alone)
REPO_SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"


def _snakefile(args: argparse.Namespace) -> Path:
    if args.snakefile:
        return Path(args.snakefile)
    own = Path(args.directory) / "Snakefile"
    if own.is_file():
        return own
    if REPO_SNAKEFILE.is_file():
        return REPO_SNAKEFILE
    raise OuroborosError(f"no Snakefile in {Path(args.directory).absolute()}; give one with --snakefile")


def _executor(args: argparse.Namespace) -> str:
    """--executor, else the executor of --profile (profiles/slurm: slurm), else local."""
    if args.executor:
        return args.executor
    if args.profile:
        import yaml

        profile = Path(args.profile)
        settings = profile / "config.yaml" if profile.is_dir() else profile
        if not settings.is_file():
            raise OuroborosError(f"--profile {args.profile}: no {settings}")
        return str((yaml.safe_load(settings.read_text()) or {}).get("executor", "local"))
    return "local"


def run_check(args: argparse.Namespace) -> int:
    from ouroboros import config, preflight

    jobs, raw = preflight.plan(args.targets, snakefile=_snakefile(args), workdir=args.directory,
                               configfiles=args.configfile)
    cfg = config.parse(raw)
    report = preflight.check(jobs, cfg, cluster=_executor(args) != "local", gpus=raw.get("gpus"), where=args.directory)
    report.costs = preflight.cost_table(jobs, cfg, args.device)
    print(report.text())
    return 0 if report.ok else 1


def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="preflight: plan the targets and check CUDA, data, weights and disk before any job",
        description="Plan TARGETs with Snakemake (nothing runs) and check everything the planned jobs need: CUDA "
                    "where GPU jobs are planned, each data source, each network's weights offline, free disk; "
                    "print the planned jobs and their cost. Every problem is listed with its fix; the exit status "
                    "is 1 if there is any.")
    p.add_argument("targets", nargs="*", metavar="TARGET", help="files or rules, as for snakemake (none: the default target)")
    p.add_argument("-d", "--directory", default=".", help="the working directory, holding config.yaml and results/ (default: .)")
    p.add_argument("-s", "--snakefile", help="the Snakefile (default: DIR/Snakefile, else the repository's)")
    p.add_argument("--configfile", action="append", metavar="FILE",
                   help="a config file over the workflow's config.yaml, as snakemake's (repeat for several)")
    p.add_argument("--executor", help="the snakemake executor the run will use; under a cluster executor (slurm) the "
                   "CUDA item is left to the jobs on their nodes (default: the profile's, else local)")
    p.add_argument("--profile", help="the snakemake profile the run will use (a folder with config.yaml), for its executor")
    p.add_argument("--device", help="price the planned jobs on this device class of ouroboros/rates.yaml (H100, A100, "
                   "...; default: this machine's, from nvidia-smi)")
    p.set_defaults(run=run_check)


# the subcommands: each adds its parser (with set_defaults(run=...)) to the subparsers
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_check]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ouroboros", description="The self-consuming loop of diffusion models as a "
                                "Snakemake workflow: preflight and tools around `snakemake`.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except OuroborosError as exc:
        print(f"ouroboros {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
