"""Exact nearest-neighbour metrics at paper scale: ouroboros (faiss + exact re-ranking) against
scikit-learn's brute-force NearestNeighbors, in the same run.

    .venv/bin/python benchmarks/metrics.py            # 32k × 32k and 32k × 295k (a minute or two)
    .venv/bin/python benchmarks/metrics.py --quick

Both answer exact 1-NN; the table says whether their distances agree (to float32 rounding of
scikit-learn's ‖x‖² − 2x·y + ‖y‖² path) and whether the neighbours found are at the same distance.
"""

from __future__ import annotations

import sys

# this folder holds select.py, which must not shadow the standard library's select module
sys.path = [p for p in sys.path if p not in ("", sys.path[0])] if __name__ == "__main__" else sys.path

import argparse
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ouroboros import metrics  # noqa: E402
from ouroboros.neighbors import knn  # noqa: E402


def _select_bench():
    """benchmarks/select.py by path: its module name is taken by the standard library's select."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_select", Path(__file__).with_name("select.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


clustered = _select_bench().clustered


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    from sklearn.neighbors import NearestNeighbors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cases = [(8192, 8192, 384)] if args.quick else [(32768, 32768, 384), (32768, 294912, 384), (32768, 32768, 768)]
    print("| query × base | d | ouroboros 1-NN | scikit-learn brute | ratio | max Δd | same neighbour distance |")
    print("|---|---|---|---|---|---|---|")
    for nq, nb, d in cases:
        q, b = clustered(nq, d, seed=1), clustered(nb, d, seed=2)
        (ours_d, _), t_ours = timed(lambda q=q, b=b: knn(q, b, 1))
        nn = NearestNeighbors(n_neighbors=1, algorithm="brute")
        (sk_d, _), t_sk = timed(lambda q=q, b=b, nn=nn: nn.fit(b).kneighbors(q))
        delta = float(np.abs(ours_d[:, 0] - sk_d[:, 0]).max())
        same = bool(np.allclose(ours_d[:, 0], sk_d[:, 0], rtol=1e-4, atol=1e-4))
        print(f"| {nq:,} × {nb:,} | {d} | {t_ours:.1f} s | {t_sk:.1f} s | {t_sk / t_ours:.1f}× | {delta:.1e} | "
              f"{'yes' if same else 'NO'} |", flush=True)
    x = clustered(32768 if not args.quick else 8192, 384, seed=3)
    g = clustered(len(x), 384, seed=4)
    for name, fn in [("kl_entropy(D)", lambda: metrics.kl_entropy(x)), ("mnnd(D)", lambda: metrics.mnnd(x)),
                     ("generalization_score(G, D)", lambda: metrics.generalization_score(g, x)),
                     ("memorization_ratio(G, D)", lambda: metrics.memorization_ratio(g, x)),
                     ("prdc(D, G)", lambda: metrics.prdc(x, g))]:
        _, t = timed(fn)
        print(f"{name} at {len(x):,} × 384: {t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
