"""Selection at paper scale: ouroboros' exact fast paths against the incremental baseline.

    .venv/bin/python benchmarks/select.py                  # paper sizes (minutes)
    .venv/bin/python benchmarks/select.py --quick          # small sizes (seconds)

Synthetic clustered features (a mixture of Gaussians of varied spread, like collapsed
generations). The greedy baseline is the incremental numpy version a user would write: after each
choice, one float32 matrix-vector product of the whole pool with the new centre
(‖x‖² − 2x·c + ‖c‖²), so every selected point streams the pool once; the streaming floor is those
bytes divided by this machine's measured read bandwidth. The threshold baseline is Algorithm 2 as
written (``threshold_decay_reference``). Where a baseline would take too long it runs its first
``--baseline-steps`` selections and is extrapolated linearly (its cost per step is constant).
"Same" compares with ``greedy_reference`` / ``threshold_decay_reference``, the exact streaming
definitions (greedy's order is a prefix property, so a prefix is compared), and, for greedy, with
the float32 baseline, which may differ at near-ties.
"""

from __future__ import annotations

import sys

# this folder holds select.py, which must not shadow the standard library's select module
sys.path = [p for p in sys.path if p not in ("", sys.path[0])] if __name__ == "__main__" else sys.path

import argparse
import os
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ouroboros import select  # noqa: E402


def clustered(n: int, d: int, seed: int = 0, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32) * 4
    spread = rng.uniform(0.2, 1.5, size=(n, 1)).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 65536):
        hi = min(n, lo + 65536)
        noise = rng.normal(size=(hi - lo, d)).astype(np.float32) * spread[lo:hi]
        out[lo:hi] = centres[rng.integers(clusters, size=hi - lo)] + noise
    return out


def bandwidth() -> float:
    """Bytes/s of a large array read (sum) on this machine: the baseline is bound by this."""
    a = np.ones(64 * 2**20 // 8)  # 64 MiB float64
    a.sum()
    t = time.perf_counter()
    for _ in range(10):
        a.sum()
    return 10 * a.nbytes / (time.perf_counter() - t)


def greedy_matvec(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The textbook incremental greedy: one float32 matrix-vector product per selected point (on
    the pool in ouroboros' seeded order, so that start and tie rule are the same)."""
    order = np.random.default_rng(seed).permutation(len(x))
    x = x[order]
    sq = np.einsum("ij,ij->i", x, x)
    chosen = [0]
    min_d = sq - 2 * (x @ x[0]) + sq[0]
    min_d[0] = -np.inf
    for _ in range(1, k):
        c = int(np.argmax(min_d))
        chosen.append(c)
        np.minimum(min_d, sq - 2 * (x @ x[c]) + sq[c], out=min_d)
        min_d[c] = -np.inf
    return order[np.asarray(chosen)]


def bench_greedy(n: int, k: int, d: int, baseline_steps: int, bw: float) -> dict:
    x = clustered(n, d)
    t = time.perf_counter()
    fast = select.greedy(x, k, seed=0)
    t_fast = time.perf_counter() - t
    steps = min(k, baseline_steps)
    t = time.perf_counter()
    base = greedy_matvec(x, steps, seed=0)
    t_base = (time.perf_counter() - t) * k / steps
    ref = select.greedy_reference(x, min(steps, 100), seed=0)
    floor = k * n * d * 4 / bw  # the baseline reads the float32 pool once per selected point
    return {"method": "greedy", "pool": n, "select": k, "d": d, "ours_s": t_fast, "baseline_s": t_base,
            "extrapolated": steps < k, "floor_s": floor, "same": bool(np.array_equal(fast[: len(ref)], ref)),
            "same_baseline": bool(np.array_equal(fast[:steps], base)), "compared": len(ref)}


def bench_threshold(n: int, k: int, d: int, baseline_steps: int, bw: float, decay: float) -> dict:
    x = clustered(n, d)
    sample = x[np.random.default_rng(1).choice(n, size=min(n, 2000), replace=False)]
    nn = np.sort(np.sqrt(((sample[:200, None] - sample[None]) ** 2).sum(-1)), axis=1)[:, 1]
    tau0 = float(np.median(nn)) * 2  # start above typical 1-NN distances, as a user would
    t = time.perf_counter()
    fast = select.threshold_decay_trace(x, k, tau0=tau0, decay=decay, seed=0)
    t_fast = time.perf_counter() - t
    # the stopping rule only truncates the sequence of acceptances, so a smaller target is a prefix
    steps = min(k, baseline_steps)
    t = time.perf_counter()
    ref = select.threshold_decay_reference(x, steps, tau0=tau0, decay=decay, seed=0)
    t_ref = (time.perf_counter() - t) * k / steps
    same, extrapolated = bool(np.array_equal(fast.indices[:steps], ref.indices)), steps < k
    floor = k * n * d * 8 / bw
    return {"method": "threshold_decay", "pool": n, "select": k, "d": d, "ours_s": t_fast, "baseline_s": t_ref,
            "extrapolated": extrapolated, "floor_s": floor, "same": same, "passes": fast.passes, "compared": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--baseline-steps", type=int, default=300, help="baseline selections actually run")
    args = parser.parse_args()
    bw = bandwidth()
    print(f"read bandwidth {bw / 1e9:.1f} GB/s, threads OMP={os.environ.get('OMP_NUM_THREADS', 'default')}")
    cases = [("greedy", 16384, 4096, 384), ("threshold", 16384, 8192, 384)]
    if not args.quick:
        cases += [("greedy", 65536, 32768, 384), ("greedy", 294912, 32768, 384), ("greedy", 65536, 32768, 768),
                  ("threshold", 65536, 32768, 384)]
    print("| method | pool → N | d | ouroboros | baseline | ratio | streaming floor | same as exact reference "
          "| same as baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, n, k, d in cases:
        r = (bench_greedy(n, k, d, args.baseline_steps, bw) if kind == "greedy"
             else bench_threshold(n, k, d, args.baseline_steps, bw, decay=0.95))
        star = " (extrapolated)" if r["extrapolated"] else ""
        word = {True: "yes", False: "NO", None: "not run"}
        same = word[r["same"]] + (f" (first {r['compared']})" if "compared" in r else "")
        other = word[r["same_baseline"]] + f" (first {min(k, args.baseline_steps)})" if "same_baseline" in r else "—"
        print(f"| {r['method']} | {n:,} → {k:,} | {d} | {r['ours_s']:.1f} s | {r['baseline_s']:.1f} s{star} | "
              f"{r['baseline_s'] / r['ours_s']:.1f}× | {r['floor_s']:.1f} s | {same} | {other} |", flush=True)


if __name__ == "__main__":
    main()
