"""In-job training checkpoints: a killed or pre-empted job resumes where it stopped.

A checkpoint is a directory written atomically (temporary sibling, then rename) holding the
model and AdamW state as safetensors (never a pickle), the next step and the loss log so far.
Its fingerprint (preset, options, seed, the training images) must match the job's, so a changed
config never resumes from a stale state. Because every step's randomness depends only on
(seed, step), a resumed run ends with the same weights as an uninterrupted one, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ouroboros.io import atomic_dir
from ouroboros.runtime import pause_point


def fingerprint(preset: str, options: dict, seed: int, images: np.ndarray, labels: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"preset": preset, "options": options, "seed": seed, "shape": images.shape}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def save(path: str | os.PathLike, unet, opt, next_step: int, fp: str, stats_text: str, ema=None, scaler=None) -> None:
    """``ema``: the list of EMA tensors, one per parameter in ``unet.parameters()`` order;
    ``scaler``: fp16's GradScaler, whose loss scale and growth counter a resume continues from."""
    from safetensors.torch import save_file

    state = opt.state_dict()
    with atomic_dir(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()}, str(tmp / "model.safetensors"))
        pause_point("checkpoint")  # the kill tests stop a job here, its checkpoint half written
        tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, s in state["state"].items() for k, v in s.items()}
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        if ema is not None:
            save_file({str(i): e.detach().cpu().contiguous() for i, e in enumerate(ema)}, str(tmp / "ema.safetensors"))
        (tmp / "stats.jsonl").write_text(stats_text)
        scale = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        (tmp / "state.json").write_text(json.dumps({"next_step": next_step, "fingerprint": fp,
                                                    "param_groups": state["param_groups"], "scaler": scale}))


def load(path: str | os.PathLike, unet, opt, fp: str, log=print, ema=None, scaler=None) -> tuple[int, str] | None:
    """Restore model, optimizer (and the EMA tensors and the GradScaler in place); returns (next
    step, loss log so far), or None to start over.

    The optimizer's moments are restored in their parameter's memory layout, not only its dtype
    and device: ``load_state_dict`` keeps the contiguous tensors the file holds, and the fused
    AdamW walks a channels-last parameter and its contiguous moments element by element in
    memory order, so every moment would update the wrong weight."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        return None
    # read and check everything before touching the model, so "starting over" starts from the
    # untouched fresh initialisation
    try:
        state = json.loads((path / "state.json").read_text())
        if state["fingerprint"] != fp:
            log(f"{path}: checkpoint of another configuration or training set; starting over")
            return None
        weights = load_file(str(path / "model.safetensors"))
        flat = load_file(str(path / "optimizer.safetensors"))
        saved_ema = load_file(str(path / "ema.safetensors")) if ema is not None else {}
        stats = (path / "stats.jsonl").read_text()
        own = unet.state_dict()
        if set(weights) != set(own) or any(weights[k].shape != own[k].shape for k in own):
            raise ValueError("model tensors do not match the model")
        if ema is not None and [saved_ema[str(i)].shape for i in range(len(ema))] != [e.shape for e in ema]:
            raise ValueError("EMA tensors do not match the model")
    except Exception as exc:  # a damaged checkpoint costs time, never correctness
        log(f"{path}: unreadable checkpoint ({exc}); starting over")
        return None
    device = next(unet.parameters()).device
    unet.load_state_dict({k: v.to(device) for k, v in weights.items()})
    per_param: dict[int, dict] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    relayout(opt)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    for i, e in enumerate(ema or []):
        e.copy_(saved_ema[str(i)])
    log(f"resuming from {path} at step {state['next_step']}")
    return int(state["next_step"]), stats


def relayout(opt) -> None:
    """Every per-parameter state tensor of ``opt`` shaped like its parameter (AdamW's moments)
    re-laid in that parameter's memory format and device, values unchanged."""
    import torch

    for group in opt.param_groups:
        for p in group["params"]:
            for name, value in opt.state.get(p, {}).items():
                if getattr(value, "shape", None) == p.shape and value.dim() > 0:
                    same = torch.empty_like(p, dtype=value.dtype, memory_format=torch.preserve_format)
                    opt.state[p][name] = same.copy_(value)
