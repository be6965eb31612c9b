"""fid.json of one iteration: Fréchet distance between G_n and the real reference in a feature space.

``inception`` is the standard FID (torch-fidelity's InceptionV3); ``classifier`` is the offline
stand-in of the demo (see ouroboros.classifier) and is marked non-standard in the file.
"""

from __future__ import annotations

from ouroboros import metrics
from ouroboros.evaluate import load_generated
from ouroboros.io import load_features_for, save_json
from ouroboros.paths import features_of

NOTES = {
    "inception": "standard FID: torch-fidelity's inception-v3-compat (the TF-FID weights). The paper's numbers "
                 "came from torchvision's InceptionV3, whose features differ: compare with the literature, not "
                 "digit for digit with the paper",
    "classifier": "not the standard FID: the Fréchet distance in the penultimate layer of a small CNN trained "
                  "offline on the real labels (the demo's stand-in for InceptionV3)",
}


def stage(generated_files: list[str], real_images: str, extractor: str, *, count: int, meta: dict, out: str) -> dict:
    reference = load_features_for(real_images, features_of(real_images, extractor))
    feats = lambda f: load_features_for(f, features_of(f, extractor), reference.shape[1])  # noqa: E731
    generated = load_generated(generated_files, count, feats)
    result = {
        **meta,
        "feature_extractor": extractor,
        "standard_fid": extractor == "inception",
        "note": NOTES.get(extractor, ""),
        "reference": f"{real_images} ({len(reference)} real images)",
        "sizes": {"generated": len(generated), "reference": len(reference)},
        "values": {"fid": metrics.fid(generated, reference)},
    }
    save_json(out, result)
    return result
