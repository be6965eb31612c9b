"""The arithmetic of benchmarks/gpu_throughput.py's Figure 3 projection, with known answers."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("gpu_throughput", Path(__file__).parents[1] / "benchmarks/gpu_throughput.py")
gpu_throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_throughput)


def test_fig3_hours_count_every_training_sample_and_feature():
    n, epochs, steps, trainings = 32768, 500, 1000, 15
    # throughputs chosen so that each part takes exactly one hour
    sets = (trainings + 1) * n / 3600
    hours = gpu_throughput.fig3_hours(trainings * epochs * n / 3600, trainings * n * steps / 3600,
                                      {"dinov2": sets, "fd_dinov2": sets / 2, "inception": sets})
    assert hours == pytest.approx({"train": 1, "sample": 1, "dinov2": 1, "fd_dinov2": 2, "inception": 1, "total": 6})


def test_fig3_flops_and_the_peak_table():
    # one FLOP per UNet forward: 15 trainings × (500 epochs × 32,768 images × 3 + 32,768 samples × 1,000 steps)
    assert gpu_throughput.fig3_flops(1, {}) == 15 * (500 * 32768 * 3 + 32768 * 1000)
    assert gpu_throughput.fig3_flops(0, {"dinov2": 1, "inception": 1}) == 2 * 16 * 32768
    assert gpu_throughput.peak_flops("NVIDIA H200") == 989e12
    assert gpu_throughput.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu_throughput.peak_flops("cpu") is None


def test_the_projection_times_the_dinov2_models_the_cifar_config_uses():
    sizes = gpu_throughput.dinov2_sizes()
    assert sizes == {"dinov2": "facebook/dinov2-small", "fd_dinov2": "facebook/dinov2-large"}
    assert {k for k in gpu_throughput.DINOV2_DIMS if any(k in m for m in sizes.values())} == {"small", "large"}
