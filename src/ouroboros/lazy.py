"""diffusers' UNet2DModel without the import of every other model diffusers ships.

``diffusers.models.unets`` and ``diffusers.models.transformers`` import all their models in their
``__init__`` (video, audio and text-to-image transformers, their LoRA loaders, transformers' and
scipy's modules), and UNet2DModel's blocks import two modules of the second package: a job that
builds or loads one UNet spent 6.1 CPU-s importing it and its scheduler, 1.6 of them on models
it never builds. ``packages`` registers such a package without running its ``__init__``: its submodules
import as they always do, and the first other name asked of it runs the ``__init__`` then (``from
diffusers.models.transformers import Transformer2DModel``), so every name of the package is still
there for whoever asks; ``diffusers.UNet2DConditionModel`` and DDPMPipeline import as before. The
classes are the same objects either way.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

# the two packages whose __init__ the UNet's modules would run (so laid out from diffusers 0.30, the
# floor pyproject.toml sets, to 0.42.1, the pinned one)
UNET_PACKAGES = ("diffusers.models.unets", "diffusers.models.transformers")


def packages(*names: str) -> None:
    """Register each package of ``names`` that is not imported yet, its ``__init__`` deferred to the
    first attribute asked of it that is not a submodule; a name that is not a package is left alone."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:  # its parent is missing: whoever imports it gets the ordinary error
            continue
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            continue
        sys.modules[name] = _deferred(importlib.util.module_from_spec(spec))


def _deferred(module: ModuleType) -> ModuleType:
    def __getattr__(attr: str):
        # dunders are probes (pickle, inspect, copy): answered as a plain module answers them, no init
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(f"module {module.__name__!r} has no attribute {attr!r}")
        del module.__dict__["__getattr__"]  # runs once: the __init__ then defines every name itself
        try:
            module.__spec__.loader.exec_module(module)
        except BaseException:
            # as after a failed import: the next name asked runs the __init__ again and raises its own
            # error, not an AttributeError of a module left half-made
            module.__getattr__ = __getattr__
            raise
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    return module


def unet_class():
    """diffusers.UNet2DModel, imported through its own module with UNET_PACKAGES deferred."""
    packages(*UNET_PACKAGES)
    from diffusers.models.unets.unet_2d import UNet2DModel

    return UNet2DModel
