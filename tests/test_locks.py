"""Stale directory locks: removed only when every invocation that may hold them is dead."""

import os
import socket
import subprocess
import sys

from ouroboros import locks


def lock_dir(root):
    (root / locks.LOCKS).mkdir(parents=True)
    (root / locks.LOCKS / "0.output.lock").write_text("results/x\n")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def record(root, host, pid):
    (root / locks.SESSIONS).mkdir(parents=True, exist_ok=True)
    (root / locks.SESSIONS / f"{host}@{pid}").write_text("")


def test_locks_of_a_dead_run_are_removed(tmp_path):
    lock_dir(tmp_path)
    record(tmp_path, socket.gethostname(), dead_pid())
    said = []
    assert locks.clear_stale(tmp_path, log=said.append)
    assert not list((tmp_path / locks.LOCKS).iterdir()) and "killed run" in said[0]


def test_locks_of_a_live_run_or_another_host_are_kept(tmp_path):
    lock_dir(tmp_path)
    record(tmp_path, socket.gethostname(), dead_pid())
    record(tmp_path, socket.gethostname(), os.getpid())  # alive: this test
    assert not locks.clear_stale(tmp_path, log=lambda m: None)
    other = tmp_path / "other"
    lock_dir(other)
    record(other, "login-node-2", dead_pid())  # cannot be checked from here
    assert not locks.clear_stale(other, log=lambda m: None)
    unknown = tmp_path / "unknown"  # locks with no record at all: leave them to Snakemake
    lock_dir(unknown)
    assert not locks.clear_stale(unknown, log=lambda m: None)
    assert (tmp_path / locks.LOCKS / "0.output.lock").is_file() and (other / locks.LOCKS / "0.output.lock").is_file()


def test_register_records_this_process_and_drops_dead_records(tmp_path):
    gone = dead_pid()
    record(tmp_path, socket.gethostname(), gone)
    mine = locks.register(tmp_path)
    names = sorted(p.name for p in (tmp_path / locks.SESSIONS).iterdir())
    assert names == [mine.name] and mine.name.endswith(f"@{os.getpid()}")


def test_a_new_run_waits_for_the_jobs_lock_then_refuses_naming_its_holders(tmp_path):
    import pytest

    from ouroboros.errors import OuroborosError

    locks.wait_for_jobs(tmp_path, limit=0)  # no job ever ran here
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ouroboros import locks; "
                               "locks.hold_job(sys.argv[1]); print('held', flush=True); time.sleep(600)", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert locks.job_holders(tmp_path) == [holder.pid]
        told = []
        with pytest.raises(OuroborosError, match=rf"jobs of an earlier run are still running there \(pids {holder.pid}\)"):
            locks.wait_for_jobs(tmp_path, limit=0.3, log=told.append)
        assert len(told) == 1 and "waiting up to 0 s" in told[0]
        record(tmp_path, socket.gethostname(), os.getpid())  # a live run: Snakemake's own lock refuses, not this
        locks.wait_for_jobs(tmp_path, limit=0)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    (tmp_path / locks.SESSIONS / f"{socket.gethostname()}@{os.getpid()}").unlink()
    locks.wait_for_jobs(tmp_path, limit=0)  # its holder is gone
    assert locks.job_holders(tmp_path) == []
