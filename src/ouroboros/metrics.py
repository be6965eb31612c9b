"""The paper's measurements, each a pure function of feature arrays (count, dim).

Distances are Euclidean in whatever space the features live in (pixels, DINOv2, ...).
"""

from __future__ import annotations

import math

import numpy as np

from ouroboros.neighbors import knn

# metrics.json values measured in pixels whatever the file's feature space (evaluate.compute):
# their yardstick is the real subset's typical pixel spacing; the tables and findings label them "pixels"
PIXEL_METRICS = ("memorization_ratio", "copy_scale", "copy_share")

def generalization_score(generated: np.ndarray, train: np.ndarray) -> float:
    """GS(n), Eq. 1: mean distance from each generated point to its nearest training point."""
    d, _ = knn(generated, train, 1)
    return float(d[:, 0].mean())


KL_EPS = 1e-10  # added to every k-NN distance, as the authors' code does, so a duplicate's log 0 is finite


def duplicate_count(x: np.ndarray) -> int:
    """How many rows are exact copies of an earlier row (a set of n copies of one row counts n − 1)."""
    x = np.ascontiguousarray(x)
    return len(x) - len(np.unique(x, axis=0))


def _kl(x: np.ndarray, k: int, eps: float) -> float:
    """ψ(N) − ψ(k) + log V_d + (d/N) Σ log(ε_k(x_i) + eps), V_d the volume of the unit d-ball."""
    # here, not at the top: every snakemake command imports this module (the selection methods
    # register at planning) and scipy.special alone is 0.27 CPU-s of its start
    from scipy.special import digamma, gammaln

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    dist, _ = knn(x, x, k, exclude_self=True)
    log_unit_ball = (d / 2) * math.log(math.pi) - gammaln(d / 2 + 1)
    return float(digamma(n) - digamma(k) + log_unit_ball + d * np.log(dist[:, k - 1] + eps).mean())


def kl_entropy(x: np.ndarray, k: int = 1, *, eps: float = KL_EPS) -> float:
    """Kozachenko–Leonenko differential entropy (nats) of every point of x: the paper's estimator.

    γ = k = 1 in the paper. Exact duplicates stay in: their k-NN distance is 0, and ``eps`` is added
    to every distance (the authors' code adds 1e-10), so each duplicate contributes d·log(eps)/N,
    a large negative term. That is on purpose: duplicates are what a collapsing generation
    produces, and this estimator falls as they appear. It is the entropy of metrics.json
    (``train_entropy``, ``generated_entropy``) that the figures and findings use. Its value
    depends on eps once duplicates exist; ``kl_entropy_distinct`` does not.
    """
    return _kl(x, k, eps)


def kl_entropy_distinct(x: np.ndarray, k: int = 1) -> float:
    """Kozachenko–Leonenko entropy (nats) of the distinct rows of x, with no eps.

    Blind to exact copies (``duplicate_count`` reports them); it shows whether the points that
    are not copies still spread out. Rows are compared in float32, the precision the neighbour
    search works in: two float64 rows equal in float32 would otherwise give log 0 = −∞.
    """
    return _kl(np.unique(np.asarray(x, dtype=np.float32), axis=0), k, 0.0)


def mnnd(x: np.ndarray) -> float:
    """MNND, Eq. 4: mean leave-one-out nearest-neighbour distance (duplicates count as 0)."""
    d, _ = knn(x, x, 1, exclude_self=True)
    return float(d[:, 0].mean())


def covariance_trace(x: np.ndarray) -> float:
    """Trace of the sample covariance (ddof = 1): the total variance of Fig. 7."""
    return float(np.var(np.asarray(x, dtype=np.float64), axis=0, ddof=1).sum())


def median_nn_distance(x: np.ndarray) -> float:
    """Median leave-one-out nearest-neighbour distance: the typical spacing of a set. The median,
    not the mean (mnnd), so that a few isolated points or exact duplicates do not move it."""
    d, _ = knn(x, x, 1, exclude_self=True)
    return float(np.median(d[:, 0]))


def copy_share(generated: np.ndarray, train: np.ndarray, *, scale: float, fraction: float = 1 / 3) -> float:
    """Share of generated points whose nearest training point is closer than ``fraction × scale``.

    The memorization ratio compares d1 with the second-nearest training point, a yardstick that
    shrinks with the training set: once D_n is full of near-twins (what replace produces), a
    sample sitting on a training image has its twin almost as close and the ratio cannot fire.
    This share measures d1 against a fixed yardstick instead, the real subset's typical spacing
    (``median_nn_distance`` of D_1 in the same space), so it keeps seeing copies of a clustered D_n.
    """
    d, _ = knn(generated, train, 1)
    return float((d[:, 0] < fraction * scale).mean())


def memorization_ratio(generated: np.ndarray, train: np.ndarray, threshold: float = 1 / 3) -> float:
    """Share of generated points whose nearest training point is < threshold × the second nearest.

    A generated point that equals a training point (d1 = 0) counts as memorized even when the
    training set holds a duplicate of it (d2 = 0).
    """
    d, _ = knn(generated, train, 2)
    d1, d2 = d[:, 0], d[:, 1]
    memorized = (d1 == 0) | (d1 < threshold * d2)
    return float(memorized.mean())


def authenticity(train: np.ndarray, generated: np.ndarray) -> float:
    """Share of authentic generated points (Alaa et al. 2022, "How faithful is your synthetic
    data?", §3.3): g is unauthentic when it lies closer to its nearest training point t than t
    lies to its own nearest other training point, i.e. g is a copy of t rather than a new point
    near it. 1 = nothing copied; an exact copy (distance 0) is never authentic.

    Per generated point, as the paper defines it (the synthcity implementation indexes the
    real-to-real distances by the generated point's index instead).
    """
    own, _ = knn(train, train, 1, exclude_self=True)
    d, nearest = knn(generated, train, 1)
    return float((d[:, 0] > own[nearest[:, 0], 0]).mean())


def vendi(x: np.ndarray, *, q: float = 1.0) -> float:
    """Vendi score (Friedman & Dieng 2023) with the cosine-similarity kernel: the exponential of
    the order-q Rényi entropy of the eigenvalues of K/n, K_ij = cos(x_i, x_j); the effective number
    of distinct points (n orthogonal points: n; n copies of one: 1). ``q = math.inf``: 1/max λ.

    Exact: the nonzero eigenvalues of K/n = X̂X̂ᵀ/n are those of the d × d matrix X̂ᵀX̂/n, so the
    cost is O(n d²) for n > d, never an n × n matrix.
    """
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) == 0 or not norms.all():
        raise ValueError("vendi: needs at least one point and no zero vector (a cosine needs a direction)")
    unit = x / norms
    gram = unit.T @ unit if unit.shape[1] < unit.shape[0] else unit @ unit.T
    w = np.linalg.eigvalsh(gram / len(x))
    w = w[w > 1e-12]  # rounding leaves ±1e-16 where the spectrum is 0; 0 log 0 = 0
    if q == 1:
        entropy = -(w * np.log(w)).sum()
    elif math.isinf(q):
        entropy = -math.log(w.max())
    else:
        entropy = math.log((w**q).sum()) / (1 - q)
    return float(math.exp(entropy))


# prdc's one arithmetic route. A ball test must compare a distance and a radius computed the same way,
# or a copy lying exactly on a neighbour's ball boundary falls inside or outside by rounding (a
# radius from float32 direct differences against a distance from the float64 expansion
# ‖a‖² − 2a·b + ‖b‖² did exactly that). Every distance prdc compares is the float64 direct
# difference √Σ(a − b)² of the float64 inputs (``_exact``). The float64 expansion, a matrix product,
# only sorts pairs out: its rounding is below _SLACK × (‖a‖² + ‖b‖²) (about d·2⁻⁵² for d features), so
# a pair whose expanded square lies that far from the radius's square is decided by it, and every
# other pair is decided by its exact distance. Large sets keep the matrix product's speed; the
# exact route runs on the few pairs near a boundary (and on exact copies, which all are).
_SLACK = 1e-9
_PRDC_CHUNK = 1024  # queries per block: a block holds chunk × len(base) float64 values, a few times


def _exact(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Distances of the row pairs (a[i], b[j]): float64 direct differences, the one route prdc compares.
    In batches: a collapsed set has millions of pairs of copies near a boundary."""
    out = np.empty(len(i))
    step = max(1, (1 << 22) // max(a.shape[1], 1))
    for lo in range(0, len(i), step):
        out[lo : lo + step] = np.sqrt(((a[i[lo : lo + step]] - b[j[lo : lo + step]]) ** 2).sum(-1))
    return out


def _expanded(queries: np.ndarray, base: np.ndarray, chunk: int):
    """Yield (lo, squared distances by the expansion, their rounding bound) block by block over queries."""
    q_sq, b_sq = np.einsum("ij,ij->i", queries, queries), np.einsum("ij,ij->i", base, base)
    for lo in range(0, len(queries), chunk):
        block = queries[lo : lo + chunk]
        d2 = q_sq[lo : lo + chunk, None] - 2 * block @ base.T + b_sq[None, :]
        yield lo, d2, _SLACK * (q_sq[lo : lo + chunk, None] + b_sq[None, :])


def _kth_radii(x: np.ndarray, k: int, chunk: int = _PRDC_CHUNK) -> np.ndarray:
    """Each point's distance to its k-th nearest other point (other by index: a copy counts, at 0).

    Every point whose exact distance can be at most the k-th is a candidate: its expanded square,
    less the rounding bound, is at most the k-th smallest expanded square plus the bound. The
    candidates' exact distances give the k-th exactly."""
    radii = np.empty(len(x))
    for lo, d2, slack in _expanded(x, x, chunk):
        own = np.arange(len(d2))
        d2[own, lo + own] = np.inf  # the point itself, by index
        upper = np.partition(d2 + slack, k - 1, axis=1)[:, k - 1]
        rows, cols = np.nonzero(d2 - slack <= upper[:, None])
        dist = _exact(x, x, lo + rows, cols)
        order = np.lexsort((dist, rows))  # by row, then by distance
        first = np.searchsorted(rows[order], own)  # each row's first candidate (every row has ≥ k)
        radii[lo : lo + len(d2)] = dist[order][first + k - 1]
    return radii


def _within(queries: np.ndarray, base: np.ndarray, radii: np.ndarray, chunk: int = _PRDC_CHUNK):
    """Yield, block by block over queries, 'query i lies strictly within radius_j of base_j'
    (exact distance < radius: a ball of radius 0 holds nothing). No n × n matrix."""
    r_sq = radii[None, :] ** 2
    for lo, d2, slack in _expanded(queries, base, chunk):
        inside = d2 + slack < r_sq * (1 - 1e-12)  # sure, whatever the rounding (of the radius's square too)
        unsure = ~inside & (d2 - slack <= r_sq * (1 + 1e-12))
        rows, cols = np.nonzero(unsure)
        inside[rows, cols] = _exact(queries, base, lo + rows, cols) < radii[cols]
        yield inside


def prdc(real: np.ndarray, generated: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al. 2020) with k-NN radii.

    A point lies in a k-NN ball when its distance is strictly less than the radius, as the paper
    defines it and clovaai's ``prdc`` package computes it. That matters for collapsing sets: a point
    with k exact copies has radius 0, and its ball holds nothing, so copies piled on one point earn
    no precision, recall or coverage from that ball; a copy of a neighbour lies exactly on the
    boundary, outside. There is no ``≤`` variant: it would let a pile of copies cover itself and
    hide the collapse these metrics are meant to show, and it would no longer compare with
    published PRDC. Radii and ball distances come from one arithmetic route (float64 direct
    differences, see ``_exact``), so such ties are ties, never decided by rounding (tested equal to
    clovaai's algorithm on exact distances, on sets with exact duplicates).
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    real_radii, fake_radii = _kth_radii(real, k), _kth_radii(generated, k)
    precise, density, covered = 0, 0, np.zeros(len(real), dtype=bool)
    for block in _within(generated, real, real_radii):  # each generated point against every real ball
        precise += int(block.any(axis=1).sum())
        density += int(block.sum())
        covered |= block.any(axis=0)  # a real ball holding a generated point: the nearest one is inside
    recalled = sum(int(block.any(axis=1).sum()) for block in _within(real, generated, fake_radii))
    return {
        "precision": precise / len(generated),
        "recall": recalled / len(real),
        "density": density / (k * len(generated)),
        "coverage": float(covered.mean()),
    }


def fid_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, rows are samples): torch-fidelity's fid_features_to_statistics."""
    x = np.asarray(features, dtype=np.float64)
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance of two feature sets: ‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1Σ2)^½, with the trace
    of the square root as the sum of the square roots of Σ1Σ2's eigenvalues.

    The same float64 arithmetic as torch-fidelity's fid_features_to_statistics and
    fid_statistics_to_metric (tested equal), written in numpy so that the FID job, which runs no
    model, does not pay seconds to import torch for it.
    """
    (mu1, sigma1), (mu2, sigma2) = fid_statistics(features_a), fid_statistics(features_b)
    diff = mu1 - mu2
    tr_covmean = np.sum(np.sqrt(np.linalg.eigvals(sigma1.dot(sigma2)).astype("complex128")).real)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
