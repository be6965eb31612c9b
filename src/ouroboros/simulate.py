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
    """``count`` draws of the maximum-likelihood Gaussian of each set ``d[r]`` of a stack (R, N, dim)
    (covariance with divisor N). mean + u·(d − mean)/√N with u ~ N(0, I_N) has exactly that covariance,
    (d − mean)ᵀ(d − mean)/N, rank-deficient or not, without factorising it (an eigendecomposition per set
    cost most of the findings step)."""
    mean = d.mean(axis=1, keepdims=True)
    u = rng.standard_normal((d.shape[0], count, d.shape[1]))
    return mean + u @ (d - mean) / np.sqrt(d.shape[1])


def _subsets(rng: np.random.Generator, replicates: int, size: int, n: int) -> np.ndarray:
    """For each replicate, ``n`` indices drawn uniformly without replacement from range(size)."""
    return np.argsort(rng.random((replicates, size)), axis=1)[:, :n]


def _rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(x, index[:, :, None], axis=1)


CHUNK = 500  # replicates simulated at once: accumulate's pool of 8 iterations at N = 16 in 64 dimensions is 33 MB


def gaussian_loop(real: np.ndarray, iterations: int, *, paradigm: str, fresh: np.ndarray | None = None,
                  fresh_fraction: float = 0.0, replicates: int = 4000, seed: int = 0) -> np.ndarray:
    """E[trace of the maximum-likelihood covariance of D_n | D_1], n = 1 … iterations, as the mean over
    ``replicates`` simulated loops (simulated ``CHUNK`` at a time, as stacked arrays).

    ``accumulate``: D_n is N drawn uniformly without replacement from real ∪ G_1 … G_(n−1).
    ``replace`` with ``fresh_fraction`` λ: D_n is round(λN) rows of ``fresh`` (the next unused ones,
    consecutive) and N − round(λN) drawn uniformly without replacement from G_(n−1).
    """
    if paradigm not in ("accumulate", "replace"):
        raise ValueError(f"paradigm must be accumulate or replace, not {paradigm!r}")
    rng = np.random.default_rng(seed)
    real = np.asarray(real, dtype=np.float64)
    n = len(real)
    take = int(np.floor(fresh_fraction * n + 0.5))
    traces = np.zeros((replicates, iterations))
    for start in range(0, replicates, CHUNK):
        r = min(CHUNK, replicates - start)
        stacked = np.broadcast_to(real, (r, *real.shape))  # D_1 of every replicate: a view, no copy
        d, generated, used = stacked, [], 0
        traces[start:start + r, 0] = np.var(real, axis=0).sum()
        for i in range(1, iterations):
            generated.append(_refit_and_draw(d, n, rng))
            if paradigm == "accumulate":
                pool = np.concatenate([stacked, *generated], axis=1)
                d = _rows(pool, _subsets(rng, r, pool.shape[1], n))
            else:
                d = _rows(generated[-1], _subsets(rng, r, n, n - take))
                if take:
                    rows = np.asarray(fresh[used:used + take], dtype=np.float64)
                    d = np.concatenate([d, np.broadcast_to(rows, (r, *rows.shape))], axis=1)
                    used += take
            traces[start:start + r, i] = np.var(d, axis=1).sum(axis=1)
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
