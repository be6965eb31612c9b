"""metrics.json of one iteration: how far G_n is from D_n, and how spread out both are.

G_n is evaluated on its first N images (N = the dataset size), so runs that sample 2N are
compared with the others at equal size; D_n is evaluated whole.
"""

from __future__ import annotations

import numpy as np

from ouroboros import manifest, metrics
from ouroboros.features import data_space
from ouroboros.io import load_data, load_features_for, load_labels, save_json
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
    """Every metric of one iteration from feature arrays (and the data space, pixels or vectors, for
    the memorization ratio, the copy share, whose yardstick is the real subset's typical spacing
    there, and the maximum-likelihood spread the closed forms speak of)."""
    values = {"generalization_score": metrics.generalization_score(generated, train)}
    values |= set_metrics(train, "train")
    values |= set_metrics(generated, "generated")
    # d1/d2 is scale-free, so the √(HWC) normalisation of the literature changes nothing here
    values["memorization_ratio"] = metrics.memorization_ratio(generated_pixels, train_pixels)
    values["copy_scale"] = metrics.median_nn_distance(real_pixels)
    values["copy_share"] = metrics.copy_share(generated_pixels, train_pixels, scale=values["copy_scale"])
    values["authenticity"] = metrics.authenticity(train, generated)  # against D_n, what the model saw
    values |= metrics.prdc(real, generated, k=5)
    # the maximum-likelihood fit's moments in the data space (divisor N): what the closed forms of
    # the gaussian and kde generators predict (docs/known-answers.md)
    x = np.asarray(train_pixels, dtype=np.float64)
    values["train_variance_mle"] = float(np.var(x, axis=0).sum())
    values["train_grand_mean"] = float(x.mean())
    return values


def load_generated(files: list[str], count: int, load) -> np.ndarray:
    return np.concatenate([load(f) for f in files])[:count]


def lineage(m: manifest.Manifest, real_images: str) -> dict[str, float]:
    """Where labels trace ancestry (each real item labelled by its own row, a kde's samples
    carrying their parent's): the share of pairs of D_n that descend from one D_1 item, and the
    number of distinct D_1 ancestors D_n descends from. Items with no known ancestor (label −1)
    are left out of the pairs."""
    from ouroboros.paths import labels_of

    ancestors = manifest.gather(m, load_labels, rename=labels_of)
    known = ancestors[ancestors >= 0]
    counts = np.unique(known, return_counts=True)[1]
    pairs = len(known) * (len(known) - 1) / 2
    return {"common_ancestor_share": float((counts * (counts - 1) / 2).sum() / pairs) if pairs else float("nan"),
            "distinct_ancestors": float(len(counts))}


def stage(manifest_path: str, generated_files: list[str], real_images: str, extractor: str, *,
          count: int, meta: dict, out: str, ancestry: bool = False) -> dict:
    m = manifest.read(manifest_path)
    real = load_features_for(real_images, features_of(real_images, extractor))
    feats = lambda f: load_features_for(f, features_of(f, extractor), real.shape[1])  # noqa: E731
    train = manifest.gather(m, feats)
    generated = load_generated(generated_files, count, feats)
    values = compute(
        train, generated, real,
        data_space(manifest.gather(m, load_data)), data_space(load_generated(generated_files, count, load_data)),
        data_space(load_data(real_images)),
    )
    values["real_share"] = m.share("real")
    if ancestry:
        values |= lineage(m, real_images)
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
