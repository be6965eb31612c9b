"""Exact nearest neighbours, through faiss, behind one tested helper.

faiss' IndexFlatL2 returns squared float32 distances computed as ‖q‖² − 2q·b + ‖b‖², which can be
slightly negative and can misorder near-ties; it also returns a point itself first when querying
a set against itself, unless a duplicate comes back first. This helper hides all of that:
it asks faiss for a few extra candidates, drops the query's own index (not merely the first hit),
recomputes the candidates' distances exactly (float64, direct differences) and re-ranks them.
"""

from __future__ import annotations

import numpy as np

_EXTRA = 4  # extra candidates re-ranked exactly, to absorb float32 near-ties
_CHUNK = 4096  # queries per faiss call: bounds the distance block in memory


def knn(queries: np.ndarray, base: np.ndarray, k: int = 1, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distances (float64, Euclidean) and indices of the k nearest base points of each query.

    With ``exclude_self`` the queries are the base itself and row i never returns index i.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    if queries.ndim != 2 or base.ndim != 2 or queries.shape[1] != base.shape[1]:
        raise ValueError(f"knn needs (n, d) arrays of one d, got {queries.shape} and {base.shape}")
    available = len(base) - (1 if exclude_self else 0)
    if k > available:
        raise ValueError(f"asked for {k} neighbours among {available} points")
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    want = min(len(base), k + _EXTRA + (1 if exclude_self else 0))
    dist = np.empty((len(queries), k))
    idx = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), _CHUNK):
        q = queries[lo : lo + _CHUNK]
        _, cand = index.search(q, want)
        if exclude_self:
            own = np.arange(lo, lo + len(q))[:, None]
            cand = np.where(cand == own, -1, cand)
        exact = np.sqrt(((q[:, None, :].astype(np.float64) - base[np.maximum(cand, 0)]) ** 2).sum(-1))
        exact[cand < 0] = np.inf
        order = np.lexsort((cand, exact), axis=-1)[:, :k]  # by distance, then lowest index
        dist[lo : lo + len(q)] = np.take_along_axis(exact, order, 1)
        idx[lo : lo + len(q)] = np.take_along_axis(cand, order, 1)
    return dist, idx

