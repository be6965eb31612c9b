"""The DDPM generator (diffusers UNet2DModel + DDPMScheduler) and its UNet presets, by name:
``model: micro8`` in config.yaml names the generator ``ddpm`` with the preset micro8
(ouroboros.generators).

``tiny8``: the CPU preset for 8×8 digits: three plain blocks of 32, 32, 64 channels, one layer
each, 8 groups, no attention (0.74M parameters: big enough to memorize a few hundred images,
small enough to train 400 steps of batch 64 in about 25 s on one core).
``micro8``: tiny8 with half the channels (16, 16, 32; 0.19M parameters), about half tiny8's time per
step on one core (34 against 65 ms at batch 64): `make science`'s preset.
``cifar-paper``: §D.2 of the paper as written: 6 blocks of 48, 48, 96, 96, 144, 144 channels,
2 layers per block, 16 groups, with the block types of diffusers' train_unconditional example
(attention in the 5th down and 2nd up block), which the paper says it kept at their defaults.
``cifar-released``: the same with 48, 48, 96, 96, 192, 192 channels, as in the authors' script.
``mnist-paper``: 4 blocks of 64, 128, 256, 512 channels, 2 layers, 32 groups, for 32×32
(MNIST padded by 2 pixels; three downsamplings do not divide 28).

Any preset becomes class-conditional for classifier-free guidance with ``classes=K``: a learned
class embedding of K + 1 rows is added to the time embedding, row K being the "no label" token
that label dropout trains and unconditional guidance queries (Ho & Salimans, 2022).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ouroboros.errors import OuroborosError
from ouroboros.generators import MODEL_FILE, register

_EXAMPLE_DOWN = ("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
_EXAMPLE_UP = ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D")

PRESETS: dict[str, dict[str, Any]] = {
    "tiny8": dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D",) * 3,
        up_block_types=("UpBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        add_attention=False,
    ),
    "cifar-paper": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(48, 48, 96, 96, 144, 144),
        down_block_types=_EXAMPLE_DOWN,
        up_block_types=_EXAMPLE_UP,
        layers_per_block=2,
        norm_num_groups=16,
    ),
    "mnist-paper": dict(
        sample_size=32,
        in_channels=1,
        out_channels=1,
        block_out_channels=(64, 128, 256, 512),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=32,
    ),
}


# half of tiny8's channels (0.19M parameters): half its cost per step on one core, for `make science`
PRESETS["micro8"] = {**PRESETS["tiny8"], "block_out_channels": (16, 16, 32)}
# the authors' released script: wider last two blocks
PRESETS["cifar-released"] = {**PRESETS["cifar-paper"], "block_out_channels": (48, 48, 96, 96, 192, 192)}


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise OuroborosError(f"config.yaml: unknown model preset {name!r}; presets: {sorted(PRESETS)}")
    return dict(PRESETS[name])


def build(name: str, classes: int | None = None):
    """A freshly initialised UNet2DModel (initialise under a seeded torch RNG for determinism);
    class-conditional with ``classes`` labels plus the null label."""
    from ouroboros.lazy import unet_class

    options = preset(name)
    if classes:
        options.update(num_class_embeds=int(classes) + 1)
    return unet_class()(**options)


def null_label(unet) -> int | None:
    """The index of the "no label" token of a conditional UNet, None for an unconditional one."""
    rows = unet.config.get("num_class_embeds")
    return None if not rows else int(rows) - 1


# A model directory is laid out as DDPMPipeline.save_pretrained lays it out, so that
# `DDPMPipeline.from_pretrained(model_dir)` opens it: unet/, scheduler/, model_index.json, beside our
# own training.json and generator.json. Releases before 0.2 wrote the UNet and scheduler files flat
# in the directory; those still load (unet_dir), so an upgrade never retrains finished work.
UNET, SCHEDULER, INDEX = "unet", "scheduler", "model_index.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def unet_dir(path) -> Path:
    """The folder holding the UNet's config.json and weights: ``path/unet``, or ``path`` itself in the
    flat layout of earlier releases."""
    folder = Path(path)
    return folder / UNET if (folder / UNET).is_dir() or not (folder / "config.json").is_file() else folder


def load(path: str):
    """A trained UNet from a model directory (safetensors only, never a pickle)."""
    from ouroboros.lazy import unet_class

    folder = unet_dir(path)
    weights = folder / WEIGHTS
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise OuroborosError(
            f"{path}: not a complete model directory (needs {UNET}/config.json and {UNET}/{WEIGHTS}, as "
            "DDPMPipeline.save_pretrained writes them, or both flat in the directory as earlier releases wrote them); "
            "delete it and re-run the train step"
        )
    try:
        # low_cpu_mem_usage=False: the default wants accelerate (not a dependency) and warns at every
        # load without it; the largest preset is 58M parameters (230 MB), so the memory it would save
        # does not matter, and every machine then loads the same way, accelerate installed or not
        return unet_class().from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False, local_files_only=True)
    except Exception as exc:  # diffusers raises several types for corrupt weights
        raise OuroborosError(f"{path}: cannot load the model ({exc}); delete it and re-run the train step") from exc


def load_scheduler(path):
    """The noise schedule saved beside the UNet (scheduler/, or flat in an earlier release's directory)."""
    from diffusers import DDPMScheduler

    folder = Path(path)
    sub = folder / SCHEDULER
    return DDPMScheduler.from_pretrained(sub if sub.is_dir() else folder, local_files_only=True)


def save(unet, noise_schedule, folder: Path) -> None:
    """The UNet and its schedule in DDPMPipeline's layout (into a folder being filled, see train.save_model)."""
    import json

    import diffusers

    unet.save_pretrained(folder / UNET, safe_serialization=True)
    noise_schedule.save_pretrained(folder / SCHEDULER)
    index = {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", type(noise_schedule).__name__], "unet": ["diffusers", type(unet).__name__]}
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    (folder / MODEL_FILE).write_text(json.dumps({"generator": "ddpm"}) + "\n")


# --- the generator ------------------------------------------------------------------------------
# fit = ouroboros.train (checkpoints, device policy, finite-or-fail), sample = ouroboros.sample
# (per-image seeds); torch and diffusers are imported inside, when a DDPM job runs.


def _load(model_dir):
    from ouroboros.generators import check_written_by

    check_written_by(model_dir, "ddpm", legacy=True)  # never a flow model read as a DDPM
    return load(model_dir), load_scheduler(model_dir)


def _save(model, out_dir) -> None:
    from ouroboros.train import save_model

    unet, noise_schedule = model
    save_model(unet, noise_schedule, out_dir, {"preset": None})


def _sample(model, start: int, count: int, *, seed: int, inference_steps: int = 1000, batch_size: int = 256,
            guidance_scale: float = 1.0, policy=None, source: str = "the model", progress: bool = False):
    from ouroboros.sample import sample

    unet, noise_schedule = model
    return sample(unet, noise_schedule, start, count, seed=seed, inference_steps=inference_steps,
                  batch_size=batch_size, guidance_scale=guidance_scale, progress=progress, policy=policy, source=source)


@register("ddpm", load=_load, save=_save, sample=_sample, gpu=True, kinds=("images",), presets=PRESETS,
          conditional=True, fine_tunes=True)
def fit(data, labels, out_dir, *, params: dict, seed: int, preset: str | None = None, classes: int | None = None,
        stats_out=None, checkpoint_dir=None, init_from=None, label: str = "training", tensorboard_dir=None,
        **_) -> dict:
    """A DDPM (diffusers UNet2DModel of a preset, the paper's noise schedule) trained on D_n;
    ``params`` are the dataset's train keys."""
    from ouroboros.config import TrainConfig
    from ouroboros.train import train

    if preset is None:
        raise OuroborosError("the ddpm generator needs a preset: model: one of " + ", ".join(sorted(PRESETS)))
    return train(data, preset, TrainConfig(**params), seed=seed, out_dir=out_dir, stats_path=stats_out, labels=labels,
                 classes=classes, checkpoint_dir=checkpoint_dir, init_from=init_from, label=label,
                 tensorboard_dir=tensorboard_dir)
