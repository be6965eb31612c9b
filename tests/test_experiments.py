"""The paper's experiments as shipped in config.yaml, planned through the real CLI, and the
class-conditional (CFG) loop run end to end on the digits."""

import re

import numpy as np
import pytest
import yaml

from ouroboros import experiments

from cli import REPO, make_workdir, snakemake, tiny_config

SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
FILES = experiments.files()  # the project's own experiments, passed with --configfile
EVERYTHING = experiments.load(REPO / "config.yaml", *FILES)
PASS_ALL = ("--configfile", *map(str, FILES))


def jobs(proc) -> dict[str, int]:
    """Snakemake's job-count table: rule → count."""
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, flags=re.M)}


def plan(groups):
    """What a set of target groups needs: one real subset per dataset, one shared iteration 1 per
    (dataset, replicate), one training per (dataset, run, replicate, n ≥ 2), one fid.json per cell."""
    cells = {(d, r, rep, n) for g in groups for d in g["datasets"] for r in g["runs"]
             for rep in range(g.get("replicates", 1)) for n in range(1, g["iterations"] + 1)}
    firsts = {(d, rep) for d, _, rep, _ in cells}
    return {"data": len({d for d, _ in firsts}), "train": len(firsts) + sum(n > 1 for *_, n in cells), "fid": len(cells)}


@pytest.mark.cli
def test_every_figure_is_a_target_and_the_figures_plan_their_runs_once(tmp_path):
    """One dry run of all the paper's figures and the project's experiments (every experiments/*.yaml
    passed): each name is a target, and runs shared between them (and iteration 1 shared between runs)
    are planned once."""
    names = sorted(EVERYTHING["experiments"])
    assert set(SHIPPED["experiments"]) < set(names)
    counts = jobs(snakemake(make_workdir(tmp_path, SHIPPED), "-n", *PASS_ALL, "--", *names))
    want = plan([g for name in names for g in EVERYTHING["experiments"][name]])
    assert {k: counts[k] for k in want} == want
    assert want["train"] > 200  # the whole paper, not a stub


@pytest.mark.cli
@pytest.mark.parametrize("name", ["fig03", "science"])
def test_one_figure_plans_only_its_own_runs(name, tmp_path):
    extra = () if name in SHIPPED["experiments"] else ("--configfile", str(REPO / "experiments/science.yaml"))
    counts = jobs(snakemake(make_workdir(tmp_path, SHIPPED), "-n", *extra, "--", name))
    want = plan(EVERYTHING["experiments"][name])
    assert {k: counts[k] for k in want} == want


@pytest.mark.cli
def test_a_project_experiment_without_its_file_says_which_file_to_pass(tmp_path):
    proc = snakemake(make_workdir(tmp_path, SHIPPED), "-n", "theory", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "theory is an experiment of" in out and "--configfile" in out and "theory.yaml -- theory" in out, out[-2000:]


@pytest.mark.cli
def test_fid_against_the_full_source_plans_the_reference_set(tmp_path):
    cfg = tiny_config(runs=["replace"], iterations=1)
    cfg["datasets"]["digits"]["fid_reference"] = "full"
    proc = snakemake(make_workdir(tmp_path, cfg), "-n", "results/digits/replace/iter01/fid.json")
    counts = jobs(proc)
    assert counts["reference"] == 1 and counts["fid"] == 1
    assert "results/digits/reference/features-classifier.npy" in proc.stdout


def test_reference_stage_holds_every_image_of_the_source(tmp_path):
    from ouroboros import data

    out = tmp_path / "reference/images.npy"
    data.reference_stage("digits", None, dataset="digits", images_out=str(out))
    images = np.load(out)
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8


@pytest.mark.cli
def test_a_renamed_run_plans_under_its_old_directory_and_its_new_name_is_no_path(tmp_path):
    """accumulate-greedy's results are results/{dataset}/greedy/ (the path they had as `greedy`);
    results/digits/accumulate-greedy/… would be a second copy of the same run, so it is refused."""
    work = make_workdir(tmp_path, tiny_config(["accumulate-greedy"], 2))
    plan = snakemake(work, "-n")
    assert "results/digits/greedy/iter02/fid.json" in plan.stdout and "accumulate-greedy/" not in plan.stdout
    wrong = snakemake(work, "-n", "results/digits/accumulate-greedy/iter02/fid.json", check=False)
    assert wrong.returncode != 0
    assert "runs.accumulate-greedy writes results/{dataset}/greedy/" in wrong.stdout + wrong.stderr
