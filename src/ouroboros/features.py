"""Feature extractors: the spaces distances and FID are computed in.

- ``pixels``: the image itself, scaled to [0, 1] (d = H·W·C).
- ``identity``: vectors as they are, the space of vector datasets (``source: gaussian``), where
  FID becomes the Fréchet distance of the vectors; a vector file is its own features file.
- ``classifier``: a small CNN trained on the real labels (see ouroboros.classifier); offline FID.
- ``dinov2``: the CLS token of DINOv2 through transformers (the paper's distance space),
  with the model's own image processor (resize, crop, normalisation).
- ``inception``: torch-fidelity's InceptionV3 pool features (standard FID).
- ``dinov2-fd``: DINOv2's CLS token with dgm-eval's preprocessing, for FD_DINOv2 (Stein et al. 2023).
- ``inception-torchvision``: torchvision's InceptionV3 pool features, for the FID of the paper's authors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ouroboros import weights as _weights
from ouroboros.errors import OuroborosError

if TYPE_CHECKING:
    import torch

# ImageNet's channel mean and standard deviation, as torchvision's and dgm-eval's transforms give them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _from_pretrained(load: Callable[[str], Any], model: str, key: str) -> Any:
    """transformers' ``from_pretrained`` of a hub id or local directory; offline or wrong, an error
    naming the config key that gives the model."""
    try:
        return load(model)
    except (OSError, ValueError) as exc:
        raise OuroborosError(f"cannot load DINOv2 {model!r} ({exc.__class__.__name__}). Offline, "
                             f"{_weights.dinov2_fix(model, key)}") from exc


def _policy(policy):
    """The job's device policy (resolved here when the caller passes none)."""
    if policy is None:
        from ouroboros import policy as device_policy

        policy = device_policy.resolve()
    return policy


def dinov2(images: np.ndarray, model: str, batch_size: int = 256, *, dataset: str = "<dataset>",
           policy=None) -> np.ndarray:
    """CLS features of a DINOv2 model given by hub id or local directory (``dataset`` names the
    config key), the network and its inputs where the device policy puts them."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    policy = _policy(policy)
    processor = _from_pretrained(AutoImageProcessor.from_pretrained, model, f"datasets.{dataset}.dinov2")
    net = policy.place(_from_pretrained(AutoModel.from_pretrained, model, f"datasets.{dataset}.dinov2"))
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(rgb), batch_size):
            batch = processor(images=list(rgb[lo : lo + batch_size]), return_tensors="pt")
            hidden = net(pixel_values=policy.inputs(batch["pixel_values"])).last_hidden_state
            out.append(hidden[:, 0].float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def inception(images: np.ndarray, weights: str | None = None, batch_size: int = 256, *,
              dataset: str = "<dataset>", policy=None) -> np.ndarray:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``) 2048-d pool features, the network and
    its uint8 inputs where the device policy puts them (fp32: torch-fidelity's own arithmetic).

    ``weights`` is a local copy of the weights (None: torch-fidelity downloads them); ``dataset``
    only names the config key to set when they cannot be loaded.
    """
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    policy = _policy(policy)
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=weights)
    except Exception as exc:  # urllib / torch.hub errors when offline, OSError for a bad local path
        source = f"from {weights}" if weights else "(download)"
        raise OuroborosError(f"cannot load InceptionV3 weights {source} ({exc.__class__.__name__}: {exc}). Offline, "
                             f"{_weights.inception_fix(f'datasets.{dataset}.inception_weights')}") from exc
    net = policy.place(net)
    rgb = images if images.shape[-1] == 3 else np.repeat(images, 3, axis=-1)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(rgb), batch_size):
            x = policy.inputs(torch.from_numpy(np.ascontiguousarray(rgb[lo : lo + batch_size]))).permute(0, 3, 1, 2)
            out.append(net(x)[0].float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def _rgb_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC (1 or 3 channels) → float NCHW RGB in 0…255; grey repeated, as PIL's convert("RGB")."""
    x = batch.permute(0, 3, 1, 2).float()
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _normalised(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] NCHW → torchvision's Normalize(IMAGENET_MEAN, IMAGENET_STD)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


DGM_EVAL_PREPROCESSING = ("dgm-eval's DINOv2Encoder.transform (layer6ai-labs/dgm-eval, dgm_eval/models/dinov2.py): "
                          "RGB, Resize((224, 224), BICUBIC) of the 8-bit image as PIL does it, ToTensor, "
                          "Normalize(ImageNet mean, std); the CLS token after the final layer norm")


def dgm_eval_pixels(batch: torch.Tensor) -> torch.Tensor:
    """DINOv2's input as dgm-eval makes it (``DINOv2Encoder.transform``, layer6ai-labs/dgm-eval,
    dgm_eval/models/dinov2.py, its default ``clean_resize=False``), in torch on uint8 NHWC.

    dgm-eval reads each image as PIL RGB, then ``Resize((224, 224), BICUBIC)``, ``ToTensor()``
    and ``Normalize(ImageNet mean, std)``. PIL resizes an 8-bit image in two passes, horizontal
    then vertical, each with its bicubic kernel (a = −0.5, widened when shrinking: torch's
    ``antialias=True``) and each rounded and clipped to 0…255: done so here, it agrees with PIL
    exactly on over 99 % of pixels and within two grey levels on the rest (PIL's fixed-point
    weights; tests/test_fd.py). Plain torch bicubic (a = −0.75, one pass, no rounding) differs by
    tens of levels at sharp edges.
    """
    import torch.nn.functional as F

    x = _rgb_float(batch)
    for size in ((x.shape[2], 224), (224, 224)):  # the horizontal pass, then the vertical one
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).round().clamp(0, 255)
    return _normalised(x / 255.0)


def dinov2_fd(images: np.ndarray, model: str | None, batch_size: int = 256, *, dataset: str = "<dataset>",
              policy=None) -> np.ndarray:
    """FD_DINOv2's features (Stein et al. 2023): the CLS token of a DINOv2 given by hub id or local
    directory, loaded as :func:`dinov2` loads it, on dgm-eval's input (:func:`dgm_eval_pixels`).

    dgm-eval loads ``dinov2_vitl14`` through torch.hub and takes its output, the CLS token after the
    final layer norm; transformers' ``facebook/dinov2-large`` holds the same ViT-L/14 weights and
    ``last_hidden_state[:, 0]`` is that token. fp32 throughout, as dgm-eval runs it.
    """
    import torch
    from transformers import AutoModel

    key = f"datasets.{dataset}.fd_dinov2"
    if not model:
        raise OuroborosError(f"FD_DINOv2 needs a DINOv2 model: set {key} in config.yaml "
                             "(facebook/dinov2-large, dgm-eval's ViT-L/14, or a local copy of it)")
    net = _from_pretrained(AutoModel.from_pretrained, model, key)
    if not net.config.model_type.startswith("dinov2"):
        raise OuroborosError(f"{key}: {model!r} is a {net.config.model_type} model, not DINOv2")
    policy = _policy(policy)
    net = policy.place(net.float())
    out = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch_size):
            batch = policy.inputs(torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size])))
            hidden = net(pixel_values=dgm_eval_pixels(batch)).last_hidden_state
            out.append(hidden[:, 0].cpu().numpy())
    return np.concatenate(out).astype(np.float32)


TORCHVISION_INCEPTION_FILE = _weights.TORCHVISION_INCEPTION_FILE
TORCHVISION_INCEPTION_PREPROCESSING = (
    "pytorch-fid's input handling with torchvision's InceptionV3 (IMAGENET1K_V1 weights): RGB in [0, 1], "
    "bilinear resize to 299×299 (align_corners=False), Normalize(ImageNet mean, std), transform_input=True "
    "(back to 2x − 1, the range the Google weights were trained on); fc replaced by identity: 2048-d pool features"
)


def torchvision_inception_pixels(batch: torch.Tensor) -> torch.Tensor:
    """InceptionV3's input for FID with torchvision's network, in torch on uint8 NHWC.

    The resize is pytorch-fid's (``InceptionV3.forward``, mseitzer/pytorch-fid, src/pytorch_fid/
    inception.py): the whole image, bilinear, ``align_corners=False``, on floats in [0, 1], to
    299×299, not the 342-then-crop of torchvision's classification transform, which would cut the
    borders of a 32×32 image. Then torchvision's ``Normalize(ImageNet mean, std)``: the network is
    built with ``transform_input=True``, as ``inception_v3(weights=IMAGENET1K_V1)`` builds it, and
    that maps normalised input back to 2x − 1, the range the Google weights expect.
    """
    import torch.nn.functional as F

    x = _rgb_float(batch) / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return _normalised(x)


def torchvision_inception_net(weights: str | None, *, dataset: str = "<dataset>") -> torch.nn.Module:
    """torchvision's InceptionV3 with the weights of a local state_dict file, fc an identity: its
    output is the 2048-d average-pool feature. Nothing is downloaded."""
    import torch
    from torchvision.models import inception_v3

    key = f"datasets.{dataset}.torchvision_inception_weights"
    how = _weights.torchvision_inception_fix(key)
    if not weights:
        raise OuroborosError(f"the torchvision FID needs InceptionV3 weights: {how}")
    # aux_logits=True: the file holds the auxiliary classifier too; init_weights=False: they are overwritten
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as exc:  # a missing file, not a torch file (KeyError, UnpicklingError), other keys or shapes
        raise OuroborosError(f"cannot load InceptionV3 weights from {weights} ({exc.__class__.__name__}): {how}") from exc
    net.fc = torch.nn.Identity()
    return net.eval()


def inception_torchvision(images: np.ndarray, weights: str | None, batch_size: int = 256, *,
                          dataset: str = "<dataset>", policy=None) -> np.ndarray:
    """2048-d pool features of torchvision's InceptionV3 (``weights``: a local state_dict file) on
    :func:`torchvision_inception_pixels`, fp32: the FID the paper's authors report."""
    import torch

    policy = _policy(policy)
    net = policy.place(torchvision_inception_net(weights, dataset=dataset))
    out = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch_size):
            batch = policy.inputs(torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size])))
            out.append(net(torchvision_inception_pixels(batch)).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Extractor:
    """One feature space, as ``features-{name}.npy`` and config.yaml's extractor names give it.

    ``fn(images, source, *, dataset, classifier_dir, policy)`` → float32 (count, d); ``source`` is
    the model or weights that the dataset key ``key`` names (None for extractors without one).
    ``roles``: where config.yaml may name it: ``features`` (distances, selection: a dataset's
    features and select_features) and ``fid`` (fid_features); an extractor without roles is
    reached through its own key (fd_dinov2, fid_torchvision).
    """

    name: str
    fn: Callable[..., np.ndarray]
    gpu: bool  # the rule asks for a GPU slot (resources gpu=1)
    key: str | None  # the datasets.X key of its model or weights
    preprocessing: str
    roles: tuple[str, ...] = ()
    torch: bool = True  # runs a network in torch: under the warm start, the model server's job


EXTRACTORS: dict[str, Extractor] = {}


def register(name: str, *, gpu: bool, key: str | None, preprocessing: str, roles: tuple[str, ...] = (),
             torch: bool = True):
    """Register ``fn`` as the extractor ``name``: the wildcard constraint, the rule's GPU resource,
    the schema's enums (checked by a test), the warm server its job goes to and :func:`extract` all
    read this one definition."""

    def wrap(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in EXTRACTORS:
            raise OuroborosError(f"feature extractor {name!r} is registered twice")
        EXTRACTORS[name] = Extractor(name, fn, gpu, key, preprocessing, roles, torch)
        return fn

    return wrap


def names(role: str | None = None) -> list[str]:
    """Registered extractor names, in registration order; with ``role``, those config.yaml may name there."""
    return [e.name for e in EXTRACTORS.values() if role is None or role in e.roles]


@register("pixels", gpu=False, key=None, roles=("features", "fid"), torch=False,
          preprocessing="the uint8 image flattened and scaled to [0, 1]")
def _pixels(images, source, **_):
    return pixels(images)


@register("identity", gpu=False, key=None, roles=("features", "fid"), torch=False,
          preprocessing="vectors as they are: a vector file is its own features file (images: use pixels)")
def _identity(images, source, **_):
    if images.ndim == 4:
        raise OuroborosError("the identity feature space is for vectors; images use pixels")
    return data_space(images)


def data_space(items: np.ndarray) -> np.ndarray:
    """Items as float32 rows of their data space: a vector as it is, an image as its pixels in [0, 1]."""
    return pixels(items) if items.ndim == 4 else np.asarray(items, dtype=np.float32)


@register("classifier", gpu=False, key=None, roles=("features", "fid"),
          preprocessing="the penultimate layer of a small CNN trained on the real labels (ouroboros.classifier)")
def _classifier(images, source, *, classifier_dir=None, **_):
    from ouroboros import classifier

    if classifier_dir is None:
        raise OuroborosError("the classifier extractor needs the trained classifier's directory")
    return classifier.embed(images, classifier_dir)


@register("dinov2", gpu=True, key="dinov2", roles=("features", "fid"),
          preprocessing="the model's own AutoImageProcessor (resize, centre crop, ImageNet normalisation); the CLS token")
def _dinov2(images, source, *, dataset, policy=None, **_):
    return dinov2(images, source, dataset=dataset, policy=policy)


@register("inception", gpu=True, key="inception_weights", roles=("fid",),
          preprocessing="torch-fidelity's inception-v3-compat on uint8 input (its own resize to 299×299): 2048-d pool features")
def _inception(images, source, *, dataset, policy=None, **_):
    return inception(images, source, dataset=dataset, policy=policy)


@register("dinov2-fd", gpu=True, key="fd_dinov2", preprocessing=DGM_EVAL_PREPROCESSING)
def _dinov2_fd(images, source, *, dataset, policy=None, **_):
    return dinov2_fd(images, source, dataset=dataset, policy=policy)


@register("inception-torchvision", gpu=True, key="torchvision_inception_weights",
          preprocessing=TORCHVISION_INCEPTION_PREPROCESSING)
def _inception_torchvision(images, source, *, dataset, policy=None, **_):
    return inception_torchvision(images, source, dataset=dataset, policy=policy)


PREPROCESSING = {e.name: e.preprocessing for e in EXTRACTORS.values()}


def get(name: str) -> Extractor:
    if name not in EXTRACTORS:
        raise OuroborosError(f"config.yaml: unknown feature extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


def extract(name: str, images: np.ndarray, *, classifier_dir: str | os.PathLike | None = None,
            dinov2_model: str = "facebook/dinov2-small", inception_weights: str | None = None,
            dataset: str = "<dataset>", policy=None) -> np.ndarray:
    """Features of images in one space; ``dataset`` names the config keys that errors point at.

    ``dinov2_model`` and ``inception_weights`` are the model and weights of the extractor asked
    for: the workflow passes datasets.X.fd_dinov2 for ``dinov2-fd`` and
    datasets.X.torchvision_inception_weights for ``inception-torchvision`` (common.smk).
    """
    extractor = get(name)
    source = dinov2_model if "dinov2" in (extractor.key or "") else inception_weights
    return extractor.fn(images, source, dataset=dataset, classifier_dir=classifier_dir, policy=policy)


def stage(images_path: str, extractor: str, out: str, **options) -> None:
    from ouroboros.io import load_data, save_array
    from ouroboros.paths import dataset_of

    images = load_data(images_path)
    if images.ndim != 4 and extractor != "identity":
        raise OuroborosError(f"{images_path}: holds vectors, which the {extractor} extractor cannot embed; set the "
                             "dataset's features and fid_features to identity")
    # the dataset comes from the path, not from the rule: a new rule parameter or an edited script
    # would make Snakemake recompute every features file, and so the whole loop, of existing results
    options.setdefault("dataset", dataset_of(images_path) or "<dataset>")
    if get(extractor).gpu:
        from ouroboros import policy as device_policy

        policy = device_policy.resolve()
        policy.apply_backends()
        print(policy.describe())
        options["policy"] = policy
    feats = extract(extractor, images, **options)
    if not np.isfinite(feats).all():
        raise OuroborosError(f"{images_path}: {extractor} features contain NaN or inf; nothing was written")
    print(f"{extractor} features {feats.shape} of {images_path}")
    save_array(out, feats)
