"""The flow-matching generator: the DDPM's UNet presets trained with conditional flow matching on
straight paths, sampled by a deterministic ODE solver (``generator: flow`` beside ``model: micro8``).

Training (Lipman et al. 2023, Liu et al. 2023): x_t = (1 − t)·x_0 + t·ε with ε ~ N(0, I), and the
network regresses the path's velocity ε − x_0 from (x_t, t). This is the convention of diffusers'
``FlowMatchEulerDiscreteScheduler`` (σ = t, "flow" prediction = noise − sample), whose config is
saved beside the UNet. The UNet sees the time as t·1000, the DDPM's timestep scale, so the same
presets and time embeddings serve both families.

``time_sampling``: ``uniform`` (t ~ U(0, 1), the plain CFM objective; default) or ``logit-normal``
(t = sigmoid(n), n ~ N(0, 1), as Stable Diffusion 3 trains: more weight on the middle of the path,
where the velocity is hardest to predict).

Sampling integrates dx/dt = v(x, t) from t = 1 (noise) to t = 0 in ``inference_steps`` equal steps:
``euler`` (one network evaluation a step) or ``heun`` (Heun's second-order method: two a step, error
O(h²) instead of O(h), so about half the steps for the same accuracy). The only randomness is image
i's initial noise, drawn from its own seed (ouroboros.sample.noise_stream): the same initial noise
gives the same sample, and a sample does not depend on the batch size. A class-conditional model
is guided as the DDPM is: v = v_∅ + w (v_y − v_∅).

Everything a DDPM job has comes from the same code: the device policy, in-job checkpoints with
exact resume and the finite-or-fail checks (ouroboros.train with this module's objective), per-image
seeds, and the diffusers layout of the saved model (unet/, scheduler/), with a generator.json that
says ``flow``: the DDPM's loader refuses the directory, and this one refuses a DDPM's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ouroboros import models
from ouroboros.errors import OuroborosError
from ouroboros.generators import MODEL_FILE, check_written_by, register
from ouroboros.selectors import Param

NAME = "flow"
TIME_SAMPLING = ("uniform", "logit-normal")
SOLVERS = ("euler", "heun")
DEFAULTS = {"time_sampling": TIME_SAMPLING[0], "solver": SOLVERS[0]}  # the plain objective, one evaluation a step
EVALS_PER_STEP = {"euler": 1, "heun": 2}  # network evaluations per ODE step (the cost model's)
TIME_SCALE = 1000.0  # t ∈ [0, 1] enters the UNet as t · 1000, the DDPM's timestep range


def schedule():
    """The scheduler config saved beside the UNet (diffusers' flow-matching convention, no shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=int(TIME_SCALE), shift=1.0)


def path_sample(x0, noise, t):
    """x_t = (1 − t)·x_0 + t·ε and the velocity target ε − x_0, for per-item times ``t``."""
    tt = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise, noise - x0


def draw_times(count: int, time_sampling: str, gen, device):
    import torch

    if time_sampling == "uniform":
        return torch.rand(count, generator=gen, device=device)
    return torch.sigmoid(torch.randn(count, generator=gen, device=device))


def objective(time_sampling: str = DEFAULTS["time_sampling"], params: dict | None = None):
    """ouroboros.train's Objective of flow matching with this time distribution; the saved model
    records ``params`` (time_sampling, solver) in its generator.json."""
    import torch

    from ouroboros.train import Objective

    if time_sampling not in TIME_SAMPLING:
        raise OuroborosError(f"flow: time_sampling {time_sampling!r}; choose one of {', '.join(TIME_SAMPLING)}")

    def draw(_schedule, x0, gen, device):
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = draw_times(len(x0), time_sampling, gen, device)
        x_t, target = path_sample(x0, noise, t)
        return x_t, t * TIME_SCALE, target

    def save_model(unet, flow_schedule, folder):
        save(unet, flow_schedule, folder, params)

    return Objective(NAME, schedule, draw, save_model)


def save(unet, flow_schedule, folder: Path, params: dict | None = None) -> None:
    """unet/ and scheduler/ as diffusers lays them out, and generator.json naming this generator.
    No model_index.json: diffusers has no unconditional flow pipeline to open it with, and naming
    DDPMPipeline would sample the velocity as if it were ε."""
    unet.save_pretrained(folder / models.UNET, safe_serialization=True)
    flow_schedule.save_pretrained(folder / models.SCHEDULER)
    (folder / MODEL_FILE).write_text(json.dumps({"generator": NAME, "params": dict(params or {})}) + "\n")


def load(model_dir):
    """(UNet, params) of a flow model directory; any other generator's directory is refused."""
    check_written_by(model_dir, NAME)
    meta = json.loads((Path(model_dir) / MODEL_FILE).read_text())
    return models.load(model_dir), dict(meta.get("params") or {})


def _save(model, out_dir) -> None:
    from ouroboros.io import atomic_dir

    unet, params = model
    with atomic_dir(out_dir) as tmp:
        save(unet, schedule(), tmp, params)


def sample(model, start: int, count: int, *, seed: int, inference_steps: int = 50, batch_size: int = 256,
           guidance_scale: float = 1.0, policy=None, source: str = "the model", progress: bool = False,
           solver: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images start … start+count−1 (uint8 NHWC) and their classes (-1 unconditional), by the ODE
    solver the model was trained for (``solver`` overrides it)."""
    import torch
    from tqdm import tqdm

    from ouroboros import policy as device_policy
    from ouroboros.sample import finite_images, labels_for, noise_stream, stacked

    unet, params = model
    solver = solver or params.get("solver", DEFAULTS["solver"])
    if solver not in SOLVERS:
        raise OuroborosError(f"{source}: flow solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if policy is None:
        policy = device_policy.resolve()
    unet = policy.place(unet).to(memory_format=policy.memory_format())
    device = policy.torch_device()
    null = models.null_label(unet)
    labels = labels_for(start, count, null)
    guided = null is not None and guidance_scale != 1.0
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    times = torch.linspace(1.0, 0.0, inference_steps + 1).tolist()
    out = []
    bar = tqdm(total=count * inference_steps, desc="sample", unit="image-step", disable=not progress, mininterval=5)
    for first in range(start, start + count, batch_size):
        ids = range(first, min(first + batch_size, start + count))
        x = noise_stream(policy, seed, ids, shape)()  # x at t = 1: image i's own noise
        y = None if null is None else torch.from_numpy(labels[first - start : first - start + len(ids)]).to(device)
        if guided:
            y = torch.cat([y, torch.full_like(y, null)])
        with torch.inference_mode():
            finite = torch.ones((), dtype=torch.bool, device=device)

            def velocity(x, t, y=y):
                timestep = torch.full((len(x) * (2 if guided else 1),), t * TIME_SCALE, device=device)
                with policy.autocast(policy.sample_precision):
                    v = unet(torch.cat([x, x]) if guided else x, timestep, class_labels=y).sample.float()
                if guided:
                    cond, uncond = v.chunk(2)
                    v = uncond + guidance_scale * (cond - uncond)
                return v

            for t, t_next in zip(times[:-1], times[1:], strict=True):
                h = t_next - t  # negative: from noise towards data
                v = velocity(x, t)
                finite = finite & torch.isfinite(v).all()
                if solver == "heun":
                    v_next = velocity(x + h * v, t_next)
                    finite = finite & torch.isfinite(v_next).all()
                    v = 0.5 * (v + v_next)
                x = x + h * v
                bar.update(len(ids))
        out.append(finite_images(finite, x, ids, policy, source))
    bar.close()
    return stacked(out, shape), labels


@register(NAME, load=load, save=_save, sample=sample, gpu=True, kinds=("images",), conditional=True, fine_tunes=True,
          unet=True, params={
              "time_sampling": Param((str,), default=DEFAULTS["time_sampling"], check=lambda v: v in TIME_SAMPLING,
                                     rule=" or ".join(TIME_SAMPLING), help="how training draws t on the path"),
              "solver": Param((str,), default=DEFAULTS["solver"], check=lambda v: v in SOLVERS, rule=" or ".join(SOLVERS),
                              help="the sampler's ODE solver (heun: two network evaluations a step)"),
          })
def fit(data, labels, out_dir, *, params: dict, seed: int, preset: str | None = None, classes: int | None = None,
        stats_out=None, checkpoint_dir=None, init_from=None, label: str = "training", tensorboard_dir=None,
        **_) -> dict:
    """Flow matching on straight paths (a UNet preset, the velocity ε − x_0), sampled by an ODE solver."""
    from dataclasses import fields

    from ouroboros.config import TrainConfig
    from ouroboros.train import train

    if preset is None:
        raise OuroborosError("the flow generator needs a UNet preset: model: one of " + ", ".join(sorted(models.PRESETS)))
    keys = {f.name for f in fields(TrainConfig)}
    own = {**DEFAULTS, **{k: v for k, v in params.items() if k not in keys}}
    summary = train(data, preset, TrainConfig(**{k: v for k, v in params.items() if k in keys}), seed=seed,
                    out_dir=out_dir, stats_path=stats_out, labels=labels, classes=classes, checkpoint_dir=checkpoint_dir,
                    init_from=init_from, label=label, tensorboard_dir=tensorboard_dir,
                    objective=objective(own["time_sampling"], own))
    return summary | {"flow": own}
