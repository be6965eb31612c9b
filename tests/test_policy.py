"""The device policy: every GPU branch run on the CPU by forcing the GPU policy, the checkpoint that
restores AdamW's moments in their parameter's layout, finite-or-fail, and the counter-based noise."""

import json

import numpy as np
import pytest
import torch

from ouroboros import checkpoint, data, models, noise, policy, sample, seeds, train
from ouroboros.config import TrainConfig
from ouroboros.errors import OuroborosError


def forced(precision: str = "bf16", **kw) -> policy.Policy:
    """The GPU policy on this CPU machine (as OUROBOROS_POLICY=gpu makes it for a workflow run)."""
    return policy.resolve(train_precision=precision, kind="gpu", cuda=False, **kw)


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", None, 48, seed=0, dataset="digits")


# --- the policy itself -----------------------------------------------------------------------------

def test_the_cpu_policy_is_fp32_contiguous_and_host_noise():
    p = policy.resolve(kind="auto", cuda=False)
    assert (p.kind, p.device, p.train_precision, p.sample_precision) == ("cpu", "cpu", "no", "no")
    assert not (p.channels_last or p.fused_adamw or p.compile or p.grad_scaler().is_enabled())
    assert p.noise == "host" and p.log_every == 1


def test_the_gpu_policy_on_cuda_and_forced_on_the_cpu():
    on_gpu = policy.resolve(train_precision="fp16", kind="auto", cuda=True)
    assert (on_gpu.kind, on_gpu.device, on_gpu.forced, on_gpu.pin_memory) == ("gpu", "cuda", False, True)
    assert on_gpu.fused_adamw and on_gpu.tf32 and on_gpu.cudnn_benchmark and on_gpu.noise == "device"
    p = forced("fp16")
    assert (p.kind, p.device, p.forced, p.pin_memory) == ("gpu", "cpu", True, False)
    assert p.grad_scaler().is_enabled() and not forced("bf16").grad_scaler().is_enabled()
    assert "forced on the CPU" in p.describe() and p.record()["train_precision"] == "fp16"


def test_the_environment_forces_a_policy_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv(policy.ENV, "gpu")
    assert policy.resolve(cuda=False).forced
    monkeypatch.setenv(policy.ENV, "tpu")
    with pytest.raises(OuroborosError, match="OUROBOROS_POLICY='tpu'.*auto, cpu, gpu"):
        policy.resolve(cuda=False)
    with pytest.raises(OuroborosError, match=r"train\.mixed_precision = 'fp8'"):
        policy.resolve(train_precision="fp8", kind="cpu")


# --- the checkpoint: moments in their parameter's layout ---------------------------------------------

def _conv_run(steps: int, restore_after: int | None, tmp_path):
    """A channels-last conv trained with the fused AdamW; optionally saved and restored into a fresh
    module and optimizer (a restarted job) after ``restore_after`` steps."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    start = {k: v.clone() for k, v in conv.state_dict().items()}
    opt = torch.optim.AdamW(conv.parameters(), lr=1e-2, fused=True)
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1)).to(memory_format=torch.channels_last)
    for step in range(steps):
        if step == restore_after:
            checkpoint.save(tmp_path / "ck", conv, opt, step, "fp", "")
            conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
            conv.load_state_dict(start)
            opt = torch.optim.AdamW(conv.parameters(), lr=1e-2, fused=True)
            assert checkpoint.load(tmp_path / "ck", conv, opt, "fp", log=lambda m: None) == (step, "")
        opt.zero_grad()
        conv(x).square().mean().backward()
        opt.step()
    return conv, opt


def test_restored_moments_take_their_parameters_layout(tmp_path, monkeypatch):
    whole, _ = _conv_run(4, None, tmp_path)
    resumed, opt = _conv_run(4, 2, tmp_path)
    weight = resumed.weight
    for name in ("exp_avg", "exp_avg_sq"):
        assert opt.state[weight][name].stride() == weight.stride()  # channels-last, as the weight
    assert torch.equal(whole.weight, resumed.weight) and torch.equal(whole.bias, resumed.bias)
    # without the re-layout (the checkpoint code before it: load_state_dict alone) the fused AdamW
    # pairs contiguous moments with a channels-last weight, element by element in memory order
    monkeypatch.setattr(checkpoint, "relayout", lambda opt: None)
    broken, _ = _conv_run(4, 2, tmp_path)
    assert (broken.weight - whole.weight).abs().max() > 1e-4


# --- train, kill, resume and sample under the forced GPU policy ------------------------------------

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_forced_gpu_policy_trains_resumes_to_the_same_weights_and_samples(digits, tmp_path, monkeypatch, precision):
    """Every branch a GPU job takes (autocast, GradScaler in fp16, channels-last, fused AdamW,
    deferred loss read-back, device noise) runs here; a job killed mid-training resumes to the
    uninterrupted run's weights bit for bit, as on the CPU policy."""
    images, _ = digits
    cfg = TrainConfig(steps=8, batch_size=16, lr=1e-3, warmup_steps=2, weight_decay=0.0, mixed_precision=precision)
    p = forced(precision)
    run = dict(progress=False, policy=p)
    train.train(images, "micro8", cfg, seed=5, out_dir=tmp_path / "whole", stats_path=tmp_path / "whole.jsonl", **run)
    ckpt = tmp_path / "train-checkpoint"
    monkeypatch.setenv("OUROBOROS_FAULT", "train")  # dies after step 4, right after a checkpoint
    with pytest.raises(RuntimeError, match="injected fault"):
        train.train(images, "micro8", cfg, seed=5, out_dir=tmp_path / "cut", stats_path=tmp_path / "cut.jsonl",
                    checkpoint_dir=ckpt, checkpoint_seconds=0, **run)
    state = json.loads((ckpt / "state.json").read_text())
    assert state["next_step"] == 5 and (state["scaler"] is not None) == (precision == "fp16")
    monkeypatch.delenv("OUROBOROS_FAULT")
    train.train(images, "micro8", cfg, seed=5, out_dir=tmp_path / "cut", stats_path=tmp_path / "cut.jsonl",
                checkpoint_dir=ckpt, checkpoint_seconds=3600, **run)
    whole, cut = models.load(tmp_path / "whole").state_dict(), models.load(tmp_path / "cut").state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    losses = lambda f: [json.loads(x)["loss"] for x in f.read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "cut.jsonl") == losses(tmp_path / "whole.jsonl") and len(losses(tmp_path / "cut.jsonl")) == 8
    record = json.loads((tmp_path / "cut" / "training.json").read_text())["policy"]
    assert record["kind"] == "gpu" and record["forced"] and record["train_precision"] == precision
    assert record["channels_last"] and record["fused_adamw"]
    if precision == "bf16":  # the CPU policy (fp32, no fused kernel) gives other weights: the policy is arithmetic
        train.train(images, "micro8", cfg, seed=5, out_dir=tmp_path / "cpu", progress=False,
                    policy=policy.resolve(kind="cpu"))
        cpu = models.load(tmp_path / "cpu").state_dict()
        assert not all(torch.equal(whole[k], cpu[k]) for k in whole)

    unet, sched = models.load(tmp_path / "cut"), train.scheduler()
    draw = lambda start, count, batch: sample.sample(unet, sched, start, count, seed=3, inference_steps=4,  # noqa: E731
                                                     batch_size=batch, progress=False, policy=p)[0]
    whole_set, split, tail = draw(0, 6, 6), draw(0, 6, 4), draw(4, 2, 2)
    assert whole_set.shape == (6, 8, 8, 1) and whole_set.dtype == np.uint8 and whole_set.std() > 0
    # fp16 autocast on the CPU may round a batch's convolutions differently: within one grey level
    assert np.abs(whole_set.astype(int) - split.astype(int)).max() <= 1
    assert np.abs(whole_set[4:].astype(int) - tail.astype(int)).max() <= 1


def test_a_fault_with_the_old_load_code_would_not_resume_to_the_same_weights(digits, tmp_path, monkeypatch):
    """The forced-policy resume above fails with the checkpoint code before the fix (restoring the
    moments with load_state_dict alone): checked here by disabling the re-layout."""
    images, _ = digits
    cfg = TrainConfig(steps=8, batch_size=16, lr=1e-2, warmup_steps=2, weight_decay=0.0)
    p = forced("bf16")
    train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "whole", progress=False, policy=p)
    ckpt = tmp_path / "ck"
    monkeypatch.setenv("OUROBOROS_FAULT", "train")
    with pytest.raises(RuntimeError, match="injected fault"):
        train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "cut", progress=False, policy=p,
                    checkpoint_dir=ckpt, checkpoint_seconds=0)
    monkeypatch.delenv("OUROBOROS_FAULT")
    monkeypatch.setattr(checkpoint, "relayout", lambda opt: None)
    train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "cut", progress=False, policy=p,
                checkpoint_dir=ckpt, checkpoint_seconds=3600)
    whole, cut = models.load(tmp_path / "whole").state_dict(), models.load(tmp_path / "cut").state_dict()
    assert max((whole[k].float() - cut[k].float()).abs().max().item() for k in whole) > 1e-5


# --- finite or fail --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_a_non_finite_loss_stops_training_naming_step_dataset_and_run(digits, tmp_path, monkeypatch, kind):
    images, _ = digits
    cfg = TrainConfig(steps=12, batch_size=16, lr=1e-3, warmup_steps=2, weight_decay=0.0)
    real_mse, calls = torch.nn.functional.mse_loss, []

    def broken(pred, target):  # the loss of step 6 overflows
        calls.append(1)
        loss = real_mse(pred, target)
        return loss * float("nan") if len(calls) == 7 else loss

    monkeypatch.setattr(torch.nn.functional, "mse_loss", broken)
    model = tmp_path / "results/cifar/greedy/iter08/model"
    ckpt = model.with_name("train-checkpoint")
    label = train._label(str(model))
    with pytest.raises(OuroborosError) as err:
        train.train(images, "tiny8", cfg, seed=5, out_dir=model, progress=False, checkpoint_dir=ckpt,
                    checkpoint_seconds=0, label=label, policy=policy.resolve(kind=kind, cuda=False))
    assert "step 6" in str(err.value) and "dataset cifar, run greedy, iteration 8" in str(err.value)
    assert not model.exists()
    # the last good checkpoint stays: saved before step 6 (the GPU policy reads back only at a
    # checkpoint, so its last one is the one before the broken step too)
    kept = json.loads((ckpt / "state.json").read_text())["next_step"]
    assert 1 <= kept <= 6
    # what each remedy costs, with the checkpoint's own step: the same settings resume there and fail
    # again at step 6; another lr or precision is another fingerprint, so step 0
    message = " ".join(str(err.value).split())
    assert f"The last good checkpoint ({ckpt}, resuming at step {kept}) is kept" in message
    assert f"same settings resumes at step {kept} and fails again at step 6 (training is deterministic)" in message
    assert f"restarts at step 0 and the {kept} steps of that checkpoint are not reused" in message

    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_a_non_finite_loss_before_any_checkpoint_says_the_steps_done_are_lost(digits, tmp_path, monkeypatch):
    images, _ = digits
    cfg = TrainConfig(steps=6, batch_size=16, lr=1e-3, warmup_steps=2, weight_decay=0.0)
    real_mse, calls = torch.nn.functional.mse_loss, []

    def broken(pred, target):  # the loss of step 3 is not a number
        calls.append(1)
        loss = real_mse(pred, target)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(torch.nn.functional, "mse_loss", broken)
    with pytest.raises(OuroborosError) as err:
        train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "model", progress=False,
                    policy=policy.resolve(kind="cpu", cuda=False))
    message = " ".join(str(err.value).split())
    assert "No checkpoint had been written yet" in message
    assert "same settings fails again at step 3" in message and "restarts at step 0 and the 3 steps done are lost" in message


def test_non_finite_samples_fail_naming_the_model_and_write_nothing(tmp_path):
    torch.manual_seed(0)
    unet = models.build("tiny8")
    with torch.no_grad():
        for p in unet.parameters():
            p.fill_(float("inf"))
    with pytest.raises(OuroborosError, match=r"results/x/model: non-finite samples in images 0…2"):
        sample.sample(unet, train.scheduler(), 0, 3, seed=1, inference_steps=2, batch_size=4, progress=False,
                      source="results/x/model")


def test_an_infinite_epsilon_fails_before_the_clamp_could_hide_it(tmp_path):
    """x̂_0 is clamped to [-1, 1]: an infinite ε would come out as finite black pixels."""
    torch.manual_seed(0)
    unet = models.build("tiny8")
    unet.register_forward_hook(lambda module, args, out: type(out)(sample=torch.full_like(out.sample, float("inf"))))
    with pytest.raises(OuroborosError, match=r"results/x/model: non-finite samples in images 0…2"):
        sample.sample(unet, train.scheduler(), 0, 3, seed=1, inference_steps=2, batch_size=4, progress=False,
                      source="results/x/model", policy=policy.resolve(kind="cpu", cuda=False))


# --- the counter-based noise ----------------------------------------------------------------------

@pytest.mark.parametrize(("key", "ctr", "want"), [
    ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_threefry_matches_the_random123_known_answers(key, ctr, want):
    t = lambda v: torch.tensor([v], dtype=torch.int64)  # noqa: E731
    a, b = noise.threefry2x32(t(key[0]), t(key[1]), t(ctr[0]), t(ctr[1]))
    assert (a.item(), b.item()) == want


def test_device_noise_of_an_image_depends_on_its_seed_and_draw_alone():
    ids = seeds.per_item(9, range(6))
    whole = noise.normal(noise.keys(ids, "cpu"), 3, (3, 4, 4))
    part = noise.normal(noise.keys(ids[4:], "cpu"), 3, (3, 4, 4))
    assert torch.equal(whole[4:], part)  # the batch an image is drawn in does not matter
    assert not torch.equal(whole, noise.normal(noise.keys(ids, "cpu"), 4, (3, 4, 4)))  # each draw is new
    big = noise.normal(noise.keys(seeds.per_item(1, range(64)), "cpu"), 0, (3, 32, 32)).flatten()
    assert abs(big.mean().item()) < 0.01 and abs(big.var().item() - 1) < 0.01  # 196,608 normals
    assert abs((big**4).mean().item() - 3) < 0.05  # Gaussian kurtosis
    odd = noise.normal(noise.keys(ids, "cpu"), 0, (1, 3, 3))  # an odd element count
    assert odd.shape == (6, 1, 3, 3) and torch.isfinite(odd).all()

