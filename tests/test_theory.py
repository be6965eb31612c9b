"""The theory rows: the reference simulator against the closed form it can be checked on, T rows
that fail when the measured loop departs from theory, and the `theory` experiment through the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ouroboros import data, simulate, theory

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
        # a Bonferroni level shared by the equality rows of the table (6: variance and mean at n = 2, 3, 4)
        assert np.allclose(rows.level, 1 - 0.05 / 6)


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
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for group in cfg["experiments"]["theory"]:
        group.update(replicates=2, iterations=3)
    work = make_workdir(tmp_path, cfg)
    snakemake(work, "theory", timeout=1200)
    snakemake(work, "findings")
    table = pd.read_csv(work / "results/tables/findings.tsv", sep="\t")
    rows = table[table.claim.str.startswith("T.")]
    assert set(rows.claim) == {f"T.{k}" for k in theory.STATEMENTS}
    assert len(rows) == 2 * (len(theory.STATEMENTS) + 2)  # iterations 2 and 3; kde rows for two datasets
    assert "fails" not in set(rows.verdict), rows[["claim", "scope", "null", "ci_low", "ci_high", "verdict"]]
    # the numpy jobs load no torch, and no features job runs for vectors
    logs = work / "logs"
    assert not list(logs.rglob("features-*.log"))
    for log in logs.glob("theory-*/**/train.log"):
        assert "libraries loaded: none of torch, diffusers, transformers" in log.read_text(), log
