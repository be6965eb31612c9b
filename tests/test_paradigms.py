"""The run options beyond the paper's loop through the snakemake CLI: equal shares, fresh real
data and a plug-in selection method, each from config.yaml alone, on the kde generator (fine-tuning
needs a DDPM: tests/test_faults.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ouroboros import data, manifest
from ouroboros.io import load_images

from cli import REPO, N, make_workdir, numpy_config, snakemake

pytestmark = pytest.mark.cli

RUNS = ["accumulate-equal", "replace-fresh", "knn-entropy"]  # as shipped (knn-entropy: accumulate-knn-entropy's old name)
# iteration 2 runs every new path (the rule fresh, equal quotas, fine-tuning, the plug-in); later
# iterations only repeat it: three-source quotas and consecutive fresh rows are unit-tested
# (tests/test_selectors.py), and each CLI iteration costs the suite a minute of CPU
ITERATIONS = 2


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    cfg = numpy_config(runs=RUNS, iterations=ITERATIONS)
    workdir = make_workdir(tmp_path_factory.mktemp("paradigms"), cfg)
    snakemake(workdir)
    return workdir


def d_n(workdir: Path, run: str, n: int) -> manifest.Manifest:
    return manifest.read(workdir / f"results/digits/{run}/iter{n:02d}/train.tsv")


def test_every_run_produces_every_file(done):
    for run in RUNS:
        for n in range(1, ITERATIONS + 1):
            folder = done / f"results/digits/{run}/iter{n:02d}"
            metrics = json.loads((folder / "metrics.json").read_text())
            assert metrics["sizes"] == {"train": N, "generated": N}
            assert json.loads((folder / "fid.json").read_text())["values"]["fid"] >= 0
            if n > 1:
                assert (folder / "model/generator.json").is_file()
                assert (folder / "selection.json").is_file()


def test_equal_shares_take_n_over_n_from_each_source(done):
    two = d_n(done, "accumulate-equal", 2)
    assert dict(zip(*np.unique(two.source, return_counts=True), strict=True)) == {"real": 16, "G01": 16}
    assert len(set(zip(two.file, two.row, strict=True))) == N
    metrics = json.loads((done / "results/digits/accumulate-equal/iter02/metrics.json").read_text())
    assert metrics["share"] == "equal" and metrics["source_shares"] == {"real": 0.5, "G01": 0.5}


def test_fresh_half_is_real_images_outside_d1(done):
    m = d_n(done, "replace-fresh", 2)
    assert dict(zip(*np.unique(m.source, return_counts=True), strict=True)) == {"fresh": N // 2, "G01": N // 2}
    assert set(m.file[m.source == "fresh"]) == {"results/digits/fresh/images.npy"}
    assert m.row[m.source == "fresh"].tolist() == list(range(N // 2))  # iteration 3 takes the next 16
    # the fresh file is the dataset's permutation after D_1, in order: never an image of D_1
    fresh = load_images(done / "results/digits/fresh/images.npy")
    source, _ = data.digits()
    order = data.subset(len(source), len(source), seed=0, dataset="digits")
    np.testing.assert_array_equal(fresh, source[order[N:]])
    np.testing.assert_array_equal(load_images(done / "results/digits/real/images.npy"), source[order[:N]])


def test_fine_tuning_a_generator_that_cannot_is_refused_naming_the_key(done):
    out = snakemake(done, "-n", "results/digits/replace-finetune/iter02/fid.json", check=False)
    assert out.returncode != 0
    assert "runs.replace-finetune.init = previous fine-tunes a model, which generator kde" in out.stdout + out.stderr


def test_the_plugin_method_ran_from_config_alone(done):
    info = json.loads((done / "results/digits/knn-entropy/iter02/selection.json").read_text())
    assert info["method"] == "knn_entropy" and info["selected"] == N and np.isfinite(info["sum_log_nn"])
    metrics = json.loads((done / "results/digits/knn-entropy/iter02/metrics.json").read_text())
    assert metrics["selection"] == "knn_entropy" and metrics["selection_params"] == {"eps": 1e-10}


def test_the_shipped_config_plans_every_option(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "experiments/beyond.yaml"), "--", "beyond").stdout
    for rule in ("fresh", "select", "train"):
        assert f"\nrule {rule}:" in out or f"\n{rule} " in out, rule
    for run in ("accumulate-equal", "replace-fresh", "replace-finetune", "greedy-pixels", "knn-entropy"):
        assert f"results/cifar{'-4k' if run in ('replace-fresh', 'knn-entropy') else ''}/{run}/iter08/fid.json" in out, run
    # greedy-pixels selects in pixels while the metrics stay in DINOv2
    assert "results/cifar/greedy-pixels/iter02/selection.json" in out
    assert "results/cifar/real/features-pixels.npy" in out
    # knn_entropy on the 32,768 set: its pool × N matrix cannot fit, and the plan says so
    bad = snakemake(tmp_path, "-n", "results/cifar/knn-entropy/iter02/fid.json", check=False)
    assert bad.returncode != 0
    why = "runs.accumulate-knn-entropy on datasets.cifar, iter02: knn_entropy keeps a pool × N distance matrix"
    assert why in bad.stdout + bad.stderr
