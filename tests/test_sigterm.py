"""Snakemake's SIGTERM handler (ouroboros.sigterm): a signal that lands while the scheduler's main
thread holds its lock ends the run gracefully instead of hanging it."""

import threading

import pytest

from ouroboros import sigterm


@pytest.fixture
def JobScheduler(monkeypatch):  # noqa: N802 - the class it returns
    """snakemake's scheduler class, imported here rather than at collection: the import loads the
    executor plugins, and the SLURM plugin asks `scontrol show config` for a controller (10 s where
    Debian's slurm is installed and none runs, in each worker that collects this file); pointed at
    no config, scontrol answers at once."""
    monkeypatch.setenv("SLURM_CONF", "/dev/null")
    from snakemake.scheduling.job_scheduler import JobScheduler

    return JobScheduler


def scheduler(JobScheduler):  # noqa: N803
    """The state exit_gracefully touches, on a real JobScheduler instance (its __init__ needs a workflow)."""
    s = JobScheduler.__new__(JobScheduler)
    s._lock, s._open_jobs, s._user_kill = threading.Lock(), threading.Semaphore(0), None
    return s


def signalled_while_holding_the_lock(JobScheduler, handler):  # noqa: N803
    """The handler called as a signal handler is: on the thread that holds the scheduler's lock
    (schedule() holds it while it finishes jobs). That thread is a daemon, so a deadlock fails the
    test instead of hanging the suite."""
    s = scheduler(JobScheduler)

    def main_thread() -> None:
        with s._lock:
            handler(s)  # the signal lands here
        s._open_jobs.acquire()  # the scheduling loop's next wait: the handler's release wakes it

    t = threading.Thread(target=main_thread, daemon=True)
    t.start()
    t.join(timeout=10)
    return t, s


def test_snakemakes_own_handler_deadlocks_on_the_lock_its_thread_holds(JobScheduler):  # noqa: N803
    """The bug this module exists for, shown on snakemake's handler as it ships (if a release of
    snakemake fixes it, this test says so and the patch can go)."""
    original = getattr(JobScheduler.exit_gracefully, sigterm._ORIGINAL, JobScheduler.exit_gracefully)
    s = scheduler(JobScheduler)
    with s._lock:
        assert not s._lock.acquire(timeout=0.1)  # a threading.Lock: its holder cannot take it again
    t = threading.Thread(target=lambda: (s._lock.acquire(), original(s)), daemon=True)
    t.start()
    t.join(timeout=1)
    assert t.is_alive(), "snakemake's exit_gracefully no longer waits on a lock its own thread holds"


def test_the_installed_handler_ends_the_run_gracefully_while_the_lock_is_held(JobScheduler):  # noqa: N803
    assert sigterm.install() and sigterm.install()  # twice: patched once
    handler = JobScheduler.exit_gracefully
    assert hasattr(handler, sigterm._ORIGINAL)
    assert not hasattr(getattr(handler, sigterm._ORIGINAL), sigterm._ORIGINAL)
    t, s = signalled_while_holding_the_lock(JobScheduler, handler)
    assert not t.is_alive(), "the SIGTERM handler deadlocked on the scheduler's lock"
    assert s._user_kill == "graceful"  # what snakemake's own handler sets, for its loop to stop on
