"""A job handed a GPU that torch cannot use stops before any work (ouroboros.cuda), on this CPU machine
with a stand-in nvidia-smi that lists one H100."""

import os
import stat
from pathlib import Path

import pytest

from ouroboros import cuda, devices
from ouroboros.errors import OuroborosError
from ouroboros.runtime import logged

from cli import make_workdir, snakemake, tiny_config

H100 = "NVIDIA H100 80GB HBM3"


def fake_nvidia_smi(folder: Path, driver: str = "535.104.05") -> Path:
    """A stand-in nvidia-smi on a CPU machine: `-L` lists one H100, the query gives its driver."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f"""#!/bin/sh
case "$*" in
  *-L*) echo "GPU 0: {H100} (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
  *) echo "{H100}, {driver}" ;;
esac
""")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def unusable(driver: str | None = "535.104.05", torch_cuda: str | None = "13.0") -> dict:
    return {"torch": "2.14.1", "torch_cuda": torch_cuda, "available": False, "device_count": 0,
            "warning": "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020).",
            "driver": {"name": H100, "version": driver} if driver else None, "CUDA_VISIBLE_DEVICES": "0",
            "SLURM_JOB_ID": None}


@pytest.mark.parametrize("version, cuda_version, index", [
    ("580.65.06", "13.0", "cu130"), ("570.124.06", "12.8", "cu128"), ("560.35.03", "12.6", "cu126"),
    ("550.54.15", "12.4", "cu124"), ("535.104.05", "12.1", "cu121"), ("525.60.13", "11.8", "cu118"),
])
def test_the_wheel_for_a_driver_is_the_newest_cuda_build_it_runs(version, cuda_version, index):
    assert cuda.wheel_for(version) == (cuda_version, cuda.WHEEL_INDEX + index)


def test_a_driver_too_old_for_any_build_or_unreadable_has_no_wheel():
    assert cuda.wheel_for("470.239.06") is None
    assert cuda.wheel_for("?") is None


def test_the_refusal_names_what_it_saw_and_what_to_do():
    message = cuda.problem(unusable(), "this job was given GPU 0 (slot 0)")
    for seen in ("this job was given GPU 0 (slot 0), but torch cannot use CUDA", "torch 2.14.1 (CUDA build 13.0)",
                 "torch.cuda.is_available() = False", "driver on your system is too old", f"driver 535.104.05 ({H100}",
                 "CUDA_VISIBLE_DEVICES=0"):
        assert seen in message, seen
    # the fix: the wheel index for driver 535 (CUDA ≤ 12.2: the cu121 builds), or the CPU on purpose
    assert "--index-url https://download.pytorch.org/whl/cu121" in message
    assert "export OUROBOROS_POLICY=cpu" in message


def test_a_cpu_only_torch_without_nvidia_smi_is_told_to_install_a_cuda_build():
    message = cuda.problem(unusable(driver=None, torch_cuda=None), "given")
    assert "a CPU-only build" in message and "no nvidia-smi on PATH" in message
    assert "install a CUDA build of torch" in message


def test_usable_cuda_or_nothing_given_or_an_explicit_policy_is_not_refused(monkeypatch):
    assert cuda.problem({**unusable(), "available": True, "device_count": 1}, "given") is None
    monkeypatch.setattr(cuda, "diagnose", unusable)
    monkeypatch.delenv(cuda.POLICY_ENV, raising=False)
    cuda.require(None)  # no slot handed out: a CPU machine works as before
    for explicit in ("cpu", "gpu"):  # the CPU on purpose; the forced GPU policy of the tests
        monkeypatch.setenv(cuda.POLICY_ENV, explicit)
        cuda.require("given")
    monkeypatch.setenv(cuda.POLICY_ENV, "auto")
    with pytest.raises(OuroborosError, match="torch cannot use CUDA"):
        cuda.require("given")


def test_this_machines_torch_sees_no_cuda():
    diag = cuda.diagnose()
    assert diag["available"] is False and diag["torch"].startswith(("2.",))
    assert cuda.problem(diag, "given") is not None


def test_slurm_allocations_with_gpus_count_as_given(monkeypatch):
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_GPUS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert cuda.gpu_allocated() is None  # a CPU-only allocation
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "1")
    assert "SLURM allocation 42" in cuda.gpu_allocated()
    monkeypatch.delenv("SLURM_JOB_ID")
    assert cuda.gpu_allocated() is None


def test_a_job_given_a_slot_on_a_machine_without_cuda_stops_in_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(cuda.POLICY_ENV, raising=False)
    monkeypatch.setattr(devices, "_held", None)
    log = tmp_path / "train.log"
    ran = []
    try:
        with pytest.raises(OuroborosError, match="torch cannot use CUDA"), logged(str(log), gpu=1):
            ran.append(True)
    finally:
        if devices._held is not None:
            devices._held.release()
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # assign set it; monkeypatch restores a user's value
    assert not ran, "the job's body ran"
    text = log.read_text()
    assert "device: GPU 0 (slot 0 of 1" in text and "OuroborosError" in text and "OUROBOROS_POLICY=cpu" in text


@pytest.mark.cli
def test_the_train_job_of_a_gpu_run_without_cuda_writes_nothing(tmp_path):
    """The reproduction of the issue: with a stand-in nvidia-smi listing an H100 on this CPU machine,
    the train job of iteration 1 used to log its GPU, train on the CPU and exit 0."""
    workdir = make_workdir(tmp_path / "run", tiny_config(["replace"], 1))
    target = "results/digits/real/iter01/model"
    env = {"PATH": f"{fake_nvidia_smi(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}", "OUROBOROS_POLICY": "auto",
           "OUROBOROS_PREFLIGHT": "0"}
    proc = snakemake(workdir, target, env=env, check=False)
    assert proc.returncode != 0
    log = (workdir / "logs/digits/real/iter01/train.log").read_text()
    assert "torch cannot use CUDA" in log and "OUROBOROS_POLICY=cpu" in log, log[-3000:]
    assert "device policy" not in log  # no policy was resolved: nothing ran
    left = [p.name for p in (workdir / "results/digits/real/iter01").glob("*")]
    assert not {"model", "train-stats.jsonl", "train-checkpoint"} & set(left), left
