"""Train one DDPM (diffusers UNet2DModel + DDPMScheduler) on D_n.

The random stream of step s (its batch, timesteps and noise) depends only on (seed, s): the data
order is a seeded permutation per epoch and the noise comes from a generator seeded per step. A
run is therefore reproducible bit for bit on CPU, and independent of how it was scheduled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ouroboros import models, seeds
from ouroboros.config import TrainConfig
from ouroboros.data import to_model
from ouroboros.io import atomic_dir, remove_temporaries

NUM_TRAIN_TIMESTEPS = 1000
PREEMPTED = 128 + 15  # a pre-empted training's exit status: a process ended by SIGTERM, as shells report it


def scheduler():
    """The DDPM noise schedule of the paper (diffusers' defaults: 1000 linear steps, ε-prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear", prediction_type="epsilon")


@dataclass(frozen=True)
class Objective:
    """What a training step regresses, and how the trained UNet is saved: the DDPM's ε (default) or
    another family's target (ouroboros.flow: the velocity of a straight path).

    ``draw(schedule, x0, gen, device) -> (x_t, timesteps, target)`` draws the step's randomness from
    ``gen`` only (the step's own generator), so a resumed run draws the same; the label dropout of
    a conditional model draws from ``gen`` after it."""
    name: str
    schedule: Callable[[], Any]
    draw: Callable[..., tuple]
    save: Callable[[Any, Any, Path], None]


def _ddpm_draw(noise_schedule, x0, gen, device):
    import torch

    noise = torch.randn(x0.shape, generator=gen, device=device)
    t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (len(x0),), generator=gen, device=device)
    return noise_schedule.add_noise(x0, noise, t), t, noise


DDPM = Objective("ddpm", scheduler, _ddpm_draw, lambda unet, schedule, folder: models.save(unet, schedule, folder))


def epoch_order(count: int, epoch: int, seed: int) -> np.ndarray:
    """The seeded permutation that is epoch ``epoch``'s data order."""
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, 1, epoch]).permutation(count)


def batch_indices(count: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of step ``step``'s batch: consecutive slices of a stream of per-epoch permutations."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), count)
        out.extend(epoch_order(count, epoch, seed)[offset : offset + batch_size - len(out)].tolist())
    return np.asarray(out, dtype=np.int64)


class DeviceBatches:
    """``batch_indices`` as device tensors, each epoch's order copied to the device once: a
    host-to-device copy per step would make the host wait for the GPU every step."""

    def __init__(self, count: int, batch_size: int, seed: int, device):
        self.count, self.batch_size, self.seed, self.device = count, batch_size, seed, device
        self.orders: dict[int, object] = {}

    def _order(self, epoch: int):
        import torch

        if epoch not in self.orders:
            self.orders = {e: o for e, o in self.orders.items() if e >= epoch - 1}
            self.orders[epoch] = torch.from_numpy(epoch_order(self.count, epoch, self.seed)).to(self.device)
        return self.orders[epoch]

    def __call__(self, step: int):
        import torch

        start, parts, have = step * self.batch_size, [], 0
        while have < self.batch_size:
            epoch, offset = divmod(start + have, self.count)
            part = self._order(epoch)[offset : offset + self.batch_size - have]
            parts.append(part)
            have += len(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 0 (diffusers' get_scheduler('cosine'))."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# EMA as diffusers' train_unconditional example sets it up (EMAModel with warm-up)
EMA_INV_GAMMA, EMA_POWER, EMA_MAX_DECAY = 1.0, 0.75, 0.9999


def ema_decay(optimization_step: int) -> float:
    """The EMA decay after optimizer step ``optimization_step`` (1-based): diffusers' EMAModel
    warm-up 1 − (1 + s/γ)^−p with s = step − 1, capped at 0.9999; 0 at the first step, so the
    average starts at the weights."""
    s = optimization_step - 1
    if s <= 0:
        return 0.0
    return min(1.0 - (1.0 + s / EMA_INV_GAMMA) ** -EMA_POWER, EMA_MAX_DECAY)


def train(
    images: np.ndarray,
    preset: str,
    cfg: TrainConfig,
    *,
    seed: int,
    out_dir: str | os.PathLike,
    labels: np.ndarray | None = None,
    classes: int | None = None,
    stats_path: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_seconds: float | None = None,
    init_from: str | os.PathLike | None = None,
    policy=None,
    label: str = "training",
    objective: Objective = DDPM,
    tensorboard_dir: str | os.PathLike | None = None,
) -> dict:
    """Train on uint8 NHWC images and save the model to ``out_dir`` (atomically, as a directory).

    With ``classes``, the model is class-conditional on ``labels`` (0 … classes-1), and each
    label is replaced by the null label with probability ``cfg.label_dropout`` so that one network
    learns both scores classifier-free guidance combines.

    With ``checkpoint_dir``, the state is saved there every ``checkpoint_seconds`` (default:
    the config's ``checkpoint_minutes``) and a later
    call with the same inputs resumes from it (see ouroboros.checkpoint); it is removed at the end.
    A SIGTERM (pre-emption) stops training after the step under way, a checkpoint being written then
    finished first: the state is checkpointed and the job exits with status ``PREEMPTED``.

    With ``init_from`` (a saved model directory: iteration n − 1's, ``init: previous``), training
    starts from its weights instead of the seeded initialisation; the optimizer starts afresh.

    Everything that differs by device (autocast precision with a GradScaler for fp16, memory
    format, fused AdamW, TF32/cuDNN, torch.compile, how often the loss is read back) comes from
    the job's device policy (``policy``, default :func:`ouroboros.policy.resolve` of the config's
    ``mixed_precision`` and ``compile``); it is logged and written into training.json.

    With ``tensorboard_dir`` (config.yaml ``tracking: tensorboard``), every logged step's loss,
    learning rate and gradient norm also go to TensorBoard event files there.

    Each read-back checks the losses: a non-finite one (or a non-finite gradient norm, except in
    fp16, where the GradScaler skips such steps) stops training with an error naming the step and
    ``label`` (dataset and run), before any checkpoint would store the broken state: the last
    good checkpoint stays for a resume with another precision or learning rate.
    """
    import torch
    from tqdm import tqdm

    from ouroboros import checkpoint
    from ouroboros import policy as device_policy
    from ouroboros.runtime import fault_point, pause_point, preempted, preemptible

    if policy is None:
        policy = device_policy.resolve(train_precision=cfg.mixed_precision, compile=cfg.compile)
    policy.apply_backends()
    print(policy.describe())
    device = policy.torch_device()
    total = cfg.total_steps(len(images))
    if classes:
        labels = _checked_labels(labels, len(images), classes)
    torch.manual_seed(seeds.per_item(seed, [0])[0])
    unet = models.build(preset, classes)
    if init_from is not None:
        _load_weights(unet, init_from)
    fmt = policy.memory_format()
    unet = unet.to(device).to(memory_format=fmt)
    null = models.null_label(unet)
    forward = torch.compile(unet, backend=policy.compile_backend) if policy.compile else unet
    noise_schedule = objective.schedule()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, betas=(0.95, 0.999), weight_decay=cfg.weight_decay, eps=1e-8,
                            **({"fused": True} if policy.fused_adamw else {}))
    scaler = policy.grad_scaler()
    params = list(unet.parameters())
    ema = [p.detach().clone().float() for p in params] if cfg.ema else None
    data = to_model(images).to(device).contiguous(memory_format=fmt)
    batches = DeviceBatches(len(data), cfg.batch_size, seed, device)
    y_all = torch.from_numpy(labels).to(device) if classes else None

    if checkpoint_seconds is None:
        checkpoint_seconds = 60.0 * cfg.checkpoint_minutes
    # what the weights depend on: everything but how often they are saved
    options = {k: v for k, v in cfg.__dict__.items() if k != "checkpoint_minutes"}
    if init_from is not None:
        options["init_from"] = str(init_from)
    if objective is not DDPM:  # a DDPM's fingerprint stays what it was: its checkpoints still resume
        options["objective"] = objective.name
    # the policy changes the arithmetic (precision, fused kernels): a checkpoint of another policy
    # would resume into different weights; how often the loss is read back does not
    arithmetic = {k: v for k, v in policy.record().items() if k not in ("log_every", "pin_memory", "forced")}
    fp = checkpoint.fingerprint(preset, {**options, "classes": classes, "policy": arithmetic}, seed, images,
                                labels) if checkpoint_dir else ""
    resumed = checkpoint.load(checkpoint_dir, unet, opt, fp, ema=ema, scaler=scaler) if checkpoint_dir else None
    first_step, stats_text = resumed if resumed else (0, "")
    saved_at = first_step if resumed else None  # the step the newest checkpoint on disk resumes at
    stats_lines = stats_text.splitlines(keepends=True)
    losses = [json.loads(line)["loss"] for line in stats_lines]
    pending: list[tuple] = []  # (step, loss, lr, grad norm, seconds) not yet read back from the device
    board = tensorboard_writer(tensorboard_dir)

    with open(stats_path, "w") if stats_path else contextlib.nullcontext() as stats, preemptible():
        if stats:
            stats.write(stats_text)
        started = last_checkpoint = time.time()
        bar = tqdm(range(first_step, total), desc="train", mininterval=5, disable=not progress, initial=first_step, total=total)

        def flush() -> None:
            """Read the pending losses back (one host sync) and append them to the log."""
            if not pending:
                return
            values = torch.stack([torch.stack([p[1].float(), p[3].float()]) for p in pending]).tolist()
            _check_finite(pending, values, label, fp16=scaler.is_enabled(), checkpoint_dir=checkpoint_dir,
                          saved_at=saved_at)
            for (step, _, lr, _, seconds), (loss, grad_norm) in zip(pending, values, strict=True):
                losses.append(loss)
                line = json.dumps({"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "seconds": seconds}) + "\n"
                stats_lines.append(line)
                if stats:
                    stats.write(line)
                if board is not None:
                    for name, value in (("loss", loss), ("lr", lr), ("grad_norm", grad_norm)):
                        board.add_scalar(f"train/{name}", value, step)
            pending.clear()
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)  # printed at the bar's own pace

        for step in bar:
            lr = cfg.lr * lr_factor(step, cfg.warmup_steps, total)
            for group in opt.param_groups:
                group["lr"] = lr
            gen = torch.Generator(device=device).manual_seed(seeds.per_item(seed, [step + 1])[0])
            batch = batches(step)
            x0 = data[batch]
            x_t, t, target = objective.draw(noise_schedule, x0, gen, device)
            y = None
            if classes:
                drop = torch.rand(len(x0), generator=gen, device=device) < cfg.label_dropout
                y = torch.where(drop, torch.full_like(y_all[batch], null), y_all[batch])
            with policy.autocast(policy.train_precision):
                pred = forward(x_t, t, class_labels=y).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            opt.zero_grad(set_to_none=True)
            # with the scaler disabled (bf16, fp32) scale, unscale_, step and update are the plain
            # backward and step; in fp16 a step whose gradients overflowed is skipped
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema, [p.detach().float() for p in params], 1.0 - ema_decay(step + 1))
            pending.append((step, loss.detach(), lr, grad_norm.detach(), round(time.time() - started, 3)))
            if len(pending) >= policy.log_every:
                flush()
            if checkpoint_dir and time.time() - last_checkpoint >= checkpoint_seconds and step + 1 < total:
                flush()
                checkpoint.save(checkpoint_dir, unet, opt, step + 1, fp, "".join(stats_lines), ema=ema, scaler=scaler)
                saved_at, last_checkpoint = step + 1, time.time()
            if step == total // 2:
                flush()
                fault_point("train")
                pause_point("train")  # the requeue test pre-empts the job here, its checkpoint on disk
            if preempted() and step + 1 < total:  # SIGTERM: checkpoint and stop (after the last step: finish)
                flush()
                if checkpoint_dir and saved_at != step + 1:  # not already written after this step
                    checkpoint.save(checkpoint_dir, unet, opt, step + 1, fp, "".join(stats_lines), ema=ema, scaler=scaler)
                where = f"checkpoint written to {checkpoint_dir}; run again to resume" if checkpoint_dir else "no checkpoint"
                print(f"{label}: pre-empted (SIGTERM) after step {step + 1} of {total}: {where}", flush=True)
                raise SystemExit(PREEMPTED)
        flush()
    if board is not None:
        board.close()

    if ema is not None:  # the saved model is the average, as in diffusers' example
        with torch.no_grad():
            for p, e in zip(params, ema, strict=True):
                p.copy_(e.to(p.dtype))
    summary = {
        "generator": objective.name,
        "preset": preset,
        "classes": classes,
        "steps": total,
        "train_size": int(len(images)),
        "final_loss_mean_last_50": float(np.mean(losses[-50:])) if losses else None,
        "seconds": round(time.time() - started, 1),
        "device": str(device),
        "policy": policy.record(),
        "options": cfg.__dict__,
        "seed": seed,
        "init_from": str(init_from) if init_from is not None else None,
    }
    save_model(unet.to(memory_format=torch.contiguous_format), noise_schedule, out_dir, summary, objective.save)
    if checkpoint_dir:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        remove_temporaries(checkpoint_dir)
    return summary


TRACKING = ("none", "tensorboard")  # config.yaml's tracking (the first is its default): where training also logs its steps


def tensorboard_writer(folder: str | os.PathLike | None):
    """A TensorBoard SummaryWriter into ``folder`` (None: no tracking). Event files append: a resumed
    training writes its later steps beside the earlier ones, and TensorBoard shows one curve."""
    if folder is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        from ouroboros.errors import OuroborosError

        raise OuroborosError("config.yaml: tracking: tensorboard needs the tensorboard package: pip install -e '.[watch]' "
                             "(or pip install tensorboard), or set tracking: none") from exc
    return SummaryWriter(log_dir=str(folder))


def _load_weights(unet, model_dir: str | os.PathLike) -> None:
    """Copy a saved model's weights into ``unet``; a model of another preset or class count fails
    naming both (fine-tuning needs the same architecture)."""
    from ouroboros.errors import OuroborosError

    try:  # a local directory, never the hub: a missing model must not wait on retries offline
        previous = models.load(model_dir)
    except OuroborosError as exc:
        raise OuroborosError(f"no saved model to fine-tune from: {exc}; re-run the previous iteration's train step") from exc
    try:
        unet.load_state_dict(previous.state_dict())
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise OuroborosError(f"{model_dir}: cannot fine-tune from this model: its architecture differs from "
                             f"this dataset's model preset ({detail[:300]})") from exc


def _check_finite(pending: list[tuple], values: list[list[float]], label: str, *, fp16: bool,
                  checkpoint_dir: str | os.PathLike | None = None, saved_at: int | None = None) -> None:
    """Fail on the first step whose loss (or, outside fp16, gradient norm) is not finite. In fp16
    an infinite gradient norm is the GradScaler's overflow signal: that step was skipped.

    The message says what each remedy costs, truthfully: training is deterministic, so the same
    settings fail at the same step again (after resuming from the kept checkpoint); a changed lr or
    precision changes the checkpoint's fingerprint, so training starts over at step 0."""
    from ouroboros.errors import OuroborosError

    for (step, *_), (loss, grad_norm) in zip(pending, values, strict=True):
        if not math.isfinite(loss) or (not fp16 and not math.isfinite(grad_norm)):
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
            if saved_at:
                kept = (f"The last good checkpoint ({checkpoint_dir}, resuming at step {saved_at}) is kept; "
                        "no later one was written.")
                rerun = f"resumes at step {saved_at} and fails again at step {step}"
                restart = f"the {saved_at} steps of that checkpoint are not reused"
            else:
                kept = "No checkpoint had been written yet."
                rerun = f"fails again at step {step}"
                restart = f"the {step} steps done are lost"
            raise OuroborosError(
                f"{label}: {what} at step {step}; training stopped. {kept} What each remedy costs: running the "
                f"target again with the same settings {rerun} (training is deterministic); lowering train.lr or "
                "changing train.mixed_precision (no = fp32, or bf16) changes the checkpoint's fingerprint, so training "
                f"restarts at step 0 and {restart}")


def _checked_labels(labels: np.ndarray | None, count: int, classes: int) -> np.ndarray:
    from ouroboros.errors import OuroborosError

    if labels is None or len(labels) != count:
        raise OuroborosError(f"a class-conditional model needs one label per training image ({count}); "
                             f"got {None if labels is None else len(labels)}")
    labels = np.asarray(labels, dtype=np.int64)
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        raise OuroborosError(
            f"training label {int(labels[bad][0])} outside 0…{classes - 1} (datasets.<name>.classes = {classes}); "
            "samples of an unconditional model carry label -1 and cannot train a conditional one"
        )
    return labels


def save_model(unet, noise_schedule, out_dir: str | os.PathLike, summary: dict,
               save: Callable[[Any, Any, Path], None] = DDPM.save) -> None:
    """DDPMPipeline's layout (models.save) in a temporary sibling, then renamed: the directory appears
    complete or not at all."""
    with atomic_dir(out_dir) as tmp:
        save(unet, noise_schedule, tmp)
        (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")


def stage(manifest_path: str, model: str, options: dict, *, seed: int, model_out: str, stats_out: str,
          classes: int | None = None, checkpoint_dir: str | None = None, init_from: str | None = None,
          real: str | None = None, labelled: bool = False, tensorboard_dir: str | None = None) -> dict:
    """Fit the generator ``model`` names (a DDPM preset, or a registered generator) on the items
    a manifest names (D_n); ``options`` are its train keys (DDPM) or its ``model_params``.
    ``labelled``: load D_n's labels for a generator whose samples carry them (kde); ``real``: D_1,
    for a parameter measured on it (bandwidth: auto)."""
    from ouroboros import generators, manifest
    from ouroboros.io import load_data, load_labels, save_text
    from ouroboros.paths import labels_of

    generator, preset = generators.resolve(model)
    rows = manifest.read(manifest_path)
    data = manifest.gather(rows, load_data)
    # a conditional model's labels sit beside each image file (real/labels.npy, iterNN/labels.npy)
    labels = manifest.gather(rows, load_labels, rename=labels_of) if classes or labelled else None
    print(f"training {model} on {len(data)} items from {manifest_path}"
          + (f", conditional on {classes} classes" if classes else "")
          + (f", fine-tuning {init_from}" if init_from else ""))
    summary = generator.fit(data, labels, model_out, params=options, seed=seed, preset=preset, classes=classes,
                            stats_out=stats_out, checkpoint_dir=checkpoint_dir, init_from=init_from,
                            label=_label(model_out), real=load_data(real) if real else None,
                            tensorboard_dir=tensorboard_dir)
    if not (generator.name == "ddpm" or generator.unet):  # one line of statistics: a closed-form fit has no steps
        save_text(stats_out, json.dumps(summary) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


def _label(model_out: str) -> str:
    """"dataset cifar, run greedy, iteration 8 (results/cifar/greedy/iter08/model)" from the model's
    path; the path alone where it is not one of the workflow's."""
    parts = os.path.normpath(model_out).split(os.sep)
    if len(parts) >= 4 and parts[-1] == "model" and parts[-2].startswith("iter") and parts[-2][4:].isdigit():
        dataset, run, it = parts[-4], parts[-3], int(parts[-2][4:])
        return f"dataset {dataset}, run {run}, iteration {it} ({model_out})"
    return model_out
