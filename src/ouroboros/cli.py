"""The ``ouroboros`` command line: one entry point, one subcommand per task.

    ouroboros run                                          # snakemake with this machine's defaults
    ouroboros run -- results/cifar/greedy/iter08/fid.json  # ... of a target; any snakemake argument after --
    ouroboros check results/cifar/greedy/iter08/fid.json   # preflight: CUDA, data, weights, disk, cost
    ouroboros report                                       # tables, figures, findings, report.html; says where
    ouroboros tables | figures | findings                  # one of them, without Snakemake
    ouroboros gpu-check                                    # the GPU acceptance check of the checkout

``run`` and ``report`` only build snakemake command lines: the documented ``snakemake`` commands
keep working, and ``--print`` shows what would run. The parsers of ``tables``, ``figures`` and
``findings`` live here, so that ``ouroboros --help`` imports no pandas; ``python -m ouroboros.tables``
and its siblings use the same parsers.

A subcommand is a function that takes the parsed arguments and returns the exit status, registered
with its parser in :data:`COMMANDS` (``add_check`` shows the pattern); ``python -m ouroboros`` runs
the same :func:`main`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------------
# run: snakemake with this machine's defaults


@dataclass(frozen=True)
class Machine:
    """What the defaults of ``run`` depend on."""

    cores: int  # the cores this process may use (its affinity, which a cgroup or taskset narrows)
    gpus: tuple[str, ...]  # the visible CUDA devices (ouroboros.devices.visible_devices)
    cuda: bool  # a CUDA driver is loaded (/dev/nvidiactl): no warm start, where forking after CUDA is unsafe


def this_machine(gpu_count: int | str = "auto") -> Machine:
    from ouroboros import devices

    cuda = os.path.exists("/dev/nvidiactl")
    # the affinity where the system has one (Linux: a cpuset, taskset or SLURM allocation narrows it)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cores=cores, gpus=tuple(devices.visible_devices(gpu_count)) if cuda else (),
                   cuda=cuda)


def gpu_settings(directory: str | Path, configfiles: Sequence[str] = ()) -> tuple[int | str, int]:
    """config.yaml's ``gpus: count`` and ``slots_per_gpu`` (the later --configfile wins), else auto and 1."""
    import yaml

    count, slots = "auto", 1
    for file in [Path(directory) / "config.yaml", *map(Path, configfiles)]:
        if file.is_file():
            gpus = (yaml.safe_load(file.read_text()) or {}).get("gpus") or {}
            count, slots = gpus.get("count", count), int(gpus.get("slots_per_gpu", slots))
    return count, slots


def gpu_slots(machine: Machine, slots_per_gpu: int = 1) -> int:
    """``--resources=gpu=N``: on a GPU box the device count × slots per device (every slot one model
    job at a time); on a CPU box "gpu" only counts concurrent model jobs, one per core."""
    return len(machine.gpus) * slots_per_gpu if machine.cuda and machine.gpus else machine.cores


def snakemake_executable() -> str:
    """This Python's snakemake (the venv's, also when the venv is not activated), else the PATH's."""
    own = Path(sys.executable).with_name("snakemake")
    if own.is_file():
        return str(own)
    found = shutil.which("snakemake")
    if found is None:
        raise OuroborosError("snakemake is not installed in this Python's environment: install ouroboros with "
                             "`pip install -e .` in the repository (or `make .venv/bin/snakemake`)")
    return found


def _has_option(extra: Sequence[str], *names: str) -> bool:
    return any(a == n or a.startswith(n + "=") or (len(n) == 2 and a.startswith(n) and not a.startswith("--"))
               for a in extra for n in names)


def _location(args: argparse.Namespace) -> list[str]:
    """-s/--directory where they differ from snakemake's own defaults (./Snakefile, .)."""
    out = []
    snakefile = _snakefile(args)
    if snakefile.resolve() != (Path.cwd() / "Snakefile").resolve():
        out += ["-s", str(snakefile)]
    if Path(args.directory).resolve() != Path.cwd().resolve():
        out += ["--directory", str(args.directory)]
    return out


def run_command(args: argparse.Namespace, machine: Machine, slots_per_gpu: int = 1) -> list[str]:
    """The command line of ``ouroboros run``: snakemake with cores and gpu slots from ``machine``, under
    the warm start on a CPU machine, then the user's own snakemake arguments (theirs win: a --cores or
    --resources among them replaces ours) and the targets after ``--``."""
    extra = list(args.snakemake_args)
    cmd = [snakemake_executable(), *_location(args)]
    if not _has_option(extra, "--cores", "-c", "--jobs", "-j"):
        cmd += ["--cores", str(args.cores or machine.cores)]
    if not _has_option(extra, "--resources", "--res"):
        # on a CPU box the cores asked for, not the machine's: "gpu" there counts concurrent model jobs
        machine = Machine(args.cores or machine.cores, machine.gpus, machine.cuda)
        cmd.append(f"--resources=gpu={args.gpu_slots or gpu_slots(machine, slots_per_gpu)}")
    if getattr(args, "progress", False):
        if not _has_rich_logger():
            raise OuroborosError("--progress draws snakemake's jobs with the rich logger plugin, which is not installed: "
                                 "pip install -e '.[watch]' (snakemake-logger-plugin-rich), or leave --progress out")
        cmd += ["--logger", "rich"]
    cmd += extra
    if args.targets:
        cmd += ["--", *args.targets]
    if not machine.cuda and not args.cold:
        cmd = [sys.executable, "-m", "ouroboros.warm", *cmd]
    return cmd


def _has_rich_logger() -> bool:
    """snakemake-logger-plugin-rich: a live panel of the jobs and a bar per rule in the terminal."""
    import importlib.util

    return importlib.util.find_spec("snakemake_logger_plugin_rich") is not None


def _environment(warm: bool) -> dict[str, str]:
    env = dict(os.environ)
    if warm:
        # the warm workers' OpenMP threads would spin between jobs on a box whose cores are all busy
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _execute(cmd: list[str], dry: bool) -> int:
    print("$ " + " ".join(cmd), flush=True)
    if dry:
        return 0
    return subprocess.run(cmd, env=_environment("ouroboros.warm" in cmd)).returncode


def run_run(args: argparse.Namespace) -> int:
    count, slots = gpu_settings(args.directory, _configfiles(args.snakemake_args))
    machine = this_machine(count)
    return _execute(run_command(args, machine, slots), args.print)


def _configfiles(extra: Sequence[str]) -> list[str]:
    """The files of --configfile/--configfiles among snakemake's arguments."""
    out, taking = [], False
    for a in extra:
        if a.startswith("--configfile"):
            taking, value = True, a.partition("=")[2]
            if value:
                out.append(value)
        elif a.startswith("-"):
            taking = False
        elif taking:
            out.append(a)
    return out


def _workflow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--directory", default=".", help="the working directory, holding config.yaml and results/ (default: .)")
    p.add_argument("-s", "--snakefile", help="the Snakefile (default: DIR/Snakefile, else the repository's)")
    p.add_argument("--cold", action="store_true", help="no warm start: every job imports its libraries itself "
                   "(the warm start is on by default on a CPU machine, off where a CUDA driver is loaded)")
    p.add_argument("--print", action="store_true", help="print the snakemake command lines and run nothing")
    # what follows -- on the command line (main splits it off): snakemake's own arguments, never parsed here
    p.set_defaults(snakemake_args=[])
    p.usage = f"{p.prog} [options]{' [TARGET ...]' if p.prog.endswith(' run') else ''} [-- SNAKEMAKE_ARG ...]"


def add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="snakemake with this machine's defaults: cores, gpu slots, the warm start on CPU",
        description="Run snakemake for TARGETs (none: config.yaml's targets, the demo) with this machine's defaults: "
                    "--cores from the cores this process may use; --resources=gpu=N with N the visible CUDA devices × "
                    "config.yaml's gpus: slots_per_gpu on a GPU box, or the core count on a CPU box (there \"gpu\" only "
                    "counts concurrent model jobs); and on a CPU machine the warm start (python -m ouroboros.warm: jobs "
                    "forked from a process that imported torch once). Any snakemake argument after -- is passed on and "
                    "wins over these defaults.",
        epilog="examples:\n  ouroboros run\n  ouroboros run results/digits/greedy/iter04/fid.json\n"
               "  ouroboros run --print -- -n fig03          (the command line, then nothing)\n"
               "  ouroboros run -- --cores 8 --configfile my.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="files or rules, as for snakemake")
    p.add_argument("--cores", type=int, help="cores for snakemake (default: this machine's)")
    p.add_argument("--gpu-slots", type=int, help="N of --resources=gpu=N (default: devices × slots_per_gpu, or the cores on CPU)")
    p.add_argument("--progress", action="store_true", help="follow the run in the terminal: the jobs running, a bar per "
                   "rule and the whole plan's progress (snakemake's rich logger: pip install -e '.[watch]')")
    _workflow_options(p)
    p.set_defaults(run=run_run)


# ---------------------------------------------------------------------------------------------
# report: tables, figures, findings and report.html in one go


def report_commands(args: argparse.Namespace, machine: Machine) -> tuple[list[str], list[str]]:
    """The two snakemake commands of ``ouroboros report``: the tables, figures and findings jobs (one
    core: they only read results/), then the self-contained report.html of them."""
    extra = list(args.snakemake_args)
    base = [snakemake_executable(), *_location(args)]
    jobs = [*base, "--cores", "1", *extra, "figures", "findings"]
    if not machine.cuda and not args.cold:
        jobs = [sys.executable, "-m", "ouroboros.warm", *jobs]
    report = [*base, "--cores", "1", "--report", str(report_path(args)), *extra, "figures"]
    return jobs, report


def report_path(args: argparse.Namespace) -> Path:
    out = Path(args.output)
    return out if out.is_absolute() else (Path(args.directory) / out).absolute()


def run_report(args: argparse.Namespace) -> int:
    jobs, report = report_commands(args, this_machine())
    code = _execute(jobs, args.print)
    if code:
        return code
    # snakemake --report lists every file it adds (a line each, 70 for the demo): they go to a log
    # the ending names, so that the last screen is the report's path, the headline and the findings
    log = Path(args.directory) / "logs" / "report.log"
    print(f"$ {' '.join(report)} > {log}", flush=True)
    if args.print:
        return 0
    figures = Path(args.directory) / "results" / "figures"
    if figures.is_dir() and not (figures / "first_screen.rst").is_file():
        # figures drawn by an older version, which the figures job keeps (it reruns when results/ change)
        from ouroboros.figures import write_first_screen

        write_first_screen(figures)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.run(report, stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise OuroborosError(f"snakemake --report failed (its output above and in {log})")
    from ouroboros import ending

    print(ending.text(Path(args.directory), report_path(args), log=log))
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables, figures, findings and report.html from results/, in one go; prints where they are",
        description="Build the tables, the figures and the findings from whatever results/ holds (snakemake --cores 1 "
                    "figures findings: it never trains), then the self-contained report.html (snakemake --report, its "
                    "output in logs/report.log), and print where they are, the headline metrics of each run at its last "
                    "iteration and the primary findings.")
    p.add_argument("-o", "--output", default="report.html", help="the report's file, relative to DIR (default: report.html)")
    _workflow_options(p)
    p.set_defaults(run=run_report)


# ---------------------------------------------------------------------------------------------
# tables, figures, findings: the library's steps without Snakemake (python -m ouroboros.X alike)


def tables_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ("The tidy table (one row per dataset × run × iteration × metric) of every metrics.json and fid.json "
                     "under RESULTS, written to RESULTS/tables/metrics.tsv; or, with --summary, the headline metrics of "
                     "a table already written.")
    p.add_argument("results", nargs="?", default="results", help="the results folder to scan (default: results)")
    p.add_argument("--summary", nargs="?", const="results/tables/metrics.tsv", metavar="TABLE",
                   help="print the headline metrics of TABLE (default: results/tables/metrics.tsv) and write nothing")
    return p


def figures_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ("Every figure of the paper that the runs under RESULTS allow, the sample grids and the loss curves, "
                     "each as PNG and PDF beside a TSV of what it plots; a figure whose runs are missing is skipped "
                     "with a line saying why.")
    p.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    p.add_argument("-o", "--out", help="the folder for the figures (default: RESULTS/figures)")
    return p


def findings_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ("The paper's claims tested on the runs under RESULTS: RESULTS/tables/findings.tsv (and findings.md, "
                     "findings.rst) and summary.tsv, with each experiment's primary claims from CONFIG.")
    p.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    p.add_argument("config", nargs="*", help="the config files the results were made with, merged in order as snakemake "
                   "merges config.yaml and its --configfile files (e.g. config.yaml experiments/science.yaml): the "
                   "experiments and their primary claims (default: none: the rows are secondary, as of no experiment)")
    return p


def _library(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(f"ouroboros.{name}").run(args)
    return run


def add_library(sub: argparse._SubParsersAction) -> None:
    for name, arguments, help_ in (
            ("tables", tables_arguments, "the tidy metrics table of results/ (or its headline: --summary)"),
            ("figures", figures_arguments, "the figures of results/, without Snakemake"),
            ("findings", findings_arguments, "the paper's claims tested on results/, without Snakemake")):
        arguments(sub.add_parser(name, help=help_)).set_defaults(run=_library(name))


def module_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``python -m ouroboros.NAME`` (tables, figures, findings): the subcommand's."""
    arguments = {"tables": tables_arguments, "figures": figures_arguments, "findings": findings_arguments}[name]
    return arguments(argparse.ArgumentParser(prog=f"python -m ouroboros.{name}"))


def module_main(name: str, argv: list[str] | None = None) -> int:
    """``python -m ouroboros.NAME``: its parser, its run, errors as the command line prints them."""
    import importlib

    args = module_parser(name).parse_args(argv)
    try:
        return importlib.import_module(f"ouroboros.{name}").run(args)
    except OuroborosError as exc:
        print(f"python -m ouroboros.{name}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------
# gpu-check: the acceptance check of the checkout

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, where ouroboros is installed editable from it
GPU_CHECK = CHECKOUT / "benchmarks" / "gpu_check.sh"


def gpu_check_command(args: argparse.Namespace, script: Path = GPU_CHECK) -> list[str]:
    if not script.is_file():
        raise OuroborosError(f"no {script}: the GPU check ships with the repository, not with the package; run it from a "
                             "checkout where ouroboros is installed editable (`pip install -e .`), or run "
                             "benchmarks/gpu_check.sh of a checkout directly")
    return [str(script), args.out, "--budget", str(args.budget), *args.check_args]


def run_gpu_check(args: argparse.Namespace) -> int:
    cmd = gpu_check_command(args)
    # the script's own default Python is the checkout's .venv; the one running this command is the one installed
    env = {"PYTHON": sys.executable, **os.environ}
    print("$ " + " ".join(cmd), flush=True)
    return 0 if args.print else subprocess.run(cmd, env=env).returncode


def add_gpu_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gpu-check", help="the GPU acceptance check (benchmarks/gpu_check.sh of the checkout) within a time budget",
        description=f"Run the GPU acceptance check, benchmarks/gpu_check.sh: resume, sample, features, select, a loop, "
                    f"throughput and the rest, each phase with its share of the budget, ending in one summary table. The "
                    f"check is found from the checkout that ouroboros is installed editable from ({GPU_CHECK}); it is "
                    f"not part of an installed wheel. docs/gpu.md says what each phase checks.")
    p.add_argument("out", nargs="?", default="gpu-check", help="the folder for gpu_check.json and its log (default: gpu-check)")
    p.add_argument("--budget", type=int, default=300, help="the whole check's time budget in seconds (default: 300)")
    p.add_argument("--print", action="store_true", help="print the command line and run nothing")
    # after --: options of benchmarks/gpu_check.py (main splits them off)
    p.set_defaults(check_args=[])
    p.usage = f"{p.prog} [options] [OUT] [-- CHECK_ARG ...]  (CHECK_ARG: gpu_check.py's --tiny, --skip loop, ...)"
    p.set_defaults(run=run_gpu_check)


# the subcommands, in the order --help lists them: each adds its parser (with set_defaults(run=...))
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_run, add_check, add_report, add_library, add_gpu_check]


def parser() -> argparse.ArgumentParser:
    from ouroboros import __version__

    p = argparse.ArgumentParser(prog="ouroboros", description="The self-consuming loop of diffusion models as a "
                                "Snakemake workflow: run it, check it, and read what it found.",
                                epilog="`ouroboros COMMAND --help` says more of each; every command only drives "
                                "snakemake or the library, and the documented snakemake commands work as well.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv before and after the first ``--``: what comes after goes on to snakemake (or the check) as
    it is, never parsed here."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse(argv: list[str]) -> argparse.Namespace:
    """The subcommand's arguments, with what follows -- in its snakemake_args (or check_args)."""
    own, passed = _split(argv)
    p = parser()
    args = p.parse_args(own)
    for key in ("snakemake_args", "check_args"):
        if hasattr(args, key):
            setattr(args, key, [*getattr(args, key), *passed])
            return args
    if passed:
        p.error(f"{args.command} takes no arguments after --")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        return args.run(args)
    except OuroborosError as exc:
        print(f"ouroboros {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
