"""The registry of generators: what ``model:`` of a dataset in config.yaml names.

A generator is fitted on D_n and samples item i of a per-item-seeded stream, so that its sample
sets do not depend on the batch size and the first N of 2N are the N. One :func:`register` call
makes it available to every dataset; its parameters become keys of ``datasets.X.model_params``,
checked when config.yaml is read, and the train and sample rules run it with no change:

- ``fit(data, labels, out_dir, *, params, seed, **job) -> dict``: fit on D_n (uint8 NHWC images
  or float32 N×d vectors, as stored) and write the model into ``out_dir`` (atomically: the
  directory appears whole or not at all); returns a summary for the log. ``job`` carries what
  only some generators use (``stats_out``, ``checkpoint_dir``, ``init_from``, ``classes``,
  ``label``, ``real``: D_1, for parameters measured on it).
- ``load(model_dir) -> model`` and ``save(model, out_dir)``: the model as files, no pickles.
- ``sample(model, start, count, *, seed, **options) -> (data, labels)``: items start … start +
  count − 1, of the kind the model was fitted on, and one int64 label each (-1: none).

The shipped generators: ``ddpm`` (ouroboros.models; its presets are names of their own:
``model: micro8``), and the closed-form ``gaussian`` and ``kde`` (ouroboros.closed_form), whose
collapse under the loop has known answers (docs/known-answers.md). A generator of one's own lives
in a module that config.yaml's ``generators:`` list names (docs/extending.md); every
registered generator must pass the contract test (tests/test_generators.py).

This module imports no generator: the built-in ones are loaded by name, like plug-ins, on the
first lookup, so that config.yaml can be read (and a numpy generator's job run) without torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ouroboros.errors import OuroborosError
from ouroboros.selectors import AUTO, Param, check, load_plugins

# the modules that register the shipped generators, imported on the first lookup
BUILTIN = ("ouroboros.models", "ouroboros.flow", "ouroboros.closed_form")
# the file of a model directory that names its generator (a DDPM's directory has diffusers' files instead)
MODEL_FILE = "generator.json"
KINDS = ("images", "vectors")


@dataclass(frozen=True)
class Generator:
    name: str
    fit: Callable[..., dict]
    load: Callable[[str | Path], Any]
    save: Callable[[Any, str | Path], None]
    sample: Callable[..., tuple[Any, Any]]
    params: Mapping[str, Param] = field(default_factory=dict)
    gpu: bool = False  # its train and sample jobs take a device slot (resources gpu=1)
    kinds: tuple[str, ...] = KINDS  # the data it fits: uint8 images, float32 vectors
    presets: Mapping[str, Any] = field(default_factory=dict)  # names that mean this generator with a preset
    conditional: bool = False  # may be class-conditional (datasets.X.classes)
    inherits_labels: bool = False  # a sample carries its parent's label (kde): ancestry is traceable
    fine_tunes: bool = False  # can start from the previous iteration's model (init: previous)
    help: str = ""
    unet: bool = False  # trains one of the DDPM's UNet presets, which ``model:`` names (flow)


REGISTRY: dict[str, Generator] = {}


def register(name: str, *, load: Callable, save: Callable, sample: Callable, params: Mapping[str, Param] | None = None,
             gpu: bool = False, kinds: tuple[str, ...] = KINDS, presets: Mapping[str, Any] | None = None,
             conditional: bool = False, inherits_labels: bool = False, fine_tunes: bool = False,
             help: str = "", unet: bool = False) -> Callable:
    """Decorator on the fit function: make it the generator ``name``. A name registered twice by
    two different functions, or a preset named like another generator, is refused."""
    def decorate(fit: Callable) -> Callable:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise OuroborosError(f"generator {name!r}: kinds must be a non-empty subset of {KINDS}, not {kinds}")
        untestable = [k for k, p in (params or {}).items() if p.required and p.example is None]
        if untestable:
            raise OuroborosError(f"generator {name!r}: required parameter {untestable[0]!r} needs an example value "
                                 "(Param(example=...)): the contract test runs every generator with it")
        known = REGISTRY.get(name)
        if known is not None and (known.fit.__module__, known.fit.__qualname__) != (fit.__module__, fit.__qualname__):
            raise OuroborosError(f"generator {name!r} is registered twice ({known.fit.__module__} and {fit.__module__}); "
                                 "rename one")
        taken = {p for g in REGISTRY.values() if g.name != name for p in (g.name, *g.presets)}
        clash = sorted(({name} | set(presets or {})) & taken)
        if clash:
            raise OuroborosError(f"generator {name!r}: the name {clash[0]!r} is already a generator or a preset")
        REGISTRY[name] = Generator(name, fit, load, save, sample, dict(params or {}), gpu, tuple(kinds),
                                   dict(presets or {}), conditional, inherits_labels, fine_tunes,
                                   help or (fit.__doc__ or "").split("\n")[0], unet)
        return fit
    return decorate


def builtin() -> None:
    load_plugins(list(BUILTIN), where="generators (built in)")


def names() -> list[str]:
    """Every name ``model:`` may take: the generators and their presets."""
    builtin()
    return sorted({n for g in REGISTRY.values() for n in (g.name, *g.presets)})


def reference(generator: str | None, model: str) -> str:
    """The one string that names a dataset's generator and preset, as the train rule passes it: the
    ``model:`` value alone where it implies the generator (``micro8``: the DDPM; ``kde``), else
    ``generator:model`` (``flow:micro8``: the flow-matching generator on the micro8 UNet)."""
    if generator is None or resolve(model)[0].name == generator:
        return model
    return f"{generator}:{model}"


def resolve(model: str) -> tuple[Generator, str | None]:
    """The generator a ``model:`` value (or a :func:`reference`) names, and the preset when it names
    one (``micro8`` → ddpm, micro8; ``kde`` → kde, None; ``flow:micro8`` → flow, micro8)."""
    builtin()
    if ":" in model:
        name, preset = model.split(":", 1)
        generator = get(name)
        if not generator.unet or resolve(preset)[0].name != "ddpm" or preset == "ddpm":
            raise OuroborosError(f"{model!r}: generator {name!r} takes no UNet preset"
                                 if not generator.unet else f"{model!r}: {preset!r} is not a UNet preset")
        return generator, preset
    if model in REGISTRY:
        return REGISTRY[model], None
    for g in REGISTRY.values():
        if model in g.presets:
            return g, model
    raise OuroborosError(f"unknown model {model!r}; generators and presets: {', '.join(names())}")


def get(name: str) -> Generator:
    builtin()
    if name not in REGISTRY:
        raise OuroborosError(f"unknown generator {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def validate(generator: Generator, given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``datasets.X.model_params`` checked against the generator's parameters, defaults filled in;
    ``where`` is the dataset's key (``datasets.theory-kde``)."""
    unknown = sorted(set(given) - set(generator.params))
    if unknown:
        raise OuroborosError(f"config.yaml: {where}.model_params.{unknown[0]}: generator {generator.name!r} has no such "
                             f"parameter (its parameters: {', '.join(sorted(generator.params)) or 'none'})")
    out = {}
    for key, spec in generator.params.items():
        if key in given:
            out[key] = check(spec, given[key], f"{where}.model_params.{key}")
        elif spec.required:
            raise OuroborosError(f"config.yaml: {where}.model_params.{key} is required by generator {generator.name}"
                                 + (f" ({spec.help})" if spec.help else ""))
        else:
            out[key] = spec.default
    return out


def measures_auto(params: Mapping[str, Any]) -> bool:
    """Whether a parameter is ``auto``, measured on D_1 when the model is fitted."""
    return any(v == AUTO for v in params.values())


def of_model_dir(model_dir: str | Path) -> Generator:
    """The generator that wrote a model directory: the one its generator.json names, else the
    DDPM (diffusers' save_pretrained files)."""
    marker = Path(model_dir) / MODEL_FILE
    if marker.is_file():
        return get(written_by(model_dir))
    return get("ddpm")  # an earlier release's DDPM directory, which had no generator.json


def written_by(model_dir: str | Path) -> str | None:
    """The generator named by a model directory's generator.json; None where it has none (a DDPM of
    an earlier release)."""
    marker = Path(model_dir) / MODEL_FILE
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())["generator"]
    except (ValueError, KeyError) as exc:
        raise OuroborosError(f"{marker}: not a generator's description ({exc}); delete {model_dir} and re-run the "
                             "train step") from exc


def check_written_by(model_dir: str | Path, name: str, *, legacy: bool = False) -> None:
    """Refuse a model directory that another generator wrote: a flow model read by the DDPM's sampler
    (or the reverse) would sample nonsense without a word. ``legacy``: a directory without
    generator.json is this generator's (the DDPM's, from an earlier release)."""
    found = written_by(model_dir)
    if found == name or (found is None and legacy):
        return
    raise OuroborosError(f"{model_dir}: written by generator {found or '(none named: no generator.json)'}, not {name}; "
                         f"load it with generators.of_model_dir({str(model_dir)!r}), which picks its own generator")


def data_kind(data) -> str:
    """'images' for uint8 N×H×W×C, 'vectors' for float N×d."""
    return "images" if getattr(data, "ndim", 0) == 4 else "vectors"
