"""Snakemake's SIGTERM handler (ouroboros.sigterm): a signal that lands while the scheduler's main
thread holds its lock ends the run gracefully instead of hanging it."""

import threading

from snakemake.scheduling.job_scheduler import JobScheduler

from ouroboros import sigterm


def scheduler() -> JobScheduler:
    """The state exit_gracefully touches, on a real JobScheduler instance (its __init__ needs a workflow)."""
    s = JobScheduler.__new__(JobScheduler)
    s._lock, s._open_jobs, s._user_kill = threading.Lock(), threading.Semaphore(0), None
    return s


def signalled_while_holding_the_lock(handler) -> tuple[threading.Thread, JobScheduler]:
    """The handler called as a signal handler is: on the thread that holds the scheduler's lock
    (schedule() holds it while it finishes jobs). That thread is a daemon, so a deadlock fails the
    test instead of hanging the suite."""
    s = scheduler()

    def main_thread() -> None:
        with s._lock:
            handler(s)  # the signal lands here
        s._open_jobs.acquire()  # the scheduling loop's next wait: the handler's release wakes it

    t = threading.Thread(target=main_thread, daemon=True)
    t.start()
    t.join(timeout=10)
    return t, s


def test_snakemakes_own_handler_deadlocks_on_the_lock_its_thread_holds():
    """The bug this module exists for, shown on snakemake's handler as it ships (if a release of
    snakemake fixes it, this test says so and the patch can go)."""
    original = getattr(JobScheduler.exit_gracefully, "_ouroboros_original_exit_gracefully", JobScheduler.exit_gracefully)
    s = scheduler()
    with s._lock:
        assert not s._lock.acquire(timeout=0.1)  # a threading.Lock: its holder cannot take it again
    t = threading.Thread(target=lambda: (s._lock.acquire(), original(s)), daemon=True)
    t.start()
    t.join(timeout=1)
    assert t.is_alive(), "snakemake's exit_gracefully no longer waits on a lock its own thread holds"


def test_the_installed_handler_ends_the_run_gracefully_while_the_lock_is_held():
    assert sigterm.install() and sigterm.install()  # twice: patched once
    handler = JobScheduler.exit_gracefully
    assert hasattr(handler, "_ouroboros_original_exit_gracefully")
    assert not hasattr(handler._ouroboros_original_exit_gracefully, "_ouroboros_original_exit_gracefully")
    t, s = signalled_while_holding_the_lock(handler)
    assert not t.is_alive(), "the SIGTERM handler deadlocked on the scheduler's lock"
    assert s._user_kill == "graceful"  # what snakemake's own handler sets, for its loop to stop on
