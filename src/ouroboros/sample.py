"""DDPM sampling with per-image seeds: image i is the same whatever batch it is drawn in.

Image i's initial noise and every step's noise come from its own generator, seeded from
(seed, i): a set of 2N samples starts with the N samples, and batch size does not matter.
"""

from __future__ import annotations

import numpy as np

from ouroboros import seeds
from ouroboros.data import from_model


def sample(
    unet,
    noise_schedule,
    start: int,
    count: int,
    *,
    seed: int,
    inference_steps: int,
    batch_size: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Images start … start+count-1 of the model's per-image-seeded stream, uint8 NHWC."""
    import torch
    from tqdm import tqdm

    device = next(unet.parameters()).device
    unet.eval()
    noise_schedule.set_timesteps(inference_steps)
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = []
    batches = range(start, start + count, batch_size)
    for first in tqdm(batches, desc="sample", disable=not progress, mininterval=5):
        ids = range(first, min(first + batch_size, start + count))
        gens = [torch.Generator().manual_seed(s) for s in seeds.per_item(seed, ids)]
        x = torch.cat([torch.randn((1,) + shape, generator=g) for g in gens]).to(device)
        with torch.inference_mode():
            for t in noise_schedule.timesteps:
                eps = unet(x, t).sample
                x = noise_schedule.step(eps, t, x, generator=gens if len(gens) > 1 else gens[0]).prev_sample
        out.append(from_model(x))
    if not out:
        return np.zeros((0, shape[1], shape[2], shape[0]), dtype=np.uint8)
    return np.concatenate(out)


def stage(model_dir: str, start: int, count: int, *, seed: int, inference_steps: int, batch_size: int, out: str) -> None:
    from diffusers import DDPMScheduler

    from ouroboros import models
    from ouroboros.io import save_array
    from ouroboros.runtime import device

    unet = models.load(model_dir).to(device())
    noise_schedule = DDPMScheduler.from_pretrained(model_dir)
    print(f"sampling images {start}…{start + count - 1} from {model_dir} with {inference_steps} DDPM steps")
    save_array(out, sample(unet, noise_schedule, start, count, seed=seed, inference_steps=inference_steps,
                           batch_size=batch_size))
