"""The user's own command at the paper's shape: `results/cifar/greedy/iter08/fid.json`, all eight
iterations, through the snakemake CLI, on the paper's CIFAR UNet with 32×32×3 images read by the
real CIFAR-10 loader, DINOv2 distances, Inception FID, FD_DINOv2 and the torchvision FID; and one
conditional, guided mnist-cfg target at iteration 2.

Only sizes, steps and batch sizes differ from the shipped config.yaml (and where the models live:
random-weight stand-ins of the real architectures in local directories, as an offline cluster
would point at its copies); `test_only_sizes_steps_and_batches_differ` checks exactly that.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path

import local_models
import numpy as np
import pytest
import yaml

from cli import REPO, make_workdir, snakemake

pytestmark = pytest.mark.cli

N = 8  # |D_n|
M = 4  # |D_n| of the mnist-cfg target, which samples under the forced GPU policy (fp16 convolutions on a CPU: slow)
TARGETS = ["results/cifar/greedy/iter08/fid.json", "results/mnist-cfg/replace-greedy/iter02/fid.json"]
# the keys the test may change: sizes, steps (epochs and warm-up), batch sizes, and model locations
SIZES = {"size", "train.epochs", "train.batch_size", "train.warmup_steps", "sample.inference_steps", "sample.batch_size"}
LOCATIONS = {"root", "dinov2", "fd_dinov2", "inception_weights", "torchvision_inception_weights"}


def _images(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth random pictures (a blurred noise field), not white noise: DINOv2 and Inception see edges."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, *shape)).cumsum(axis=1).cumsum(axis=2)
    x = (x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
    return np.round(255 * x).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 8) -> Path:
    """torchvision's cifar-10-batches-py layout: five training batches, a test batch and the meta
    file, each a pickled dict of (count, 3072) uint8 rows in CHW order and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        hwc = _images(per_batch, (32, 32, 3), seed=i)
        rows = hwc.transpose(0, 3, 1, 2).reshape(per_batch, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [int(v) % 10 for v in range(i, i + per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return root


def write_mnist(root: Path, count: int = 40) -> Path:
    """torchvision's MNIST/raw layout: idx files of 28×28 digits and their labels."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = _images(count, (28, 28), seed=7)
    labels = (np.arange(count) % 10).astype(np.uint8)

    def idx(path: Path, magic: int, array: np.ndarray) -> None:
        with open(path, "wb") as f:
            f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes())

    for split in ("train", "t10k"):
        idx(raw / f"{split}-images-idx3-ubyte", 2051, images)
        idx(raw / f"{split}-labels-idx1-ubyte", 2049, labels)
    return root


def paper_shape_config(tmp: Path, write_models: bool = True) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    models = tmp / "models"
    models.mkdir()
    made = (lambda write, path: write(path)) if write_models else (lambda write, path: str(path))
    dinov2 = made(local_models.dinov2_dir, models / "dinov2")  # 224 input with its processor, as facebook/dinov2-*
    cifar = cfg["datasets"]["cifar"]
    cifar.update(root=str(write_cifar10(tmp / "cifar10")), size=N, dinov2=dinov2, fd_dinov2=dinov2,
                 inception_weights=made(local_models.fidelity_inception_weights, models / "fidelity-inception.pth"),
                 torchvision_inception_weights=made(local_models.torchvision_inception_weights, models / "tv.pth"))
    cifar["train"].update(epochs=1, batch_size=8, warmup_steps=1)  # one step of batch N per iteration
    cifar["sample"].update(inference_steps=2, batch_size=8)
    cfg["datasets"]["mnist"].update(root=str(write_mnist(tmp / "mnist")), size=M, train={"epochs": 1},
                                    sample={"inference_steps": 1})
    return cfg


# Each target in a workdir of its own, both at once (one core each): the cifar chain under this
# machine's own policy, and the mnist-cfg target under the forced GPU policy (bf16 training, fp16
# sampling, channels-last, fused AdamW, device noise), so that the workflow's CUDA-only branches run
# through the CLI on the short chain; on a CPU, fp16 convolutions and the counter-based noise cost
# several times their fp32 and host-generator versions, which the 8-iteration chain would pay 8 times.
POLICIES = {TARGETS[0]: {}, TARGETS[1]: {"OUROBOROS_POLICY": "gpu"}}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> dict[str, Path]:
    """target → the workdir it was built in."""
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("paper-shape")
    cfg = paper_shape_config(tmp)
    workdirs = {t: make_workdir(tmp / f"work{i}", cfg) for i, t in enumerate(TARGETS)}
    with ThreadPoolExecutor(len(TARGETS)) as pool:
        runs = [pool.submit(snakemake, workdirs[t], t, "--cores", "1", "--resources=gpu=1", env=POLICIES[t], timeout=1800)
                for t in TARGETS]
        for run in runs:
            run.result()
    return workdirs


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_only_sizes_steps_and_batches_differ(tmp_path):
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    ours = paper_shape_config(tmp_path, write_models=False)
    for name in ("cifar", "mnist", "mnist-cfg"):
        a, b = _flat(shipped["datasets"][name]), _flat(ours["datasets"][name])
        changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        assert changed <= SIZES | LOCATIONS, (name, changed - SIZES - LOCATIONS)
    assert ours["runs"] == shipped["runs"]
    assert shipped["datasets"]["cifar"]["model"] == "cifar-paper" and ours["datasets"]["cifar"]["features"] == "dinov2"


@pytest.mark.parametrize(("target", "least"), [(TARGETS[0], 40), (TARGETS[1], 12)])
def test_the_users_target_makes_every_file_of_its_dag(done, target, least):
    out = snakemake(done[target], "--summary", target).stdout
    files = [line.split("\t")[0] for line in out.splitlines()[1:] if line.strip() and "\t" in line]
    assert len(files) > least
    missing = [f for f in files if not (done[target] / f).exists()]
    assert not missing, missing
    assert "Nothing to be done" in snakemake(done[target], "-n", target).stdout


def test_cifar_greedy_iter08_at_the_papers_shape(done):
    work = done[TARGETS[0]]
    results = work / "results/cifar"
    fid = json.loads((results / "greedy/iter08/fid.json").read_text())
    assert fid["feature_extractor"] == "inception"
    assert {"fid", "fd_dinov2", "fid_torchvision"} <= set(fid["values"])
    assert all(np.isfinite(v) and v >= 0 for v in fid["values"].values())
    for n in range(1, 9):
        folder = results / ("real" if n == 1 else "greedy") / f"iter{n:02d}"
        model = json.loads((folder / "model" / "unet" / "config.json").read_text())
        assert model["block_out_channels"] == [48, 48, 96, 96, 144, 144]  # §D.2's UNet
        policy = json.loads((folder / "model" / "training.json").read_text())["policy"]
        assert policy["kind"] == "cpu" and policy["train_precision"] == "no"  # this machine's own: fp32
        samples = np.load(folder / "samples.npy")
        assert samples.shape == (N, 32, 32, 3) and samples.dtype == np.uint8
        if n < 8:  # G_1 … G_7 are selected from, in DINOv2 space; G_8 is only evaluated
            assert np.load(folder / "features-dinov2.npy").shape == (N, 32)
        if n >= 2:
            manifest = (folder / "train.tsv").read_text()  # D_n, one row per image
            assert len(manifest.strip().splitlines()) == N + 1
            selection = json.loads((folder / "selection.json").read_text())
            assert selection["method"] == "greedy" and selection["feature_space"] == "dinov2"
            assert selection["pool_size"] == n * N  # the accumulate pool: D_1 and G_1 … G_(n-1)
    assert np.load(results / "greedy/iter08/features-inception.npy").shape == (N, 2048)
    assert "device policy cpu" in (work / "logs/cifar/greedy/iter08/train.log").read_text()


def test_mnist_cfg_is_conditional_and_guided_at_iteration_2(done):
    """The conditional loop trains on the labels its samples were drawn for: image i of class i mod 10."""
    work = done[TARGETS[1]]
    root = work / "results/mnist-cfg"
    folder = root / "replace-greedy/iter02"
    fid = json.loads((folder / "fid.json").read_text())
    assert np.isfinite(fid["values"]["fid"])
    model = json.loads((folder / "model" / "unet" / "config.json").read_text())
    assert model["block_out_channels"] == [64, 128, 256, 512] and model["num_class_embeds"] == 11  # + the null label
    first, ext = np.load(root / "real/iter01/labels.npy"), np.load(root / "real/iter01/x2/labels.npy")
    assert first.tolist() == [i % 10 for i in range(M)] and ext.tolist() == [i % 10 for i in range(M, 2 * M)]
    assert np.load(folder / "labels.npy").tolist() == [i % 10 for i in range(2 * M)]  # G_2: 2N samples
    assert np.load(folder / "samples.npy").shape == (2 * M, 32, 32, 1)  # MNIST padded to 32×32
    train_log = (work / "logs/mnist-cfg/replace-greedy/iter02/train.log").read_text()
    assert "conditional on 10 classes" in train_log and "device policy gpu (forced on the CPU)" in train_log
    policy = json.loads((folder / "model" / "training.json").read_text())["policy"]
    assert policy["kind"] == "gpu" and policy["channels_last"] and policy["fused_adamw"] and policy["noise"] == "device"
    assert re.search(r"guidance scale 2\.0", (work / "logs/mnist-cfg/replace-greedy/iter02/sample.log").read_text())
