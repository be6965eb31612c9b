"""benchmarks/gpu_throughput.py on the CPU (forced GPU policy, tiny arguments): every part measures
and writes its JSON, FLOP/s by ouroboros.costs; a budget too small for the parts stops each at its
share and records it, and the JSON still holds what came before."""

import importlib.util
import json
import sys
import time
import weakref
from pathlib import Path

import pytest

from ouroboros import costs

spec = importlib.util.spec_from_file_location("gpu_throughput", Path(__file__).parents[1] / "benchmarks/gpu_throughput.py")
gpu_throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_throughput)

TINY = ["--preset", "tiny8", "--train-steps", "3", "--batch-size", "8", "--images", "32", "--concurrency", "1",
        "--sample-batches", "4", "--sample-steps", "2", "--feature-images", "4", "--tiny"]


@pytest.fixture
def forced_gpu(monkeypatch):
    monkeypatch.setenv("OUROBOROS_POLICY", "gpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_the_sweep_times_the_dinov2_models_the_cifar_config_uses():
    sizes = gpu_throughput.dinov2_sizes()
    assert sizes == {"dinov2": "facebook/dinov2-small", "fd_dinov2": "facebook/dinov2-large"}
    assert {costs.dinov2_size(m) for m in sizes.values()} == {"small", "large"}


def test_a_budget_too_small_stops_every_part_at_its_share(tmp_path, forced_gpu):
    out = tmp_path / "t.json"
    # work that takes seconds on any CPU (64 images × 200 steps; 32 images through two ViTs and InceptionV3) in 1 s
    result = gpu_throughput.main([*TINY, "--sample-batches", "64", "--sample-steps", "200", "--feature-images", "32",
                                  "--out", str(out), "--budget", "1"])
    assert [p["status"].split(":")[0] for p in result["parts"].values()] == ["overrun"] * 3
    # the training worker (a process importing torch) is killed at its share of 0.45 s
    assert result["parts"]["train"]["seconds"] < 10
    assert json.loads(out.read_text())["parts"] == result["parts"]


class _Slow:
    def __del__(self):
        time.sleep(0.5)  # the first alarm lands here: the parts' shares ended during main's imports


class _Target:
    pass


def _slow_callback(_ref) -> None:
    time.sleep(0.5)  # as _Slow.__del__


@pytest.mark.parametrize("finalizer", ["__del__", "weakref callback"])
def test_an_alarm_that_lands_in_a_finalizer_still_stops_the_part(tmp_path, forced_gpu, monkeypatch, finalizer):
    """The part's alarm rings while the garbage collector runs a finalizer (a __del__, a weakref's
    callback, as a WeakSet's), where Python only reports an exception (pytest fails the test on a
    report): the report is dropped, the alarm rings again, and the part stops soon after its share
    instead of running its whole course."""
    def part(*_):
        if finalizer == "__del__":
            _Slow()  # unreferenced at once: its __del__ runs now
        else:
            target = _Target()
            ref = weakref.ref(target, _slow_callback)  # noqa: F841 - kept, so that its callback runs
            del target  # the callback runs now
        end = time.monotonic() + 20
        while time.monotonic() < end:
            pass

    previous_hook = sys.unraisablehook
    monkeypatch.setattr(gpu_throughput, "concurrent_training", lambda *_: 1.0)
    monkeypatch.setattr(gpu_throughput, "part_sample", part)
    monkeypatch.setattr(gpu_throughput, "part_features", part)
    # a budget spent before the parts start: each part's alarm is due 10 ms after the part begins
    result = gpu_throughput.main([*TINY, "--out", str(tmp_path / "t.json"), "--budget", "0.01"])
    parts = result["parts"]
    assert {k: p["status"].split(":")[0] for k, p in parts.items()} == {"train": "ok", "sample": "overrun",
                                                                        "features": "overrun"}
    assert parts["sample"]["seconds"] < 10 and parts["features"]["seconds"] < 10  # the finalizer's 0.5 s, not the part's 20 s
    assert sys.unraisablehook is previous_hook  # given back once the parts end


@pytest.mark.cli  # a training worker process and the feature networks: half a minute on one core
def test_every_part_measures_and_writes_its_numbers(tmp_path, forced_gpu):
    out = tmp_path / "t.json"
    result = gpu_throughput.main([*TINY, "--out", str(out), "--budget", "400"])
    assert {k: p["status"] for k, p in result["parts"].items()} == {"train": "ok", "sample": "ok", "features": "ok"}
    assert result["train_images_per_second"]["1"] > 0 and result["sample_images_steps_per_second"]["4"] > 0
    assert set(result["feature_images_per_second"]) == {"dinov2 (facebook/dinov2-small: dinov2-small)",
                                                        "fd_dinov2 (facebook/dinov2-large: dinov2-large)", "inception_v3"}
    flops = result["flops_per_second"]
    assert flops["train, 1 at once"] == pytest.approx(result["train_images_per_second"]["1"] * 3 * costs.forward_flops("tiny8"))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
