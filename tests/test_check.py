"""The preflight (``ouroboros check``, ouroboros.preflight): each prerequisite missing in turn is reported
with its fix, on this CPU machine; one end-to-end run of the command and of the check at a snakemake
run's start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ouroboros import cli, features, preflight, weights
from ouroboros.config import parse
from ouroboros.errors import OuroborosError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
H100 = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
DRIVER = "550.54.15"


def stand_in_nvidia_smi(folder: Path) -> Path:
    """An nvidia-smi that lists one H100 with driver 550 (``-L`` and the ``--query-gpu`` fields asked here)."""
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\ncase "$*" in\n  *-L*) echo "{H100}";;\n'
                   f'  *name,driver_version*) echo "NVIDIA H100 80GB HBM3, {DRIVER}";;\n'
                   f'  *driver_version*) echo "{DRIVER}";;\n  *name*) echo "NVIDIA H100 80GB HBM3";;\n'
                   f'  *) echo "Driver Version: {DRIVER}   CUDA Version: 12.4";;\nesac\n')
    smi.chmod(0o755)
    return folder


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty Hugging Face cache and torch hub, no GPU, no device policy chosen: nothing resolves."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("CUDA_VISIBLE_DEVICES", "OUROBOROS_POLICY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin") + os.pathsep + "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cfg(**cifar):
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["datasets"]["cifar"].update(cifar)
    return parse(raw)


def job(rule, gpu=0, **wildcards):
    return preflight.Job(rule, wildcards, gpu)


# the cifar loop's jobs that read the source and run each network
CIFAR_JOBS = [job("data", dataset="cifar"), job("train", 1, dataset="cifar", branch="real", iter="01"),
              job("features", 1, dataset="cifar", folder="real", extractor="dinov2"),
              job("features", 1, dataset="cifar", folder="real", extractor="dinov2-fd"),
              job("features", 1, dataset="cifar", folder="real", extractor="inception")]


# --- cuda ---------------------------------------------------------------------------------------------------

def test_a_stand_in_h100_on_this_cuda_less_machine_is_the_cuda_problem(offline, monkeypatch):
    """nvidia-smi lists one H100; torch here has no usable CUDA: the GPU jobs would train on the CPU."""
    monkeypatch.setenv("PATH", str(stand_in_nvidia_smi(offline / "bin")) + os.pathsep + os.environ["PATH"])
    problems, note = preflight.cuda_problems(CIFAR_JOBS)
    assert [p.item for p in problems] == ["cuda"] and note == "cuda: torch cannot use the GPU"
    what, fix = problems[0].what, problems[0].fix
    assert what.startswith("4 planned GPU jobs would be given GPU slots on device 0 (gpus.count: auto), but torch")
    assert f"driver {DRIVER}" in what and "torch.cuda.is_available() = False" in what  # what it saw
    assert "--index-url https://download.pytorch.org/whl/cu124" in fix  # the wheel for driver 550's CUDA 12.4
    assert "OUROBOROS_POLICY=cpu" in fix  # or the CPU, by saying so


def diag(available: bool) -> dict:
    return {"torch": "2.14.1", "torch_cuda": "12.4", "available": available, "device_count": int(available),
            "warning": None, "driver": {"name": "NVIDIA H100 80GB HBM3", "version": DRIVER},
            "CUDA_VISIBLE_DEVICES": None, "SLURM_JOB_ID": None}


def test_no_gpu_a_cluster_or_an_explicit_policy_leave_cuda_alone(offline, monkeypatch):
    """No device here, a cluster's submitting node, a policy chosen by name, no GPU job: nothing to refuse."""
    def broken():
        return diag(False)

    def h100(gpus):
        return "GPU slots on device 0"

    assert preflight.cuda_problems(CIFAR_JOBS, diagnose=broken)[0] == []  # no nvidia-smi on PATH
    assert preflight.cuda_problems(CIFAR_JOBS, given=h100, diagnose=broken)[0] != []
    assert preflight.cuda_problems(CIFAR_JOBS, given=h100, diagnose=broken, cluster=True)[0] == []
    monkeypatch.setenv("OUROBOROS_POLICY", "cpu")
    assert preflight.cuda_problems(CIFAR_JOBS, given=h100, diagnose=broken)[0] == []
    monkeypatch.delenv("OUROBOROS_POLICY")
    assert preflight.cuda_problems([job("data", dataset="cifar")], given=h100, diagnose=broken)[0] == []
    problems, note = preflight.cuda_problems(CIFAR_JOBS, given=h100, diagnose=lambda: diag(True))
    assert problems == [] and note == "cuda: torch 2.14.1 uses CUDA 12.4 on GPU slots on device 0"
    # gpus.count as a number hands out slots as the jobs do (ouroboros.devices), nvidia-smi or not
    assert preflight.gpu_given({"count": 2}) == "GPU slots on devices 0,1 (gpus.count: 2)"
    assert preflight.gpu_given({"count": 0}) is None and preflight.gpu_given(None) is None


# --- data ---------------------------------------------------------------------------------------------------

def test_a_missing_cifar10_folder_names_torchvisions_download(offline):
    problems, _ = preflight.data_problems(CIFAR_JOBS, cfg())
    assert [p.item for p in problems] == ["data"]
    assert "resources/cifar10/cifar-10-batches-py no such folder" in problems[0].what
    assert ("python -c \"import torchvision; torchvision.datasets.CIFAR10('resources/cifar10', train=True, "
            "download=True)\"") in problems[0].fix
    assert "set datasets.cifar.root in config.yaml" in problems[0].fix
    folder = offline / "resources" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in preflight.CIFAR10_FILES[:-1]:
        (folder / name).write_bytes(b"")
    problems, _ = preflight.data_problems(CIFAR_JOBS, cfg())
    assert "lacks batches.meta" in problems[0].what  # incomplete: torchvision's reader would fail
    (folder / "batches.meta").write_bytes(b"")
    assert preflight.data_problems(CIFAR_JOBS, cfg())[0] == []
    # a job that reads no source (the data are staged already) needs none
    assert preflight.data_problems(CIFAR_JOBS[1:], cfg(root="elsewhere"))[0] == []


def test_mnist_and_an_image_folder_need_the_counts_the_config_asks(offline):
    from PIL import Image

    mnist = [job("data", dataset="mnist")]
    problems, _ = preflight.data_problems(mnist, cfg())
    assert "torchvision.datasets.MNIST('resources/mnist', train=True, download=True)" in problems[0].fix
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["datasets"]["ffhq"].update(root="faces", size=3)
    faces = offline / "faces"
    faces.mkdir()
    for i in range(2):
        Image.new("RGB", (4, 4)).save(faces / f"{i}.png")
    problems, _ = preflight.data_problems([job("data", dataset="ffhq")], parse(raw))
    assert "faces holds 2 .png/.jpg images; the planned jobs need 3" in problems[0].what
    assert "put at least 3 same-size .png or .jpg images under faces/" in problems[0].fix
    Image.new("RGB", (4, 4)).save(faces / "2.png")
    assert preflight.data_problems([job("data", dataset="ffhq")], parse(raw))[0] == []


# --- weights ------------------------------------------------------------------------------------------------

def test_missing_dinov2_weights_name_the_hf_download(offline):
    problems, _ = preflight.weights_problems(CIFAR_JOBS, cfg())
    by = {p.what.split(" ")[0]: p for p in problems}
    assert set(by) == {"dinov2", "dinov2-fd", "inception"}
    assert "facebook/dinov2-small is not in the Hugging Face cache" in by["dinov2"].what
    assert ("hf download facebook/dinov2-small --local-dir resources/dinov2-small" in by["dinov2"].fix
            and "set datasets.cifar.dinov2 in config.yaml to resources/dinov2-small" in by["dinov2"].fix)
    assert "hf download facebook/dinov2-large --local-dir resources/dinov2-large" in by["dinov2-fd"].fix
    assert "huggingface-cli" not in by["dinov2"].fix


def test_dinov2_resolves_from_a_local_directory_or_the_hub_cache(offline):
    from huggingface_hub import constants

    assert weights.dinov2_missing("resources/dinov2-small") == "resources/dinov2-small: no such directory"  # a path
    local = offline / "resources" / "dinov2-small"
    local.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        (local / name).write_text("{}")
    assert "lacks model.safetensors or pytorch_model.bin" in weights.dinov2_missing(str(local))
    (local / "model.safetensors").write_bytes(b"")
    assert weights.dinov2_missing(str(local)) is None
    assert weights.dinov2_missing("resources/dinov2-small") is None  # relative, as config.yaml gives it
    # the hub's cache layout: refs/main names the snapshot that holds the files
    repo = Path(constants.HF_HUB_CACHE) / "models--facebook--dinov2-large"
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    (snapshot / "config.json").write_text("{}")
    assert "no model.safetensors or pytorch_model.bin" in weights.dinov2_missing("facebook/dinov2-large", processor=False)
    (snapshot / "model.safetensors").write_bytes(b"")
    assert weights.dinov2_missing("facebook/dinov2-large", processor=False) is None
    problems, note = preflight.weights_problems(CIFAR_JOBS, cfg(dinov2=str(local)))
    assert [p.what.split(" ")[0] for p in problems] == ["inception"] and "dinov2-fd facebook/dinov2-large" in note


def test_missing_inception_weights_name_torch_fidelitys_file_and_where_it_looks(offline):
    problems, _ = preflight.weights_problems(CIFAR_JOBS[-1:], cfg())
    hub = offline / "torch" / "hub" / "checkpoints"
    assert [p.item for p in problems] == ["weights"]
    assert f"{hub / weights.FIDELITY_INCEPTION_FILE} does not exist" in problems[0].what
    fix = problems[0].fix
    assert f"curl -L --create-dirs -o resources/{weights.FIDELITY_INCEPTION_FILE} {weights.FIDELITY_INCEPTION_URL}" in fix
    assert f"set datasets.cifar.inception_weights in config.yaml to resources/{weights.FIDELITY_INCEPTION_FILE}" in fix
    assert f"put the file in {hub}/" in fix
    hub.mkdir(parents=True)
    (hub / weights.FIDELITY_INCEPTION_FILE).write_bytes(b"")
    assert preflight.weights_problems(CIFAR_JOBS[-1:], cfg())[0] == []
    # pytorch-fid's file is another one: its keys do not load into torch-fidelity's network
    (offline / weights.PYTORCH_FID_INCEPTION_FILE).write_bytes(b"")
    problems, _ = preflight.weights_problems(CIFAR_JOBS[-1:], cfg(inception_weights=weights.PYTORCH_FID_INCEPTION_FILE))
    assert "is pytorch-fid's file; torch-fidelity loads weights-inception-2015-12-05-6726825d.pth" in problems[0].what
    torchvision = [job("features", 1, dataset="cifar", folder="real", extractor="inception-torchvision")]
    problems, _ = preflight.weights_problems(torchvision, cfg(torchvision_inception_weights="tv.pth"))
    assert "tv.pth: no such file" in problems[0].what and weights.TORCHVISION_INCEPTION_URL in problems[0].fix


def test_the_url_is_torch_fidelitys_and_the_extractors_word_the_same_fixes(offline):
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert weights.FIDELITY_INCEPTION_URL == URL_INCEPTION_V3
    with pytest.raises(OuroborosError) as dino:
        features._from_pretrained(lambda m: (_ for _ in ()).throw(OSError("offline")), "facebook/dinov2-small",
                                  "datasets.cifar.dinov2")
    assert weights.dinov2_fix("facebook/dinov2-small", "datasets.cifar.dinov2") in str(dino.value)
    assert "huggingface-cli" not in str(dino.value)
    with pytest.raises(OuroborosError) as inception:
        features.inception(__import__("numpy").zeros((1, 8, 8, 3), "uint8"), str(offline / "missing.pth"), dataset="cifar")
    assert weights.inception_fix("datasets.cifar.inception_weights") in str(inception.value)


# --- disk ---------------------------------------------------------------------------------------------------

def test_the_disk_estimate_has_known_answers_and_too_little_space_is_a_problem(offline):
    c = cfg()
    micro8 = preflight.PRESET_PARAMETERS["micro8"]
    train = job("train", 1, dataset="digits", branch="real", iter="01")
    assert preflight.job_bytes(train, c) == (micro8 * 4, 2 * micro8 * 4 * 3)  # weights; checkpoint: + AdamW's moments
    sample = job("sample", 1, dataset="cifar", producer="real/iter01")
    assert preflight.job_bytes(sample, c) == (32768 * (32 * 32 * 3 + 8), 0)  # uint8 images and int64 labels
    dino = job("features", 1, dataset="cifar", folder="greedy/iter02", extractor="dinov2")
    assert preflight.job_bytes(dino, c) == (32768 * 384 * 4, 0)  # ViT-S/14's CLS token, float32
    need = 32768 * (3072 + 8) + 32768 * 384 * 4
    problems, note, (needed, free) = preflight.disk_problems([sample, dino], c, free=lambda where: 10**8)
    assert needed == need and free == 10**8 and "need about 151.3 MB" in note
    assert [p.item for p in problems] == ["disk"]
    assert "but" in problems[0].what and "has 100.0 MB free" in problems[0].what
    assert "free 66.4 MB there, or run from a working directory on a larger disk" in problems[0].fix
    assert preflight.disk_problems([sample, dino], c, free=lambda where: 10**9)[0] == []


def test_preset_parameter_counts_are_diffusers_own():
    import torch

    from ouroboros import models

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        for name in models.PRESETS:
            assert preflight.PRESET_PARAMETERS[name] == sum(p.numel() for p in models.build(name).parameters()), name


# --- the whole check and the command line -------------------------------------------------------------------

def test_every_problem_at_once_with_its_fix(offline, monkeypatch):
    monkeypatch.setenv("PATH", str(stand_in_nvidia_smi(offline / "bin")) + os.pathsep + os.environ["PATH"])
    report = preflight.check(CIFAR_JOBS, cfg(), free=lambda where: 1000)
    assert not report.ok and [p.item for p in report.problems] == ["cuda", "data", "weights", "weights", "weights", "disk"]
    text = report.text()
    assert text.startswith("planned: 5 jobs (4 on a GPU): data 1, features 3, train 1")
    assert "6 problems before any job starts:" in text and text.count("   fix: ") == 6


def test_at_start_checks_only_runs_with_gpu_jobs(offline):
    """The snakemake hook: nothing without a GPU job; with one, the report only when something is missing."""
    class Rule:
        name = "train"

    class DagJob:
        rule, wildcards, output = Rule, {"dataset": "digits", "branch": "real", "iter": "01"}, ["m"]

        def __init__(self, gpu):
            self.resources = {"gpu": gpu}

    said = []
    assert preflight.at_start([DagJob(0)], cfg(), local=True, log=said.append) is None and said == []
    assert preflight.at_start([DagJob(1)], cfg(), local=True, log=said.append) is None
    assert said and "data: no source read" in said[0] and "cuda: no GPU on this machine" in said[0]
    assert "cost on cpu" in said[0] and "all prerequisites of the planned jobs are present" in said[0]


def test_at_start_is_skipped_on_the_users_word(offline, monkeypatch):
    """OUROBOROS_PREFLIGHT=0: no check at a run's start, even with a GPU that torch cannot use in
    sight (the jobs themselves still refuse it, tests/test_cuda.py)."""
    class Rule:
        name = "train"

    class DagJob:
        rule, wildcards, output, resources = Rule, {"dataset": "cifar", "branch": "real", "iter": "01"}, ["m"], {"gpu": 1}

    monkeypatch.setenv("PATH", str(stand_in_nvidia_smi(offline / "bin")) + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("OUROBOROS_POLICY", raising=False)
    assert preflight.at_start([DagJob()], cfg(), local=True, log=print) is not None  # missing data, CUDA, ...
    said = []
    monkeypatch.setenv(preflight.SKIP, "0")
    assert preflight.at_start([DagJob()], cfg(), local=True, log=said.append) is None
    assert said == ["preflight skipped (OUROBOROS_PREFLIGHT=0)"]


def test_the_cost_table_prices_the_planned_jobs_with_each_rates_basis():
    """FLOPs and hours by rule from ouroboros.costs, on this machine's class or a named one."""
    from ouroboros import costs

    table = preflight.cost_table(CIFAR_JOBS, cfg(), device="H100")
    lines = table.splitlines()
    assert lines[0] == "cost on H100 (ouroboros/rates.yaml):" and lines[1].startswith("rule") and "basis (H100)" in lines[1]
    train = next(line for line in lines if line.startswith("train"))
    work = costs.job_work("train", CIFAR_JOBS[1].wildcards, cfg())
    assert f"{work.flops:10.3g}" in train and "H100: estimate" in train  # a stated estimate until a GPU check measures it
    assert lines[-1].startswith("total") and preflight.cost_table(CIFAR_JOBS[:1], cfg()).endswith("no planned job runs a model")
    # an estimate the cost model cannot make is said, and never hides the check's problems or stops a run
    assert "not estimated (costs: cannot tell the DINOv2 size" in preflight.cost_table(CIFAR_JOBS, cfg(dinov2="models/dino"))


def test_the_executor_comes_from_the_option_or_the_profile():
    def executor(*argv):
        return cli._executor(cli.parser().parse_args(["check", *argv]))

    assert executor() == "local" and executor("--executor", "slurm") == "slurm"
    assert executor("--profile", str(REPO / "profiles/slurm")) == "slurm"
    assert executor("--profile", str(REPO / "profiles/default")) == "local"


def test_help_at_every_level(capsys):
    for argv in (["--help"], ["check", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "check" in out and "TARGET" in out and "--directory" in out


@pytest.mark.cli
def test_ouroboros_check_lists_every_missing_prerequisite_and_passes_the_demo(tmp_path):
    """The user's target on this CPU machine with a stand-in H100: exit 1 and every fix; the same check at
    the start of `snakemake --cores 8 TARGET` stops the run in seconds; the demo's target: exit 0."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch"), "SLURM_CONF": "/dev/null",
           "PATH": str(stand_in_nvidia_smi(tmp_path / "bin")) + os.pathsep + os.environ["PATH"]}
    for var in ("CUDA_VISIBLE_DEVICES", "OUROBOROS_POLICY", "OUROBOROS_WARM"):
        env.pop(var, None)
    target = "results/cifar/greedy/iter08/fid.json"
    fixes = ["download.pytorch.org/whl", "torchvision.datasets.CIFAR10('resources/cifar10', train=True, download=True)",
             "hf download facebook/dinov2-small --local-dir resources/dinov2-small",
             "hf download facebook/dinov2-large --local-dir resources/dinov2-large",
             f"curl -L --create-dirs -o resources/{weights.FIDELITY_INCEPTION_FILE}"]
    check = subprocess.run([sys.executable, "-m", "ouroboros", "check", "-d", str(work), target], env=env,
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "5 problems before any job starts" in check.stdout and "train 8" in check.stdout, check.stdout
    assert "cost on H100 (ouroboros/rates.yaml)" in check.stdout and "H100: estimate" in check.stdout  # the stand-in's class
    for fix in fixes:
        assert fix in check.stdout, (fix, check.stdout)
    run = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile"), "--cores", "8",
                          target], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and not (work / "results").exists(), run.stdout + run.stderr
    for fix in fixes:
        assert fix in run.stderr, (fix, run.stderr[-4000:])
    cpu = {**env, "PATH": os.environ["PATH"]}  # this machine as it is: no GPU
    demo = subprocess.run([sys.executable, "-m", "ouroboros", "check", "-d", str(work)], env=cpu,
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0 and "all prerequisites of the planned jobs are present" in demo.stdout, demo.stdout + demo.stderr
