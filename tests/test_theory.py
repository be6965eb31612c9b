"""The theory rows: the reference simulator against the closed form it can be checked on, T rows
that fail when the measured loop departs from theory, and the `theory` experiment through the CLI."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from ouroboros import closed_form, data, experiments, paths, select, simulate, theory

from cli import REPO, make_workdir, snakemake


def test_the_simulator_reproduces_the_gaussian_closed_form_where_there_is_one():
    """Replace with no fresh data is the case with a closed form: E[tr Σ̂_n] = a^(n−1) tr Σ̂_1."""
    real, _ = data.gaussian_source(3, 0.0, 12, 4)
    expected = simulate.gaussian_loop(real, 5, paradigm="replace", replicates=6000, seed=1)
    v1 = np.var(real.astype(np.float64), axis=0).sum()
    a = 11 / 12
    assert expected[0] == pytest.approx(v1)
    assert np.allclose(expected, v1 * a ** np.arange(5), rtol=0.03)
    # accumulate keeps more of it than replace: its pool always holds the real points
    assert simulate.gaussian_loop(real, 5, paradigm="accumulate", replicates=2000, seed=1)[-1] > expected[-1]


def test_the_simulators_draws_have_the_mle_mean_and_covariance_of_each_set():
    """Its draws without a factorisation: each set's MLE Gaussian (divisor N), a rank-deficient one
    (N < dim) included, whose draws stay in the affine span of its points."""
    rng = np.random.default_rng(0)
    sets = np.stack([rng.normal(size=(5, 3)) * [1.0, 2.0, 0.5], rng.normal(size=(5, 3)) + 4.0])
    draws = simulate._refit_and_draw(sets, 200_000, np.random.default_rng(1))
    for d, x in zip(sets, draws, strict=True):
        centred = d - d.mean(0)
        assert np.allclose(x.mean(0), d.mean(0), atol=0.02)
        assert np.allclose(np.cov(x.T, bias=True), centred.T @ centred / 5, atol=0.03)
    thin = rng.normal(size=(1, 3, 6))  # 3 points in 6 dimensions: a covariance of rank 2
    x = simulate._refit_and_draw(thin, 1000, rng)[0] - thin[0].mean(0)
    assert np.linalg.matrix_rank(x, tol=1e-8) == 2


def tidy(values: dict[int, list[float]], metric: str, generator: str = "gaussian", **meta) -> pd.DataFrame:
    """A tidy table of one run: values[n] = one value per replicate at iteration n."""
    rows = [{"dataset": "d", "family": "d", "run": "r", "dataset_size": 10, "paradigm": "replace", "selection": "all",
             "samples_per_iteration": 1, "fresh": 0.0, "share": "uniform", "init": "scratch", "generator": generator,
             "model_params": json.dumps(meta.get("params", {})), "data_dim": meta.get("dim", 2), "replicate": r,
             "iteration": n, "file": "metrics.json", "feature_extractor": "identity", "metric": metric, "value": v}
            for n, reps in values.items() for r, v in enumerate(reps)]
    return pd.DataFrame(rows)


def test_a_loop_that_loses_variance_as_theory_says_holds_and_one_that_does_not_fails():
    rng = np.random.default_rng(0)
    a = 0.9
    right = {n: list(4.0 * a ** (n - 1) * (1 + 0.02 * rng.standard_normal(20))) for n in range(1, 5)}
    wrong = {n: list(4.0 * 0.8 ** (n - 1) * (1 + 0.02 * rng.standard_normal(20))) for n in range(1, 5)}
    for values, verdict in ((right, "holds"), (wrong, "fails")):
        t = pd.concat([tidy(values, "train_variance_mle"), tidy({n: [0.0] * 20 for n in values}, "train_grand_mean")])
        rows = pd.DataFrame(theory.claims(t))
        variance = rows[rows.claim == "T.gaussian_variance"]
        assert len(variance) == 3 and set(variance.iteration) == {2, 3, 4}
        assert np.allclose(variance["null"], a ** (variance.iteration - 1))
        assert set(variance.verdict) == {verdict} if verdict == "holds" else "fails" in set(variance.verdict)
        # a Bonferroni level shared by the equality rows of the table (7: variance and mean at n = 2, 3, 4, and
        # the step ratio pooled over them)
        assert np.allclose(rows.level, 1 - 0.05 / 7)
        step = rows[rows.claim == "T.gaussian_step_ratio"].iloc[0]
        assert step["null"] == a and pd.isna(step.iteration) and step.verdict == verdict


def test_kde_rows_compare_coalescence_with_wright_fisher_and_variance_with_its_recursion():
    n, h, d = 10, 0.3, 2
    a = (n - 1) / n
    shares = {k: [1 - a ** (k - 1)] * 3 for k in range(1, 4)}
    v1 = 2.0
    variances = {k: [a ** (k - 1) * v1 + d * (n - 1) * h**2 * (1 - a ** (k - 1))] * 3 for k in range(1, 4)}
    t = pd.concat([tidy(shares, "common_ancestor_share", "kde", params={"bandwidth": h}, dim=d),
                   tidy(variances, "train_variance_mle", "kde", params={"bandwidth": h}, dim=d)])
    rows = pd.DataFrame(theory.claims(t))
    assert set(rows.claim) == {"T.kde_coalescence", "T.kde_variance"}
    assert (rows.verdict == "holds").all()  # zero spread, equal to theory: a zero-width interval on the value
    assert np.allclose(rows[rows.claim == "T.kde_coalescence"]["null"], [1 - a, 1 - a**2])


@pytest.mark.cli
def test_the_theory_experiment_runs_and_its_rows_hold(tmp_path):
    """The shipped `theory` experiment, shrunk to 2 replicates (the fewest that form an interval)
    and 3 iterations (the recursion over two generations): every T row is there, and none fails
    (a failing one is a bug in the loop, the derivation or the estimator)."""
    cfg = experiments.load(REPO / "config.yaml", REPO / "experiments/theory.yaml")  # as `make theory` passes it
    for group in cfg["experiments"]["theory"]:
        group.update(replicates=2, iterations=3)
    work = make_workdir(tmp_path, cfg)
    snakemake(work, "theory", timeout=1200)
    snakemake(work, "findings")
    table = pd.read_csv(work / "results/tables/findings.tsv", sep="\t")
    rows = table[table.claim.str.startswith("T.")]
    assert set(rows.claim) == {f"T.{k}" for k in theory.STATEMENTS}
    # iterations 2 and 3 (kde rows for two datasets); pooled rows one per run; greedy's reference at n = 2 only
    per_iteration = len(theory.STATEMENTS) - len(theory.POOLED) - 1 + 2
    assert len(rows) == 2 * per_iteration + len(theory.POOLED) + 1
    assert (rows.experiment == "theory").all() and (rows.role == "primary").all()
    assert "fails" not in set(rows.verdict), rows[["claim", "scope", "null", "ci_low", "ci_high", "verdict"]]
    # the numpy jobs load no torch, and no features job runs for vectors
    logs = work / "logs"
    assert not list(logs.rglob("features-*.log"))
    for log in logs.glob("theory-*/**/train.log"):
        assert "libraries loaded: none of torch, diffusers, transformers" in log.read_text(), log


# --- known answers that can fail: each plausible bug planted in the production function the loop calls --
SOURCE = {"dim": 16, "decay": 0.5, "count": 1024, "seed": 0}
WIDE = {"dim": 32, "decay": 0.0, "count": 1024, "seed": 0}  # d ≫ N: the step ratio's spread is smallest
SMALL = {"seed": 0, "datasets": {
    "g": {"source": "gaussian", "gaussian": WIDE, "size": 8, "model": "gaussian", "features": "identity",
          "fid_features": "identity"},
    "k": {"source": "gaussian", "gaussian": SOURCE, "size": 32, "model": "kde", "model_params": {"bandwidth": 0.3},
          "features": "identity", "fid_features": "identity"}},
    "runs": {"replace": {"paradigm": "replace", "selection": "all"},
             "accumulate": {"paradigm": "accumulate", "selection": "random"},
             "replace-fresh": {"paradigm": "replace", "selection": "all", "fresh": 0.25},
             "replace-greedy": {"paradigm": "replace", "selection": "greedy", "samples": 2}}}
LOOPS = {  # (dataset, run): (replicates, iterations), small but with the power to see each bug
    ("g", "replace"): (16, 6), ("g", "accumulate"): (6, 4), ("g", "replace-fresh"): (4, 3), ("k", "replace"): (8, 4),
    ("k", "replace-greedy"): (8, 2)}


def _covariance_over_n_minus_1(monkeypatch):
    monkeypatch.setattr(closed_form, "mle_covariance", lambda x: np.atleast_2d(np.cov(x, rowvar=False, ddof=1)))


def _bandwidth_times_root_2(monkeypatch):
    right = closed_form.bandwidth_of
    monkeypatch.setattr(closed_form, "bandwidth_of", lambda params, real: right(params, real) * np.sqrt(2))


def _accumulate_without_the_real_data(monkeypatch):
    right = paths.pool
    monkeypatch.setattr(paths, "pool", lambda *a: [s for s in right(*a) if s.name != paths.REAL] or right(*a))


def _fresh_at_half_its_lambda(monkeypatch):
    right = paths._fresh_count
    monkeypatch.setattr(paths, "_fresh_count", lambda *a: right(*a) // 2)


def _greedy_that_ignores_its_scores(monkeypatch):
    monkeypatch.setattr(select, "greedy", lambda features, n, *, seed, **_: select.shuffled_pool(features, n, seed)[0][:n])


MUTATIONS = {  # the bug: (plant it, the (dataset, run) whose T rows must catch it)
    "Gaussian covariance divided by N − 1": (_covariance_over_n_minus_1, ("g", "replace")),
    "KDE bandwidth off by √2": (_bandwidth_times_root_2, ("k", "replace")),
    "accumulate that drops the real data": (_accumulate_without_the_real_data, ("g", "accumulate")),
    "fresh data mixed at the wrong λ": (_fresh_at_half_its_lambda, ("g", "replace-fresh")),
    "a selection that ignores its scores": (_greedy_that_ignores_its_scores, ("k", "replace-greedy")),
}


def _t_rows(where, loops, monkeypatch):
    import loop

    where.mkdir()
    monkeypatch.chdir(where)
    with contextlib.redirect_stdout(io.StringIO()):  # each stage prints what it did
        for (dataset, run), (replicates, iterations) in loops.items():
            loop.run(SMALL, dataset, run, replicates, iterations)
    return loop.t_rows()


def test_each_planted_bug_fails_a_t_row_and_the_unmutated_loop_fails_none(tmp_path, monkeypatch):
    """The control (every loop, nothing planted) passes every T row; then each bug, planted in the
    function the loop calls, makes at least one T row of its loop fail. In-process (tests/loop.py):
    the stage functions of data, train, sample, select and evaluate in the workflow's order."""
    # the reference simulations at a quarter of their replicates: their Monte Carlo error stays far inside the rows'
    monkeypatch.setattr(theory, "SIMULATED_REPLICATES", 1000)
    monkeypatch.setattr(theory, "SIMULATED_GREEDY_REPLICATES", 1000)
    control = _t_rows(tmp_path / "control", LOOPS, monkeypatch)
    kinds = {"T.gaussian_variance", "T.gaussian_mean", "T.gaussian_step_ratio", "T.gaussian_accumulate",
             "T.accumulate_real_share", "T.gaussian_fresh", "T.fresh_share", "T.kde_coalescence", "T.kde_variance",
             "T.kde_selection_coalescence", "T.kde_greedy_coalescence"}
    assert set(control.claim) == kinds
    assert (control.verdict == "holds").all(), control[["claim", "scope", "null", "ci_low", "ci_high", "verdict"]]
    caught = {}
    for i, (bug, (plant, key)) in enumerate(MUTATIONS.items()):
        with monkeypatch.context() as m:
            plant(m)
            rows = _t_rows(tmp_path / f"bug{i}", {key: LOOPS[key]}, m)
        caught[bug] = sorted(set(rows[rows.verdict == "fails"].claim))
    print("\nT rows that fail, per planted bug:", caught)
    assert all(caught.values()), caught
