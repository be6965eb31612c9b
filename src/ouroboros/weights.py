"""Where each network's weights come from without a network, and the exact steps to get them.

Every extractor that runs a network reads weights named by a dataset key: DINOv2 by hub id or local
directory (``datasets.X.dinov2``, ``datasets.X.fd_dinov2``), torch-fidelity's InceptionV3 from a
local file or torch-fidelity's own download path (``datasets.X.inception_weights``), torchvision's
InceptionV3 from a local file (``datasets.X.torchvision_inception_weights``). The preflight
(``ouroboros check``) asks :func:`missing` before any job starts; the feature extractors word their
offline failures with the same :func:`dinov2_fix` and :func:`inception_fix`, so both say the same.

Nothing here imports torch or transformers, and nothing reaches the network: a hub id is looked up
in the local Hugging Face cache only, as ``HF_HUB_OFFLINE=1`` would.
"""

from __future__ import annotations

import os
from pathlib import Path

# torch-fidelity's InceptionV3 (its ``URL_INCEPTION_V3``; tests/test_check.py checks the two agree).
# Not pytorch-fid's pt_inception-2015-12-05-6726825d.pth: another file with other keys.
FIDELITY_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FIDELITY_INCEPTION_FILE}"
PYTORCH_FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_URL = f"https://download.pytorch.org/models/{TORCHVISION_INCEPTION_FILE}"
# what transformers' from_pretrained reads from a DINOv2 directory: its config, one weights file, and
# (the distance space's AutoImageProcessor) the preprocessor's config
DINOV2_CONFIG = "config.json"
DINOV2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
DINOV2_PROCESSOR = "preprocessor_config.json"


def local_dir(model: str) -> str:
    """Where the download command puts a hub model: resources/<its name>."""
    return f"resources/{model.rstrip('/').rsplit('/', 1)[-1]}"


def dinov2_fix(model: str, key: str) -> str:
    """The steps that make a DINOv2 given by hub id (or a missing directory) loadable offline."""
    if _is_hub_id(model):
        target = local_dir(model)
        return (f"download it once on a machine with network: hf download {model} --local-dir {target} "
                f"(huggingface_hub's CLI), then set {key} in config.yaml to {target} (or run hf download {model} "
                "here to fill the Hugging Face cache)")
    size = next((s for s in ("giant", "large", "base") if s in model.lower()), "small")  # the name says which, if any
    return (f"copy a DINOv2 model directory there (hf download facebook/dinov2-{size} --local-dir {model}, "
            f"say), or set {key} in config.yaml to a hub id or an existing directory")


def inception_fix(key: str, hub_dir: str | None = None) -> str:
    """The steps that give torch-fidelity its InceptionV3 weights offline."""
    where = hub_dir or f"{torch_hub_dir()}/checkpoints"
    return (f"download torch-fidelity's {FIDELITY_INCEPTION_FILE} (not pytorch-fid's {PYTORCH_FID_INCEPTION_FILE}) "
            f"once: curl -L --create-dirs -o resources/{FIDELITY_INCEPTION_FILE} {FIDELITY_INCEPTION_URL}, then set "
            f"{key} in config.yaml to resources/{FIDELITY_INCEPTION_FILE} (or put the file in {where}/, "
            "where torch-fidelity looks when the key is null)")


def torchvision_inception_fix(key: str) -> str:
    """The steps that give the torchvision FID its InceptionV3 weights."""
    return (f"copy torchvision's {TORCHVISION_INCEPTION_FILE} to a local path (curl -L --create-dirs -o "
            f"resources/{TORCHVISION_INCEPTION_FILE} {TORCHVISION_INCEPTION_URL}, or ~/.cache/torch/hub/checkpoints/ "
            f"of a machine that ran inception_v3(weights='IMAGENET1K_V1')) and set {key} in config.yaml to it")


def _is_hub_id(model: str) -> bool:
    """A hub id (owner/name) rather than a path: transformers reads an existing directory first, and a
    missing one under resources/ or an existing folder (resources/dinov2-small) is a path too."""
    if os.path.isdir(model) or model.count("/") != 1 or model.startswith((".", "/", "~")) or model.endswith("/"):
        return False
    owner = model.split("/")[0]
    return owner != "resources" and not os.path.isdir(owner)


def torch_hub_dir() -> str:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub,
    else ~/.cache/torch/hub (torch.hub._get_torch_home)."""
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return os.path.join(os.path.expanduser(home), "hub")


def _hub_cached(model: str, filename: str) -> bool:
    try:  # transformers brings huggingface_hub; an environment without it has no hub cache to look in
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False

    found = try_to_load_from_cache(model, filename)
    return isinstance(found, str) and os.path.isfile(found)


def dinov2_missing(model: str, *, processor: bool = True) -> str | None:
    """What is missing for transformers to load this DINOv2 offline (None: nothing). ``processor``:
    the distance space's image processor is read too (FD_DINOv2 preprocesses by itself)."""
    needed = [DINOV2_CONFIG] + ([DINOV2_PROCESSOR] if processor else [])
    if _is_hub_id(model):
        absent = [f for f in needed if not _hub_cached(model, f)]
        if not any(_hub_cached(model, f) for f in DINOV2_WEIGHTS):
            absent.append(" or ".join(DINOV2_WEIGHTS))
        return f"{model} is not in the Hugging Face cache (no {', '.join(absent)})" if absent else None
    folder = Path(model)
    if not folder.is_dir():
        return f"{model}: no such directory"
    absent = [f for f in needed if not (folder / f).is_file()]
    if not any((folder / f).is_file() for f in DINOV2_WEIGHTS):
        absent.append(" or ".join(DINOV2_WEIGHTS))
    return f"{model}: the directory lacks {', '.join(absent)}" if absent else None


def inception_missing(weights: str | None) -> str | None:
    """What is missing for torch-fidelity's InceptionV3 (``weights`` None: torch-fidelity's own path)."""
    if weights is None:
        path = Path(torch_hub_dir()) / "checkpoints" / FIDELITY_INCEPTION_FILE
        return None if path.is_file() else f"{path} does not exist (torch-fidelity would download it at run time)"
    if Path(weights).name == PYTORCH_FID_INCEPTION_FILE:
        return f"{weights} is pytorch-fid's file; torch-fidelity loads {FIDELITY_INCEPTION_FILE}"
    return None if Path(weights).is_file() else f"{weights}: no such file"


def torchvision_inception_missing(weights: str | None) -> str | None:
    if not weights:
        return "no weights file is set"
    return None if Path(weights).is_file() else f"{weights}: no such file"


def missing(extractor: str, source: str | None, key: str) -> tuple[str, str] | None:
    """(what is missing, the fix) for the extractor's weights ``source`` (a dataset key's value), or
    None when they load offline or the extractor has none."""
    if extractor == "dinov2" and source:
        why = dinov2_missing(source)
        return (why, dinov2_fix(source, key)) if why else None
    if extractor == "dinov2-fd":
        if not source:
            return "no model is set", f"set {key} in config.yaml (facebook/dinov2-large, or a local copy of it)"
        why = dinov2_missing(source, processor=False)
        return (why, dinov2_fix(source, key)) if why else None
    if extractor == "inception":
        why = inception_missing(source)
        return (why, inception_fix(key)) if why else None
    if extractor == "inception-torchvision":
        why = torchvision_inception_missing(source)
        return (why, torchvision_inception_fix(key)) if why else None
    return None
