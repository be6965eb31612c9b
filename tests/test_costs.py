"""ouroboros.costs with known answers: multiply-adds of small UNets counted here by hand, layer by
layer; the presets' forward FLOPs against torch's own counter; the work of the shipped config's
cifar jobs from its keys; the rate table's bases; the hours of the user's target."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ouroboros import costs, experiments, models
from ouroboros.errors import OuroborosError

ROOT = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((ROOT / "config.yaml").read_text())


def conv(k, cin, cout, hw):
    return k * k * cin * cout * hw


def resnet(cin, cout, temb, hw):  # conv1, time projection (per image), conv2, 1×1 shortcut when the channels change
    return conv(3, cin, cout, hw) + temb * cout + conv(3, cout, cout, hw) + (cin * cout * hw if cin != cout else 0)


def attention(c, hw):  # q, k, v, out projections; QKᵀ; AV
    return 4 * hw * c * c + hw * hw * c + hw * hw * c


SMALL = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
             norm_num_groups=4, attention_head_dim=4)
WITH_ATTENTION = {**SMALL, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
                  "up_block_types": ("AttnUpBlock2D", "UpBlock2D")}
PLAIN = {**SMALL, "down_block_types": ("DownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "UpBlock2D"),
         "add_attention": False}


def hand_count(attn: bool) -> int:
    """The two-level UNet above at 8×8 (level 1 at 4×4), written out layer by layer."""
    temb = 32  # 4 × the first block's 8 channels
    macs = 8 * 32 + 32 * 32  # time embedding: Linear(8, 32), Linear(32, 32)
    macs += conv(3, 3, 8, 64)  # conv_in
    macs += resnet(8, 8, temb, 64)  # down 0: one resnet at 8×8 ...
    macs += conv(3, 8, 8, 16)  # ... and its stride-2 downsampling convolution (output 4×4)
    macs += resnet(8, 16, temb, 16) + (attention(16, 16) if attn else 0)  # down 1 at 4×4, the last: no downsampling
    macs += 2 * resnet(16, 16, temb, 16) + (attention(16, 16) if attn else 0)  # mid: resnet, attention, resnet
    # skips stored: conv_in (8 @ 8×8), down-0 resnet (8 @ 8×8), downsample (8 @ 4×4), down-1 resnet (16 @ 4×4)
    macs += resnet(16 + 16, 16, temb, 16) + resnet(16 + 8, 16, temb, 16)  # up 0 at 4×4: 2 resnets on concatenations
    macs += 2 * attention(16, 16) if attn else 0
    macs += conv(3, 16, 16, 64)  # its upsampling: nearest ×2 then a 3×3 convolution at 8×8
    macs += resnet(16 + 8, 8, temb, 64) + resnet(8 + 8, 8, temb, 64)  # up 1 at 8×8
    macs += conv(3, 8, 3, 64)  # conv_out
    return macs


def counted_flops(module, *inputs) -> int:
    """torch's FlopCounterMode (2 per multiply-add), attention through the math kernel so that its
    matrix products are counted as such."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize("spec, attn", [(WITH_ATTENTION, True), (PLAIN, False)], ids=["attention", "plain"])
def test_a_small_unet_counted_by_hand(spec, attn):
    import torch
    from diffusers import UNet2DModel

    assert costs.unet_macs_of(spec) == hand_count(attn)
    unet = UNet2DModel(**spec).eval()  # the spec is a real UNet2DModel, and the hand count is its arithmetic
    assert counted_flops(unet, torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long)) == 2 * hand_count(attn)


@pytest.mark.parametrize("preset, classes", [("cifar-paper", None), ("cifar-paper", 10), ("mnist-paper", None),
                                             ("tiny8", None)])
def test_forward_flops_of_the_presets_match_torchs_counter(preset, classes):
    import torch

    unet = models.build(preset, classes).eval()
    spec = models.preset(preset)
    side, extra = spec["sample_size"], ({"class_labels": torch.zeros(1, dtype=torch.long)} if classes else {})
    counted = counted_flops(lambda x, t: unet(x, t, **extra), torch.zeros(1, spec["in_channels"], side, side),
                            torch.zeros(1, dtype=torch.long))
    assert costs.forward_flops(preset, classes) == pytest.approx(counted, rel=0.01)
    if preset == "cifar-paper":  # §D.2's 10.7M-parameter UNet: about a GFLOP per image
        assert sum(p.numel() for p in unet.parameters()) == pytest.approx(10.7e6, rel=0.01)
        assert 1.0e9 < costs.forward_flops(preset) < 1.1e9


def test_extractor_flops_match_torchs_counter():
    import torch
    import torchvision
    from transformers import Dinov2Config, Dinov2Model

    from ouroboros import classifier

    x = torch.zeros(1, 3, 224, 224)
    for size in ("small", "large"):
        width, depth = costs.DINOV2[size]
        one, two = (counted_flops(Dinov2Model(Dinov2Config(hidden_size=width, num_hidden_layers=layers,
                                                           num_attention_heads=width // 64, intermediate_size=4 * width,
                                                           patch_size=14, image_size=518)).eval(), x)
                    for layers in (1, 2))
        assert costs.extractor_flops("dinov2", f"facebook/dinov2-{size}") == pytest.approx(one + (depth - 1) * (two - one))
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    assert costs.extractor_flops("inception") == pytest.approx(counted_flops(net, torch.zeros(1, 3, 299, 299)), rel=1e-6)
    assert costs.extractor_flops("classifier") == counted_flops(classifier.network(3, 10).body, torch.zeros(1, 3, 32, 32))
    assert costs.extractor_flops("pixels") == costs.extractor_flops("identity") == 0


def test_dinov2_sizes_from_hub_ids_and_directories():
    assert costs.dinov2_size("facebook/dinov2-large") == "large"
    assert costs.dinov2_size("/models/dinov2-base") == "base"
    assert costs.dinov2_size("/weights/dinov2_vitg14") == "giant"
    assert costs.extractor_flops("dinov2-fd", None) == costs.extractor_flops("dinov2", "facebook/dinov2-large")
    with pytest.raises(OuroborosError, match="name the directory after the hub model"):
        costs.dinov2_size("/models/my-vit")


def test_job_work_of_the_shipped_cifar_config():
    forward = costs.forward_flops("cifar-paper")
    n = 32768
    steps = 500 * (n // 128)  # 500 epochs of batch 128 over D_1
    work = costs.job_work("train", {"dataset": "cifar", "branch": "real", "iter": "01"}, RAW)
    assert (work.kind, work.gpu, work.items) == ("train", True, steps * 128)
    assert work.flops == pytest.approx(steps * 128 * 3 * forward) and "128,000 steps" in work.label
    # the 2N ablation trains on all 2N samples: twice the steps; fine-tuning trains 100 epochs from n = 2
    assert costs.job_work("train", {"dataset": "cifar", "branch": "replace-2n", "iter": "02"}, RAW).flops == pytest.approx(
        2 * work.flops)
    assert costs.job_work("train", {"dataset": "cifar", "branch": "replace-finetune", "iter": "02"}, RAW).flops == \
        pytest.approx(work.flops / 5)
    sample = costs.job_work("sample", {"dataset": "cifar", "producer": "real/iter01"}, RAW)
    assert sample.flops == pytest.approx(n * 1000 * forward) and sample.kind == "sample"
    assert costs.job_work("sample", {"dataset": "cifar", "producer": "real/iter01/x2"}, RAW).flops == sample.flops
    cfg = costs.job_work("sample", {"dataset": "mnist-cfg", "producer": "real/iter01"}, RAW)  # guidance: 2 passes
    assert cfg.flops == pytest.approx(12000 * 1000 * 2 * costs.forward_flops("mnist-paper", 10))
    dinov2 = costs.job_work("features", {"dataset": "cifar", "folder": "greedy/iter02", "extractor": "dinov2"}, RAW)
    assert dinov2.flops == pytest.approx(n * costs.extractor_flops("dinov2", "facebook/dinov2-small"))
    fd = costs.job_work("features", {"dataset": "cifar", "folder": "real", "extractor": "dinov2-fd"}, RAW)
    assert fd.flops == pytest.approx(n * costs.extractor_flops("dinov2", "facebook/dinov2-large")) and fd.model == "dinov2-fd"
    assert costs.job_work("features", {"dataset": "cifar", "folder": "reference", "extractor": "inception"}, RAW).items == 50000
    assert costs.job_work("features", {"dataset": "digits", "folder": "real", "extractor": "pixels"}, RAW) is None
    for rule, wildcards in (("select", {"dataset": "cifar", "run": "greedy", "iter": "02"}), ("data", {"dataset": "cifar"}),
                            ("fid", {"dataset": "cifar", "run": "greedy", "iter": "02"})):
        assert costs.job_work(rule, wildcards, RAW) is None
    digits = costs.job_work("train", {"dataset": "digits", "branch": "real", "iter": "01"}, RAW)
    assert digits.flops == pytest.approx(750 * 64 * 3 * costs.forward_flops("micro8"))
    theory = experiments.load(ROOT / "config.yaml", ROOT / "experiments/theory.yaml")
    assert costs.job_work("train", {"dataset": "theory-gaussian", "branch": "real", "iter": "01"}, theory).kind == "cpu"
    assert costs.job_work("classifier", {"dataset": "digits"}, RAW).kind == "cpu"


# What `snakemake -n results/cifar/greedy/iter08/fid.json` plans with model work (tests/test_gpu_check.py
# plans it through the command line): iteration 1 and greedy's 2–8, DINOv2-S features of every pool
# member, InceptionV3 and DINOv2-L features of D_1 and G_8.
TARGET_JOBS = (
    [("train", {"dataset": "cifar", "branch": "real", "iter": "01"})]
    + [("train", {"dataset": "cifar", "branch": "greedy", "iter": f"{n:02d}"}) for n in range(2, 9)]
    + [("sample", {"dataset": "cifar", "producer": "real/iter01"})]
    + [("sample", {"dataset": "cifar", "producer": f"greedy/iter{n:02d}"}) for n in range(2, 9)]
    + [("features", {"dataset": "cifar", "folder": f, "extractor": "dinov2"})
       for f in ["real", "real/iter01"] + [f"greedy/iter{n:02d}" for n in range(2, 8)]]
    + [("features", {"dataset": "cifar", "folder": f, "extractor": e}) for f in ("real", "greedy/iter08")
       for e in ("inception", "dinov2-fd")]
    + [("select", {"dataset": "cifar", "run": "greedy", "iter": f"{n:02d}"}) for n in range(2, 9)]
)


def test_the_users_target_costs_what_the_issue_says():
    works = costs.works(TARGET_JOBS, RAW)
    rows = {r.rule: r for r in costs.summarize(works, "H100")}
    assert {r: rows[r].jobs for r in rows} == {"train": 8, "sample": 8, "features": 12}
    flops = costs.total(rows.values()).flops
    assert flops == pytest.approx(7e17, rel=0.05)  # about 7 × 10¹⁷ FLOP
    assert flops / 989e12 / 3600 == pytest.approx(0.2, abs=0.01)  # at an H100's dense bf16 peak
    hours = costs.total(rows.values()).hours
    if all("estimate" in r.basis for r in rows.values()):  # the shipped estimates: a realistic eager rate, 6–9 hours
        assert 6 <= hours <= 9, costs.format_rows(list(rows.values()), "H100")
    assert "train" in costs.format_rows(list(rows.values()), "H100")
    # measured rates replace the table's: 1,000 training images/s of cifar-paper is 3.2 TFLOP/s
    measured = costs.summarize(works, "H100", rates={"train": 1000 * 3 * costs.forward_flops("cifar-paper")})
    train = next(r for r in measured if r.rule == "train")
    assert train.hours == pytest.approx(8 * 128000 * 128 / 1000 / 3600) and train.basis == "measured"


def test_the_rate_table_states_every_basis():
    for device in costs.table():
        for kind in ("train", "sample", "features"):
            per_second, basis = costs.rate(kind, device)
            assert per_second > 0
            assert basis.startswith(f"{device}: measured by benchmarks/") or basis.startswith(f"{device}: estimate: "), basis
    assert costs.rate("train", "NVIDIA H100 80GB HBM3") == costs.rate("train", "H100")
    assert costs.rate("features", "H100", "dinov2")[0] < costs.rate("features", "H100")[0]
    assert costs.rate("cpu", "H100") == costs.rate("train", "cpu")  # a job without a GPU slot runs at the CPU's rate
    assert costs.rate("sample", "Tesla K80")[1].startswith("GPU: estimate")
    with pytest.raises(OuroborosError, match="unknown kind"):
        costs.rate("select", "H100")


@pytest.mark.parametrize("name, cls", [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100-PCIe"),
                                       ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100"), ("cpu", "cpu"),
                                       ("NVIDIA GeForce RTX 4090", "RTX4090"), ("Quadro X", "GPU")])
def test_device_class(name, cls):
    assert costs.device_class(name) == cls


def test_device_class_of_this_machine_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert costs.device_class() == "H200"
    monkeypatch.setenv("PATH", "/nonexistent")
    assert costs.device_class() == "cpu"


def test_parse_dry_run():
    text = """Building DAG of jobs...
Job stats:
job         count

[Mon Dec  7 04:40:00 2026]
rule train:
    input: results/cifar/real/train.tsv
    output: results/cifar/real/iter01/model, results/cifar/real/iter01/train-stats.jsonl
    jobid: 3
    wildcards: dataset=cifar, branch=real, iter=01
    resources: tmpdir=<TBD>, gpu=1

localrule all:
    input: x
    jobid: 0
"""
    assert costs.parse_dry_run(text) == [("train", {"dataset": "cifar", "branch": "real", "iter": "01"}), ("all", {})]


def test_costs_imports_no_torch():
    """The preflight plans in a process that runs no model: costs and the config it reads import no torch."""
    code = ("import sys, yaml; from ouroboros import costs; raw = yaml.safe_load(open('config.yaml')); "
            "costs.summarize(costs.works([('train', {'dataset': 'cifar', 'branch': 'real', 'iter': '01'}), "
            "('features', {'dataset': 'cifar', 'folder': 'real', 'extractor': 'inception'})], raw), 'H100'); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
