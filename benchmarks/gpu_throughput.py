"""Throughput on one device and what it projects for Figure 3 (docs/gpu.md).

Measures, on random data and random weights (no network):
- training images/s with 1, 2 and 4 trainings running at once on the device (separate processes,
  as Snakemake runs them with ``gpus.slots_per_gpu`` = 1, 2, 4), summed over the processes;
- sampling images/s (per denoising step) at batch 256 … 4096;
- feature images/s of the DINOv2 models the cifar entry of config.yaml names (ViT-S/14 for the
  authors' distances, ViT-L/14 for FD_DINOv2) and of InceptionV3 (FID);
and projects Figure 3's device-hours from them (``fig3_hours``), beside the bound set by the
device's peak dense bf16 FLOP/s (FLOPs counted by torch's FlopCounterMode).

    python benchmarks/gpu_throughput.py --out gpu_throughput.json [--preset cifar-paper]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

# Figure 3 (config.yaml experiment fig03): cifar (N = 32,768, 500 epochs of batch 128, 1,000 DDPM
# steps), runs accumulate and greedy, 8 iterations; iteration 1 is shared.
FIG3 = dict(n=32768, epochs=500, batch=128, inference_steps=1000, trainings=1 + 2 * 7)
# dense bf16 tensor-core peaks (vendor data sheets, no sparsity), by a substring of the device name
PEAK_BF16 = {"H200": 989e12, "H100 SXM": 989e12, "H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H100": 756e12,
             "A100": 312e12, "L40S": 362e12, "A10": 125e12, "V100": 125e12}


def fig3_hours(train_ips: float, sample_ips: float, feature_ips: dict[str, float], *, n: int = FIG3["n"],
               epochs: int = FIG3["epochs"], inference_steps: int = FIG3["inference_steps"],
               trainings: int = FIG3["trainings"]) -> dict[str, float]:
    """Device-hours of Figure 3 from throughputs (images/s; ``sample_ips`` per denoising step;
    ``feature_ips`` per extractor the config uses).

    Every training sees epochs × N images; every model samples N images of ``inference_steps``
    steps (G_n, and iteration 8's for its metrics); each extractor's features cover D_1 and every
    G_n. Selection and metrics are left out (minutes; docs/performance.md).
    """
    sets = trainings + 1  # the real D_1 and one G_n per model
    hours = {
        "train": trainings * epochs * n / train_ips / 3600,
        "sample": trainings * n * inference_steps / sample_ips / 3600,
    } | {name: sets * n / ips / 3600 for name, ips in feature_ips.items()}
    hours["total"] = sum(hours.values())
    return hours


def fig3_flops(unet_forward: float, feature_forward: dict[str, float], *, n: int = FIG3["n"],
               epochs: int = FIG3["epochs"], inference_steps: int = FIG3["inference_steps"],
               trainings: int = FIG3["trainings"]) -> float:
    """FLOPs of Figure 3 from per-image forward FLOPs; a training step costs 3 forwards (forward,
    and backward's two products)."""
    sets = trainings + 1
    return (trainings * epochs * n * 3 * unet_forward + trainings * n * inference_steps * unet_forward
            + sets * n * sum(feature_forward.values()))


def dinov2_sizes() -> dict[str, str]:
    """The DINOv2 models the cifar entry of config.yaml computes features with: ``dinov2`` (the
    authors' distance space) and ``fd_dinov2`` (FD_DINOv2) where set, by their config key."""
    import yaml

    cifar = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["cifar"]
    return {key: cifar[key] for key in ("dinov2", "fd_dinov2") if cifar.get(key)}


DINOV2_DIMS = {  # facebook/dinov2-{small,base,large,giant}'s architectures
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def peak_flops(name: str) -> float | None:
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def forward_flops(module, *inputs) -> float:
    """FLOPs of one forward call (torch.utils.flop_counter: 2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return float(counter.get_total_flops())


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
    start = time.perf_counter()
    train.train(data, preset, TrainConfig(steps=steps, batch_size=batch, warmup_steps=1), seed=0,
                out_dir=f"{out}/run", progress=False)
    print(json.dumps({"images_per_second": steps * batch / (time.perf_counter() - start)}), flush=True)


def concurrent_training(k: int, args, scratch: Path) -> float:
    """Summed images/s of k trainings started together on the device (separate processes)."""
    cmd = [sys.executable, __file__, "--worker", "--preset", args.preset, "--train-steps", str(args.train_steps),
           "--batch-size", str(args.batch_size), "--images", str(args.images)]
    procs = [subprocess.Popen([*cmd, "--out", str(scratch / f"k{k}-{i}")], stdout=subprocess.PIPE, text=True)
             for i in range(k)]
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"training worker failed ({p.returncode})")
        rates.append(json.loads(out.strip().splitlines()[-1])["images_per_second"])
    return sum(rates)


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
    ap.add_argument("--out", default="gpu_throughput.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return train_worker(args.preset, args.train_steps, args.batch_size, args.images, args.out)

    import numpy as np
    import torch

    from ouroboros import features, models, sample, train

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    torch.backends.cudnn.benchmark = True
    scratch = Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    result: dict = {"device": name, "torch": torch.__version__, "args": vars(args)}

    result["train_images_per_second"] = {k: round(concurrent_training(k, args, scratch), 1)
                                         for k in map(int, args.concurrency.split(","))}

    spec = models.preset(args.preset)
    unet = models.build(args.preset).to(device).eval()
    rates = {}
    for batch in map(int, args.sample_batches.split(",")):
        sample.sample(unet, train.scheduler(), 0, batch, seed=0, inference_steps=2, batch_size=batch, progress=False)
        start = time.perf_counter()
        sample.sample(unet, train.scheduler(), 0, batch, seed=0, inference_steps=args.sample_steps, batch_size=batch,
                      progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[batch] = round(batch * args.sample_steps / (time.perf_counter() - start), 1)
    result["sample_images_steps_per_second"] = rates  # images × denoising steps per second

    images = np.random.default_rng(0).integers(0, 256, (args.feature_images, 32, 32, 3), dtype=np.uint8)
    feature_rates, flops = {}, {}
    for key, model in dinov2_sizes().items():  # the config's own models: ViT-S for distances, ViT-L for FD_DINOv2
        size = next((k for k in DINOV2_DIMS if k in model), "small")
        with tempfile.TemporaryDirectory() as tmp:
            # the architecture of facebook/dinov2-{size} with random weights, through the real loading path
            from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

            net = Dinov2Model(Dinov2Config(**DINOV2_DIMS[size], patch_size=14, image_size=518))
            net.save_pretrained(tmp)
            BitImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 256}).save_pretrained(tmp)
            features.dinov2(images[:64], tmp)  # warm-up
            start = time.perf_counter()
            features.dinov2(images, tmp)
            label = f"{key} ({model}: dinov2-{size})"
            feature_rates[label] = round(len(images) / (time.perf_counter() - start), 1)
            flops[label] = forward_flops(net.to(device), torch.zeros(1, 3, 224, 224, device=device))
    # InceptionV3's architecture at 299 × 299 (torchvision's; torch-fidelity's FID network has the same
    # layers), random weights: its cost, not its features
    import torchvision

    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).to(device).eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)
    with torch.inference_mode():
        inception(torch.nn.functional.interpolate(x[:64], size=(299, 299), mode="bilinear"))
        start = time.perf_counter()
        for lo in range(0, len(x), 256):
            inception(torch.nn.functional.interpolate(x[lo:lo + 256], size=(299, 299), mode="bilinear"))
        if device.type == "cuda":
            torch.cuda.synchronize()
    feature_rates["inception_v3"] = round(len(images) / (time.perf_counter() - start), 1)
    flops["inception_v3"] = forward_flops(inception, torch.zeros(1, 3, 299, 299, device=device))
    size = spec["sample_size"]
    flops["unet"] = forward_flops(unet, torch.zeros(1, spec["in_channels"], size, size, device=device),
                                  torch.zeros(1, dtype=torch.long, device=device))
    result["feature_images_per_second"] = feature_rates
    result["forward_flops_per_image"] = flops

    best_train = max(result["train_images_per_second"].values())
    hours = fig3_hours(best_train, max(rates.values()), feature_rates)
    result["fig3_hours"] = {k: round(v, 2) for k, v in hours.items()}
    total_flops = fig3_flops(flops["unet"], {k: v for k, v in flops.items() if k != "unet"})
    result["fig3_flops"] = total_flops
    peak = peak_flops(name)
    result["fig3_hours_at_peak_bf16"] = round(total_flops / peak / 3600, 2) if peak else None

    print(f"device: {name}  preset {args.preset}")
    for k, v in result["train_images_per_second"].items():
        print(f"train, {k} at once: {v:12.1f} images/s (summed)")
    for k, v in rates.items():
        print(f"sample, batch {k:5d}: {v:12.1f} images × steps/s")
    for k, v in feature_rates.items():
        print(f"features {k:14s}: {v:10.1f} images/s")
    print(f"Figure 3 projected: {result['fig3_hours']['total']:.1f} device-hours "
          f"({', '.join(f'{k} {v:.1f}' for k, v in result['fig3_hours'].items() if k != 'total')}); "
          f"{total_flops:.3g} FLOP, {result['fig3_hours_at_peak_bf16']} h at the peak bf16 FLOP/s")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
