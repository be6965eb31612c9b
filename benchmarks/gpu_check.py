"""The GPU acceptance check: every stage of the loop on the device, within a total time budget.

The budget (``--budget`` seconds, default 300; the machine's start is not in it, and
benchmarks/gpu_check.sh takes the offline install out of it) is divided into one share per phase
(``SHARES``, renormalised over the phases that run); a phase that ends early leaves its time
unused, so the allowances add up to the budget whatever the phases do. Each phase runs in a
process of its own: one that passes its allowance is killed (its process group: snakemake and the
trainings it started too) and recorded as ``overrun`` with whatever it had written, one that
raises is recorded as ``failed`` with its log's tail, and the later phases run either way. The
JSON (--out) is rewritten, atomically, after every phase; the resume, throughput, compile and
projection phases also keep what they measured before they were stopped. The whole run ends
within the budget plus ``GRACE`` seconds (killing a phase, the last report, the summary table).
The exit code is 1 when any phase failed or overran, 2 when the check refused to run. Phases:

- ``resume``: training SIGKILLed in a child process right after a checkpoint, resumed; the weights
  against an uninterrupted run's, twice: bit for bit under deterministic settings (no cuDNN
  autotuning, ``torch.use_deterministic_algorithms(True)``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``),
  and under the production settings (the job's policy, cuDNN autotuning on) within ``RESUME_TOLERANCE``.
- ``sample``: the same model sampled at two batch sizes; the images must not depend on it.
- ``features``: every registered GPU extractor at the paper's batch size, with the architectures
  config.yaml's cifar entry names (random weights where they are not on disk: no network).
- ``select``: GPU Greedy Selection, 65,536 → 32,768.
- ``loop``: a 2-iteration greedy loop through snakemake on the paper's UNet, tiny steps.
- ``throughput``: ours against the diffusers train_unconditional loop and DDPMPipeline over the same
  timed span (the step loop alone) and precision; channels-last against contiguous. Warm-ups untimed.
- ``compile``: torch.compile's warm-up (its seconds reported apart), then a timed run that reuses
  the compiled graphs (the graphs compiled inside the timed window are counted: 0 expected).
- ``sweep``: benchmarks/gpu_throughput.py (concurrent trainings, sampling batch sizes, the DINOv2
  and Inception models) within what is left of its share.
- ``projection``: the GPU-hours of the user's target (results/cifar/greedy/iter08/fid.json) and of
  Figure 3 (fig03), planned by ``snakemake -n`` and costed by ouroboros.costs at the measured rates.

It ends with one table (also in the JSON's ``summary``): training images/s ours against the plain
diffusers loop, sampling image-steps/s ours against DDPMPipeline, each extractor's images/s, and the
projected GPU-hours.

    benchmarks/gpu_check.py --out OUT/gpu_check.json [--budget S] [--tiny] [--cpu] [--only P,Q] [--skip P]
                            [--fail P] [--overrun P]

``--tiny`` shrinks every phase to CPU size (the tests run it so, with OUROBOROS_POLICY=gpu). Without
usable CUDA the check refuses to run unless told to run on the CPU: ``--cpu``, or OUROBOROS_POLICY
set to cpu or gpu (the forced GPU policy of the tests). ``--fail P`` and ``--overrun P`` are test
hooks: phase P raises, or sleeps past its allowance.
"""

from __future__ import annotations

import sys
from pathlib import Path

# first, before any stdlib module imports `select` (subprocess does): benchmarks/select.py would shadow it
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

STARTED = time.monotonic()  # the budget's clock: this process's start
PHASES = ("resume", "sample", "features", "select", "loop", "throughput", "compile", "sweep", "projection")
# each phase's share of the budget: at 300 s, resume 36 s (three processes importing torch), loop 65 s (seven
# cold jobs in a row), compile 56 s (inductor's cold compile of forward and backward), ...
SHARES = {"resume": 0.12, "sample": 0.04, "features": 0.11, "select": 0.03, "loop": 0.22, "throughput": 0.13,
          "compile": 0.19, "sweep": 0.10, "projection": 0.06}
GRACE = 20.0  # seconds past the budget the whole run may take: killing a phase, the last report, the table
RESERVE = 3.0  # seconds of the budget kept for the summary at the end
MIN_ALLOWANCE = 1.0  # a phase with less than this left is not started ("no time")
USER_TARGET = "results/cifar/greedy/iter08/fid.json"
# training runs AdamW with betas (0.95, 0.999): one step moves a weight by at most (1 - 0.95) / sqrt(1 - 0.999)
# = 1.58 lr (Kingma & Ba 2015, §2.1), so two runs whose kernels differ after the kill drift apart by at most
# 2 × 1.58 lr per step; a resume that lost its state (weights, moments, step, data order) shows at step 0's scale
RESUME_TOLERANCE = "2 × 1.58 × lr × (steps after the kill)"


def resume_tolerance(lr: float, steps_after: int) -> float:
    return 2 * 1.58 * lr * steps_after


def _imports() -> None:
    """The heavy libraries, for the phase processes only (the orchestrator runs no model)."""
    global torch, features, models, sample, select, train, device_policy, TrainConfig
    import torch

    from ouroboros import features, models, sample, select, train
    from ouroboros import policy as device_policy
    from ouroboros.config import TrainConfig


def require_cuda(cpu: bool, what: str) -> None:
    """Refuse a machine whose torch has no usable CUDA, unless told to run on the CPU (--cpu, or
    OUROBOROS_POLICY set to cpu or gpu): the workflow's own check (ouroboros.cuda), with its
    diagnostic (torch's build, the driver, the wheel for it)."""
    if cpu:
        return
    from ouroboros import cuda
    from ouroboros.errors import OuroborosError

    try:
        cuda.require(f"{what} was started to measure a GPU")
    except OuroborosError as exc:
        raise OuroborosError(f"{exc}\n  - or pass --cpu to run the check on the CPU") from None


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(preset="tiny8", images=64, batch=16, steps=6, sample_count=8, sample_batches=(8, 3),
                    inference_steps=3, feature_images=4, feature_batch=2, pool=512, dim=16, throughput_steps=4,
                    throughput_warmup=1, loop_steps=4, compile_steps=3,
                    sweep=["--preset", "tiny8", "--train-steps", "3", "--batch-size", "8", "--images", "32",
                           "--concurrency", "1", "--sample-batches", "4", "--sample-steps", "2", "--feature-images", "4",
                           "--tiny"])
    return dict(preset="cifar-paper", images=8192, batch=128, steps=40, sample_count=512, sample_batches=(512, 96),
                inference_steps=20, feature_images=1024, feature_batch=256, pool=65536, dim=384, throughput_steps=200,
                throughput_warmup=20, loop_steps=20, compile_steps=200,
                sweep=["--train-steps", "100", "--concurrency", "1,2", "--sample-batches", "256,1024,4096",
                       "--sample-steps", "10", "--feature-images", "512"])


def random_images(count: int, preset: str, seed: int = 0) -> np.ndarray:
    spec = models.preset(preset)
    shape = (count, spec["sample_size"], spec["sample_size"], spec["in_channels"])
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def write(path: Path, report: dict) -> None:
    """The whole report, atomically (ouroboros.io): a reader sees the previous version or this one, never half."""
    from ouroboros.io import save_json

    save_json(path, report)


# --- phases (each in a process of its own: gpu_check.py --phase NAME) ------------------------------

def _train_cfg(s: dict) -> TrainConfig:
    return TrainConfig(steps=s["steps"], batch_size=s["batch"], lr=1e-4, weight_decay=1e-6, warmup_steps=2)


def _deterministic(pol, on: bool):
    """The deterministic settings (on) or the production ones: cuDNN autotuning off and deterministic
    kernels only, or the policy as a job resolves it."""
    torch.use_deterministic_algorithms(on)
    return dataclasses.replace(pol, cudnn_benchmark=False) if on else pol


def _resume_once(s: dict, folder: Path, pol, deterministic: bool) -> dict:
    folder.mkdir(parents=True)
    images = random_images(s["images"], s["preset"])
    np.save(folder / "images.npy", images)
    ckpt = folder / "train-checkpoint"
    env = {**os.environ, "OUROBOROS_PAUSE": "train", "OUROBOROS_PAUSE_SECONDS": "600"}
    if not deterministic:
        env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    child = subprocess.Popen([sys.executable, __file__, "--child-train", str(folder), "--sizes", json.dumps(s),
                              *(["--deterministic"] if deterministic else [])],
                             env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in child.stderr:  # pause_point announces itself once the checkpoint is on disk
        if "paused in train" in line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    killed_at = json.loads((ckpt / "state.json").read_text())["next_step"]
    cfg = _train_cfg(s)
    pol = _deterministic(pol, deterministic)
    try:
        train.train(images, s["preset"], cfg, seed=0, out_dir=folder / "cut", progress=False, checkpoint_dir=ckpt,
                    checkpoint_seconds=3600, policy=pol)
        train.train(images, s["preset"], cfg, seed=0, out_dir=folder / "whole", progress=False, policy=pol)
    finally:
        _deterministic(pol, False)
    a, b = models.load(folder / "whole").state_dict(), models.load(folder / "cut").state_dict()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    tolerance = 0.0 if deterministic else resume_tolerance(cfg.lr, s["steps"] - killed_at)
    return {"killed_at_step": killed_at, "steps": s["steps"], "max_abs_difference": diff, "tolerance": tolerance,
            "equal": diff == 0, "within_tolerance": diff <= tolerance}


def phase_resume(s: dict, work: Path, pol, out: Path) -> dict:
    det = _resume_once(s, work / "resume-deterministic", pol, True)
    result = {"deterministic": det, "settings": "deterministic: cudnn.benchmark off, torch.use_deterministic_algorithms(True), "
              f"CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG')}; production: the job's policy "
              f"(cudnn.benchmark {pol.cudnn_benchmark}), tolerance {RESUME_TOLERANCE}"}
    _partial(out, result)
    prod = _resume_once(s, work / "resume-production", pol, False)
    result["production"] = prod
    os.symlink(work / "resume-production" / "whole", work / "whole")  # the model the later phases sample
    if not det["equal"]:
        raise AssertionError(f"deterministic settings: resumed weights differ from the uninterrupted run's by "
                             f"{det['max_abs_difference']}: {json.dumps(result)}")
    if not prod["within_tolerance"]:
        raise AssertionError(f"production settings: resumed weights differ by {prod['max_abs_difference']} > tolerance "
                             f"{prod['tolerance']}: {json.dumps(result)}")
    return result


def child_train(work: Path, s: dict, deterministic: bool) -> None:
    _imports()
    pol = _deterministic(device_policy.resolve(), deterministic)
    images = np.load(work / "images.npy")
    train.train(images, s["preset"], _train_cfg(s), seed=0, out_dir=work / "killed", progress=False,
                checkpoint_dir=work / "train-checkpoint", checkpoint_seconds=0, policy=pol)


def _model(s: dict, work: Path):
    if (work / "whole").is_dir():
        return models.load(work / "whole")
    torch.manual_seed(0)
    return models.build(s["preset"])


def phase_sample(s: dict, work: Path, pol) -> dict:
    unet, out = _model(s, work), {}
    for batch in s["sample_batches"]:
        seconds, (images, _) = timed(lambda batch=batch: sample.sample(
            unet, train.scheduler(), 0, s["sample_count"], seed=1, inference_steps=s["inference_steps"],
            batch_size=batch, progress=False, policy=pol))
        out[batch] = (images, seconds)
    (a, ta), (b, _) = out.values()
    diff = int(np.abs(a.astype(int) - b.astype(int)).max())
    if diff > 1:  # half-precision kernels may round a batch's convolutions differently: one grey level
        raise AssertionError(f"samples depend on the batch size: up to {diff} grey levels apart")
    return {"batch_sizes": list(s["sample_batches"]), "max_grey_level_difference": diff, "identical": diff == 0,
            "image_steps_per_second": round(s["sample_count"] * s["inference_steps"] / ta, 1)}


def _stand_in(name: str, source: str | None, work: Path, tiny: bool) -> tuple[str, str]:
    """(model or weights path, where it came from): the configured one where it is on disk, else
    random weights of its architecture (ViT-S/14 or ViT-L/14 by the configured name)."""
    if source and Path(source).exists():
        return source, "configured"
    if "dinov2" in name:
        from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

        large = "large" in (source or "")
        dims = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096) if large \
            else dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
        if tiny:
            dims = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        folder = work / f"{name}-{'vitl14' if large else 'vits14'}"
        Dinov2Model(Dinov2Config(image_size=224, patch_size=14, **dims)).save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
        return str(folder), f"random weights ({'ViT-L/14' if large else 'ViT-S/14'}{', tiny' if tiny else ''})"
    path = work / f"{name}.pth"
    torch.manual_seed(0)
    if name == "inception":
        from unittest import mock

        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        torch.save({}, work / "empty.pth")
        with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None):
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                              feature_extractor_weights_path=str(work / "empty.pth"))
        torch.save(net.state_dict(), path)
    else:
        from torchvision.models import inception_v3

        torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return str(path), "random weights"


def cifar_entry() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["cifar"]


def phase_features(s: dict, work: Path, pol, tiny: bool) -> dict:
    from ouroboros import costs

    cifar, out = cifar_entry(), {}
    images = np.random.default_rng(0).integers(0, 256, (s["feature_images"], 32, 32, 3), dtype=np.uint8)
    functions = {"dinov2": features.dinov2, "inception": features.inception, "dinov2-fd": features.dinov2_fd,
                 "inception-torchvision": features.inception_torchvision}
    for extractor in (e for e in features.EXTRACTORS.values() if e.gpu):
        source, origin = _stand_in(extractor.name, cifar.get(extractor.key) or {"dinov2-fd": "facebook/dinov2-large"}
                                   .get(extractor.name), work, tiny)
        functions[extractor.name](images[:2], source, batch_size=2, policy=pol)  # warm-up (cuDNN autotuning)
        seconds, f = timed(lambda fn=functions[extractor.name], src=source: fn(images, src, batch_size=s["feature_batch"],
                                                                             policy=pol))
        configured = cifar.get(extractor.key) or {"dinov2-fd": "facebook/dinov2-large"}.get(extractor.name)
        out[extractor.name] = {"images_per_second": round(len(images) / seconds, 1), "dim": int(f.shape[1]),
                               "flops_per_image": costs.extractor_flops(extractor.name, configured),
                               "model": origin, "config_key": f"datasets.cifar.{extractor.key}",
                               "batch_size": s["feature_batch"], "finite": bool(np.isfinite(f).all())}
    return {"extractors": out, "device": pol.device}


def phase_select(s: dict, work: Path, pol) -> dict:
    x = np.random.default_rng(0).normal(size=(s["pool"], s["dim"])).astype(np.float32)
    select.greedy_torch(x[: s["pool"] // 8], s["pool"] // 16, seed=0, device=pol.device)  # warm-up
    seconds, chosen = timed(lambda: select.greedy_torch(x, s["pool"] // 2, seed=0, device=pol.device))
    if len(np.unique(chosen)) != s["pool"] // 2:
        raise AssertionError("greedy selection returned repeated rows")
    return {"pool": s["pool"], "selected": s["pool"] // 2, "dim": s["dim"], "seconds_selection": round(seconds, 2)}


def phase_loop(s: dict, work: Path, pol, tiny: bool) -> dict:
    """greedy, 2 iterations, through the snakemake command line on a config of its own: every stage
    (data, train, sample, select on the device, fid) in the seven jobs of one chain."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    folder = work / "loop"
    folder.mkdir()
    n = 32 if tiny else 1024
    images = random_images(4 * n, s["preset"])
    np.savez(folder / "images.npz", images=images, labels=np.zeros(len(images), np.int64))
    cfg["datasets"] = {"check": {"source": "npz", "root": str(folder / "images.npz"), "size": n, "model": s["preset"],
                                 "train": {"steps": s["loop_steps"], "batch_size": s["batch"], "warmup_steps": 2},
                                 "sample": {"inference_steps": s["inference_steps"], "batch_size": 256},
                                 "features": "pixels", "fid_features": "pixels", "select_device": "cuda"}}
    cfg["targets"] = {"datasets": ["check"], "runs": ["greedy"], "iterations": 2}
    cfg.pop("experiments", None)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = ["results/check/greedy/iter02/fid.json"]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(folder),
           "--cores", "2", "--resources=gpu=1", "--scheduler", "greedy", "--", *targets]
    seconds, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=1200))
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake exited {proc.returncode}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    fids = {t: json.loads((folder / t).read_text())["values"]["fid"] for t in targets}
    return {"seconds_loop": round(seconds, 1), "fid": fids, "images": n, "preset": s["preset"]}


def reference_train(images: np.ndarray, preset: str, steps: int, batch_size: int, pol) -> float:
    """Seconds of ``steps`` steps of diffusers' train_unconditional loop (AdamW, a DataLoader of
    normalised host tensors, the loss read every step, a GradScaler in fp16), in the policy's
    autocast: the loop alone, after the model is built."""
    from diffusers import UNet2DModel
    from diffusers.optimization import get_scheduler

    device = pol.torch_device()
    unet = UNet2DModel(**models.preset(preset)).to(device)
    noise_schedule = train.scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_schedule = get_scheduler("cosine", optimizer=opt, num_warmup_steps=min(500, steps // 10), num_training_steps=steps)
    scaler = pol.grad_scaler()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=batch_size, shuffle=True,
                                         drop_last=True)

    def run():
        done = 0
        while done < steps:
            for (clean,) in loader:
                clean = clean.to(device)
                noise = torch.randn(clean.shape, device=device)
                t = torch.randint(0, train.NUM_TRAIN_TIMESTEPS, (len(clean),), device=device)
                with pol.autocast(pol.train_precision):
                    pred = unet(noise_schedule.add_noise(clean, noise, t), t).sample
                loss = torch.nn.functional.mse_loss(pred.float(), noise)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
                scaler.step(opt)
                scaler.update()
                lr_schedule.step()
                opt.zero_grad()
                _ = loss.detach().item()  # the example logs the loss every step
                done += 1
                if done == steps:
                    return

    return timed(run)[0]


def ours_train(images: np.ndarray, s: dict, steps: int, pol, out: Path) -> float:
    """Seconds of ours over the same span: train.train's own clock starts after the model is built
    and the data are on the device, and its summary is taken after the last loss is read back,
    before the model is saved."""
    cfg = TrainConfig(steps=steps, batch_size=s["batch"], lr=1e-4, weight_decay=1e-6, warmup_steps=min(500, steps // 10),
                      compile=pol.compile)
    return float(train.train(images, s["preset"], cfg, seed=0, out_dir=out, progress=False, policy=pol)["seconds"])


def reference_sample(unet, count: int, inference_steps: int, batch_size: int, pol) -> float:
    """DDPMPipeline in the policy's sampling autocast, its generator on the device."""
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline(unet=pol.place(unet), scheduler=train.scheduler())
    pipe.set_progress_bar_config(disable=True)

    def run():
        with pol.autocast(pol.sample_precision):
            for first in range(0, count, batch_size):
                pipe(batch_size=min(batch_size, count - first), num_inference_steps=inference_steps,
                     generator=torch.Generator(pol.device).manual_seed(first), output_type="np")

    return timed(run)[0]



def _partial(out: Path, result: dict) -> None:
    """What a phase has measured so far: kept in the report if the phase is stopped before it ends."""
    write(out, {**result, "partial": True})


def phase_throughput(s: dict, work: Path, pol, out: Path) -> dict:
    images = random_images(s["images"], s["preset"])
    steps, rows = s["throughput_steps"], {}
    result = {"images_per_second": rows, "precision": {"train": pol.train_precision, "sample": pol.sample_precision},
              "preset": s["preset"], "batch": s["batch"],
              "timed_span": "the step loop alone, for both (model built and data on the device before; save after); "
                            "warm-up runs untimed"}
    per_second = lambda seconds: round(steps * s["batch"] / seconds, 2)  # noqa: E731
    reference_train(images, s["preset"], s["throughput_warmup"], s["batch"], pol)  # warm-up, untimed
    ours_train(images, {**s}, s["throughput_warmup"], pol, work / "warm")
    rows["train_reference"] = per_second(reference_train(images, s["preset"], steps, s["batch"], pol))
    _partial(out, result)
    rows["train_ouroboros"] = per_second(ours_train(images, s, steps, pol, work / "ours"))
    result["train_ratio"] = round(rows["train_ouroboros"] / rows["train_reference"], 3)
    _partial(out, result)
    unet = models.load(work / "ours")
    count, batch = s["sample_count"], s["sample_batches"][0]
    reference_sample(unet, min(batch, count), 2, batch, pol)  # warm-up
    rows["sample_reference_image_steps"] = round(count * s["inference_steps"] / reference_sample(
        unet, count, s["inference_steps"], batch, pol), 1)
    _partial(out, result)
    seconds, _ = timed(lambda: sample.sample(unet, train.scheduler(), 0, count, seed=0, batch_size=batch,
                                             inference_steps=s["inference_steps"], progress=False, policy=pol))
    rows["sample_ouroboros_image_steps"] = round(count * s["inference_steps"] / seconds, 1)
    result["sample_ratio"] = round(rows["sample_ouroboros_image_steps"] / rows["sample_reference_image_steps"], 3)
    _partial(out, result)
    contiguous = dataclasses.replace(pol, channels_last=False)
    rows["train_ouroboros_contiguous"] = per_second(ours_train(images, s, steps, contiguous, work / "contiguous"))
    result["channels_last_speedup"] = round(rows["train_ouroboros"] / rows["train_ouroboros_contiguous"], 3)
    return result


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def phase_compile(s: dict, work: Path, pol, out: Path) -> dict:
    """torch.compile of our training: the warm-up call compiles (its seconds reported apart, the
    model's build included), then a timed run over the same shapes reuses the graphs."""
    images = random_images(s["images"], s["preset"])
    compiled = dataclasses.replace(pol, compile=True)
    before = _compiled_graphs()
    started = time.perf_counter()
    ours_train(images, s, 2, compiled, work / "compile-warm")
    result = {"compile_warmup_seconds": round(time.perf_counter() - started, 1), "graphs_compiled_in_warmup":
              _compiled_graphs() - before, "backend": compiled.compile_backend, "preset": s["preset"], "batch": s["batch"]}
    _partial(out, result)
    before = _compiled_graphs()
    seconds = ours_train(images, s, s["compile_steps"], compiled, work / "compiled")
    result["graphs_compiled_in_timed_window"] = _compiled_graphs() - before
    result["train_images_per_second"] = round(s["compile_steps"] * s["batch"] / seconds, 2)
    return result


def _load_module(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phase_sweep(s: dict, work: Path, pol, out: Path, allowance: float) -> dict:
    """benchmarks/gpu_throughput.py in this process, its JSON beside the report, within the allowance."""
    sweep = _load_module("gpu_throughput", ROOT / "benchmarks" / "gpu_throughput.py")
    target = out.parent.parent / "gpu_throughput.json"
    result = sweep.main([*s["sweep"], "--out", str(target), "--budget", str(max(allowance - 2, 1))])
    return {"json": str(target), "train_images_per_second": result.get("train_images_per_second"),
            "sample_image_steps_per_second": result.get("sample_images_steps_per_second"),
            "feature_images_per_second": result.get("feature_images_per_second"), "parts": result.get("parts")}


def measured_rates(report: dict) -> tuple[dict[str, float], dict[str, str]]:
    """FLOP/s measured by the phases, by ouroboros.costs' kind (``features:<extractor>`` per extractor),
    and what each came from."""
    from ouroboros import costs

    phases, rates, basis = report["phases"], {}, {}
    preset = report["sizes"]["preset"]
    through = phases.get("throughput", {}).get("images_per_second", {})
    train_ips = max([through.get("train_ouroboros", 0), phases.get("compile", {}).get("train_images_per_second", 0)])
    if train_ips:
        rates["train"] = train_ips * costs.TRAIN_FORWARDS * costs.forward_flops(preset)
        basis["train"] = f"{train_ips:.0f} training images/s of {preset}"
    if through.get("sample_ouroboros_image_steps"):
        rates["sample"] = through["sample_ouroboros_image_steps"] * costs.forward_flops(preset)
        basis["sample"] = f"{through['sample_ouroboros_image_steps']:.0f} image-steps/s of {preset}"
    for name, row in phases.get("features", {}).get("extractors", {}).items():
        rates[f"features:{name}"] = row["images_per_second"] * row["flops_per_image"]
        basis[f"features:{name}"] = f"{row['images_per_second']:.0f} images/s through {name}"
    return rates, basis


def phase_projection(s: dict, work: Path, out: Path, report_path: Path) -> dict:
    """GPU-hours of the user's target and of Figure 3: the jobs snakemake -n plans in an empty
    directory, their FLOPs (ouroboros.costs), at the rates this check measured; a kind it did not
    measure at the table's rate for this device class."""
    from ouroboros import costs

    report = json.loads(report_path.read_text())
    rates, basis = measured_rates(report)
    device = costs.device_class(report.get("device_name"))
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    result = {"device_class": device, "rates_flops_per_second": rates, "rates_from": basis, "tiny": bool(s.get("tiny")),
              "note": "tiny: rates of the tiny preset, not the paper's UNet" if s.get("tiny") else ""}
    for name, targets in (("user_target", [USER_TARGET]), ("fig03", ["fig03"])):
        folder = work / f"plan-{name}"
        folder.mkdir()
        jobs = costs.plan(targets, snakefile=ROOT / "Snakefile", workdir=folder, python=sys.executable)
        rows = costs.summarize(costs.works(jobs, raw), device, rates=rates, rates_basis="measured by this check")
        whole = costs.total(rows)
        result[name] = {"targets": targets, "gpu_hours": round(whole.hours, 2), "flops": whole.flops,
                        "by_rule": {r.rule: {"jobs": r.jobs, "flops": r.flops, "hours": round(r.hours, 3), "basis": r.basis}
                                    for r in rows}}
        _partial(out, result)
    result["rates_yaml"] = rates_yaml(rates, basis, report)
    return result


def rates_yaml(rates: dict, basis: dict, report: dict) -> str:
    """The measured rates as an entry of src/ouroboros/rates.yaml, to paste there."""
    import datetime

    from ouroboros import costs

    when = datetime.date.today().isoformat()
    lines = [f"  {costs.device_class(report.get('device_name'))}:"]
    for key, value in rates.items():
        lines += [f"    \"{key}\":" if ":" in key else f"    {key}:", f"      flops_per_second: {costs.round_sig(value):.3g}",
                  f"      basis: \"measured by benchmarks/gpu_check.sh on {report.get('device_name')}, {when} ({basis[key]})\""]
    return "\n".join(lines) + "\n"


def run_phase(name: str, args) -> int:
    """One phase in this process: its result (or its partial one) as JSON at --phase-out."""
    out = Path(args.phase_out)
    if args.hook == "fail":
        raise RuntimeError(f"--fail {name}: this phase was made to fail")
    if args.hook == "overrun":
        _partial(out, {"note": f"--overrun {name}: this phase sleeps past its allowance"})
        time.sleep(10**6)
    s = json.loads(args.sizes)
    work = Path(args.work)
    if name == "projection":  # plans and costs jobs, runs no model: no torch (seconds of the budget)
        write(out, phase_projection(s, work, out, Path(args.report)))
        return 0
    _imports()
    pol = device_policy.resolve()
    pol.apply_backends()
    fn = {"resume": lambda: phase_resume(s, work, pol, out), "sample": lambda: phase_sample(s, work, pol),
          "features": lambda: phase_features(s, work, pol, s.get("tiny", False)),
          "select": lambda: phase_select(s, work, pol), "loop": lambda: phase_loop(s, work, pol, s.get("tiny", False)),
          "throughput": lambda: phase_throughput(s, work, pol, out), "compile": lambda: phase_compile(s, work, pol, out),
          "sweep": lambda: phase_sweep(s, work, pol, out, args.allowance)}[name]
    write(out, fn())
    return 0


# --- the orchestrator ------------------------------------------------------------------------------

def launch(name: str, cmd: list[str], allowance: float, log: Path, env: dict) -> tuple[str, float, str]:
    """(ok | failed | overrun, seconds, error tail) of one phase process, its process group killed at the allowance."""
    started = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=allowance)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "overrun", time.monotonic() - started, ""
    try:  # a phase's own children (snakemake's jobs, training workers) go with it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if code != 0:
        return "failed", time.monotonic() - started, log.read_text(errors="replace")[-3000:]
    return "ok", time.monotonic() - started, ""


def allowances(budget: float, plan: list[str]) -> dict[str, float]:
    """Each planned phase's seconds: its share of the budget (less the reserve), the shares
    renormalised over the phases that run. A phase never gets what another left unused: the sum of
    the allowances is the budget whatever each phase does."""
    usable = max(budget - RESERVE, 0.0)
    weight = sum(SHARES[p] for p in plan) or 1.0
    return {p: usable * SHARES[p] / weight for p in plan}


def orchestrate(args, budget: float, started: float) -> int:
    """Every planned phase in its own process within its allowance; ``started``: the budget's clock."""
    from ouroboros import costs

    s = sizes(args.tiny) | {"tiny": args.tiny}
    only = [p for p in args.only.split(",") if p]
    skip = [p for p in args.skip.split(",") if p]
    plan = [p for p in PHASES if not ((only and p not in only) or p in skip)]
    shares = allowances(budget, plan)
    out = Path(args.out)
    logs = out.parent / "gpu_check-logs"
    logs.mkdir(parents=True, exist_ok=True)
    device_name = costs._nvidia_smi_name() if not os.environ.get("OUROBOROS_POLICY") else None
    report = {"device_name": device_name or "cpu", "policy_env": os.environ.get("OUROBOROS_POLICY", "auto"), "sizes": s,
              "budget": {"seconds": budget, "grace": GRACE, "reserve": RESERVE,
                         "allowances_s": {p: round(a, 1) for p, a in shares.items()}},
              "phases": {}}
    print(f"budget {budget:.0f} s (+ {GRACE:.0f} s grace): " + ", ".join(f"{p} {a:.0f} s" for p, a in shares.items()),
          flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        for name in PHASES:
            if name not in plan:
                report["phases"][name] = {"status": "skipped"}
                write(out, report)
                continue
            # its share, and never past the budget (a slow start of the orchestrator comes out of the last phases)
            allowance = min(shares[name], budget - RESERVE - (time.monotonic() - started))
            entry = {"share_s": round(shares[name], 1), "allowance_s": round(max(allowance, 0), 1)}
            if allowance < MIN_ALLOWANCE:
                entry |= {"status": "overrun", "seconds": 0.0, "error": "no time left in the budget: not started"}
            else:
                phase_out = work / "results" / f"{name}.json"
                phase_out.parent.mkdir(exist_ok=True)
                hook = "fail" if name == args.fail else "overrun" if name == args.overrun else ""
                env = dict(os.environ)
                if name == "resume":  # cuBLAS reproducible: set before the process creates its handle
                    env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
                write(out, report)
                cmd = [sys.executable, __file__, "--phase", name, "--phase-out", str(phase_out), "--work", str(work),
                       "--sizes", json.dumps(s), "--report", str(out), "--allowance", f"{allowance:.1f}", "--hook", hook]
                status, seconds, error = launch(name, cmd, allowance, logs / f"{name}.log", env)
                result = json.loads(phase_out.read_text()) if phase_out.is_file() else {}
                entry |= {"status": status, "seconds": round(seconds, 1), **result, "log": str(logs / f"{name}.log")}
                if error:
                    entry["error"] = error
                if status == "overrun":
                    entry["error"] = f"stopped at its allowance of {allowance:.1f} s"
            report["phases"][name] = entry
            write(out, report)
            print(f"{name:12s} {entry['status']:8s} {entry['seconds']:7.1f} s of {entry['allowance_s']:6.1f} s", flush=True)
    report["summary"] = summary(report, out.parent / "gpu_throughput.json")
    report["seconds"] = round(time.monotonic() - started, 1)
    write(out, report)
    print(report["summary"])
    bad = [f"{n} ({e['status']})" for n, e in report["phases"].items() if e["status"] in ("failed", "overrun")]
    print(f"wrote {out} in {report['seconds']} s of a {budget:.0f} s budget; "
          f"failed or overrun phases: {', '.join(bad) or 'none'}")
    return 1 if bad else 0


def summary(report: dict, sweep_json: Path) -> str:
    """The one table: ours against the diffusers references, the extractors, the projected GPU-hours."""
    phases = report["phases"]
    rows = phases.get("throughput", {}).get("images_per_second", {})
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, int | float) and v else "—"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "—"  # noqa: E731
    lines = [f"{'measure':46s} {'ours':>12s} {'reference':>12s} {'ratio':>7s}"]
    ours, ref = rows.get("train_ouroboros"), rows.get("train_reference")
    lines.append(f"{'training images/s (ref: diffusers loop)':46s} {fmt(ours):>12s} {fmt(ref):>12s} {ratio(ours, ref):>7s}")
    compiled = phases.get("compile", {}).get("train_images_per_second")
    warm = phases.get("compile", {}).get("compile_warmup_seconds")
    lines.append(f"{'training images/s, torch.compile':46s} {fmt(compiled):>12s} {fmt(ref):>12s} {ratio(compiled, ref):>7s}"
                 + (f"  (compile warm-up {warm} s, untimed)" if warm else ""))
    ours, ref = rows.get("sample_ouroboros_image_steps"), rows.get("sample_reference_image_steps")
    lines.append(f"{'sampling image-steps/s (ref: DDPMPipeline)':46s} {fmt(ours):>12s} {fmt(ref):>12s} {ratio(ours, ref):>7s}")
    for name, row in phases.get("features", {}).get("extractors", {}).items():
        lines.append(f"{'features images/s, ' + name:46s} {fmt(row.get('images_per_second')):>12s}")
    if sweep_json.is_file():
        sweep = json.loads(sweep_json.read_text())
        for k, v in (sweep.get("train_images_per_second") or {}).items():
            lines.append(f"{f'sweep: training images/s, {k} at once':46s} {fmt(v):>12s}")
    projection = phases.get("projection", {})
    for name, label in (("user_target", USER_TARGET), ("fig03", "Figure 3 (fig03)")):
        hours = projection.get(name, {}).get("gpu_hours")
        note = "  (tiny: not the paper's UNet)" if projection.get("tiny") else ""
        lines.append(f"{'GPU-hours, ' + label:46s} {fmt(hours):>12s}{note}")
    status = ", ".join(f"{n} {e['status']}" for n, e in phases.items())
    lines.append(f"phases: {status}")
    return "\n".join(lines)


def main(argv=None, started: float | None = None) -> int:
    """The check (or, with the hidden --phase, one of its phases); ``started``: the budget's clock
    (default: this process's start when run as a script, this call's otherwise)."""
    started = started if started is not None else (STARTED if __name__ == "__main__" else time.monotonic())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--budget", type=float, default=300.0, help="total seconds for every phase (default 300)")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized arguments for every phase")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (the check refuses a machine without CUDA otherwise)")
    ap.add_argument("--only", default="", help=f"comma-separated phases of {', '.join(PHASES)}")
    ap.add_argument("--skip", default="", help="comma-separated phases not to run")
    ap.add_argument("--fail", default="", help="make this phase fail on purpose (tests the recording)")
    ap.add_argument("--overrun", default="", help="make this phase overrun its allowance on purpose (tests the budget)")
    for hidden in ("--child-train", "--sizes", "--phase", "--phase-out", "--work", "--report", "--hook"):
        ap.add_argument(hidden, default="", help=argparse.SUPPRESS)
    ap.add_argument("--allowance", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_train:
        child_train(Path(args.child_train), json.loads(args.sizes), args.deterministic)
        return 0
    if args.phase:
        return run_phase(args.phase, args)
    for name in [p for p in (args.only + "," + args.skip).split(",") if p] + [p for p in (args.fail, args.overrun) if p]:
        if name not in PHASES:
            ap.error(f"unknown phase {name!r}; phases: {', '.join(PHASES)}")
    if args.cpu:
        os.environ.setdefault("OUROBOROS_POLICY", "cpu")
    from ouroboros.errors import OuroborosError

    try:
        require_cuda(args.cpu, "the GPU acceptance check (benchmarks/gpu_check.py)")
    except OuroborosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return orchestrate(args, args.budget, started)


if __name__ == "__main__":
    sys.exit(main())
