"""Whether torch can use the GPU a job was given, and what to do when it cannot.

A job that took a GPU slot (or runs in a SLURM allocation with GPUs) and finds torch without a
usable CUDA would otherwise pick the CPU policy and train for weeks without a word. It stops
instead, before any work, naming what it saw: torch's version and CUDA build, what
``torch.cuda.is_available()`` said (and the warning torch gave, which usually holds the reason),
the driver ``nvidia-smi`` reports, ``CUDA_VISIBLE_DEVICES`` and the slot, and the wheel that
matches the driver. Running on the CPU stays possible, by saying so: ``OUROBOROS_POLICY=cpu``.
``OUROBOROS_POLICY=gpu`` (the forced GPU policy the tests run on the CPU) is an explicit choice
too. The preflight (``ouroboros check``) asks the same questions before the first job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from typing import Any

from ouroboros.errors import OuroborosError

# ouroboros.policy.ENV, not imported: policy reaches torch, and rules whose envs lack torch import this module
POLICY_ENV = "OUROBOROS_POLICY"
# The newest CUDA each driver branch runs (NVIDIA's CUDA toolkit release notes, Linux x86_64),
# paired with the PyTorch wheel index built for that CUDA: a driver runs builds up to its CUDA.
DRIVER_CUDA: tuple[tuple[int, str, str], ...] = (
    (580, "13.0", "cu130"),
    (575, "12.9", "cu129"),
    (570, "12.8", "cu128"),
    (560, "12.6", "cu126"),
    (550, "12.4", "cu124"),
    (530, "12.1", "cu121"),
    (520, "11.8", "cu118"),
)
WHEEL_INDEX = "https://download.pytorch.org/whl/"


def explicit_choice() -> str | None:
    """The device policy the user chose on purpose (cpu, or the forced gpu policy), else None."""
    kind = os.environ.get(POLICY_ENV, "")
    return kind if kind in ("cpu", "gpu") else None


def driver() -> dict[str, str] | None:
    """The driver version and first GPU's name as ``nvidia-smi`` reports them, None without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"name": "?", "version": "?", "error": f"nvidia-smi failed: {exc.__class__.__name__}"}
    first = next((line for line in out.splitlines() if line.strip()), "")
    name, _, version = first.rpartition(",")
    return {"name": name.strip() or "?", "version": version.strip() or "?"}


def diagnose() -> dict[str, Any]:
    """What torch and the machine say about CUDA (imports torch)."""
    try:
        import torch
    except ImportError:  # an environment without torch (a rule's conda env) cannot use a GPU either
        return {"torch": "(not installed)", "torch_cuda": None, "available": False, "device_count": 0,
                "warning": "torch is not installed in this environment", "driver": driver(),
                "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if available else 0
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,  # None: a CPU-only build
        "available": available,
        "device_count": count,
        "warning": " ".join(str(w.message).strip() for w in caught)[:600] or None,
        "driver": driver(),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID"),
    }


def wheel_for(driver_version: str) -> tuple[str, str] | None:
    """(newest CUDA, wheel index) that a driver version runs; None if unknown or too old."""
    try:
        major = int(driver_version.split(".")[0])
    except ValueError:
        return None
    for least, cuda, index in DRIVER_CUDA:
        if major >= least:
            return cuda, WHEEL_INDEX + index
    return None


def remedy(diag: dict[str, Any]) -> list[str]:
    """What to do, most likely fix first."""
    out = []
    drv = diag.get("driver")
    if drv and drv.get("version") not in (None, "?"):
        match = wheel_for(drv["version"])
        if match is None:
            out.append(f"driver {drv['version']} is older than any CUDA build of torch supports: update the NVIDIA driver")
        else:
            cuda, index = match
            built = diag.get("torch_cuda")
            why = ("this torch is a CPU-only build" if built is None
                   else f"this torch was built for CUDA {built}")
            out.append(f"driver {drv['version']} runs CUDA builds up to {cuda} ({why}): install a matching wheel, "
                       f"`pip install --force-reinstall torch torchvision --index-url {index}`, then check with "
                       "`python -c \"import torch; print(torch.cuda.is_available())\"`")
    elif diag.get("torch_cuda") is None:
        out.append("this torch is a CPU-only build: install a CUDA build of torch for your driver "
                   f"(`nvidia-smi` shows its version; wheels at {WHEEL_INDEX}cuXYZ)")
    else:
        out.append("no `nvidia-smi` answered: check that the NVIDIA driver is installed and the device is visible "
                   "to this process (containers: run with the GPU passed through, e.g. `--gpus all`)")
    out.append(f"or run on the CPU on purpose: `export {POLICY_ENV}=cpu` (slow: the paper's trainings take weeks there)")
    return out


def describe(diag: dict[str, Any]) -> str:
    built = f"CUDA build {diag['torch_cuda']}" if diag.get("torch_cuda") else "a CPU-only build"
    drv = diag.get("driver")
    seen = [f"torch {diag['torch']} ({built}), torch.cuda.is_available() = {diag['available']}"]
    if diag.get("warning"):
        seen.append(f"torch warned: {diag['warning']}")
    seen.append(f"driver {drv['version']} ({drv['name']}, nvidia-smi)" if drv and "error" not in drv
                else (drv or {}).get("error", "no nvidia-smi on PATH"))
    seen.append(f"CUDA_VISIBLE_DEVICES={diag.get('CUDA_VISIBLE_DEVICES') or '(unset)'}"
                + (f", SLURM job {diag['SLURM_JOB_ID']}" if diag.get("SLURM_JOB_ID") else ""))
    return "; ".join(seen)


def problem(diag: dict[str, Any], given: str) -> str | None:
    """The refusal for a job that was ``given`` a GPU (what it was given, in words) when torch cannot
    use it; None when CUDA works or the user chose a policy explicitly."""
    if diag["available"] and diag["device_count"] > 0:
        return None
    fixes = "\n".join(f"  - {line}" for line in remedy(diag))
    return (f"{given}, but torch cannot use CUDA, so it stops here instead of running on the CPU.\n"
            f"Seen: {describe(diag)}.\nWhat to do:\n{fixes}")


def gpu_allocated() -> str | None:
    """A GPU this process was handed by SLURM (which assigns devices itself), in words; None otherwise."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_GPUS"):
        value = os.environ.get(var, "")
        if value.strip() and value.strip() != "0":
            return f"this job runs in SLURM allocation {os.environ['SLURM_JOB_ID']} with GPUs ({var}={value})"
    return None


def require(given: str | None) -> None:
    """Stop this job before any work when it was ``given`` a GPU (a description, or None: nothing
    was given, and nothing is checked) and torch cannot use CUDA, unless the user chose a policy
    on purpose (OUROBOROS_POLICY=cpu or gpu)."""
    if not given or explicit_choice():
        return
    message = problem(diagnose(), given)
    if message:
        raise OuroborosError(message)
