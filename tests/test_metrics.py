"""Metrics against brute-force numpy and analytic values."""

import math

import numpy as np
import pytest
from scipy.special import digamma

from ouroboros import metrics
from ouroboros.neighbors import knn


def brute_dist(a, b):
    return np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_knn_matches_brute_force(rng):
    q, b = rng.normal(size=(50, 7)).astype(np.float32), rng.normal(size=(80, 7)).astype(np.float32)
    d, i = knn(q, b, 3)
    full = brute_dist(q, b)
    expect = np.sort(full, axis=1)[:, :3]
    np.testing.assert_allclose(d, expect, rtol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(full, i, 1), expect, rtol=1e-12)


def test_knn_exclude_self_drops_own_index_even_with_duplicates():
    x = np.array([[0.0], [0.0], [0.0], [5.0], [7.0]], dtype=np.float32)
    d, i = knn(x, x, 1, exclude_self=True)
    assert (i[:, 0] != np.arange(5)).all()
    np.testing.assert_array_equal(d[:, 0], [0, 0, 0, 2, 2])


def test_generalization_score_and_mnnd_match_brute_force(rng):
    g, t = rng.normal(size=(40, 5)), rng.normal(size=(60, 5))
    assert metrics.generalization_score(g, t) == pytest.approx(brute_dist(g, t).min(1).mean(), rel=1e-6)
    full = brute_dist(t, t)
    np.fill_diagonal(full, np.inf)
    assert metrics.mnnd(t) == pytest.approx(full.min(1).mean(), rel=1e-6)


def test_kl_entropy_of_gaussian_matches_analytic():
    rng = np.random.default_rng(1)
    sigma, d, n = 0.7, 2, 5000  # error spread about 0.02 at this n; mean error −0.003 ± 0.003 over 40 seeds
    x = rng.normal(scale=sigma, size=(n, d))
    analytic = 0.5 * d * math.log(2 * math.pi * math.e * sigma**2)
    assert metrics.kl_entropy(x) == pytest.approx(analytic, abs=0.05)
    assert metrics.kl_entropy_distinct(x) == pytest.approx(analytic, abs=0.05)


def brute_kl(x, k, eps):
    """ψ(N) − ψ(k) + log V_d + (d/N) Σ log(ε_i + eps), ε_i the k-th smallest distance to another point."""
    n, d = x.shape
    total = 0.0
    for i in range(n):
        dists = sorted(math.sqrt(sum((x[i, c] - x[j, c]) ** 2 for c in range(d))) for j in range(n) if j != i)
        total += math.log(dists[k - 1] + eps)
    log_unit_ball = math.log(math.pi ** (d / 2) / math.gamma(d / 2 + 1))
    return digamma(n) - digamma(k) + log_unit_ball + d / n * total


@pytest.mark.parametrize("k", [1, 2])
def test_kl_entropy_with_duplicates_matches_the_formula_over_all_points(rng, k):
    x = rng.normal(size=(40, 3)).astype(np.float32)  # the precision neighbours are searched in
    x = np.concatenate([x, x[:8], x[:2]]).astype(np.float64)  # 10 copies, two points three times over
    assert metrics.kl_entropy(x, k) == pytest.approx(brute_kl(x, k, 1e-10), rel=1e-9)
    assert metrics.kl_entropy(x, k, eps=1e-6) == pytest.approx(brute_kl(x, k, 1e-6), rel=1e-9)
    assert metrics.kl_entropy_distinct(x, k) == pytest.approx(brute_kl(x[:40], k, 0.0), rel=1e-9)


def test_duplicates_lower_the_papers_entropy_and_leave_the_distinct_one_alone(rng):
    x = rng.normal(size=(140, 3))
    copies = np.concatenate([x, x[rng.choice(140, 60)]])[rng.permutation(200)]  # 30 % copies
    # every point with a copy (original or copy) has distance 0 + 1e-10: 3·log(1e-10)/200 ≈ −0.35 each
    assert metrics.kl_entropy(copies) < metrics.kl_entropy(x) - 10
    assert metrics.kl_entropy_distinct(copies) == pytest.approx(metrics.kl_entropy_distinct(x), rel=1e-12)
    assert metrics.duplicate_count(copies) == 60


def test_duplicate_count_counts_rows_that_repeat_an_earlier_row():
    x = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0], [1, 0], [2, 2]], dtype=np.float32)
    assert metrics.duplicate_count(x) == 3  # [0, 0] twice more, [1, 0] once more
    assert metrics.duplicate_count(x[[0, 1, 3, 6]]) == 0
    assert metrics.duplicate_count(np.ones((5, 4))) == 4


def test_set_metrics_records_both_entropies_and_the_duplicates(rng):
    from ouroboros.evaluate import set_metrics

    x = rng.normal(size=(50, 2)).astype(np.float32)
    got = set_metrics(np.concatenate([x, x[:5]]), "train")
    assert got["train_duplicates"] == 5
    assert got["train_entropy_distinct"] == pytest.approx(metrics.kl_entropy_distinct(x))
    assert got["train_entropy"] < got["train_entropy_distinct"]


def test_covariance_trace(rng):
    x = rng.normal(size=(100, 4)) * [1, 2, 3, 4]
    assert metrics.covariance_trace(x) == pytest.approx(np.trace(np.cov(x, rowvar=False)))


def test_memorization_ratio_on_hand_made_points():
    train = np.array([[0.0], [10.0], [20.0], [20.0]])
    generated = np.array([[1.0], [5.0], [9.0], [20.0], [14.0]])
    # d1/d2: 1/9 yes, 5/5 no, 1/9 yes, 0 (copy of a duplicated point) yes, 4/6 no
    assert metrics.memorization_ratio(generated, train) == pytest.approx(3 / 5)


def test_prdc_tight_cluster_against_spread_set(rng):
    real = rng.normal(size=(400, 2))
    tight = rng.normal(scale=0.05, size=(400, 2))
    r = metrics.prdc(real, tight, k=5)
    assert r["precision"] > 0.95 and r["recall"] < 0.2 and r["coverage"] < 0.3


def test_prdc_matches_brute_force_definitions(rng):
    real, fake, k = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 0.3, 5
    rr, ff, rf = brute_dist(real, real), brute_dist(fake, fake), brute_dist(real, fake)
    r_radius = np.sort(rr, 1)[:, k]  # column 0 is the point itself
    f_radius = np.sort(ff, 1)[:, k]
    expect = {  # strictly inside a ball, as Naeem et al. (2020) define it
        "precision": (rf < r_radius[:, None]).any(0).mean(),
        "recall": (rf < f_radius[None, :]).any(1).mean(),
        "density": (rf < r_radius[:, None]).sum() / (k * len(fake)),
        "coverage": (rf.min(1) < r_radius).mean(),
    }
    got = metrics.prdc(real, fake, k=k)
    for key, value in expect.items():
        assert got[key] == pytest.approx(value), key


def collapsing_sets(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer points (exact float arithmetic, so ties are ties) with exact duplicates, as a
    collapsing loop makes them: the real set repeats a few points, the generated set is mostly
    copies of real points, piled up several times each."""
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 6, size=(40, 2)).astype(float)
    real = np.concatenate([real, real[:8], real[:3]])  # some real points 2 or 3 times
    copies = real[rng.integers(0, 12, size=30)]  # copies of a few real points, several times each
    fresh = rng.integers(0, 6, size=(10, 2)).astype(float)
    return real, np.concatenate([copies, fresh, copies[:5]])


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_agrees_with_clovaai_prdc_on_sets_with_exact_duplicates(k, seed, capsys):
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    real, fake = collapsing_sets(seed)
    want = compute_prdc(real, fake, nearest_k=k)
    capsys.readouterr()  # the package prints the set sizes
    got = metrics.prdc(real, fake, k=k)
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(want[key]), key
    # the sets do have radii of 0 and distances equal to a radius: ≤ would give other numbers here
    assert (np.sort(brute_dist(fake, fake), 1)[:, k] == 0).any()
    ties = brute_dist(real, fake) == np.sort(brute_dist(real, real), 1)[:, k][:, None]
    assert ties.any()


def clovaai_prdc_exact(real, fake, k):
    """clovaai's algorithm (prdc.compute_prdc) on exact float64 distances (direct differences): the
    reference on sets with exact duplicates, where the package's own sklearn distances round a
    duplicate's 0 to 0 or 6e-8 at random."""
    rr, ff, rf = brute_dist(real, real), brute_dist(fake, fake), brute_dist(real, fake)
    real_radii, fake_radii = np.sort(rr, 1)[:, k], np.sort(ff, 1)[:, k]  # column 0: the point itself
    return {"precision": (rf < real_radii[:, None]).any(axis=0).mean(),
            "recall": (rf < fake_radii[None, :]).any(axis=1).mean(),
            "density": (1 / k) * (rf < real_radii[:, None]).sum(axis=0).mean(),
            "coverage": (rf.min(axis=1) < real_radii).mean()}


def duplicated_gaussian_sets(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """150 real points in d = 16, Gaussian (so the float64 expansion rounds), 30 of them three times
    (60 extra rows), and a generated set of 90 copies of real rows: a copy of a point's neighbour
    lies exactly on that point's ball boundary."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(90, 16))
    real = np.concatenate([x, x[:30], x[:30]])
    return real, real[rng.choice(len(real), 90, replace=False)]


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prdc_equals_the_exact_distance_reference_on_gaussian_sets_with_duplicates(k, seed):
    """Radii and ball distances from one route: a point at exactly a neighbour's radius is outside.
    (Radii from the float32-cast points against ball distances from a float64 expansion gave precision 0.567 where
    this reference gives 0.378, at k = 2, seed 0.)"""
    real, fake = duplicated_gaussian_sets(seed)
    want = clovaai_prdc_exact(real, fake, k)
    got = metrics.prdc(real, fake, k=k)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key  # one count apart is 1/(k·90): far above 1e-12
    assert (np.sort(brute_dist(real, real), 1)[:, k] == 0).any() == (k == 2)  # 3 copies: radius 0 at k = 2


def test_prdc_blocks_and_radii_do_not_depend_on_the_chunk(rng):
    """The blocks of a large set give what one block gives: radii against brute force, ball tests chunk by chunk."""
    x = np.concatenate([rng.normal(size=(70, 5)), rng.normal(size=(10, 5))[[0, 0, 1, 2, 2, 2]]]) * 1e3 + 5e3
    want = np.sort(brute_dist(x, x), 1)[:, 3]
    assert np.array_equal(metrics._kth_radii(x, 3, chunk=7), want)
    whole = next(metrics._within(x[:40], x, want, chunk=len(x)))
    assert np.array_equal(np.concatenate(list(metrics._within(x[:40], x, want, chunk=9))), whole)
    assert np.array_equal(whole, brute_dist(x[:40], x) < want[None, :])


def test_fid_with_equal_covariance_is_squared_mean_distance(rng):
    a = rng.normal(size=(500, 4))
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert metrics.fid(a, a + shift) == pytest.approx(float(shift @ shift), abs=1e-6)
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_equals_torch_fidelitys_functions_bit_for_bit(rng):
    """The numpy FID against torch-fidelity's own feature → statistics → metric functions."""
    import torch
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    a, b = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) * 1.3 + 0.2
    stats = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    want = fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID]
    assert metrics.fid(a, b) == want


def test_median_nn_distance_of_a_known_set():
    # points on a line at 0, 1, 3, 7: nearest-neighbour distances 1, 1, 2, 4 → median 1.5
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert metrics.median_nn_distance(x) == pytest.approx(1.5)


def test_copy_share_sees_copies_of_a_clustered_training_set_that_the_ratio_misses():
    """A training set of near-twin pairs: samples sitting on one twin are copies by a fixed
    yardstick, but their d1/d2 is near 1, so the memorization ratio cannot fire."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 8)) * 10
    train = np.concatenate([centres, centres + 0.01])  # every image has a twin 0.01 away
    generated = centres + 0.004  # each sample on a training image: d1 = 0.004·√8, its twin at d2 = 0.006·√8
    scale = 1.0  # the real images' typical spacing
    assert metrics.copy_share(generated, train, scale=scale) == 1.0
    assert metrics.memorization_ratio(generated, train) == 0.0  # d1/d2 = 2/3: not below 1/3
    far = centres + 5.0
    assert metrics.copy_share(far, train, scale=scale) == 0.0
    # the threshold scales with the yardstick: d1 = 0.004·√8 ≈ 0.011314 against a third of 0.0340 and 0.0339
    assert metrics.copy_share(generated, train, scale=0.0340) == 1.0
    assert metrics.copy_share(generated, train, scale=0.0339) == 0.0


# --- Vendi score and authenticity ----------------------------------------------------------------
def test_vendi_known_answers():
    assert metrics.vendi(np.eye(7)) == pytest.approx(7)  # 7 orthogonal points: 7 distinct
    assert metrics.vendi(np.tile([[1.0, 2.0, 3.0]], (5, 1))) == pytest.approx(1)  # 5 copies of one: 1
    assert metrics.vendi(np.vstack([np.eye(4), np.eye(4)])) == pytest.approx(4)  # each twice: still 4
    # two directions, one held by 3 points and one by 1: exp of the entropy of (3/4, 1/4), and for q = 2
    # the inverse participation 1 / (9/16 + 1/16)
    x = np.array([[1.0, 0], [2.0, 0], [0.5, 0], [0, 3.0]])
    assert metrics.vendi(x) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert metrics.vendi(x, q=2) == pytest.approx(1 / (0.75**2 + 0.25**2))
    assert metrics.vendi(x, q=math.inf) == pytest.approx(1 / 0.75)
    with pytest.raises(ValueError, match="zero vector"):
        metrics.vendi(np.zeros((3, 2)))


@pytest.mark.parametrize("shape", [(60, 8), (9, 40)])  # n > d (the d × d dual) and n < d (the n × n kernel)
def test_vendi_matches_the_vendi_score_package(rng, shape):
    import warnings

    with warnings.catch_warnings():  # the package reaches for scipy.sparse.csr, deprecated in new SciPy
        warnings.simplefilter("ignore", DeprecationWarning)
        from vendi_score import vendi as reference

        x = rng.normal(size=shape)
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        for q in (1, 2, 0.5, "inf"):
            want = reference.score_K(unit @ unit.T, q=q)
            got = metrics.vendi(x, q=math.inf if q == "inf" else q)
            # for q < 1 the package's n × n spectrum adds its rounding noise (n − d eigenvalues of
            # ~1e-17, each raised to q): 1e-7 relative at q = 0.5, where the dual has none
            assert got == pytest.approx(want, rel=1e-9 if q != 0.5 else 1e-6), q
        assert metrics.vendi(x) == pytest.approx(reference.score_dual(x), rel=1e-9)


def authenticity_brute(train, generated):
    own = brute_dist(train, train)
    np.fill_diagonal(own, np.inf)
    to_train = brute_dist(generated, train)
    nearest = to_train.argmin(1)
    return float(np.mean([to_train[j, i] > own[i].min() for j, i in enumerate(nearest)]))


def test_authenticity_against_brute_force_and_known_answers(rng):
    train = rng.normal(size=(70, 5))
    generated = rng.normal(size=(90, 5))
    assert metrics.authenticity(train, generated) == pytest.approx(authenticity_brute(train, generated))
    assert metrics.authenticity(train, train[:20]) == 0.0  # exact copies are never authentic
    # a unit lattice (each point's nearest other point at 1); generated points half or a tenth of a
    # step off a lattice point are closer to it than 1: copies of it, none authentic
    lattice = np.array([[i, j] for i in range(6) for j in range(6)], float)
    gen = np.vstack([lattice[:10] + [0.5, 0.0], lattice[10:14] + [0.1, 0.0]])
    assert metrics.authenticity(lattice, gen) == 0.0
    far = lattice[:4] + [0.5, 0.5] + 10.0  # off the lattice entirely
    assert metrics.authenticity(lattice, far) == 1.0
