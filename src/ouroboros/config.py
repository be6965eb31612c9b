"""Typed views of config.yaml: one dataset, one run, and the checks the schema cannot express.

The JSON schema (workflow/schemas/config.schema.yaml) rejects unknown keys and wrong types; the
checks here are the cross-key ones (a target naming an unknown run, a pool smaller than N, ...).
Every error names the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ouroboros import generators, selectors
from ouroboros.errors import OuroborosError

# training images of the sources whose size is known before loading (npz and folder are checked
# when the data step reads them; a gaussian source holds its ``count``)
SOURCE_SIZES = {"digits": 1797, "cifar10": 50000, "mnist": 60000}
# sources of float vectors rather than images (an npz may hold either: checked when it is read)
VECTOR_SOURCES = ("gaussian",)

# tau0: auto — the Threshold Decay Filter's τ0 is measured on D_1 by the select job
# (ouroboros.select.auto_tau0), in whatever feature space the dataset selects in
AUTO = selectors.AUTO
Tau0 = float | Literal["auto"]


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    grad_clip: float = 1.0
    steps: int | None = None  # exactly one of steps / epochs
    epochs: int | None = None
    checkpoint_minutes: float = 10.0  # in-job checkpoint interval (wall clock)
    ema: bool = False  # save the EMA of the weights (diffusers' train_unconditional --use_ema)
    label_dropout: float = 0.1  # conditional models: share of labels dropped to the null label
    compile: bool = False  # torch.compile the UNet under the GPU device policy (ouroboros.policy)
    # autocast of the GPU policy: no | fp16 (with a GradScaler) | bf16; sampling then runs in fp16
    # (fp32 with "no"). The CPU policy runs fp32 whatever this says (ouroboros.policy)
    mixed_precision: str = "bf16"

    def total_steps(self, train_size: int) -> int:
        """Optimizer steps for a training set of this size (epochs scale with |D_n|)."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        return self.epochs * math.ceil(train_size / self.batch_size)


@dataclass(frozen=True)
class SampleConfig:
    inference_steps: int = 1000
    batch_size: int = 256
    guidance_scale: float = 1.0  # CFG: ε_u + w (ε_c − ε_u); 1 = plain conditional sampling


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    size: int
    model: str
    train: TrainConfig
    sample: SampleConfig
    features: str
    fid_features: str
    root: str | None = None
    tau0: Tau0 | None = None
    dinov2: str = "facebook/dinov2-small"
    inception_weights: str | None = None
    fd_dinov2: str | None = None  # DINOv2 of FD_DINOv2 in fid.json (hub id or directory; None: not computed)
    torchvision_inception_weights: str | None = None  # state_dict file of the torchvision FID (None: not computed)
    fid_reference: str = "subset"  # FID against D_1 (subset) or every image of the source (full)
    classifier_steps: int = 400
    select_device: str = "cpu"
    select_features: str | None = None  # the space selection runs in (None: ``features``)
    family: str = ""  # the root of the `base:` chain: datasets of one family share one permutation
    classes: int | None = None  # a class-conditional model (CFG) over labels 0 … classes-1
    model_params: Mapping[str, Any] = field(default_factory=dict)  # the generator's parameters, checked
    gaussian: Mapping[str, Any] | None = None  # source: gaussian: dim, decay, count, seed
    # the generator family, where ``model`` names a UNet preset that another family than the DDPM
    # trains (flow); None: the family ``model`` implies
    generator_choice: str | None = None

    @property
    def holds_vectors(self) -> bool:
        """Whether the source holds float vectors (their own feature space: identity) or images."""
        return self.source in VECTOR_SOURCES

    @property
    def model_ref(self) -> str:
        """Generator and preset in one string (generators.reference): ``micro8``, ``kde``, ``flow:micro8``."""
        return generators.reference(self.generator_choice, self.model)

    @property
    def generator_spec(self) -> generators.Generator:
        """The registered generator of this dataset (``generator:``, else the one ``model`` names),
        with what it declares (gpu, kinds, ...)."""
        return generators.resolve(self.model_ref)[0]

    @property
    def generator(self) -> str:
        """The registered generator's name (a DDPM preset names ``ddpm``)."""
        return self.generator_spec.name

    @property
    def source_spec(self) -> str | dict:
        """What the data steps load: the source's name, or a gaussian source's whole description
        (a plain name for every other source, so that their rules keep their parameters)."""
        if self.source != "gaussian":
            return self.source
        from ouroboros.data import GAUSSIAN_DEFAULTS

        return {"name": "gaussian", **GAUSSIAN_DEFAULTS, **(self.gaussian or {})}

    @property
    def source_size(self) -> int | None:
        """Items in the source when known before loading it."""
        if self.source == "gaussian":
            return int(self.source_spec["count"])
        return SOURCE_SIZES.get(self.source)

    @property
    def traces_ancestry(self) -> bool:
        """Labels are D_1 ancestors: each real point labelled by its own row (a gaussian source)
        and a generator whose samples carry their parent's label (kde)."""
        return self.source == "gaussian" and self.generator_spec.inherits_labels


# TrainConfig keys added after results existed: a rule sees them only where set otherwise, so that
# Snakemake does not rerun (and the checkpoint fingerprint does not change for) every training
TRAIN_KEY_DEFAULTS = {"mixed_precision": TrainConfig.mixed_precision}

# Dataset fields a config entry may leave out (the rest are required or derived)
_OPTIONAL = ("root", "tau0", "dinov2", "inception_weights", "fd_dinov2", "torchvision_inception_weights",
             "fid_reference", "classifier_steps", "select_device", "select_features", "classes", "gaussian")


@dataclass(frozen=True)
class Run:
    name: str
    paradigm: str
    selection: str
    samples: int = 1  # G_n holds samples × N images (config.yaml: ``samples: 2N``)
    params: Mapping[str, Any] = field(default_factory=dict)  # the selection method's own run keys
    share: str = "uniform"  # accumulate + random: uniform over the union, or equal per source
    fresh: float = 0.0  # share of D_n replaced by real images outside D_1, new ones each iteration
    init: str = "scratch"  # or previous: fine-tune iteration n-1's weights
    train: Mapping[str, Any] = field(default_factory=dict)  # overrides of the dataset's train for n ≥ 2
    select_features: str | None = None  # the space selection runs in (None: the dataset's)
    description: str = ""
    # results/{dataset}/{directory}/: the run's name, or the name it had before it was renamed, so
    # that its results keep their paths (and that old name still names the run: ``Config.run``)
    directory: str = ""

    def __post_init__(self) -> None:
        if not self.directory:
            object.__setattr__(self, "directory", self.name)

    @property
    def tau0(self) -> Tau0 | None:
        return self.params.get("tau0")

    @property
    def decay(self) -> float | None:
        return self.params.get("decay")


# run keys that are not the selection method's parameters
_RUN_KEYS = selectors.RUN_KEYS
# the run options beyond the paper's loop and their defaults: files and tables record an option
# only where a run sets it otherwise (select_features: where it differs from the dataset's space)
RUN_OPTION_DEFAULTS = {k: Run.__dataclass_fields__[k].default for k in ("share", "fresh", "init")}


@dataclass(frozen=True)
class Config:
    seed: int
    datasets: dict[str, Dataset]
    runs: dict[str, Run]
    targets: dict[str, Any] = field(default_factory=dict)
    experiments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    selectors: tuple[str, ...] = ()  # modules registering selection methods of the user's own
    generators: tuple[str, ...] = ()  # modules registering generators of the user's own
    notes: tuple[str, ...] = ()  # deprecations: an old name or form still read, with its new one (the workflow prints them)

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            raise OuroborosError(f"config.yaml: unknown dataset {name!r}; datasets: {sorted(self.datasets)}")
        return self.datasets[name]

    def run(self, name: str) -> Run:
        """A run by its name, or by its results directory (a renamed run's old name: the paths say it)."""
        if name in self.runs:
            return self.runs[name]
        for run in self.runs.values():
            if run.directory == name:
                return run
        raise OuroborosError(f"config.yaml: unknown run {name!r}; runs: {sorted(self.runs)}")

    def selection_params(self, dataset: str, run: str) -> dict[str, Any]:
        """The parameters a run's selection method gets on a dataset: the run's keys, defaults
        filled in, and a τ0 the run leaves out taken from ``datasets.X.tau0`` when the run
        selects in the dataset's selection space (a number there means nothing in another
        space; ``auto`` is measured in whichever space the run selects in)."""
        r, d = self.run(run), self.dataset(dataset)
        own_space = r.select_features is None or r.select_features == self.dataset_select_features(dataset)
        if own_space or d.tau0 == AUTO:
            fallback, where = {"tau0": d.tau0}, f"datasets.{dataset}"
        else:
            fallback, where = {}, None
        return selectors.validate(r.selection, r.params, f"runs.{r.name}", fallback=fallback, fallback_where=where)

    def dataset_select_features(self, dataset: str) -> str:
        d = self.dataset(dataset)
        return d.select_features or d.features

    def tau0(self, dataset: str, run: str) -> Tau0 | None:
        """The τ0 a run's selection uses on a dataset (a number or ``auto``), else None."""
        return self.selection_params(dataset, run).get("tau0")

    def select_features(self, dataset: str, run: str) -> str:
        """The space a run selects in on a dataset: the run's, else the dataset's ``select_features``,
        else the dataset's ``features`` (where the metrics are measured). A run's own space must
        suit the dataset's kind of data: vectors select in identity, images never do."""
        space = self.run(run).select_features
        if space is not None:
            vectors = self.dataset(dataset).holds_vectors
            if vectors != (space == "identity"):
                why = ("holds vectors, which are their own feature space: identity" if vectors
                       else "holds images; identity is the space of vectors")
                raise OuroborosError(f"config.yaml: runs.{run}.select_features = {space!r} cannot select on "
                                     f"datasets.{dataset}, which {why}; set runs.{run}.select_features to suit it, "
                                     f"or leave it out (the dataset's own space)")
        return space or self.dataset_select_features(dataset)

    def train_options(self, dataset: str, run: str, n: int) -> dict[str, Any]:
        """TrainConfig keys of iteration n of a run: the dataset's, then the run's ``train`` keys
        from n = 2 on (iteration 1 is shared). Setting ``steps`` drops ``epochs`` and vice versa.
        A generator other than the DDPM is fitted with its ``model_params`` instead."""
        d = self.dataset(dataset)
        if not (d.generator == "ddpm" or d.generator_spec.unet):
            return dict(d.model_params)
        options = {k: v for k, v in vars(self.dataset(dataset).train).items()
                   if k not in TRAIN_KEY_DEFAULTS or v != TRAIN_KEY_DEFAULTS[k]}
        options |= dict(d.model_params)  # a UNet family's own keys (flow: time_sampling, solver)
        override = dict(self.run(run).train) if n >= 2 and run != "real" else {}
        for one, other in (("steps", "epochs"), ("epochs", "steps")):
            if one in override:
                options[other] = None
        return options | override


def resolve_bases(entries: Mapping[str, Any]) -> dict[str, tuple[dict, str]]:
    """Each dataset entry with its ``base:`` chain merged in (train/sample merge key by key),
    and the name of the chain's root."""
    out: dict[str, tuple[dict, str]] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> tuple[dict, str]:
        if name in out:
            return out[name]
        if name in seen:
            raise OuroborosError(f"config.yaml: datasets.{name}.base forms a cycle: {' → '.join(seen + (name,))}")
        entry = dict(entries[name])
        base = entry.pop("base", None)
        if base is None:
            out[name] = (entry, name)
            return out[name]
        if base not in entries:
            raise OuroborosError(f"config.yaml: datasets.{name}.base names unknown dataset {base!r}")
        parent, root = resolve(base, seen + (name,))
        merged = dict(parent)
        for key, value in entry.items():
            merged[key] = {**parent.get(key, {}), **value} if isinstance(value, dict) else value
        out[name] = (merged, root)
        return out[name]

    for name in entries:
        resolve(name, ())
    return out


def _check_kind(d: Dataset, generator: generators.Generator) -> None:
    """A generator fits the data the source holds, vectors are measured in their own space, and
    only a generator that can be conditional gets classes."""
    where = f"config.yaml: datasets.{d.name}"
    kind = "vectors" if d.holds_vectors else "images"
    if kind not in generator.kinds:
        raise OuroborosError(f"{where}.model = {d.model!r}: generator {generator.name} fits {' and '.join(generator.kinds)}, "
                             f"not the {kind} of source {d.source!r}; choose gaussian or kde for vectors")
    for key in ("features", "fid_features", "select_features"):
        value = getattr(d, key)
        if kind == "vectors" and value is not None and value != "identity":
            raise OuroborosError(f"{where}.{key} = {value!r}: the {d.source} source holds vectors, which are their "
                                 "own feature space; set it to identity")
        if kind == "images" and value == "identity":
            raise OuroborosError(f"{where}.{key} = identity is the space of vectors; images use pixels")
    if d.classes and not generator.conditional:
        raise OuroborosError(f"{where}.classes: generator {generator.name} is not class-conditional; remove the key")
    if d.gaussian is not None and d.source != "gaussian":
        raise OuroborosError(f"{where}.gaussian describes a gaussian source, but the source is {d.source!r}; remove it")


def _chosen_generator(name: str, choice: str, model: str, implied: generators.Generator) -> generators.Generator:
    """``datasets.X.generator``: the family that trains the UNet preset ``model`` names (flow), or the
    family ``model`` already implies (ddpm with a preset; gaussian; kde)."""
    where = f"config.yaml: datasets.{name}.generator"
    try:
        generator = generators.get(choice)
    except OuroborosError as exc:
        raise OuroborosError(f"{where} = {choice!r}: {exc}") from None
    if generator.name == implied.name:
        return generator
    if not generator.unet:
        raise OuroborosError(f"{where} = {choice!r}, but datasets.{name}.model = {model!r} is a {implied.name} model; "
                             f"remove the generator key, or set model: {choice}")
    if implied.name != "ddpm":
        raise OuroborosError(f"{where} = {choice!r} trains a UNet preset, but datasets.{name}.model = {model!r} is not one; "
                             f"presets: {', '.join(sorted(generators.get('ddpm').presets))}")
    return generator


def parse(raw: Mapping[str, Any]) -> Config:
    """Build a Config from the (schema-validated) dict and check what spans several keys."""
    generators.load_plugins(list(raw.get("generators") or []), where="generators")
    datasets = {}
    for name, (d, family) in resolve_bases(raw.get("datasets") or {}).items():
        needed = ("source", "size", "model", "features", "fid_features")
        if d.get("model") in generators.get("ddpm").presets:
            needed += ("train", "sample")
        missing = [k for k in needed if k not in d]
        if missing:
            raise OuroborosError(f"config.yaml: datasets.{name} lacks {', '.join(missing)} (set them or a base)")
        try:
            generator, _ = generators.resolve(d["model"])
        except OuroborosError as exc:  # the first training job would fail; planning names the key
            raise OuroborosError(f"config.yaml: datasets.{name}.model = {d['model']!r} is not a model preset or a "
                                 f"generator; {str(exc).split('; ', 1)[1]} (ouroboros.models, ouroboros.generators)") from None
        choice = d.get("generator")
        if choice is not None:
            generator = _chosen_generator(name, choice, d["model"], generator)
        train = dict(d.get("train") or {})
        if (generator.name == "ddpm" or generator.unet) and ("steps" in train) == ("epochs" in train):
            raise OuroborosError(f"config.yaml: datasets.{name}.train needs exactly one of 'steps' or 'epochs'")
        # optional keys pass through only when set, so each default lives once, in the dataclass
        optional = {k: d[k] for k in _OPTIONAL if k in d}
        datasets[name] = Dataset(
            name=name,
            source=d["source"],
            size=int(d["size"]),
            model=d["model"],
            train=TrainConfig(**train),
            sample=SampleConfig(**(d.get("sample") or {})),
            features=d["features"],
            fid_features=d["fid_features"],
            family=family,
            model_params=generators.validate(generator, dict(d.get("model_params") or {}), f"datasets.{name}"),
            generator_choice=choice,
            **optional,
        )
        _check_kind(datasets[name], generator)
        known = datasets[name].source_size
        if known is not None and datasets[name].size > known:
            raise OuroborosError(
                f"config.yaml: datasets.{name}.size = {datasets[name].size} but source "
                f"{datasets[name].source!r} holds only {known} training images; lower datasets.{name}.size"
            )
        if datasets[name].classes is None and datasets[name].sample.guidance_scale != 1.0:
            raise OuroborosError(
                f"config.yaml: datasets.{name}.sample.guidance_scale needs a class-conditional model; "
                f"set datasets.{name}.classes (the number of labels) or remove the guidance scale"
            )
    selectors.load_plugins(list(raw.get("selectors") or []))
    notes: list[str] = []
    runs = {name: _run(name, dict(r), notes) for name, r in (raw.get("runs") or {}).items()}
    directories = run_directories(raw.get("runs") or {})
    # target groups name runs; their files (paths.target_files) and the findings name results directories
    targets = _directories_of(dict(raw.get("targets") or {}), directories, "targets", notes)
    experiments = {k: [_directories_of(dict(g), directories, f"experiments.{k}[{i}]", notes) for i, g in enumerate(v)]
                   for k, v in (raw.get("experiments") or {}).items()}
    cfg = Config(seed=int(raw.get("seed", 0)), datasets=datasets, runs=runs, targets=targets,
                 selectors=tuple(raw.get("selectors") or ()), generators=tuple(raw.get("generators") or ()),
                 experiments=experiments, notes=tuple(notes))
    groups = [("targets", cfg.targets)] + [
        (f"experiments.{name}[{i}]", g) for name, gs in cfg.experiments.items() for i, g in enumerate(gs)
    ]
    for where, group in groups:
        for dataset in group.get("datasets", []):
            if dataset not in cfg.datasets:
                raise OuroborosError(f"config.yaml: {where}.datasets names unknown dataset {dataset!r}; "
                                     f"datasets: {sorted(cfg.datasets)}")
        for dataset in group.get("datasets", []):  # a run's own selection space against each dataset it runs on
            for run in group.get("runs", []):
                cfg.select_features(dataset, run)
    for name in raw.get("primary") or {}:  # the findings' primary families: one per experiment (demo: targets)
        if name != "demo" and name not in cfg.experiments:
            raise OuroborosError(f"config.yaml: primary.{name} names no experiment; experiments: {sorted(cfg.experiments)} "
                                 "(demo: targets)")
    return cfg


def run_directories(runs: Mapping[str, Any]) -> dict[str, str]:
    """Each name a run answers to (its key, and its ``directory``: the name it had before it was
    renamed) → its results directory. Two runs may not share a directory: their results would mix."""
    owner: dict[str, str] = {}  # directory → the run's key
    for name, r in runs.items():
        directory = (r or {}).get("directory") or name
        if directory != name and directory in runs:  # e.g. an old config's greedy kept beside accumulate-greedy
            raise OuroborosError(f"config.yaml: runs.{name}.directory = {directory} is the name of runs.{directory} too; "
                                 f"remove runs.{directory} (runs.{name} is it, renamed) or the directory key")
        if directory in owner:
            raise OuroborosError(f"config.yaml: runs.{name} and runs.{owner[directory]} both write "
                                 f"results/{{dataset}}/{directory}/; give one another name or directory")
        owner[directory] = name
    return {directory: directory for directory in owner} | {name: directory for directory, name in owner.items()}


def _directories_of(group: dict[str, Any], directories: Mapping[str, str], where: str, notes: list[str]) -> dict[str, Any]:
    """A target group with its runs named by their results directories. A renamed run's old name
    (its directory) still names it, with a note that says the new name."""
    if "runs" not in group:
        return group
    for name in group["runs"]:
        if name not in directories:
            raise OuroborosError(f"config.yaml: {where}.runs names unknown run {name!r}; "
                                 f"runs: {sorted(directories)}")
        renamed = [k for k, d in directories.items() if d == name and k != name]
        if renamed:
            notes.append(f"config.yaml: {where}.runs names {name}, the old name of runs.{renamed[0]} (deprecated): name it "
                         f"{renamed[0]}; its results stay in results/{{dataset}}/{name}/")
    return group | {"runs": [directories[name] for name in group["runs"]]}


def samples_factor(value: int | str, where: str, notes: list[str]) -> int:
    """``samples: 2N`` (G_n holds 2N images) → 2. The bare number of older configs still works, with a note."""
    if isinstance(value, int):
        notes.append(f"{where}: {value} means {value}N images per iteration (deprecated): write samples: {value}N")
        return value
    if not re.fullmatch(r"[1-9][0-9]*N", str(value)):
        raise OuroborosError(f"{where} = {value!r}: write the images of G_n as a multiple of N, e.g. 2N")
    return int(str(value)[:-1])


def _run(name: str, r: dict[str, Any], notes: list[str]) -> Run:
    """One run entry: the run keys, and the rest checked as the selection method's parameters."""
    where = f"runs.{name}"
    r["samples"] = samples_factor(r.get("samples", "1N"), f"config.yaml: {where}.samples", notes)
    try:
        selector = selectors.get(r["selection"])
    except OuroborosError as exc:
        raise OuroborosError(str(exc).replace("config.yaml: unknown selection", f"config.yaml: {where}.selection: unknown "
                                              "selection", 1)) from None
    unknown = sorted(set(r) - set(_RUN_KEYS) - set(selector.params))
    if unknown:
        raise OuroborosError(
            f"config.yaml: {where}.{unknown[0]}: unknown key; run keys: {', '.join(_RUN_KEYS)}; "
            f"parameters of selection {r['selection']!r}: {', '.join(sorted(selector.params)) or 'none'}"
        )
    params = {k: v for k, v in r.items() if k not in _RUN_KEYS}
    selectors.validate(r["selection"], params, where)  # types and ranges now; a dataset's τ0 later
    run = Run(name=name, params=params, **{k: v for k, v in r.items() if k in _RUN_KEYS})
    if run.paradigm == "replace" and not selector.keeps_all and run.samples < 2:
        raise OuroborosError(
            f"config.yaml: {where}: replace with selection {run.selection!r} needs samples ≥ 2 (the pool "
            f"G_(n-1) holds samples × N images and N are selected); set {where}.samples: 2N"
        )
    if run.share == "equal" and (run.paradigm, run.selection) != ("accumulate", "random"):
        raise OuroborosError(
            f"config.yaml: {where}.share: equal is accumulate's uniform draw taken per source (N // n from each "
            f"of real, G_1 … G_(n-1)); it needs paradigm accumulate and selection random, not "
            f"{run.paradigm} with {run.selection}"
        )
    if run.train and ("steps" in run.train and "epochs" in run.train):
        raise OuroborosError(f"config.yaml: {where}.train sets both steps and epochs; keep one")
    return run


def check(raw: dict[str, Any], schema: str | Path) -> Config:
    """What the workflow does with config.yaml at parse time: the JSON schema (unknown keys, wrong
    types; snakemake fills the schema's defaults into ``raw``), then :func:`parse`. Both fail with
    a message naming the key."""
    from snakemake.utils import validate  # only the workflow and its tests need snakemake

    validate(raw, schema=str(schema))
    return parse(raw)
