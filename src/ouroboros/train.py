"""Train one DDPM (diffusers UNet2DModel + DDPMScheduler) on D_n.

The random stream of step s (its batch, timesteps and noise) depends only on (seed, s): the data
order is a seeded permutation per epoch and the noise comes from a generator seeded per step. A
run is therefore reproducible bit for bit on CPU, and independent of how it was scheduled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ouroboros import models, seeds
from ouroboros.config import TrainConfig
from ouroboros.data import to_model

NUM_TRAIN_TIMESTEPS = 1000


def scheduler():
    """The DDPM noise schedule of the paper (diffusers' defaults: 1000 linear steps, ε-prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear", prediction_type="epsilon")


def batch_indices(count: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of step ``step``'s batch: consecutive slices of a stream of per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), count)
        order = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, 1, epoch]).permutation(count)
        out.extend(order[offset : offset + batch_size - len(out)].tolist())
    return np.asarray(out, dtype=np.int64)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 0 (diffusers' get_scheduler('cosine'))."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    images: np.ndarray,
    preset: str,
    cfg: TrainConfig,
    *,
    seed: int,
    out_dir: str | os.PathLike,
    stats_path: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_seconds: float | None = None,
) -> dict:
    """Train on uint8 NHWC images and save the model to ``out_dir`` (atomically, as a directory).

    With ``checkpoint_dir``, the state is saved there every ``checkpoint_seconds`` (default:
    the config's ``checkpoint_minutes``) and a later
    call with the same inputs resumes from it (see ouroboros.checkpoint); it is removed at the end.
    """
    from ouroboros import checkpoint
    import torch
    from tqdm import tqdm

    from ouroboros.runtime import device as pick_device
    from ouroboros.runtime import fault_point

    device = pick_device()
    total = cfg.total_steps(len(images))
    torch.manual_seed(seeds.per_item(seed, [0])[0])
    unet = models.build(preset).to(device)
    noise_schedule = scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, betas=(0.95, 0.999), weight_decay=cfg.weight_decay, eps=1e-8)
    data = to_model(images).to(device)
    amp = dict(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    if checkpoint_seconds is None:
        checkpoint_seconds = 60.0 * cfg.checkpoint_minutes
    # what the weights depend on: everything but how often they are saved
    options = {k: v for k, v in cfg.__dict__.items() if k != "checkpoint_minutes"}
    fp = checkpoint.fingerprint(preset, options, seed, images) if checkpoint_dir else ""
    resumed = checkpoint.load(checkpoint_dir, unet, opt, fp) if checkpoint_dir else None
    first_step, stats_text = resumed if resumed else (0, "")
    stats_lines = stats_text.splitlines(keepends=True)
    losses = [json.loads(line)["loss"] for line in stats_lines]
    with open(stats_path, "w") if stats_path else contextlib.nullcontext() as stats:
        if stats:
            stats.write(stats_text)
        started = last_checkpoint = time.time()
        bar = tqdm(range(first_step, total), desc="train", mininterval=5, disable=not progress, initial=first_step, total=total)
        for step in bar:
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg.warmup_steps, total)
            gen = torch.Generator().manual_seed(seeds.per_item(seed, [step + 1])[0])
            x0 = data[torch.from_numpy(batch_indices(len(data), cfg.batch_size, step, seed)).to(device)]
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(x0),), generator=gen).to(device)
            with torch.autocast(**amp):
                pred = unet(noise_schedule.add_noise(x0, noise, t), t).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
            opt.step()
            value = float(loss.detach())
            losses.append(value)
            line = json.dumps({"step": step, "loss": value, "lr": opt.param_groups[0]["lr"],
                               "grad_norm": float(grad_norm), "seconds": round(time.time() - started, 3)}) + "\n"
            stats_lines.append(line)
            if stats:
                stats.write(line)
            if checkpoint_dir and time.time() - last_checkpoint >= checkpoint_seconds and step + 1 < total:
                checkpoint.save(checkpoint_dir, unet, opt, step + 1, fp, "".join(stats_lines))
                last_checkpoint = time.time()
            if step == total // 2:
                fault_point("train")
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")

    summary = {
        "preset": preset,
        "steps": total,
        "train_size": int(len(images)),
        "final_loss_mean_last_50": float(np.mean(losses[-50:])) if losses else None,
        "seconds": round(time.time() - started, 1),
        "device": str(device),
        "options": cfg.__dict__,
        "seed": seed,
    }
    save_model(unet, noise_schedule, out_dir, summary)
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return summary


def save_model(unet, noise_schedule, out_dir: str | os.PathLike, summary: dict) -> None:
    """save_pretrained into a temporary sibling, then rename: the directory appears complete or not at all."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        unet.save_pretrained(tmp, safe_serialization=True)
        noise_schedule.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stage(manifest_path: str, preset: str, options: dict, *, seed: int, model_out: str, stats_out: str,
          checkpoint_dir: str | None = None) -> dict:
    """Train on the images a manifest names (D_n), checkpointing every few minutes."""
    from ouroboros import manifest
    from ouroboros.io import load_images

    images = manifest.gather(manifest.read(manifest_path), load_images)
    print(f"training {preset} on {len(images)} images from {manifest_path}")
    summary = train(images, preset, TrainConfig(**options), seed=seed, out_dir=model_out, stats_path=stats_out,
                    checkpoint_dir=checkpoint_dir)
    print(json.dumps(summary, indent=2))
    return summary
