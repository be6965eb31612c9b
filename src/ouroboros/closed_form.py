"""Generators whose collapse under the loop has a closed form: the known answers the workflow is
checked against (docs/known-answers.md). numpy only: their jobs start in well under a second.

``gaussian``: the maximum-likelihood Gaussian of D_n (mean, covariance with divisor N), sampled
exactly. Refitted on its own N samples, the expected covariance shrinks by (N − 1)/N per
generation and the expected mean stays (Shumailov et al. 2024; Kazdan et al. 2024).

``kde``: a Gaussian kernel density estimate with bandwidth h: item i picks a parent row of D_n
uniformly and adds h·z (z standard normal in every coordinate). It carries its parent's label;
a ``source: gaussian`` dataset labels each real point with its own row of the source, so labels
trace every item back to its D_1 ancestor. Under replace, two distinct members of D_n share a
D_1 ancestor with probability 1 − (1 − 1/N)^(n−1) (Wright–Fisher), while the per-coordinate
variance (divisor N) tends to (N − 1)h² instead of collapsing. ``bandwidth: auto`` is the median
nearest-neighbour distance of D_1 divided by √d: the kernel then moves an item by about one
typical spacing of the real points (‖h·z‖ ≈ h√d).

Both fit images too: a uint8 image is its pixels scaled to [0, 1] (the ``pixels`` space), and a
sample is clipped to [0, 1] and rounded back to uint8.

Item i's draws come from its own generator (seeded by ``seeds.per_item``), so a sample set does
not depend on the batch and the first N of 2N are the N.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ouroboros import seeds
from ouroboros.errors import OuroborosError
from ouroboros.generators import MODEL_FILE, data_kind, register
from ouroboros.io import atomic_dir
from ouroboros.selectors import AUTO, Param

STATE_FILE = "state.npz"


@dataclass
class Model:
    """A fitted closed-form generator: its name, parameters, the arrays that define it, and the
    kind and shape of the items it makes."""

    generator: str
    params: dict
    arrays: dict[str, np.ndarray]
    kind: str  # images | vectors
    item_shape: tuple[int, ...]
    summary: dict = field(default_factory=dict)


def to_space(data: np.ndarray) -> np.ndarray:
    """Items as float64 rows: an image's pixels in [0, 1], a vector as it is."""
    x = np.asarray(data)
    if data_kind(x) == "images":
        return x.reshape(len(x), -1).astype(np.float64) / 255.0
    return x.astype(np.float64)


def from_space(rows: np.ndarray, kind: str, item_shape: tuple[int, ...]) -> np.ndarray:
    """float64 rows back into items: images clipped to [0, 1] and rounded to uint8, vectors as float32."""
    if kind == "images":
        return np.round(np.clip(rows, 0.0, 1.0) * 255.0).astype(np.uint8).reshape((len(rows), *item_shape))
    return rows.astype(np.float32)


def save(model: Model, out_dir: str | Path) -> None:
    """generator.json (what it is) and state.npz (its arrays), written as one directory."""
    with atomic_dir(out_dir) as tmp:
        np.savez(tmp / STATE_FILE, **model.arrays)
        (tmp / MODEL_FILE).write_text(json.dumps({
            "generator": model.generator, "params": model.params, "kind": model.kind,
            "item_shape": list(model.item_shape), "summary": model.summary}, indent=2) + "\n")


def load(model_dir: str | Path) -> Model:
    folder = Path(model_dir)
    try:
        meta = json.loads((folder / MODEL_FILE).read_text())
        with np.load(folder / STATE_FILE, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        return Model(meta["generator"], meta["params"], arrays, meta["kind"], tuple(meta["item_shape"]),
                     meta.get("summary", {}))
    except (OSError, ValueError, KeyError) as exc:
        raise OuroborosError(f"{folder}: not a complete model directory ({exc.__class__.__name__}: {exc}); delete it "
                             "and re-run the train step") from exc


def _rngs(seed: int, start: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in seeds.per_item(seed, range(start, start + count))]


def _fitted(name: str, data: np.ndarray, params: dict, arrays: dict, summary: dict, out_dir) -> dict:
    from ouroboros.runtime import fault_point

    fault_point("train")  # the fault tests stop a training here: nothing of the model is written yet
    kind = data_kind(data)
    model = Model(name, dict(params), arrays, kind, tuple(np.asarray(data).shape[1:]), summary)
    save(model, out_dir)
    print(json.dumps({"generator": name, "params": params, "kind": kind, **summary}))
    return summary


# ---------------------------------------------------------------------------------------------
# gaussian: the maximum-likelihood refit


def _gaussian_sample(model: Model, start: int, count: int, *, seed: int, **_) -> tuple[np.ndarray, np.ndarray]:
    mean, root = model.arrays["mean"], model.arrays["root"]
    rows = np.stack([mean + root @ g.standard_normal(len(mean)) for g in _rngs(seed, start, count)]) if count else \
        np.zeros((0, len(mean)))
    return from_space(rows, model.kind, model.item_shape), np.full(count, -1, dtype=np.int64)


def mle_covariance(x: np.ndarray) -> np.ndarray:
    """The maximum-likelihood covariance of the rows of x: divisor N, not N − 1 (the known answer
    (N − 1)/N per generation is this divisor's; tests/test_theory.py plants N − 1 here)."""
    centred = x - x.mean(axis=0)
    return centred.T @ centred / len(x)


@register("gaussian", load=load, save=save, sample=_gaussian_sample)
def gaussian(data: np.ndarray, labels: np.ndarray | None, out_dir: str | Path, *, params: dict, seed: int,
             **_) -> dict:
    """The maximum-likelihood Gaussian of D_n (covariance with divisor N), sampled exactly."""
    x = to_space(data)
    mean, cov = x.mean(axis=0), mle_covariance(x)
    # a square root of the covariance that also serves a singular one (N ≤ d): V diag(√w)
    w, v = np.linalg.eigh(cov)
    root = v * np.sqrt(np.clip(w, 0.0, None))
    return _fitted("gaussian", data, params, {"mean": mean, "root": root},
                   {"train_size": len(x), "covariance_trace": float(np.trace(cov))}, out_dir)


# ---------------------------------------------------------------------------------------------
# kde: a training point plus h·z, the parent's label carried along


def auto_bandwidth(real: np.ndarray) -> float:
    """``bandwidth: auto``: the median nearest-neighbour distance of D_1 over √d."""
    from ouroboros.metrics import median_nn_distance

    x = to_space(real)
    return median_nn_distance(x.astype(np.float32)) / float(np.sqrt(x.shape[1]))


def bandwidth_of(params: dict, real: np.ndarray | None) -> float:
    """The kernel's standard deviation per coordinate: ``bandwidth``, or measured on D_1 when auto."""
    h = params["bandwidth"]
    if h == AUTO:
        if real is None:
            raise OuroborosError("kde: bandwidth auto is measured on D_1, which this fit was not given")
        return auto_bandwidth(real)
    return float(h)


def _kde_sample(model: Model, start: int, count: int, *, seed: int, **_) -> tuple[np.ndarray, np.ndarray]:
    points, labels, h = model.arrays["points"], model.arrays["labels"], float(model.arrays["bandwidth"])
    parents = np.empty(count, dtype=np.int64)
    rows = np.empty((count, points.shape[1]))
    for j, g in enumerate(_rngs(seed, start, count)):
        parents[j] = g.integers(len(points))
        rows[j] = points[parents[j]] + h * g.standard_normal(points.shape[1])
    return from_space(rows, model.kind, model.item_shape), labels[parents]


@register("kde", load=load, save=save, sample=_kde_sample, inherits_labels=True, params={
    "bandwidth": Param((int, float), check=lambda v: v > 0, rule="> 0", distance=True, example=0.1,
                       help="the kernel's standard deviation per coordinate, in the data space (pixels in [0, 1]); "
                            "auto: the median nearest-neighbour distance of D_1 over √d")})
def kde(data: np.ndarray, labels: np.ndarray | None, out_dir: str | Path, *, params: dict, seed: int,
        real: np.ndarray | None = None, **_) -> dict:
    """A Gaussian kernel density estimate: a parent row of D_n plus h·z, with the parent's label."""
    x = to_space(data)
    h = bandwidth_of(params, real)
    labels = np.full(len(x), -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if len(labels) != len(x):
        raise OuroborosError(f"kde: {len(labels)} labels for {len(x)} training items")
    return _fitted("kde", data, params, {"points": x, "labels": labels, "bandwidth": np.float64(h)},
                   {"train_size": len(x), "bandwidth": float(h)}, out_dir)
