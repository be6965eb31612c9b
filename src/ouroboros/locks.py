"""Stale Snakemake directory locks, left by a run that was killed (SIGKILL, a lost login node).

Snakemake locks the working directory while it runs and removes the lock when it exits; a
killed run cannot, and the next invocation then refuses to start until ``--unlock``. Each
invocation records itself (host and PID) under .snakemake/; when locks exist and every recorded
invocation of this host has died (and none of another host is recorded, whose liveness cannot be
checked from here), the locks are stale and are removed, so the same command simply runs again.
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
