"""Throughput on one device, within a time budget, its JSON rewritten after every part.

Measures, on random data and random weights (no network):
- ``train``: training images/s with 1, 2, 4 … trainings running at once on the device (separate
  processes, as Snakemake runs them with ``gpus.slots_per_gpu`` = 1, 2, 4), summed over the processes;
- ``sample``: sampling image-steps/s (images × denoising steps) at batch 256 … 4096;
- ``features``: images/s of the DINOv2 models the cifar entry of config.yaml names (ViT-S/14 for the
  authors' distances, ViT-L/14 for FD_DINOv2) and of InceptionV3 at 299 × 299 (FID);
each with its FLOP/s by ouroboros.costs' counts (the projections of whole runs are
benchmarks/gpu_check.py's projection phase, from ouroboros.costs).

The budget (``--budget`` seconds) is shared among the parts (``SHARES``); a part that passes its
share is stopped (a training worker killed, an in-process part interrupted by an alarm) and recorded
as ``overrun`` with what it had measured, and the next part runs. Without usable CUDA the script
refuses unless told to run on the CPU (``--cpu``, or OUROBOROS_POLICY set to cpu or gpu).

    python benchmarks/gpu_throughput.py --out gpu_throughput.json [--budget 150] [--preset cifar-paper] [--tiny]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

PARTS = ("train", "sample", "features")
SHARES = {"train": 0.45, "sample": 0.25, "features": 0.30}


class Overrun(BaseException):
    """An in-process part passed its share of the budget (a BaseException, as KeyboardInterrupt: no
    library's ``except Exception`` turns it into another error on its way up)."""


def _gpu_check():
    """benchmarks/gpu_check.py as a module (its CUDA refusal), by path: benchmarks/ stays off sys.path."""
    import importlib.util

    if "gpu_check" in sys.modules:
        return sys.modules["gpu_check"]
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, report: dict) -> None:
    """The whole report, atomically (ouroboros.io): a reader sees the previous version or this one, never half."""
    from ouroboros.io import save_json

    save_json(path, report)


def dinov2_sizes() -> dict[str, str]:
    """The DINOv2 models the cifar entry of config.yaml computes features with: ``dinov2`` (the
    authors' distance space) and ``fd_dinov2`` (FD_DINOv2) where set, by their config key."""
    import yaml

    cifar = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["cifar"]
    return {key: cifar[key] for key in ("dinov2", "fd_dinov2") if cifar.get(key)}


def train_worker(preset: str, steps: int, batch: int, images: int, out: str) -> None:
    """One training process: prints its images/s once done (warm-up steps excluded)."""
    import numpy as np

    from ouroboros import models, train
    from ouroboros.config import TrainConfig

    spec = models.preset(preset)
    data = np.random.default_rng(0).integers(0, 256, (images, spec["sample_size"], spec["sample_size"],
                                                      spec["in_channels"]), dtype=np.uint8)
    warm = max(2, steps // 10)
    train.train(data, preset, TrainConfig(steps=warm, batch_size=batch, warmup_steps=1), seed=0,
                out_dir=f"{out}/warm", progress=False)
    seconds = train.train(data, preset, TrainConfig(steps=steps, batch_size=batch, warmup_steps=1), seed=0,
                          out_dir=f"{out}/run", progress=False)["seconds"]
    print(json.dumps({"images_per_second": steps * batch / max(seconds, 1e-9)}), flush=True)


def concurrent_training(k: int, args, scratch: Path, deadline: float) -> float:
    """Summed images/s of k trainings started together on the device (separate processes), all
    killed at the deadline."""
    cmd = [sys.executable, __file__, "--worker", "--preset", args.preset, "--train-steps", str(args.train_steps),
           "--batch-size", str(args.batch_size), "--images", str(args.images)]
    procs = [subprocess.Popen([*cmd, "--out", str(scratch / f"k{k}-{i}")], stdout=subprocess.PIPE, text=True,
                              start_new_session=True) for i in range(k)]
    rates = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            if p.returncode:
                raise RuntimeError(f"training worker failed ({p.returncode})")
            rates.append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
    except subprocess.TimeoutExpired:
        raise Overrun(f"{k} trainings at once did not finish within the share") from None
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            p.stdout.close()
    return sum(rates)


_ARMED: list = []  # while an in-process part runs: the unraisable hook it replaced


def _alarm(seconds: float):
    """Interrupt the running part with Overrun after ``seconds``, and again every 0.1 s until _disarm.
    Where the alarm lands in code whose exceptions Python only reports (a finalizer, a weakref
    callback the garbage collector runs), the part runs on: the report is dropped and the next ring
    stops the part."""
    def ring(*_):
        if _ARMED:
            raise Overrun("passed its share of the budget")

    previous = sys.unraisablehook

    def report(unraisable) -> None:
        if not isinstance(unraisable.exc_value, Overrun):
            previous(unraisable)

    signal.signal(signal.SIGALRM, ring)
    _ARMED[:] = [previous]
    sys.unraisablehook = report
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01), 0.1)


def _disarm() -> None:
    previous = _ARMED.pop() if _ARMED else None  # first: a ring already due finds the part disarmed
    signal.setitimer(signal.ITIMER_REAL, 0)
    if previous is not None:
        sys.unraisablehook = previous


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def part_sample(args, result: dict, device, torch) -> None:
    from ouroboros import costs, models, sample, train

    unet = models.build(args.preset).to(device).eval()
    rates = result.setdefault("sample_images_steps_per_second", {})  # images × denoising steps per second
    for batch in map(int, args.sample_batches.split(",")):
        sample.sample(unet, train.scheduler(), 0, batch, seed=0, inference_steps=2, batch_size=batch, progress=False)
        _sync(torch)
        start = time.perf_counter()
        sample.sample(unet, train.scheduler(), 0, batch, seed=0, inference_steps=args.sample_steps, batch_size=batch,
                      progress=False)
        _sync(torch)
        rates[str(batch)] = round(batch * args.sample_steps / (time.perf_counter() - start), 1)
        result.setdefault("flops_per_second", {})[f"sample, batch {batch}"] = rates[str(batch)] * costs.forward_flops(args.preset)


def part_features(args, result: dict, device, torch) -> None:
    import numpy as np
    import torchvision
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from ouroboros import costs, features

    images = np.random.default_rng(0).integers(0, 256, (args.feature_images, 32, 32, 3), dtype=np.uint8)
    rates = result.setdefault("feature_images_per_second", {})
    flops = result.setdefault("flops_per_second", {})
    for key, model in dinov2_sizes().items():  # the config's own models: ViT-S for distances, ViT-L for FD_DINOv2
        size = costs.dinov2_size(model)
        width, depth = costs.DINOV2[size]
        dims = dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=width // 64, intermediate_size=4 * width)
        if args.tiny:
            dims = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        with tempfile.TemporaryDirectory() as tmp:
            # the architecture of facebook/dinov2-{size} with random weights, through the real loading path
            Dinov2Model(Dinov2Config(**dims, patch_size=14, image_size=518)).save_pretrained(tmp)
            BitImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 256}).save_pretrained(tmp)
            features.dinov2(images[: min(8, len(images))], tmp)  # warm-up
            _sync(torch)
            start = time.perf_counter()
            features.dinov2(images, tmp)
            _sync(torch)
            label = f"{key} ({model}: dinov2-{size})"
            rates[label] = round(len(images) / (time.perf_counter() - start), 1)
            flops[label] = rates[label] * costs.extractor_flops("dinov2", model)
    # InceptionV3's architecture at 299 × 299 (torchvision's; torch-fidelity's FID network has the same
    # layers), random weights: its cost, not its features
    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).to(device).eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)
    with torch.inference_mode():
        inception(torch.nn.functional.interpolate(x[:8], size=(299, 299), mode="bilinear"))
        _sync(torch)
        start = time.perf_counter()
        for lo in range(0, len(x), 256):
            inception(torch.nn.functional.interpolate(x[lo:lo + 256], size=(299, 299), mode="bilinear"))
        _sync(torch)
    rates["inception_v3"] = round(len(images) / (time.perf_counter() - start), 1)
    flops["inception_v3"] = rates["inception_v3"] * costs.extractor_flops("inception")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar-paper")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--concurrency", default="1,2,4")
    ap.add_argument("--sample-batches", default="256,512,1024,2048,4096")
    ap.add_argument("--sample-steps", type=int, default=20, help="denoising steps timed per sampling batch")
    ap.add_argument("--feature-images", type=int, default=2048)
    ap.add_argument("--budget", type=float, default=150.0, help="seconds for all parts together")
    ap.add_argument("--tiny", action="store_true", help="tiny ViTs instead of the configured DINOv2 sizes (CPU tests)")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (refused otherwise where CUDA is unusable)")
    ap.add_argument("--out", default="gpu_throughput.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return train_worker(args.preset, args.train_steps, args.batch_size, args.images, args.out)
    started = time.monotonic()
    if args.cpu:
        os.environ.setdefault("OUROBOROS_POLICY", "cpu")
    _gpu_check().require_cuda(args.cpu, "the throughput sweep (benchmarks/gpu_throughput.py)")

    import torch

    from ouroboros import costs

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    torch.backends.cudnn.benchmark = True
    scratch = Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    out = Path(args.out)
    result: dict = {"device": name, "device_class": costs.device_class(name), "torch": torch.__version__, "args": vars(args),
                    "forward_flops_per_image": costs.forward_flops(args.preset), "parts": {}}
    write(out, result)
    deadline = started
    for part in PARTS:
        deadline += SHARES[part] * args.budget
        part_started = time.monotonic()
        status = "ok"
        try:
            if part == "train":
                rates = result.setdefault("train_images_per_second", {})
                for k in map(int, args.concurrency.split(",")):
                    rates[str(k)] = round(concurrent_training(k, args, scratch, deadline), 1)
                    result.setdefault("flops_per_second", {})[f"train, {k} at once"] = (
                        rates[str(k)] * costs.TRAIN_FORWARDS * costs.forward_flops(args.preset))
                    write(out, result)
            else:
                _alarm(deadline - time.monotonic())
                try:
                    (part_sample if part == "sample" else part_features)(args, result, device, torch)
                finally:
                    _disarm()
        except Overrun as exc:
            _disarm()  # a repeat that rang before the finally above disarmed it lands here: none after this
            status = f"overrun: {exc}"
        except Exception as exc:  # noqa: BLE001 - recorded; the next part runs
            status = f"failed: {exc.__class__.__name__}: {str(exc)[:500]}"
        result["parts"][part] = {"status": status, "seconds": round(time.monotonic() - part_started, 1),
                                 "share_s": round(SHARES[part] * args.budget, 1)}
        write(out, result)
        print(f"{part:9s} {status[:60]:60s} {result['parts'][part]['seconds']:7.1f} s", flush=True)
    for k, v in result.get("train_images_per_second", {}).items():
        print(f"train, {k} at once: {v:12.1f} images/s (summed)")
    for k, v in result.get("sample_images_steps_per_second", {}).items():
        print(f"sample, batch {k:>5s}: {v:12.1f} images × steps/s")
    for k, v in result.get("feature_images_per_second", {}).items():
        print(f"features {k:14s}: {v:10.1f} images/s")
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ouroboros.errors import OuroborosError

    try:
        main()
    except OuroborosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
