"""What a run costs: the FLOPs of every planned job from its preset and config, and its hours on a
device class from the rate table shipped beside this module (``rates.yaml``).

FLOPs count 2 per multiply-add of the layers that do the arithmetic (convolutions, linear layers,
attention's two matrix products); normalisations, activations, softmax and additions are left out
(a few per cent of the work, none of it on tensor cores). The UNet's multiply-adds are counted
analytically from the preset's config dict (ouroboros.models.PRESETS) following diffusers'
UNet2DModel layer by layer, so that this module imports no torch: the preflight plans a run in a
process that builds no model (tests/test_costs.py checks the count against torch's own counter).

- training: steps × batch × forward × 3 (the backward pass costs two forwards: the gradients of
  the inputs and of the weights);
- sampling: images × denoising steps × forward (× 2 under classifier-free guidance: the
  conditional and the unconditional prediction);
- features: images × the extractor's forward.

Hours are FLOPs over the rate the device class achieves on that kind of work: a rate the GPU
check measured (benchmarks/gpu_check.sh) where one has run, otherwise an estimate marked as one.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ouroboros.errors import OuroborosError

RATES_FILE = Path(__file__).with_name("rates.yaml")
KINDS = ("train", "sample", "features", "cpu")
# a training step costs 3 forward passes: the forward, and the backward's products for the inputs' and the weights' gradients
TRAIN_FORWARDS = 3


# --- the UNet -------------------------------------------------------------------------------------

def _conv(k: int, cin: int, cout: int, hw: int) -> int:
    return k * k * cin * cout * hw


def _resnet(cin: int, cout: int, temb: int, hw: int, scale_shift: bool) -> int:
    """diffusers' ResnetBlock2D: two 3×3 convolutions, the time embedding's projection (per image,
    not per pixel; twice the channels for scale-shift), a 1×1 shortcut where the channels change."""
    macs = _conv(3, cin, cout, hw) + _conv(3, cout, cout, hw) + temb * cout * (2 if scale_shift else 1)
    return macs + (_conv(1, cin, cout, hw) if cin != cout else 0)


def _attention(channels: int, hw: int) -> int:
    """diffusers' Attention over the hw positions: q, k, v and the output projection (4 linear
    layers of channels²) per position, QKᵀ and the weighted sum AV (hw² × channels each, whatever
    the number of heads)."""
    return 4 * hw * channels * channels + 2 * hw * hw * channels


def unet_macs_of(spec: Mapping[str, Any], classes: int | None = None) -> int:
    """Multiply-adds of one forward pass of ``UNet2DModel(**spec)`` on one image. ``classes``: the
    class embedding is a table lookup (no multiply-adds); accepted for the API's symmetry."""
    del classes  # nn.Embedding rows are added to the time embedding: no arithmetic beyond an addition
    channels = list(spec["block_out_channels"])
    downs, ups = list(spec["down_block_types"]), list(spec["up_block_types"])
    layers = int(spec.get("layers_per_block", 2))
    size = spec["sample_size"]
    height, width = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    head_dim = spec.get("attention_head_dim", 8)
    if head_dim is not None and any(c % int(head_dim) for c in channels):
        raise OuroborosError(f"UNet channels {channels} are not multiples of attention_head_dim {head_dim}")
    scale_shift = spec.get("resnet_time_scale_shift", "default") == "scale_shift"
    for key, default in (("time_embedding_type", "positional"), ("downsample_type", "conv"), ("upsample_type", "conv"),
                         ("class_embed_type", None), ("mid_block_type", "UNetMidBlock2D")):
        if spec.get(key, default) != default:
            raise OuroborosError(f"costs: UNet option {key}={spec[key]!r} is not modelled (only {default!r})")
    for block in downs + ups:
        if block not in ("DownBlock2D", "AttnDownBlock2D", "UpBlock2D", "AttnUpBlock2D"):
            raise OuroborosError(f"costs: UNet block {block!r} is not modelled")
    c0 = channels[0]
    temb = int(spec.get("time_embedding_dim") or 4 * c0)
    area = lambda level: (height >> level) * (width >> level)  # noqa: E731 - positions at a downsampling level
    # the time embedding: sinusoids (no products), then Linear(c0, temb), SiLU, Linear(temb, temb)
    macs = c0 * temb + temb * temb
    macs += _conv(3, int(spec.get("in_channels", 3)), c0, area(0))  # conv_in
    skips = [c0]  # channels of the skip connections, in the order the down path stores them
    cout = c0
    for i, block in enumerate(downs):
        cin, cout, hw = cout, channels[i], area(i)
        for j in range(layers):
            macs += _resnet(cin if j == 0 else cout, cout, temb, hw, scale_shift)
            if block.startswith("Attn"):
                macs += _attention(cout, hw)
            skips.append(cout)
        if i < len(downs) - 1:  # Downsample2D: a 3×3 convolution of stride 2, output at the next level
            macs += _conv(3, cout, cout, area(i + 1))
            skips.append(cout)
    deepest = len(channels) - 1
    hw = area(deepest)
    macs += 2 * _resnet(cout, cout, temb, hw, scale_shift)  # UNetMidBlock2D: resnet, attention, resnet
    if spec.get("add_attention", True):
        macs += _attention(cout, hw)
    reversed_channels = channels[::-1]
    previous = reversed_channels[0]
    for i, block in enumerate(ups):
        cout, level = reversed_channels[i], deepest - i
        hw = area(level)
        for j in range(layers + 1):
            skip = skips.pop()
            macs += _resnet((previous if j == 0 else cout) + skip, cout, temb, hw, scale_shift)
            if block.startswith("Attn"):
                macs += _attention(cout, hw)
        previous = cout
        if i < len(ups) - 1:  # Upsample2D: nearest ×2, then a 3×3 convolution at the upsampled size
            macs += _conv(3, cout, cout, area(level - 1))
    if skips:
        raise OuroborosError(f"costs: {len(skips)} skip connections left over: the block layout is not a UNet2DModel's")
    macs += _conv(3, c0, int(spec.get("out_channels", 3)), area(0))  # conv_out
    return int(macs)


def unet_macs(preset: str, classes: int | None = None) -> int:
    """Multiply-adds of one UNet forward pass on one image of the preset (ouroboros.models.PRESETS)."""
    from ouroboros import models

    return unet_macs_of(models.preset(preset), classes)


def forward_flops(preset: str, classes: int | None = None) -> float:
    return 2.0 * unet_macs(preset, classes)


# --- the extractors -------------------------------------------------------------------------------

# DINOv2 backbones (facebook/dinov2-*): hidden size, layers. The giant's SwiGLU MLP (hidden 4096, three
# matrices) costs the same 8·D² per token as the others' 4·D MLP. The hub models have no register tokens.
DINOV2 = {"small": (384, 12), "base": (768, 12), "large": (1024, 24), "giant": (1536, 40)}
DINOV2_PATCH, DINOV2_INPUT = 14, 224  # the image processor's 224 × 224 centre crop (dgm-eval: a 224 × 224 resize)
# InceptionV3 at 299 × 299 by torch.utils.flop_counter.FlopCounterMode on torchvision's inception_v3 (aux
# head off, 1000 classes; the test recounts it): torch-fidelity's inception-v3-compat has the same
# convolutions and a 2048 → 1008 head (+16k multiply-adds, nothing at this scale)
INCEPTION_MACS = 5_713_216_096
# ouroboros.classifier on a 32 × 32 RGB image: 3×3 convolutions 3→32 and 32→64 at 32², 64→64 at 16²
# (the head's 64×10 is left out: features stop before it)


def dinov2_macs(size: str, tokens: int | None = None) -> int:
    """Multiply-adds of a DINOv2 ViT on one 224 × 224 image: the 14×14 patch embedding, then per
    layer the q, k, v and output projections (4·T·D²), the MLP (8·T·D²) and attention (2·T²·D)."""
    width, depth = DINOV2[size]
    patches = (DINOV2_INPUT // DINOV2_PATCH) ** 2
    tokens = tokens or patches + 1  # + the CLS token
    embed = patches * DINOV2_PATCH * DINOV2_PATCH * 3 * width
    return int(embed + depth * (12 * tokens * width * width + 2 * tokens * tokens * width))


def classifier_macs(channels: int = 3, side: int = 32) -> int:
    from ouroboros.classifier import FEATURE_DIM

    return _conv(3, channels, 32, side * side) + _conv(3, 32, 64, side * side) + _conv(3, 64, FEATURE_DIM, (side // 2) ** 2)


def dinov2_size(model: str | None) -> str:
    """small/base/large/giant from a hub id (facebook/dinov2-large) or a local directory named after one."""
    name = Path(str(model or "facebook/dinov2-small")).name.lower()
    found = [s for s in DINOV2 if re.search(rf"(^|[^a-z]){s}([^a-z]|$)", name)]
    if not found:
        found = [s for s, tag in zip(DINOV2, ("vits", "vitb", "vitl", "vitg"), strict=True) if tag in name]
    if len(found) != 1:
        raise OuroborosError(f"costs: cannot tell the DINOv2 size (small, base, large, giant) from {model!r}; name the "
                             "directory after the hub model (e.g. dinov2-large)")
    return found[0]


def extractor_flops(name: str, model: str | None = None) -> float:
    """FLOPs of one image through a feature extractor; ``model`` is the DINOv2 hub id or directory."""
    if name in ("pixels", "identity"):
        return 0.0
    if name in ("dinov2", "dinov2-fd"):
        return 2.0 * dinov2_macs(dinov2_size(model or ("facebook/dinov2-large" if name == "dinov2-fd" else None)))
    if name in ("inception", "inception-torchvision"):
        return 2.0 * INCEPTION_MACS
    if name == "classifier":
        return 2.0 * classifier_macs()
    raise OuroborosError(f"costs: no FLOP count for the extractor {name!r}")


# --- the work of one job --------------------------------------------------------------------------

@dataclass(frozen=True)
class Work:
    rule: str
    kind: str  # train | sample | features (on the job's device) | cpu (a job without a GPU slot)
    flops: float
    label: str  # e.g. "cifar real iter01: 128,000 steps × 128 images"
    gpu: bool  # the job takes a GPU slot
    model: str = ""  # the preset (train, sample) or the extractor (features): a measured rate may be per model
    items: float = 0  # images trained on (steps × batch), image-steps sampled, or images embedded


def train_flops(preset: str, steps: int, batch: int, classes: int | None = None) -> float:
    return float(steps) * batch * forward_flops(preset, classes) * TRAIN_FORWARDS


def sample_flops(preset: str, images: int, steps: int, evals_per_step: int = 1, guidance: bool = False,
                 classes: int | None = None) -> float:
    return float(images) * steps * evals_per_step * (2 if guidance else 1) * forward_flops(preset, classes)


def features_flops(extractor: str, model: str | None, images: int) -> float:
    return float(images) * extractor_flops(extractor, model)


def _config(config):
    from ouroboros.config import Config, parse

    return config if isinstance(config, Config) else parse(config)


def _train_size(cfg, dataset: str, branch: str, n: int) -> int:
    """|D_n|: N for iteration 1; the pool for a selection that keeps it all (replace's samples × N), else N."""
    from ouroboros import paths, selectors

    size = cfg.dataset(dataset).size
    name = paths.replicate_of(branch)[0]
    if n == 1 or name == paths.REAL:
        return size
    return paths.pool_size(cfg, dataset, branch, n) if selectors.get(cfg.run(name).selection).keeps_all else size


def _folder_images(cfg, dataset: str, folder: str) -> int:
    """Images in a features job's folder: real (N), reference (the whole source), fresh, or a producer's samples."""
    from ouroboros import paths

    d = cfg.dataset(dataset)
    first = folder.split("/")[0]
    if not re.search(r"(^|/)iter\d\d", folder):
        if first == paths.REAL:
            return d.size
        if first == paths.REFERENCE:
            return d.source_size or d.size
        if first == paths.FRESH:
            return max((d.source_size or d.size) - d.size, 0)
        raise OuroborosError(f"costs: unknown features folder results/{dataset}/{folder}")
    return paths.sample_range(cfg, dataset, folder)[1]


def job_work(rule: str, wildcards: Mapping[str, str], config) -> Work | None:
    """The work of one planned Snakemake job (rule name and wildcards as Snakemake plans them) from the
    validated config (a :class:`ouroboros.config.Config` or the dict it parses); None for jobs that run
    no model (data, select, evaluate, fid, tables, ...)."""
    from ouroboros import features, paths

    cfg = _config(config)
    w = dict(wildcards)
    dataset = w.get("dataset")
    if rule == "train":
        d = cfg.dataset(dataset)
        n = int(w["iter"])
        where = f"{dataset} {w['branch']} iter{n:02d}"
        if d.generator != "ddpm":
            return Work(rule, "cpu", 0.0, f"{where}: {d.generator} fit", False, d.generator)
        from ouroboros.config import TrainConfig

        options = cfg.train_options(dataset, paths.replicate_of(w["branch"])[0], n)
        train = TrainConfig(**options)
        size = _train_size(cfg, dataset, w["branch"], n)
        steps = train.total_steps(size)
        flops = train_flops(d.model, steps, train.batch_size, d.classes)
        return Work(rule, "train", flops, f"{where}: {steps:,} steps × {train.batch_size} of {d.model}", True, d.model,
                    float(steps) * train.batch_size)
    if rule == "sample":
        d = cfg.dataset(dataset)
        count = paths.sample_range(cfg, dataset, w["producer"])[1]
        where = f"{dataset} {w['producer']}"
        if d.generator != "ddpm":
            return Work(rule, "cpu", 0.0, f"{where}: {count:,} draws of {d.generator}", False, d.generator)
        steps = d.sample.inference_steps
        guidance = bool(d.classes) and d.sample.guidance_scale != 1.0
        flops = sample_flops(d.model, count, steps, guidance=guidance, classes=d.classes)
        return Work(rule, "sample", flops, f"{where}: {count:,} images × {steps} steps{' × 2 (CFG)' if guidance else ''}",
                    True, d.model, float(count) * steps * (2 if guidance else 1))
    if rule == "features":
        extractor = features.get(w["extractor"])
        if not extractor.torch:
            return None
        d = cfg.dataset(dataset)
        model = getattr(d, extractor.key) if extractor.key in ("dinov2", "fd_dinov2") else None
        count = _folder_images(cfg, dataset, w["folder"])
        flops = features_flops(extractor.name, model, count)
        label = f"{dataset} {w['folder']}: {count:,} images through {extractor.name}" + (f" ({model})" if model else "")
        return Work(rule, "features" if extractor.gpu else "cpu", flops, label, extractor.gpu, extractor.name, float(count))
    if rule == "classifier":
        d = cfg.dataset(dataset)
        steps, batch = d.classifier_steps, min(128, int(0.8 * d.size))
        flops = float(steps) * batch * 2.0 * classifier_macs() * TRAIN_FORWARDS
        return Work(rule, "cpu", flops, f"{dataset}: classifier, {steps} steps × {batch}", False, "classifier",
                    float(steps) * batch)
    return None


# --- devices and rates ----------------------------------------------------------------------------

# (substring of the device name, class), most specific first
_CLASSES = (("GH200", "H200"), ("H200", "H200"), ("H100 PCIe", "H100-PCIe"), ("H100", "H100"), ("H800", "H100"),
            ("A100", "A100"), ("A800", "A100"), ("L40S", "L40S"), ("L40", "L40S"), ("A10", "A10"), ("L4", "L4"),
            ("V100", "V100"), ("4090", "RTX4090"), ("T4", "T4"))


def device_class(name: str | None = None) -> str:
    """The rate table's class of a GPU name (nvidia-smi's or torch.cuda.get_device_name()'s), "GPU"
    for one it does not list, "cpu" for none; without a name, this machine's first GPU by nvidia-smi
    (no torch import), else "cpu"."""
    if name is None:
        name = _nvidia_smi_name()
        if name is None:
            return "cpu"
    if not name or name.strip().lower() == "cpu":
        return "cpu"
    for key, cls in _CLASSES:
        if key.lower() in name.lower():
            return cls
    return "GPU"


def _nvidia_smi_name() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible.split(",")[0].strip().isdigit() and int(visible.split(",")[0]) < len(names):
        return names[int(visible.split(",")[0])]
    return names[0] if names else None


@cache
def table() -> dict[str, Any]:
    """The shipped rate table: {device class: {kind: {flops_per_second, basis}}, peak_bf16, ...}."""
    import yaml

    raw = yaml.safe_load(RATES_FILE.read_text())
    return raw["devices"]


def rate(kind: str, device: str, model: str | None = None) -> tuple[float, str]:
    """FLOP/s the device class (or a GPU name) achieves on this kind of work, and its basis (measured,
    or an estimate with its reasoning); ``model``: an extractor or preset with a rate of its own
    (``features:dinov2``). ``kind`` cpu is a job without a GPU slot: the CPU's rate on any machine."""
    if kind not in KINDS:
        raise OuroborosError(f"costs: unknown kind of work {kind!r}; kinds: {', '.join(KINDS)}")
    devices = table()
    cls = "cpu" if kind == "cpu" else device if device in devices else device_class(device)
    entry = devices.get(cls) or devices["GPU"]
    base = "train" if kind == "cpu" else kind
    value = entry.get(f"{base}:{model}") if model else None
    value = value or entry[base]
    return float(value["flops_per_second"]), f"{cls if cls in devices else 'GPU'}: {value['basis']}"


def hours(flops: float, kind: str, device: str, model: str | None = None) -> tuple[float, str]:
    per_second, basis = rate(kind, device, model)
    return flops / per_second / 3600.0, basis


@dataclass(frozen=True)
class Row:
    rule: str
    jobs: int
    flops: float
    hours: float
    basis: str


def summarize(works: Iterable[Work | None], device: str, rates: Mapping[str, float] | None = None,
              rates_basis: str = "measured") -> list[Row]:
    """Rows by rule (in first-seen order): jobs, total FLOPs, hours and the basis of the rates used,
    jobs with a GPU slot at ``device``'s rates, the others at the CPU's. ``rates`` overrides the table
    with FLOP/s by kind, or by ``kind:model`` (e.g. ``features:dinov2-fd``, measured per extractor)."""
    rows: dict[str, dict[str, Any]] = {}
    for work in works:
        if work is None:
            continue
        target = device if work.gpu else "cpu"
        own = (rates or {}).get(f"{work.kind}:{work.model}") or (rates or {}).get(work.kind)
        if own and work.gpu:
            spent, basis = work.flops / own / 3600.0, rates_basis
        else:
            spent, basis = hours(work.flops, work.kind, target, work.model or None)
        row = rows.setdefault(work.rule, {"jobs": 0, "flops": 0.0, "hours": 0.0, "basis": []})
        row["jobs"] += 1
        row["flops"] += work.flops
        row["hours"] += spent
        if basis not in row["basis"]:
            row["basis"].append(basis)
    return [Row(rule, r["jobs"], r["flops"], r["hours"], " | ".join(r["basis"])) for rule, r in rows.items()]


def total(rows: Iterable[Row]) -> Row:
    rows = list(rows)
    return Row("total", sum(r.jobs for r in rows), sum(r.flops for r in rows), sum(r.hours for r in rows), "")


def format_rows(rows: list[Row], device: str) -> str:
    """A plain-text table of :func:`summarize`'s rows and their total."""
    lines = [f"{'rule':10s} {'jobs':>5s} {'FLOPs':>10s} {'hours':>8s}  basis ({device})"]
    for r in [*rows, total(rows)]:
        basis = " | ".join(b if len(b) <= 70 else b[:67] + "..." for b in r.basis.split(" | ")) if r.basis else ""
        lines.append(f"{r.rule:10s} {r.jobs:5d} {r.flops:10.3g} {r.hours:8.2f}  {basis}")
    return "\n".join(lines)


# --- planning a target ----------------------------------------------------------------------------

_JOB = re.compile(r"^(?:local)?rule (?P<rule>[A-Za-z_][A-Za-z0-9_]*):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (?P<wildcards>.*)$")


def parse_dry_run(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of each job a ``snakemake -n`` listing prints."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        m = _JOB.match(line)
        if m:
            jobs.append((m["rule"], {}))
            continue
        m = _WILDCARDS.match(line)
        if m and jobs:
            jobs[-1][1].update(part.split("=", 1) for part in m["wildcards"].split(", ") if "=" in part)
    return jobs


def plan(targets: list[str], *, snakefile: str | os.PathLike, workdir: str | os.PathLike, python: str = "python3",
         configfile: str | os.PathLike | None = None, timeout: float = 300) -> list[tuple[str, dict[str, str]]]:
    """The jobs ``snakemake -n`` plans for ``targets`` in ``workdir`` (an empty directory plans every
    job), with ``configfile`` (default: the config.yaml beside the Snakefile)."""
    configfile = Path(configfile or Path(snakefile).resolve().parent / "config.yaml").resolve()
    cmd = [python, "-m", "snakemake", "-n", "-s", str(Path(snakefile).resolve()), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "1", "--", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise OuroborosError(f"costs: snakemake -n {' '.join(targets)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse_dry_run(proc.stdout + "\n" + proc.stderr)


def works(jobs: Iterable[tuple[str, Mapping[str, str]]], config) -> list[Work]:
    cfg = _config(config)
    return [w for rule, wildcards in jobs if (w := job_work(rule, wildcards, cfg)) is not None]


def round_sig(x: float, digits: int = 3) -> float:
    return 0.0 if x == 0 else round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))
