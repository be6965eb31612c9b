"""The GPU acceptance check: every stage of the loop on the device, in phases that cannot lose
each other's numbers.

Each phase runs in its own try block; after every phase the whole report is written again,
atomically, to --out, so a phase that fails (or a machine taken back mid-way) leaves every number
measured before it, and a failing phase is recorded (its traceback's tail) while the later ones
still run. The exit code is 1 when any phase failed. Phases, in order:

- ``resume``: training under the job's device policy, SIGKILLed in a child process right after a
  checkpoint, resumed here; the weights are compared with an uninterrupted run's, bit for bit.
- ``sample``: the same model sampled at two batch sizes; the images must not depend on it.
- ``features``: every registered GPU extractor at the paper's batch size, with the models that
  config.yaml's cifar entry names (random weights of the same architecture where they are not on
  disk: the check needs no network), on the policy's device.
- ``select``: GPU Greedy Selection, 65,536 → 32,768.
- ``loop``: a 2-iteration replace and greedy loop through snakemake on the paper's UNet, tiny steps.
- ``throughput``: ours against the diffusers train_unconditional loop and DDPMPipeline, the same
  timed span (the step loop alone: after the model is built and the data are on the device, before
  anything is saved) and the same precision (the policy's autocast for both; the reference draws
  its noise on the device too); channels-last against contiguous; torch.compile last.
- ``projection``: Figure 3's device-hours from the measured rates, with the extractors the cifar
  config really uses.

    benchmarks/gpu_check.py --out OUT/gpu_check.json [--tiny] [--only P,Q] [--skip P] [--fail P]

``--tiny`` shrinks every phase to CPU size (the tests run it so, with OUROBOROS_POLICY=gpu).
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
import traceback  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from ouroboros import features, models, sample, select, train  # noqa: E402
from ouroboros import policy as device_policy  # noqa: E402
from ouroboros.config import TrainConfig  # noqa: E402

PHASES = ("resume", "sample", "features", "select", "loop", "throughput", "projection")
# Figure 3 (README): 15 trainings of 500 epochs on 32,768 images, 15 × 32,768 samples of 1000 steps,
# and about 16 sets of 32,768 images through each extractor
FIG3_TRAIN_IMAGES, FIG3_SAMPLE_STEPS, FIG3_FEATURE_IMAGES = 245.8e6, 491.5e6, 16 * 32768


def sizes(tiny: bool) -> dict:
    if tiny:
        return dict(preset="tiny8", images=64, batch=16, steps=6, sample_count=8, sample_batches=(8, 3),
                    inference_steps=3, feature_images=4, feature_batch=2, pool=512, dim=16, throughput_steps=4,
                    throughput_warmup=1, loop_steps=4)
    return dict(preset="cifar-paper", images=8192, batch=128, steps=40, sample_count=512, sample_batches=(512, 96),
                inference_steps=20, feature_images=1024, feature_batch=256, pool=65536, dim=384, throughput_steps=200,
                throughput_warmup=20, loop_steps=20)


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
    """The whole report, atomically: a reader sees the previous version or this one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# --- phases --------------------------------------------------------------------------------------

def _train_cfg(s: dict) -> TrainConfig:
    return TrainConfig(steps=s["steps"], batch_size=s["batch"], lr=1e-4, weight_decay=1e-6, warmup_steps=2)


def phase_resume(s: dict, work: Path, pol) -> dict:
    images = random_images(s["images"], s["preset"])
    np.save(work / "images.npy", images)
    ckpt = work / "train-checkpoint"
    env = {**os.environ, "OUROBOROS_PAUSE": "train", "OUROBOROS_PAUSE_SECONDS": "600"}
    child = subprocess.Popen([sys.executable, __file__, "--child-train", str(work), "--sizes", json.dumps(s)],
                             env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 600
    for line in child.stderr:  # pause_point announces itself once the checkpoint is on disk
        if "paused in train" in line or time.time() > deadline:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = json.loads((ckpt / "state.json").read_text())["next_step"]
    cfg = _train_cfg(s)
    train.train(images, s["preset"], cfg, seed=0, out_dir=work / "cut", progress=False, checkpoint_dir=ckpt,
                checkpoint_seconds=3600, policy=pol)
    train.train(images, s["preset"], cfg, seed=0, out_dir=work / "whole", progress=False, policy=pol)
    a, b = models.load(work / "whole").state_dict(), models.load(work / "cut").state_dict()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    if diff != 0:
        raise AssertionError(f"resumed weights differ from the uninterrupted run's by {diff}")
    return {"killed_at_step": killed_at, "steps": s["steps"], "equal": True, "max_abs_difference": diff}


def child_train(work: Path, s: dict) -> None:
    images = np.load(work / "images.npy")
    train.train(images, s["preset"], _train_cfg(s), seed=0, out_dir=work / "killed", progress=False,
                checkpoint_dir=work / "train-checkpoint", checkpoint_seconds=0)


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
        out[extractor.name] = {"images_per_second": round(len(images) / seconds, 1), "dim": int(f.shape[1]),
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
    """replace and greedy, 2 iterations, through the snakemake command line on a config of its own."""
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
    cfg["targets"] = {"datasets": ["check"], "runs": ["replace", "greedy"], "iterations": 2}
    cfg.pop("experiments", None)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/check/{run}/iter02/fid.json" for run in ("replace", "greedy")]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(folder),
           "--cores", "2", "--resources=gpu=1", "--", *targets]
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


def phase_throughput(s: dict, work: Path, pol, report: dict) -> dict:
    images = random_images(s["images"], s["preset"])
    steps, rows, notes = s["throughput_steps"], {}, {}
    per_second = lambda seconds: round(steps * s["batch"] / seconds, 2)  # noqa: E731
    reference_train(images, s["preset"], s["throughput_warmup"], s["batch"], pol)  # warm-up, untimed
    ours_train(images, {**s}, s["throughput_warmup"], pol, work / "warm")
    rows["train_reference"] = per_second(reference_train(images, s["preset"], steps, s["batch"], pol))
    rows["train_ouroboros"] = per_second(ours_train(images, s, steps, pol, work / "ours"))
    contiguous = dataclasses.replace(pol, channels_last=False)
    rows["train_ouroboros_contiguous"] = per_second(ours_train(images, s, steps, contiguous, work / "contiguous"))
    unet = models.load(work / "ours")
    count, batch = s["sample_count"], s["sample_batches"][0]
    reference_sample(unet, min(batch, count), 2, batch, pol)  # warm-up
    rows["sample_reference_image_steps"] = round(count * s["inference_steps"] / reference_sample(
        unet, count, s["inference_steps"], batch, pol), 1)
    seconds, _ = timed(lambda: sample.sample(unet, train.scheduler(), 0, count, seed=0, batch_size=batch,
                                             inference_steps=s["inference_steps"], progress=False, policy=pol))
    rows["sample_ouroboros_image_steps"] = round(count * s["inference_steps"] / seconds, 1)
    result = {"images_per_second": rows, "precision": {"train": pol.train_precision, "sample": pol.sample_precision},
              "timed_span": "the step loop alone, for both (model built and data on the device before; save after)",
              "train_ratio": round(rows["train_ouroboros"] / rows["train_reference"], 3),
              "sample_ratio": round(rows["sample_ouroboros_image_steps"] / rows["sample_reference_image_steps"], 3),
              "channels_last_speedup": round(rows["train_ouroboros"] / rows["train_ouroboros_contiguous"], 3)}
    report["phases"]["throughput"] = {"status": "running", **result}  # kept if compile fails below
    try:  # torch.compile last: a failure here loses nothing measured above
        compiled = dataclasses.replace(pol, compile=True)
        ours_train(images, s, s["throughput_warmup"], compiled, work / "warm-compiled")
        rows["train_ouroboros_compiled"] = per_second(ours_train(images, s, steps, compiled, work / "compiled"))
        result["train_ratio_compiled"] = round(rows["train_ouroboros_compiled"] / rows["train_reference"], 3)
    except Exception as exc:  # noqa: BLE001 - recorded, not raised
        notes["compile_error"] = f"{exc.__class__.__name__}: {str(exc)[:1500]}"
    return result | notes


def phase_projection(s: dict, work: Path, pol, report: dict) -> dict:
    phases = report["phases"]
    rates = phases.get("throughput", {}).get("images_per_second", {})
    extractors = phases.get("features", {}).get("extractors", {})
    train_rate = max(rates.get("train_ouroboros", 0), rates.get("train_ouroboros_compiled", 0),
                     rates.get("train_ouroboros_contiguous", 0))
    sample_rate = rates.get("sample_ouroboros_image_steps", 0)
    if not train_rate or not sample_rate:
        raise RuntimeError("no training or sampling rate measured (the throughput phase failed or was skipped)")
    cifar = cifar_entry()
    used = {"dinov2": True, "inception": cifar.get("fid_features") == "inception", "dinov2-fd": bool(cifar.get("fd_dinov2")),
            "inception-torchvision": bool(cifar.get("torchvision_inception_weights"))}
    feature_hours = {name: round(FIG3_FEATURE_IMAGES / extractors[name]["images_per_second"] / 3600, 3)
                     for name, on in used.items() if on and name in extractors}
    hours = {"train": round(FIG3_TRAIN_IMAGES / train_rate / 3600, 2), "sample": round(FIG3_SAMPLE_STEPS / sample_rate / 3600, 2),
             "features": round(sum(feature_hours.values()), 2)}
    return {"fig3_device_hours": round(sum(hours.values()), 2), "parts": hours, "features_by_extractor": feature_hours,
            "extractors_used": [n for n, on in used.items() if on], "tiny": s["preset"] != "cifar-paper"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--tiny", action="store_true", help="CPU-sized arguments for every phase")
    ap.add_argument("--only", default="", help=f"comma-separated phases of {', '.join(PHASES)}")
    ap.add_argument("--skip", default="", help="comma-separated phases not to run")
    ap.add_argument("--fail", default="", help="make this phase fail on purpose (tests the recording)")
    ap.add_argument("--child-train", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_train:
        child_train(Path(args.child_train), json.loads(args.sizes))
        return 0
    only = [p for p in args.only.split(",") if p]
    skip = [p for p in args.skip.split(",") if p]
    for name in [*only, *skip, *([args.fail] if args.fail else [])]:
        if name not in PHASES:
            ap.error(f"unknown phase {name!r}; phases: {', '.join(PHASES)}")
    s = sizes(args.tiny)
    pol = device_policy.resolve()
    pol.apply_backends()
    out = Path(args.out)
    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
              "policy": pol.record(), "sizes": s, "phases": {}}
    print(pol.describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        for name in PHASES:
            if (only and name not in only) or name in skip:
                report["phases"][name] = {"status": "skipped"}
                write(out, report)
                continue
            started = time.perf_counter()
            try:
                if name == args.fail:
                    raise RuntimeError(f"--fail {name}: this phase was made to fail")
                run = {"resume": lambda: phase_resume(s, work, pol), "sample": lambda: phase_sample(s, work, pol),
                       "features": lambda: phase_features(s, work, pol, args.tiny),
                       "select": lambda: phase_select(s, work, pol), "loop": lambda: phase_loop(s, work, pol, args.tiny),
                       "throughput": lambda: phase_throughput(s, work, pol, report),
                       "projection": lambda: phase_projection(s, work, pol, report)}[name]
                entry = {"status": "ok", **run()}
            except Exception:  # noqa: BLE001 - a failing phase is recorded and the next one runs
                entry = {"status": "failed", "error": traceback.format_exc()[-3000:]}
            entry["seconds"] = round(time.perf_counter() - started, 1)
            report["phases"][name] = entry
            write(out, report)
            print(f"{name:12s} {entry['status']:8s} {entry['seconds']:8.1f} s", flush=True)
    failed = [n for n, e in report["phases"].items() if e["status"] == "failed"]
    print(f"wrote {out}; failed phases: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
