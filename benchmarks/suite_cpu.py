"""Where the suite's CPU goes: a pytest plugin that records, per test phase, the CPU seconds of the
test process and of every child it waited for (snakemake and its jobs), and the wall seconds.

On two cores the suite's wall time is bounded below by its CPU time / 2, so CPU seconds, not the
wall durations of `--durations` (which grow with whatever else runs), say what to cut. A module's
fixture is charged to the setup of the first test that uses it.

    PYTHONPATH=benchmarks OUROBOROS_SUITE_CPU=/tmp/cpu.tsv .venv/bin/python -m pytest -n 4 --dist loadfile -p suite_cpu
    python benchmarks/suite_cpu.py /tmp/cpu.tsv          # the table: files and tests by CPU seconds
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import defaultdict

import pytest


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu(), time.perf_counter()
    yield
    path = os.environ.get("OUROBOROS_SUITE_CPU")
    if path:
        with open(path, "a") as f:  # one short line per test: appends from several workers stay whole
            f.write(f"{item.nodeid}\t{_cpu() - cpu:.2f}\t{time.perf_counter() - wall:.2f}\n")


def report(path: str, top: int = 40) -> None:
    rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for nodeid, cpu, wall in rows:
        by_file[nodeid.split("::")[0]][0] += float(cpu)
        by_file[nodeid.split("::")[0]][1] += float(wall)
    total = sum(float(r[1]) for r in rows)
    print(f"{len(rows)} tests, {total:.0f} CPU-s in all (≥ {total / 2 / 60:.1f} min of wall on 2 cores)\n")
    print("| file | CPU s | wall s |\n|---|---:|---:|")
    for name, (cpu, wall) in sorted(by_file.items(), key=lambda kv: -kv[1][0]):
        print(f"| {name} | {cpu:.0f} | {wall:.0f} |")
    print("\n| test | CPU s | wall s |\n|---|---:|---:|")
    for nodeid, cpu, wall in sorted(rows, key=lambda r: -float(r[1]))[:top]:
        print(f"| {nodeid} | {float(cpu):.1f} | {float(wall):.1f} |")


if __name__ == "__main__":
    report(sys.argv[1])
