"""Selection methods: the defining property of each, on known answers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from ouroboros import select
from ouroboros.errors import OuroborosError


def test_greedy_each_choice_is_farthest_from_those_before():
    x = np.random.default_rng(0).normal(size=(300, 6))
    chosen = select.greedy(x, 40, seed=3)
    assert len(set(chosen.tolist())) == 40
    for i in range(1, 40):
        min_d = np.sqrt(((x[:, None, :] - x[chosen[:i]][None]) ** 2).sum(-1)).min(1)
        min_d[chosen[:i]] = -1
        assert min_d[chosen[i]] == pytest.approx(min_d.max())


def test_greedy_same_seed_same_indices_and_seed_moves_the_start():
    x = np.random.default_rng(1).normal(size=(200, 3))
    np.testing.assert_array_equal(select.greedy(x, 20, seed=5), select.greedy(x, 20, seed=5))
    assert select.greedy(x, 20, seed=5)[0] != select.greedy(x, 20, seed=6)[0]


def test_threshold_decay_hand_made_1d_example():
    x = np.array([[0.0], [0.5], [3.0], [3.2], [7.0]])
    trace = select.threshold_decay_trace(x, 4, tau0=2.5, decay=0.5, seed=0, order=np.arange(5))
    # pass 1 (τ=2.5) adds 3.0 and 7.0; passes 2-4 add nothing (τ → 1.25 → 0.625 → 0.3125);
    # pass 5 adds 0.5 (0.5 > 0.3125) and stops at N = 4
    np.testing.assert_array_equal(trace.indices, [0, 2, 4, 1])
    assert trace.final_tau == pytest.approx(0.3125)
    assert (trace.passes, trace.decays) == (5, 3)


def test_threshold_decay_tests_against_d_as_it_stands_within_a_pass():
    x = np.array([[0.0], [3.0], [4.0]])
    # 4.0 is 4 from the seed point but only 1 from 3.0, added earlier in the same pass
    trace = select.threshold_decay_trace(x, 3, tau0=2.0, decay=0.4, seed=0, order=np.arange(3))
    np.testing.assert_array_equal(trace.indices, [0, 1, 2])
    assert trace.final_tau == pytest.approx(0.8)


def test_threshold_decay_same_seed_same_indices():
    x = np.random.default_rng(2).normal(size=(300, 4))
    a = select.threshold_decay(x, 50, tau0=3.0, decay=0.8, seed=9)
    np.testing.assert_array_equal(a, select.threshold_decay(x, 50, tau0=3.0, decay=0.8, seed=9))
    assert len(set(a.tolist())) == 50


def test_threshold_decay_reports_too_few_distinct_points():
    x = np.zeros((10, 2))
    x[1] = 1.0
    with pytest.raises(OuroborosError, match="distinct"):
        select.threshold_decay(x, 3, tau0=1.0, decay=0.5, seed=0)


def test_random_and_all():
    r = select.random(100, 30, seed=1)
    assert len(set(r.tolist())) == 30 and r.max() < 100
    np.testing.assert_array_equal(r, select.random(100, 30, seed=1))
    np.testing.assert_array_equal(select.keep_all(5), np.arange(5))


def test_pool_smaller_than_n_is_a_clear_error():
    with pytest.raises(OuroborosError, match="pool is smaller than N"):
        select.greedy(np.zeros((5, 2)), 6, seed=0)
    with pytest.raises(OuroborosError, match="pool is smaller than N"):
        select.random(5, 6, seed=0)


def clustered(n, d, clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 3
    x = centres[rng.integers(clusters, size=n)] + rng.normal(size=(n, d)) * rng.uniform(0.05, 1, size=(n, 1))
    x[10:20] = x[0]  # exact duplicates, as collapsed generations produce
    return x.astype(np.float32)


def lattice():
    """Integer grid points: exact ties everywhere, so the tie rule (the seeded order) decides."""
    g = np.stack(np.meshgrid(np.arange(12), np.arange(12), np.arange(3)), -1).reshape(-1, 3)
    return np.random.default_rng(0).permutation(g).astype(np.float32)


@pytest.mark.parametrize("x", [clustered(4000, 24, 30, 1), lattice()], ids=["clustered", "lattice"])
def test_fast_greedy_selects_exactly_what_the_reference_selects(x):
    for active in (32, 512):
        np.testing.assert_array_equal(select.greedy(x, 300, seed=4, active_size=active),
                                      select.greedy_reference(x, 300, seed=4))


@pytest.mark.parametrize("x", [clustered(3000, 16, 20, 2), lattice()], ids=["clustered", "lattice"])
def test_blocked_threshold_decay_matches_the_reference(x):
    for block in (7, 256):
        fast = select.threshold_decay_trace(x, 250, tau0=6.0, decay=0.8, seed=3, block=block)
        ref = select.threshold_decay_reference(x, 250, tau0=6.0, decay=0.8, seed=3)
        np.testing.assert_array_equal(fast.indices, ref.indices)
        assert (fast.final_tau, fast.passes) == (ref.final_tau, ref.passes)


@pytest.mark.parametrize("x", [clustered(2000, 24, 30, 5), lattice()], ids=["clustered", "lattice"])
def test_torch_greedy_matches_the_reference_on_cpu(x):
    # the GPU path, run here on torch's CPU device
    np.testing.assert_array_equal(select.greedy_torch(x, 150, seed=2, device="cpu"),
                                  select.greedy_reference(x, 150, seed=2))


@pytest.mark.parametrize("x", [clustered(3000, 16, 20, 7), lattice()], ids=["clustered", "lattice"])
def test_skipping_empty_passes_changes_nothing(x):
    # a high τ0 and a fast decay: most passes can add nothing, and the fast path skips them
    for tau0, decay in ((500.0, 0.5), (40.0, 0.9)):
        fast = select.threshold_decay_trace(x, 200, tau0=tau0, decay=decay, seed=1)
        ref = select.threshold_decay_reference(x, 200, tau0=tau0, decay=decay, seed=1)
        assert fast.skipped > 0 and ref.skipped == 0
        np.testing.assert_array_equal(fast.indices, ref.indices)
        assert (fast.final_tau, fast.passes, fast.decays) == (ref.final_tau, ref.passes, ref.decays)
        # τ of the last pass is τ0 · decay^decays (by repeated multiplication: equal up to rounding)
        assert fast.final_tau == pytest.approx(tau0 * decay**fast.decays, rel=1e-12)
        assert fast.passes > fast.decays  # the others added something: the last pass always does


def test_final_tau_convention_on_a_hand_made_example():
    # τ = 8: nothing is farther than 8 from 0.0 → decays to 4, 2; at τ = 2, 3.0 joins (passes: 3)
    x = np.array([[0.0], [1.0], [3.0]])
    for trace in (select.threshold_decay_trace(x, 2, tau0=8.0, decay=0.5, seed=0, order=np.arange(3)),
                  select.threshold_decay_reference(x, 2, tau0=8.0, decay=0.5, seed=0, order=np.arange(3))):
        np.testing.assert_array_equal(trace.indices, [0, 2])
        assert (trace.final_tau, trace.passes, trace.decays) == (2.0, 3, 2)
    assert select.threshold_decay_trace(x, 2, tau0=8.0, decay=0.5, seed=0, order=np.arange(3)).skipped == 2


def copies_won(chosen, half):
    """How many of the chosen pairs (row i and its copy i + half) the copy won; every pair once."""
    chosen = np.asarray(chosen)
    assert sorted(chosen % half) == list(range(half))  # exactly one of each pair
    return int(np.sum(chosen >= half))


def duplicated_pool():
    x = np.random.default_rng(11).normal(size=(400, 8))
    return np.concatenate([x, x])  # the accumulate pool's order: originals first, then copies


@pytest.mark.parametrize("method", ["greedy", "greedy_reference", "threshold_decay"])
def test_exact_copies_win_by_a_coin_flip_not_by_position(method):
    x = duplicated_pool()
    if method == "threshold_decay":
        chosen = select.threshold_decay(x, 400, tau0=2.0, decay=0.8, seed=5)
    else:
        chosen = getattr(select, method)(x, 400, seed=5)
    won = copies_won(chosen, 400)
    assert 0 < won < 400
    assert binomtest(won, 400, 0.5).pvalue > 0.001
    # "lowest pool index wins" gives 0 (1 when the random first point is a copy): rejected
    assert max(binomtest(k, 400, 0.5).pvalue for k in (0, 1)) < 0.001


def test_auto_tau0_is_the_median_leave_one_out_nn_distance():
    # 1-NN distances: 2, 2, 3, 4, 5 → median 3 (the mean would be 3.2)
    x = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 0.0], [9.0, 0.0], [14.0, 0.0]])
    assert select.auto_tau0(x) == 3.0
    # an even count takes the midpoint, and an exact duplicate is its copy's neighbour at 0
    x = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 3.0], [0.0, 7.0]])  # 0, 0, 3, 4
    assert select.auto_tau0(x) == 1.5


STAGE = """
import json, sys
from ouroboros import select
from ouroboros.runtime import logged
root = sys.argv[1]
with logged(root + "/select.log", 1):
    select.stage([("real", root + "/real/images.npy"), ("G01", root + "/g/samples.npy")], "pixels", 6,
                 "threshold_decay", seed=0, params={"tau0": "auto", "decay": 0.5}, manifest_out=root + "/train.tsv",
                 info_out=root + "/selection.json", real_images=root + "/real/images.npy")
print(json.dumps("torch" in sys.modules))
"""


def test_stage_with_auto_tau0_records_it_and_never_imports_torch(tmp_path):
    real = np.array([[0.0, 0.0], [2.0, 0.0], [5.0, 0.0], [9.0, 0.0], [14.0, 0.0]], dtype=np.float32)
    generated = real + np.float32(0.25)
    for folder, name, feats in (("real", "images.npy", real), ("g", "samples.npy", generated)):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / name, np.zeros((len(feats), 2, 2, 1), dtype=np.uint8))
        np.save(tmp_path / folder / "features-pixels.npy", feats)
    src = str(Path(select.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", STAGE, str(tmp_path)], capture_output=True, text=True,
                         env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr + (tmp_path / "select.log").read_text()
    assert json.loads(out.stdout) is False  # a CPU selection job never loads torch
    info = json.loads((tmp_path / "selection.json").read_text())
    assert info["tau0"] == 3.0 and "real/features-pixels.npy" in info["tau0_from"]
    assert info["final_tau"] == pytest.approx(info["tau0"] * info["decay"] ** info["decays"])
    assert info["selected"] == 6 and info["passes"] >= info["decays"] + 1
