"""DDPM sampling with per-image seeds: image i is the same whatever batch it is drawn in.

Image i's initial noise and every step's noise depend only on (seed, i) and the step: a set of
2N samples starts with the N samples, and batch size does not matter. Where they are drawn is the
device policy's choice: the CPU policy draws them from one host generator per image (the stream
the demo's numbers were made with); the GPU policy computes them on the device from a
counter-based generator (ouroboros.noise), so the host's work per step does not grow with the
batch.

A class-conditional model draws image i for class i mod K (balanced, and the same prefix rule
holds), with classifier-free guidance ε = ε_∅ + w (ε_y − ε_∅) (diffusers' convention: w = 1 is
plain conditional sampling, w = 0 unconditional).
"""

from __future__ import annotations

import numpy as np

from ouroboros import models, seeds
from ouroboros.data import from_model
from ouroboros.errors import OuroborosError


def labels_for(start: int, count: int, classes: int | None) -> np.ndarray:
    """The class of images start … start+count-1: i mod classes, or -1 for an unconditional model."""
    ids = np.arange(start, start + count, dtype=np.int64)
    return ids % classes if classes else np.full(count, -1, dtype=np.int64)


def ddpm_coefficients(noise_schedule) -> list[tuple[int, float, float, float, float, float]]:
    """Per timestep of the set schedule: (t, √ᾱ_t, √(1−ᾱ_t), c_x0, c_xt, σ_t) of DDPM's posterior
    x_(t−1) = c_x0 · clip(x̂_0) + c_xt · x_t + σ_t z, with x̂_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t.
    Computed once by the scheduler's own rules (strided steps, fixed-small variance), so the loop
    does plain arithmetic on the device."""
    out = []
    for t in noise_schedule.timesteps.tolist():
        prev = int(noise_schedule.previous_timestep(t))
        a_t = noise_schedule.alphas_cumprod[t]
        a_prev = noise_schedule.alphas_cumprod[prev] if prev >= 0 else noise_schedule.one
        beta_t = 1 - a_t / a_prev
        c_x0 = a_prev**0.5 * beta_t / (1 - a_t)
        c_xt = (a_t / a_prev) ** 0.5 * (1 - a_prev) / (1 - a_t)
        sigma = noise_schedule._get_variance(t) ** 0.5 if t > 0 else 0.0
        out.append((t, float(a_t**0.5), float((1 - a_t) ** 0.5), float(c_x0), float(c_xt), float(sigma)))
    return out


def noise_stream(policy, seed: int, ids: range, shape: tuple[int, ...]):
    """Standard normal draws 0, 1, 2, … for images ``ids`` (one ``shape`` each), on the policy's
    device: draw k of image i depends only on (seed, i, k). The CPU policy draws from one host
    generator per image (the stream the demo's numbers were measured with); the GPU policy computes
    them on the device from the counter-based stream (ouroboros.noise)."""
    import itertools

    import torch

    from ouroboros import noise as device_noise

    if policy.noise == "device":
        key = device_noise.keys(seeds.per_item(seed, ids), policy.torch_device())
        draws = itertools.count()
        return lambda: device_noise.normal(key, next(draws), shape)
    gens = [torch.Generator().manual_seed(s) for s in seeds.per_item(seed, ids)]
    return lambda: policy.inputs(torch.cat([torch.randn((1,) + shape, generator=g) for g in gens]))


def sample(
    unet,
    noise_schedule,
    start: int,
    count: int,
    *,
    seed: int,
    inference_steps: int,
    batch_size: int = 256,
    guidance_scale: float = 1.0,
    progress: bool = True,
    policy=None,
    source: str = "the model",
) -> tuple[np.ndarray, np.ndarray]:
    """Images start … start+count-1 of the model's per-image-seeded stream (uint8 NHWC) and the
    class each was drawn for (-1 from an unconditional model).

    The DDPM step is diffusers' DDPMScheduler.step (clipped x̂_0, fixed-small variance) written
    out, so that the loop is plain arithmetic on the device. ``policy`` (default: resolved for
    this machine) says where the UNet runs, in which autocast precision and where the noise is
    drawn. A batch that comes out non-finite (an fp16 overflow) fails naming ``source`` instead
    of being clamped into images.
    """
    import torch
    from tqdm import tqdm

    from ouroboros import policy as device_policy

    if policy is None:
        policy = device_policy.resolve()
    unet = policy.place(unet).to(memory_format=policy.memory_format())
    device = policy.torch_device()
    null = models.null_label(unet)
    labels = labels_for(start, count, null)  # the null label K is also the class count
    guided = null is not None and guidance_scale != 1.0
    clip = float(noise_schedule.config.clip_sample_range) if noise_schedule.config.clip_sample else None
    noise_schedule.set_timesteps(inference_steps)
    steps = ddpm_coefficients(noise_schedule)
    timesteps = noise_schedule.timesteps.to(device)
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    out = []
    # progress in image-steps, not batches: a GPU run's few large batches would tick a few times in hours
    bar = tqdm(total=count * len(steps), desc="sample", unit="image-step", disable=not progress, mininterval=5)
    for first in range(start, start + count, batch_size):
        ids = range(first, min(first + batch_size, start + count))
        noise = noise_stream(policy, seed, ids, shape)
        x = noise()
        y = None if null is None else torch.from_numpy(labels[first - start : first - start + len(ids)]).to(device)
        if guided:  # one batch holds the conditional and the null-label halves
            y = torch.cat([y, torch.full_like(y, null)])
        # every ε checked before x̂_0 is clamped: an infinite ε would be clamped into finite pixels.
        # One flag per batch on the device, read once: a read per step would make the host wait
        with torch.inference_mode():
            finite = torch.ones((), dtype=torch.bool, device=device)
            for i, (_t, sqrt_a, sqrt_b, c_x0, c_xt, sigma) in enumerate(steps):
                with policy.autocast(policy.sample_precision):
                    eps = unet(torch.cat([x, x]) if guided else x, timesteps[i], class_labels=y).sample.float()
                if guided:
                    cond, uncond = eps.chunk(2)
                    eps = uncond + guidance_scale * (cond - uncond)
                finite = finite & torch.isfinite(eps).all()
                x0 = (x - sqrt_b * eps) / sqrt_a
                if clip is not None:
                    x0 = x0.clamp(-clip, clip)
                x = c_x0 * x0 + c_xt * x
                if sigma > 0:
                    x = x + sigma * noise()
                bar.update(len(ids))
        out.append(finite_images(finite, x, ids, policy, source))
    bar.close()
    return stacked(out, shape), labels


def finite_images(finite, x, ids: range, policy, source: str) -> np.ndarray:
    """A sampled batch as uint8 images, or the error naming the model: ``finite`` is the device flag of
    every network output of the batch, checked before anything clamped it (shared by every sampler)."""
    import torch

    if not bool(finite & torch.isfinite(x).all()):
        raise OuroborosError(
            f"{source}: non-finite samples in images {ids.start}…{ids.stop - 1} (precision "
            f"{policy.sample_precision}); nothing was written. Sampling again fails the same way (it is deterministic). "
            "Sampling in fp32 means setting train.mixed_precision: no for this dataset, a training option: the "
            "model is then retrained from step 0 too")
    return from_model(x)


def stacked(batches: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The batches as one NHWC array (an empty one of the model's image shape for no batch)."""
    if not batches:
        return np.zeros((0, shape[1], shape[2], shape[0]), dtype=np.uint8)
    return np.concatenate(batches)


def stage(model_dir: str, start: int, count: int, *, seed: int, inference_steps: int, batch_size: int, out: str,
          labels_out: str, guidance_scale: float = 1.0) -> None:
    """Items start … start + count − 1 of the model in ``model_dir``, whichever generator wrote it
    (the DDPM's options apply to it alone)."""
    from ouroboros import generators
    from ouroboros.io import save_array

    generator = generators.of_model_dir(model_dir)
    if not generator.gpu:  # a closed-form generator: numpy, no device policy
        print(f"sampling items {start}…{start + count - 1} from {model_dir} ({generator.name})")
        items, labels = generator.sample(generator.load(model_dir), start, count, seed=seed)
        if items.dtype.kind == "f" and not np.isfinite(items).all():
            raise OuroborosError(f"{model_dir}: non-finite samples from generator {generator.name}; nothing was written")
        save_array(labels_out, labels)
        save_array(out, items)
        return
    from ouroboros import policy as device_policy

    policy = device_policy.resolve(sample_precision=sample_precision(model_dir))
    policy.apply_backends()
    print(policy.describe())
    model = generator.load(model_dir)
    guided = f", guidance scale {guidance_scale}" if models.null_label(model[0]) is not None else ""
    print(f"sampling images {start}…{start + count - 1} from {model_dir} ({generator.name}) in {inference_steps} steps{guided}")
    images, labels = generator.sample(model, start, count, seed=seed, inference_steps=inference_steps,
                                      batch_size=batch_size, guidance_scale=guidance_scale, policy=policy,
                                      source=model_dir, progress=True)
    # labels first: samples.npy is the file whose presence says the step is done
    save_array(labels_out, labels)
    save_array(out, images)


def sample_precision(model_dir: str) -> str:
    """The sampler's autocast under the GPU policy: fp16, or fp32 ("no") for a model trained with
    train.mixed_precision: no (a user who turned mixed precision off gets none anywhere). Read from
    the model's training.json, so the sample rule needs no parameter of its own."""
    import json
    from pathlib import Path

    try:
        options = json.loads((Path(model_dir) / "training.json").read_text()).get("options", {})
    except (OSError, ValueError):
        options = {}
    return "no" if options.get("mixed_precision") == "no" else "fp16"
