"""Choosing D_(n+1) from a pool of candidates: the paper's Greedy Selection and Threshold Decay
Filter (Appendix C), and the vanilla paradigms' uniform subsample and keep-all.

Distances are Euclidean between feature rows. "Exact" means: every distance is computed by the
one kernel ``_sq_dist`` (float64, direct differences), and ties go to the lowest pool index; the
result is therefore the same bit for bit on any machine for the same features and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ouroboros.errors import OuroborosError


def _sq_dist(features: np.ndarray, point: np.ndarray) -> np.ndarray:
    """The one exact kernel: float64 squared distance by direct differences, summed per row.

    Every distance that decides a selection goes through this function, against one point or
    row by row against aligned pairs, so fast and reference paths agree bit for bit.
    """
    diff = features - point
    return np.sum(diff * diff, axis=1)


def _check(features: np.ndarray, n: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (count, dim), got shape {features.shape}")
    if not 0 < n <= len(features):
        raise OuroborosError(f"cannot select {n} points from a pool of {len(features)}: the pool is smaller than N")
    return features


def greedy_reference(features: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Algorithm 1 as written: after each choice, every candidate's distance to the new centre.

    Streams the whole pool once per selected point; kept as the reference the fast path is
    tested and benchmarked against.
    """
    features = _check(features, n)
    first = int(np.random.default_rng(seed).integers(len(features)))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    min_d = _sq_dist(features, features[first])
    min_d[first] = -1.0  # chosen points never win again
    for i in range(1, n):
        best = int(np.argmax(min_d))  # argmax takes the lowest index among ties
        chosen[i] = best
        np.minimum(min_d, _sq_dist(features, features[best]), out=min_d)
        min_d[chosen[: i + 1]] = -1.0
    return chosen


# float32 dot products of length d are within gamma_d * |x||c| of the truth (Higham, Thm 3.5)
_U32 = 2.0**-24


class _LazyMinDistances:
    """Candidates' min squared distance to the centres, kept exact only where it can matter.

    ``value[i]`` is exact w.r.t. the first ``seen[i]`` centres, so it is an upper bound of the
    true value (min distances only shrink as centres are added). A refresh brings candidates up
    to date in decreasing order of their bound, with one float32 matrix product per chunk as a
    filter: a pair whose product-based distance minus its rounding bound cannot beat the current
    value is skipped, every other pair is recomputed with the exact kernel. Result: exact values
    for the candidates that can win, identical to the reference, for a fraction of its work.
    """

    def __init__(self, features: np.ndarray, first: int, chunk: int = 4096):
        self.x64 = features
        self.x32 = features.astype(np.float32)
        self.norm = np.sqrt(np.einsum("ij,ij->i", features, features))
        self.gamma = 2 * (features.shape[1] + 2) * _U32 / (1 - (features.shape[1] + 2) * _U32)
        self.value = _sq_dist(features, features[first])
        self.value[first] = -1.0
        self.seen = np.ones(len(features), dtype=np.int64)
        self.centres = [first]
        self.chunk = chunk

    def activate(self, active: np.ndarray) -> None:
        """Cache the active candidates contiguously: every step of an epoch reads them."""
        self.active = active
        self.active32 = np.ascontiguousarray(self.x32[active])
        self.active_norm = self.norm[active]

    def lower_bound(self, x32: np.ndarray, norm: np.ndarray, c: int) -> np.ndarray:
        """A proven lower bound of the squared distances from rows (float32, with their norms) to
        centre c: one float32 matrix-vector product, minus its rounding band (Higham's γ_d)."""
        nc = float(self.norm[c])
        h = (x32 @ self.x32[c]).astype(np.float64)
        slack = self.gamma * norm * nc + 1e-12 * (norm**2 + nc * nc)
        return norm**2 + nc * nc - 2.0 * h - slack

    def add_centre(self, c: int) -> None:
        """A new centre: exact update of the active candidates only; the rest become stale.

        One float32 matrix-vector product filters the active set (the same band as ``_update``);
        only candidates whose distance to c may fall below their current value are recomputed
        with the exact kernel.
        """
        active = self.active
        self.centres.append(c)
        current = self.value[active]
        maybe = np.nonzero(self.lower_bound(self.active32, self.active_norm, c) < current)[0]
        if len(maybe):
            current[maybe] = np.minimum(current[maybe], _sq_dist(self.x64[active[maybe]], self.x64[c]))
            self.value[active] = current
        self.value[c] = -1.0
        self.seen[active] = len(self.centres)

    def _update(self, rows: np.ndarray) -> None:
        """Make ``rows`` exact w.r.t. every centre so far (re-applying a seen centre is harmless).

        Works in float32 on h = ‖c‖² − 2x·c (= approx − ‖x‖²), with a per-row band that bounds
        the product's and h's rounding for every centre of the chunk (Higham's γ_d plus 4u).
        """
        start = int(self.seen[rows].min())
        current = self.value[rows]
        x32, nr = self.x32[rows], self.norm[rows]
        for lo in range(start, len(self.centres), self.chunk):
            cents = np.asarray(self.centres[lo : lo + self.chunk], dtype=np.int64)
            nc = self.norm[cents]
            h = x32 @ self.x32[cents].T
            h *= -2.0
            h += (nc**2).astype(np.float32)[None, :]
            big = float(nc.max())
            slack = self.gamma * nr * big + 4 * _U32 * (nr + big) ** 2 + 1e-12 * (nr**2 + big**2)
            # the best pair's upper bound; only pairs whose lower bound beats it can be the new minimum
            upper = np.minimum(current, h.min(axis=1).astype(np.float64) + nr**2 + slack)
            limit = upper + slack - nr**2
            limit32 = limit.astype(np.float32)
            limit32 = np.where(limit32 < limit, np.nextafter(limit32, np.float32(np.inf)), limit32)  # round up
            ri, ci = np.nonzero(h < limit32[:, None])
            if len(ri):
                np.minimum.at(current, ri, _sq_dist(self.x64[rows[ri]], self.x64[cents[ci]]))
        self.value[rows] = current
        self.seen[rows] = len(self.centres)

    def refresh(self, m: int) -> tuple[np.ndarray, float]:
        """Bring candidates up to date until the top ``m`` are exact and provably the top.

        Returns the active set (sorted by index) and the bound B that no candidate outside it
        can exceed.
        """
        order = np.argsort(-self.value, kind="stable")
        order = order[self.value[order] >= 0]
        done = 0
        while True:
            rows = order[done : done + self.chunk]
            stale = rows[self.seen[rows] < len(self.centres)]
            if len(stale):
                self._update(stale)
            done += len(rows)
            updated = order[:done]
            next_bound = float(self.value[order[done]]) if done < len(order) else -1.0
            if done >= len(order) or int(np.sum(self.value[updated] > next_bound)) >= m:
                break
        exact_vals = self.value[updated]
        k = min(m, len(updated))
        top = np.argpartition(-exact_vals, k - 1)[:k] if k < len(updated) else np.arange(len(updated))
        active = np.sort(updated[top])
        rest = np.setdiff1d(updated, active, assume_unique=True)
        bound = max(next_bound, float(self.value[rest].max()) if len(rest) else -1.0)
        return active, bound


def greedy(features: np.ndarray, n: int, *, seed: int, active_size: int = 2048) -> np.ndarray:
    """Algorithm 1 (k-center greedy): a seeded random first point, then repeatedly the candidate
    farthest from everything chosen so far (ties: lowest pool index). Returns pool indices in
    selection order, identical to ``greedy_reference``.

    Lazy formulation: the ``active_size`` candidates with the largest (exact) min distances are
    tracked step by step; every other candidate is bounded by B. While the active set's best
    exceeds B it is the global best; when it does not, the bounds are refreshed.
    """
    features = _check(features, n)
    first = int(np.random.default_rng(seed).integers(len(features)))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = first
    if n == 1:
        return chosen
    lazy = _LazyMinDistances(features, first)
    active, bound = lazy.refresh(active_size)
    lazy.activate(active)
    for i in range(1, n):
        vals = lazy.value[active]
        j = int(np.argmax(vals))
        if not vals[j] > bound:
            active, bound = lazy.refresh(active_size)
            vals = lazy.value[active]
            j = int(np.argmax(vals))
            if not vals[j] > bound:  # a tie with a candidate outside: settle it over the whole pool
                lazy.refresh(len(features))
                best = int(np.argmax(lazy.value))
                active, bound = lazy.refresh(active_size)
                j = None
            lazy.activate(active)
        best = int(active[j]) if j is not None else best
        chosen[i] = best
        lazy.add_centre(best)
    return chosen


def greedy_torch(features: np.ndarray, n: int, *, seed: int, device: str = "cuda", chunk: int = 65536) -> np.ndarray:
    """Algorithm 1 on a torch device (the GPU path): the streaming formulation, whose cost on a
    GPU is bound by its memory bandwidth (a 300k × 768 pool is read in well under a millisecond).

    Same first point, same exact kernel (float64 direct differences), same lowest-index tie rule
    as ``greedy_reference``; the device's summation order may differ from numpy's in the last
    bit, so near-exact ties can resolve differently from the CPU path.
    """
    import torch

    features = _check(features, n)
    x = torch.from_numpy(features).to(device)
    first = int(np.random.default_rng(seed).integers(len(features)))
    chosen = torch.empty(n, dtype=torch.int64, device=device)
    chosen[0] = first
    min_d = torch.empty(len(features), dtype=torch.float64, device=device)

    def distances(c: torch.Tensor) -> torch.Tensor:  # chunked: never an n × d temporary
        out = torch.empty_like(min_d)
        for lo in range(0, len(x), chunk):
            diff = x[lo : lo + chunk] - x[c]
            out[lo : lo + chunk] = (diff * diff).sum(dim=1)
        return out

    min_d.copy_(distances(chosen[0]))
    min_d[first] = -1.0
    for i in range(1, n):
        # torch.argmax returns the first maximal index, the same tie rule as numpy
        best = torch.argmax(min_d)
        chosen[i] = best
        torch.minimum(min_d, distances(best), out=min_d)
        min_d[chosen[: i + 1]] = -1.0
    return chosen.cpu().numpy()


@dataclass(frozen=True)
class ThresholdTrace:
    indices: np.ndarray
    final_tau: float
    passes: int


def _threshold_setup(features, n, tau0, decay, seed, order):
    features = _check(features, n)
    if tau0 < 0 or not 0 <= decay < 1:
        raise OuroborosError(f"threshold_decay needs tau0 ≥ 0 and 0 ≤ decay < 1, got tau0={tau0}, decay={decay}")
    if order is None:
        order = np.random.default_rng(seed).permutation(len(features))
    return features, np.asarray(order, dtype=np.int64)


def _decayed(tau: float, tau0: float, decay: float, chosen: int, pool: int, n: int) -> float:
    """τ after a pass that added nothing; at τ = 0 nothing more can join (only duplicates are left)."""
    if tau == 0.0:
        raise OuroborosError(
            f"threshold_decay: only {chosen} distinct points in a pool of {pool}; "
            f"cannot select {n} (the rest duplicate points already chosen)"
        )
    return tau * decay if tau * decay > 1e-12 * max(tau0, 1.0) else 0.0


def threshold_decay_reference(features: np.ndarray, n: int, *, tau0: float, decay: float, seed: int,
                              order: np.ndarray | None = None) -> ThresholdTrace:
    """Algorithm 2 as written: every acceptance updates every candidate's distance to D."""
    features, order = _threshold_setup(features, n, tau0, decay, seed, order)
    chosen = [int(order[0])]
    in_d = np.zeros(len(features), dtype=bool)
    in_d[order[0]] = True
    min_d = np.sqrt(_sq_dist(features, features[order[0]]))
    tau, passes = float(tau0), 0
    while len(chosen) < n:
        passes += 1
        added = False
        for x in order:
            if in_d[x] or min_d[x] <= tau:
                continue
            chosen.append(int(x))
            in_d[x] = True
            added = True
            np.minimum(min_d, np.sqrt(_sq_dist(features, features[x])), out=min_d)
            if len(chosen) == n:
                break
        if not added:
            tau = _decayed(tau, tau0, decay, len(chosen), len(features), n)
    return ThresholdTrace(np.asarray(chosen, dtype=np.int64), tau, passes)


def threshold_decay_trace(features: np.ndarray, n: int, *, tau0: float, decay: float, seed: int,
                          order: np.ndarray | None = None, block: int = 512) -> ThresholdTrace:
    """Algorithm 2 with its bookkeeping; the same result as ``threshold_decay_reference``.

    One seeded order of the pool is used for every pass; its first element seeds D. In a pass
    each candidate not yet in D is compared with D as it stands at that moment (points added
    earlier in the same pass included) and joins D when its distance to every member exceeds τ.
    τ is multiplied by ``decay`` only after a pass that added nothing. ``order`` overrides the
    seeded order (for hand-checked examples).

    Blocked: a candidate whose (stale, upper-bound) distance is already ≤ τ is rejected
    without work; the others are compared, a block at a time, with the members added since
    they were last compared (one float32 product as a filter, exact rechecks inside its rounding
    band), and acceptances inside a block are resolved in order, each against the rest of its block.
    """
    features, order = _threshold_setup(features, n, tau0, decay, seed, order)
    lazy = _LazyMinDistances(features, int(order[0]))
    tau, passes = float(tau0), 0
    while len(lazy.centres) < n:
        passes += 1
        added = False
        # min distances only shrink: a bound already ≤ τ rejects for the whole pass
        bound = lazy.value[order]
        live = order[(bound >= 0) & (np.sqrt(np.maximum(bound, 0.0)) > tau)]
        for lo in range(0, len(live), block):
            rows = live[lo : lo + block]
            rows = rows[np.sqrt(np.maximum(lazy.value[rows], 0.0)) > tau]  # bounds shrank since the pass began
            if len(rows) == 0:
                continue
            lazy._update(rows)
            for pos in np.nonzero(np.sqrt(np.maximum(lazy.value[rows], 0.0)) > tau)[0]:
                x = rows[pos]
                if not np.sqrt(lazy.value[x]) > tau:  # a member accepted earlier in the block is within τ
                    continue
                lazy.centres.append(int(x))
                lazy.value[x] = -1.0
                added = True
                if len(lazy.centres) == n:
                    break
                # the rest of the block against x: one float32 product as a filter, exact inside its band
                later = rows[pos + 1 :]
                later = later[lazy.value[later] >= 0]
                maybe = later[lazy.lower_bound(lazy.x32[later], lazy.norm[later], x) < lazy.value[later]]
                if len(maybe):
                    lazy.value[maybe] = np.minimum(lazy.value[maybe], _sq_dist(lazy.x64[maybe], lazy.x64[x]))
                lazy.seen[later] = len(lazy.centres)
            if len(lazy.centres) == n:
                break
        if not added and len(lazy.centres) < n:
            tau = _decayed(tau, tau0, decay, len(lazy.centres), len(features), n)
    return ThresholdTrace(np.asarray(lazy.centres, dtype=np.int64), tau, passes)


def threshold_decay(features: np.ndarray, n: int, *, tau0: float, decay: float, seed: int) -> np.ndarray:
    """Algorithm 2 (Threshold Decay Filter): pool indices in selection order."""
    return threshold_decay_trace(features, n, tau0=tau0, decay=decay, seed=seed).indices


def random(count: int, n: int, *, seed: int) -> np.ndarray:
    """Uniform subsample without replacement (the vanilla accumulate-subsample paradigm)."""
    if not 0 < n <= count:
        raise OuroborosError(f"cannot select {n} points from a pool of {count}: the pool is smaller than N")
    return np.random.default_rng(seed).choice(count, size=n, replace=False).astype(np.int64)


def keep_all(count: int) -> np.ndarray:
    """Keep the whole pool (vanilla replace, and the 2N ablation)."""
    return np.arange(count, dtype=np.int64)


def choose(method: str, features: np.ndarray, n: int, *, seed: int, tau0: float | None = None,
           decay: float | None = None, device: str = "cpu") -> tuple[np.ndarray, dict]:
    """Dispatch on the config's selection name; returns indices and what the log should record."""
    if method == "all":
        return keep_all(len(features)), {}
    if method == "random":
        return random(len(features), n, seed=seed), {}
    if method == "greedy":
        if device != "cpu":
            return greedy_torch(features, n, seed=seed, device=device), {"device": device}
        return greedy(features, n, seed=seed), {}
    if method == "threshold_decay":
        assert tau0 is not None and decay is not None
        trace = threshold_decay_trace(features, n, tau0=tau0, decay=decay, seed=seed)
        return trace.indices, {"tau0": tau0, "decay": decay, "final_tau": trace.final_tau, "passes": trace.passes}
    raise OuroborosError(f"config.yaml: unknown selection {method!r}; known: all, random, greedy, threshold_decay")


def stage(sources: list[tuple[str, str]], extractor: str, n: int, method: str, *, seed: int,
          tau0: float | None, decay: float | None, manifest_out: str, info_out: str, device: str = "cpu") -> None:
    """Build D_n's manifest from a pool given as (source name, image file) pairs, in pool order."""
    import json
    import time

    from ouroboros import manifest
    from ouroboros.io import load_features_for, save_json
    from ouroboros.paths import features_of
    from ouroboros.runtime import pause_point

    parts, blocks = [], []
    for name, image_file in sources:
        feats = load_features_for(image_file, features_of(image_file, extractor),
                                  blocks[0].shape[1] if blocks else None)
        parts.append(manifest.PoolPart(name, image_file, len(feats)))
        blocks.append(feats)
    pool = np.concatenate(blocks)
    started = time.time()
    chosen, extra = choose(method, pool, n, seed=seed, tau0=tau0, decay=decay, device=device)
    m = manifest.from_pool(parts, chosen)
    info = {"method": method, "pool_size": int(len(pool)), "selected": int(len(chosen)), "feature_space": extractor,
            "seconds": round(time.time() - started, 3), "source_shares": m.shares(), **extra}
    print(json.dumps(info, indent=2))
    manifest.write(manifest_out, m)
    pause_point("select")  # a test kills the job here: one output written, the other not yet
    save_json(info_out, info)
