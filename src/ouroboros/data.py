"""Real data: the embedded digits, CIFAR-10 / MNIST through torchvision, any .npz or image folder
(FFHQ at 32×32, say), a seeded Gaussian of vectors, and the nested seeded subsets of the Finding I
protocol.

Images are uint8 NHWC everywhere; vectors (``source: gaussian``, or an .npz with a float ``x``)
are float32 N×d. A dataset of size N is the first N items of one seeded permutation of the
source, so the subsets of a size sweep are nested (1,024 ⊂ 2,048 ⊂ ...).
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


GAUSSIAN_DEFAULTS = {"dim": 2, "decay": 0.0, "count": 10000, "seed": 0}


def gaussian_source(dim: int, decay: float, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` float32 vectors of N(0, Σ) in R^dim and their labels 0 … count−1 (each point its
    own label, so that a kde's samples, which carry their parent's label, trace back to it).

    Σ = Q diag(λ) Qᵀ with λ_k = k^(−decay), k = 1 … dim (decay 0: the identity; 1: a spectrum
    falling like 1/k, as natural images' do roughly) and Q a seeded uniformly random rotation, so
    that no coordinate is special. The points are exact draws, seeded by ``seed`` alone: the
    source is the same whatever the dataset's name or size.
    """
    rng, q, spectrum = _gaussian_basis(dim, decay, seed)
    points = (rng.standard_normal((count, dim)) * np.sqrt(spectrum)) @ q.T
    return points.astype(np.float32), np.arange(count, dtype=np.int64)


def _gaussian_basis(dim: int, decay: float, seed: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """The source's stream (after its rotation was drawn), its rotation Q and its spectrum λ."""
    rng = np.random.default_rng([int(seed), 0x6A055])
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))  # Haar-uniform: fix the signs QR leaves arbitrary
    return rng, q, np.arange(1, dim + 1, dtype=np.float64) ** -float(decay)


def gaussian_covariance(dim: int, decay: float, count: int = 0, seed: int = 0) -> np.ndarray:
    """Σ = Q diag(λ) Qᵀ of :func:`gaussian_source`."""
    _, q, spectrum = _gaussian_basis(dim, decay, seed)
    return (q * spectrum) @ q.T


def load_source(source: str | dict, root: str | None, dataset: str = "<name>") -> tuple[np.ndarray, np.ndarray]:
    """All items and labels of a source, before subsetting. ``source`` is a source's name, or for
    ``gaussian`` its whole description ({"name": "gaussian", "dim", "decay", "count", "seed"})."""
    if isinstance(source, dict):
        spec = dict(source)
        if spec.pop("name", None) != "gaussian":
            raise OuroborosError(f"config.yaml: datasets.{dataset}.source: only gaussian is described by options, not {source}")
        return gaussian_source(**{**GAUSSIAN_DEFAULTS, **spec})
    if source == "gaussian":
        return gaussian_source(**GAUSSIAN_DEFAULTS)
    if source == "digits":
        return digits()
    if source in ("cifar10", "mnist"):
        return _torchvision(source, root)
    if source == "npz":
        return _npz(root, dataset)
    if source == "folder":
        return _folder(root, dataset)
    raise OuroborosError(f"config.yaml: unknown dataset source {source!r}; known: digits, cifar10, mnist, npz, folder, "
                         "gaussian")


def _torchvision(source: str, root: str | None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 / MNIST train split from a local torchvision copy (never downloaded here)."""
    import pickle
    from pathlib import Path

    import torchvision

    class LocalCIFAR10(torchvision.datasets.CIFAR10):
        """torchvision's CIFAR-10 reader, checking that its files are there instead of their MD5s:
        the sums guard a download, and a local copy that a cluster's admin converted or that a
        test wrote (the same layout, other bytes) is read the same way; a damaged file still
        fails when it is read."""

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:  # the class names, without the MD5 check of the meta file
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    cls = {"cifar10": LocalCIFAR10, "mnist": torchvision.datasets.MNIST}[source]
    root = root or f"resources/{source}"
    try:
        ds = cls(root=root, train=True, download=False)
    except (RuntimeError, OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        raise OuroborosError(
            f"{Path(root).resolve()}: no readable {source} train split found ({exc.__class__.__name__}: {exc}). "
            "Download it once on a machine "
            f"with network: python -c \"import torchvision; torchvision.datasets.{'CIFAR10' if source == 'cifar10' else 'MNIST'}"
            f"('{root}', train=True, download=True)\", or set datasets.<name>.root to an existing copy"
        ) from exc
    images = np.asarray(ds.data)
    if source == "mnist":
        images = pad_to_32(images)
    return images.astype(np.uint8), np.asarray(ds.targets, dtype=np.int64)


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """MNIST's 28×28 digits centred on a 32×32 black canvas (N×32×32×1), as the paper's MNIST UNet
    needs: its three downsamplings halve 32 to 4 but do not divide 28."""
    if images.ndim == 3:
        images = images[..., None]
    h, w = images.shape[1:3]
    if (h, w) == (32, 32):
        return images
    top, left = (32 - h) // 2, (32 - w) // 2
    return np.pad(images, ((0, 0), (top, 32 - h - top), (left, 32 - w - left), (0, 0)))


def _npz(root: str | None, dataset_hint: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images (key ``images``) or float vectors N×d (key ``x``) from an .npz, with
    optional ``labels``; never unpickled."""
    from pathlib import Path

    path = Path(root or "")
    if not path.is_file():
        raise OuroborosError(
            f"{path.resolve()}: no .npz file; write one with numpy.savez(path, images=uint8 N×H×W×C"
            f"[, labels=int N]) or numpy.savez(path, x=float N×d) and set datasets.{dataset_hint}.root to it"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = "images" if "images" in archive.files else "x" if "x" in archive.files else None
            if key is None:
                raise OuroborosError(f"{path}: no 'images' (uint8 N×H×W×C) or 'x' (float N×d) array (found {archive.files})")
            items = archive[key]
            labels = archive["labels"] if "labels" in archive.files else np.zeros(len(items), np.int64)
    except (ValueError, OSError, EOFError) as exc:
        raise OuroborosError(f"{path}: not a readable .npz ({exc})") from exc
    if key == "x":
        return _checked_vectors(items, labels, path)
    return _checked(items, labels, path)


def _folder(root: str | None, dataset_hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Every .png/.jpg under a folder (sorted by path), all of one size, as uint8 NHWC."""
    from pathlib import Path

    from PIL import Image

    folder = Path(root or "")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise OuroborosError(
            f"{folder.resolve()}: no .png or .jpg images; point datasets.{dataset_hint}.root at a folder of "
            "same-size images (e.g. FFHQ downsampled to 32×32, see docs/configuration.md)"
        )
    arrays = []
    for f in files:
        with Image.open(f) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise OuroborosError(f"{folder}: images of several sizes {sorted(shapes)[:3]}; resize them to one size first")
    return _checked(np.stack(arrays), np.zeros(len(arrays), np.int64), folder)


def _checked(images: np.ndarray, labels: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise OuroborosError(f"{path}: expected uint8 images N×H×W×C with C in (1, 3), found {images.dtype} {images.shape}")
    if len(labels) != len(images):
        raise OuroborosError(f"{path}: {len(labels)} labels for {len(images)} images")
    return images, labels.astype(np.int64)


def _checked_vectors(x: np.ndarray, labels: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 2 or x.dtype.kind != "f" or x.shape[1] < 1:
        raise OuroborosError(f"{path}: expected float vectors N×d in 'x', found {x.dtype} {x.shape}")
    if not np.isfinite(x).all():
        raise OuroborosError(f"{path}: 'x' holds NaN or infinite values")
    if len(labels) != len(x):
        raise OuroborosError(f"{path}: {len(labels)} labels for {len(x)} vectors")
    return x.astype(np.float32), labels.astype(np.int64)


def subset(count: int, size: int, *, seed: int, dataset: str, replicate: int = 0) -> np.ndarray:
    """Indices of the first ``size`` images of the dataset's seeded permutation: replicate r ≥ 1
    of a ``real_subset: per_replicate`` design has a permutation of its own (replicate 0's is the
    dataset's, as it was before the option existed)."""
    if size > count:
        raise OuroborosError(
            f"config.yaml: datasets.{dataset}.size = {size} but the source holds only {count} images; lower it"
        )
    rng = np.random.default_rng(seeds.seed_sequence(seed, dataset, 0, "data", replicate))
    return rng.permutation(count)[:size]


def prepare(source: str | dict, root: str | None, size: int, *, seed: int, dataset: str,
            family: str | None = None, replicate: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``size`` images of the permutation of ``family`` (the root of a ``base:`` chain),
    so the datasets of a size sweep are nested subsets of one another (within each replicate)."""
    images, labels = load_source(source, root, dataset)
    keep = subset(len(images), size, seed=seed, dataset=family or dataset, replicate=replicate)
    return images[keep], labels[keep]


def fresh_stage(source: str | dict, root: str | None, size: int, *, seed: int, dataset: str, images_out: str,
                labels_out: str, family: str | None = None, replicate: int = 0) -> None:
    """The source's images outside D_1, in the order of the permutation D_1 is the front of: the
    pool of ``fresh: λ`` (each iteration takes the next rows, so none is drawn twice)."""
    from ouroboros.io import save_array

    images, labels = load_source(source, root, dataset)
    rest = subset(len(images), len(images), seed=seed, dataset=family or dataset, replicate=replicate)[size:]
    save_array(images_out, images[rest])
    save_array(labels_out, labels[rest])
    print(f"{dataset}: {len(rest)} real items outside D_1 (of {len(images)} in {source})")


def reference_stage(source: str | dict, root: str | None, *, dataset: str, images_out: str) -> None:
    """Every image of the source (e.g. CIFAR-10's 50,000 training images), for FID."""
    from ouroboros.io import save_array

    images, _ = load_source(source, root, dataset)
    save_array(images_out, images)
    print(f"{dataset}: FID reference of {len(images)} images from {source}")


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


def stage(source: str | dict, root: str | None, size: int, *, seed: int, dataset: str,
          images_out: str, labels_out: str, manifest_out: str, family: str | None = None, replicate: int = 0) -> None:
    """The real subset D_1 (images, labels) and its manifest (replicate: see ``subset``)."""
    from ouroboros import manifest
    from ouroboros.io import save_array

    images, labels = prepare(source, root, size, seed=seed, dataset=dataset, family=family, replicate=replicate)
    save_array(images_out, images)
    save_array(labels_out, labels)
    manifest.write(manifest_out, manifest.from_pool([manifest.PoolPart("real", images_out, len(images))],
                                                    np.arange(len(images))))
    print(f"{dataset}: {len(images)} real items of shape {images.shape[1:]} from {source}")
