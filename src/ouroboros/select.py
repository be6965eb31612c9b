"""Choosing D_(n+1) from a pool of candidates: the paper's Greedy Selection and Threshold Decay
Filter (Appendix C), and the vanilla paradigms' uniform subsample and keep-all.

Distances are Euclidean between feature rows. "Exact" means: every distance is computed by the
one kernel ``ouroboros.mindist.sq_dist`` (float64, direct differences), so the fast paths
(``ouroboros.mindist.MinDistances``) and the references select the same points bit for bit, on
any machine, for the same features and seed.

Ties follow a seeded random order of the pool, as the authors' shuffled pool does: Greedy
Selection runs on the pool shuffled by the seed (its first row is the random first point, and
ties go to the earliest row there), the Threshold Decay Filter visits the pool in that order.
A fixed rule such as "lowest pool index" would always keep the earlier of two exact copies, and
real images come first in the accumulate pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ouroboros import selectors
from ouroboros.errors import OuroborosError
from ouroboros.mindist import MinDistances, sq_dist
from ouroboros.selectors import AUTO, Param, register

_COPY_ROWS = 65536  # rows copied at a time when shuffling: no second full-size temporary


def _check_size(count: int, n: int) -> None:
    if not 0 < n <= count:
        raise OuroborosError(f"cannot select {n} points from a pool of {count}: the pool is smaller than N")


def _check(features: np.ndarray, n: int) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (count, dim), got shape {features.shape}")
    _check_size(len(features), n)
    return features


def shuffled_pool(features: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded random order of the pool, and the pool's rows in that order (float64).

    The order is ``default_rng(seed).permutation``, the same one the Threshold Decay Filter
    visits the pool in.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (count, dim), got shape {features.shape}")
    _check_size(len(features), n)
    order = np.random.default_rng(seed).permutation(len(features))
    shuffled = np.empty(features.shape, dtype=np.float64)
    for lo in range(0, len(order), _COPY_ROWS):
        shuffled[lo : lo + _COPY_ROWS] = features[order[lo : lo + _COPY_ROWS]]
    return order, shuffled


def greedy_reference(features: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Algorithm 1 as written: after each choice, every candidate's distance to the new centre.

    Streams the whole pool once per selected point; kept as the reference the fast path is
    tested and benchmarked against.
    """
    order, x = shuffled_pool(features, n, seed)
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = 0
    min_d = sq_dist(x, x[0])
    min_d[0] = -1.0  # chosen points never win again
    for i in range(1, n):
        best = int(np.argmax(min_d))  # argmax takes the earliest row of the shuffled pool among ties
        chosen[i] = best
        np.minimum(min_d, sq_dist(x, x[best]), out=min_d)
        min_d[chosen[: i + 1]] = -1.0
    return order[chosen]


def greedy(features: np.ndarray, n: int, *, seed: int, active_size: int = 2048) -> np.ndarray:
    """Algorithm 1 (k-center greedy): a seeded random first point, then repeatedly the candidate
    farthest from everything chosen so far (ties: the seeded random order). Returns pool indices
    in selection order, identical to ``greedy_reference``.

    ``active_size``: candidates whose min distances ``MinDistances`` tracks exactly step by step.
    """
    order, x = shuffled_pool(features, n, seed)
    chosen = MinDistances(x, 0, active_size=active_size)
    while len(chosen) < n:
        best, _ = chosen.farthest()
        chosen.add_centre(best)
    return order[chosen.centres]


def greedy_torch(features: np.ndarray, n: int, *, seed: int, device: str = "cuda", chunk: int = 65536) -> np.ndarray:
    """Algorithm 1 on a torch device (the GPU path): the streaming formulation, whose cost on a
    GPU is bound by its memory bandwidth (a 300k × 768 pool is read in well under a millisecond).

    Same shuffled pool, same exact kernel (float64 direct differences), same tie rule as
    ``greedy_reference``; the device's summation order may differ from numpy's in the last
    bit, so near-exact ties can resolve differently from the CPU path.
    """
    try:  # every registered method is importable where torch is not (tables, figures): only this path needs it
        import torch
    except ImportError as exc:
        raise OuroborosError(f"select_device: {device} needs torch, which this environment lacks; "
                             "run the select job in envs/torch.yaml or set select_device: cpu") from exc

    order, shuffled = shuffled_pool(features, n, seed)
    x = torch.from_numpy(shuffled).to(device)
    chosen = torch.zeros(n, dtype=torch.int64, device=device)
    min_d = torch.empty(len(x), dtype=torch.float64, device=device)

    def distances(c: torch.Tensor) -> torch.Tensor:  # chunked: never an n × d temporary
        out = torch.empty_like(min_d)
        for lo in range(0, len(x), chunk):
            diff = x[lo : lo + chunk] - x[c]
            out[lo : lo + chunk] = (diff * diff).sum(dim=1)
        return out

    min_d.copy_(distances(chosen[0]))
    min_d[0] = -1.0
    for i in range(1, n):
        # torch.argmax returns the first maximal index, the same tie rule as numpy
        best = torch.argmax(min_d)
        chosen[i] = best
        torch.minimum(min_d, distances(best), out=min_d)
        min_d[chosen[: i + 1]] = -1.0
    return order[chosen.cpu().numpy()]


@dataclass(frozen=True)
class ThresholdTrace:
    """A Threshold Decay run: the selection and how τ got there.

    ``passes`` counts every pass over the pool, ``decays`` the passes that added nothing (each
    followed by τ ← decay·τ), so ``final_tau`` (τ of the last pass) is tau0·decay**decays,
    computed by repeated multiplication. ``skipped``: of the ``decays``, those the fast path
    proved empty without sweeping the pool (0 for the reference).
    """

    indices: np.ndarray
    final_tau: float
    passes: int
    decays: int
    skipped: int = 0


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
    """Algorithm 2 as written: every acceptance updates every candidate's distance to D, and
    every pass sweeps the pool, also those that add nothing."""
    features, order = _threshold_setup(features, n, tau0, decay, seed, order)
    chosen = [int(order[0])]
    in_d = np.zeros(len(features), dtype=bool)
    in_d[order[0]] = True
    min_d = np.sqrt(sq_dist(features, features[order[0]]))
    tau, passes, decays = float(tau0), 0, 0
    while len(chosen) < n:
        passes += 1
        added = False
        for x in order:
            if in_d[x] or min_d[x] <= tau:
                continue
            chosen.append(int(x))
            in_d[x] = True
            added = True
            np.minimum(min_d, np.sqrt(sq_dist(features, features[x])), out=min_d)
            if len(chosen) == n:
                break
        if not added:
            decays += 1
            tau = _decayed(tau, tau0, decay, len(chosen), len(features), n)
    return ThresholdTrace(np.asarray(chosen, dtype=np.int64), tau, passes, decays)


def _over(sq: np.ndarray, tau: float) -> np.ndarray:
    """Which squared min distances exceed τ (centres, stored as −1, never do)."""
    return np.sqrt(np.maximum(sq, 0.0)) > tau


def threshold_decay_trace(features: np.ndarray, n: int, *, tau0: float, decay: float, seed: int,
                          order: np.ndarray | None = None, block: int = 512) -> ThresholdTrace:
    """Algorithm 2 with its bookkeeping; the same result as ``threshold_decay_reference``.

    One seeded order of the pool is used for every pass; its first element seeds D. In a pass
    each candidate not yet in D is compared with D as it stands at that moment (points added
    earlier in the same pass included) and joins D when its distance to every member exceeds τ.
    τ is multiplied by ``decay`` only after a pass that added nothing. ``order`` overrides the
    seeded order (for hand-checked examples).

    Empty passes are skipped: a pass adds something exactly when, as it starts, some candidate
    lies farther than τ from D (the first such candidate it reaches is either accepted or was
    brought within τ by an acceptance before it). So while the largest min distance is ≤ τ,
    τ decays without a sweep, each decay counted as the empty pass it stands for.

    Blocked: a candidate whose (stale, upper-bound) distance is already ≤ τ is rejected
    without work; the others are brought up to date a block at a time, and acceptances inside a
    block are resolved in order, each against the rest of its block.
    """
    features, order = _threshold_setup(features, n, tau0, decay, seed, order)
    chosen = MinDistances(features, int(order[0]))
    tau, passes, decays, skipped = float(tau0), 0, 0, 0
    while len(chosen) < n:
        farthest = chosen.largest()
        while not _over(farthest, tau):
            passes, decays, skipped = passes + 1, decays + 1, skipped + 1
            tau = _decayed(tau, tau0, decay, len(chosen), len(features), n)
        passes += 1
        # min distances only shrink: a bound already ≤ τ rejects for the whole pass
        live = order[_over(chosen.bounds(order), tau)]
        for lo in range(0, len(live), block):
            rows = live[lo : lo + block]
            rows = rows[_over(chosen.bounds(rows), tau)]  # bounds shrank since the pass began
            if len(rows) == 0:
                continue
            for pos in np.nonzero(_over(chosen.exact(rows), tau))[0]:
                x = int(rows[pos])
                if not _over(chosen.bounds(x), tau):  # a member accepted earlier in the block is within τ
                    continue
                chosen.add_centre(x, update=rows[pos + 1 :])
                if len(chosen) == n:
                    break
            if len(chosen) == n:
                break
    return ThresholdTrace(chosen.centres, tau, passes, decays, skipped)


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


def auto_tau0(real_features: np.ndarray) -> float:
    """``tau0: auto``: the median leave-one-out nearest-neighbour distance of D_1 (the real
    subset), in the features selection uses.

    The real images' typical spacing: a first pass at this τ keeps generated points no closer to
    each other than a typical real image is to its nearest real neighbour, and the scale follows
    the feature space (pixels, classifier, DINOv2) with no calibration by hand. The median, not
    the mean (metrics.mnnd), so that a few isolated images or exact duplicates do not move it.
    """
    from ouroboros.metrics import median_nn_distance

    return median_nn_distance(real_features)


# --- the paper's methods, registered like any other (ouroboros.selectors) -----------------------
_TAU0 = Param((int, float), check=lambda v: v >= 0, rule="≥ 0", distance=True, example=AUTO,
              help="Threshold Decay's initial τ, a distance in the selection space")
_DECAY = Param((int, float), check=lambda v: 0 <= v < 1, rule="in [0, 1)", example=0.8,
               help="τ ← decay·τ after a pass that adds nothing; the authors used 0.95 (replace), 0.80 (accumulate)")


@register("all", keeps_all=True, reads_features=False, help="keep the whole pool (vanilla replace, and the 2N ablation)")
def _all(features: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    return keep_all(len(features))


@register("random", reads_features=False, help="a uniform subsample (vanilla accumulate-subsample)")
def _random(features: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    return random(len(features), n, seed=seed)


@register("greedy", devices=("cpu", "cuda"), help="Greedy Selection (Algorithm 1, k-center greedy)")
def _greedy(features: np.ndarray, n: int, *, seed: int, device: str = "cpu") -> tuple[np.ndarray, dict]:
    if device != "cpu":
        return greedy_torch(features, n, seed=seed, device=device), {"device": device}
    return greedy(features, n, seed=seed), {}


@register("threshold_decay", params={"tau0": _TAU0, "decay": _DECAY}, help="Threshold Decay Filter (Algorithm 2)")
def _threshold_decay(features: np.ndarray, n: int, *, seed: int, tau0: float, decay: float) -> tuple[np.ndarray, dict]:
    trace = threshold_decay_trace(features, n, tau0=tau0, decay=decay, seed=seed)
    # final_tau = tau0 · decay**decays (τ of the last pass); passes = decays + passes that added
    return trace.indices, {"tau0": tau0, "decay": decay, "final_tau": trace.final_tau, "passes": trace.passes,
                           "decays": trace.decays, "skipped_passes": trace.skipped}


def equal_quotas(n: int, counts: list[int]) -> list[int]:
    """``share: equal``: N // m from each of the m sources (real, G_1 … G_(n-1)), the remainder
    N − m·(N // m) one each to the earliest sources, so that |D_n| = N exactly."""
    m = len(counts)
    quotas = [n // m + (i < n % m) for i in range(m)]
    short = [i for i, (q, c) in enumerate(zip(quotas, counts, strict=True)) if q > c]
    if short:
        i = short[0]
        raise OuroborosError(f"share: equal needs {quotas[i]} images from source {i} of the pool, which holds {counts[i]}")
    return quotas


def equal_shares(counts: list[int], n: int, *, seed: int) -> np.ndarray:
    """Indices into the concatenated pool: a uniform subsample of each source's quota
    (``equal_quotas``), sources in pool order, one seeded stream."""
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + counts)
    return np.concatenate([offsets[i] + rng.choice(c, size=q, replace=False)
                           for i, (c, q) in enumerate(zip(counts, equal_quotas(n, counts), strict=True))]).astype(np.int64)


@dataclass(frozen=True)
class Fresh:
    """``fresh: λ``: rows ``start … start+count-1`` of the file of real images outside D_1 join D_n."""

    file: str
    start: int
    count: int
    key: str = "runs.<run>.fresh"  # the config key to lower when the images run out


def stage(sources: list[tuple[str, str]], extractor: str, n: int, method: str, *, seed: int,
          params: dict | None = None, manifest_out: str, info_out: str, device: str = "cpu",
          real_images: str | None = None, share: str = "uniform", fresh: Fresh | None = None,
          plugins: list[str] | tuple[str, ...] = ()) -> None:
    """Build D_n's manifest from a pool given as (source name, image file) pairs, in pool order.

    ``params``: the method's parameters; a ``distance`` parameter set to ``auto`` (``tau0:
    auto``) is measured on D_1 (``real_images``, in the ``extractor`` space: ``auto_tau0``) and
    the value used is recorded in the info file. ``share: equal`` draws each source's quota
    (``equal_shares``) instead of running the method on the union. ``fresh``: that many rows of
    real images outside D_1 replace as many of D_n's, so the method chooses ``n − fresh.count``
    (a keep-all method: a uniform subsample of the pool that leaves room for them). ``plugins``:
    config.yaml's ``selectors:`` modules, imported so that their methods are registered here too.
    """
    import json
    import time

    from ouroboros import manifest
    from ouroboros.io import load_data, load_features_for, save_json
    from ouroboros.paths import features_of
    from ouroboros.runtime import pause_point

    selectors.load_plugins(list(plugins))
    selector = selectors.get(method)
    # the rule passes tau0 and decay for every method (None where unused): keep the method's own
    params = {k: v for k, v in (params or {}).items() if k in selector.params}
    parts, blocks = [], []
    for name, image_file in sources:
        feats = load_features_for(image_file, features_of(image_file, extractor),
                                  blocks[0].shape[1] if blocks else None)
        parts.append(manifest.PoolPart(name, image_file, len(feats)))
        blocks.append(feats)
    pool = np.concatenate(blocks)
    notes: dict = {}
    for key, spec in selector.params.items():
        if spec.distance and params.get(key) == AUTO:
            if real_images is None:
                raise ValueError(f"{key}='auto' needs real_images, the file of D_1")
            real_features = features_of(real_images, extractor)
            params[key] = auto_tau0(load_features_for(real_images, real_features, pool.shape[1]))
            notes[f"{key}_from"] = f"auto: median nearest-neighbour distance of {real_features}"
    taken = fresh.count if fresh else 0
    if fresh:  # checked before a possibly long selection
        available = len(load_data(fresh.file))
        if fresh.start + fresh.count > available:
            raise OuroborosError(
                f"{fresh.file}: fresh real images run out: this iteration needs rows {fresh.start}…"
                f"{fresh.start + fresh.count - 1} but the source holds only {available} images outside D_1; "
                f"lower {fresh.key} or the iterations"
            )
    started = time.time()
    extra: dict = {}
    if share == "equal":
        counts = [sum(p.rows for p in parts if p.source == s) for s in dict.fromkeys(p.source for p in parts)]
        chosen = equal_shares(counts, n - taken, seed=seed)
    elif selector.keeps_all and taken:
        chosen = np.sort(random(len(pool), len(pool) - taken, seed=seed))
    else:
        chosen, extra = selector(pool, len(pool) if selector.keeps_all else n - taken, seed=seed, device=device, **params)
    if fresh:
        parts.append(manifest.PoolPart("fresh", fresh.file, available))
        chosen = np.concatenate([chosen, len(pool) + fresh.start + np.arange(fresh.count)])
        extra["fresh"] = {"file": fresh.file, "rows": [fresh.start, fresh.start + fresh.count]}
    m = manifest.from_pool(parts, chosen)
    info = {"method": method, "pool_size": int(len(pool)), "selected": int(len(chosen)), "feature_space": extractor,
            "seconds": round(time.time() - started, 3), "source_shares": m.shares(), **extra, **notes}
    if share != "uniform":
        info["share"] = share
    print(json.dumps(info, indent=2))
    manifest.write(manifest_out, m)
    pause_point("select")  # a test kills the job here: one output written, the other not yet
    save_json(info_out, info)
