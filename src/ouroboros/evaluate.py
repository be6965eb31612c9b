"""metrics.json of one iteration: how far G_n is from D_n, and how spread out both are.

G_n is evaluated on its first N images (N = the dataset size), so runs that sample 2N are
compared with the others at equal size; D_n is evaluated whole.
"""

from __future__ import annotations

import numpy as np

from ouroboros import manifest, metrics
from ouroboros.features import pixels
from ouroboros.io import load_features_for, load_images, save_json
from ouroboros.paths import features_of


def set_metrics(x: np.ndarray, prefix: str) -> dict[str, float]:
    """Spread of one set. ``_entropy`` is the paper's estimator over every point, duplicates included
    (what the figures plot); ``_entropy_distinct`` ignores copies, and ``_duplicates`` counts them;
    ``_vendi`` is the Vendi score (cosine kernel), the effective number of distinct points."""
    return {
        f"{prefix}_entropy": metrics.kl_entropy(x),
        f"{prefix}_entropy_distinct": metrics.kl_entropy_distinct(x),
        f"{prefix}_duplicates": metrics.duplicate_count(x),
        f"{prefix}_mnnd": metrics.mnnd(x),
        f"{prefix}_covariance_trace": metrics.covariance_trace(x),
        f"{prefix}_vendi": metrics.vendi(x),
    }


def compute(train: np.ndarray, generated: np.ndarray, real: np.ndarray, train_pixels: np.ndarray,
            generated_pixels: np.ndarray, real_pixels: np.ndarray) -> dict[str, float]:
    """Every metric of one iteration from feature arrays (and pixels for the memorization ratio
    and the copy share, whose yardstick is the real subset's typical pixel spacing)."""
    values = {"generalization_score": metrics.generalization_score(generated, train)}
    values |= set_metrics(train, "train")
    values |= set_metrics(generated, "generated")
    # d1/d2 is scale-free, so the √(HWC) normalisation of the literature changes nothing here
    values["memorization_ratio"] = metrics.memorization_ratio(generated_pixels, train_pixels)
    values["copy_scale"] = metrics.median_nn_distance(real_pixels)
    values["copy_share"] = metrics.copy_share(generated_pixels, train_pixels, scale=values["copy_scale"])
    values["authenticity"] = metrics.authenticity(train, generated)  # against D_n, what the model saw
    values |= metrics.prdc(real, generated, k=5)
    return values


def load_generated(files: list[str], count: int, load) -> np.ndarray:
    return np.concatenate([load(f) for f in files])[:count]


def stage(manifest_path: str, generated_files: list[str], real_images: str, extractor: str, *,
          count: int, meta: dict, out: str) -> dict:
    m = manifest.read(manifest_path)
    real = load_features_for(real_images, features_of(real_images, extractor))
    feats = lambda f: load_features_for(f, features_of(f, extractor), real.shape[1])  # noqa: E731
    train = manifest.gather(m, feats)
    generated = load_generated(generated_files, count, feats)
    values = compute(
        train, generated, real,
        pixels(manifest.gather(m, load_images)), pixels(load_generated(generated_files, count, load_images)),
        pixels(load_images(real_images)),
    )
    values["real_share"] = m.share("real")
    result = {
        **meta,
        "feature_extractor": extractor,
        "entropy": {"estimator": "Kozachenko-Leonenko, k = 1", "eps": metrics.KL_EPS,
                    "note": "*_entropy: every point, eps added to each 1-NN distance (the paper's); "
                            "*_entropy_distinct: distinct rows only, no eps"},
        "sizes": {"train": len(m), "generated": len(generated)},
        "source_shares": m.shares(),
        "values": values,
    }
    save_json(out, result)
    return result
