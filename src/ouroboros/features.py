"""Feature extractors: the spaces distances and FID are computed in.

- ``pixels``: the image itself, scaled to [0, 1] (d = H·W·C).
- ``classifier``: a small CNN trained on the real labels (see ouroboros.classifier); offline FID.
- ``dinov2``: the CLS token of DINOv2 through transformers (the paper's distance space),
  with the model's own image processor (resize, crop, normalisation).
- ``inception``: torch-fidelity's InceptionV3 pool features (standard FID).
"""

from __future__ import annotations

import os

import numpy as np

from ouroboros.errors import OuroborosError


def pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0)


def dinov2(images: np.ndarray, model: str, batch_size: int = 256, *, dataset: str = "<dataset>") -> np.ndarray:
    """CLS features of a DINOv2 model given by hub id or local directory (``dataset`` names the config key)."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    try:
        processor = AutoImageProcessor.from_pretrained(model)
        net = AutoModel.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise OuroborosError(
            f"cannot load DINOv2 {model!r} ({exc.__class__.__name__}). Offline, download it once on a machine "
            f"with network (huggingface-cli download {model} --local-dir resources/dinov2) and set "
            f"datasets.{dataset}.dinov2 in config.yaml to that directory"
        ) from exc
    from ouroboros.runtime import device as pick_device

    device = pick_device()
    net = net.to(device).eval()
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(rgb), batch_size):
            batch = processor(images=list(rgb[lo : lo + batch_size]), return_tensors="pt")
            hidden = net(pixel_values=batch["pixel_values"].to(device)).last_hidden_state
            out.append(hidden[:, 0].float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def inception(images: np.ndarray, weights: str | None = None, batch_size: int = 256, *,
              dataset: str = "<dataset>") -> np.ndarray:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``) 2048-d pool features.

    ``weights`` is a local copy of the weights (None: torch-fidelity downloads them); ``dataset``
    only names the config key to set when they cannot be loaded.
    """
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    except Exception as exc:  # urllib / torch.hub errors when offline, OSError for a bad local path
        source = f"from {weights}" if weights else "(download)"
        raise OuroborosError(
            f"cannot load InceptionV3 weights {source} ({exc.__class__.__name__}: {exc}). Offline, copy "
            "pt_inception-2015-12-05-6726825d.pth from torch-fidelity's release page to a local path "
            f"and set datasets.{dataset}.inception_weights in config.yaml to it"
        ) from exc
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(rgb), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(rgb[lo : lo + batch_size])).permute(0, 3, 1, 2)
            out.append(net(x)[0].numpy())
    return np.concatenate(out).astype(np.float32)


def extract(name: str, images: np.ndarray, *, classifier_dir: str | os.PathLike | None = None,
            dinov2_model: str = "facebook/dinov2-small", inception_weights: str | None = None,
            dataset: str = "<dataset>") -> np.ndarray:
    """Features of images in one space; ``dataset`` names the config keys that errors point at."""
    if name == "pixels":
        return pixels(images)
    if name == "classifier":
        from ouroboros import classifier

        assert classifier_dir is not None
        return classifier.embed(images, classifier_dir)
    if name == "dinov2":
        return dinov2(images, dinov2_model, dataset=dataset)
    if name == "inception":
        return inception(images, inception_weights, dataset=dataset)
    raise OuroborosError(f"config.yaml: unknown feature extractor {name!r}; known: pixels, classifier, dinov2, inception")


def stage(images_path: str, extractor: str, out: str, **options) -> None:
    from ouroboros.io import load_images, save_array
    from ouroboros.paths import dataset_of

    images = load_images(images_path)
    # the dataset comes from the path, not from the rule: a new rule parameter or an edited script
    # would make Snakemake recompute every features file, and so the whole loop, of existing results
    options.setdefault("dataset", dataset_of(images_path) or "<dataset>")
    feats = extract(extractor, images, **options)
    if not np.isfinite(feats).all():
        raise OuroborosError(f"{images_path}: {extractor} features contain NaN or inf; nothing was written")
    print(f"{extractor} features {feats.shape} of {images_path}")
    save_array(out, feats)
