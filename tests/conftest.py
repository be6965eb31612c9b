import os
import resource
import time

import pytest

# One thread per test process, as in the workflow's jobs: the suite shares a small machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No test may reach a model hub: loading code must work from local directories.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# The longest files first: with several workers (make test), a long file collected last would
# run alone at the end while the other workers sit idle.
# Ordered by wall time in a full run on an idle machine (2026-12-07: slurm 153 s, mostly waiting on
# SLURM's polls, so it goes first and never ends last; warm_kills 147, paper_shape 128, warm 127,
# gpu_check 114, workflow 70, faults 66, theory 63, upgrade 43, experiments 36, cli 29, flow_training 28).
_FIRST = ("test_slurm.py", "test_warm_kills.py", "test_paper_shape.py", "test_warm.py", "test_gpu_check.py",
          "test_workflow.py", "test_faults.py", "test_theory.py", "test_upgrade.py", "test_experiments.py",
          "test_cli.py", "test_flow_training.py", "test_check.py", "test_figures.py", "test_generators.py")


def pytest_configure(config):
    """One warm server for the whole session (tests/cli.py): the test processes of `pytest -n 4` share
    it, instead of importing torch, diffusers and snakemake once each. Not for the fast tier, which
    runs no CLI."""
    if hasattr(config, "workerinput") or "not cli" in (config.getoption("markexpr") or ""):
        return  # a worker of pytest -n: the controller's server is named in its environment
    from cli import SESSION, start_server

    config.ouroboros_server, os.environ[SESSION] = start_server()


def pytest_unconfigure(config):
    proc = getattr(config, "ouroboros_server", None)
    if proc is not None:
        from cli import stop_server

        stop_server(proc)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_FIRST)))  # stable: a file's own order stays


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With OUROBOROS_SUITE_CPU=FILE, one line per test: its CPU seconds (this process and every
    child it waited for: snakemake and its jobs) and wall seconds; benchmarks/suite_cpu.py reads it."""
    path = os.environ.get("OUROBOROS_SUITE_CPU")
    if not path:
        yield
        return
    cpu, wall = _cpu(), time.perf_counter()
    yield
    with open(path, "a") as f:  # one short line per test: appends from several workers stay whole
        f.write(f"{item.nodeid}\t{_cpu() - cpu:.2f}\t{time.perf_counter() - wall:.2f}\n")
