"""D_n as a manifest: which image of which file each training example is, never a copy.

A manifest is a TSV with columns ``source`` (``real``, ``G01``, ...), ``index`` (position within
that source), ``file`` (the .npy holding it) and ``row`` (position within that file). The logical
columns feed the share-by-source figures; the physical ones let any stage gather images or
features of D_n without knowing the recursion.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ouroboros.errors import OuroborosError
from ouroboros.io import save_text

HEADER = ("source", "index", "file", "row")


@dataclass(frozen=True)
class Manifest:
    source: np.ndarray  # str
    index: np.ndarray  # int64
    file: np.ndarray  # str
    row: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.row)

    def share(self, source: str) -> float:
        return float(np.mean(self.source == source)) if len(self) else 0.0

    def shares(self) -> dict[str, float]:
        names, counts = np.unique(self.source, return_counts=True)
        return {str(k): float(c) / len(self) for k, c in zip(names, counts, strict=True)}


@dataclass(frozen=True)
class PoolPart:
    """One file of a pool: which source it belongs to and how many rows it holds."""

    source: str
    file: str
    rows: int


def from_pool(parts: Sequence[PoolPart], chosen: np.ndarray) -> Manifest:
    """Turn indices into the concatenated pool (parts in order) into manifest rows."""
    offsets = np.cumsum([0] + [p.rows for p in parts])
    chosen = np.asarray(chosen, dtype=np.int64)
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= offsets[-1]):
        raise ValueError(f"pool index out of range [0, {offsets[-1]})")
    part_of = np.searchsorted(offsets, chosen, side="right") - 1
    # index within a source counts across that source's files (G01 of a 2N run = real/iter01/samples.npy,
    # then real/iter01/x2/samples.npy: per-image seeds 0 … 2N-1)
    source_start = {}
    for i, p in enumerate(parts):
        source_start.setdefault(p.source, offsets[i])
    rows = chosen - offsets[part_of]
    index = np.array([chosen[j] - source_start[parts[part_of[j]].source] for j in range(len(chosen))], dtype=np.int64)
    return Manifest(
        source=np.array([parts[k].source for k in part_of], dtype=object),
        index=index,
        file=np.array([parts[k].file for k in part_of], dtype=object),
        row=rows.astype(np.int64),
    )


def write(path: str | os.PathLike, m: Manifest) -> None:
    lines = ["\t".join(HEADER)]
    lines += [f"{s}\t{i}\t{f}\t{r}" for s, i, f, r in zip(m.source, m.index, m.file, m.row, strict=True)]
    save_text(path, "\n".join(lines) + "\n")


def read(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError as exc:
        raise OuroborosError(f"{path}: manifest not found; re-run the select step") from exc
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise OuroborosError(f"{path}: not a training-set manifest (expected the header {' '.join(HEADER)!r})")
    cols: list[list[str]] = [[], [], [], []]
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 4:
            raise OuroborosError(f"{path}:{number}: expected 4 tab-separated fields, found {len(fields)}")
        for c, v in zip(cols, fields, strict=True):
            c.append(v)
    try:
        return Manifest(
            source=np.array(cols[0], dtype=object),
            index=np.array(cols[1], dtype=np.int64),
            file=np.array(cols[2], dtype=object),
            row=np.array(cols[3], dtype=np.int64),
        )
    except ValueError as exc:
        raise OuroborosError(f"{path}: non-integer index or row ({exc})") from exc


def gather(m: Manifest, load: Callable[[str], np.ndarray], rename: Callable[[str], str] = str) -> np.ndarray:
    """Rows of D_n in manifest order; ``rename`` maps an image file to e.g. its features file."""
    out = None
    for name in dict.fromkeys(m.file):  # each file loaded once, in first-use order
        data = load(rename(name))
        take = m.file == name
        if m.row[take].max() >= len(data):
            raise OuroborosError(f"{rename(name)}: manifest asks for row {m.row[take].max()} of {len(data)}")
        if out is None:
            out = np.empty((len(m),) + data.shape[1:], dtype=data.dtype)
        out[take] = data[m.row[take]]
    if out is None:
        raise OuroborosError("empty training-set manifest")
    return out
