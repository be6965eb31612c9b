"""Faults through the real snakemake CLI on a tiny config: Snakemake SIGKILLed mid-training and
mid-selection, config mistakes, and bad files between jobs (docs/reliability.md)."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cli import LOCAL_ENV, command, make_workdir, setting, snakemake, tiny_config

pytestmark = pytest.mark.cli  # every test here runs the snakemake command line

RUN = "results/digits/greedy"
I2 = f"{RUN}/iter02"
MODEL = f"{I2}/model/unet/diffusion_pytorch_model.safetensors"


def chain_config() -> dict:
    """digits × greedy × 2 iterations; training long enough to be caught mid-way, checkpointing every step."""
    cfg = tiny_config(["greedy"], 2)
    cfg["datasets"]["digits"]["train"].update(steps=40, checkpoint_minutes=1e-4)
    # FID in pixels: the classifier's job and features (torch jobs) add nothing to a fault test; the
    # demo and tests/test_slurm.py run them through the CLI
    cfg["datasets"]["digits"]["fid_features"] = "pixels"
    cfg["gpus"] = {"count": 2, "slots_per_gpu": 1}  # two simulated devices: the DDPM's jobs take slots
    return cfg


def jobs(proc) -> dict[str, int]:
    """Snakemake's job-count table: rule → count (empty when nothing was planned)."""
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, flags=re.M)}


def output(proc) -> str:
    return proc.stdout + proc.stderr


def files(workdir: Path) -> dict[str, int]:
    """Every file under results/, with its mtime."""
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}


def incomplete(workdir: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (its markers are the paths, urlsafe-base64-encoded)."""
    folder = workdir / ".snakemake/incomplete"
    markers = [p.relative_to(folder).parts for p in folder.rglob("*") if p.is_file()]
    names = ["".join(part.lstrip("@") for part in parts) for parts in markers]
    return {base64.urlsafe_b64decode(n).decode() for n in names if n != "migration_underway"}


def kill_when(workdir: Path, ready, *args: str, env: dict | None = None, limit: float = 300) -> None:
    """Start the command in its own process group, SIGKILL the whole group once ``ready()`` holds,
    and wait until no process of the group is left."""
    log = open(workdir / "killed-run.out", "w")
    proc = subprocess.Popen(command(workdir, *args), start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **LOCAL_ENV, **(env or {})})
    try:
        deadline = time.time() + limit
        while not ready():
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"never caught mid-way:\n{(workdir / 'killed-run.out').read_text()[-4000:]}")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    for _ in range(100):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("a job of the killed run is still alive")


def rerun(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """The same command again. Snakemake's directory lock outlives a SIGKILL of Snakemake itself;
    the workflow sees its owner is dead, removes it and says so, and the command just runs."""
    assert list((workdir / ".snakemake/locks").glob("*.lock"))  # the killed run's lock is there
    again = snakemake(workdir, *args)
    assert "removed the directory locks of a killed run" in output(again), output(again)[-4000:]
    return again


@pytest.fixture(scope="module", autouse=True)
def simulated_devices_run_on_the_cpu_on_purpose():
    """The two simulated devices (gpus.count: 2) hand out slots on this CPU machine: a job given one would
    refuse to run without CUDA (ouroboros.cuda), so these runs choose the CPU explicitly."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OUROBOROS_POLICY", "cpu")
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every fault is compared with."""
    workdir = make_workdir(tmp_path_factory.mktemp("reference"), chain_config())
    snakemake(workdir)
    return workdir


def copy_of(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "work", symlinks=True))


def assert_same_results(workdir: Path, reference: Path) -> None:
    assert (workdir / MODEL).read_bytes() == (reference / MODEL).read_bytes()  # the same weights, bit for bit
    for samples in ("results/digits/real/iter01/samples.npy", f"{I2}/samples.npy"):
        np.testing.assert_array_equal(np.load(workdir / samples), np.load(reference / samples))
    for folder in (f"{RUN}/iter01", I2):
        for name in ("metrics.json", "fid.json"):
            got, want = (json.loads((w / folder / name).read_text()) for w in (workdir, reference))
            assert got["values"] == want["values"], (folder, name)


# --- the DDPM loop: device slots and fine-tuning -------------------------------------------------
def test_model_jobs_take_a_device_slot(reference):
    """With gpus.count: 2 each job that declares gpu=1 (the DDPM's train and sample) logs the device
    slot it held and loads torch; the others take none."""
    logs = reference / "logs"
    model_logs = [*logs.glob("digits/**/train.log"), *logs.glob("digits/**/sample.log")]
    assert len(model_logs) >= 4
    for log in model_logs:
        text = log.read_text()
        assert re.search(r"device: GPU [01] \(slot 0 of 1, .*\); CUDA_VISIBLE_DEVICES=[01]", text), log
        assert "libraries loaded: torch" in text, log
    for log in logs.glob("digits/**/evaluate.log"):
        assert "device:" not in log.read_text(), log


def test_fine_tuning_starts_from_the_previous_iterations_model(reference, tmp_path):
    work = copy_of(reference, tmp_path)
    cfg = chain_config()
    cfg["runs"]["replace-finetune"]["train"] = {"steps": 5}
    make_workdir(work, cfg)
    snakemake(work, "results/digits/replace-finetune/iter02/metrics.json")
    summary = json.loads((work / "results/digits/replace-finetune/iter02/model/training.json").read_text())
    assert summary["init_from"] == "results/digits/real/iter01/model" and summary["steps"] == 5
    scratch = json.loads((work / "results/digits/real/iter01/model/training.json").read_text())
    assert scratch["init_from"] is None and scratch["steps"] == 40
    assert "fine-tuning results/digits/real/iter01/model" in (work / "logs/digits/replace-finetune/iter02/train.log").read_text()


# --- Snakemake SIGKILLed mid-way ---------------------------------------------------------------
def test_sigkill_mid_training_resumes_from_the_checkpoint_and_reruns_nothing_else(reference, tmp_path):
    # the reference up to D_2: iteration 2's training and everything after it are still to run
    workdir = copy_of(reference, tmp_path)
    for name in ("model", "train-stats.jsonl", "samples.npy", "labels.npy", "features-pixels.npy",
                 "metrics.json", "fid.json"):
        target = workdir / I2 / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    state = workdir / f"{I2}/train-checkpoint/state.json"

    def mid_training() -> bool:
        try:
            return json.loads(state.read_text())["next_step"] >= 5
        except (OSError, ValueError):  # not written yet, or being replaced
            return False

    kill_when(workdir, mid_training)
    checkpointed = json.loads(state.read_text())["next_step"]
    assert not (workdir / f"{I2}/model").exists()  # the model directory appears whole or not at all
    assert {f"{I2}/model", f"{I2}/train-stats.jsonl"} <= incomplete(workdir)
    finished = {f: t for f, t in files(workdir).items() if f not in incomplete(workdir) and "train-checkpoint" not in f}
    assert f"{I2}/train.tsv" in finished and "results/digits/real/iter01/samples.npy" in finished

    again = rerun(workdir)
    counts = jobs(again)
    assert counts["train"] == 1 and not {"data", "classifier", "select"} & set(counts), counts
    assert {f: files(workdir)[f] for f in finished} == finished  # nothing finished before the kill ran again
    log = (workdir / "logs/digits/greedy/iter02/train.log").read_text()
    assert f"resuming from {I2}/train-checkpoint at step {checkpointed}\n" in log, log[-2000:]
    assert not (workdir / f"{I2}/train-checkpoint").exists()
    assert_same_results(workdir, reference)


def test_sigkill_mid_selection_leaves_nothing_that_looks_complete(reference, tmp_path):
    workdir = copy_of(reference, tmp_path)
    folder = workdir / I2
    for name in ("train.tsv", "selection.json"):
        (folder / name).unlink()
    target = f"{I2}/train.tsv"
    select_log = workdir / "logs/digits/greedy/iter02/select.log"
    select_log.unlink()

    def paused() -> bool:
        return select_log.is_file() and "paused in select" in select_log.read_text()

    kill_when(workdir, paused, target, env={"OUROBOROS_PAUSE": "select"})
    # killed between its two writes: the manifest is marked incomplete, selection.json was never written
    assert (folder / "train.tsv").is_file() and not (folder / "selection.json").exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left
    assert {f"{I2}/train.tsv", f"{I2}/selection.json"} <= incomplete(workdir)

    again = rerun(workdir, target)
    assert jobs(again) == {"select": 1, "total": 1}
    assert (folder / "train.tsv").read_bytes() == (reference / target).read_bytes()
    got, want = (json.loads((w / f"{I2}/selection.json").read_text()) for w in (workdir, reference))
    assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}


# --- config mistakes: one message naming the key, before any job -------------------------------
# Every config mistake is checked in-process in test_config.py; these show the message reaching
# the user through the CLI, from each place it can be raised: the schema, the checks across keys,
# and the target paths resolved while the DAG is built.
MISTAKES = {
    "unknown top-level key": (setting("seeds", 1), [], ["'seeds' was unexpected"]),
    "pool smaller than N": (setting("datasets.digits.size", 5000), [], ["datasets.digits.size"]),
    "unknown model preset": (setting("datasets.digits.model", "resnet-nope"), [],
                             ["datasets.digits.model = 'resnet-nope' is not a model preset"]),
    "unknown dataset in a target path": (None, ["results/nope/greedy/iter02/fid.json"], ["unknown dataset 'nope'"]),
    "unknown iteration in a target path": (None, [f"{RUN}/iter00/fid.json"], ["iter00 does not exist"]),
    "threshold without tau0": (setting("datasets.digits.tau0", None), ["results/digits/threshold/iter02/fid.json"],
                               ["runs.accumulate-threshold.tau0", "datasets.digits.tau0"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_config_mistakes_fail_before_any_job_naming_the_key(mistake, tmp_path):
    mutate, targets, expected = MISTAKES[mistake]
    cfg = chain_config()
    if mutate:
        mutate(cfg)
    proc = snakemake(make_workdir(tmp_path, cfg), "-n", *targets, check=False)
    out = output(proc)
    assert proc.returncode != 0, out[-3000:]
    assert jobs(proc) == {} and not (tmp_path / "results").exists()  # nothing planned, nothing written
    assert "Traceback (most recent call last)" not in out  # a message, not a crash
    for text in expected:
        assert text in out, (text, out[-3000:])


# --- bad files between jobs --------------------------------------------------------------------
class Canary:
    """Unpickling this creates a file: proof that a load unpickled."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def truncate(path: Path, workdir: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def drop_a_row(path: Path, workdir: Path) -> None:
    np.save(path, np.load(path)[:-1])


def poison(path: Path, workdir: Path) -> None:
    x = np.load(path)
    x[3, 5] = np.nan
    np.save(path, x)


def remove_weights(path: Path, workdir: Path) -> None:
    (path / "unet" / "diffusion_pytorch_model.safetensors").unlink()


def narrow(path: Path, workdir: Path) -> None:
    np.save(path, np.load(path)[:, :10])


def pickle_in(path: Path, workdir: Path) -> None:
    np.save(path, np.array([Canary(workdir / "unpickled")], dtype=object), allow_pickle=True)


BAD_FILES = {
    # corrupted file, how, outputs deleted so their jobs run (the last is the target), error after "<file>: "
    "truncated samples": (f"{I2}/samples.npy", truncate, [f"{I2}/features-pixels.npy", f"{I2}/metrics.json"],
                          r"not a readable \.npy array"),
    "features of the wrong shape": ("results/digits/real/iter01/features-pixels.npy", drop_a_row,
                                    [f"{I2}/selection.json", f"{I2}/train.tsv"], r"31 feature rows for 32 images"),
    "features of the wrong width": (f"{I2}/features-pixels.npy", narrow, [f"{I2}/metrics.json"],
                                    r"10 features per row where the files it is compared with have 64"),
    "NaN features": (f"{I2}/features-pixels.npy", poison, [f"{I2}/metrics.json"], r"contains NaN"),
    "model without its weights": (f"{I2}/model", remove_weights, [f"{I2}/samples.npy"],
                                  r"not a complete model directory \(needs unet/config\.json and unet/diffusion_pytorch_model"),
    "pickled features": (f"{I2}/features-pixels.npy", pickle_in, [f"{I2}/metrics.json"],
                         r"not a readable \.npy array \(.*allow_pickle"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_fails_its_consumer_naming_it_and_nothing_downstream_is_written(case, reference, tmp_path):
    bad, corrupt, downstream, error = BAD_FILES[case]
    workdir = copy_of(reference, tmp_path)
    corrupt(workdir / bad, workdir)
    for f in downstream:
        (workdir / f).unlink()
    proc = snakemake(workdir, downstream[-1], check=False)
    out = output(proc)
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"OuroborosError: " + re.escape(bad) + ": " + error, out), out[-4000:]
    assert not [f for f in downstream if (workdir / f).exists()]
    assert not list((workdir / "results").rglob(".*.tmp"))
    assert not (workdir / "unpickled").exists()  # the pickle was refused, never loaded
