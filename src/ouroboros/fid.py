"""fid.json of one iteration: Fréchet distance between G_n and the real reference in a feature space.

``inception`` is the standard FID (torch-fidelity's InceptionV3); ``classifier`` is the offline
stand-in of the demo (see ouroboros.classifier) and is marked non-standard in the file.
"""

from __future__ import annotations

from ouroboros import metrics
from ouroboros.evaluate import load_generated
from ouroboros.io import load_features, save_json
from ouroboros.paths import features_of


def stage(generated_files: list[str], real_images: str, extractor: str, *, count: int, meta: dict, out: str) -> dict:
    feats = lambda f: load_features(features_of(f, extractor))  # noqa: E731
    generated = load_generated(generated_files, count, feats)
    reference = feats(real_images)
    result = {
        **meta,
        "feature_extractor": extractor,
        "standard_fid": extractor == "inception",
        "reference": f"{real_images} ({len(reference)} real images)",
        "sizes": {"generated": len(generated), "reference": len(reference)},
        "values": {"fid": metrics.fid(generated, reference)},
    }
    save_json(out, result)
    return result
