"""The warm start (`python -m ouroboros.warm snakemake ...`, ouroboros.warm) through the CLI: the same
bytes as cold jobs, a failure still fails with its traceback in the log, and a killed job's worker
dies with it. Every other local CLI test runs warm (tests/cli.py); this file is where cold and warm
meet."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli import LOCAL_ENV, command, make_workdir, snakemake, tiny_config

pytestmark = pytest.mark.cli

TARGET = "results/digits/real/iter01/samples.npy"  # D_1, then a DDPM trained and sampled: two model jobs
MODEL = "results/digits/real/iter01/model/diffusion_pytorch_model.safetensors"
WARM = "(a warm worker: imported before the job began)"


def config() -> dict:
    cfg = tiny_config(["replace"], 1)
    cfg["datasets"]["digits"]["train"].update(steps=20)
    return cfg


def _group(pgid: int, marker: bytes) -> list[int]:
    """pids in process group ``pgid`` whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes() and os.getpgid(int(entry.name)) == pgid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait(condition, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:.0f} s: {what}")
        time.sleep(0.2)


def test_warm_jobs_write_the_bytes_of_cold_jobs(tmp_path):
    cold, warm = (make_workdir(tmp_path / name, config()) for name in ("cold", "warm"))
    snakemake(cold, TARGET, warm=False)
    snakemake(warm, TARGET, shared=False)
    for f in (TARGET, MODEL, "results/digits/real/iter01/labels.npy"):
        assert (warm / f).read_bytes() == (cold / f).read_bytes(), f
    for stage in ("train", "sample"):
        assert WARM in (warm / f"logs/digits/real/iter01/{stage}.log").read_text()
        assert WARM not in (cold / f"logs/digits/real/iter01/{stage}.log").read_text()
    assert WARM not in (warm / "logs/digits/real/data.log").read_text()  # a job without a model starts cold


def test_a_failing_warm_job_fails_with_its_traceback(tmp_path):
    work = make_workdir(tmp_path / "work", config())
    failed = snakemake(work, TARGET, env={"OUROBOROS_FAULT": "train"}, check=False)  # the shared server
    assert failed.returncode != 0
    assert "Error in rule train" in failed.stdout + failed.stderr
    log = (work / "logs/digits/real/iter01/train.log").read_text()
    assert "RuntimeError: injected fault in train" in log and WARM in log
    assert not (work / MODEL).exists()


def test_killing_a_warm_jobs_process_kills_its_worker(tmp_path):
    """Snakemake cancels a job by killing its process (the client): the worker that runs the job's
    script must not go on writing (it pauses for 600 s, so only a kill ends it in time)."""
    work = make_workdir(tmp_path / "work", config())
    env = {**os.environ, **LOCAL_ENV, "OUROBOROS_PAUSE": "train", "OUROBOROS_PAUSE_SECONDS": "600"}
    with open(tmp_path / "run.out", "w") as out:
        proc = subprocess.Popen(command(work, TARGET), env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        log = work / "logs/digits/real/iter01/train.log"
        _wait(lambda: log.exists() and "paused in train" in log.read_text(), 300, "the training job paused")
        warm = lambda: _group(proc.pid, b"ouroboros.warm\0")  # noqa: E731 - forks keep the wrapper's command line
        assert len(warm()) == 3  # the wrapper (the server), the job's manager and its worker
        [client] = _group(proc.pid, b".train.py")  # the job's own process, running Snakemake's script file
        os.kill(client, signal.SIGKILL)
        _wait(lambda: len(warm()) <= 1, 30, "the killed job's manager and worker are gone")
        _wait(lambda: proc.poll() is not None, 120, "snakemake ended after its job was killed")
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (work / MODEL).exists()


def test_a_job_of_another_python_or_checkout_is_not_served(monkeypatch, tmp_path):
    """A rule's conda env, or a Snakefile of another checkout, would run its job with the server's
    libraries and code: the server closes such a connection unanswered, and the job runs cold."""
    from ouroboros import warm

    from cli import warm_server

    token = warm_server()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                                  signal.SIGUSR2)}
    try:
        ran = tmp_path / "ran"
        script = tmp_path / "job.py"
        script.write_text(f"open({str(ran)!r}, 'w').close()\n")
        # the same Python and checkout: served (once the server listens), and the script ran in a worker
        _wait(lambda: warm._hand_over(token, str(script)) == 0, 120, "the shared server ran a job")
        assert ran.exists()
        ran.unlink()
        monkeypatch.setattr(warm, "_interpreter", lambda: ("another Python", "/elsewhere", "/elsewhere/ouroboros"))
        assert warm._hand_over(token, str(script)) is None
        assert not ran.exists()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
