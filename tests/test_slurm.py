"""profiles/slurm end to end on a real single-node SLURM (tests/slurm_cluster.py).

The tiny digits loop runs through `snakemake --profile <profiles/slurm, adapted to the test
cluster>` on the numpy generator: every job is an sbatch job, a job that fails once is retried by
the profile, and a job that keeps failing stops the run naming its SLURM log. A DDPM training asks
SLURM for a GPU and, pre-empted and requeued by SLURM, resumes from its checkpoint.

Needs root and Debian's slurmctld, slurmd, slurm-client and munge (.ci/run installs them). Without
them the module is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from cli import LOCAL_ENV, REPO, command, make_workdir, numpy_config, tiny_config, warm_server

RUN = "greedy"  # accumulate pool + Greedy Selection: every stage of the loop
FOLDER = f"results/digits/{RUN}/iter02"
TARGETS = [f"{FOLDER}/metrics.json", f"{FOLDER}/fid.json"]
TIMEOUT = 900  # seconds per snakemake call (~150–210 s idle beside the other tests): a hung status check fails the test
pytestmark = [pytest.mark.cli, pytest.mark.slurm]
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def cluster():
    reason = slurm_cluster.missing()
    if reason:
        if in_ci():
            pytest.fail(f"CI must run the SLURM tests, but {reason}")
        pytest.skip(reason)
    try:
        yield slurm_cluster.start()
    except slurm_cluster.ClusterError as err:
        pytest.fail(f"the test SLURM cluster did not start: {err}")
    finally:
        slurm_cluster.stop()


@pytest.fixture(scope="module", autouse=True)
def gpu_jobs_run_on_the_cpu_on_purpose():
    """The test cluster's GPUs are fake devices: a job that SLURM gives one would refuse to run without CUDA
    (ouroboros.cuda), so these runs choose the CPU explicitly (sbatch exports the environment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OUROBOROS_POLICY", "cpu")
        yield


@pytest.fixture(scope="module")
def profile(cluster, tmp_path_factory) -> Path:
    """profiles/slurm as a site would adapt it to the test cluster."""
    cfg = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert cfg["executor"] == "slurm"
    # SLURM schedules the GPUs: a global `resources: gpu=N` would serialise the cluster's GPU jobs
    assert "resources" not in cfg
    cfg["default-resources"]["slurm_partition"] = cluster.partition
    for resources in (cfg["default-resources"], *cfg["set-resources"].values()):
        resources["mem_mb"] = 1000  # the profile's GPU-node memory does not fit this machine
    cfg.update({
        "slurm-status-command": "squeue",  # no slurmdbd: sacct knows no jobs
        "slurm-init-seconds-before-status-checks": 2,  # tiny jobs: poll often (MinJobAge is 600 s)
        "seconds-between-status-checks": 2,
        "latency-wait": 5,  # one machine, no NFS
    })
    path = tmp_path_factory.mktemp("profile")
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def through(profile: Path) -> tuple[str, ...]:
    """The README's SLURM command options, with the test's adapted profile."""
    return ("--profile", str(profile), "--workflow-profile", "none")


def submitted(output: str) -> list[tuple[str, str, Path]]:
    """(rule, SLURM job id, SLURM log) of every job the run submitted."""
    jobs = []
    for jobid, log in SUBMITTED.findall(output):
        rule = re.search(r"/rule_(\w+?)/", log).group(1)
        jobs.append((rule, jobid, Path(log)))
    return jobs


def scontrol(jobid: str) -> str:
    return subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True,
                          timeout=30, check=True).stdout


class Running:
    """A snakemake command on SLURM that runs while other tests go on (its output in ``log``), from
    its workdir, as a user would run it (logs/slurm lands under the working directory either way)."""

    def __init__(self, workdir: Path, cmd: list[str], env: dict):
        self.workdir, self.log = workdir, workdir / "run.out"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=workdir,
                                     env={**os.environ, **env})

    def wait(self, succeed: bool = True) -> tuple[Path, str]:
        """(workdir, output) once the command has ended, successfully (``succeed``) or not."""
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the SLURM run ran past {TIMEOUT} s:\n{self.log.read_text()[-4000:]}") from None
        output = self.log.read_text()
        assert (code == 0) == succeed, output[-6000:]
        return self.workdir, output

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def loop(cluster, profile, tmp_path_factory):
    """The tiny loop (run greedy, 2 iterations) on SLURM, on the numpy generator (what it checks is
    the profile's and SLURM's: every stage a SLURM job, a retry, the logs; the requeue test runs a
    DDPM training on SLURM, on a GPU), with the first training failing once. The first test that
    asks starts it; it runs while the requeue and failure tests submit their own jobs (the plugin
    polls each run every 2, 12, 22, … seconds, so the three flows mostly wait, and waiting at once
    is what keeps the file short)."""
    workdir = make_workdir(tmp_path_factory.mktemp("slurm-loop"), numpy_config([RUN], 2))
    env = {"OUROBOROS_FAULT": "train", "OUROBOROS_FAULT_ONCE": str(workdir / "fault-fired")}
    running = Running(workdir, command(workdir, *through(profile), *TARGETS, local=False), env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def done(loop):
    return loop.wait()


FAILING_TARGET = "results/digits/real/iter01/samples.npy"


@pytest.fixture(scope="module")
def failing(cluster, profile, tmp_path_factory):
    """A run whose training keeps failing, started beside the loop (the first test asks for both).
    The numpy generator: what fails here is SLURM's and the profile's handling, not a model (a cold
    DDPM job would spend ~9 CPU-s importing torch before failing). --retries 0: the retry is tested
    on the loop, and the plugin polls ever more slowly while nothing completes."""
    workdir = make_workdir(tmp_path_factory.mktemp("slurm-failing"), numpy_config([RUN], 1))
    cmd = command(workdir, *through(profile), "--retries", "0", FAILING_TARGET, local=False)
    running = Running(workdir, cmd, {"OUROBOROS_FAULT": "train"})
    yield running
    running.stop()


# the loop and the failing run (started by the first test here) run while the requeue test runs its own
def test_a_requeued_training_resumes_from_its_checkpoint(cluster, profile, loop, failing, tmp_path):
    """SLURM pre-empts a running training and requeues it (`scontrol requeue`, what a pre-empting
    partition with PreemptMode=REQUEUE does): the profile's `slurm-requeue` lets SLURM restart the
    job, which resumes from its in-job checkpoint and ends with the weights of an uninterrupted run."""
    cfg = tiny_config([RUN], 1)
    cfg["datasets"]["digits"]["train"].update(steps=40, checkpoint_minutes=1e-4)  # a checkpoint every step
    model = "results/digits/real/iter01/model"
    reference = make_workdir(tmp_path / "reference", cfg)
    # the uninterrupted run, locally, side by side with the SLURM run (which mostly waits); its jobs the
    # session's warm server's (a wrapper's own server would import torch again for one training)
    local = subprocess.Popen(command(reference, model), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, **LOCAL_ENV, "OUROBOROS_WARM": warm_server()})

    workdir = make_workdir(tmp_path / "requeued", cfg)
    paused = workdir / "paused"  # the training pauses at step 20 (of 40), once: the restarted job runs through
    env = {"OUROBOROS_PAUSE": "train", "OUROBOROS_PAUSE_ONCE": str(paused)}
    out = open(workdir / "run.out", "w")
    cmd = command(workdir, *through(profile), model, local=False)
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env={**os.environ, **env})
    try:
        deadline = time.time() + TIMEOUT
        while not paused.exists():
            assert proc.poll() is None and time.time() < deadline, (workdir / "run.out").read_text()[-4000:]
            time.sleep(0.2)
        state = json.loads((workdir / "results/digits/real/iter01/train-checkpoint/state.json").read_text())
        [(rule, jobid, _)] = submitted((workdir / "run.out").read_text())[-1:]
        assert rule == "train"
        subprocess.run(["scontrol", "requeue", jobid], check=True, capture_output=True, timeout=30)
        assert proc.wait(timeout=TIMEOUT) == 0, (workdir / "run.out").read_text()[-4000:]
        local_output, _ = local.communicate(timeout=TIMEOUT)
    finally:
        for p in (proc, local):
            if p.poll() is None:
                p.kill()
                p.wait()
        local.stdout.close()
        out.close()
    assert local.returncode == 0, local_output[-4000:]
    job = scontrol(jobid)
    assert "Restarts=1" in job, job  # the same SLURM job, run a second time
    # a DDPM training asks SLURM for a GPU, and SLURM assigns it: the local slot pool stays out of the way
    assert "gpu:1" in re.search(r"TresPerJob=(\S*)", job).group(1), job
    log = (workdir / "logs/digits/real/iter01/train.log").read_text()
    assert "device: assigned by SLURM" in log, log[-2000:]
    assert not (workdir / ".snakemake/ouroboros-gpu-slots").exists()
    assert f"resuming from results/digits/real/iter01/train-checkpoint at step {state['next_step']}\n" in log, log[-2000:]
    weights = f"{model}/unet/diffusion_pytorch_model.safetensors"
    assert (workdir / weights).read_bytes() == (reference / weights).read_bytes()
    assert not (workdir / "results/digits/real/iter01/train-checkpoint").exists()


def test_a_job_that_keeps_failing_stops_the_run_naming_its_logs(failing):
    workdir, output = failing.wait(succeed=False)
    [(jobid, log)] = [(jobid, log) for rule, jobid, log in submitted(output) if rule == "train"]
    assert f"SLURM-job '{jobid}' failed" in output and str(log) in output
    assert "injected fault in train" in log.read_text()
    assert "injected fault in train" in (workdir / "logs/digits/real/iter01/train.log").read_text()
    assert not (workdir / "results/digits/real/iter01/model").exists() and not (workdir / FAILING_TARGET).exists()


def test_the_profile_runs_the_loop_as_slurm_jobs(done):
    workdir, output = done
    metrics = json.loads((workdir / TARGETS[0]).read_text())
    fid = json.loads((workdir / TARGETS[1]).read_text())
    assert (metrics["run"], metrics["iteration"]) == (RUN, 2) and fid["values"]["fid"] >= 0

    jobs = submitted(output)
    assert {rule for rule, _, _ in jobs} == {"data", "train", "sample", "features", "select", "evaluate", "fid"}
    for rule, jobid, log in jobs:
        assert log.is_relative_to(workdir / "logs/slurm") and log.is_file(), log
        tres = re.search(r"TresPerJob=(\S*)", scontrol(jobid))
        # the numpy generator needs no GPU, nor do pixel features: no job asks (a DDPM's do: the requeue test)
        assert not (tres and "gpu" in tres.group(1)), (rule, jobid, tres)


def test_a_job_that_fails_once_is_reported_and_retried(done):
    workdir, output = done
    assert (workdir / "fault-fired").is_file()
    trains = [(jobid, log) for rule, jobid, log in submitted(output) if rule == "train"]
    assert len(trains) == 3  # iteration 1 twice (the failure, its retry), iteration 2 once
    failed_id, failed_log = trains[0]
    assert trains[1][1].parent == failed_log.parent != trains[2][1].parent  # the retry is the same job's
    assert f"SLURM-job '{failed_id}' failed" in output and str(failed_log) in output
    assert "injected fault in train" in failed_log.read_text()
    assert "COMPLETED" not in scontrol(failed_id) and "COMPLETED" in scontrol(trains[1][0])
