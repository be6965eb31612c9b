"""Per-image Gaussian noise drawn on the device from a counter-based generator.

The sampler needs, at every denoising step, fresh noise for every image, and image i must get the
same noise whatever batch it is drawn in. Per-image host generators (one ``torch.Generator`` per
image, the CPU policy's stream) give that, but the host then draws B × C × H × W numbers per step
and copies them over: work that grows with the batch and, on a fast GPU, bounds the sampler.

A counter-based generator needs no state: the random bits of (image key, step, element) are a
pure function of the three, so a whole batch's noise is one vectorised computation on the device,
whose host cost (a fixed number of kernel launches) does not grow with the batch. The function is
Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the generator of Random123 and of JAX), written in int64 tensor arithmetic masked to 32
bits: it needs only addition, rotation and xor, so nothing overflows and any torch device computes
the same bits. Pairs of 32-bit words become pairs of normals by Box–Muller.

- key: image i's 63-bit seed (``seeds.per_item``), split into two 32-bit words;
- counter: (pair index within the image, draw index): draw 0 is the initial noise x_T, draw k the
  noise of the k-th denoising step.
"""

from __future__ import annotations

import math

MASK = 0xFFFFFFFF
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)  # Threefry-2x32's rotation constants (Random123)
PARITY = 0x1BD11BDA  # the key schedule's constant
ROUNDS = 20


def _rotl(x, r: int):
    return ((x << r) | (x >> (32 - r))) & MASK


def threefry2x32(key0, key1, ctr0, ctr1, rounds: int = ROUNDS):
    """Threefry-2x32 of counters (ctr0, ctr1) under keys (key0, key1): int64 tensors holding 32-bit
    values, broadcast against each other; returns the two 32-bit output words."""
    ks = (key0 & MASK, key1 & MASK, (key0 ^ key1 ^ PARITY) & MASK)
    x0 = (ctr0 + ks[0]) & MASK
    x1 = (ctr1 + ks[1]) & MASK
    for r in range(rounds):
        x0 = (x0 + x1) & MASK
        x1 = _rotl(x1, ROTATIONS[r % 8]) ^ x0
        if r % 4 == 3:  # key injection after every four rounds
            s = r // 4 + 1
            x0 = (x0 + ks[s % 3]) & MASK
            x1 = (x1 + ks[(s + 1) % 3] + s) & MASK
    return x0, x1


def keys(image_seeds: list[int], device):
    """The (B, 1) key words of a batch's per-image seeds, on the device."""
    import torch

    s = torch.tensor(image_seeds, dtype=torch.int64, device=device).view(-1, 1)
    return s & MASK, (s >> 32) & MASK


def normal(key: tuple, draw: int, shape: tuple[int, ...], dtype=None):
    """Standard normal noise of shape (B, *shape) for the images of ``key`` (from :func:`keys`),
    draw number ``draw``: element j of image i depends on (image i's seed, draw, j) alone."""
    import torch

    key0, key1 = key
    device = key0.device
    count = math.prod(shape)
    pairs = (count + 1) // 2
    ctr0 = torch.arange(pairs, dtype=torch.int64, device=device).view(1, -1)
    ctr1 = torch.full_like(ctr0, int(draw) & MASK)
    a, b = threefry2x32(key0, key1, ctr0, ctr1)
    # 24 high bits of each word → uniforms in (0, 1), never 0: log is finite (|z| < 5.8)
    u1 = ((a >> 8).to(torch.float32) + 0.5) * 2.0**-24
    u2 = ((b >> 8).to(torch.float32) + 0.5) * 2.0**-24
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = (2.0 * math.pi) * u2
    z = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1).flatten(1)[:, :count]
    z = z.reshape(len(key0), *shape)
    return z if dtype is None else z.to(dtype)
