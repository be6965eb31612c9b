"""The GPU acceptance check on the CPU (forced GPU policy, tiny arguments): it keeps its budget by
construction (each phase in its own process, stopped at its share), records a phase made to fail
and one made to overrun while the later phases still run and write their numbers, checks resume
bit for bit under deterministic settings and within a stated tolerance under the production ones,
refuses a machine without CUDA unless told to run on the CPU, and ends with one summary table."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

# the forced GPU policy on the CPU (every GPU branch runs), compile traced without code generation;
# SLURM_CONF: snakemake's SLURM plugin would wait for a controller (tests/cli.py)
ENV = {"OUROBOROS_POLICY": "gpu", "OUROBOROS_POLICY_COMPILE_BACKEND": "aot_eager", "OMP_NUM_THREADS": "1",
       "SLURM_CONF": "/dev/null"}


def test_the_allowances_add_up_to_the_budget():
    whole = gpu_check.allowances(300, list(gpu_check.PHASES))
    assert sum(whole.values()) == pytest.approx(300 - gpu_check.RESERVE)
    assert sum(gpu_check.SHARES.values()) == pytest.approx(1)
    assert whole["loop"] / whole["select"] == pytest.approx(gpu_check.SHARES["loop"] / gpu_check.SHARES["select"])
    some = gpu_check.allowances(100, ["sample", "select"])  # the shares of the phases that run, renormalised
    assert some == pytest.approx({"sample": 97 * 4 / 7, "select": 97 * 3 / 7})


@pytest.mark.cli  # each phase a Python process of its own, and the overrunning one sleeps its whole share
def test_a_failing_and_an_overrunning_phase_are_recorded_within_the_budget(tmp_path, monkeypatch, capsys):
    """Hooks only: the phases neither import torch nor measure, so this runs in seconds."""
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "gpu_check.json"
    # sample 12 s to fail in (a Python start: seconds on a busy machine, never its whole share), select 9 s to overrun
    budget = 24.0
    started = time.monotonic()
    code = gpu_check.main(["--out", str(out), "--budget", str(budget), "--tiny", "--only", "sample,select",
                           "--fail", "sample", "--overrun", "select"], started=started)
    elapsed = time.monotonic() - started
    assert code == 1
    assert elapsed <= budget + gpu_check.GRACE
    report = json.loads(out.read_text())
    phases = report["phases"]
    assert list(phases) == list(gpu_check.PHASES)
    assert {n: p["status"] for n, p in phases.items() if p["status"] != "skipped"} == {"sample": "failed", "select": "overrun"}
    assert "this phase was made to fail" in phases["sample"]["error"]
    # stopped at its allowance, and what it had written before is kept
    assert phases["select"]["allowance_s"] - 1 <= phases["select"]["seconds"] <= phases["select"]["allowance_s"] + gpu_check.GRACE
    assert "sleeps past its allowance" in phases["select"]["note"]
    printed = capsys.readouterr().out
    assert "training images/s (ref: diffusers loop)" in printed and "select overrun" in report["summary"]


def test_the_check_refuses_a_machine_without_cuda_unless_told(monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.delenv("OUROBOROS_POLICY", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "x.json"), "--only", "sample", "--fail", "sample"]) == 2
    assert "--cpu" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    gpu_check.require_cuda(True, "the check")  # --cpu: asked to run on the CPU
    monkeypatch.setenv("OUROBOROS_POLICY", "gpu")
    gpu_check.require_cuda(False, "the check")  # the forced GPU policy of the tests: an explicit choice


def test_the_summary_and_the_measured_rates_from_a_report(tmp_path):
    from ouroboros import costs

    report = {"sizes": {"preset": "cifar-paper"}, "phases": {
        "throughput": {"status": "ok", "images_per_second": {"train_reference": 2000.0, "train_ouroboros": 3000.0,
                                                             "sample_reference_image_steps": 50000.0,
                                                             "sample_ouroboros_image_steps": 100000.0}},
        "compile": {"status": "ok", "train_images_per_second": 4000.0, "compile_warmup_seconds": 95.0},
        "features": {"status": "ok", "extractors": {"dinov2": {"images_per_second": 1000.0, "flops_per_image": 2e9}}},
        "projection": {"status": "ok", "user_target": {"gpu_hours": 7.5}, "fig03": {"gpu_hours": 14.2}}}}
    rates, basis = gpu_check.measured_rates(report)
    forward = costs.forward_flops("cifar-paper")
    assert rates == pytest.approx({"train": 4000 * 3 * forward, "sample": 100000 * forward, "features:dinov2": 2e12})
    assert "4000 training images/s" in basis["train"]
    table = gpu_check.summary(report, tmp_path / "none.json")
    assert "1.50×" in table and "2.00×" in table and "compile warm-up 95.0 s" in table
    assert "features images/s, dinov2" in table and "7.5" in table and "14.2" in table


@pytest.mark.cli
def test_resume_is_bit_exact_under_deterministic_settings_and_within_tolerance_otherwise(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    gpu_check._imports()
    pol = gpu_check.device_policy.resolve()
    result = gpu_check.phase_resume(gpu_check.sizes(True), tmp_path, pol, tmp_path / "resume.json")
    det, prod = result["deterministic"], result["production"]
    assert det["equal"] and det["max_abs_difference"] == 0 and det["tolerance"] == 0
    assert 0 < det["killed_at_step"] < det["steps"]
    after = prod["steps"] - prod["killed_at_step"]
    assert prod["within_tolerance"] and prod["tolerance"] == pytest.approx(2 * 1.58 * 1e-4 * after)
    assert "use_deterministic_algorithms(True)" in result["settings"] and (tmp_path / "whole").is_dir()
    assert not gpu_check.torch.are_deterministic_algorithms_enabled()  # restored for the phases after it


@pytest.mark.cli
def test_gpu_check_sh_keeps_its_budget_and_every_later_phase_writes_its_numbers(tmp_path):
    """One end-to-end run of the shell script: tiny arguments, a budget smaller than what the phases
    would take (one never ends), a failing and an overrunning phase, the summary table."""
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, **ENV, "PYTHON": sys.executable}
    budget = 420  # generous shares for this shared CPU; the overrunning phase would take forever
    # loop (a minute of snakemake jobs here), resume (the test above) and sweep (tests/test_gpu_throughput.py) are
    # left out; `--only loop` runs the loop alone
    started = time.monotonic()
    proc = subprocess.Popen([str(ROOT / "benchmarks/gpu_check.sh"), str(tmp_path), "--budget", str(budget), "--tiny",
                             "--skip", "loop,resume,sweep", "--fail", "sample", "--overrun", "select"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []  # the phases the JSON held each time it changed, read while the script runs
    while proc.poll() is None and time.monotonic() - started < budget + 300:
        if out.is_file():
            done = tuple(n for n, p in json.loads(out.read_text())["phases"].items())  # whole JSON: written atomically
            if not seen or seen[-1] != done:
                seen.append(done)
        time.sleep(0.2)
    log = proc.communicate(timeout=60)[0]
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, log[-3000:]
    assert elapsed <= budget + gpu_check.GRACE, log[-3000:]
    report = json.loads(out.read_text())
    phases = report["phases"]
    assert list(phases) == list(gpu_check.PHASES)
    status = {name: p["status"] for name, p in phases.items()}
    assert status == {"resume": "skipped", "sample": "failed", "features": "ok", "select": "overrun", "loop": "skipped",
                      "throughput": "ok", "compile": "ok", "sweep": "skipped", "projection": "ok"}, \
        {n: p.get("error", "")[-800:] for n, p in phases.items()}
    assert "this phase was made to fail" in phases["sample"]["error"]
    assert set(phases["features"]["extractors"]) == {"dinov2", "inception", "dinov2-fd", "inception-torchvision"}
    throughput = phases["throughput"]
    assert throughput["precision"] == {"train": "bf16", "sample": "fp16"} and throughput["train_ratio"] > 0
    # torch.compile of the UNet under the forced GPU policy (aot_eager tracing): its warm-up apart, no graph compiled in the
    # timed window
    compiled = phases["compile"]
    assert compiled["compile_warmup_seconds"] > 0 and compiled["graphs_compiled_in_timed_window"] == 0
    assert compiled["train_images_per_second"] > 0
    projection = phases["projection"]
    assert projection["user_target"]["by_rule"]["train"]["jobs"] == 8 and projection["fig03"]["gpu_hours"] > 0
    assert projection["rates_from"]["train"].endswith("tiny8") and "features:dinov2-fd" in projection["rates_flops_per_second"]
    # written after every phase: versions with only the first phases were on disk during the run
    order = tuple(phases)
    assert all(v == order[: len(v)] for v in seen), seen
    assert len(seen) >= 3 and "projection" not in seen[0], seen
    for line in ("training images/s (ref: diffusers loop)", "sampling image-steps/s (ref: DDPMPipeline)",
                 "features images/s, dinov2-fd", "GPU-hours, results/cifar/greedy/iter08/fid.json", "GPU-hours, Figure 3"):
        assert line in log, log[-3000:]
    assert "failed or overrun phases: sample (failed), select (overrun)" in (tmp_path / "gpu_check.log").read_text()
