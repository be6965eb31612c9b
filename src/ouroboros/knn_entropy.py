"""A selection method added as a plug-in: greedy maximisation of the kNN entropy estimate.

The worked example of "Adding a selection method" (docs/extending.md): this module is all there is to
it. config.yaml names it (``selectors: [ouroboros.knn_entropy]``) and a run uses it
(``selection: knn_entropy``, ``eps: 1.0e-10``); no rule, schema or other module changes.

The paper raises the entropy of D_n indirectly (Greedy Selection spreads points out); this method
raises the Kozachenko–Leonenko estimate itself, the quantity of Finding II. For k = 1,
H(A) = ψ(m) − ψ(1) + log V_d + (d/m) Σ_(a∈A) log(r_a + eps), r_a the distance from a to its nearest
neighbour in A. Every candidate grows A to the same size m + 1, so the candidate maximising H
is the one maximising Σ log(r + eps) over A ∪ {x}:

    log(d(x, A) + eps) + Σ_(a∈A) [log(min(r_a, d(a, x)) + eps) − log(r_a + eps)],

its own spacing minus what it takes from the points it comes close to. Greedy Selection only
looks at the first term. Cost: O(pool · N) distances and O(pool · N²) score updates. This suits
the pools of the CPU demo and of tens of thousands of candidates, not CIFAR-10's 300,000 × 32,768
(the method refuses pools whose distance matrix would exceed ``MAX_MATRIX`` entries).
"""

from __future__ import annotations

import numpy as np

from ouroboros.errors import OuroborosError
from ouroboros.metrics import KL_EPS
from ouroboros.mindist import sq_dist
from ouroboros.select import shuffled_pool
from ouroboros.selectors import Param, register

MAX_MATRIX = 250_000_000  # pool × N float64 distances: 2 GB


def fits(pool: int, n: int) -> str | None:
    """Why a pool of this size cannot be selected from (the distance matrix), else None."""
    if pool * n > MAX_MATRIX:
        return (f"knn_entropy keeps a pool × N distance matrix: {pool} × {n} exceeds {MAX_MATRIX:,} entries; "
                "use greedy (Algorithm 1) for pools this large")
    return None


@register(
    "knn_entropy",
    fits=fits,
    params={"eps": Param((int, float), default=KL_EPS, check=lambda v: v > 0, rule="> 0",
                         help="added to every nearest-neighbour distance before the log, as in the entropy metric")},
    help="greedy maximisation of the Kozachenko–Leonenko (k = 1) entropy estimate of D_n",
)
def knn_entropy(features: np.ndarray, n: int, *, seed: int, eps: float = KL_EPS) -> tuple[np.ndarray, dict]:
    """Pool indices in selection order: a seeded random first point, then repeatedly the
    candidate whose addition raises the entropy estimate most (ties: the seeded order of the
    pool, as in ``ouroboros.select.greedy``)."""
    order, x = shuffled_pool(features, n, seed)
    why = fits(len(x), n)
    if why:
        raise OuroborosError(why)
    dist = np.empty((len(x), n))  # dist[:, j]: every candidate's distance to the j-th chosen point
    nearest = np.full(n, np.inf)  # r_a of each chosen point within the chosen set
    chosen = np.empty(n, dtype=np.int64)
    taken = np.zeros(len(x), dtype=bool)
    for i in range(n):
        if i == 0:
            best = 0
        else:
            d = dist[:, :i]
            own = np.log(d.min(axis=1) + eps)
            r = nearest[:i]
            finite = np.isfinite(r)
            # what x takes from each chosen point a whose nearest neighbour it would become
            taken_from = (np.log(np.minimum(d[:, finite], r[finite]) + eps) - np.log(r[finite] + eps)).sum(axis=1)
            # a chosen point still alone (i = 1) gains its first neighbour: log(d(a, x) + eps)
            taken_from += np.log(d[:, ~finite] + eps).sum(axis=1)
            score = own + taken_from
            score[taken] = -np.inf
            best = int(np.argmax(score))  # the earliest row of the shuffled pool among ties
        chosen[i], taken[best] = best, True
        dist[:, i] = np.sqrt(sq_dist(x, x[best]))
        if i:
            nearest[:i] = np.minimum(nearest[:i], dist[chosen[:i], i])
            nearest[i] = dist[chosen[:i], i].min()
    final = nearest if n > 1 else np.zeros(1)
    return order[chosen], {"sum_log_nn": float(np.log(final + eps).sum())}
