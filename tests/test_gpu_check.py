"""The GPU acceptance check on the CPU (forced GPU policy, tiny arguments): its JSON is rewritten
after every phase, a phase made to fail is recorded while the later ones still run, and the
script's exit code says so."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli  # a whole benchmark script in subprocesses

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_writes_after_each_phase_and_records_a_failing_one(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OUROBOROS_POLICY": "gpu", "OUROBOROS_POLICY_COMPILE_BACKEND": "aot_eager",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    # the snakemake loop phase is skipped here (a minute on this CPU); `--only loop` runs it alone
    proc = subprocess.Popen([str(ROOT / "benchmarks/gpu_check.sh"), str(tmp_path), "--tiny", "--fail", "sample",
                             "--skip", "loop"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []  # the phases the JSON held each time it changed, read while the script runs
    deadline = time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        if out.is_file():
            done = tuple(json.loads(out.read_text())["phases"])  # always whole JSON: written atomically
            if not seen or seen[-1] != done:
                seen.append(done)
        time.sleep(0.2)
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, log[-3000:]
    report = json.loads(out.read_text())
    phases = report["phases"]
    assert list(phases) == ["resume", "sample", "features", "select", "loop", "throughput", "projection"]
    status = {name: p["status"] for name, p in phases.items()}
    assert status == {"resume": "ok", "sample": "failed", "features": "ok", "select": "ok", "loop": "skipped",
                      "throughput": "ok", "projection": "ok"}, {n: p.get("error", "")[-800:] for n, p in phases.items()}
    assert "this phase was made to fail" in phases["sample"]["error"]
    assert phases["resume"]["equal"] and phases["resume"]["max_abs_difference"] == 0
    assert 0 < phases["resume"]["killed_at_step"] < report["sizes"]["steps"]
    assert set(phases["features"]["extractors"]) == {"dinov2", "inception", "dinov2-fd", "inception-torchvision"}
    throughput = phases["throughput"]
    # torch.compile of the UNet under the forced GPU policy (aot_eager tracing) is run here, forward and backward
    assert throughput["precision"] == {"train": "bf16", "sample": "fp16"} and "train_ratio_compiled" in throughput
    assert phases["projection"]["fig3_device_hours"] > 0 and "dinov2-fd" in phases["projection"]["extractors_used"]
    assert report["policy"]["kind"] == "gpu" and report["policy"]["forced"]
    # written after every phase: versions with only the first phases were on disk during the run
    order = tuple(phases)
    assert all(v == order[: len(v)] for v in seen) and [len(v) for v in seen] == sorted({len(v) for v in seen}), seen
    assert len(seen) >= 3 and "throughput" not in seen[0], seen
    assert "failed phases: sample" in (tmp_path / "gpu_check.log").read_text()
