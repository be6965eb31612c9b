"""Stale Snakemake directory locks, left by a run that was killed (SIGKILL, a lost login node).

Snakemake locks the working directory while it runs and removes the lock when it exits; a
killed run cannot, and the next invocation then refuses to start until ``--unlock``. Each
invocation records itself (host and PID) under .snakemake/; when locks exist and every recorded
invocation of this host has died (and none of another host is recorded, whose liveness cannot be
checked from here), the locks are stale and are removed, so the same command simply runs again.

A killed run's jobs may outlive its Snakemake (a pre-empted training finishing its checkpoint, a
job whose Snakemake was SIGKILLed under it): every job holds the directory's jobs lock while it runs
(``hold_job``), and a new run first waits for those of an earlier one to end, or refuses naming
them (``wait_for_jobs``), so that its jobs never write beside them, ``--unlock`` or not.
"""

from __future__ import annotations

import atexit
import os
import socket
from pathlib import Path

LOCKS = Path(".snakemake/locks")
SESSIONS = Path(".snakemake/ouroboros-sessions")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _records(sessions: Path) -> list[tuple[str, int, Path]]:
    out = []
    for f in sessions.glob("*@*"):
        host, _, pid = f.name.rpartition("@")
        if pid.isdigit():
            out.append((host, int(pid), f))
    return out


def clear_stale(root: str | os.PathLike = ".", log=print) -> bool:
    """Remove the directory locks when every invocation that may hold them is dead."""
    locks, sessions = Path(root) / LOCKS, Path(root) / SESSIONS
    held = list(locks.glob("*.lock"))
    if not held:
        return False
    host = socket.gethostname()
    records = _records(sessions)
    if not records or any(h != host or alive(pid) for h, pid, _ in records):
        return False  # a live (or unknown) invocation may hold them: Snakemake will say so
    for f in held:
        f.unlink(missing_ok=True)
    for _, _, f in records:
        f.unlink(missing_ok=True)
    log(f"ouroboros: removed the directory locks of a killed run ({', '.join(f'{h} pid {p}' for h, p, _ in records)} "
        "no longer running); finished files are kept and unfinished jobs run again")
    return True


def register(root: str | os.PathLike = ".") -> Path:
    """Record this invocation until it exits normally (a killed one leaves its record behind)."""
    sessions = Path(root) / SESSIONS
    sessions.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for h, pid, f in _records(sessions):  # dead records of runs that held no lock
        if h == host and not alive(pid):
            f.unlink(missing_ok=True)
    record = sessions / f"{host}@{os.getpid()}"
    record.write_text("")
    atexit.register(lambda: record.unlink(missing_ok=True))
    return record


# Every job holds a shared lock on this file while it runs (hold_job): a run whose Snakemake was killed
# can leave jobs running (a warm worker whose training writes its pre-emption checkpoint, a job whose
# Snakemake died under it), and a new run in the directory must not start beside them (wait_for_jobs).
JOBS = Path(".snakemake/ouroboros-jobs.lock")
WAIT_FOR_JOBS = 120.0  # seconds a new run waits for them: more than a pre-empted warm job is given (warm.GRACE)
_HELD: list[int] = []  # this process's descriptor of JOBS, while it runs a job


def hold_job(root: str | os.PathLike = ".") -> None:
    """Mark this process as running a job of the workflow in ``root`` until it exits (its children,
    forked, hold it too). Where the file system offers no locks, nothing is held."""
    import fcntl

    if _HELD:
        return
    path = Path(root) / JOBS
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return
    _HELD.append(fd)


def job_holders(root: str | os.PathLike = ".") -> list[int]:
    """The PIDs on this host that hold the jobs lock of ``root`` (from /proc/locks; [] where unknown)."""
    try:
        inode = (Path(root) / JOBS).stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = set()
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            pids.add(int(fields[4]))
    return sorted(pids)


def wait_for_jobs(root: str | os.PathLike = ".", limit: float | None = None, log=print) -> None:
    """Return once no job of an earlier run is running in ``root``: wait up to ``limit`` seconds
    (OUROBOROS_WAIT_FOR_JOBS, default WAIT_FOR_JOBS), then refuse, naming the processes."""
    import fcntl
    import time

    from ouroboros.errors import OuroborosError

    if limit is None:
        limit = float(os.environ.get("OUROBOROS_WAIT_FOR_JOBS", WAIT_FOR_JOBS))
    path = Path(root) / JOBS
    host = socket.gethostname()
    if not path.is_file() or any(h != host or alive(pid) for h, pid, _ in _records(Path(root) / SESSIONS)):
        return  # no job ever ran here, or a live run holds Snakemake's own lock, which refuses this one
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        deadline, told = time.monotonic() + limit, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return  # nobody holds it; closing the file releases it for this run's jobs
            except BlockingIOError:
                pass
            except OSError:
                return  # a file system without locks: nothing to learn
            pids = ", ".join(map(str, job_holders(root))) or "unknown"
            if time.monotonic() >= deadline:
                raise OuroborosError(
                    f"{Path(root).resolve()}: jobs of an earlier run are still running there (pids {pids}), and a "
                    "new run would write beside them; wait until they end (a pre-empted training is writing its "
                    "checkpoint) or stop them (kill PID), then run again")
            if not told:
                log(f"ouroboros: jobs of an earlier run are still running in {Path(root).resolve()} (pids {pids}); "
                    f"waiting up to {limit:.0f} s for them to end before this run starts")
                told = True
            time.sleep(0.2)
    finally:
        os.close(fd)
