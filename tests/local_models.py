"""Random-weight stand-ins for the hub models, saved where the real loading code reads them: a
DINOv2 directory (transformers), torch-fidelity's and torchvision's InceptionV3 weight files.
Nothing is downloaded; the architectures are the real ones (DINOv2 shrunk to one small layer)."""

from __future__ import annotations

from pathlib import Path


def dinov2_dir(folder: Path, image_size: int = 224) -> str:
    """A one-layer DINOv2 (patch 14) with the image processor of facebook/dinov2-*: resize the short
    side to 256/224 of the crop, centre crop, ImageNet normalisation."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=image_size, patch_size=14)
    Dinov2Model(cfg).save_pretrained(folder)
    short = image_size * 256 // 224
    BitImageProcessor(size={"shortest_edge": short}, crop_size={"height": image_size, "width": image_size},
                      do_convert_rgb=True).save_pretrained(folder)
    return str(folder)


def fidelity_inception_weights(path: Path) -> str:
    """torch-fidelity's inception-v3-compat, randomly initialised, as the state_dict file its
    ``feature_extractor_weights_path`` takes."""
    from unittest import mock

    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    empty = path.with_suffix(".empty.pth")
    torch.save({}, empty)
    torch.manual_seed(0)
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    empty.unlink()
    torch.save(net.state_dict(), path)
    return str(path)


def torchvision_inception_weights(path: Path) -> str:
    """torchvision's InceptionV3 (with its auxiliary classifier, as the real file holds it), random."""
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return str(path)
