"""An upgrade never replans finished GPU work: results made by the previous release are not rebuilt
by this one (profiles/default: rerun-triggers mtime, params, input; see the comment there)."""

import io
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from cli import LOCAL_ENV, REPO, SNAKEMAKE, make_workdir, tiny_config

# The last release before model directories took DDPMPipeline's layout (unet/, scheduler/,
# model_index.json) and this file was written: its models are flat save_pretrained files.
PREVIOUS = "28d6bfc"
CODE = ("Snakefile", "config.yaml", "workflow", "profiles", "envs", "src")


def checkout(commit: str, dest) -> None:
    """The workflow and library of ``commit`` (git archive: no worktree left registered in the repo)."""
    try:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", commit, *CODE], capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise AssertionError(f"git archive {commit} failed ({exc.stderr.decode()[-300:]}): this test needs the "
                             "repository's history (a full clone, not --depth 1)") from None
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def run(snakefile, workdir, *args, warm=False, timeout=900):
    """snakemake with ``snakefile``'s own library; ``warm``: under that library's own warm start (its
    server imports that checkout's modules; the test session's server holds this checkout's)."""
    env = {k: v for k, v in os.environ.items() if k != "OUROBOROS_WARM"} | LOCAL_ENV
    env["PYTHONPATH"] = str(snakefile.parent / "src")
    cmd = [SNAKEMAKE, "-s", str(snakefile), "--directory", str(workdir), "--cores", "2", "--resources=gpu=2", *args]
    if warm:
        cmd = [sys.executable, "-m", "ouroboros.warm", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.cli
def test_results_of_the_previous_release_are_not_replanned(tmp_path):
    old, new = tmp_path / "previous", tmp_path / "this"
    checkout(PREVIOUS, old)
    # the user's config, as the previous release shipped it: an upgrade must accept it unchanged
    cfg = tiny_config(["greedy"], 2, base=old / "config.yaml")
    cfg["datasets"]["digits"]["fid_features"] = "pixels"  # no classifier job: the DDPM is what costs GPU hours
    workdir = make_workdir(tmp_path / "run", cfg)
    run(old / "Snakefile", workdir, warm=True)
    assert (workdir / "results/digits/greedy/iter02/model/diffusion_pytorch_model.safetensors").is_file()  # flat
    # this release, its files newer than every result, as after a `git pull`
    new.mkdir()
    for name in CODE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, new / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, new / name)
    for path in new.rglob("*"):
        os.utime(path)
    plan = run(new / "Snakefile", workdir, "-n")
    assert "Nothing to be done" in plan, plan[-3000:]
    # the same config in this release's words: greedy renamed accumulate-greedy (its results directory
    # kept), samples as multiples of N; the same results, nothing replanned (its experiments still name
    # greedy: the old name, read with a note)
    renamed = dict(cfg, runs={("accumulate-greedy" if k == "greedy" else k): dict(v) for k, v in cfg["runs"].items()})
    renamed["runs"]["accumulate-greedy"]["directory"] = "greedy"
    for spec in renamed["runs"].values():
        if isinstance(spec.get("samples"), int):
            spec["samples"] = f"{spec['samples']}N"
    renamed["targets"] = dict(cfg["targets"], runs=["accumulate-greedy"])
    make_workdir(workdir, renamed)
    os.utime(workdir / "config.yaml", (0, 0))  # not newer than the results (an edit is no rerun trigger anyway)
    plan = run(new / "Snakefile", workdir, "-n")
    assert "Nothing to be done" in plan and "names greedy, the old name of runs.accumulate-greedy" in plan, plan[-3000:]
    # and what the previous release trained still samples with this one (this checkout's library, in
    # this process: new/src is its copy)
    from ouroboros import generators

    model = str(workdir / "results/digits/greedy/iter02/model")
    g = generators.of_model_dir(model)
    x, _ = g.sample(g.load(model), 0, 2, seed=1, inference_steps=2)
    assert (x.shape, x.dtype) == ((2, 8, 8, 1), "uint8")
