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
    diff = features - point
    return np.einsum("ij,ij->i", diff, diff)


def _check(features: np.ndarray, n: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (count, dim), got shape {features.shape}")
    if not 0 < n <= len(features):
        raise OuroborosError(f"cannot select {n} points from a pool of {len(features)}: the pool is smaller than N")
    return features


def greedy(features: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Algorithm 1 (k-center greedy): a seeded random first point, then repeatedly the candidate
    farthest from everything chosen so far. Returns pool indices in selection order."""
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


@dataclass(frozen=True)
class ThresholdTrace:
    indices: np.ndarray
    final_tau: float
    passes: int


def threshold_decay_trace(features: np.ndarray, n: int, *, tau0: float, decay: float, seed: int,
                          order: np.ndarray | None = None) -> ThresholdTrace:
    """Algorithm 2 with its bookkeeping.

    One seeded order of the pool is used for every pass; its first element seeds D. In a pass
    each candidate not yet in D is compared with D as it stands at that moment (points added
    earlier in the same pass included) and joins D when its distance to every member exceeds τ.
    τ is multiplied by ``decay`` only after a pass that added nothing. ``order`` overrides the
    seeded order (for hand-checked examples).
    """
    features = _check(features, n)
    if tau0 < 0 or not 0 <= decay < 1:
        raise OuroborosError(f"threshold_decay needs tau0 ≥ 0 and 0 ≤ decay < 1, got tau0={tau0}, decay={decay}")
    if order is None:
        order = np.random.default_rng(seed).permutation(len(features))
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
            if tau == 0.0:
                raise OuroborosError(
                    f"threshold_decay: only {len(chosen)} distinct points in a pool of {len(features)}; "
                    f"cannot select {n} (the rest duplicate points already chosen)"
                )
            tau = tau * decay if tau * decay > 1e-12 * max(tau0, 1.0) else 0.0
    return ThresholdTrace(np.asarray(chosen, dtype=np.int64), tau, passes)


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
           decay: float | None = None) -> tuple[np.ndarray, dict]:
    """Dispatch on the config's selection name; returns indices and what the log should record."""
    if method == "all":
        return keep_all(len(features)), {}
    if method == "random":
        return random(len(features), n, seed=seed), {}
    if method == "greedy":
        return greedy(features, n, seed=seed), {}
    if method == "threshold_decay":
        assert tau0 is not None and decay is not None
        trace = threshold_decay_trace(features, n, tau0=tau0, decay=decay, seed=seed)
        return trace.indices, {"tau0": tau0, "decay": decay, "final_tau": trace.final_tau, "passes": trace.passes}
    raise OuroborosError(f"config.yaml: unknown selection {method!r}; known: all, random, greedy, threshold_decay")


def stage(sources: list[tuple[str, str]], extractor: str, n: int, method: str, *, seed: int,
          tau0: float | None, decay: float | None, manifest_out: str, info_out: str) -> None:
    """Build D_n's manifest from a pool given as (source name, image file) pairs, in pool order."""
    import json
    import time

    from ouroboros import manifest
    from ouroboros.io import load_features, save_json
    from ouroboros.paths import features_of

    parts, blocks = [], []
    for name, image_file in sources:
        feats = load_features(features_of(image_file, extractor))
        rows = np.load(image_file, mmap_mode="r", allow_pickle=False).shape[0]
        if rows != len(feats):
            raise OuroborosError(
                f"{features_of(image_file, extractor)}: {len(feats)} feature rows for {rows} images in "
                f"{image_file}; delete the features file and re-run"
            )
        parts.append(manifest.PoolPart(name, image_file, rows))
        blocks.append(feats)
    pool = np.concatenate(blocks)
    started = time.time()
    chosen, extra = choose(method, pool, n, seed=seed, tau0=tau0, decay=decay)
    m = manifest.from_pool(parts, chosen)
    info = {"method": method, "pool_size": int(len(pool)), "selected": int(len(chosen)), "feature_space": extractor,
            "seconds": round(time.time() - started, 3), "source_shares": m.shares(), **extra}
    print(json.dumps(info, indent=2))
    manifest.write(manifest_out, m)
    save_json(info_out, info)
