"""Where every file of the loop lives, and the recursion that links iteration n to n-1.

Iteration n trains on D_n and samples G_n. D_1 is the real subset; iteration 1 depends only on
the dataset, so its model and samples live once under ``results/{dataset}/real/iter01`` and every
run points there. From iteration 2 on, D_n is built by the run's selection from its pool:
replace: G_(n-1); accumulate: real ∪ G_1 … G_(n-1).

G_n of a run holds ``samples × N`` images with per-image seeds 0 … samples·N-1. The shared G_1
holds the first N in ``real/iter01/samples.npy``; a run that needs 2N adds
``real/iter01/x2/samples.npy`` with images N … 2N-1 (per-image seeds make the two a prefix and
its extension), so adding such a run never invalidates the others.

Features live beside the images they describe: ``features-{extractor}.npy`` in the same folder.

Replicates: replicate 0 is the paths above, unchanged. Replicate r ≥ 1 of a run lives one level
down, ``results/{dataset}/{run}/rep{r}/iter{NN}/``, and its own iteration 1 under
``results/{dataset}/real/rep{r}/iter01``; the real subset D_1 (``real/images.npy``) is shared
by all replicates (the nested-subset protocol). Functions here take a run *reference*, the run's
name optionally followed by ``/rep{r}`` (``greedy``, ``greedy/rep2``), which is exactly the path
segment, so a replicate is an ordinary target: ``results/cifar/greedy/rep2/iter08/fid.json``.

Real subset per replicate (a target group's ``real_subset: per_replicate``): replicate r ≥ 1 is
``{run}/draw{r}`` and draws a D_1 of its own, the first N of a permutation seeded with r
(``results/{dataset}/real/draw{r}/images.npy``, its iteration 1 in ``real/draw{r}/iter01`` and
its fresh rows in ``fresh/draw{r}``). Replicate 0 is the same in both designs: its D_1 is the
dataset's own permutation, so a study can add drawn replicates to an existing replicate 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # paths reads a Config but needs nothing of the module at run time (no import circle)
    from ouroboros.config import Config

RESULTS = "results"
REAL = "real"


REPLICATE = re.compile(r"(?P<name>[^/]+)(?:/(?P<kind>rep|draw)(?P<r>[1-9]\d*))?")
# target groups' real_subset: every replicate on the dataset's D_1, or each on a D_1 of its own
SHARED, PER_REPLICATE = "shared", "per_replicate"
REAL_SUBSETS = (SHARED, PER_REPLICATE)
_KIND = {SHARED: "rep", PER_REPLICATE: "draw"}


def _match(ref: str) -> re.Match:
    m = REPLICATE.fullmatch(ref)
    if m is None:
        raise ValueError(f"not a run reference (NAME, NAME/repR or NAME/drawR, R ≥ 1): {ref!r}")
    return m


def replicate_of(ref: str) -> tuple[str, int]:
    """'greedy/rep2' → ('greedy', 2); 'greedy/draw2' → ('greedy', 2); 'greedy' → ('greedy', 0)."""
    m = _match(ref)
    return m["name"], int(m["r"] or 0)


def real_subset_of(ref: str) -> str:
    """Whether a run reference's D_1 is the dataset's (shared) or its replicate's own (per_replicate)."""
    return PER_REPLICATE if _match(ref)["kind"] == "draw" else SHARED


def with_replicate(name: str, replicate: int, real_subset: str = SHARED) -> str:
    """The run reference of a replicate: replicate 0 is the bare name (today's paths) in both designs."""
    if replicate < 0:
        raise ValueError(f"replicates count from 0, not {replicate}")
    if real_subset not in _KIND:
        raise ValueError(f"real_subset is one of {', '.join(REAL_SUBSETS)}, not {real_subset!r}")
    return name if replicate == 0 else f"{name}/{_KIND[real_subset]}{replicate}"


def own_subset(ref: str = "") -> str:
    """The folder a run reference's own D_1 adds below real/ and fresh/: "" for the dataset's
    (no reference, replicate 0, or a replicate on the shared D_1), "/drawR" for a drawn one."""
    if not ref or real_subset_of(ref) == SHARED:
        return ""
    return f"/{_KIND[PER_REPLICATE]}{replicate_of(ref)[1]}"


def iter_name(n: int) -> str:
    return f"iter{n:02d}"


def dataset_of(path: str) -> str | None:
    """The dataset a file under results/ belongs to: results/cifar/greedy/iter02/samples.npy → 'cifar'."""
    parts = PurePosixPath(path).parts
    below = [i for i, part in enumerate(parts[:-2]) if part == RESULTS]  # results/{dataset}/.../file
    return parts[below[-1] + 1] if below else None


def real_dir(dataset: str, ref: str = "") -> str:
    """Where D_1 of a run reference lives (the dataset's own without one)."""
    return f"{RESULTS}/{dataset}/{REAL}{own_subset(ref)}"


def real_images(dataset: str, ref: str = "") -> str:
    return f"{real_dir(dataset, ref)}/images.npy"


def real_labels(dataset: str, ref: str = "") -> str:
    return f"{real_dir(dataset, ref)}/labels.npy"


REFERENCE = "reference"


def reference_images(dataset: str) -> str:
    """Every image of the dataset's source, for FID against the full set (fid_reference: full)."""
    return f"{RESULTS}/{dataset}/{REFERENCE}/images.npy"


def fid_reference(cfg: Config, dataset: str, ref: str = "") -> str:
    """The real images FID compares G_n with: the run reference's D_1, or the whole source."""
    return reference_images(dataset) if cfg.dataset(dataset).fid_reference == "full" else real_images(dataset, ref)


def labels_of(images_file: str) -> str:
    """The labels beside an image file: real/images.npy → real/labels.npy, iterNN/samples.npy →
    iterNN/labels.npy (the class each sample was drawn for; -1 from an unconditional model)."""
    return str(PurePosixPath(images_file).with_name("labels.npy"))


def classifier_dir(dataset: str) -> str:
    return f"{real_dir(dataset)}/classifier"


def iteration_dir(dataset: str, run: str, n: int) -> str:
    """The run's own directory for iteration n (metrics.json and fid.json live here for every n)."""
    return f"{RESULTS}/{dataset}/{run}/{iter_name(n)}"


def producer_dir(dataset: str, run: str, n: int) -> str:
    """Where the model and samples of iteration n live: shared by a replicate's runs for n = 1."""
    if n == 1:
        return f"{RESULTS}/{dataset}/{with_replicate(REAL, replicate_of(run)[1], real_subset_of(run))}/{iter_name(1)}"
    return iteration_dir(dataset, run, n)


def manifest(dataset: str, run: str, n: int) -> str:
    """D_n as (source, index, file, row) rows."""
    return f"{real_dir(dataset, run)}/train.tsv" if n == 1 else f"{iteration_dir(dataset, run, n)}/train.tsv"


def model_dir(dataset: str, run: str, n: int) -> str:
    return f"{producer_dir(dataset, run, n)}/model"


# the feature space of vectors is the vectors: their file is their features file (no job, no copy)
IDENTITY = "identity"


def features_of(images_file: str, extractor: str) -> str:
    """features-{extractor}.npy beside images.npy or samples.npy; the file itself for ``identity``."""
    if extractor == IDENTITY:
        return images_file
    return f"{images_file.rsplit('/', 1)[0]}/features-{extractor}.npy"


def sample_files(cfg: Config, dataset: str, run: str, n: int) -> list[str]:
    """The files that together hold G_n of a run, in per-image-seed order."""
    k = cfg.run(replicate_of(run)[0]).samples
    folder = producer_dir(dataset, run, n)
    if n == 1 and k > 1:
        return [f"{folder}/samples.npy", f"{folder}/x{k}/samples.npy"]
    return [f"{folder}/samples.npy"]


PRODUCER = re.compile(r"(?P<branch>[^/]+(?:/(?:rep|draw)[1-9]\d*)?)/iter(?P<n>\d+)(?:/x(?P<k>\d+))?")


def parse_producer(producer: str) -> tuple[str, int, int]:
    """'real/iter01/x2' → ('real', 1, 2); 'greedy/rep2/iter03' → ('greedy/rep2', 3, 1)."""
    m = PRODUCER.fullmatch(producer)
    if m is None:
        raise ValueError(f"not a producer folder (BRANCH[/repR|/drawR]/iterNN[/xK]): {producer!r}")
    return m["branch"], int(m["n"]), int(m["k"] or 1)


def sample_range(cfg: Config, dataset: str, producer: str) -> tuple[int, int]:
    """(first per-image index, count) of the samples.npy in a producer folder."""
    ref, n, k = parse_producer(producer)
    branch = replicate_of(ref)[0]
    size = cfg.dataset(dataset).size
    if branch == REAL:
        if n != 1:
            raise ValueError(f"the real branch holds iteration 1 only, not {iter_name(n)}")
        return (0, size) if k == 1 else (size, (k - 1) * size)
    if k != 1 or n < 2:
        raise ValueError(f"run folders hold iterations ≥ 2 and one samples.npy, not {producer}")
    return 0, cfg.run(branch).samples * size


@dataclass(frozen=True)
class Source:
    """One source of a pool: 'real' or 'G03', and the files that hold it, in order."""

    name: str
    files: tuple[str, ...]


def pool(cfg: Config, dataset: str, run: str, n: int) -> list[Source]:
    """The candidates D_n (n ≥ 2) is selected from."""
    if n < 2:
        raise ValueError("D_1 is the real subset; pools start at iteration 2")
    generated = lambda j: Source(f"G{j:02d}", tuple(sample_files(cfg, dataset, run, j)))  # noqa: E731
    if cfg.run(replicate_of(run)[0]).paradigm == "replace":
        return [generated(n - 1)]
    return [Source(REAL, (real_images(dataset, run),))] + [generated(j) for j in range(1, n)]


def pool_size(cfg: Config, dataset: str, run: str, n: int) -> int:
    spec = cfg.run(replicate_of(run)[0])
    size, k = cfg.dataset(dataset).size, spec.samples
    if spec.paradigm == "replace":
        return k * size
    return size + (n - 1) * k * size


FRESH = "fresh"


def fresh_images(dataset: str, ref: str = "") -> str:
    """The source's images outside D_1, in the order of the dataset's permutation (``fresh: λ``
    draws from its front, new rows each iteration): a drawn replicate's outside its own D_1."""
    return f"{RESULTS}/{dataset}/{FRESH}{own_subset(ref)}/images.npy"


def _fresh_count(cfg: Config, dataset: str, run: str, n: int) -> int:
    """round(λ·|D_n|) real images outside D_1 in D_n (|D_n| is the pool for a keep-all method);
    fewer than |D_n|, so that the selection still chooses some."""
    from ouroboros import selectors
    from ouroboros.errors import OuroborosError

    name = replicate_of(run)[0]
    spec = cfg.run(name)
    if n < 2 or not spec.fresh:
        return 0
    size = pool_size(cfg, dataset, run, n) if selectors.get(spec.selection).keeps_all else cfg.dataset(dataset).size
    count = int(math.floor(spec.fresh * size + 0.5))
    if count >= size:
        raise OuroborosError(f"config.yaml: runs.{name}.fresh = {spec.fresh} makes all {size} images of D_n fresh on "
                             f"datasets.{dataset}, leaving nothing to select; lower runs.{name}.fresh")
    return count


def fresh_rows(cfg: Config, dataset: str, run: str, n: int) -> tuple[int, int]:
    """(first row, count) of D_n's fresh real images in ``fresh_images``: iterations take
    consecutive rows, so no image is drawn twice. When the source's size is known here, running
    out fails now, naming the key (else the select job checks)."""
    from ouroboros.errors import OuroborosError

    start = sum(_fresh_count(cfg, dataset, run, j) for j in range(2, n))
    count = _fresh_count(cfg, dataset, run, n)
    d = cfg.dataset(dataset)
    available = (math.inf if d.source_size is None else d.source_size) - d.size
    if count and start + count > available:
        name = replicate_of(run)[0]
        raise OuroborosError(
            f"config.yaml: runs.{name}.fresh = {cfg.run(name).fresh} needs {start + count} real images outside D_1 "
            f"by {iter_name(n)} of datasets.{dataset}, but its source {d.source!r} holds only {available} more "
            f"than datasets.{dataset}.size; lower runs.{name}.fresh, the iterations or the size"
        )
    return start, count


def train_files(cfg: Config, dataset: str, run: str, n: int) -> list[str]:
    """Every image file D_n may reference (what the train and evaluate rules must wait for)."""
    if n == 1:
        return [real_images(dataset, run)]
    fresh = [fresh_images(dataset, run)] if _fresh_count(cfg, dataset, run, n) else []
    return [f for source in pool(cfg, dataset, run, n) for f in source.files] + fresh


# what a target group (config.yaml's targets, or a group of an experiment) leaves out
GROUP_DEFAULTS = {"iterations": 1, "replicates": 1, "real_subset": SHARED}


def target_files(group: dict) -> list[str]:
    """metrics.json and fid.json of every (dataset, run, replicate, iteration) of a target group
    (config.yaml's ``targets`` or one group of an ``experiments`` entry, its runs named by their
    results directories; its ``real_subset`` decides whether replicates r ≥ 1 are repR or drawR)."""
    group = GROUP_DEFAULTS | group
    return [
        f"{iteration_dir(d, with_replicate(r, rep, group['real_subset']), n)}/{name}.json"
        for d in group.get("datasets", [])
        for r in group.get("runs", [])
        for rep in range(int(group["replicates"]))
        for n in range(1, int(group["iterations"]) + 1)
        for name in ("metrics", "fid")
    ]
