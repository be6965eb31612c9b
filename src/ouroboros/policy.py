"""The device policy: every choice that differs between a GPU and a CPU job, made once per job.

A job resolves one :class:`Policy` before it builds a network and follows it everywhere: which
device the networks and their inputs live on, the autocast precision of training and of sampling
(with a GradScaler for fp16, as diffusers' train_unconditional does), the memory format, the
fused AdamW, the TF32 and cuDNN switches, torch.compile, where the sampler's noise is drawn and
how often the training loss is read back. No other module branches on ``cuda``: they ask the
policy. The choices are printed to the job's log and written into training.json.

``kind`` (or ``OUROBOROS_POLICY`` in the environment, for a whole workflow run):

- ``auto`` (default): ``gpu`` where CUDA is available, else ``cpu``;
- ``cpu``: fp32, contiguous tensors, the plain AdamW, host-drawn per-image noise (the stream
  the demo's numbers were measured with), the loss read back every step;
- ``gpu``: the GPU choices. On a machine without CUDA this is the *forced* GPU policy: the
  networks stay on the CPU but every GPU branch runs there (bf16/fp16 autocast on the CPU,
  channels-last, fused AdamW, torch.compile, the counter-based device noise, deferred loss
  read-back), so that CI executes every line a GPU job executes.

Precision defaults (``datasets.X.train.mixed_precision``; sampling follows it, read from the
model's training.json by the sample job): training in bf16, sampling in fp16 (fp32 with ``no``).
bf16 keeps fp32's exponent range, so a loss never overflows and no loss scale is needed, and on
Ampere and Hopper it runs on the same tensor cores as fp16.
fp16 (the paper's diffusers example, with its GradScaler) stays one key away. Sampling runs no
backward pass and the ε-prediction lies in a few units, where fp16's three extra mantissa bits
are worth more than bf16's range; its samples are checked for finiteness before they are kept.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Literal

from ouroboros.errors import OuroborosError

Precision = Literal["no", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("no", "fp16", "bf16")
KINDS = ("auto", "cpu", "gpu")
ENV = "OUROBOROS_POLICY"
# inductor generates kernels (minutes of C++ compilation on a CPU); OUROBOROS_POLICY_COMPILE_BACKEND=
# aot_eager traces forward and backward the same way without generating code, for tests
COMPILE_BACKEND = "inductor"
LOG_EVERY = 50  # steps between reads of the loss under the GPU policy (each read waits for the device)


@dataclass(frozen=True)
class Policy:
    kind: str  # "cpu" or "gpu"
    device: str  # where every network and its inputs live: "cuda" or "cpu"
    forced: bool  # the GPU policy on a machine without CUDA (tests, CI)
    train_precision: str  # autocast dtype of the training forward pass: no | fp16 | bf16
    sample_precision: str  # autocast dtype of the sampler's network: no | fp16 | bf16
    channels_last: bool  # the UNet's parameters and inputs in channels-last memory format
    fused_adamw: bool  # AdamW's fused kernel (one launch for all parameters)
    tf32: bool  # TF32 tensor-core matmuls and convolutions (CUDA)
    cudnn_benchmark: bool  # cuDNN autotunes convolution algorithms per shape (CUDA)
    compile: bool  # torch.compile the UNet for training
    compile_backend: str  # torch.compile's backend: inductor (the default); aot_eager in CPU tests
    noise: str  # "host": per-image CPU generators; "device": the counter-based stream on the device
    log_every: int  # read the loss back every this many steps (1: every step)
    pin_memory: bool  # page-locked host buffers for host-to-device copies (CUDA)

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def torch_device(self):
        import torch

        return torch.device(self.device)

    def memory_format(self):
        import torch

        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, precision: str):
        """The autocast context of ``precision`` on this policy's device (``no``: none)."""
        import torch

        if precision == "no":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device, dtype=_dtype(precision))

    def grad_scaler(self):
        """The loss scaler of fp16 training (enabled only then; bf16 and fp32 need none)."""
        import torch

        return torch.amp.GradScaler(self.device, enabled=self.train_precision == "fp16")

    def place(self, module):
        """A network on this policy's device, in eval mode: the feature extractors and the sampler."""
        return module.to(self.torch_device()).eval()

    def inputs(self, tensor):
        """A host tensor moved to this policy's device (page-locked first on CUDA, so the copy
        does not block the host)."""
        if self.device == "cpu":
            return tensor
        if self.pin_memory:
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=self.pin_memory)

    def apply_backends(self) -> None:
        """The process-wide switches (TF32, cuDNN autotuning); called once per job."""
        import torch

        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32
            torch.backends.cudnn.benchmark = self.cudnn_benchmark

    def record(self) -> dict:
        """What training.json and the job's log say about the device choices."""
        return asdict(self)

    def describe(self) -> str:
        forced = " (forced on the CPU)" if self.forced else ""
        return (f"device policy {self.kind}{forced}: device {self.device}, train {self.train_precision}, "
                f"sample {self.sample_precision}, channels_last {self.channels_last}, fused AdamW {self.fused_adamw}, "
                f"TF32 {self.tf32}, cudnn.benchmark {self.cudnn_benchmark}, compile {self.compile}"
                f"{f' ({self.compile_backend})' if self.compile else ''}, "
                f"noise {self.noise}, loss read back every {self.log_every} steps")


def _dtype(precision: str):
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _check_precision(value: str, key: str) -> str:
    if value not in PRECISIONS:
        raise OuroborosError(f"config.yaml: {key} = {value!r}; choose one of {', '.join(PRECISIONS)}")
    return value


def resolve(*, train_precision: str = "bf16", sample_precision: str = "fp16", compile: bool = False,
            kind: str | None = None, cuda: bool | None = None) -> Policy:
    """The policy of this job.

    ``train_precision``/``sample_precision``: the dataset's mixed_precision keys, used by the GPU
    policy (the CPU policy runs fp32). ``compile``: the dataset's train.compile. ``kind``: auto,
    cpu or gpu (default: $OUROBOROS_POLICY, else auto). ``cuda``: whether CUDA is available
    (default: ask torch), for tests.
    """
    kind = kind or os.environ.get(ENV) or "auto"
    if kind not in KINDS:
        raise OuroborosError(f"{ENV}={kind!r}: choose one of {', '.join(KINDS)}")
    _check_precision(train_precision, "train.mixed_precision")
    _check_precision(sample_precision, "sample.mixed_precision")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if kind == "auto":
        kind = "gpu" if cuda else "cpu"
    if kind == "cpu":
        return Policy(kind="cpu", device="cpu", forced=False, train_precision="no", sample_precision="no",
                      channels_last=False, fused_adamw=False, tf32=False, cudnn_benchmark=False, compile=False,
                      compile_backend=COMPILE_BACKEND, noise="host", log_every=1, pin_memory=False)
    return Policy(kind="gpu", device="cuda" if cuda else "cpu", forced=not cuda, train_precision=train_precision,
                  sample_precision=sample_precision, channels_last=True, fused_adamw=True, tf32=True,
                  cudnn_benchmark=True, compile=bool(compile),
                  compile_backend=os.environ.get(ENV + "_COMPILE_BACKEND", COMPILE_BACKEND), noise="device",
                  log_every=LOG_EVERY,
                  pin_memory=bool(cuda))
