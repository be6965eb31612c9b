"""fid.json of one iteration: Fréchet distance between G_n and the real reference in a feature space.

``inception`` is the standard FID (torch-fidelity's InceptionV3); ``classifier`` is the offline
stand-in of the demo (see ouroboros.classifier) and is marked non-standard in the file.

Beside ``fid`` (in the dataset's ``fid_features`` space), the file holds the distances of
:data:`EXTRAS` whose dataset key is set: ``fd_dinov2`` and ``fid_torchvision``, each described
under ``metrics`` (extractor, model or weights, preprocessing, source).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ouroboros import metrics
from ouroboros.evaluate import load_generated
from ouroboros.features import PREPROCESSING
from ouroboros.io import load_features_for, save_json
from ouroboros.paths import features_of

if TYPE_CHECKING:
    from ouroboros.config import Dataset

NOTES = {
    "inception": "standard FID: torch-fidelity's inception-v3-compat (the TF-FID weights). The paper's numbers "
                 "came from torchvision's InceptionV3, whose features differ: compare with the literature, not "
                 "digit for digit with the paper (that is fid_torchvision, given torchvision_inception_weights)",
    "classifier": "not the standard FID: the Fréchet distance in the penultimate layer of a small CNN trained "
                  "offline on the real labels (the demo's stand-in for InceptionV3)",
}


@dataclass(frozen=True)
class Extra:
    """A Fréchet distance that fid.json adds beside ``fid`` when the dataset sets ``key``."""

    extractor: str  # features-{extractor}.npy beside the images
    key: str  # the dataset key that names the model or weights (null: the distance is not computed)
    gives: str  # what that key holds: model or weights
    label: str
    source: str


EXTRAS = {
    "fd_dinov2": Extra(
        "dinov2-fd", "fd_dinov2", "model", "FD_DINOv2",
        "Stein et al. 2023, Exposing flaws of generative model evaluation metrics and their unfair treatment "
        "of diffusion models (NeurIPS); dgm-eval, github.com/layer6ai-labs/dgm-eval",
    ),
    "fid_torchvision": Extra(
        "inception-torchvision", "torchvision_inception_weights", "weights", "FID (torchvision InceptionV3)",
        "Heusel et al. 2017 in the pool features of torchvision's InceptionV3, the network the paper's authors "
        "computed their FID with; it differs from the standard FID (torch-fidelity's TF weights, fid_features: inception)",
    ),
}

Space = dict[str, str | None]  # {"extractor": ..., "model": the model or weights, None for fid_features}


def spaces(d: Dataset) -> str | dict[str, Space]:
    """The fid rule's ``extractor`` parameter: the dataset's ``fid_features`` alone when it sets
    no extra distance, so that fid.json of such datasets keeps the parameter Snakemake recorded
    and is not recomputed; else {value name: space}, ``fid`` first."""
    extras = {value: {"extractor": e.extractor, "model": getattr(d, e.key)}
              for value, e in EXTRAS.items() if getattr(d, e.key)}
    return ({"fid": {"extractor": d.fid_features, "model": None}} | extras) if extras else d.fid_features


def extractors(d: Dataset) -> list[str]:
    """The feature spaces fid.json of a dataset reads: ``fid_features``, then those of its extras."""
    return [d.fid_features] + [e.extractor for e in EXTRAS.values() if getattr(d, e.key)]


def describe(value: str, space: Space, dataset: str) -> dict[str, str | None]:
    """The ``metrics`` entry of one value of fid.json: which features, from what, made how."""
    if value == "fid":
        return {"label": "FID", "extractor": space["extractor"], "note": NOTES.get(space["extractor"], "")}
    e = EXTRAS[value]
    return {"label": e.label, "extractor": e.extractor, e.gives: space["model"], "config_key": f"datasets.{dataset}.{e.key}",
            "preprocessing": PREPROCESSING[e.extractor], "source": e.source}


def _features(generated_files: list[str], real_images: str, extractor: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` generated images' features and the reference's, in one space."""
    reference = load_features_for(real_images, features_of(real_images, extractor))
    feats = lambda f: load_features_for(f, features_of(f, extractor), reference.shape[1])  # noqa: E731
    return load_generated(generated_files, count, feats), reference


def stage(generated_files: list[str], real_images: str, extractor: str | Mapping[str, Space], *, count: int,
          meta: dict, out: str) -> dict:
    """fid.json; ``extractor`` is the rule's parameter (:func:`spaces`): a space name, or
    {value name: space} when the dataset sets extra distances."""
    chosen = dict(extractor) if isinstance(extractor, Mapping) else {"fid": {"extractor": extractor, "model": None}}
    standard = chosen["fid"]["extractor"]
    values, described, sizes = {}, {}, {}
    for value, space in chosen.items():
        generated, reference = _features(generated_files, real_images, space["extractor"], count)
        values[value] = metrics.fid(generated, reference)
        described[value] = describe(value, space, meta.get("dataset", "<dataset>"))
        sizes = sizes or {"generated": len(generated), "reference": len(reference)}
    result = {
        **meta,
        "feature_extractor": standard,
        "standard_fid": standard == "inception",
        "note": NOTES.get(standard, ""),
        "reference": f"{real_images} ({sizes['reference']} real images)",
        "sizes": sizes,
        "values": values,
        "metrics": described,
    }
    save_json(out, result)
    return result
