"""The CPU entry of src/ouroboros/rates.yaml: FLOP/s of training, sampling and DINOv2 features on one
thread of this machine (a job gets ``threads: 1``), under the CPU device policy, printed as YAML.

Training: cifar-paper at batch 8 (train.train's own clock, the step loop alone); sampling:
cifar-paper at batch 16 (sample.sample); features: a ViT-S/14 of random weights through the real
DINOv2 path (features.dinov2). FLOPs per image from ouroboros.costs.

    OMP_NUM_THREADS=1 python benchmarks/cpu_rates.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

import datetime  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    import torch

    from ouroboros import costs, features, models, sample, train
    from ouroboros import policy as device_policy
    from ouroboros.config import TrainConfig

    torch.set_num_threads(1)
    pol = device_policy.resolve(kind="cpu")
    preset, batch, steps = "cifar-paper", 8, 3
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = lambda n: TrainConfig(steps=n, batch_size=batch, warmup_steps=1)  # noqa: E731
        train.train(images, preset, cfg(1), seed=0, out_dir=f"{tmp}/warm", progress=False, policy=pol)
        seconds = train.train(images, preset, cfg(steps), seed=0, out_dir=f"{tmp}/run", progress=False, policy=pol)["seconds"]
        rates["train"] = costs.train_flops(preset, steps, batch) / seconds
        unet = models.load(f"{tmp}/run")
        start = time.perf_counter()
        sample.sample(unet, train.scheduler(), 0, 16, seed=0, inference_steps=3, batch_size=16, progress=False, policy=pol)
        rates["sample"] = costs.sample_flops(preset, 16, 3) / (time.perf_counter() - start)
        from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

        width, depth = costs.DINOV2["small"]
        folder = f"{tmp}/dinov2-small"
        Dinov2Model(Dinov2Config(hidden_size=width, num_hidden_layers=depth, num_attention_heads=6, intermediate_size=4 * width,
                                 patch_size=14, image_size=518)).save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
        features.dinov2(images[:2], f"{tmp}/dinov2-small", policy=pol)
        start = time.perf_counter()
        features.dinov2(images[:16], f"{tmp}/dinov2-small", batch_size=16, policy=pol)
        rates["features"] = costs.features_flops("dinov2", "dinov2-small", 16) / (time.perf_counter() - start)
    where = f"{cpu_name()}, 1 thread, torch {torch.__version__}, {datetime.date.today().isoformat()}"
    what = {"train": f"{preset} batch {batch}", "sample": f"{preset} batch 16", "features": "DINOv2 ViT-S/14, 16 images"}
    print("  cpu:")
    for kind, value in rates.items():
        print(f"    {kind}:\n      flops_per_second: {costs.round_sig(value):.3g}\n"
              f"      basis: \"measured by benchmarks/cpu_rates.py on {where} ({what[kind]})\"")


if __name__ == "__main__":
    main()
