"""ouroboros.findings on synthetic tidy tables whose answers are known by construction."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from ouroboros import cli, experiments, findings, stats
from ouroboros.errors import OuroborosError

ROLES = {  # run name: (paradigm, selection, samples per iteration)
    "replace": ("replace", "all", 1),
    "replace-2n": ("replace", "all", 2),
    "replace-greedy": ("replace", "greedy", 2),
    "accumulate": ("accumulate", "random", 1),
    "greedy": ("accumulate", "greedy", 1),
    "threshold": ("accumulate", "threshold_decay", 1),
}


def rows(dataset, run, replicate, iteration, values, *, role=None, family=None, size=64, space="pixels",
         file="metrics.json"):
    paradigm, selection, samples = role or ROLES[run]
    base = {"dataset": dataset, "family": family or dataset, "dataset_size": size, "run": run,
            "paradigm": paradigm, "selection": selection, "samples_per_iteration": samples, "tau0": math.nan,
            "decay": math.nan, "replicate": replicate, "iteration": iteration, "file": file,
            "feature_extractor": space}
    return [base | {"metric": m, "value": v} for m, v in values.items()]


def table(parts):
    return pd.DataFrame([r for part in parts for r in part])


def replace_run(rate, replicates=3, iterations=5, dataset="digits", **kw):
    """GS = 2·exp(rate·n) with a little replicate noise; entropy and memorization follow GS."""
    rng = np.random.default_rng(0)
    out = []
    for rep in range(replicates):
        for n in range(1, iterations + 1):
            gs = 2 * math.exp(rate * n) * (1 + 0.02 * rng.normal())
            out.append(rows(dataset, "replace", rep, n, {
                "generalization_score": gs, "memorization_ratio": 0.5 - 0.1 * math.log(gs),
                "copy_share": 0.4 - 0.2 * math.log(gs),
                "train_entropy": 10 * math.log(gs) + rng.normal(), "generated_entropy": 9 * math.log(gs),
                "train_covariance_trace": 3 + rng.normal()}, **kw))
    return table(out)


def claim(result, name):
    return result[result.claim == name]


def primary(result, name):
    return result[(result.claim == name) & (result.role == "primary")]


@pytest.mark.parametrize("rate, want", [(-0.5, "holds"), (0.5, "fails")])
def test_trend_verdicts_follow_the_data(rate, want):
    out = findings.findings(replace_run(rate))
    other = "fails" if want == "holds" else "holds"
    for name in ("I.gs_falls", "II.train_entropy_falls", "II.generated_entropy_falls"):
        assert claim(out, name).verdict.tolist() == [want], name
    assert claim(out, "I.memorization_rises").verdict.tolist() == [want]
    assert claim(out, "I.copies_rise").verdict.tolist() == [want]
    row = claim(out, "I.gs_falls").iloc[0]
    table = replace_run(rate)
    gs = table[table.metric == "generalization_score"]
    # the slope of GS itself (not its log) over every point of every replicate
    assert row.estimate == pytest.approx(sps.linregress(gs.iteration, gs.value).slope)
    assert row.replicates == 3 and row.points == 15 and row.role == "primary"
    assert row.level == 0.95 and "chain bootstrap" in row.method and "G = 3 chains" in row.method
    assert row.side == "<" and other != row.verdict
    assert row.statistic.startswith("slope of generalization_score on n")


def test_trend_slopes_keep_points_where_gs_is_zero():
    """Exact copies everywhere give GS = 0: those points stay in the slope (a log would drop them)."""
    table = replace_run(-0.5)
    gs = table.metric == "generalization_score"
    table.loc[gs & (table.iteration == 5), "value"] = 0.0
    row = claim(findings.findings(table), "I.gs_falls").iloc[0]
    assert row.points == 15 and row.verdict == "holds"
    kept = table[gs]
    assert row.estimate == pytest.approx(sps.linregress(kept.iteration, kept.value).slope)


def test_one_replicate_is_too_few_replicates():
    out = findings.findings(replace_run(-0.5, replicates=1))
    assert len(claim(out, "I.gs_falls")) == 1
    assert (claim(out, "I.gs_falls").verdict == "too few replicates").all()
    assert set(out[out.claim.str.startswith(("I.", "II.", "III.entropy"))].verdict) == {"too few replicates"}
    assert out.p_holm.isna().all() and (out[out.role == "primary"].holm_family_size == 0).all()


def test_missing_runs_give_no_rows():
    out = findings.findings(replace_run(-0.5))
    assert set(out.claim) == {"I.gs_falls", "I.memorization_rises", "I.copies_rise", "II.train_entropy_falls",
                              "II.generated_entropy_falls", "III.entropy_gs_r", "III.entropy_gs_r_is_0.91",
                              "III.one_line_across_sizes", "III.entropy_beats_variance"}
    # one dataset size: there is no line across sizes to test
    assert claim(out, "III.one_line_across_sizes").verdict.tolist() == ["not applicable"]
    assert findings.findings(replace_run(-0.5).iloc[:0]).empty


def sweep(family, sizes, gs_of, replicates=3, iterations=4, space="pixels"):
    """Vanilla replace on each size of a family; GS from gs_of(size, n, replicate)."""
    rng = np.random.default_rng(1)
    out = []
    for size in sizes:
        for rep in range(replicates):
            for n in range(1, iterations + 1):
                gs = gs_of(size, n, rep)
                out.append(rows(f"{family}-{size}", "replace", rep, n, {
                    "generalization_score": gs, "train_entropy": 5 * math.log(gs) + 0.3 * rng.normal(),
                    "train_covariance_trace": 2 + 0.3 * rng.normal()}, family=family, size=size, space=space))
    return table(out)


def test_per_family_r_ignores_another_family():
    digits = sweep("digits", [64, 128], lambda N, n, r: math.log(N) * math.exp(-0.4 * n), replicates=6)
    noise = np.random.default_rng(9)
    cifar = sweep("cifar", [1024, 2048], lambda N, n, r: math.exp(noise.normal()))
    cifar["value"] = np.where(cifar.metric == "train_entropy", -cifar.value, cifar.value)  # opposite sign
    out = findings.findings(pd.concat([digits, cifar]))
    row = out[(out.claim == "III.entropy_gs_r") & (out.family == "digits")].iloc[0]
    wide = digits.pivot_table(index=["dataset", "replicate", "iteration"], columns="metric", values="value")
    x, y = wide.train_entropy.to_numpy(), np.log(wide.generalization_score.to_numpy())
    assert row.estimate == pytest.approx(sps.pearsonr(x, y).statistic)
    chains = wide.index.get_level_values("replicate").to_numpy()
    want = stats.chain_bootstrap(chains, lambda w: stats.pooled_r(w, x, y), seed=findings.SEED, fisher=True)
    assert (row.ci_low, row.ci_high) == pytest.approx((want.low, want.high))
    assert row.points == 2 * 6 * 4 and row.replicates == 6 and row.verdict == "holds"
    assert "whole replicate chains resampled" in row.method and "Fisher z" in row.method
    assert set(out[out.claim == "III.entropy_gs_r"].family) == {"digits", "cifar"}
    assert claim(out, "III.entropy_beats_variance").set_index("family").verdict["digits"] == "holds"


def test_iteration_one_counts_once_per_dataset_in_the_pooled_r():
    one = sweep("digits", [64, 128], lambda N, n, r: math.log(N) * math.exp(-0.4 * n))
    twin = one.assign(run="replace-copy")  # a second vanilla replace run: same iteration 1
    twin = twin[twin.iteration > 1].assign(value=lambda d: d.value * 1.01)
    out = findings.findings(pd.concat([one, twin]))
    assert claim(out, "III.entropy_gs_r").points.tolist() == [2 * 3 + 2 * 3 * 3 * 2]


def test_larger_datasets_generalize_more_at_the_first_iteration():
    noise = np.random.default_rng(2)
    grows = sweep("digits", [64, 128, 256], lambda N, n, r: math.log(N) * (1 + 0.01 * noise.normal()))
    row = claim(findings.findings(grows), "I.gs_grows_with_size").iloc[0]
    assert row.verdict == "holds" and row.iteration == 1 and row.estimate == pytest.approx(1, abs=0.1)
    assert row.points == 3 * 3  # sizes × replicates, iteration 1 only
    shrinks = sweep("digits", [64, 128, 256], lambda N, n, r: 10 - math.log(N) * (1 + 0.01 * noise.normal()))
    assert claim(findings.findings(shrinks), "I.gs_grows_with_size").verdict.tolist() == ["fails"]
    single = sweep("digits", [64], lambda N, n, r: 1.0 + r)
    assert claim(findings.findings(single), "I.gs_grows_with_size").empty


def selection_table(baseline, treated, metric="train_entropy", run="greedy", role=None, iterations=(1, 2)):
    """Two runs of one dataset; treated and baseline values given per replicate at every n."""
    out = []
    for rep, (b, a) in enumerate(zip(baseline, treated, strict=True)):
        for n in iterations:
            out.append(rows("digits", "accumulate", rep, n, {metric: b}))
            out.append(rows("digits", run, rep, n, {metric: b if n == 1 else a}, role=role))
    return table(out)


def test_differences_are_paired_by_replicate():
    baseline, treated = [10.0, 20.0, 30.0], [10.5, 20.4, 30.6]
    # unpaired, the two groups overlap wholly: Welch's interval of the difference straddles 0
    welch = sps.ttest_ind(treated, baseline, equal_var=False).confidence_interval(0.95)
    assert welch.low < 0 < welch.high
    out = findings.findings(selection_table(baseline, treated))
    both = claim(out, "S5.entropy_higher")
    assert both.role.tolist() == ["primary", "secondary"]  # the mean over n = 2 and the row at n = 2
    assert "mean over n = 2 " in both.scope.iloc[0]
    row = both.iloc[1]
    assert row.iteration == 2 and row.estimate == pytest.approx(0.5) and row.verdict == "holds"
    assert (row.ci_low, row.ci_high) == pytest.approx(sps.t.interval(0.95, 2, loc=0.5, scale=0.1 / math.sqrt(3)))
    assert row.runs == "greedy vs accumulate" and "paired by replicate" in row.method


def test_replicates_are_matched_by_id_not_by_order():
    shuffled = selection_table([10.0, 20.0, 30.0], [10.5, 20.4, 30.6]).sample(frac=1, random_state=0)
    assert primary(findings.findings(shuffled), "S5.entropy_higher").verdict.tolist() == ["holds"]


def test_lower_is_the_claim_for_fid():
    fid = selection_table([50.0, 60.0, 70.0], [40.0, 51.0, 59.0], metric="fid")
    fid["file"] = "fid.json"
    out = findings.findings(fid)
    assert primary(out, "S5.fid_lower").verdict.tolist() == ["holds"]
    worse = findings.findings(selection_table([50.0, 60.0, 70.0], [60.0, 71.0, 79.0], metric="fid"))
    assert primary(worse, "S5.fid_lower").verdict.tolist() == ["fails"]


def test_runs_are_recognised_by_their_settings_not_their_names():
    renamed = selection_table([1.0, 2.0, 3.0], [2.0, 3.1, 3.9], run="my-filter",
                              role=("accumulate", "threshold_decay", 1))
    out = primary(findings.findings(renamed), "S5.entropy_higher")
    assert out.runs.tolist() == ["my-filter vs accumulate"] and out.verdict.tolist() == ["holds"]


def test_each_run_of_a_role_gets_its_rows_and_a_mean_over_iterations():
    parts = [selection_table([1.0, 2.0, 3.0], [2.0, 3.1, 3.9], iterations=(1, 2, 3)),
             selection_table([1.0, 2.0, 3.0], [0.0, 1.1, 1.9], run="greedy-b", role=ROLES["greedy"],
                             iterations=(1, 2, 3))]
    out = claim(findings.findings(pd.concat(parts).drop_duplicates()), "S5.entropy_higher")
    assert sorted(out.runs.unique()) == ["greedy vs accumulate", "greedy-b vs accumulate"]
    verdicts = out.groupby("runs").verdict.apply(set)
    assert verdicts["greedy vs accumulate"] == {"holds"} and verdicts["greedy-b vs accumulate"] == {"fails"}
    means = out[out.iteration.isna()]
    assert len(means) == 2 and means.scope.str.contains("mean over n = 2…3").all()


def test_real_share_above_one_over_n():
    out = []
    for rep, extra in enumerate([0.2, 0.25, 0.3]):
        for n in (1, 2, 3, 4):
            out.append(rows("digits", "greedy", rep, n, {"real_share": 1.0 if n == 1 else 1 / n + extra}))
    result = claim(findings.findings(table(out)), "F11.real_share_above_1/n")
    per_n = result[result.iteration.notna()]
    assert per_n.iteration.tolist() == [2, 3, 4] and set(per_n.verdict) == {"holds"}
    assert per_n.estimate.to_numpy() == pytest.approx([0.25] * 3)


def test_real_share_null_is_uniform_subsampling_of_a_pool_of_k_samples_per_image():
    """Accumulate with k = 2: uniform subsampling keeps 1/(1 + 2(n−1)) real images, not 1/n; a
    share exactly at that null is no evidence either way."""
    out = []
    for rep, noise in enumerate([-0.01, 0.0, 0.01]):
        for n in (1, 2, 3):
            share = 1.0 if n == 1 else 1 / (1 + 2 * (n - 1)) + noise
            out.append(rows("digits", "greedy2", rep, n, {"real_share": share}, role=("accumulate", "greedy", 2)))
    per_n = claim(findings.findings(table(out)), "F11.real_share_above_1/n")
    per_n = per_n[per_n.iteration.notna()]
    assert per_n.estimate.to_numpy() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert set(per_n.verdict) == {"inconclusive"}  # against 1/n it would read "fails"


def test_size_claim_takes_iteration_1_from_whichever_run_holds_each_replicate():
    """Replicates 1 and 2 exist only in a run whose name sorts after the one-replicate run."""
    parts = []
    for size, gs in ((64, 0.6), (128, 1.0), (256, 1.3)):
        d = f"digits-{size}"
        parts.append(rows(d, "a-replace", 0, 1, {"generalization_score": gs}, family="digits", size=size,
                          role=("replace", "all", 1)))
        for rep in (0, 1, 2):
            parts.append(rows(d, "b-replace", rep, 1, {"generalization_score": gs + 0.01 * rep}, family="digits",
                              size=size, role=("replace", "all", 1)))
    row = claim(findings.findings(table(parts)), "I.gs_grows_with_size")
    assert row.replicates.tolist() == [3] and row.verdict.tolist() == ["holds"]


def test_fig13_pairs_greedy_with_the_2n_run_of_the_same_samples():
    parts = []
    for rep, (van, two, grd) in enumerate([(90, 80, 60), (95, 84, 66), (99, 90, 70)]):
        for run, fid in (("replace", van), ("replace-2n", two), ("replace-greedy", grd)):
            for n in (1, 2):
                parts.append(rows("digits", run, rep, n, {"fid": 100.0 if n == 1 else fid}, file="fid.json",
                                  space="classifier"))
    parts.append(rows("digits", "replace-3n", 0, 2, {"fid": 1.0}, role=("replace", "all", 3), file="fid.json",
                      space="classifier"))
    out = findings.findings(table(parts))
    out = out[out.role == "primary"]
    assert claim(out, "F13.kn_fid_lower").runs.tolist() == ["replace-2n vs replace", "replace-3n vs replace"]
    assert claim(out, "F13.greedy_fid_lower_than_kn").runs.tolist() == ["replace-greedy vs replace-2n"]
    assert claim(out, "F13.greedy_fid_lower_than_kn").verdict.tolist() == ["holds"]
    assert claim(out, "F13.kn_fid_lower").verdict.tolist() == ["holds", "too few replicates"]
    assert set(claim(out, "S5.fid_lower").runs) == {"replace-greedy vs replace"}


@pytest.mark.parametrize("low, high, side, want", [
    (0.1, 0.3, ">", "holds"), (-0.3, -0.1, ">", "fails"), (-0.1, 0.3, ">", "inconclusive"),
    (-0.3, -0.1, "<", "holds"), (0.1, 0.3, "<", "fails"), (0.0, 0.3, ">", "inconclusive"),
    (math.nan, math.nan, ">", "too few replicates"), (-0.1, 0.3, "=", "holds"), (0.0, 0.3, "=", "holds"),
    (0.1, 0.3, "=", "fails"), (-0.3, -0.1, "=", "fails"), (math.nan, math.nan, "=", "too few replicates")])
def test_verdict_is_read_off_the_interval(low, high, side, want):
    assert findings.verdict(low, high, side) == want


def test_an_equals_claim_holds_when_the_interval_contains_the_value():
    assert findings.verdict(0.8, 0.95, "=", 0.91) == "holds"
    assert findings.verdict(0.92, 0.99, "=", 0.91) == "fails"
    with pytest.raises(ValueError, match="side"):
        findings.verdict(0.1, 0.2, "!=")


def test_report_and_command_line(tmp_path, capsys):
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    replace_run(-0.5).to_csv(tables / "metrics.tsv", sep="\t", index=False)
    assert cli.module_main("findings", [str(tmp_path / "results")]) == 0
    written = pd.read_csv(tables / "findings.tsv", sep="\t")
    assert list(written.columns) == findings.COLUMNS and "I.gs_falls" in set(written.claim)
    summary = pd.read_csv(tables / "summary.tsv", sep="\t")
    assert {"mean", "sd", "n", "ci_low", "ci_high", "level", "method"} <= set(summary.columns)
    text = capsys.readouterr().out
    assert "| I.gs_falls |" in text and "holds" in text and "estimate [low, high]" in text
    md = (tables / "findings.md").read_text()
    assert md.index("## Primary findings") < md.index("| I.gs_falls |") and "Holm" in md.splitlines()[0]
    rst = (tables / "findings.rst").read_text()
    assert rst.startswith("Primary findings") and "I.gs\\_falls" in rst and "**holds**" in rst
    assert findings.report(findings.findings(replace_run(-0.5).iloc[:0])).startswith("No claim")


def test_command_line_merges_config_files_as_snakemake_does(tmp_path, capsys):
    """`ouroboros findings results config.yaml experiments/science.yaml` reads what the run read; the
    experiment file alone (no runs: accumulate-greedy would match no greedy/ directory) is refused."""
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    replace_run(-0.5).to_csv(tables / "metrics.tsv", sep="\t", index=False)
    results, config, science = str(tmp_path / "results"), str(REPO / "config.yaml"), str(REPO / "experiments" / "science.yaml")
    assert cli.module_main("findings", [results, config]) == 0
    alone = pd.read_csv(tables / "findings.tsv", sep="\t")
    assert cli.module_main("findings", [results, config, science]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tables / "findings.tsv", sep="\t"), alone)
    assert "demo" in set(alone.experiment)  # config.yaml's targets
    capsys.readouterr()
    assert cli.module_main("findings", [results, science]) == 1
    assert f"{science}: defines no runs; pass config.yaml first" in capsys.readouterr().err


def test_a_table_without_replicate_or_family_columns_is_one_replicate():
    old = replace_run(-0.5, replicates=1).drop(columns=["replicate", "family"])
    out = findings.findings(old)
    assert set(claim(out, "I.gs_falls").verdict) == {"too few replicates"}
    assert claim(out, "I.gs_falls").family.tolist() == ["digits"]


def test_command_line_scans_results_when_the_table_is_absent(tmp_path, capsys):
    root = tmp_path / "results"
    for n in (1, 2, 3):
        folder = root / "digits" / "replace" / f"iter{n:02d}"
        folder.mkdir(parents=True)
        meta = {"dataset": "digits", "run": "replace", "paradigm": "replace", "selection": "all",
                "samples_per_iteration": 1, "iteration": n, "tau0": None, "decay": None, "dataset_size": 64}
        values = {"generalization_score": 2.0 / n, "train_entropy": -float(n), "memorization_ratio": n / 10}
        (folder / "metrics.json").write_text(json.dumps(meta | {"feature_extractor": "pixels", "values": values}))
    assert cli.module_main("findings", [str(root)]) == 0
    written = pd.read_csv(root / "tables" / "findings.tsv", sep="\t")
    # the scanned table of today has one replicate: every trend is there, none decided
    assert "I.gs_falls" in set(written.claim)
    assert set(written.verdict) == {"too few replicates", "not applicable"}  # not applicable: one size, no line
    assert "I.gs_falls" in capsys.readouterr().out


def diversity_run(rates, iterations=5, run="replace", role=None):
    """Vanilla replace whose Vendi scores are c·exp(rate·n) and whose authenticity is 0.5 + 0.05·rate·n,
    one rate per replicate: each replicate's slope of log Vendi is its rate exactly."""
    out = []
    for rep, rate in enumerate(rates):
        for n in range(1, iterations + 1):
            out.append(rows("digits", run, rep, n, {
                "train_vendi": 50 * math.exp(rate * n), "generated_vendi": 40 * math.exp(rate * n),
                "authenticity": 0.5 + 0.05 * rate * n}, role=role))
    return table(out)


DIVERSITY = ["II.train_vendi_falls", "II.generated_vendi_falls", "I.authenticity_falls"]


@pytest.mark.parametrize("rates, want", [([-0.3, -0.35, -0.4], "holds"), ([0.3, 0.35, 0.4], "fails"),
                                         ([-0.1, 0.0, 0.1], "inconclusive")])
def test_vendi_and_authenticity_trends_follow_the_data(rates, want):
    out = findings.findings(diversity_run(rates))
    for name in DIVERSITY:
        assert claim(out, name).verdict.tolist() == [want], name
    mean, sem = np.mean(rates), sps.sem(rates)
    vendi = claim(out, "II.train_vendi_falls").iloc[0]
    # every replicate at the same n: the pooled slope is the mean of the per-replicate slopes, and
    # the chain bootstrap's interval is their Student t interval up to the resampling noise
    assert vendi.estimate == pytest.approx(mean, abs=1e-12)
    assert vendi.statistic == "slope of log train_vendi on n (OLS over every replicate's points)"
    t_low, t_high = sps.t.interval(0.95, 2, loc=mean, scale=sem)
    assert vendi.ci_high - vendi.ci_low == pytest.approx(t_high - t_low, rel=0.05)
    assert vendi.replicates == 3 and vendi.points == 15 and vendi.side == "<"
    authentic = claim(out, "I.authenticity_falls").iloc[0]
    assert authentic.estimate == pytest.approx(0.05 * mean, abs=1e-12)
    assert authentic.statistic == "slope of authenticity on n (OLS over every replicate's points)"


def test_a_table_from_before_vendi_and_authenticity_gives_no_rows_for_them():
    out = findings.findings(pd.concat([replace_run(-0.5), selection_table([1.0, 2.0, 3.0], [2.0, 3.1, 3.9])]))
    assert not set(out.claim) & set(DIVERSITY + ["S5.vendi_higher"])
    assert claim(out, "I.gs_falls").verdict.tolist() == ["holds"]  # the older claims are untouched


def test_each_vanilla_replace_run_gets_its_own_vendi_rows_whatever_its_name():
    parts = [diversity_run([-0.3, -0.35, -0.4]),
             diversity_run([0.3, 0.35, 0.4], run="replace-finetune", role=("replace", "all", 1)),
             diversity_run([-0.3, -0.35, -0.4], run="accumulate-equal", role=("accumulate", "random", 1))]
    out = claim(findings.findings(pd.concat(parts)), "II.train_vendi_falls")
    assert dict(zip(out.runs, out.verdict, strict=True)) == {"replace": "holds", "replace-finetune": "fails"}


@pytest.mark.parametrize("treated, want", [([10.5, 20.4, 30.6], "holds"), ([9.5, 19.6, 29.4], "fails")])
def test_selection_vendi_of_the_training_set_against_vanilla(treated, want):
    out = claim(findings.findings(selection_table([10.0, 20.0, 30.0], treated, metric="train_vendi")),
                "S5.vendi_higher")
    assert out.verdict.tolist() == [want, want] and out.iteration.tolist()[1:] == [2]
    out = out[out.role == "primary"]
    assert out.estimate.iloc[0] == pytest.approx(np.mean(treated) - 20.0)
    assert out.runs.tolist() == ["greedy vs accumulate"] and "paired by replicate" in out.method.iloc[0]


def test_a_run_with_options_never_stands_in_for_the_papers_runs_and_is_compared_with_its_base():
    # replace-fresh is (replace, all, 1) like vanilla replace, but with fresh real data: it gets no
    # Finding I/II rows and is not paired as the vanilla run; it is compared with replace instead
    base = replace_run(-0.5)
    fresh = replace_run(-0.1).assign(run="replace-fresh", fresh=0.5)
    out = findings.findings(pd.concat([base.assign(fresh=0.0), fresh]))
    assert set(claim(out, "I.gs_falls").runs) == {"replace"}
    x = claim(out, "X.gs_vs_paper")
    assert set(x.runs) == {"replace-fresh vs replace"} and "fresh 0.5" in x.statement.iloc[0]
    mean = x[x.scope.str.contains("mean")].iloc[0]
    assert mean.verdict == "holds" and mean.estimate > 0  # GS falls slower with fresh data
    # a table from before run options (no such columns): every run is the paper's loop
    assert claim(findings.findings(base), "X.gs_vs_paper").empty


def test_a_selection_method_of_ones_own_is_compared_with_the_vanilla_run_of_its_paradigm():
    out = findings.findings(selection_table([1.0, 2.0, 3.0], [2.0, 3.1, 3.9], run="knn", role=("accumulate", "knn_entropy", 1)))
    rows_ = claim(out, "S5.entropy_higher")
    assert set(rows_.runs) == {"knn vs accumulate"} and (rows_.verdict == "holds").all()


def test_fd_dinov2_and_the_torchvision_fid_get_the_fid_claim_where_they_exist():
    out = findings.findings(selection_table([10.0, 20.0, 30.0], [9.0, 18.5, 28.7], metric="fd_dinov2"))
    row = claim(out, "S5.fd_dinov2_lower").iloc[0]
    assert row.verdict == "holds" and row.estimate == pytest.approx(-3.8 / 3)
    assert claim(out, "S5.fid_torchvision_lower").empty and claim(out, "S5.fid_lower").empty


def test_pixel_measures_are_labelled_pixels_whatever_the_files_space(tmp_path):
    """metrics.json of a DINOv2 dataset: GS is in DINOv2 space, the copy share and the memorization
    ratio are measured in pixels, and the tidy table (and so every findings row) says so."""
    from ouroboros.io import save_json
    from ouroboros.metrics import PIXEL_METRICS
    from ouroboros.tables import rows

    path = tmp_path / "metrics.json"
    save_json(path, {"feature_extractor": "dinov2", "dataset": "cifar", "run": "replace", "iteration": 2,
                     "values": {"generalization_score": 0.5, "copy_share": 0.1, "memorization_ratio": 0.2,
                                "copy_scale": 3.0}})
    spaces = {r["metric"]: r["feature_extractor"] for r in rows(path)}
    assert spaces == {"generalization_score": "dinov2"} | {m: "pixels" for m in PIXEL_METRICS}


def hand_rows(specs):
    """Findings rows with given p-values and sides; the intervals agree with the p-values' sign."""
    out = []
    for i, (p, side, primary, null) in enumerate(specs):
        low, high = (0.1, 0.3) if p < 0.05 else (-0.1, 0.3)
        out.append(findings._row(f"C.{i}", "s", "", "", side, 0.2, low, high, 0.95, "", 3, 3, p_value=p,
                                 primary=primary, null=null, effect=0.2, spread=0.4))
    return pd.DataFrame(out, columns=findings.COLUMNS + findings._HIDDEN)


def test_holm_decides_the_primary_rows_and_leaves_the_secondary_ones():
    # primaries with p 0.01, 0.04, 0.03 (m = 3): Holm's adjusted p are 0.03, 0.06, 0.06
    table = hand_rows([(0.01, ">", True, 0.0), (0.04, ">", True, 0.0), (0.03, ">", True, 0.0),
                       (0.04, ">", False, 0.0), (math.nan, ">", True, 0.0)])
    table.loc[4, ["ci_low", "ci_high"]] = math.nan
    table.loc[4, "verdict"] = "too few replicates"
    out = findings.decide(table)
    assert out.p_holm.iloc[:3].to_numpy() == pytest.approx([0.03, 0.06, 0.06])
    assert out.verdict.tolist() == ["holds", "inconclusive", "inconclusive", "holds", "too few replicates"]
    assert out.holm_family_size.tolist()[:3] == [3, 3, 3] and math.isnan(out.holm_family_size[3])
    assert math.isnan(out.p_holm[3])  # a secondary row is no member of the family
    # inconclusive primaries say how many replicates would decide: effect 0.2, sd 0.4 (d = 0.5) at 5 % / 3
    want = stats.replicates_for_power(0.2, 0.4, alpha=0.05 / 3)
    assert out.replicates_needed.iloc[1:3].tolist() == [want, want] and want > 34  # 34 at 5 % alone
    assert out.replicates_needed.iloc[[0, 3, 4]].isna().all()


def test_an_equals_row_fails_only_where_holm_rejects_the_value():
    table = hand_rows([(0.001, "=", True, 0.0), (0.03, "=", True, 0.0), (0.5, "=", True, 0.0)])
    table.loc[2, "verdict"] = "holds"  # its interval contains the value
    out = findings.decide(table)
    assert out.verdict.tolist() == ["fails", "inconclusive", "holds"]


def test_a_claim_function_can_add_a_theory_row(monkeypatch):
    """A row kind for closed forms: a measured statistic against a theory value, side '='."""
    def theory_claims(t, runs):
        for name, values in (("T.matches", [0.98, 1.01, 1.02, 0.99]), ("T.misses", [1.2, 1.21, 1.19, 1.2])):
            iv = stats.t_interval(values)
            yield findings._t_row(name, "gaussian", "The variance after one refit is (N−1)/N.", "variance ratio",
                                  "=", iv, len(values), "one sample", null=1.0)

    monkeypatch.setattr(findings, "CLAIMS", [*findings.CLAIMS, theory_claims])
    out = findings.findings(replace_run(-0.5)).set_index("claim")
    assert out.loc["T.matches", "verdict"] == "holds" and out.loc["T.misses", "verdict"] == "fails"
    assert out.loc["T.misses", "side"] == "=" and out.loc["T.misses", "null"] == 1.0
    assert out.loc["T.misses", "p_value"] == pytest.approx(sps.ttest_1samp([1.2, 1.21, 1.19, 1.2], 1.0).pvalue)
    assert out.loc["T.matches", "role"] == "primary" and out.loc["T.matches", "holm_family_size"] > 2


@pytest.mark.parametrize("steeper, want", [(1.0, "holds"), (3.0, "fails")])
def test_one_line_across_sizes(steeper, want):
    """log GS = (entropy − noise)/5 at N = 64; at N = 256 the slope is ×steeper: one line or two."""
    rng = np.random.default_rng(4)
    out = []
    for size in (64, 256):
        for rep in range(6):
            for n in range(1, 6):
                entropy = 10 - n + rng.normal(scale=0.3)
                slope = 0.2 * (steeper if size == 256 else 1.0)
                gs = math.exp(slope * entropy + 0.05 * rng.normal())
                out.append(rows(f"digits-{size}", "replace", rep, n, {
                    "generalization_score": gs, "train_entropy": entropy, "train_covariance_trace": 2.0 + rng.random()},
                    family="digits", size=size))
    result = findings.findings(table(out))
    row = claim(result, "III.one_line_across_sizes").iloc[0]
    assert row.side == "=" and row.null == 0 and row.verdict == want and row.role == "primary"
    assert row.estimate == pytest.approx(0.2 * (steeper - 1), abs=0.05)
    per_size = claim(result, "III.slope_at_size")
    assert (per_size.role == "secondary").all() and len(per_size) == 2
    assert per_size.estimate.to_numpy() == pytest.approx([0.2, 0.2 * steeper], rel=0.2)


def test_the_papers_r_is_a_row_with_the_same_interval():
    out = findings.findings(sweep("digits", [64, 128], lambda N, n, r: math.log(N) * math.exp(-0.4 * n)))
    r, paper = claim(out, "III.entropy_gs_r").iloc[0], claim(out, "III.entropy_gs_r_is_0.91").iloc[0]
    assert (paper.side, paper.null) == ("=", 0.91)
    assert (paper.estimate, paper.ci_low, paper.ci_high) == (r.estimate, r.ci_low, r.ci_high)
    assert paper.verdict == ("holds" if r.ci_low <= 0.91 <= r.ci_high else paper.verdict)


def test_primary_rows_come_first_and_every_claim_scope_has_one():
    out = findings.findings(pd.concat([replace_run(-0.5), selection_table([1.0, 2.0, 3.0], [2.0, 3.1, 3.9],
                                                                          iterations=(1, 2, 3))]))
    roles = out.role.tolist()
    assert roles == sorted(roles, key=lambda r: r != "primary") and set(roles) == {"primary", "secondary"}
    s5 = claim(out, "S5.entropy_higher")
    assert s5.role.tolist() == ["primary", "secondary", "secondary"] and s5.iteration.isna().tolist()[0]
    assert set(out.verdict) <= set(findings.VERDICTS)


# ---------------------------------------------------------------------------------------------
# Experiments: each decides its own declared family, whatever else results/ holds

REPO = Path(__file__).parent.parent
SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())  # the user's file alone: no experiments/*.yaml passed
SCIENCE_FILE = REPO / "experiments/science.yaml"
SCIENCE_ROLES = ROLES | {"replace-fresh": ("replace", "all", 1), "accumulate-equal": ("accumulate", "random", 1),
                         "mine": ("accumulate", "knn_entropy", 1)}
OPTIONS = {"replace-fresh": {"fresh": 0.5}, "accumulate-equal": {"share": "equal"}}


def science_like(runs: dict[str, tuple[list[str], int, int]], seed: int = 0) -> pd.DataFrame:
    """A tidy table of the metrics the science claims read: runs[name] = (datasets, replicates, iterations).
    Copies rise and GS falls under replace, the selections keep more entropy, larger N generalizes more."""
    rng = np.random.default_rng(seed)
    sizes = {"digits-sci-32": 32, "digits-sci": 48, "digits-sci-64": 64, "digits-sci-96": 96}
    out = []
    for run, (datasets, replicates, iterations) in runs.items():
        better = 0.0 if run in ("replace", "replace-2n", "accumulate") else 1.0
        for dataset in datasets:
            size = sizes[dataset]
            for rep in range(replicates):
                for n in range(1, iterations + 1):
                    gs = (1 + 0.2 * math.log(size)) * math.exp(-0.15 * n + 0.05 * better * n) * (1 + 0.02 * rng.normal())
                    values = {"generalization_score": gs, "copy_share": min(1.0, 0.1 * n) + 0.01 * rng.normal(),
                              "train_entropy": 30 * math.log(gs) + 5 * better * n + rng.normal(),
                              "train_covariance_trace": 3 + rng.normal(), "fid": 2 - 0.2 * better * n + 0.05 * rng.normal(),
                              "real_share": 1 / n + 0.2 * better + 0.02 * rng.normal()}
                    for r in rows(dataset, run, rep, n, values, role=SCIENCE_ROLES[run], family="digits-sci", size=size):
                        out.append(r | OPTIONS.get(run, {}))
    return pd.DataFrame(out)


SCIENCE = {"replace": (["digits-sci-32", "digits-sci", "digits-sci-64", "digits-sci-96"], 4, 5),
           **{run: (["digits-sci"], 8, 4) for run in ("replace-2n", "replace-greedy", "accumulate", "greedy")}}


def test_an_experiments_findings_do_not_change_with_what_else_results_holds():
    """science alone; then with beyond-digits beside it (which shares its replace, accumulate and greedy
    runs, at fewer iterations, and adds runs of its own on the same dataset) and a user's own target on its
    datasets (a run of one's own, and more replicates of greedy): science's rows are identical."""
    alone = science_like(SCIENCE)
    beside = pd.concat([alone, science_like({"replace-fresh": (["digits-sci"], 3, 4),
                                             "accumulate-equal": (["digits-sci"], 3, 4),
                                             "mine": (["digits-sci"], 3, 4)}, seed=1),
                        science_like({"greedy": (["digits-sci"], 10, 4)}, seed=2).query("replicate >= 8")],
                       ignore_index=True)
    first = findings.findings(alone, config=SHIPPED)
    second = findings.findings(beside, config=SHIPPED)
    science = first[first.experiment == "science"].reset_index(drop=True)
    pd.testing.assert_frame_equal(science, second[second.experiment == "science"].reset_index(drop=True))
    primary = science[science.role == "primary"]
    declared = yaml.safe_load(SCIENCE_FILE.read_text())["primary"]["science"]
    assert len(primary) == len(declared) and set(primary.claim) == {p["claim"] for p in declared}
    assert (primary.holm_family_size == 2 * len(declared)).all()  # each row's test and its equivalence test
    assert "not run" not in set(primary.verdict)
    assert set(primary[primary.claim.str.startswith(("S5", "F1", "I.", "II."))].verdict) == {"holds"}, primary
    # the rest: beyond-digits and beyond-flow decide their own families; the user's run gets secondary rows only
    assert set(second.experiment) == {"science", "beyond-digits", "beyond-flow", "none"}  # beyond-flow shares digits-sci
    mine = second[second.runs.astype(str).str.contains("mine")]
    assert not mine.empty and (mine.role == "secondary").all() and set(mine.experiment) == {"none"}
    fresh = second[(second.experiment == "beyond-digits") & (second.role == "primary")]
    assert fresh.claim.tolist() == ["X.fid_vs_paper"] and fresh.runs.tolist() == ["replace-fresh vs replace"]


def test_sciences_findings_are_the_same_whether_or_not_its_file_is_passed():
    """experiments/science.yaml passed (`make science`) or not (`snakemake findings` after it, or with
    config.yaml alone): the same experiments, primary families and verdicts, row for row, and the same
    findings parameters (what the findings rule reruns on)."""
    data = pd.concat([science_like(SCIENCE), science_like({"replace-fresh": (["digits-sci"], 3, 4)}, seed=1)],
                     ignore_index=True)
    passed = experiments.load(REPO / "config.yaml", SCIENCE_FILE)
    assert "science" not in SHIPPED.get("experiments", {}) and "science" in passed["experiments"]
    without, with_file = findings.findings(data, config=SHIPPED), findings.findings(data, config=passed)
    pd.testing.assert_frame_equal(without, with_file)
    assert set(without[without.role == "primary"].experiment) >= {"science", "beyond-digits"}
    assert experiments.for_findings(SHIPPED) == experiments.for_findings(passed)
    assert list(experiments.for_findings(SHIPPED)["experiments"]) == list(experiments.for_findings(passed)["experiments"])
    # the primary claims name the renamed run by its results directory, as the rows do
    claims = experiments.for_findings(SHIPPED)["primary"]["science"]
    assert {"runs": "greedy vs accumulate"}.items() <= next(c for c in claims if c["claim"] == "S5.fid_lower").items()


def test_a_declared_claim_without_data_says_not_run_and_a_claim_on_many_scopes_must_pick_one():
    cfg = {"experiments": {"mine": [{"datasets": ["digits"], "runs": ["replace"], "iterations": 5, "replicates": 3}]},
           "primary": {"mine": [{"claim": "S5.fid_lower", "dataset": "digits", "runs": "greedy vs accumulate"},
                                {"claim": "I.gs_falls"}]}}
    two_spaces = pd.concat([replace_run(-0.5), replace_run(-0.5, space="dinov2")])
    with pytest.raises(OuroborosError, match=r"primary.mine\[1\] \(I.gs_falls\) matches 2 rows"):
        findings.findings(two_spaces, config=cfg)
    cfg["primary"]["mine"][1]["space"] = "pixels"
    out = findings.findings(two_spaces, config=cfg)
    primary = out[out.role == "primary"]
    assert primary.verdict.tolist() == ["holds", "not run"] and primary.claim.tolist() == ["I.gs_falls", "S5.fid_lower"]
    with pytest.raises(OuroborosError, match="primary.nope names no experiment"):
        findings.findings(replace_run(-0.5), config={"primary": {"nope": []}})


def test_replicate_0_belongs_to_a_group_of_replicates_that_draw_their_own_d1():
    group = {"datasets": ["digits"], "runs": ["replace"], "iterations": 5, "replicates": 2, "real_subset": "per_replicate"}
    t = replace_run(-0.5, replicates=3).assign(real_subset=lambda f: np.where(f.replicate == 0, "shared", "per_replicate"))
    chosen = findings.Experiment("mine", (group,)).select(t)
    assert sorted(chosen.replicate.unique()) == [0, 1]  # replicate 0 (the dataset's D_1) and draw1; not 2


def test_no_pixel_yardstick_claim_on_vectors():
    vectors = replace_run(-0.5).assign(generator="kde", data_dim=16)
    claims = set(findings.findings(vectors).claim)
    assert "I.gs_falls" in claims and not claims & {"I.copies_rise", "I.memorization_rises"}
    images = replace_run(-0.5).assign(generator="kde", data_dim=math.nan)  # a kde of images: copies are copies
    assert {"I.copies_rise", "I.memorization_rises"} <= set(findings.findings(images).claim)


def _decided(values, side, null=0.0, margin=math.nan):
    row = findings._t_row("c", "s", "", "", side, stats.t_interval(values), len(values), "", null=null)
    table = pd.DataFrame([row | {"margin": margin}], columns=findings.COLUMNS + findings._HIDDEN)
    return findings.decide(table).iloc[0]


@pytest.mark.parametrize("values, side, null, margin, want", [
    ([0.50, 0.52, 0.49, 0.51, 0.50], ">", 0.0, 0.1, "holds"),
    ([-0.50, -0.52, -0.49, -0.51, -0.50], ">", 0.0, 0.1, "fails"),
    ([0.001, -0.002, 0.0, 0.002, -0.001], ">", 0.0, 0.1, "no effect"),  # within ±0.1 of 0: decided against
    ([0.001, -0.002, 0.0, 0.002, -0.001], ">", 0.0, math.nan, "inconclusive"),  # no margin declared: no such verdict
    ([0.02, -0.3, 0.4, -0.1, 0.15], "<", 0.0, 0.1, "inconclusive"),  # neither: too noisy for both tests
    ([0.905, 0.912, 0.908, 0.915, 0.91], "=", 0.91, 0.02, "holds"),  # within ±0.02 of the paper's value
    ([0.971, 0.969, 0.975, 0.97, 0.972], "=", 0.91, 0.02, "fails"),
])
def test_a_primary_row_ends_holds_fails_no_effect_or_inconclusive(values, side, null, margin, want):
    row = _decided(values, side, null, margin)
    assert row.verdict == want
    assert row.holm_family_size == (2 if np.isfinite(margin) else 1)  # a margin brings its equivalence test


def test_an_effect_near_zero_needs_replicates_to_be_shown_negligible_not_to_take_a_side():
    """Fig. 13's row at N = 48: an estimate near 0 with a margin would never decide its direction, but
    a finite study shows it lies within the margin; without a margin only the direction is sized."""
    values = [0.02, -0.2, 0.18, -0.1, 0.12, -0.05, 0.1, -0.09]  # mean −0.0025, sd 0.13
    within = _decided(values, "<", 0.0, 0.05)
    assert within.verdict == "inconclusive"
    iv = stats.t_interval(values)
    want = stats.replicates_for_power(0.05 - abs(iv.mean), iv.sd, alpha=2 * 0.05 / 2)  # family of 2: the row's two tests
    assert within.replicates_needed == want and 8 < want < 100
    assert _decided(values, "<").replicates_needed > 1000  # no margin: only a side would decide, and none will
    # an effect outside the margin is sized for its direction only, as before
    wide = _decided([v + 0.08 for v in values], "<", 0.0, 0.05)
    assert wide.replicates_needed == stats.replicates_for_power(iv.mean + 0.08, iv.sd, alpha=0.05 / 2)


def test_no_effect_is_two_one_sided_tests_against_the_margin():
    """TOST's p is the larger one-sided p at null ± margin: with a t interval, the 90 % interval lies inside
    ±margin exactly when it is below 5 %."""
    values = [0.03, 0.05, 0.04, 0.06, 0.02]
    iv = stats.t_interval(values, 0.90)
    for margin in (iv.high - 1e-9, iv.high + 1e-9):
        p = findings.p_no_effect(stats.t_interval(values).p_value, np.mean(values), 0.0, margin)
        assert (p < 0.05) == (margin > iv.high)


# --- another UNet family against the DDPM on the same D_1 -----------------------------------------

def family_pair(copy_gap, replicates=4, iterations=4):
    """digits-sci (the DDPM) and digits-flow (flow matching, base: digits-sci: the same root, the same N)
    under replace; the flow's copy share exceeds the DDPM's by ``copy_gap`` plus replicate noise that
    both datasets of one replicate share (the same D_1), and its GS is lower by the same gap."""
    rng = np.random.default_rng(3)
    out = []
    for rep in range(replicates):
        shared = 0.05 * rng.normal()  # what one D_1 does to both families
        for n in range(1, iterations + 1):
            ddpm = 0.1 * n + shared + 0.005 * rng.normal()
            flow = ddpm + copy_gap + 0.005 * rng.normal()
            for dataset, copies, generator in (("digits-sci", ddpm, "ddpm"), ("digits-flow", flow, "flow")):
                part = rows(dataset, "replace", rep, n, {"copy_share": copies, "generalization_score": 1.5 - copies,
                                                         "train_entropy": -20 * copies}, family="digits-sci", size=48)
                out.append([r | {"generator": generator} for r in part])
    return table(out)


@pytest.mark.parametrize(("gap", "want"), [(0.2, "holds"), (-0.2, "fails"), (0.0, "inconclusive")])
def test_another_family_against_the_ddpm_pairs_replicates_on_their_shared_d1(gap, want):
    t = family_pair(gap)
    out = findings.findings(t)
    row = primary(out, "G.copies_more").iloc[0]
    assert row.scope.startswith("digits-flow vs digits-sci · replace") and row.dataset == "digits-flow"
    assert row.verdict == want
    # the estimate is the mean over replicates of each replicate's mean difference over n = 1…4: iteration 1
    # counts, since the two datasets train their own iteration 1 on the one D_1
    wide = t[t.metric == "copy_share"].pivot_table(index=["replicate", "iteration"], columns="dataset", values="value")
    assert row.estimate == pytest.approx((wide["digits-flow"] - wide["digits-sci"]).groupby("replicate").mean().mean())
    assert primary(out, "G.gs_lower").iloc[0].verdict == {"holds": "holds", "fails": "fails"}.get(want, want)


def test_a_flow_dataset_built_on_a_ddpm_sweep_is_a_family_of_its_own_for_pooled_claims():
    """III's r and Finding I's slope over N pool one generator: the flow dataset shares the DDPM's root
    (and D_1) but not its family."""
    t = family_pair(0.2)
    out = findings.findings(t)
    assert set(out[out.claim == "I.copies_rise"].family) == {"digits-sci", "digits-sci · flow"}
    assert findings.run_list(findings.complete(t))[0].root == "digits-sci"
