"""A job killed warm behaves as a job killed cold (issue 33): a pre-empted (SIGTERM) training writes
its checkpoint and stops, warm as cold; a job's next attempt removes the temporaries a killed one
left; the wrapper's death ends its tree, and a new run never starts beside jobs of the old one; and
the whole warm tree, killed one random process at a time, resumes to a cold run's files with
nothing left behind (OUROBOROS_KILLS raises the number of kills for a longer run by hand)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import LOCAL_ENV, command, make_workdir, numpy_config, snakemake, tiny_config, warm_server

pytestmark = pytest.mark.cli

ITER = "results/digits/real/iter01"
TARGET = f"{ITER}/model"  # D_1, then a DDPM trained on it: one data job and one model job
MODEL = f"{TARGET}/unet/diffusion_pytorch_model.safetensors"
TRAIN_LOG = "logs/digits/real/iter01/train.log"
# what an atomic write leaves while it runs (ouroboros.io): a dot, the name, a dot, then tempfile's
# random characters (and .tmp for a file), or a replaced directory moved aside
TEMPORARY = re.compile(r"\..+\.(?:[a-z0-9_]{8}(?:\.tmp)?|old)")


def ddpm_config() -> dict:
    """A training long enough to be caught mid-way, checkpointing after every step."""
    cfg = tiny_config(["replace"], 1)
    cfg["datasets"]["digits"]["train"].update(steps=24, checkpoint_minutes=1e-4)
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted training every pre-empted or killed one is compared with."""
    work = make_workdir(tmp_path_factory.mktemp("reference"), ddpm_config())
    snakemake(work, TARGET)
    return work


def temporaries(work: Path) -> list[str]:
    return sorted(str(p.relative_to(work)) for p in (work / "results").rglob("*") if TEMPORARY.fullmatch(p.name))


def processes_in(work: Path) -> list[int]:
    """Processes working in ``work`` (their directory, or their command line, names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            paths = [os.readlink(entry / "cwd"), *os.fsdecode((entry / "cmdline").read_bytes()).split("\0")]
        except OSError:
            continue
        if any(p == str(work) or p.startswith(f"{work}/") for p in paths):
            found.append(int(entry.name))
    return found


def wait(condition, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:.0f} s: {what}")
        time.sleep(0.05)


def ended(proc: subprocess.Popen, work: Path, limit: float) -> int:
    """The command's exit status; past ``limit`` seconds, an error that shows what still runs there and what
    the command printed (a hang to debug, not a slow machine: the limit is minutes past the work)."""
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        alive = []
        for pid in processes_in(work):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
                alive.append(f"{pid} {state} {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ')[:200]!r}")
            except OSError:
                continue
        raise AssertionError(f"still running after {limit:.0f} s:\n" + "\n".join(alive) + "\n--- run.out:\n"
                             + (work / "run.out").read_text()[-3000:]) from None


def job_process(work: Path, rule: str) -> int:
    """The process Snakemake started for the job of ``rule`` (a launcher: Python, Snakemake's script file)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if len(argv) >= 2 and os.path.basename(argv[0]).startswith(b"python") \
                and argv[-1].startswith(str(work / ".snakemake/scripts").encode()) and argv[-1].endswith(f".{rule}.py".encode()):
            found.append(int(entry.name))
    assert len(found) == 1, found
    return found[0]


def start(work: Path, *args: str, env: dict, shared: bool = True) -> subprocess.Popen:
    """The warm command in a session of its own, served by the test session's server (``shared``) or
    by the wrapper's own servers; its output goes to work/run.out."""
    full = {k: v for k, v in os.environ.items() if k != "OUROBOROS_WARM"} | LOCAL_ENV | env
    if shared:
        full["OUROBOROS_WARM"] = warm_server()
    with open(work / "run.out", "a") as out:
        return subprocess.Popen(command(work, *args), env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def pause_env(work: Path, stage: str) -> dict:
    """Pause the first job that reaches ``stage`` until work/release exists (ouroboros.runtime.pause_point)."""
    return {"OUROBOROS_PAUSE": stage, "OUROBOROS_PAUSE_ONCE": str(work / "paused"),
            "OUROBOROS_PAUSE_UNTIL": str(work / "release"), "OUROBOROS_PAUSE_SECONDS": "600"}


def assert_resumes_to_the_reference(work: Path, reference: Path, step: int) -> None:
    snakemake(work, TARGET)
    log = (work / TRAIN_LOG).read_text()
    assert f"resuming from {ITER}/train-checkpoint at step {step}\n" in log, log[-2000:]
    assert (work / MODEL).read_bytes() == (reference / MODEL).read_bytes()  # the same weights, bit for bit
    assert not (work / f"{ITER}/train-checkpoint").exists() and temporaries(work) == []


def assert_checkpointed(work: Path) -> int:
    """A complete checkpoint (no temporary beside it), and the step it resumes from."""
    assert temporaries(work) == [], temporaries(work)
    folder = work / f"{ITER}/train-checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optimizer.safetensors", "state.json",
                                                         "stats.jsonl"]
    return json.loads((folder / "state.json").read_text())["next_step"]


# --- 1. pre-emption honoured warm ----------------------------------------------------------------
@pytest.mark.parametrize("whom", ["job", "tree"])
def test_a_warm_training_given_sigterm_finishes_its_checkpoint_and_stops(reference, tmp_path, whom):
    """SIGTERM reaches the training job while its checkpoint is half written (paused there): sent to
    the job's process (as Snakemake or a user would; the test session's server), whose client passes
    it on to its worker and waits, or to the whole warm tree (as a scheduler pre-empting the run
    would; the wrapper's own servers), whose managers must live on: the write is finished, the job
    checkpoints its state, exits, and the next run resumes to the uninterrupted run's weights."""
    work = make_workdir(tmp_path / "work", ddpm_config())
    proc = start(work, TARGET, env=pause_env(work, "checkpoint"), shared=whom == "job")
    try:
        wait(lambda: (work / "paused").exists() or proc.poll() is not None, 300, "the checkpoint's write paused")
        if whom == "job":
            os.kill(job_process(work, "train"), signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        log = work / TRAIN_LOG
        wait(lambda: "pre-emption (signal 15) received" in log.read_text() or proc.poll() is not None, 240,
             "the worker got the SIGTERM")
        (work / "release").touch()
        assert ended(proc, work, 600) != 0  # a pre-empted job fails: Snakemake runs it again next time
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "pre-empted (SIGTERM) after step 1 of 24: checkpoint written" in log.read_text(), log.read_text()[-2000:]
    wait(lambda: not processes_in(work), 120, "no process of the job left")
    assert assert_checkpointed(work) == 1
    assert_resumes_to_the_reference(work, reference, 1)


# --- 2. no stray temporaries, warm or cold -----------------------------------------------------
def test_a_warm_job_killed_mid_checkpoint_leaves_a_temporary_that_its_next_attempt_removes(reference, tmp_path):
    work = make_workdir(tmp_path / "work", ddpm_config())
    proc = start(work, TARGET, env=pause_env(work, "checkpoint"))
    try:
        wait(lambda: (work / "paused").exists() or proc.poll() is not None, 300, "the checkpoint's write paused")
        os.kill(job_process(work, "train"), signal.SIGKILL)  # the job is gone: its manager kills its worker
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wait(lambda: not processes_in(work), 120, "no process of the killed job left")
    [stray] = temporaries(work)
    assert re.fullmatch(rf"{ITER}/\.train-checkpoint\.\w{{8}}", stray) and (work / stray / "model.safetensors").is_file()
    snakemake(work, TARGET)  # no checkpoint was complete: it starts over, and removes the stray first
    assert (work / MODEL).read_bytes() == (reference / MODEL).read_bytes() and temporaries(work) == []


def test_a_cold_job_killed_mid_write_leaves_a_temporary_that_its_next_attempt_removes(tmp_path):
    cfg = numpy_config(["replace"], 1)
    target = "results/digits/real/train.tsv"  # the data job: images.npy, labels.npy, then the manifest
    cold = make_workdir(tmp_path / "cold", cfg)
    snakemake(cold, target, warm=False)
    work = make_workdir(tmp_path / "work", cfg)
    full = {**os.environ, **LOCAL_ENV, **pause_env(work, "write")}
    proc = subprocess.Popen(command(work, target, warm=False), env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait(lambda: (work / "paused").exists() or proc.poll() is not None, 300, "the first write paused")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait(lambda: not processes_in(work), 120, "no process of the killed run left")
    assert re.fullmatch(r"results/digits/real/\.images\.npy\.\w{8}\.tmp", *temporaries(work))
    snakemake(work, target, warm=False)  # the workflow clears the dead run's lock itself
    assert temporaries(work) == []
    for name in ("images.npy", "labels.npy", "train.tsv"):
        assert (work / "results/digits/real" / name).read_bytes() == (cold / "results/digits/real" / name).read_bytes()


# --- 3. no overlap after the wrapper dies --------------------------------------------------------
def test_killing_the_wrapper_preempts_its_jobs_which_checkpoint_and_end(reference, tmp_path):
    """SIGKILL the wrapper (its own servers) while the training writes a checkpoint: its managers
    pass SIGTERM on to their workers at once, the training finishes that write, checkpoints and
    stops, and the whole tree is gone (a worker still running warm.GRACE = 60 s later is SIGKILLed)."""
    work = make_workdir(tmp_path / "work", ddpm_config())
    proc = start(work, TARGET, env=pause_env(work, "checkpoint"), shared=False)
    try:
        wait(lambda: (work / "paused").exists() or proc.poll() is not None, 300, "the checkpoint's write paused")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        log = work / TRAIN_LOG
        wait(lambda: "pre-emption (signal 15) received" in log.read_text() or not processes_in(work), 60,
             "the worker got its SIGTERM")
        (work / "release").touch()
        wait(lambda: not processes_in(work), 90, "the killed wrapper's tree ended")
    finally:
        for pid in processes_in(work):
            os.kill(pid, signal.SIGKILL)
    assert "pre-empted (SIGTERM) after step 1 of 24: checkpoint written" in log.read_text(), log.read_text()[-2000:]
    assert assert_checkpointed(work) == 1
    assert_resumes_to_the_reference(work, reference, 1)


def test_a_new_run_waits_for_the_jobs_of_an_earlier_one_or_refuses(tmp_path):
    """A job of a killed run still holds the directory's jobs lock (ouroboros.locks): a new run,
    `--unlock` or not, refuses with a message naming it, or waits for it to end, then runs."""
    cfg = numpy_config(["replace"], 1)
    target = "results/digits/real/train.tsv"
    work = make_workdir(tmp_path / "work", cfg)
    src = str(Path(__file__).resolve().parents[1] / "src")
    old_job = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {src!r}); "
                                "from ouroboros import locks; locks.hold_job(); print('held', flush=True); time.sleep(600)"],
                               cwd=work, stdout=subprocess.PIPE, text=True)
    try:
        assert old_job.stdout.readline() == "held\n"
        refused = snakemake(work, target, env={"OUROBOROS_WAIT_FOR_JOBS": "1"}, check=False)
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0 and f"jobs of an earlier run are still running there (pids {old_job.pid})" in out, \
            out[-3000:]
        assert not (work / "results").exists()
        assert snakemake(work, "--unlock", env={"OUROBOROS_WAIT_FOR_JOBS": "1"}, check=False).returncode != 0
        proc = start(work, target, env={})
        wait(lambda: "waiting up to 120 s for them to end" in (work / "run.out").read_text(), 120, "the run waits")
        assert not (work / "results").exists()
        old_job.kill()
        old_job.wait()
        assert proc.wait(timeout=300) == 0
    finally:
        old_job.kill()
        old_job.wait()
        old_job.stdout.close()
    assert (work / target).is_file()


# --- 4. the whole warm tree under random kills ---------------------------------------------------
KINDS = ("worker", "manager", "light server", "launcher", "snakemake", "wrapper")  # the wrapper is the model server


def _tree(root: int) -> dict[str, list[int]]:
    """The processes of the wrapper ``root`` (its session), by kind. The wrapper forks the light
    server first, then its managers; snakemake is its child that runs `_command()`; the light
    server forks a manager per job, which forks the job's worker; a launcher is a job's own
    process (Python running the launcher file with Snakemake's script file)."""
    procs: dict[int, tuple[int, int, list[bytes]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pid = int(entry.name)
            if os.getpgid(pid) != root:
                continue
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            procs[pid] = (int(fields[1]), int(fields[19]), (entry / "cmdline").read_bytes().split(b"\0"))
        except (OSError, ValueError):
            continue
    children = lambda parent: sorted((p for p, (pp, _, _) in procs.items() if pp == parent), key=lambda p: procs[p][1])  # noqa: E731
    kinds: dict[str, list[int]] = {kind: [] for kind in KINDS}
    if root in procs:
        kinds["wrapper"] = [root]
    forks = [p for p in children(root) if b"_command()" not in b" ".join(procs[p][2])]
    kinds["snakemake"] = [p for p in children(root) if b"_command()" in b" ".join(procs[p][2])]
    light = forks[:1]
    kinds["light server"] = light
    managers = [m for server in light for m in children(server)] + forks[1:]
    kinds["manager"] = managers
    kinds["worker"] = [w for m in managers for w in children(m)]
    kinds["launcher"] = [p for p, (_, _, argv) in procs.items() if len(argv) > 2 and b"/ouroboros-warm-" in argv[1]
                         and b"/.snakemake/scripts/" in argv[2] and os.path.basename(argv[0]).startswith(b"python")]
    return kinds


def _writers(work: Path) -> list[int]:
    """The processes writing a temporary under work/results (an atomic write under way)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(t.startswith(f"{work}/results/") and TEMPORARY.fullmatch(os.path.basename(t)) for t in targets):
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _results(work: Path) -> dict[str, object]:
    """Every file under results/ by its path: its bytes (selection.json: less its timing)."""
    out: dict[str, object] = {}
    for p in sorted((work / "results").rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "selection.json":
                data = {k: v for k, v in json.loads(data).items() if k != "seconds"}
            out[str(p.relative_to(work))] = data
    return out


def test_the_warm_tree_killed_at_random_resumes_to_the_cold_runs_files(tmp_path):
    """One random process of the warm tree SIGKILLed at a random moment (half of them while a job
    writes a file, its writes made slow), each kind at least once
    (OUROBOROS_KILLS: more, of random kinds), the same command run again after each kill: the files
    of a cold uninterrupted run, no temporary and no process left. OUROBOROS_KILL_SEED picks the run."""
    seed = int(os.environ.get("OUROBOROS_KILL_SEED", "33"))
    rng = random.Random(seed)
    count = max(len(KINDS), int(os.environ.get("OUROBOROS_KILLS", len(KINDS))))
    # the light server last: once it is dead the run's jobs go on cold, without workers or managers to kill
    others = [k for k in KINDS if k != "light server"]
    plan = [*rng.sample(others, len(others)), "light server", *(rng.choice(KINDS) for _ in range(count - len(KINDS)))]
    cfg = numpy_config(["greedy"], 2)
    cold = make_workdir(tmp_path / "cold", cfg)
    snakemake(cold, warm=False)
    want = _results(cold)
    work = make_workdir(tmp_path / "warm", cfg)
    # every atomic write takes 0.2 s more (ouroboros.runtime.pause_point): half of the kills land mid-write
    slow_writes = {"OUROBOROS_PAUSE": "write", "OUROBOROS_PAUSE_SECONDS": "0.2"}
    made: list[str] = []
    rounds = during_writes = 0
    while plan:  # a run, killed at random moments (several times while it goes on), then the same command again
        proc = start(work, env=slow_writes, shared=False)
        kills = len(made)
        try:
            deadline = time.monotonic() + 300
            mid_write = rng.random() < 0.5
            while plan and proc.poll() is None and time.monotonic() < deadline:
                tree = _tree(proc.pid)
                writing = _writers(work) if mid_write else []
                if tree[plan[0]] and tree["launcher"] and (writing or not mid_write):  # once a job has started
                    if not mid_write:
                        time.sleep(rng.uniform(0, 0.3))  # a random moment of its life
                    tree = _tree(proc.pid)
                    if candidates := tree[plan[0]]:
                        # mid-write: the writing job's worker or manager, where that is the kind
                        mine = [p for p in candidates if p in writing or set(writing) & set(_children(p))]
                        os.kill(rng.choice(mine or candidates), signal.SIGKILL)
                        made.append(plan.pop(0))
                        during_writes += bool(writing)
                        mid_write = rng.random() < 0.5
                time.sleep(0.02)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        ended = time.monotonic()
        wait(lambda: not processes_in(work), 120, f"the tree ended after kills of {made[kills:]} (seed {seed})")
        print(f"a run killed {made[kills:]} exited {proc.returncode}; its tree ended {time.monotonic() - ended:.1f} s later")
        if len(made) == kills and proc.returncode == 0:  # done before a kill: the loop's runs start over
            rounds += 1
            assert rounds < 5, f"five runs ended before a {plan[0]} could be killed (seed {seed})"
            shutil.rmtree(work / "results/digits/greedy")
    assert snakemake(work, shared=False, env=slow_writes).returncode == 0  # the last resume: every file
    got = _results(work)
    assert sorted(got) == sorted(want), (seed, set(got) ^ set(want))
    assert [f for f in want if got[f] != want[f]] == [], seed
    assert temporaries(work) == [] and processes_in(work) == []
    assert sorted(set(made)) == sorted(KINDS)
    print(f"kills made: {len(made)} ({', '.join(made)}; {during_writes} while a job wrote); files compared: {len(want)}; "
          f"temporaries left: {len(temporaries(work))}; processes left: {len(processes_in(work))}; seed {seed}")
