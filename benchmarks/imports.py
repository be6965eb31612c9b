"""Import cost of each stage's job: what a Snakemake job of that rule loads before its work starts,
measured as the process's wall time for `configure(); import ouroboros.<stage>` plus the libraries
its stage function imports when it runs (read off `python -X importtime`).

    python benchmarks/imports.py [--src DIR] [--repeat 5]

--src points at another checkout's src/ to compare versions (e.g. a clone of an older commit).
Prints one row per stage: median wall seconds over the repeats, and whether torch was loaded.
"""

from __future__ import annotations

import sys

# this folder holds select.py, which must not shadow the standard library's select module
sys.path = [p for p in sys.path if p not in ("", sys.path[0])] if __name__ == "__main__" else sys.path

import argparse
import statistics
import subprocess
import time
from pathlib import Path

# stage → the modules its job imports (the stage module, then what its stage function loads lazily)
STAGES = {
    "select": ["ouroboros.select", "faiss"],
    "evaluate": ["ouroboros.evaluate", "faiss", "scipy.special"],
    "tables": ["ouroboros.tables"],
    "figures": ["ouroboros.figures", "matplotlib.pyplot", "scipy.stats", "faiss"],
    "findings": ["ouroboros.findings", "scipy.stats"],
    "fid": ["ouroboros.fid"],
    "train": ["ouroboros.train", "diffusers"],
}


def one(src: str, modules: list[str]) -> tuple[float, bool]:
    code = (f"import sys; sys.path.insert(0, {src!r})\n"
            "from ouroboros.runtime import configure; configure(1)\n"
            + "".join(f"import {m}\n" for m in modules)
            + "print('torch' in sys.modules)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - start, out.strip() == "True"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"| stage | median wall s ({args.repeat} runs) | torch loaded |")
    print("|---|---|---|")
    for stage, modules in STAGES.items():
        try:
            one(args.src, modules)  # warm the file cache
        except subprocess.CalledProcessError:
            print(f"| {stage} | absent in this version | |")
            continue
        runs = [one(args.src, modules) for _ in range(args.repeat)]
        print(f"| {stage} | {statistics.median(t for t, _ in runs):.2f} | {'yes' if runs[0][1] else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
