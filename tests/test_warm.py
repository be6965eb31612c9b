"""The warm start (`python -m ouroboros.warm snakemake ...`, ouroboros.warm) through the CLI: the same
bytes as cold jobs, a failure still fails with its traceback in the log, and a killed job's worker
dies with it. Every other local CLI test runs warm (tests/cli.py); this file is where cold and warm
meet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import LOCAL_ENV, command, make_workdir, numpy_config, snakemake, tiny_config

pytestmark = pytest.mark.cli

TARGET = "results/digits/real/iter01/samples.npy"  # D_1, then a DDPM trained and sampled: two model jobs
MODEL = "results/digits/real/iter01/model/unet/diffusion_pytorch_model.safetensors"
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
    snakemake(warm, TARGET)  # the shared server (the killing test below runs the wrapper's own)
    for f in (TARGET, MODEL, "results/digits/real/iter01/labels.npy"):
        assert (warm / f).read_bytes() == (cold / f).read_bytes(), f
    for stage in ("train", "sample"):
        assert WARM in (warm / f"logs/digits/real/iter01/{stage}.log").read_text()
        assert WARM not in (cold / f"logs/digits/real/iter01/{stage}.log").read_text()
    # a job without a model is the light server's, which never imports torch
    assert f"libraries loaded: none of torch, diffusers, transformers {WARM}" in (warm / "logs/digits/real/data.log").read_text()


def test_light_jobs_write_the_bytes_of_cold_jobs(tmp_path):
    """The loop of the numpy generator, every job of one thread the light server's (taken from the
    launcher), and the trainings, given two threads, run cold: the same files as cold jobs
    (selection.json's timing aside), and no job imported torch."""
    cfg = numpy_config(["greedy"], 2)  # accumulate, Greedy Selection: every stage of the loop
    cold, warm = (make_workdir(tmp_path / name, cfg) for name in ("cold", "warm"))
    snakemake(cold, "--set-threads", "train=2", warm=False)
    snakemake(warm, "--set-threads", "train=2", shared=False)  # the wrapper's own light server
    files = sorted(p.relative_to(cold) for p in (cold / "results").rglob("*") if p.is_file())
    assert len(files) > 20 and files == sorted(p.relative_to(warm) for p in (warm / "results").rglob("*") if p.is_file())
    for f in files:
        a, b = (cold / f).read_bytes(), (warm / f).read_bytes()
        if f.name == "selection.json":
            a, b = (json.loads(x) for x in (a, b))
            a.pop("seconds"), b.pop("seconds")
        assert a == b, f
    logs = list((warm / "logs").rglob("*.log"))
    trains = [log for log in logs if log.name == "train.log"]
    assert len(logs) > 10 and len(trains) == 2  # iterations 1 and 2
    for log in logs:  # a job of two threads runs cold (the servers' libraries are loaded for one)
        text = log.read_text()
        assert "libraries loaded: none of torch, diffusers, transformers" in text and (WARM in text) != (log in trains), log


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
        # the wrapper (the model server), the light server, and the job's two managers and workers: the
        # light server's took the job from the launcher and handed it on to the model server's
        assert len(warm()) == 6
        [client] = _group(proc.pid, b".train.py")  # the job's own process: the launcher, with Snakemake's script file
        assert b"ouroboros-warm-" in Path(f"/proc/{client}/cmdline").read_bytes()
        os.kill(client, signal.SIGKILL)
        _wait(lambda: len(warm()) <= 2, 30, "the killed job's managers and workers are gone")
        _wait(lambda: proc.poll() is not None, 120, "snakemake ended after its job was killed")
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (work / MODEL).exists()


def test_a_job_of_another_python_checkout_or_allocation_is_not_served(monkeypatch, tmp_path):
    """A rule's conda env, or a Snakefile of another checkout, would run its job with the server's
    libraries and code, and a job of another SLURM allocation outside that allocation's limits: the
    server closes such a connection unanswered, and the job runs cold."""
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
        # the light server too; then a job of a SLURM allocation the server is not in, and another Python
        _wait(lambda: warm._hand_over(token, str(script), heavy=False) == 0, 120, "the light server ran a job")
        ran.unlink()
        monkeypatch.setenv("SLURM_JOB_ID", "4242")  # its worker would run outside the allocation's limits
        assert warm._hand_over(token, str(script)) is None and warm._hand_over(token, str(script), heavy=False) is None
        monkeypatch.delenv("SLURM_JOB_ID")
        monkeypatch.setattr(warm, "_context", lambda: ("another Python", "/elsewhere", "/elsewhere/ouroboros", None))
        assert warm._hand_over(token, str(script)) is None
        assert not ran.exists()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_launched_script_runs_in_a_light_worker_as_this_python_would_run_it(tmp_path):
    """What a launcher hands over runs with the argv, sys.path, directory and environment that this
    Python gives the same file (tests/test_warm_launcher.py: without a server, it is this Python)."""
    from ouroboros import warm

    from cli import warm_server

    show = ("import json, os, sys; print(json.dumps([sys.executable, sys.argv, sys.path, os.getcwd(), "
            "os.environ.get('ONLY_HERE'), os.environ.get('OUROBOROS_WARM_WORKER')]))")
    rel = ".snakemake/scripts/tmpk2j4.show.py"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(show)
    env = {**{k: v for k, v in os.environ.items() if k != warm.WORKER}, "ONLY_HERE": "1", warm.ENV: warm_server()}
    launcher = warm._write_launcher()
    try:
        run = lambda *cmd: json.loads(subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,  # noqa: E731
                                                     timeout=120, check=True).stdout)
        cold, launched = run(sys.executable, rel), run(launcher, rel)
    finally:
        warm._remove_launcher(launcher)
    assert cold[-1] is None and launched[-1] == warm.LAUNCHED  # a light worker ran it, not the launcher's own Python
    assert cold[1] == [rel] and launched[1] == [str(tmp_path / rel)]  # runpy names the file by its whole path
    launched[1] = cold[1]
    assert launched[:-1] == cold[:-1]
