"""A reference simulator of the Gaussian loop where no closed form is known to us: accumulate-
subsample, and replace with fresh real data. A few dozen lines of numpy that share no code with
the workflow (not its generators, paths, manifests, selection or seeds), so that a bug there
cannot hide in both: the theory findings (ouroboros.theory) check the workflow's replicates against
the mean trajectory this gives over many simulated replicates, conditional on the same D_1 (and the
same fresh rows), as the workflow's replicates are.
"""

from __future__ import annotations

import numpy as np


def _refit_and_draw(d: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws of the maximum-likelihood Gaussian of ``d`` (covariance with divisor N)."""
    mean = d.mean(axis=0)
    centred = d - mean
    w, v = np.linalg.eigh(centred.T @ centred / len(d))
    return mean + rng.standard_normal((count, d.shape[1])) @ (v * np.sqrt(np.clip(w, 0, None))).T


def gaussian_loop(real: np.ndarray, iterations: int, *, paradigm: str, fresh: np.ndarray | None = None,
                  fresh_fraction: float = 0.0, replicates: int = 4000, seed: int = 0) -> np.ndarray:
    """E[trace of the maximum-likelihood covariance of D_n | D_1], n = 1 … iterations, as the mean over
    ``replicates`` simulated loops.

    ``accumulate``: D_n is N drawn uniformly without replacement from real ∪ G_1 … G_(n−1).
    ``replace`` with ``fresh_fraction`` λ: D_n is round(λN) rows of ``fresh`` (the next unused ones,
    consecutive) and N − round(λN) drawn uniformly without replacement from G_(n−1).
    """
    rng = np.random.default_rng(seed)
    real = np.asarray(real, dtype=np.float64)
    n = len(real)
    take = int(np.floor(fresh_fraction * n + 0.5))
    traces = np.zeros((replicates, iterations))
    for r in range(replicates):
        d, generated, used = real, [], 0
        traces[r, 0] = np.var(d, axis=0).sum()
        for i in range(1, iterations):
            generated.append(_refit_and_draw(d, n, rng))
            if paradigm == "accumulate":
                pool = np.concatenate([real, *generated])
                d = pool[rng.choice(len(pool), n, replace=False)]
            elif paradigm == "replace":
                kept = generated[-1][rng.choice(n, n - take, replace=False)]
                d = np.concatenate([kept, np.asarray(fresh[used:used + take], dtype=np.float64)]) if take else kept
                used += take
            else:
                raise ValueError(f"paradigm must be accumulate or replace, not {paradigm!r}")
            traces[r, i] = np.var(d, axis=0).sum()
    return traces.mean(axis=0)


def _farthest_first(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-center greedy (the paper's Algorithm 1): a uniformly random first point, then each time the
    point farthest from everything chosen so far."""
    chosen = [int(rng.integers(len(x)))]
    nearest = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(n - 1):
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((x - x[chosen[-1]]) ** 2).sum(1))
    return np.asarray(chosen)


def kde_greedy_coalescence(real: np.ndarray, iterations: int, *, bandwidth: float, samples: int = 2,
                           replicates: int = 1000, seed: int = 0) -> np.ndarray:
    """E[share of pairs of D_n with one D_1 ancestor | D_1], n = 1 … iterations, for replace with a
    KDE (a uniformly chosen parent of D_n plus bandwidth·z) sampled ``samples``·N times and Greedy
    Selection keeping N: the mean over ``replicates`` simulated loops."""
    rng = np.random.default_rng(seed)
    real = np.asarray(real, dtype=np.float64)
    n = len(real)
    shares = np.zeros((replicates, iterations))
    for r in range(replicates):
        d, ancestors = real, np.arange(n)
        for i in range(1, iterations):
            parents = rng.integers(n, size=samples * n)
            pool = d[parents] + bandwidth * rng.standard_normal((samples * n, d.shape[1]))
            keep = _farthest_first(pool, n, rng)
            d, ancestors = pool[keep], ancestors[parents[keep]]
            counts = np.unique(ancestors, return_counts=True)[1]
            shares[r, i] = (counts * (counts - 1)).sum() / (n * (n - 1))
    return shares.mean(axis=0)
