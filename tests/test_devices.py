"""Local GPU slots (ouroboros.devices) on a CPU machine with a simulated device count."""

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from ouroboros import devices
from ouroboros.errors import OuroborosError

SRC = os.path.join(os.path.dirname(__file__), "..", "src")

# a job: take a slot as a workflow job does, say which, then hold it until killed or told to stop
JOB = textwrap.dedent("""
    import os, sys
    from ouroboros import devices
    slot = devices.assign(1, count=int(sys.argv[2]), slots_per_gpu=int(sys.argv[3]), root=sys.argv[1],
                          log=lambda m: None)
    print(slot.device, slot.slot, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    sys.stdin.read()
""")


def start_job(root, count, per_gpu, env=None):
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(root), str(count), str(per_gpu)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC, **(env or {})})
    # a job that never gets its slot would wait forever: kill it after a generous minute, so the
    # test fails instead of hanging
    timer = threading.Timer(60, proc.kill)
    timer.start()
    line = proc.stdout.readline().split()
    timer.cancel()
    assert line, f"job exited with {proc.wait()} before it got a slot"
    return proc, (int(line[0]), int(line[1])), line[2]


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()


def test_concurrent_jobs_get_distinct_slots_and_at_most_k_per_device(tmp_path):
    procs = []
    try:
        got = []
        for _ in range(6):  # 3 devices × 2 slots
            proc, slot, visible = start_job(tmp_path, 3, 2)
            procs.append(proc)
            got.append(slot)
            assert visible == str(slot[0])
        assert len(set(got)) == 6
        assert collections.Counter(d for d, _ in got) == {0: 2, 1: 2, 2: 2}
        # slot-major: the first three jobs went to three different devices, before any shared one
        assert [d for d, _ in got[:3]] == [0, 1, 2] and {k for _, k in got[:3]} == {0}
        with pytest.raises(OuroborosError, match="all 3 × 2 slots"):
            devices.acquire(3, 2, tmp_path, wait=False)
    finally:
        stop(procs)


def test_a_killed_jobs_slot_returns_to_the_pool(tmp_path):
    procs = []
    try:
        for _ in range(4):
            procs.append(start_job(tmp_path, 2, 2))
        victim, slot, _ = procs[2]
        os.kill(victim.pid, signal.SIGKILL)  # no clean-up of any kind runs
        victim.wait()
        proc, again, _ = start_job(tmp_path, 2, 2)
        procs.append((proc, again, None))
        assert again == slot
    finally:
        stop(p for p, _, _ in procs)


def test_a_job_waits_for_a_slot_and_takes_the_one_released(tmp_path):
    held = devices.acquire(1, 1, tmp_path)
    waiter = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path), "1", "1"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC})
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.0)  # still waiting: the only slot is held here
        held.release()
        assert waiter.stdout.readline().split()[:2] == ["0", "0"]
    finally:
        stop([waiter])


def test_visible_devices_keep_a_users_restriction(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert devices.visible_devices("auto") == ["2", "5"]
    assert devices.visible_devices(1) == ["2"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.visible_devices(3) == ["0", "1", "2"]
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: a CPU machine
    assert devices.visible_devices("auto") == []


def test_a_slot_maps_to_the_users_device_id(tmp_path):
    procs = []
    try:
        env = {"CUDA_VISIBLE_DEVICES": "4,7"}
        first = start_job(tmp_path, "1", 1, env)  # count 1 of the user's two: device 4 only
        procs.append(first[0])
        assert first[2] == "4"
    finally:
        stop(procs)


def test_nothing_is_assigned_without_a_gpu_request_under_slurm_or_on_a_cpu_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "_held", None)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert devices.assign(0, count=2, root=tmp_path) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    lines = []
    assert devices.assign(1, count=2, root=tmp_path, log=lines.append) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and "SLURM" in lines[0]
    monkeypatch.delenv("SLURM_JOB_ID")
    assert devices.assign(1, count=0, root=tmp_path, log=lines.append) is None
    assert "no GPU" in lines[-1]
    assert not list(tmp_path.iterdir())  # no slot was taken
    with pytest.raises(OuroborosError, match="gpu=2"):
        devices.assign(2, count=2, root=tmp_path)
