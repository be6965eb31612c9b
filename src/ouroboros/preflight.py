"""The preflight (``ouroboros check TARGET…``): everything the planned jobs need, checked before the first.

A GPU run meets its missing prerequisites one at a time, hours apart: CIFAR-10 at the first data
job, DINOv2 after iteration 1's training, the Inception weights at the last job. Here Snakemake
plans the targets (in-process, nothing runs) and every planned job is checked at once:

- ``cuda``: torch can use CUDA where GPU jobs are planned and would be handed a GPU (``nvidia-smi
  -L`` lists one, CUDA_VISIBLE_DEVICES is set, or ``gpus.count`` says so: the slots of
  :func:`ouroboros.devices.visible_devices`), asked as the jobs ask it (:mod:`ouroboros.cuda`: the
  driver and the wheel's CUDA build, the wheel index to install, or ``OUROBOROS_POLICY=cpu``).
  Skipped under a cluster executor, whose submitting node has no GPU: the jobs refuse there.
- ``data``: each source a planned data job reads is present and complete (torchvision's CIFAR-10
  and MNIST folders, an image folder or .npz with enough items for the counts config.yaml asks).
- ``weights``: each network a planned features job runs loads offline (ouroboros.weights).
- ``disk``: the planned outputs (samples, features, models, the training checkpoint) fit the free
  space under the working directory.

Every problem comes with its exact fix, all of them at once. The same check runs when a local
snakemake run starts with GPU jobs planned (``onstart`` in workflow/rules/common.smk), so
``snakemake --cores 8 results/cifar/greedy/iter08/fid.json`` fails in seconds, not hours. It adds
no input, parameter or code to any rule: finished results stay up to date.

This module imports neither snakemake nor torch at import time: torch only for the CUDA item
(GPU jobs planned and a GPU present), snakemake only in :func:`plan`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ouroboros import paths, weights
from ouroboros.errors import OuroborosError

if TYPE_CHECKING:
    from ouroboros.config import Config, Dataset

ITEMS = ("cuda", "data", "weights", "disk")
# rules that read a dataset's source (the rest read results/)
SOURCE_RULES = ("data", "data_draw", "reference", "fresh", "fresh_draw")
# disk: the estimate must leave this share of the free space unused (logs, .snakemake, temporary files)
DISK_MARGIN = 1.1


@dataclass(frozen=True)
class Job:
    """One planned job: its rule, wildcards, GPU slots and output files."""

    rule: str
    wildcards: Mapping[str, str]
    gpu: int = 0
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    item: str  # one of ITEMS
    what: str  # what is missing or wrong, naming the file or key
    fix: str  # the exact command or steps


@dataclass
class Report:
    jobs: list[Job]
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # the items checked, with what was skipped and why
    disk: tuple[int, int] | None = None  # (bytes the planned outputs need, bytes free)
    costs: str = ""  # the cost table (ouroboros.costs), when asked for

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        rules = Counter(j.rule for j in self.jobs)
        gpu = sum(1 for j in self.jobs if j.gpu)
        lines = [f"planned: {len(self.jobs)} jobs ({gpu} on a GPU): "
                 + (", ".join(f"{r} {n}" for r, n in sorted(rules.items())) or "nothing to do")]
        lines += [f"  {c}" for c in self.checked]
        if self.costs:
            lines += ["", self.costs]
        if self.problems:
            lines += ["", f"{len(self.problems)} problem{'s' if len(self.problems) > 1 else ''} before any job starts:"]
            for i, p in enumerate(self.problems, 1):
                lines += [f"{i}. [{p.item}] {p.what}", f"   fix: {p.fix}"]
        else:
            lines += ["", "preflight: all prerequisites of the planned jobs are present"]
        return "\n".join(lines)


# --- planning -----------------------------------------------------------------------------------------

def jobs_of(dag_jobs: Iterable[Any]) -> list[Job]:
    """Snakemake's jobs (``workflow.dag.needrun_jobs()``) as plain records."""
    out = []
    for job in dag_jobs:
        out.append(Job(job.rule.name, dict(job.wildcards), int(job.resources.get("gpu", 0) or 0),
                       tuple(str(f) for f in job.output)))
    return sorted(out, key=lambda j: (j.rule, j.outputs))


def plan(targets: list[str], *, snakefile: str | os.PathLike, workdir: str | os.PathLike,
         configfiles: list[str] | None = None) -> tuple[list[Job], dict]:
    """The jobs ``snakemake TARGETS`` would run in ``workdir`` and the workflow's config (schema defaults
    filled in), planned in-process; nothing runs.

    Snakemake 9's API builds the DAG the way ``--summary`` and ``--list-untracked`` do (the
    workflow's ``_prepare_dag`` and ``_build_dag``), without taking the directory's lock.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.exceptions import WorkflowError
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                                        config_settings=ConfigSettings(configfiles=[Path(f) for f in configfiles or []]),
                                        snakefile=Path(snakefile).absolute(), workdir=Path(workdir).absolute())
            # force_incomplete: a killed job's outputs are planned again, as the profiles' rerun-incomplete does
            workflow_api.dag(DAGSettings(targets=frozenset(targets), force_incomplete=True))
            workflow = workflow_api._workflow
            workflow._prepare_dag(forceall=False, ignore_incomplete=False, lock_warn_only=True, nolock=True)
            workflow._build_dag()
            return jobs_of(workflow.dag.needrun_jobs()), dict(workflow.config)
    except WorkflowError as exc:
        raise OuroborosError(f"snakemake cannot plan {' '.join(targets) or 'the default target'}: {exc}") from None


# --- cuda -----------------------------------------------------------------------------------------------

def gpu_given(gpus: Mapping[str, Any] | None = None) -> str | None:
    """What this machine would hand the planned GPU jobs, in words, as ``runtime.logged`` hands it (a
    device slot when config.yaml's ``gpus.count`` finds devices: nvidia-smi lists one, or
    CUDA_VISIBLE_DEVICES is set, or a number; a SLURM allocation's GPUs), else None."""
    from ouroboros import cuda, devices

    if os.environ.get("SLURM_JOB_ID"):
        return cuda.gpu_allocated()
    count = (gpus or {}).get("count", devices.AUTO)
    ids = devices.visible_devices(count)
    if not ids:
        return None
    return f"GPU slots on device{'s' if len(ids) > 1 else ''} {','.join(ids)} (gpus.count: {count})"


def cuda_problems(jobs: list[Job], *, cluster: bool = False, gpus: Mapping[str, Any] | None = None,
                  given: Callable[[Mapping[str, Any] | None], str | None] = gpu_given,
                  diagnose: Callable[[], dict] | None = None) -> tuple[list[Problem], str]:
    """The CUDA item (ouroboros.cuda, as the jobs will ask it): (problems, what was checked)."""
    from ouroboros import cuda

    gpu_jobs = sum(1 for j in jobs if j.gpu)
    if not gpu_jobs:
        return [], "cuda: no GPU job planned"
    if cluster:
        return [], f"cuda: skipped under a cluster executor ({gpu_jobs} GPU jobs check CUDA themselves on their nodes)"
    if cuda.explicit_choice():
        return [], f"cuda: {cuda.POLICY_ENV}={cuda.explicit_choice()} chooses the device policy on purpose"
    what = given(gpus)
    if what is None:
        return [], (f"cuda: no GPU on this machine (nvidia-smi lists none, CUDA_VISIBLE_DEVICES unset): "
                    f"{gpu_jobs} GPU jobs run on the CPU")
    diag = (diagnose or cuda.diagnose)()
    message = cuda.problem(diag, f"{gpu_jobs} planned GPU jobs would be given {what}")
    if message is None:
        return [], f"cuda: torch {diag.get('torch')} uses CUDA {diag.get('torch_cuda')} on {what}"
    seen, _, fixes = message.partition("\nWhat to do:\n")
    fix = "; ".join(line.strip().removeprefix("- ") for line in fixes.splitlines() if line.strip())
    return [Problem("cuda", seen.replace("\n", " "), fix or message)], "cuda: torch cannot use the GPU"


# --- data -----------------------------------------------------------------------------------------------

CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def download_command(source: str, root: str) -> str:
    """torchvision's one-line download of CIFAR-10 or MNIST into ``root`` (data.py reads it there)."""
    cls = {"cifar10": "CIFAR10", "mnist": "MNIST"}[source]
    return f"python -c \"import torchvision; torchvision.datasets.{cls}('{root}', train=True, download=True)\""


def source_missing(d: Dataset, needed: int) -> tuple[str, str] | None:
    """(what is missing, the fix) for a dataset's source to hold ``needed`` items, or None."""
    key = f"datasets.{d.name}.root"
    if d.source in ("cifar10", "mnist"):
        root = d.root or f"resources/{d.source}"
        folder, files = ((Path(root) / "cifar-10-batches-py", CIFAR10_FILES) if d.source == "cifar10"
                         else (Path(root) / "MNIST" / "raw", MNIST_FILES))
        absent = [f for f in files if not (folder / f).is_file()]
        if absent:
            what = "no such folder" if not folder.is_dir() else f"lacks {', '.join(absent)}"
            return (f"{d.source} for datasets.{d.name}: {folder} {what}",
                    f"download it once on a machine with network: {download_command(d.source, root)} "
                    f"(then copy {root}/ here), or set {key} in config.yaml to an existing copy")
        return None
    if d.source == "folder":
        root = Path(d.root or "")
        count = sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else 0
        if count < needed:
            what = "no such folder" if not root.is_dir() else f"holds {count} .png/.jpg images"
            return (f"image folder for datasets.{d.name}: {root} {what}; the planned jobs need {needed}",
                    f"put at least {needed} same-size .png or .jpg images under {root}/ (e.g. FFHQ downsampled to "
                    f"32×32, docs/data.md), or set {key} in config.yaml to such a folder")
        return None
    if d.source == "npz":
        return _npz_missing(d, needed)
    return None  # digits (scikit-learn's copy) and gaussian (drawn from its seed) are always there


def _npz_missing(d: Dataset, needed: int) -> tuple[str, str] | None:
    """The item count of an .npz from its array header, without reading the array."""
    import zipfile

    import numpy as np

    path = Path(d.root or "")
    fix = (f"write it with numpy.savez('{path}', images=uint8 N×H×W×C) (or x=float N×d) holding at least "
           f"{needed} items, or set datasets.{d.name}.root in config.yaml to such a file")
    if not path.is_file():
        return f".npz for datasets.{d.name}: {path} does not exist", fix
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in ("images.npy", "x.npy") if n in archive.namelist()), None)
            if name is None:
                return f"{path}: no 'images' or 'x' array", fix
            with archive.open(name) as f:
                version = np.lib.format.read_magic(f)
                shape = np.lib.format._read_array_header(f, version)[0]
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        return f"{path}: not a readable .npz ({exc})", fix
    if shape[0] < needed:
        return f"{path} holds {shape[0]} items; the planned jobs need {needed}", fix
    return None


def data_problems(jobs: list[Job], cfg: Config) -> tuple[list[Problem], str]:
    """The data item: every source a planned job reads holds the items it needs."""
    needed: dict[str, int] = {}
    for j in jobs:
        if j.rule not in SOURCE_RULES:
            continue
        d = cfg.dataset(j.wildcards["dataset"])
        count = d.size
        if j.rule.startswith("fresh"):
            count = d.size + _fresh_needed(jobs, cfg, d.name)
        if j.rule == "reference":
            count = d.source_size or d.size
        needed[d.name] = max(needed.get(d.name, 0), count)
    problems = []
    for name, count in sorted(needed.items()):
        missing = source_missing(cfg.dataset(name), count)
        if missing:
            problems.append(Problem("data", *missing))
    sources = sorted({cfg.dataset(n).source for n in needed})
    return problems, f"data: {', '.join(sources) if sources else 'no source read by the planned jobs'}"


def _fresh_needed(jobs: list[Job], cfg: Config, dataset: str) -> int:
    """Real images outside D_1 the planned select jobs take (the fresh rows' end), at least one."""
    ends = [sum(paths.fresh_rows(cfg, dataset, j.wildcards["run"], int(j.wildcards["iter"])))
            for j in jobs if j.rule == "select" and j.wildcards.get("dataset") == dataset]
    return max(ends + [1])


# --- weights --------------------------------------------------------------------------------------------

def weights_problems(jobs: list[Job], cfg: Config) -> tuple[list[Problem], str]:
    """The weights item: every network a planned features job runs loads offline."""
    from ouroboros import features

    seen: dict[tuple[str, str | None], str] = {}  # (extractor, source) → the key that names it
    for j in jobs:
        if j.rule != "features":
            continue
        extractor = features.get(j.wildcards["extractor"])
        if extractor.key is None:
            continue
        d = cfg.dataset(j.wildcards["dataset"])
        seen.setdefault((extractor.name, getattr(d, extractor.key)), f"datasets.{d.name}.{extractor.key}")
    problems = []
    for (extractor, source), key in seen.items():
        missing = weights.missing(extractor, source, key)
        if missing:
            problems.append(Problem("weights", f"{extractor} ({key} = {source or 'null'}): {missing[0]}", missing[1]))
    names = sorted({f"{e} {s}" if s else e for e, s in seen})
    return problems, f"weights: {', '.join(names) if names else 'no network run by the planned jobs'}"


# --- disk -----------------------------------------------------------------------------------------------

# parameters of the DDPM presets (ouroboros.models; tests/test_check.py counts them with diffusers)
PRESET_PARAMETERS = {"tiny8": 743_745, "micro8": 187_297, "cifar-paper": 10_692_675, "cifar-released": 16_012_419,
                     "mnist-paper": 57_890_689}
# feature widths: DINOv2 by its size (hub names say it), the Inceptions' pool, the offline classifier's layer
DINOV2_WIDTHS = {"small": 384, "base": 768, "large": 1024, "giant": 1536}
FEATURE_WIDTHS = {"inception": 2048, "inception-torchvision": 2048, "classifier": 64}
SOURCE_SHAPES = {"digits": (8, 8, 1), "cifar10": (32, 32, 3), "mnist": (32, 32, 1)}  # MNIST padded to 32×32


def item_elements(d: Dataset) -> tuple[int, int]:
    """(values per item, bytes per value): an image's H·W·C uint8 pixels, a vector's float32 entries."""
    if d.holds_vectors:
        return int(d.source_spec["dim"]), 4
    from ouroboros import models

    shape = SOURCE_SHAPES.get(d.source)
    if d.model in models.PRESETS:
        p = models.PRESETS[d.model]
        shape = (p["sample_size"], p["sample_size"], p["in_channels"])
    h, w, c = shape or (32, 32, 3)
    return h * w * c, 1


def feature_width(extractor: str, d: Dataset) -> int:
    if extractor == "identity":
        return 0  # a vector file is its own features file
    if extractor == "pixels":
        return item_elements(d)[0]
    if extractor.startswith("dinov2"):
        model = (d.fd_dinov2 if extractor == "dinov2-fd" else d.dinov2) or ""
        return next((w for size, w in DINOV2_WIDTHS.items() if size in model.lower()), 1024)
    return FEATURE_WIDTHS.get(extractor, 2048)


def items_in(cfg: Config, dataset: str, folder: str) -> int:
    """Items in a folder of results/{dataset}/: a producer's samples, D_1, the reference or the fresh pool."""
    d = cfg.dataset(dataset)
    if re.search(r"(^|/)iter\d\d", folder):
        return paths.sample_range(cfg, dataset, folder)[1]
    if folder.startswith(paths.REFERENCE):
        return d.source_size or d.size
    if folder.startswith(paths.FRESH):
        return (d.source_size or 2 * d.size) - d.size
    return d.size


def job_bytes(job: Job, cfg: Config) -> tuple[int, int]:
    """(bytes the job's outputs keep, bytes it needs for a while: a training's checkpoint) from config.yaml."""
    w = job.wildcards
    if "dataset" not in w:
        return 0, 0
    d = cfg.dataset(w["dataset"])
    values, width = item_elements(d)
    if job.rule in SOURCE_RULES:
        folder = job.outputs[0].split("/", 2)[2].rsplit("/", 1)[0] if job.outputs else paths.REAL
        count = items_in(cfg, d.name, folder)
        return count * (values * width + 8), 0  # images and int64 labels
    if job.rule == "sample":
        count = items_in(cfg, d.name, w["producer"])
        return count * (values * width + 8), 0
    if job.rule == "features":
        return items_in(cfg, d.name, w["folder"]) * feature_width(w["extractor"], d) * 4, 0
    if job.rule == "train":
        params = PRESET_PARAMETERS.get(d.model, 0)
        ema = 1 if d.train.ema else 0
        # the model's fp32 weights stay; the checkpoint (weights, AdamW's two moments, the EMA) lives
        # while the job runs, two of them for a moment (each is written beside the last, then swapped)
        return params * 4, 2 * params * 4 * (3 + ema)
    return 0, 0


def free_bytes(path: str | os.PathLike = ".") -> int:
    """Free bytes on the file system that holds ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def disk_problems(jobs: list[Job], cfg: Config, *, free: Callable[[str], int] = free_bytes, where: str = "."
                  ) -> tuple[list[Problem], str, tuple[int, int]]:
    """The disk item: the planned outputs, plus the largest training checkpoint, fit the free space."""
    kept = transient = 0
    for j in jobs:
        k, t = job_bytes(j, cfg)
        kept, transient = kept + k, max(transient, t)
    need, have = kept + transient, free(where)
    problems = []
    if need * DISK_MARGIN > have:
        problems.append(Problem(
            "disk", f"the planned outputs need about {_size(need)} (with a {DISK_MARGIN - 1:.0%} margin: "
            f"{_size(need * DISK_MARGIN)}) but {Path(where).absolute()} has {_size(have)} free",
            f"free {_size(need * DISK_MARGIN - have)} there, or run from a working directory on a larger disk "
            "(snakemake --directory DIR, with config.yaml in DIR)"))
    return problems, f"disk: the planned outputs need about {_size(need)}, {_size(have)} free", (need, have)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# --- the whole check ------------------------------------------------------------------------------------

def check(jobs: list[Job], cfg: Config, *, cluster: bool = False, gpus: Mapping[str, Any] | None = None,
          free: Callable[[str], int] = free_bytes, where: str = ".",
          given: Callable[[Mapping[str, Any] | None], str | None] = gpu_given,
          diagnose: Callable[[], dict] | None = None) -> Report:
    """Every item for the planned ``jobs`` (``gpus``: config.yaml's gpus block); each callable is
    injectable (tests on a CPU machine)."""
    report = Report(jobs)
    cuda, cuda_note = cuda_problems(jobs, cluster=cluster, gpus=gpus, given=given, diagnose=diagnose)
    data, data_note = data_problems(jobs, cfg)
    nets, nets_note = weights_problems(jobs, cfg)
    disk, disk_note, report.disk = disk_problems(jobs, cfg, free=free, where=where)
    report.problems = cuda + data + nets + disk
    report.checked = [cuda_note, data_note, nets_note, disk_note]
    return report


SKIP = "OUROBOROS_PREFLIGHT"  # =0: no check at a run's start (a node that cannot see the data's mount, say)


def at_start(dag_jobs: Iterable[Any], cfg: Config, *, local: bool, log: Callable[[str], None],
             gpus: Mapping[str, Any] | None = None) -> Report | None:
    """The check at the start of a snakemake run (workflow/rules/common.smk's ``onstart``): only when GPU
    jobs are planned; the CUDA item only for local execution. Returns the report when something is missing."""
    if os.environ.get(SKIP) == "0":  # the user's explicit word: the jobs still refuse a GPU they cannot use
        log(f"preflight skipped ({SKIP}=0)")
        return None
    jobs = jobs_of(dag_jobs)
    if not any(j.gpu for j in jobs):
        return None
    report = check(jobs, cfg, cluster=not local, gpus=gpus)
    report.costs = cost_table(jobs, cfg)
    if report.ok:
        log(report.text())
        return None
    return report


def cost_table(jobs: list[Job], cfg: Config, device: str | None = None) -> str:
    """The planned jobs by rule with their FLOPs and hours on this device class (``device``: another
    class of ouroboros/rates.yaml), each row with its rates' basis: measured, or an estimate."""
    from ouroboros import costs

    device = device or costs.device_class()
    try:
        rows = costs.summarize([costs.job_work(j.rule, j.wildcards, cfg) for j in jobs], device)
    except OuroborosError as exc:  # an estimate it cannot make never hides the check's problems or stops a run
        return f"cost on {device}: not estimated ({exc})"
    if not rows:
        return f"cost on {device}: no planned job runs a model"
    return f"cost on {device} (ouroboros/rates.yaml):\n" + costs.format_rows(rows, device)
