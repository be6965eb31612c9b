"""Each candidate's minimum squared distance to a growing set of centres, exact where it matters.

Greedy Selection needs the candidate farthest from the centres after every addition, and the
Threshold Decay Filter needs to know whether a candidate lies farther than τ from all of them.
Both only ever add centres, so a candidate's minimum distance only shrinks: a value computed
against the first k centres is an upper bound of the true one. ``MinDistances`` keeps such
bounds and makes them exact lazily, only for candidates that could still decide something, with
one float32 matrix product per chunk as a filter and the exact kernel ``sq_dist`` for every pair
the filter cannot rule out. Every exact value is therefore the one a direct float64 computation
gives, bit for bit, for a fraction of its work.

Rows are identified by their position in ``features``; ties between equal distances go to the
lowest row (callers who want another tie rule permute the rows first).
"""

from __future__ import annotations

import numpy as np

# float32 dot products of length d are within gamma_d * |x||c| of the truth (Higham, Thm 3.5)
_U32 = 2.0**-24


def sq_dist(features: np.ndarray, point: np.ndarray) -> np.ndarray:
    """The one exact kernel: float64 squared distance by direct differences, summed per row.

    Every distance that decides a selection goes through this function, against one point or
    row by row against aligned pairs, so fast and reference paths agree bit for bit.
    """
    diff = features - point
    return np.sum(diff * diff, axis=1)


class MinDistances:
    """Candidates' min squared distance to the centres (rows chosen so far), kept lazily exact.

    ``bounds(rows)`` are upper bounds, exact for rows brought up to date; centres read −1.
    ``exact(rows)`` brings rows up to date. ``add_centre(c)`` makes row c a centre.
    ``farthest()`` is the candidate with the largest exact value (``largest()`` that value): it
    tracks the ``active_size`` candidates with the largest values exactly, and a bound B that no
    other candidate exceeds; while the active set's best beats B it is the global best, otherwise
    bounds are refreshed. ``add_centre`` with explicit ``update`` rows drops the active set.
    """

    def __init__(self, features: np.ndarray, first: int, *, chunk: int = 4096, active_size: int = 2048):
        """``features``: float64 rows (count, dim); ``first``: the first centre."""
        self._x64 = features
        self._x32 = features.astype(np.float32)
        self._norm = np.sqrt(np.einsum("ij,ij->i", features, features))
        d = features.shape[1]
        self._gamma = 2 * (d + 2) * _U32 / (1 - (d + 2) * _U32)
        self._value = sq_dist(features, features[first])
        self._value[first] = -1.0
        self._seen = np.ones(len(features), dtype=np.int64)  # _value[i] is exact w.r.t. centres[: _seen[i]]
        self._centres = [int(first)]
        self._chunk = chunk
        self._active_size = active_size
        self._active: np.ndarray | None = None  # exact rows, every other candidate ≤ self._bound
        self._bound = -1.0

    def __len__(self) -> int:
        """The number of centres."""
        return len(self._centres)

    @property
    def centres(self) -> np.ndarray:
        """The centres' rows, in the order they were added."""
        return np.asarray(self._centres, dtype=np.int64)

    def bounds(self, rows: np.ndarray | int) -> np.ndarray:
        """Upper bounds of the rows' min squared distances (exact once brought up to date); −1 for a centre."""
        return self._value[rows]

    def exact(self, rows: np.ndarray) -> np.ndarray:
        """The rows' exact min squared distances to every centre so far (−1 for a centre)."""
        rows = np.asarray(rows, dtype=np.int64)
        stale = rows[self._seen[rows] < len(self._centres)]
        if len(stale):
            self._update(stale)
        return self._value[rows]

    def add_centre(self, c: int, *, update: np.ndarray | None = None) -> None:
        """Row c becomes a centre. The ``update`` rows (default: the active set) get c's distance
        now, filtered by one float32 matrix-vector product (only rows whose distance to c may fall
        below their value are recomputed exactly); every other row becomes stale.
        """
        if update is None and self._active is not None:
            rows, x32, norm = self._active, self._active32, self._active_norm
        else:
            rows = np.asarray(update if update is not None else [], dtype=np.int64)
            rows = rows[self._value[rows] >= 0]
            x32, norm = self._x32[rows], self._norm[rows]
            self._active = None  # its rows were not updated: no longer exact
        fresh = rows[self._seen[rows] == len(self._centres)]  # exact before c: exact after it too
        self._centres.append(int(c))
        current = self._value[rows]
        maybe = np.nonzero(self._lower_bound(x32, norm, c) < current)[0]
        if len(maybe):
            current[maybe] = np.minimum(current[maybe], sq_dist(self._x64[rows[maybe]], self._x64[c]))
            self._value[rows] = current
        self._value[c] = -1.0
        self._seen[fresh] = len(self._centres)

    def farthest(self) -> tuple[int, float]:
        """The candidate with the largest exact min squared distance (lowest row among ties), and
        that distance; (−1, −1.0) when every row is a centre."""
        if self._active is None:
            self._activate()
        if len(self._active) == 0:
            return -1, -1.0
        vals = self._value[self._active]
        j = int(np.argmax(vals))  # argmax takes the lowest position, and active rows are sorted
        if not vals[j] > self._bound:
            self._activate()
            vals = self._value[self._active]
            j = int(np.argmax(vals))
            if not vals[j] > self._bound:  # a tie with a candidate outside: settle it over the whole pool
                self._refresh(len(self._value))
                best = int(np.argmax(self._value))
                self._activate()
                return best, float(self._value[best])
        return int(self._active[j]), float(vals[j])

    def largest(self) -> float:
        """The largest exact min squared distance among the candidates (−1.0 when every row is a
        centre): ``farthest``'s value, without settling which row holds it, so only as many
        candidates are brought up to date as it takes to prove the top one."""
        if self._active is not None and len(self._active):
            best = float(self._value[self._active].max())
            if best >= self._bound:
                return best
        top, _ = self._refresh(1)
        return float(self._value[top].max()) if len(top) else -1.0

    def _activate(self) -> None:
        """A new active set, cached contiguously: every step until the next refresh reads it."""
        self._active, self._bound = self._refresh(self._active_size)
        self._active32 = np.ascontiguousarray(self._x32[self._active])
        self._active_norm = self._norm[self._active]

    def _lower_bound(self, x32: np.ndarray, norm: np.ndarray, c: int) -> np.ndarray:
        """A proven lower bound of the squared distances from rows (float32, with their norms) to
        centre c: one float32 matrix-vector product, minus its rounding band (Higham's γ_d)."""
        nc = float(self._norm[c])
        h = (x32 @ self._x32[c]).astype(np.float64)
        slack = self._gamma * norm * nc + 1e-12 * (norm**2 + nc * nc)
        return norm**2 + nc * nc - 2.0 * h - slack

    def _update(self, rows: np.ndarray) -> None:
        """Make ``rows`` exact w.r.t. every centre so far (re-applying a seen centre is harmless).

        Works in float32 on h = ‖c‖² − 2x·c (= approx − ‖x‖²), with a per-row band that bounds
        the product's and h's rounding for every centre of the chunk (Higham's γ_d plus 4u).
        """
        start = int(self._seen[rows].min())
        current = self._value[rows]
        x32, nr = self._x32[rows], self._norm[rows]
        for lo in range(start, len(self._centres), self._chunk):
            cents = np.asarray(self._centres[lo : lo + self._chunk], dtype=np.int64)
            nc = self._norm[cents]
            h = x32 @ self._x32[cents].T
            h *= -2.0
            h += (nc**2).astype(np.float32)[None, :]
            big = float(nc.max())
            slack = self._gamma * nr * big + 4 * _U32 * (nr + big) ** 2 + 1e-12 * (nr**2 + big**2)
            # the best pair's upper bound; only pairs whose lower bound beats it can be the new minimum
            upper = np.minimum(current, h.min(axis=1).astype(np.float64) + nr**2 + slack)
            limit = upper + slack - nr**2
            limit32 = limit.astype(np.float32)
            limit32 = np.where(limit32 < limit, np.nextafter(limit32, np.float32(np.inf)), limit32)  # round up
            ri, ci = np.nonzero(h < limit32[:, None])
            if len(ri):
                np.minimum.at(current, ri, sq_dist(self._x64[rows[ri]], self._x64[cents[ci]]))
        self._value[rows] = current
        self._seen[rows] = len(self._centres)

    def _refresh(self, m: int) -> tuple[np.ndarray, float]:
        """Bring candidates up to date, in decreasing order of their bound, until the top ``m``
        are exact and provably the top.

        Returns those rows (sorted) and the bound B that no candidate outside them can exceed.
        """
        order = np.argsort(-self._value, kind="stable")
        order = order[self._value[order] >= 0]
        done, step = 0, min(self._chunk, max(2 * m, 64))  # small m: few rows suffice, most often
        while True:
            rows = order[done : done + step]
            step = min(2 * step, self._chunk)
            stale = rows[self._seen[rows] < len(self._centres)]
            if len(stale):
                self._update(stale)
            done += len(rows)
            updated = order[:done]
            next_bound = float(self._value[order[done]]) if done < len(order) else -1.0
            if done >= len(order) or int(np.sum(self._value[updated] > next_bound)) >= m:
                break
        exact_vals = self._value[updated]
        k = min(m, len(updated))
        top = np.argpartition(-exact_vals, k - 1)[:k] if k < len(updated) else np.arange(len(updated))
        active = np.sort(updated[top])
        rest = np.setdiff1d(updated, active, assume_unique=True)
        bound = max(next_bound, float(self._value[rest].max()) if len(rest) else -1.0)
        return active, bound
