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
