"""A small CNN trained on the real labelled images: the offline feature space for FID.

Standard FID needs InceptionV3 weights from the network; where there is none (CI, the demo) the
penultimate layer of this classifier, trained by the workflow on the real data, plays that role.
It is an honest perceptual space for digits (it separates classes), not a standard benchmark:
FID values from it are comparable with each other, not with published numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ouroboros.data import to_model
from ouroboros.errors import OuroborosError

FEATURE_DIM = 64


def network(channels: int, classes: int):
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(64, FEATURE_DIM, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.head = nn.Linear(FEATURE_DIM, classes)

        def forward(self, x):
            return self.head(self.body(x))

    return Net()


def train(images: np.ndarray, labels: np.ndarray, *, steps: int, seed: int, out_dir: str | os.PathLike) -> dict:
    """Train on 80% of the labelled images, report accuracy on the other 20%, save safetensors."""
    import torch
    from safetensors.torch import save_model

    from ouroboros.io import save_json

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    cut = int(0.8 * len(images))
    fit, held = order[:cut], order[cut:]
    classes = int(labels.max()) + 1
    torch.manual_seed(seed)
    net = network(images.shape[-1], classes)
    x, y = to_model(images), torch.from_numpy(labels)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(fit, size=min(128, len(fit)), replace=False))
        loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x[held]).argmax(1) == y[held]).float().mean()) if len(held) else float("nan")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(net, str(out / "model.safetensors"))
    info = {"channels": int(images.shape[-1]), "classes": classes, "steps": steps, "held_out_accuracy": accuracy,
            "train_images": int(len(fit)), "held_out_images": int(len(held)), "feature_dim": FEATURE_DIM}
    save_json(out / "config.json", info)
    return info


def load(model_dir: str | os.PathLike):
    from safetensors.torch import load_model

    folder = Path(model_dir)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise OuroborosError(f"{folder}: classifier missing config.json or model.safetensors; re-run the classifier step")
    info = json.loads((folder / "config.json").read_text())
    net = network(info["channels"], info["classes"])
    load_model(net, str(folder / "model.safetensors"))
    return net.eval()


def embed(images: np.ndarray, model_dir: str | os.PathLike, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features (float32, FEATURE_DIM)."""
    import torch

    net = load(model_dir)
    out = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch_size):
            out.append(net.body(to_model(images[lo : lo + batch_size])).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, FEATURE_DIM), np.float32)


def stage(images_path: str, labels_path: str, *, steps: int, seed: int, out_dir: str) -> None:
    from ouroboros.io import load_array, load_images
    from ouroboros.runtime import fault_point

    fault_point("classifier")  # the SLURM retry test fails this job once: it runs beside the loop, off its path

    info = train(load_images(images_path), load_array(labels_path, dtype=np.int64, ndim=1), steps=steps,
                 seed=seed, out_dir=out_dir)
    print(json.dumps(info, indent=2))
