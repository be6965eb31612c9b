"""The lazy min-distance structure: every value it calls exact is the direct float64 minimum."""

import numpy as np
import pytest

from ouroboros.mindist import MinDistances, sq_dist


def brute(x, centres):
    """Each row's min squared distance to the centres, by the exact kernel, centres at −1."""
    out = np.min([sq_dist(x, x[c]) for c in centres], axis=0)
    out[list(centres)] = -1.0
    return out


def pool(n=600, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[50:60] = x[0]  # exact duplicates: ties the structure must resolve by row
    return x


def test_exact_values_equal_the_direct_minimum_and_bounds_never_undercut_them():
    x = pool()
    md = MinDistances(x, 7, chunk=64)
    added = [7]
    for c in (3, 400, 55, 599, 120):
        md.add_centre(c, update=np.arange(0, 600, 3))  # only some rows hear of c
        added.append(c)
        truth = brute(x, added)
        assert np.all(md.bounds(np.arange(600)) >= truth)  # stale rows: upper bounds
        np.testing.assert_array_equal(md.bounds(np.arange(0, 600, 3)), truth[::3])  # updated rows: exact
    rows = np.arange(1, 600, 7)
    np.testing.assert_array_equal(md.exact(rows), brute(x, added)[rows])
    np.testing.assert_array_equal(md.centres, added)
    assert len(md) == len(added)


@pytest.mark.parametrize("active_size", [1, 16, 2048])
def test_farthest_is_the_direct_argmax_with_ties_to_the_lowest_row(active_size):
    g = np.stack(np.meshgrid(np.arange(6), np.arange(6), np.arange(2)), -1).reshape(-1, 3).astype(float)
    x = np.concatenate([g, g])  # a lattice, twice: ties everywhere
    md = MinDistances(x, 0, chunk=16, active_size=active_size)
    centres = [0]
    for _ in range(40):
        truth = brute(x, centres)
        best, value = md.farthest()
        assert (best, value) == (int(np.argmax(truth)), truth.max())
        assert md.largest() == truth.max()
        md.add_centre(best)
        centres.append(best)
    np.testing.assert_array_equal(md.centres, centres)


def test_largest_after_partial_updates_and_when_no_candidate_is_left():
    x = pool(80)
    md = MinDistances(x, 0, chunk=8)
    for c in range(1, 40):
        md.add_centre(c, update=np.arange(c + 1, c + 5))
        assert md.largest() == brute(x, range(c + 1)).max()
    for c in range(40, 80):
        md.add_centre(c)
    assert md.farthest() == (-1, -1.0) and md.largest() == -1.0
