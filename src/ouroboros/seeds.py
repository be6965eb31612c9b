"""Seeds derived from (root, dataset, iteration, stage, replicate), never from the run.

Runs therefore share common random numbers: iteration 1 is identical in every run, and two
runs differ only where their paradigm or selection differs. A replicate r ≥ 1 appends r to the
key, so every stream of replicate 0 is the one it was before replicates existed, and replicate r
of two runs again shares its random numbers (paired comparisons across runs). Strings are hashed with a fixed
function (crc32), not Python's salted ``hash``.
"""

from __future__ import annotations

import zlib

import numpy as np

STAGES = {"data": 0, "train": 1, "sample": 2, "select": 3, "classifier": 4}


def _key(root: int, dataset: str, iteration: int, stage: str, replicate: int = 0) -> list[int]:
    if stage not in STAGES:
        raise ValueError(f"unknown seed stage {stage!r}; known: {sorted(STAGES)}")
    if replicate < 0:
        raise ValueError(f"replicates count from 0, not {replicate}")
    key = [int(root), zlib.crc32(dataset.encode()), int(iteration), STAGES[stage]]
    return key + [int(replicate)] if replicate else key


def seed_sequence(root: int, dataset: str, iteration: int, stage: str, replicate: int = 0) -> np.random.SeedSequence:
    return np.random.SeedSequence(_key(root, dataset, iteration, stage, replicate))


def derive(root: int, dataset: str, iteration: int, stage: str, replicate: int = 0) -> int:
    """One 63-bit integer seed for a stream (torch generators take int64)."""
    state = seed_sequence(root, dataset, iteration, stage, replicate).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def per_item(base: int, indices: np.ndarray | range) -> list[int]:
    """One seed per image index, so image i is the same whatever the batch it falls in."""
    out = []
    for i in indices:
        state = np.random.SeedSequence([base & 0xFFFFFFFF, base >> 32, int(i)]).generate_state(2, dtype=np.uint32)
        out.append(int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1))
    return out
