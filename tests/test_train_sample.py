"""Training and sampling: determinism, per-image seeds, the data stream, the model files."""

import json

import numpy as np
import pytest
import torch

from ouroboros import data, models, sample, train
from ouroboros.config import TrainConfig
from ouroboros.errors import OuroborosError

TINY = TrainConfig(steps=6, batch_size=16, lr=1e-3, warmup_steps=2, weight_decay=0.0)


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", None, 48, seed=0, dataset="digits")


def test_digits_are_uint8_nhwc_and_subsets_are_nested(digits):
    images, labels = digits
    assert images.dtype == np.uint8 and images.shape == (48, 8, 8, 1) and images.max() == 255
    small = data.subset(1797, 16, seed=0, dataset="digits")
    large = data.subset(1797, 48, seed=0, dataset="digits")
    np.testing.assert_array_equal(large[:16], small)


def test_batch_stream_covers_every_image_once_per_epoch():
    stream = np.concatenate([train.batch_indices(10, 4, s, seed=3) for s in range(5)])  # 20 = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:])


def test_device_batches_equal_the_host_stream():
    batches = train.DeviceBatches(10, 4, seed=3, device="cpu")
    for step in range(8):  # crosses epoch boundaries mid-batch
        assert batches(step).tolist() == train.batch_indices(10, 4, step, seed=3).tolist()
    small = train.DeviceBatches(3, 7, seed=1, device="cpu")  # a batch spanning three epochs
    assert small(2).tolist() == train.batch_indices(3, 7, 2, seed=1).tolist()


def test_lr_warms_up_then_decays_to_zero():
    assert train.lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert train.lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert train.lr_factor(100, 10, 100) == pytest.approx(0.0, abs=1e-12)


def test_training_is_deterministic_and_saves_safetensors(digits, tmp_path):
    images, _ = digits
    for name in ("a", "b"):
        train.train(images, "tiny8", TINY, seed=7, out_dir=tmp_path / name, stats_path=tmp_path / f"{name}.jsonl",
                    progress=False)
    wa, wb = models.load(tmp_path / "a").state_dict(), models.load(tmp_path / "b").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list((tmp_path / "a").glob("*.bin"))
    stats = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == list(range(6)) and all(np.isfinite(s["loss"]) for s in stats)


def test_samples_do_not_depend_on_batch_size_and_extend_as_a_prefix(tmp_path):
    torch.manual_seed(0)
    unet = models.build("tiny8")
    sched = train.scheduler()
    whole, labels = sample.sample(unet, sched, 0, 5, seed=11, inference_steps=4, batch_size=5, progress=False)
    split, _ = sample.sample(unet, sched, 0, 5, seed=11, inference_steps=4, batch_size=2, progress=False)
    tail, _ = sample.sample(unet, sched, 3, 2, seed=11, inference_steps=4, batch_size=2, progress=False)
    assert whole.dtype == np.uint8 and whole.shape == (5, 8, 8, 1)
    assert labels.tolist() == [-1] * 5  # an unconditional model draws no class
    assert np.abs(whole.astype(int) - split.astype(int)).max() <= 1
    assert np.abs(whole[3:].astype(int) - tail.astype(int)).max() <= 1
    other, _ = sample.sample(unet, sched, 0, 5, seed=12, inference_steps=4, batch_size=5, progress=False)
    assert np.abs(whole.astype(int) - other.astype(int)).mean() > 5


def test_model_directory_missing_weights_is_a_clear_error(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(OuroborosError, match="diffusion_pytorch_model.safetensors"):
        models.load(tmp_path / "model")


def test_loading_a_model_is_quiet(tmp_path, recwarn, caplog, capfd, monkeypatch):
    """Every train, sample and kill-resume job loads a model: a warning there (diffusers' advice to
    install accelerate) repeats in every log and buries real ones."""
    import logging

    torch.manual_seed(0)
    models.build("tiny8").save_pretrained(tmp_path / "model", safe_serialization=True)
    # diffusers logs to its own stderr handler and does not propagate: let caplog see its records too
    monkeypatch.setattr(logging.getLogger("diffusers"), "propagate", True)
    capfd.readouterr()
    unet = models.load(tmp_path / "model")
    assert list(unet.config.block_out_channels) == [32, 32, 64]
    assert [str(w.message) for w in recwarn] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "accelerate" not in caplog.text and "accelerate" not in capfd.readouterr().err


def test_a_trained_model_opens_in_diffusers_ddpm_pipeline_and_samples(digits, tmp_path):
    """The model directory is DDPMPipeline's layout (unet/, scheduler/, model_index.json), so a user can
    take a model out of the loop with diffusers alone."""
    from diffusers import DDPMPipeline

    images, _ = digits
    train.train(images, "micro8", TINY, seed=7, out_dir=tmp_path / "model", progress=False)
    assert json.loads((tmp_path / "model" / "generator.json").read_text()) == {"generator": "ddpm"}
    pipe = DDPMPipeline.from_pretrained(tmp_path / "model", use_safetensors=True, low_cpu_mem_usage=False)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 8, 8, 1) and np.isfinite(out).all() and 0.0 <= out.min() <= out.max() <= 1.0
    # the same weights as the loop's own loader reads
    ours = models.load(tmp_path / "model").state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in pipe.unet.state_dict().items())


def test_a_model_of_an_earlier_release_in_the_flat_layout_still_loads_and_samples(tmp_path):
    """Results made before the pipeline layout are not retrained: their flat config.json, weights and
    scheduler_config.json load as before."""
    from ouroboros import generators

    torch.manual_seed(0)
    unet, sched = models.build("tiny8"), train.scheduler()
    unet.save_pretrained(tmp_path / "old", safe_serialization=True)  # what save_model wrote before
    sched.save_pretrained(tmp_path / "old")
    ddpm = generators.of_model_dir(tmp_path / "old")
    assert ddpm.name == "ddpm"
    model = ddpm.load(tmp_path / "old")
    assert all(torch.equal(v, model[0].state_dict()[k]) for k, v in unet.state_dict().items())
    images, _ = ddpm.sample(model, 0, 2, seed=3, inference_steps=2)
    fresh, _ = sample.sample(unet, sched, 0, 2, seed=3, inference_steps=2, progress=False)
    assert np.array_equal(images, fresh)


def test_tensorboard_tracking_holds_every_logged_step_of_the_stats_file(digits, tmp_path):
    """config.yaml tracking: tensorboard: the event files hold the same loss, lr and gradient norm per step
    as train-stats.jsonl (as float32, TensorBoard's scalar type)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    images, _ = digits
    train.train(images, "micro8", TINY, seed=7, out_dir=tmp_path / "model", stats_path=tmp_path / "stats.jsonl",
                progress=False, tensorboard_dir=tmp_path / "tb")
    stats = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    for name in ("loss", "lr", "grad_norm"):
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{name}")]
        assert logged == [(s["step"], float(np.float32(s[name]))) for s in stats], name


def test_unknown_preset_names_the_key():
    with pytest.raises(OuroborosError, match="unknown model preset"):
        models.preset("huge")


@pytest.mark.parametrize("conditional_ema", [False, True], ids=["plain", "conditional-ema"])
def test_a_killed_training_resumes_from_its_checkpoint_with_the_same_weights(digits, tmp_path, monkeypatch,
                                                                              conditional_ema):
    images, labels = digits
    cfg = TrainConfig(steps=8, batch_size=16, lr=1e-3, warmup_steps=2, weight_decay=0.0, ema=conditional_ema)
    cond = dict(labels=labels, classes=10) if conditional_ema else {}
    train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "whole", stats_path=tmp_path / "whole.jsonl",
                progress=False, **cond)
    ckpt = tmp_path / "train-checkpoint"
    monkeypatch.setenv("OUROBOROS_FAULT", "train")  # dies after step 4, right after a checkpoint
    with pytest.raises(RuntimeError, match="injected fault"):
        train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "cut", stats_path=tmp_path / "cut.jsonl",
                    progress=False, checkpoint_dir=ckpt, checkpoint_seconds=0, **cond)
    assert json.loads((ckpt / "state.json").read_text())["next_step"] == 5
    assert (ckpt / "ema.safetensors").is_file() == conditional_ema
    assert not (tmp_path / "cut").exists()
    monkeypatch.delenv("OUROBOROS_FAULT")
    train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "cut", stats_path=tmp_path / "cut.jsonl",
                progress=False, checkpoint_dir=ckpt, checkpoint_seconds=3600, **cond)
    whole, cut = models.load(tmp_path / "whole").state_dict(), models.load(tmp_path / "cut").state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    losses = lambda p: [json.loads(x)["loss"] for x in p.read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "cut.jsonl") == losses(tmp_path / "whole.jsonl")
    assert not ckpt.exists()  # removed once the model is saved


def test_a_checkpoint_of_other_inputs_is_not_resumed(tmp_path):
    torch.manual_seed(0)
    unet = models.build("tiny8")
    opt = torch.optim.AdamW(unet.parameters())
    from ouroboros import checkpoint

    checkpoint.save(tmp_path / "ck", unet, opt, 2, "other-fingerprint", "")
    log = []
    assert checkpoint.load(tmp_path / "ck", unet, opt, "mine", log=log.append) is None
    assert "another configuration" in log[0]


class _Eps(torch.nn.Module):
    """A stand-in ε-network for the 1000-step schedule: one 3×3 convolution, its output scaled by
    the timestep, so that the sampler's arithmetic, not a UNet's forward pass, is what takes time."""

    def __init__(self):
        super().__init__()
        from diffusers.configuration_utils import FrozenDict

        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.config = FrozenDict(in_channels=1, sample_size=8, num_class_embeds=None)

    def forward(self, x, t, class_labels=None):
        from types import SimpleNamespace

        return SimpleNamespace(sample=torch.tanh(self.conv(x)) * (1 + t.float() / 1000))


def test_sampler_equals_diffusers_ddpm_step_with_per_image_generators():
    """The written-out DDPM step against DDPMScheduler.step fed the same per-image generators: a
    strided schedule through the smallest UNet of the same blocks (the real network interface),
    and the paper's full 1000 steps through a one-convolution stand-in (the arithmetic)."""
    from diffusers import UNet2DModel

    from ouroboros import seeds

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, layers_per_block=1,
                       norm_num_groups=4, add_attention=False)
    for net, steps in ((unet, 7), (_Eps(), 1000)):
        ours, _ = sample.sample(net, train.scheduler(), 2, 3, seed=5, inference_steps=steps, batch_size=3,
                                progress=False)
        sched = train.scheduler()
        sched.set_timesteps(steps)
        gens = [torch.Generator().manual_seed(s) for s in seeds.per_item(5, range(2, 5))]
        x = torch.cat([torch.randn((1, 1, 8, 8), generator=g) for g in gens])
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.step(net(x, t).sample, t, x, generator=gens).prev_sample
        reference = data.from_model(x)
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
        assert reference.std() > 10  # not a degenerate all-equal image


def test_a_sigterm_during_a_checkpoint_write_finishes_it_checkpoints_and_stops(digits, tmp_path, monkeypatch):
    """Pre-emption, cold: SIGTERM arrives while the first checkpoint is being written; the write is
    finished, the training stops after that step with status PREEMPTED, nothing temporary is left,
    and the resumed training ends with the uninterrupted one's weights."""
    import os
    import signal

    from ouroboros import checkpoint

    images, _ = digits
    cfg = TrainConfig(steps=3, batch_size=16, lr=1e-3, warmup_steps=1, weight_decay=0.0)
    train.train(images, "tiny8", cfg, seed=5, out_dir=tmp_path / "whole", progress=False)
    work = tmp_path / "cut"
    work.mkdir()
    ckpt = work / "train-checkpoint"
    sent: list[int] = []

    def sigterm_mid_write(stage: str) -> None:  # where the kill tests pause: model.safetensors written, the rest not
        if not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)

    def reached_the_test(*_) -> None:
        raise AssertionError("the SIGTERM was not taken by the training")

    monkeypatch.setattr(checkpoint, "pause_point", sigterm_mid_write)
    previous = signal.signal(signal.SIGTERM, reached_the_test)  # the training must replace it while it runs
    try:
        with pytest.raises(SystemExit) as stopped:
            train.train(images, "tiny8", cfg, seed=5, out_dir=work / "model", progress=False, checkpoint_dir=ckpt,
                        checkpoint_seconds=0)
        assert signal.getsignal(signal.SIGTERM) is reached_the_test  # given back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == train.PREEMPTED == 143 and sent
    assert sorted(p.name for p in work.iterdir()) == ["train-checkpoint"]  # no temporary, no model
    assert json.loads((ckpt / "state.json").read_text())["next_step"] == 1
    train.train(images, "tiny8", cfg, seed=5, out_dir=work / "model", progress=False, checkpoint_dir=ckpt)
    whole, cut = models.load(tmp_path / "whole").state_dict(), models.load(work / "model").state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    assert sorted(p.name for p in work.iterdir()) == ["model"]
