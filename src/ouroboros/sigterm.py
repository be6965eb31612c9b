"""Snakemake's SIGTERM handler, run where it cannot deadlock.

Snakemake 9's scheduler handles SIGTERM (a SLURM pre-emption, ``kill``, the warm wrapper passing a
signal on) with ``JobScheduler.exit_gracefully``, which takes the scheduler's lock. A signal handler
runs on the main thread between two bytecodes, and the main thread holds that lock while it
finishes jobs (``schedule``: ``with self._lock: self._finish_jobs()``). A SIGTERM that arrives
then makes the main thread wait for a lock it holds itself: snakemake hangs for ever, its jobs
ended and its lock files left (seen in the suite, a warm training pre-empted with its whole process
group signalled; snakemake 9.27.1). ``install`` makes the handler hand the same work to a thread of
its own, which waits for the lock as any other thread does and takes it once the main thread lets
go; the main thread returns from the signal at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_ORIGINAL = "_ouroboros_original_exit_gracefully"


def off_the_main_thread(handler: Callable[..., None]) -> Callable[..., None]:
    """``handler`` (a method taking the scheduler and the signal's arguments), run on a new daemon
    thread, so that it may wait for locks the interrupted thread holds."""

    def exit_gracefully(self, *args) -> None:
        threading.Thread(target=handler, args=(self, *args), name="snakemake SIGTERM", daemon=True).start()

    exit_gracefully.__doc__ = handler.__doc__
    setattr(exit_gracefully, _ORIGINAL, handler)
    return exit_gracefully


def install() -> bool:
    """Patch snakemake's JobScheduler (once; the Snakefile calls this before any scheduler exists,
    and the scheduler binds its handler when it is made). False where snakemake has no such handler."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    handler = getattr(JobScheduler, "exit_gracefully", None)
    if handler is None:
        return False
    if not hasattr(handler, _ORIGINAL):
        JobScheduler.exit_gracefully = off_the_main_thread(handler)
    return True
