"""Training and sampling throughput of ouroboros against a plain diffusers loop, same run, same GPU.

The reference is the structure of diffusers' train_unconditional example (fp16 autocast with a
GradScaler, AdamW, a DataLoader of normalised CPU tensors, the loss read back every step, no
compile) and DDPMPipeline for sampling. ouroboros runs its own train.train and sample.sample.
Data are random CIFAR-shaped images (no network, no data set). Prints one table and the ratios,
and writes them as JSON. Use benchmarks/gpu_check.sh to run it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ouroboros import models, sample, train  # noqa: E402
from ouroboros.config import TrainConfig  # noqa: E402


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def reference_train(images: np.ndarray, preset: str, steps: int, batch_size: int) -> float:
    """Seconds for ``steps`` steps of the train_unconditional example's loop."""
    from diffusers import UNet2DModel
    from diffusers.optimization import get_scheduler

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    unet = UNet2DModel(**models.preset(preset)).to(device)
    noise_schedule = train.scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_schedule = get_scheduler("cosine", optimizer=opt, num_warmup_steps=min(500, steps // 10), num_training_steps=steps)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch_size, shuffle=True,
                                         drop_last=True)

    def run():
        done = 0
        while done < steps:
            for (clean,) in loader:
                clean = clean.to(device)
                noise = torch.randn(clean.shape, device=device)
                t = torch.randint(0, train.NUM_TRAIN_TIMESTEPS, (len(clean),), device=device)
                with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=device.type == "cuda"):
                    pred = unet(noise_schedule.add_noise(clean, noise, t), t).sample
                    loss = torch.nn.functional.mse_loss(pred.float(), noise)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                lr_schedule.step()
                opt.zero_grad()
                _ = loss.detach().item()  # the example logs the loss every step
                done += 1
                if done == steps:
                    return

    return timed(run)[0]


def ours_train(images: np.ndarray, preset: str, steps: int, batch_size: int, compile: bool, out: Path) -> float:
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=1e-4, weight_decay=1e-6, warmup_steps=min(500, steps // 10),
                      compile=compile)
    return timed(lambda: train.train(images, preset, cfg, seed=0, out_dir=out, progress=False))[0]


def reference_sample(unet, count: int, inference_steps: int, batch_size: int) -> float:
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline(unet=unet, scheduler=train.scheduler())
    pipe.set_progress_bar_config(disable=True)

    def run():
        for first in range(0, count, batch_size):
            pipe(batch_size=min(batch_size, count - first), num_inference_steps=inference_steps,
                 generator=torch.Generator().manual_seed(first), output_type="np")

    return timed(run)[0]


def ours_sample(unet, count: int, inference_steps: int, batch_size: int) -> float:
    return timed(lambda: sample.sample(unet, train.scheduler(), 0, count, seed=0, inference_steps=inference_steps,
                                       batch_size=batch_size, progress=False))[0]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cifar-paper")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--warmup-steps", type=int, default=20, help="untimed steps first (cuDNN autotune, compile)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--sample-count", type=int, default=1024)
    ap.add_argument("--sample-batch", type=int, default=512)
    ap.add_argument("--inference-steps", type=int, default=100)
    ap.add_argument("--compile", action="store_true", help="also time ouroboros with train.compile: true")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args(argv)

    torch.backends.cudnn.benchmark = True
    spec = models.preset(args.preset)
    rng = np.random.default_rng(0)
    shape = (args.images, spec["sample_size"], spec["sample_size"], spec["in_channels"])
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    scratch = Path(args.out).with_suffix(".models")
    rows = {}

    # warm-up of both paths (kernels, allocator), untimed
    reference_train(images, args.preset, args.warmup_steps, args.batch_size)
    ours_train(images, args.preset, args.warmup_steps, args.batch_size, False, scratch / "warm")

    seconds = reference_train(images, args.preset, args.train_steps, args.batch_size)
    rows["train_reference"] = args.train_steps * args.batch_size / seconds
    seconds = ours_train(images, args.preset, args.train_steps, args.batch_size, False, scratch / "ours")
    rows["train_ouroboros"] = args.train_steps * args.batch_size / seconds
    if args.compile and torch.cuda.is_available():
        ours_train(images, args.preset, args.warmup_steps, args.batch_size, True, scratch / "warm-compiled")
        seconds = ours_train(images, args.preset, args.train_steps, args.batch_size, True, scratch / "compiled")
        rows["train_ouroboros_compiled"] = args.train_steps * args.batch_size / seconds

    unet = models.load(scratch / "ours").to(train_device())
    reference_sample(unet, min(args.sample_batch, args.sample_count), 2, args.sample_batch)  # warm-up
    seconds = reference_sample(unet, args.sample_count, args.inference_steps, args.sample_batch)
    rows["sample_reference"] = args.sample_count / seconds
    seconds = ours_sample(unet, args.sample_count, args.inference_steps, args.sample_batch)
    rows["sample_ouroboros"] = args.sample_count / seconds

    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "args": vars(args),
        "images_per_second": {k: round(v, 2) for k, v in rows.items()},
        "train_ratio": round(rows["train_ouroboros"] / rows["train_reference"], 3),
        "sample_ratio": round(rows["sample_ouroboros"] / rows["sample_reference"], 3),
        # sampling is quoted per image for inference_steps steps; scale to 1000 linearly
        "sample_images_per_second_at_1000_steps": round(rows["sample_ouroboros"] * args.inference_steps / 1000, 3),
    }
    if "train_ouroboros_compiled" in rows:
        result["train_ratio_compiled"] = round(rows["train_ouroboros_compiled"] / rows["train_reference"], 3)
    print(f"device: {result['device']}  preset {args.preset}")
    print(f"{'':28s}{'images/s':>12s}")
    for k, v in rows.items():
        print(f"{k:28s}{v:12.1f}")
    print(f"train ratio (ouroboros / reference): {result['train_ratio']}")
    print(f"sample ratio (ouroboros / reference): {result['sample_ratio']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_device():
    from ouroboros.runtime import device

    return device()


if __name__ == "__main__":
    main()
