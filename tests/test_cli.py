"""The `ouroboros` command line: --help at every level, the snakemake command lines `run` and `report`
build for a machine (injected: no test depends on this machine's cores or devices), the GPU check
found from the checkout, and the end of `ouroboros report` (what `make demo` ends on) on a tiny loop,
with the report's first screen in Chromium."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ouroboros import __version__, ending
from ouroboros import cli as command_line
from ouroboros.config import run_directories
from ouroboros.errors import OuroborosError

from cli import LOCAL_ENV, REPO, make_workdir, numpy_config, warm_server

SUBCOMMANDS = ["run", "check", "report", "tables", "figures", "findings", "gpu-check"]
CPU = command_line.Machine(cores=8, gpus=(), cuda=False)
GPU = command_line.Machine(cores=16, gpus=("0", "1", "2", "3"), cuda=True)


def parse(*argv: str):
    return command_line.parse(list(argv))


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        command_line.main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_the_top_level_help_lists_every_subcommand(capsys):
    text = help_of(capsys)
    listed = re.findall(r"(?m)^    (\S+)", text)
    assert listed == SUBCOMMANDS, text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_its_help(capsys, command):
    text = help_of(capsys, command)
    assert text.startswith(f"usage: ouroboros {command}") and len(text.split()) > 30, text


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as exc:
        command_line.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"ouroboros {__version__}"


@pytest.mark.parametrize("name", ["tables", "figures", "findings"])
def test_python_m_keeps_working_with_the_same_help(name, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    # as `python -m` finds it: not imported yet (another test of this process may have imported it)
    monkeypatch.delitem(sys.modules, f"ouroboros.{name}", raising=False)
    with pytest.raises(SystemExit) as exc:
        runpy.run_module(f"ouroboros.{name}", run_name="__main__")
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith(f"usage: python -m ouroboros.{name}") and "results" in out


def test_python_m_tables_summary_prints_the_headline(tmp_path, capsys):
    table = tmp_path / "metrics.tsv"
    pd.DataFrame({"dataset": "digits", "run": "replace", "iteration": [1, 2], "metric": "generalization_score",
                  "value": [0.5, 0.25]}).to_csv(table, sep="\t", index=False)
    assert command_line.module_main("tables", ["--summary", str(table)]) == 0
    assert re.search(r"digits\s+replace\s+0.500\s+0.250", capsys.readouterr().out)
    assert command_line.module_main("tables", ["--summary", str(tmp_path / "none.tsv")]) == 1
    assert "no such table" in capsys.readouterr().err


def test_run_on_a_cpu_box_is_warm_with_a_model_job_per_core(monkeypatch):
    monkeypatch.chdir(REPO)
    cmd = command_line.run_command(parse("run", "results/digits/greedy/iter04/fid.json", "--", "-n", "--keep-going"), CPU)
    assert cmd[:3] == [sys.executable, "-m", "ouroboros.warm"]
    assert Path(cmd[3]).name == "snakemake"
    assert cmd[4:] == ["--cores", "8", "--resources=gpu=8", "-n", "--keep-going", "--", "results/digits/greedy/iter04/fid.json"]


def test_run_on_a_gpu_box_is_cold_with_a_slot_per_device_and_slot(monkeypatch):
    monkeypatch.chdir(REPO)
    cmd = command_line.run_command(parse("run"), GPU, slots_per_gpu=2)
    assert Path(cmd[0]).name == "snakemake" and "ouroboros.warm" not in cmd
    assert cmd[1:] == ["--cores", "16", "--resources=gpu=8"]


def test_progress_draws_the_run_with_the_rich_logger_or_says_how_to_install_it(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(command_line, "_has_rich_logger", lambda: True)
    cmd = command_line.run_command(parse("run", "--progress", "fig03"), CPU)
    assert cmd[4:] == ["--cores", "8", "--resources=gpu=8", "--logger", "rich", "--", "fig03"]
    monkeypatch.setattr(command_line, "_has_rich_logger", lambda: False)
    with pytest.raises(OuroborosError, match=r"pip install -e '\.\[watch\]'"):
        command_line.run_command(parse("run", "--progress"), CPU)


def test_the_users_cores_and_resources_win(monkeypatch):
    monkeypatch.chdir(REPO)
    assert command_line.run_command(parse("run", "--cores", "2"), CPU)[4:] == ["--cores", "2", "--resources=gpu=2"]
    cmd = command_line.run_command(parse("run", "--", "-j", "3", "--resources", "gpu=1"), CPU)
    assert cmd[4:] == ["-j", "3", "--resources", "gpu=1"]
    assert command_line.run_command(parse("run", "--cold"), CPU)[1:] == ["--cores", "8", "--resources=gpu=8"]


def test_another_directory_gets_the_repositorys_snakefile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    cmd = command_line.run_command(parse("run", "-d", "work"), GPU)
    assert cmd[1:5] == ["-s", str(REPO / "Snakefile"), "--directory", "work"]


def test_gpu_slots_come_from_the_config_and_the_last_configfile(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"gpus": {"count": "auto", "slots_per_gpu": 2}}))
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"gpus": {"count": 3, "slots_per_gpu": 4}}))
    assert command_line.gpu_settings(tmp_path) == ("auto", 2)
    more = command_line._configfiles(["-n", "--configfile", str(tmp_path / "more.yaml")])
    assert command_line.gpu_settings(tmp_path, more) == (3, 4)
    assert command_line.gpu_settings(tmp_path / "nothing") == ("auto", 1)


def test_report_draws_then_writes_the_report_of_the_figures(monkeypatch):
    monkeypatch.chdir(REPO)
    jobs, report = command_line.report_commands(parse("report", "--", "--configfile", "x.yaml"), CPU)
    assert jobs[:3] == [sys.executable, "-m", "ouroboros.warm"]
    assert jobs[4:] == ["--cores", "1", "--configfile", "x.yaml", "figures", "findings"]
    assert report[1:] == ["--cores", "1", "--report", str(REPO / "report.html"), "--configfile", "x.yaml", "figures"]


def test_gpu_check_runs_the_checkouts_script_or_says_where_it_lives(tmp_path, capsys):
    cmd = command_line.gpu_check_command(parse("gpu-check", "out", "--budget", "60", "--", "--tiny"))
    assert cmd == [str(REPO / "benchmarks/gpu_check.sh"), "out", "--budget", "60", "--tiny"]
    assert Path(cmd[0]).is_file() and os.access(cmd[0], os.X_OK)
    with pytest.raises(command_line.OuroborosError, match="ships with the repository.*editable"):
        command_line.gpu_check_command(parse("gpu-check"), script=tmp_path / "gpu_check.sh")


def test_the_headline_is_each_runs_last_iteration_averaged_over_replicates():
    rows = [("digits", run, rep, n, metric, value)
            for run, last in (("replace", 3), ("greedy", 2)) for rep in (0, 1) for n in range(1, last + 1)
            for metric, value in (("copy_share", 0.1 * n + rep * 0.2), ("generalization_score", 1 / n),
                                  ("train_entropy", -n), ("fid", 9.0))]
    tidy = pd.DataFrame(rows, columns=["dataset", "run", "replicate", "iteration", "metric", "value"])
    head = ending.headline(tidy).set_index("run")
    assert list(head.columns) == ["dataset", "n", "replicates", "copy share", "GS", "entropy of D_n"]
    assert head.loc["replace", "n"] == 3 and head.loc["greedy", "n"] == 2 and (head.replicates == 2).all()
    assert np.isclose(head.loc["replace", "copy share"], 0.4) and np.isclose(head.loc["greedy", "GS"], 0.5)
    assert head.loc["replace", "entropy of D_n"] == -3



def test_the_ending_stays_short_for_many_runs_and_claims(tmp_path):
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame([("digits", f"run{i:02d}", 0, 1, "generalization_score", 0.5) for i in range(40)],
                 columns=["dataset", "run", "replicate", "iteration", "metric", "value"]).to_csv(
        tables / "metrics.tsv", sep="\t", index=False)
    pd.DataFrame({"experiment": "science", "role": "primary", "verdict": "holds", "claim": [f"C{i}" for i in range(30)],
                  "scope": "digits", "estimate": 1.0, "ci_low": 0.5, "ci_high": 1.5}).to_csv(
        tables / "findings.tsv", sep="\t", index=False)
    text = ending.text(tmp_path, tmp_path / "report.html")
    assert len(text.splitlines()) <= ending.MAX_LINES, text
    assert "25 more runs: summary.tsv" in text and "more lines: findings.md" in text
    assert "  holds: C0, digits: 1 [0.5, 1.5]" in text and "More replicates narrow the intervals" in text


def test_the_makefiles_demo_runs_then_reports_through_the_command_line():
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"(?m)^demo:.*\n((?:\t.*\n)+)", text)[1].split("\n")
    assert recipe[0].strip() == "$(RUN)" and "RUN = $(BIN)/ouroboros run" in text
    assert recipe[1].strip() == "$(BIN)/ouroboros report"


# ---------------------------------------------------------------------------------------------
# ouroboros report on a tiny loop: what `make demo` ends on, and the report's first screen

SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
DEMO_RUNS = SHIPPED["targets"]["runs"]
# the tables and the headline name a run by its results directory (accumulate-greedy's is greedy)
DEMO_DIRECTORIES = [run_directories(SHIPPED["runs"])[run] for run in DEMO_RUNS]


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> tuple[Path, str]:
    """A tiny loop of the demo's runs (kde, numpy only), run by `ouroboros run`, then `ouroboros
    report`: the workdir and the report's output, stdout and stderr together as a terminal shows them."""
    workdir = make_workdir(tmp_path_factory.mktemp("demo"), numpy_config(runs=DEMO_RUNS))
    env = {**os.environ, **LOCAL_ENV, "OUROBOROS_WARM": warm_server(), "PYTHONPATH": str(REPO / "src")}
    for command in (["run", "--cores", "2"], ["report"]):
        proc = subprocess.run([sys.executable, "-m", "ouroboros", *command], cwd=workdir, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        assert proc.returncode == 0, proc.stdout[-6000:]
    return workdir, proc.stdout


@pytest.mark.cli
def test_report_ends_on_its_path_a_headline_table_and_the_primary_findings(reported):
    workdir, out = reported
    lines = out.splitlines()
    # snakemake's last line of the jobs: the tables, figures and findings steps (or nothing to be done)
    last_job = max(i for i, line in enumerate(lines) if re.match(r"(Complete log|Nothing to be done)", line))
    tail = lines[last_job + 1:]
    assert len(tail) <= ending.MAX_LINES, "\n".join(tail)
    path = Path(re.search(r"(?m)^report +(\S+)", "\n".join(tail))[1])
    assert path == workdir / "report.html" and path.stat().st_size > 100_000
    header = next(i for i, line in enumerate(tail) if line.split()[:2] == ["dataset", "run"])
    assert re.search(r"copy share +GS +entropy of D_n$", tail[header]), tail[header]
    table = {line.split()[1]: line.split() for line in tail[header + 1:header + 1 + len(DEMO_RUNS)]}
    assert sorted(table) == sorted(DEMO_DIRECTORIES)
    metrics = pd.read_csv(workdir / "results/tables/metrics.tsv", sep="\t")
    gs = metrics[(metrics.metric == "generalization_score") & (metrics.run == "replace")
                 & (metrics.iteration == metrics.iteration.max())].value.mean()
    assert table["replace"][:3] == ["digits", "replace", str(metrics.iteration.max())]
    assert table["replace"][-2] == f"{gs:.3g}"
    # the demo's primary findings, a line each, and the sentence on replicates
    text = "\n".join(tail)
    findings = pd.read_csv(workdir / "results/tables/findings.tsv", sep="\t")
    primary = findings[(findings.role == "primary") & (findings.experiment == "demo")]
    assert len(primary) == 3
    for claim in primary.claim:
        assert re.search(rf"(?m)^  too few replicates: {re.escape(claim)}, digits", text), text
    assert "replicates: 3" in text
    assert (workdir / "logs/report.log").is_file() and "logs/report.log" in text  # where snakemake --report's lines went


@pytest.mark.cli
@pytest.mark.browser
def test_the_reports_first_screen_shows_the_sample_grids_and_the_findings(reported):
    """Opened in headless Chromium at 1400 × 900: the nearest-neighbour figure, replace's sample grid and
    the primary findings' heading lie inside the first viewport, before any click or scroll."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    workdir, _ = reported
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto((workdir / "report.html").as_uri())
        grid = page.locator("img[alt=samples_digits_replace]")
        nearest = page.locator("img[alt=fig01_nearest_neighbours]")
        heading = page.get_by_role("heading", name="Primary findings")
        for element in (grid, nearest, heading):
            element.wait_for(state="visible", timeout=10_000)
            box = element.bounding_box()
            assert box is not None and box["width"] > 100, element
            assert 0 <= box["x"] and box["x"] + box["width"] <= 1400 and 0 <= box["y"] and box["y"] + box["height"] <= 900, box
        # the images are decoded, not broken links
        assert page.evaluate("img => img.complete && img.naturalWidth > 100", grid.element_handle())
        browser.close()
