"""The flow-matching generator (ouroboros.flow): its objective, its deterministic ODE sampler, and
everything a DDPM job has (resume, per-image seeds, the device policy, guidance, the model's family)."""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from ouroboros import flow, generators, models, policy, sample, train
from ouroboros.config import TrainConfig, parse
from ouroboros.data import from_model
from ouroboros.errors import OuroborosError

from cli import REPO, make_workdir, snakemake, tiny_config

TINY = {"steps": 6, "batch_size": 16, "lr": 1e-3, "warmup_steps": 2, "weight_decay": 0.0}
FLOW = generators.get("flow")


def stub(output):
    """A tiny8 UNet whose output ``output(x, timestep)`` replaces the network's: a velocity field of our choosing."""
    torch.manual_seed(0)
    unet = models.build("tiny8")
    unet.register_forward_hook(lambda module, args, out: type(out)(sample=output(args[0], args[1])))
    return unet


def test_the_path_runs_from_data_at_t0_to_noise_at_t1_with_velocity_noise_minus_data():
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0.0, 0.25, 1.0])
    x_t, target = flow.path_sample(x0, noise, t)
    assert torch.equal(x_t[0], x0[0]) and torch.equal(x_t[2], noise[2])
    assert torch.allclose(x_t[1], 0.75 * x0[1] + 0.25 * noise[1])
    assert torch.equal(target, noise - x0)


def test_logit_normal_times_have_the_median_and_spread_of_sigmoid_of_a_standard_normal():
    t = flow.draw_times(20000, "logit-normal", torch.Generator().manual_seed(0), "cpu")
    logit = torch.log(t / (1 - t))
    assert abs(t.median().item() - 0.5) < 0.02 and abs(logit.std().item() - 1.0) < 0.03
    u = flow.draw_times(20000, "uniform", torch.Generator().manual_seed(0), "cpu")
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003


@pytest.mark.parametrize(("solver", "factor"), [
    ("euler", (1 - 1 / 4) ** 4),  # x' = x integrated from t = 1 to 0 in 4 steps of h = -1/4
    ("heun", (1 - 1 / 4 + 1 / 32) ** 4),  # Heun: 1 + h + h²/2 per step, closer to e^-1
])
def test_the_ode_solvers_integrate_a_linear_field_by_their_closed_forms(solver, factor):
    cpu = policy.resolve(kind="cpu", cuda=False)
    unet = stub(lambda x, t: x.clone())
    ids = range(0, 3)
    x1 = sample.noise_stream(cpu, 5, ids, (1, 8, 8))()
    got, _ = flow.sample((unet, {"solver": solver}), 0, 3, seed=5, inference_steps=4, policy=cpu)
    expect = from_model(x1 * factor)
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1
    if solver == "heun":  # second order: nearer the exact e^-1 than Euler at the same step count
        assert abs(factor - math.exp(-1)) < abs((1 - 1 / 4) ** 4 - math.exp(-1)) / 5


def test_the_sample_depends_on_the_initial_noise_alone_unlike_the_ddpm(monkeypatch):
    """Not a DDPM under another name: its sampler draws noise once (x at t = 1) and integrates a
    deterministic ODE; the DDPM adds fresh noise at every step."""
    cpu = policy.resolve(kind="cpu", cuda=False)
    torch.manual_seed(0)
    unet = models.build("tiny8")
    plain_flow, _ = flow.sample((unet, {}), 0, 4, seed=2, inference_steps=3, policy=cpu)
    plain_ddpm, _ = sample.sample(unet, train.scheduler(), 0, 4, seed=2, inference_steps=3, progress=False, policy=cpu)
    real = sample.noise_stream

    def later_draws_differ(policy, seed, ids, shape):
        draws = real(policy, seed, ids, shape)
        first = [True]

        def noise():
            x = draws()
            if first[0]:
                first[0] = False
                return x
            return 3 * x + 1  # any other noise after the initial draw
        return noise

    monkeypatch.setattr(sample, "noise_stream", later_draws_differ)
    again_flow, _ = flow.sample((unet, {}), 0, 4, seed=2, inference_steps=3, policy=cpu)
    again_ddpm, _ = sample.sample(unet, train.scheduler(), 0, 4, seed=2, inference_steps=3, progress=False, policy=cpu)
    assert np.array_equal(again_flow, plain_flow)
    assert not np.array_equal(again_ddpm, plain_ddpm)


def test_a_killed_flow_training_resumes_with_the_same_weights(tmp_path, monkeypatch):
    from ouroboros.data import digits

    images, _ = digits()
    images = images[:64]
    params = {**TINY, "steps": 8, "time_sampling": "logit-normal"}
    FLOW.fit(images, None, tmp_path / "whole", params=params, seed=5, preset="tiny8", stats_out=tmp_path / "whole.jsonl")
    ckpt = tmp_path / "train-checkpoint"
    every_step = {**params, "checkpoint_minutes": 0.0}  # not part of the fingerprint
    monkeypatch.setenv("OUROBOROS_FAULT", "train")  # dies after step 4, right after a checkpoint
    with pytest.raises(RuntimeError, match="injected fault"):
        FLOW.fit(images, None, tmp_path / "cut", params=every_step, seed=5, preset="tiny8", checkpoint_dir=ckpt,
                 stats_out=tmp_path / "cut.jsonl")
    assert json.loads((ckpt / "state.json").read_text())["next_step"] == 5
    monkeypatch.delenv("OUROBOROS_FAULT")
    FLOW.fit(images, None, tmp_path / "cut", params=params, seed=5, preset="tiny8", checkpoint_dir=ckpt,
             stats_out=tmp_path / "cut.jsonl")
    whole, cut = models.load(tmp_path / "whole").state_dict(), models.load(tmp_path / "cut").state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)  # bit for bit
    losses = lambda p: [json.loads(x)["loss"] for x in p.read_text().splitlines()]  # noqa: E731
    assert losses(tmp_path / "cut.jsonl") == losses(tmp_path / "whole.jsonl")
    assert not ckpt.exists()


def test_a_checkpoint_of_the_ddpm_objective_does_not_resume_a_flow_training(tmp_path, monkeypatch, capsys):
    from ouroboros.data import digits

    images, _ = digits()
    images = images[:32]
    ckpt = tmp_path / "train-checkpoint"
    monkeypatch.setenv("OUROBOROS_FAULT", "train")
    with pytest.raises(RuntimeError, match="injected fault"):
        train.train(images, "tiny8", TrainConfig(**{**TINY, "steps": 8}), seed=5, out_dir=tmp_path / "d", progress=False,
                    checkpoint_dir=ckpt, checkpoint_seconds=0)
    assert (ckpt / "state.json").is_file()
    monkeypatch.delenv("OUROBOROS_FAULT")
    capsys.readouterr()
    FLOW.fit(images, None, tmp_path / "f", params={**TINY, "steps": 8}, seed=5, preset="tiny8", checkpoint_dir=ckpt,
             stats_out=tmp_path / "f.jsonl")
    assert "checkpoint of another configuration or training set; starting over" in capsys.readouterr().out


def test_batch_size_does_not_change_a_sample_and_2n_starts_with_n():
    cpu = policy.resolve(kind="cpu", cuda=False)
    torch.manual_seed(0)
    model = (models.build("tiny8"), {"solver": "heun"})
    whole, _ = flow.sample(model, 0, 6, seed=9, inference_steps=3, batch_size=6, policy=cpu)
    split, _ = flow.sample(model, 0, 6, seed=9, inference_steps=3, batch_size=4, policy=cpu)
    tail, _ = flow.sample(model, 3, 3, seed=9, inference_steps=3, batch_size=2, policy=cpu)
    assert np.array_equal(whole, split) and np.array_equal(whole[3:], tail)


def test_an_infinite_velocity_fails_the_sample_naming_the_model():
    cpu = policy.resolve(kind="cpu", cuda=False)
    unet = stub(lambda x, t: torch.full_like(x, float("inf")))
    with pytest.raises(OuroborosError, match=r"results/f/model: non-finite samples in images 0…1"):
        flow.sample((unet, {}), 0, 2, seed=1, inference_steps=2, policy=cpu, source="results/f/model")


def test_each_family_refuses_the_others_model_directory(tmp_path):
    from ouroboros.data import digits

    images, _ = digits()
    FLOW.fit(images[:32], None, tmp_path / "flow", params=TINY, seed=1, preset="tiny8")
    train.train(images[:32], "tiny8", TrainConfig(**TINY), seed=1, out_dir=tmp_path / "ddpm", progress=False)
    assert generators.of_model_dir(tmp_path / "flow").name == "flow"
    assert generators.of_model_dir(tmp_path / "ddpm").name == "ddpm"
    with pytest.raises(OuroborosError, match="written by generator flow, not ddpm"):
        generators.get("ddpm").load(tmp_path / "flow")
    with pytest.raises(OuroborosError, match="written by generator ddpm, not flow"):
        FLOW.load(tmp_path / "ddpm")
    assert sorted(p.name for p in (tmp_path / "flow").iterdir()) == ["generator.json", "scheduler", "training.json", "unet"]
    sched = json.loads((tmp_path / "flow/scheduler/scheduler_config.json").read_text())
    assert sched["_class_name"] == "FlowMatchEulerDiscreteScheduler" and sched["shift"] == 1.0


def config_with(entry_changes: dict) -> dict:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["datasets"]["digits"] |= entry_changes
    return raw


def test_generator_flow_beside_a_preset_is_the_flow_family_with_its_keys():
    cfg = parse(config_with({"generator": "flow", "model_params": {"solver": "heun"}}))
    d = cfg.dataset("digits")
    assert d.generator == "flow" and d.model_ref == "flow:micro8" and generators.resolve(d.model_ref)[1] == "micro8"
    options = cfg.train_options("digits", "replace", 2)
    assert options["solver"] == "heun" and options["time_sampling"] == "uniform" and options["steps"] == 750
    # every existing config keeps its meaning: a preset alone is the DDPM, its reference unchanged
    plain = parse(config_with({})).dataset("digits")
    assert plain.generator == "ddpm" and plain.model_ref == "micro8"
    assert parse(config_with({"generator": "ddpm"})).dataset("digits").model_ref == "micro8"


@pytest.mark.parametrize(("change", "message"), [
    ({"generator": "flow", "model": "kde", "model_params": {"bandwidth": 0.1}},
     r"datasets\.digits\.generator = 'flow' trains a UNet preset, but datasets\.digits\.model = 'kde' is not one"),
    ({"generator": "kde"}, r"datasets\.digits\.generator = 'kde', but datasets\.digits\.model = 'micro8' is a ddpm model"),
    ({"generator": "rectified"}, r"datasets\.digits\.generator = 'rectified': unknown generator"),
    ({"generator": "flow", "model_params": {"solver": "rk4"}}, r"datasets\.digits\.model_params\.solver = 'rk4'"),
])
def test_a_wrong_generator_key_is_named_when_config_yaml_is_read(change, message):
    with pytest.raises(OuroborosError, match=message):
        parse(config_with(change))


@pytest.mark.cli
def test_the_demo_dataset_switched_to_flow_by_config_alone_runs_the_loop(tmp_path):
    cfg = tiny_config(["replace", "greedy"], 2)
    cfg["datasets"]["digits"]["generator"] = "flow"
    cfg["datasets"]["digits"]["model_params"] = {"solver": "heun"}
    workdir = make_workdir(tmp_path / "flow", cfg)
    snakemake(workdir)
    for run in ("replace", "greedy"):
        metrics = json.loads((workdir / f"results/digits/{run}/iter02/metrics.json").read_text())
        assert metrics["generator"] == "flow" and metrics["model_params"]["solver"] == "heun"
    assert generators.of_model_dir(workdir / "results/digits/real/iter01/model").name == "flow"
    log = (workdir / "logs/digits/real/iter01/sample.log").read_text()
    assert "(flow) in 4 steps" in log
