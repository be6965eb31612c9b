"""Real data: the embedded digits, and the nested seeded subsets of the Finding I protocol.

Images are uint8 NHWC everywhere. A dataset of size N is the first N images of one seeded
permutation of the source, so the subsets of a size sweep are nested (1,024 ⊂ 2,048 ⊂ ...).
"""

from __future__ import annotations

import numpy as np

from ouroboros import seeds
from ouroboros.errors import OuroborosError


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8×8 digits (values 0–16) as uint8 NHWC in 0–255, and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def load_source(source: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of a source, before subsetting."""
    if source == "digits":
        return digits()
    if source in ("cifar10", "mnist"):
        return _torchvision(source, root)
    raise OuroborosError(f"config.yaml: unknown dataset source {source!r}; known: digits, cifar10, mnist")


def _torchvision(source: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 / MNIST train split from a local torchvision copy (never downloaded here)."""
    from pathlib import Path

    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "mnist": torchvision.datasets.MNIST}[source]
    root = root or f"resources/{source}"
    try:
        ds = cls(root=root, train=True, download=False)
    except RuntimeError as exc:
        raise OuroborosError(
            f"{Path(root).resolve()}: no {source} train split found ({exc}). Download it once on a machine "
            f"with network: python -c \"import torchvision; torchvision.datasets.{cls.__name__}"
            f"('{root}', train=True, download=True)\", or set datasets.<name>.root to an existing copy"
        ) from exc
    images = np.asarray(ds.data)
    if images.ndim == 3:  # MNIST: N×H×W
        images = images[..., None]
    return images.astype(np.uint8), np.asarray(ds.targets, dtype=np.int64)


def subset(count: int, size: int, *, seed: int, dataset: str) -> np.ndarray:
    """Indices of the first ``size`` images of the dataset's seeded permutation."""
    if size > count:
        raise OuroborosError(
            f"config.yaml: datasets.{dataset}.size = {size} but the source holds only {count} images; lower it"
        )
    rng = np.random.default_rng(seeds.seed_sequence(seed, dataset, 0, "data"))
    return rng.permutation(count)[:size]


def prepare(source: str, root: str | None, size: int, *, seed: int, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_source(source, root)
    keep = subset(len(images), size, seed=seed, dataset=dataset)
    return images[keep], labels[keep]


def to_model(images: np.ndarray):
    """uint8 NHWC → float tensor NCHW in [-1, 1] (the DDPM convention)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def from_model(x) -> np.ndarray:
    """float NCHW in [-1, 1] → uint8 NHWC, rounded to the nearest level."""
    import torch

    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def stage(source: str, root: str | None, size: int, *, seed: int, dataset: str,
          images_out: str, labels_out: str, manifest_out: str) -> None:
    """The real subset D_1 (images, labels) and its manifest."""
    from ouroboros import manifest
    from ouroboros.io import save_array

    images, labels = prepare(source, root, size, seed=seed, dataset=dataset)
    save_array(images_out, images)
    save_array(labels_out, labels)
    manifest.write(manifest_out, manifest.from_pool([manifest.PoolPart("real", images_out, len(images))],
                                                    np.arange(len(images))))
    print(f"{dataset}: {len(images)} real images of shape {images.shape[1:]} from {source}")
