"""The sampler's own cost per denoising step, with a trivial network in place of the UNet.

What is left when the network costs nothing is the sampler's overhead: the DDPM update and,
above all, drawing each step's per-image noise. The CPU policy draws it from one host generator
per image (B generator calls per step, then a host-to-device copy); the GPU policy computes it on
the device from the counter-based generator (ouroboros.noise), a fixed number of tensor
operations whatever the batch. Both are timed here on the CPU, one thread, in fp32.

    benchmarks/sampler_overhead.py [--batches 256,1024,4096] [--steps 5] [--out overhead.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "src"))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from ouroboros import policy, sample, train  # noqa: E402


class Config(dict):
    __getattr__ = dict.__getitem__


class Output:
    def __init__(self, sample):
        self.sample = sample


class Trivial(torch.nn.Module):
    """ε = 0.1 x: one elementwise operation, so the timing is the sampler's alone."""

    def __init__(self, channels: int = 3, size: int = 32):
        super().__init__()
        self.config = Config(in_channels=channels, sample_size=size, num_class_embeds=None)
        self.scale = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, x, t, class_labels=None):
        return Output(x * self.scale)


def ms_per_step(noise: str, batch: int, steps: int, repeats: int = 3) -> float:
    gpu = policy.resolve(kind="gpu", cuda=False)
    pol = dataclasses.replace(gpu, noise=noise, sample_precision="no", channels_last=False)
    net, sched = Trivial(), train.scheduler()
    best = float("inf")
    for _ in range(repeats):  # the fastest of a few: the least disturbed by the rest of the machine
        start = time.perf_counter()
        sample.sample(net, sched, 0, batch, seed=0, inference_steps=steps, batch_size=batch, progress=False, policy=pol)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / steps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="256,1024,4096")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print("| batch | host noise, ms/step | device noise, ms/step | host / device |\n|---:|---:|---:|---:|")
    for batch in (int(b) for b in args.batches.split(",")):
        host, device = ms_per_step("host", batch, args.steps), ms_per_step("device", batch, args.steps)
        rows.append({"batch": batch, "host_ms_per_step": round(host, 2), "device_ms_per_step": round(device, 2)})
        print(f"| {batch} | {host:.1f} | {device:.1f} | {host / device:.2f} |", flush=True)
    result = {"torch": torch.__version__, "threads": 1, "inference_steps": args.steps, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
