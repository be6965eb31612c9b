"""Where the suite's CPU goes: the table of what tests/conftest.py records with
OUROBOROS_SUITE_CPU set, the CPU seconds of each test (its process and every child it waited for:
snakemake and its jobs) and its wall seconds.

On two cores the suite's wall time is bounded below by its CPU time / 2, so CPU seconds, not the
wall durations of `--durations` (which grow with whatever else runs), say what to cut. A module's
fixture is charged to the first test that uses it.

    OUROBOROS_SUITE_CPU=/tmp/cpu.tsv .venv/bin/python -m pytest -n 4 --dist loadfile
    python benchmarks/suite_cpu.py /tmp/cpu.tsv          # the table: files and tests by CPU seconds
"""

from __future__ import annotations

import sys
from collections import defaultdict


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
