"""Helpers for tests that run the workflow through the real snakemake CLI on a tiny config."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# every paradigm and selection method once: replace with all of N or 2N, threshold decay on a 2N
# replace pool, accumulate with random and greedy (replace-greedy and accumulate-threshold add no
# rule, paradigm or method: the conditional loop and the unit tests cover those combinations).
# greedy is accumulate-greedy's old name and results directory: these runs also read the old name
RUNS = ["replace", "replace-2n", "replace-threshold", "accumulate", "greedy"]
ITERATIONS = 2  # iteration 2 already runs every stage of every paradigm (select, pools of G_1 and of real ∪ G_1)
N = 32  # |D_n| of the tiny config
# Snakemake imports every installed executor plugin when it starts; the SLURM plugin then asks
# `scontrol` for the cluster's MinJobAge, which waits ~9 s for a controller wherever SLURM's
# client is installed but no controller runs (CI between SLURM tests). A local run needs no
# cluster: with this configuration scontrol answers at once.
LOCAL_ENV = {"SLURM_CONF": "/dev/null"}


SESSION = "OUROBOROS_TEST_WARM"  # the token of the test session's warm server (tests/conftest.py starts it)
_SERVER: list = []  # [(process, token)]: this test process's own server, where the session has none


def start_server() -> tuple[subprocess.Popen, str]:
    """A warm server (`python -m ouroboros.warm --serve`): it imports snakemake, numpy and pandas,
    torch and diffusers once, and forks each command's snakemake and each of its jobs."""
    token = f"tests-{os.getpid()}-{os.urandom(6).hex()}"
    # the environment of the local runs it serves: the snakemake it imports for their commands
    # then loads its executor plugins without waiting for a SLURM controller (LOCAL_ENV)
    proc = subprocess.Popen([sys.executable, "-m", "ouroboros.warm", "--serve", token], env={**os.environ, **LOCAL_ENV},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, token


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=120)  # reaped, so that its CPU time is counted as this process's children's
    except subprocess.TimeoutExpired:  # a server that ignores SIGTERM must not hang the session's end
        proc.kill()
        proc.wait()
        raise AssertionError(f"the warm server {proc.pid} did not stop within 120 s of SIGTERM") from None


def warm_server() -> str:
    """The token of the warm server shared by every local CLI run: the session's, one for all test
    processes (tests/test_warm.py also runs the wrapper's own server, as a user does), or else one of
    this test process, started at its first CLI run."""
    if os.environ.get(SESSION):
        return os.environ[SESSION]
    if not _SERVER or _SERVER[0][0].poll() is not None:
        proc, token = start_server()
        atexit.register(stop_server, proc)
        _SERVER[:] = [(proc, token)]
    return _SERVER[0][1]


def tiny_config(runs: list[str] | None = None, iterations: int = ITERATIONS, base: Path = REPO / "config.yaml") -> dict:
    """config.yaml (or ``base``) with digits shrunk to seconds per job, targeting `runs` (default: all) × `iterations`."""
    cfg = yaml.safe_load(base.read_text())
    digits = cfg["datasets"]["digits"]
    digits.update(size=N, classifier_steps=30)
    digits["train"].update(steps=12, batch_size=16, warmup_steps=2)
    digits["sample"].update(inference_steps=4, batch_size=64)
    cfg["targets"] = {"datasets": ["digits"], "runs": list(runs or RUNS), "iterations": iterations}
    return cfg


def numpy_config(runs: list[str] | None = None, iterations: int = ITERATIONS) -> dict:
    """The tiny config on the kde generator (numpy, no torch: jobs start in a fraction of a second),
    FID in pixel space: for tests of the loop's plumbing (paradigms, manifests, selection, replicates,
    faults), where a DDPM adds nothing but minutes. tests/test_faults.py keeps the DDPM loop."""
    cfg = tiny_config(runs, iterations)
    cfg["datasets"]["digits"].update(model="kde", model_params={"bandwidth": 0.05}, fid_features="pixels")
    return cfg


def setting(path: str, value):
    """A config mutation: set the dotted key ``path`` (``datasets.digits.size``) to ``value``, or
    delete it when ``value`` is None."""
    def mutate(cfg: dict) -> None:
        *parents, key = path.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        if value is None:
            del node[key]
        else:
            node[key] = value
    return mutate


def make_workdir(path: Path, cfg: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def command(workdir: Path, *args: str, local: bool = True, warm: bool = True) -> list[str]:
    """`snakemake -s REPO/Snakefile --directory workdir [--cores 2 --resources=gpu=2] ARGS`, the
    command line every CLI test runs (local: run with LOCAL_ENV in the environment), under
    `python -m ouroboros.warm` for local runs, as `make demo` runs (warm=False: every job starts cold,
    as on a GPU box or a cluster; tests/test_warm.py checks that both give the same bytes)."""
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if local:
        cmd += ["--cores", "2", "--resources=gpu=2"]
        if warm:
            cmd = [sys.executable, "-m", "ouroboros.warm", *cmd]
    return [*cmd, *args]


def snakemake(workdir: Path, *args: str, env: dict | None = None, check: bool = True, local: bool = True,
              timeout: float = 900, cwd: Path | None = None, warm: bool = True,
              shared: bool = True) -> subprocess.CompletedProcess:
    """`snakemake -s REPO/Snakefile --directory workdir ARGS`; fails with its output unless check=False.

    local: run jobs here on 2 cores, two model jobs at a time (`--cores 2 --resources=gpu=2`);
    False leaves the executor and its limits to ARGS (e.g. `--profile`).
    timeout: a hard limit in seconds, so that a hanging run fails the test instead of the suite.
    warm, shared: local runs go through `python -m ouroboros.warm`, served by this process's shared
    server (``shared``) or by the wrapper's own; warm=False runs every job cold.
    """
    cmd = command(workdir, *args, local=local, warm=warm)
    full = {k: v for k, v in os.environ.items() if k != "OUROBOROS_WARM"}
    if local:
        full |= LOCAL_ENV
        if warm and shared:
            full["OUROBOROS_WARM"] = warm_server()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**full, **(env or {})}, timeout=timeout,
                              cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr))
        raise AssertionError(f"snakemake {' '.join(args) or '(default target)'} in {workdir} ran past its {timeout:.0f} s "
                             f"limit (several times its idle time: a hang, or a badly overloaded machine):\n"
                             f"{out[-4000:]}") from None
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc
