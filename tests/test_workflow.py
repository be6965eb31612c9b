"""The workflow through the real snakemake CLI, on a tiny config in a temporary directory."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli import ITERATIONS, REPO, RUNS, N, make_workdir, numpy_config, snakemake, tiny_config

pytestmark = pytest.mark.cli  # every test here runs the snakemake command line

def loop_config(**kw) -> dict:
    """The tiny config on the kde generator with FID in pixel space: the DDPM, the classifier, its
    features and FID in its space are exercised by test_faults.py, test_paper_shape.py and
    test_slurm.py; here they would only add minutes to a test of the loop's plumbing."""
    cfg = numpy_config(**kw)
    cfg["gpus"] = {"count": 2, "slots_per_gpu": 1}  # two simulated devices: only GPU generators take slots
    return cfg


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A workdir in which the whole tiny experiment has run once."""
    workdir = make_workdir(tmp_path_factory.mktemp("loop"), loop_config())
    snakemake(workdir)
    snakemake(workdir, "figures", "findings")
    return workdir


def test_every_run_produces_every_file(done):
    for run in RUNS:
        for n in range(1, ITERATIONS + 1):
            folder = done / f"results/digits/{run}/iter{n:02d}"
            metrics = json.loads((folder / "metrics.json").read_text())
            fid = json.loads((folder / "fid.json").read_text())
            assert (metrics["run"], metrics["iteration"], metrics["dataset"]) == (run, n, "digits")
            assert metrics["sizes"]["generated"] == N
            assert metrics["values"]["generalization_score"] > 0
            assert fid["values"]["fid"] >= 0 and fid["feature_extractor"] == "pixels"
            if n > 1:
                assert json.loads((folder / "model" / "generator.json").read_text())["generator"] == "kde"
                assert (folder / "train.tsv").is_file()
    table = (done / "results/tables/metrics.tsv").read_text().splitlines()
    assert len(table) > len(RUNS) * ITERATIONS * 10
    for name in ("fig01_generalization_by_size", "fig03_generalization_score", "fig09_fid", "fig11_source_shares",
                 "fig13_replace_2n", "samples_digits_greedy"):
        assert (done / f"results/figures/{name}.png").stat().st_size > 1000


def test_jobs_that_run_no_model_never_import_torch(done):
    """Every job logs which heavy libraries it loaded (ouroboros.runtime.logged)."""
    logs = done / "logs"
    for log in [logs / "tables.log", logs / "figures.log", logs / "findings.log",
                *logs.glob("digits/*/iter02/select.log"), *logs.glob("digits/*/iter0*/evaluate.log"),
                *logs.glob("digits/*/iter0*/fid.log")]:
        assert "libraries loaded: none of torch, diffusers, transformers" in log.read_text(), log
    # and a numpy generator's train and sample jobs import none either (a DDPM's do: test_faults.py)
    for log in [*logs.glob("digits/**/train.log"), *logs.glob("digits/**/sample.log")]:
        assert "libraries loaded: none of torch, diffusers, transformers" in log.read_text(), log


def test_a_numpy_generator_takes_no_device_slot(done):
    """With gpus.count: 2 only jobs that declare gpu=1 take a slot: the kde's train and sample jobs
    declare none (the DDPM's take one: tests/test_faults.py)."""
    logs = done / "logs"
    model_logs = [*logs.glob("digits/**/train.log"), *logs.glob("digits/**/sample.log")]
    assert len(model_logs) >= 2 * len(RUNS)
    for log in [*model_logs, *logs.glob("digits/**/evaluate.log")]:
        assert "device:" not in log.read_text(), log


def test_findings_of_one_replicate_decide_nothing(done):
    """One replicate gives no interval over replicates: every claim present says too few replicates
    (or not applicable: one dataset size has no line across sizes to test)."""
    import pandas as pd

    table = pd.read_csv(done / "results/tables/findings.tsv", sep="\t")
    assert {"I.gs_falls", "II.train_entropy_falls", "S5.entropy_higher"} <= set(table.claim)
    assert "too few replicates" in set(table.verdict) and set(table.verdict) <= {"too few replicates", "not applicable"}
    assert (table[table.verdict == "not applicable"].claim == "III.one_line_across_sizes").all()
    assert "too few replicates" in (done / "results/tables/findings.md").read_text()
    summary = pd.read_csv(done / "results/tables/summary.tsv", sep="\t")
    assert (summary.n == 1).all() and summary.ci_low.isna().all()


def test_training_sets_follow_the_paradigms(done):
    def sources(run, n):
        rows = (done / f"results/digits/{run}/iter{n:02d}/train.tsv").read_text().splitlines()[1:]
        return [r.split("\t")[0] for r in rows]

    assert set(sources("replace", 2)) == {"G01"} and len(sources("replace", 2)) == N
    assert len(sources("replace-2n", 2)) == 2 * N  # trains on all 2N samples
    assert set(sources("replace-threshold", 2)) == {"G01"} and len(sources("replace-threshold", 2)) == N
    assert set(sources("accumulate", 2)) <= {"real", "G01"} and len(sources("accumulate", 2)) == N
    # the shared G_1 is sampled once; the 2N runs add an extension beside it
    assert (done / "results/digits/real/iter01/x2/samples.npy").is_file()
    assert not (done / "results/digits/replace/iter01/model").exists()


def test_second_invocation_has_nothing_to_do(done):
    for target in ([], ["figures"]):
        out = snakemake(done, "-n", *target)
        assert "Nothing to be done" in out.stdout + out.stderr


def test_figures_draw_what_exists_and_never_trigger_training(done, tmp_path):
    """Only metrics.json and fid.json copied: `figures` plans tables, findings (for the report's first
    screen) and figures, nothing else."""
    make_workdir(tmp_path, loop_config())
    for f in list((done / "results").glob("digits/*/iter*/*.json")):
        if f.name in ("metrics.json", "fid.json"):
            dest = tmp_path / f.relative_to(done)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    out = snakemake(tmp_path, "figures")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout + out.stderr, flags=re.M))
    assert jobs == {"tables": "1", "findings": "1", "figures": "1", "total": "3"}
    assert (tmp_path / "results/figures/fig03_generalization_score.png").is_file()


def test_failed_job_leaves_no_partial_output_and_the_next_run_resumes(done):
    target = "results/digits/greedy/iter02/metrics.json"
    before = json.loads((done / target).read_text())
    untouched = done / "results/digits/real/iter01/model/state.npz"
    mtime = untouched.stat().st_mtime_ns
    shutil.rmtree(done / "results/digits/greedy/iter02")

    failed = snakemake(done, target, env={"OUROBOROS_FAULT": "train"}, check=False)
    assert failed.returncode != 0
    assert "injected fault" in (done / "logs/digits/greedy/iter02/train.log").read_text()
    folder = done / "results/digits/greedy/iter02"
    assert not (folder / "model").exists() and not (folder / "train-stats.jsonl").exists()
    assert not any(p.name.startswith(".model.") for p in folder.iterdir())

    resumed = snakemake(done, target)
    jobs = re.findall(r"^(\w+)\s+(\d+)$", resumed.stdout + resumed.stderr, flags=re.M)
    assert dict(jobs).get("train") == "1"  # only the lost training runs again
    assert untouched.stat().st_mtime_ns == mtime
    after = json.loads((done / target).read_text())
    assert after["values"] == before["values"]  # bit-for-bit the same result as the uninterrupted run


def test_cifar_dry_run_plans_eight_trainings(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    out = snakemake(tmp_path, "-n", "results/cifar/greedy/iter08/fid.json")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.stdout, flags=re.M))
    assert jobs["train"] == "8"
    assert jobs["select"] == "7" and jobs["sample"] == "8"


def test_unknown_run_in_a_target_names_it(tmp_path):
    make_workdir(tmp_path, tiny_config())
    out = snakemake(tmp_path, "-n", "results/digits/nope/iter02/fid.json", check=False)
    assert out.returncode != 0 and "unknown run 'nope'" in out.stdout + out.stderr


@pytest.mark.browser
def test_report_shows_every_figure_in_a_browser(done):
    """snakemake --report (the README's command), opened in headless Chromium: the first screen shows
    the primary findings (verdict, estimate, interval) before any click, the figures are one click
    away, every figure loads and the page is not blank."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    import pandas as pd
    from playwright.sync_api import sync_playwright

    from ouroboros import findings

    snakemake(done, "--report", str(done / "report.html"), "figures")
    figures = sorted(p.name for p in (done / "results/figures").glob("*.png"))
    assert len(figures) >= 8
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((done / "report.html").as_uri())
        # the first screen, before any click: the heading, the table's header and the first primary row
        table = pd.read_csv(done / "results/tables/findings.tsv", sep="\t")
        first = table[table.role == "primary"].iloc[0]
        row = page.locator("tr", has_text=f"{first.claim} (").first
        on_screen = [page.get_by_role("heading", name="Primary findings"), row,
                     page.get_by_text("estimate [95 % interval]", exact=True)]
        for element in on_screen:
            box = element.bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 900, element
        text = row.inner_text()
        assert first.verdict in text and findings._number(first.estimate) in text and "[" in text, text
        page.get_by_text("Figures", exact=True).click()
        for name in figures:
            page.locator("tr", has_text=f"results/figures/{name}").locator("a").first.click()
            # the figure itself, decoded: its data URI names the file
            page.wait_for_function(
                "name => Array.from(document.images).some(i => i.src.includes('filename=' + name + ';') "
                "&& i.complete && i.naturalWidth > 100)", arg=name, timeout=10_000)
        shot = page.screenshot()
        browser.close()
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page


def test_replicates_are_new_targets_that_leave_replicate_0_untouched(done, tmp_path):
    """`replicates: 2` adds results/.../rep1/ beside replicate 0, whose files are not rebuilt."""
    work = Path(shutil.copytree(done, tmp_path / "work", symlinks=True))
    snakemake(work)  # complete again what earlier tests of this module removed
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (work / "results/digits").rglob("*") if p.is_file()}
    cfg = loop_config(runs=["greedy"], iterations=2)
    cfg["targets"]["replicates"] = 2
    make_workdir(work, cfg)
    planned = snakemake(work, "-n")
    outputs = [f for line in re.findall(r"^\s+output: (.*)$", planned.stdout + planned.stderr, flags=re.M)
               for f in line.split(", ")]
    assert outputs and all("/rep1/" in f for f in outputs), outputs  # nothing of replicate 0 is planned
    snakemake(work)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before}
    assert after == before  # byte-identical, not even rewritten
    rep1 = work / "results/digits/greedy/rep1/iter02"
    metrics = json.loads((rep1 / "metrics.json").read_text())
    assert (metrics["run"], metrics["replicate"], metrics["iteration"]) == ("greedy", 1, 2)
    # other random streams: replicate 1 trained and sampled its own iteration 1 on the same D_1
    g1 = [np.load(work / f"results/digits/{b}/iter01/samples.npy") for b in ("real", "real/rep1")]
    assert g1[0].shape == g1[1].shape and not np.array_equal(*g1)
    assert (work / "results/digits/real/images.npy").read_bytes() == before[work / "results/digits/real/images.npy"][0]
    snakemake(work, "tables")
    table = (work / "results/tables/metrics.tsv").read_text().splitlines()
    header = table[0].split("\t")
    reps = {row.split("\t")[header.index("replicate")] for row in table[1:]}
    assert reps == {"0", "1"}


def test_real_subset_per_replicate_draws_a_d1_for_each_replicate_and_keeps_replicate_0(done, tmp_path):
    """`real_subset: per_replicate` gives replicate r ≥ 1 its own D_1 (the first N of its own
    permutation of the same source) under .../drawR/, leaves replicate 0 as it was, and the findings
    keep that design apart from the shared one."""
    work = Path(shutil.copytree(done, tmp_path / "work", symlinks=True))
    snakemake(work)  # complete again what earlier tests of this module removed
    real = work / "results/digits/real/images.npy"
    stamp = (real.read_bytes(), real.stat().st_mtime_ns)
    cfg = loop_config(runs=["greedy"], iterations=2)
    cfg["targets"] |= {"replicates": 2, "real_subset": "per_replicate"}
    make_workdir(work, cfg)
    planned = snakemake(work, "-n")
    outputs = [f for line in re.findall(r"^\s+output: (.*)$", planned.stdout + planned.stderr, flags=re.M)
               for f in line.split(", ")]
    assert outputs and all("/draw1/" in f for f in outputs), outputs  # nothing of replicate 0
    snakemake(work)
    snakemake(work, "findings")  # apart: the tables redraw when results/ differs from when they were planned
    assert (real.read_bytes(), real.stat().st_mtime_ns) == stamp
    from ouroboros.data import digits

    source = {row.tobytes() for row in digits()[0]}
    d1 = [np.load(work / f"results/digits/real{b}/images.npy") for b in ("", "/draw1")]
    assert d1[0].shape == d1[1].shape and all(row.tobytes() in source for d in d1 for row in d)  # the source's images
    overlap = len({r.tobytes() for r in d1[0]} & {r.tobytes() for r in d1[1]})
    assert overlap < len(d1[0]), overlap  # another subset (N = 32 of 1,797: a few images in common)
    rows = (work / "results/digits/greedy/draw1/iter02/train.tsv").read_text()
    assert "results/digits/real/draw1/images.npy" in rows and "results/digits/real/images.npy" not in rows
    metrics = json.loads((work / "results/digits/greedy/draw1/iter02/metrics.json").read_text())
    assert (metrics["replicate"], metrics["real_subset"]) == (1, "per_replicate")
    findings = (work / "results/tables/findings.md").read_text()
    drawn = [line for line in findings.splitlines() if "digits · D_1 per replicate · greedy" in line]
    assert drawn and all("| 2 rep" in line for line in drawn), drawn[:3]  # replicate 0 and draw1
