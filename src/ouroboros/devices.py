"""GPU slots on one machine: every job that asks for ``gpu=1`` gets a device of its own.

Snakemake counts a ``gpu`` resource but assigns no device, so with ``--resources=gpu=4`` on a
4-GPU workstation four jobs start and all of them use ``cuda:0``. Here each such job takes a slot
before it touches CUDA and runs with ``CUDA_VISIBLE_DEVICES`` set to that slot's device.

A device has ``slots_per_gpu`` slots (k small jobs packed on one device; the paper's 10.7M UNet
leaves most of an H100 idle). A slot is an exclusive ``flock`` on a file under
``.snakemake/ouroboros-gpu-slots/``, held by the job's open file until the process ends: the kernel
drops the lock of a process that dies in any way (SIGKILL included), so a dead job's slot returns
to the pool without any clean-up. Slots are taken slot-major (slot 0 of every device before slot 1
of any), so jobs spread over the devices before they share one.

Under SLURM (``SLURM_JOB_ID`` set) nothing is done: SLURM gives each job its own devices.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ouroboros.errors import OuroborosError

SLOTS = Path(".snakemake/ouroboros-gpu-slots")
AUTO = "auto"


@dataclass(frozen=True)
class Slot:
    device: int  # index among the machine's visible devices
    slot: int  # 0 … slots_per_gpu − 1
    path: Path
    fd: int  # the open, flock-ed file: closing it (or dying) frees the slot

    def release(self) -> None:
        os.close(self.fd)


def visible_devices(count: int | str = AUTO) -> list[str]:
    """The ids to hand out as CUDA_VISIBLE_DEVICES values.

    ``count`` a number: devices 0 … count − 1 (or the first ``count`` of an existing
    CUDA_VISIBLE_DEVICES), for tests and for machines without nvidia-smi. ``auto``: the entries of
    CUDA_VISIBLE_DEVICES when it is set (a user restricting the run to some devices), else one per
    line of ``nvidia-smi -L``, else none (a CPU machine).
    """
    preset = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if count != AUTO:
        n = int(count)
        return preset[:n] if preset else [str(i) for i in range(n)]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return preset
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [str(i) for i, line in enumerate(x for x in out.splitlines() if x.startswith("GPU "))]


def acquire(devices: int, slots_per_gpu: int = 1, root: str | os.PathLike = SLOTS, *, wait: bool = True,
            poll_seconds: float = 0.5, log: Callable[[str], None] = print) -> Slot:
    """Take a free slot: slot 0 of every device first, then slot 1, ...; wait while all are held."""
    if devices < 1 or slots_per_gpu < 1:
        raise OuroborosError(f"GPU slots: need at least one device and one slot per device, got {devices} and {slots_per_gpu}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        for k in range(slots_per_gpu):
            for d in range(devices):
                path = root / f"gpu{d}-slot{k}.lock"
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                # the holder's PID, for a person looking at the folder (the lock itself is the truth)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return Slot(d, k, path, fd)
        if not wait:
            raise OuroborosError(f"GPU slots: all {devices} × {slots_per_gpu} slots under {root} are held")
        if not told:
            log(f"GPU slots: all {devices} × {slots_per_gpu} held by other jobs; waiting for one "
                "(--resources=gpu=G above devices × slots_per_gpu makes jobs wait here)")
            told = True
        time.sleep(poll_seconds)


_held: Slot | None = None  # this process's slot, kept open until the process ends


def assign(gpu: int, count: int | str = AUTO, slots_per_gpu: int = 1, root: str | os.PathLike = SLOTS,
           log: Callable[[str], None] = print) -> Slot | None:
    """Give this job (which asked for ``gpu`` devices) a device, before anything initialises CUDA.

    Returns the slot (held until the process exits), or None when there is nothing to assign:
    the job asked for no GPU, SLURM assigns devices, or the machine has none.
    """
    global _held
    if gpu < 1:
        return None
    if os.environ.get("SLURM_JOB_ID"):
        log(f"device: assigned by SLURM (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})")
        return None
    if gpu > 1:
        raise OuroborosError(f"GPU slots: a job asked for gpu={gpu}; local slots hand out one device per job")
    ids = visible_devices(count)
    if not ids:
        log("device: no GPU on this machine (gpus.count: auto found none); the job runs on the CPU")
        return None
    if _held is None:
        _held = acquire(len(ids), slots_per_gpu, root, log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[_held.device]
    log(f"device: GPU {ids[_held.device]} (slot {_held.slot} of {slots_per_gpu}, {_held.path}); "
        f"CUDA_VISIBLE_DEVICES={ids[_held.device]}")
    return _held
