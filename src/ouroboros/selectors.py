"""The registry of selection methods: what ``selection: NAME`` in a run of config.yaml names.

A selection method is a function ``fn(features, n, *, seed, **params) -> indices`` (or
``(indices, info)``, ``info`` going to selection.json) that chooses ``n`` distinct rows of a pool
of feature rows. One call of :func:`register` makes it available to every run, its parameters
become run keys validated when config.yaml is read, and no rule or schema changes. The paper's
methods register themselves the same way in ``ouroboros.select``; a method of one's own lives in
a module that config.yaml's ``selectors:`` list names (a module path, or a ``.py`` file relative
to the working directory), e.g. ``ouroboros.knn_entropy`` (docs/extending.md).

Every registered method must pass the contract test (tests/test_selectors.py): exactly ``n``
distinct pool indices, the same for the same seed, a clear error for a pool smaller than ``n``,
and no source favoured on exact ties (break them by a seeded order of the pool, as the paper's
shuffled pool does, never by position: real images come first in the accumulate pool).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ouroboros.errors import OuroborosError

AUTO = "auto"
_REQUIRED = object()
# a run's own keys, and the names the select job passes a method: no parameter may take them
RUN_KEYS = ("paradigm", "selection", "samples", "share", "fresh", "init", "train", "select_features", "description",
            "directory")
RESERVED = frozenset(RUN_KEYS) | {"method", "real_images", "seed", "device", "n", "features"}


@dataclass(frozen=True)
class Param:
    """One parameter of a selection method, as a run key.

    ``distance``: a length in the selection space, which may also be ``auto`` (the median
    nearest-neighbour distance of D_1 there, measured by the select job). A distance named
    ``tau0`` defaults to ``datasets.X.tau0`` when the run selects in the dataset's selection space.
    """

    types: tuple[type, ...]
    default: Any = _REQUIRED
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # what ``check`` demands, for the error message
    distance: bool = False
    help: str = ""
    example: Any = None  # a valid value of a required parameter: the contract test runs with it

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Selector:
    name: str
    fn: Callable[..., Any]
    params: Mapping[str, Param] = field(default_factory=dict)
    keeps_all: bool = False  # D_n is the whole pool (vanilla replace): ``n`` is ignored
    devices: tuple[str, ...] = ("cpu",)  # a method with a GPU path gets ``device=`` too
    help: str = ""
    reads_features: bool = True  # False: the method never looks at the rows (all, random)
    # (pool size, n) → why the method cannot run there, or None: asked when the DAG is built, so that
    # a hopeless job fails before the GPU work of the iterations before it
    fits: Callable[[int, int], str | None] | None = None

    def __call__(self, features: np.ndarray, n: int, *, seed: int, device: str = "cpu",
                 **params: Any) -> tuple[np.ndarray, dict]:
        extra = {"device": device} if len(self.devices) > 1 else {}
        out = self.fn(features, n, seed=seed, **extra, **params)
        indices, info = out if isinstance(out, tuple) else (out, {})
        return np.asarray(indices, dtype=np.int64), dict(info)


REGISTRY: dict[str, Selector] = {}


def _origin(fn: Callable) -> tuple[str, str]:
    """Where a function is defined: the same file run again (config.yaml read twice) is the same."""
    code = getattr(fn, "__code__", None)
    return (str(Path(code.co_filename).resolve()) if code else fn.__module__), fn.__qualname__


def register(name: str, *, params: Mapping[str, Param] | None = None, keeps_all: bool = False,
             devices: tuple[str, ...] = ("cpu",), help: str = "", reads_features: bool = True,
             fits: Callable[[int, int], str | None] | None = None) -> Callable:
    """Decorator: make ``fn`` the selection method ``name``. Registering a name twice with
    another function is an error (two plug-ins would silently shadow each other, or one the
    paper's method); so is a parameter named like a run key or an argument of the call."""
    def decorate(fn: Callable) -> Callable:
        taken = sorted(set(params or {}) & RESERVED)
        if taken:
            raise OuroborosError(f"selection method {name!r}: parameter {taken[0]!r} is a run key or an argument the "
                                 f"select job passes itself; rename it (reserved: {', '.join(sorted(RESERVED))})")
        untestable = [k for k, p in (params or {}).items() if p.required and p.example is None]
        if untestable:
            raise OuroborosError(f"selection method {name!r}: required parameter {untestable[0]!r} needs an example "
                                 "value (Param(example=...)): the contract test runs every method with it")
        known = REGISTRY.get(name)
        if known is not None and _origin(known.fn) != _origin(fn):
            raise OuroborosError(f"selection method {name!r} is registered twice: {'.'.join(_origin(known.fn))} and "
                                 f"{'.'.join(_origin(fn))}; rename one")
        REGISTRY[name] = Selector(name, fn, dict(params or {}), keeps_all, devices,
                                  help or (fn.__doc__ or "").split("\n")[0], reads_features, fits)
        return fn
    return decorate


# the modules that register the paper's methods, imported by name on the first lookup: this
# registry imports no algorithm module, so reading config.yaml never loads one it does not name
BUILTIN = ("ouroboros.select",)


def builtin() -> None:
    """Register the paper's methods (all, random, greedy, threshold_decay)."""
    load_plugins(list(BUILTIN), where="selectors (built in)")


def load_plugins(entries: list[str] | tuple[str, ...], where: str = "selectors") -> None:
    """Import config.yaml's ``selectors:`` entries: module paths, or .py files relative to the
    working directory (each registers its methods on import)."""
    for i, entry in enumerate(entries):
        key = f"config.yaml: {where}[{i}] = {entry!r}"
        if entry.endswith(".py"):
            path = Path(entry)
            if not path.is_file():
                raise OuroborosError(f"{key}: no such file ({path.resolve()}); paths are relative to the working directory")
            # named by the resolved path: a/sel.py and b/sel.py are two modules
            name = f"ouroboros_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise OuroborosError(f"{key}: importing it failed: {exc.__class__.__name__}: {exc}") from exc
        else:
            try:
                importlib.import_module(entry)
            except ImportError as exc:
                raise OuroborosError(f"{key}: cannot import it ({exc}); name an importable module or a .py file") from exc


def get(name: str) -> Selector:
    builtin()
    if name not in REGISTRY:
        raise OuroborosError(
            f"config.yaml: unknown selection {name!r}; known: {', '.join(sorted(REGISTRY))} "
            "(a method of your own: name its module in config.yaml's selectors: list)"
        )
    return REGISTRY[name]


def validate(name: str, given: Mapping[str, Any], where: str, *, fallback: Mapping[str, Any] | None = None,
             fallback_where: str | None = None) -> dict[str, Any]:
    """A run's parameters for method ``name``, defaults filled in, each checked; ``where`` is the
    run's key (``runs.greedy``). ``fallback`` holds the dataset-level values of ``distance``
    parameters that have a dataset-level key (only ``tau0``: ``{"tau0": datasets.X.tau0}``) and
    ``fallback_where`` that dataset's key (None: the dataset's value does not apply); without them
    (config.yaml being read, no dataset chosen yet) a missing distance is left None."""
    selector = get(name)
    unknown = sorted(set(given) - set(selector.params))
    if unknown:
        accepts = ", ".join(sorted(selector.params)) or "none"
        raise OuroborosError(f"config.yaml: {where}.{unknown[0]}: selection {name!r} has no parameter "
                             f"{unknown[0]!r} (its parameters: {accepts})")
    out = {}
    for key, spec in selector.params.items():
        value = given.get(key)
        if value is None and spec.distance:
            if fallback is None:
                out[key] = None
                continue
            value = fallback.get(key)
            if value is not None:
                check(spec, value, f"{fallback_where}.{key}")
        if value is None:
            if spec.required:
                if spec.distance and fallback_where is not None:
                    raise OuroborosError(
                        f"config.yaml: run {where.split('.', 1)[-1]!r} uses {name} but neither {where}.{key} nor "
                        f"{fallback_where}.{key} is set; set one ({spec.help or 'a distance in the selection space'}, "
                        f"or {AUTO}: the median nearest-neighbour distance of the real subset)")
                raise OuroborosError(f"config.yaml: {where}.{key} is required for selection {name}"
                                     + (f" ({spec.help})" if spec.help else ""))
            value = spec.default
        else:
            value = check(spec, value, f"{where}.{key}")
        out[key] = value
    return out


def check(spec: Param, value: Any, key: str) -> Any:
    """``value`` checked against ``spec`` (ints widened to float where a float is expected)."""
    if spec.distance and value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, spec.types):
        kinds = " or ".join(t.__name__ for t in spec.types) + (f" or {AUTO}" if spec.distance else "")
        raise OuroborosError(f"config.yaml: {key} = {value!r}: expected {kinds}")
    if spec.check is not None and not spec.check(value):
        raise OuroborosError(f"config.yaml: {key} = {value!r}: must be {spec.rule}")
    return float(value) if float in spec.types and isinstance(value, int) else value
