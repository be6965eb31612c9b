"""Class-conditional models and classifier-free guidance, EMA, and MNIST at 32×32: known answers."""

import gzip
import struct

import numpy as np
import pytest
import torch

from ouroboros import data, models, sample, train
from ouroboros.config import TrainConfig
from ouroboros.errors import OuroborosError

STEP1 = TrainConfig(steps=1, batch_size=16, lr=1e-3, warmup_steps=0, weight_decay=0.0)


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", None, 48, seed=0, dataset="digits")


def weights(path):
    return models.load(path).state_dict()


def test_ema_decay_equals_diffusers_ema_model():
    from diffusers.training_utils import EMAModel

    ema = EMAModel(torch.nn.Linear(1, 1).parameters(), decay=train.EMA_MAX_DECAY, use_ema_warmup=True,
                   inv_gamma=train.EMA_INV_GAMMA, power=train.EMA_POWER)
    for step in (1, 2, 3, 10, 1000, 10**7):
        assert train.ema_decay(step) == pytest.approx(ema.get_decay(step), abs=1e-12)
    assert train.ema_decay(1) == 0.0 and train.ema_decay(10**7) == train.EMA_MAX_DECAY


def test_saved_ema_is_the_decayed_average_of_the_steps(digits, tmp_path):
    """Two steps: EMA = d·w1 + (1−d)·w2 with d = ema_decay(2), w_k the weights after step k."""
    images, _ = digits
    two = TrainConfig(**{**STEP1.__dict__, "steps": 2})
    for name, cfg in (("w1", STEP1), ("w2", two), ("ema", TrainConfig(**{**two.__dict__, "ema": True}))):
        train.train(images, "tiny8", cfg, seed=3, out_dir=tmp_path / name, progress=False)
    w1, w2, ema = weights(tmp_path / "w1"), weights(tmp_path / "w2"), weights(tmp_path / "ema")
    d = train.ema_decay(2)
    assert 0.3 < d < 0.5
    for k in w1:
        torch.testing.assert_close(ema[k], d * w1[k] + (1 - d) * w2[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(ema[k], w2[k]) for k in w2)


def test_label_dropout_decides_which_class_rows_learn(digits, tmp_path):
    """Dropout 0 never uses the null row; dropout 1 uses only it (Adam with no weight decay
    leaves a row with zero gradient untouched)."""
    images, labels = digits
    torch.manual_seed(train.seeds.per_item(3, [0])[0])
    init = models.build("tiny8", 10).class_embedding.weight.detach().clone()
    rows = {}
    for p in (0.0, 1.0):
        cfg = TrainConfig(**{**STEP1.__dict__, "steps": 3, "label_dropout": p})
        train.train(images, "tiny8", cfg, seed=3, out_dir=tmp_path / str(p), labels=labels, classes=10, progress=False)
        rows[p] = weights(tmp_path / str(p))["class_embedding.weight"]
    assert rows[0.0].shape == (11, init.shape[1])
    changed = lambda w: [not torch.equal(w[i], init[i]) for i in range(11)]  # noqa: E731
    assert changed(rows[0.0]) == [True] * 10 + [False]
    assert changed(rows[1.0]) == [False] * 10 + [True]


def test_conditional_training_refuses_unconditional_samples(digits, tmp_path):
    images, labels = digits
    with pytest.raises(OuroborosError, match="label -1"):
        train.train(images, "tiny8", STEP1, seed=3, out_dir=tmp_path / "m", labels=np.full(len(images), -1),
                    classes=10, progress=False)
    assert not (tmp_path / "m").exists()


def conditional_unet():
    torch.manual_seed(0)
    unet = models.build("tiny8", 10)
    with torch.no_grad():  # distinct class rows, so guidance has something to amplify
        unet.class_embedding.weight.normal_(0, 3.0)
    return unet


def draw(unet, w, start=0, count=6, batch_size=6):
    return sample.sample(unet, train.scheduler(), start, count, seed=11, inference_steps=4, batch_size=batch_size,
                         guidance_scale=w, progress=False)


def test_class_of_each_sample_is_its_index_mod_k_and_extends_as_a_prefix():
    unet = conditional_unet()
    whole, labels = draw(unet, 2.0)
    tail, tail_labels = draw(unet, 2.0, start=4, count=2, batch_size=1)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5] and tail_labels.tolist() == [4, 5]
    assert np.abs(whole[4:].astype(int) - tail.astype(int)).max() <= 1
    assert sample.labels_for(8, 4, 10).tolist() == [8, 9, 0, 1]


def test_guidance_zero_is_the_null_label_model_and_scale_changes_samples():
    """w = 0 leaves ε_∅ alone: the same as w = 1 on a model whose every class row is the null row."""
    unet = conditional_unet()
    w0, _ = draw(unet, 0.0)
    as_null = conditional_unet()
    with torch.no_grad():
        emb = as_null.class_embedding.weight
        emb[:] = emb[-1].clone()
    w1_null, _ = draw(as_null, 1.0)
    assert np.abs(w0.astype(int) - w1_null.astype(int)).max() <= 1
    w1, _ = draw(unet, 1.0)
    w3, _ = draw(unet, 3.0)
    assert np.abs(w1.astype(int) - w0.astype(int)).mean() > 1
    assert np.abs(w3.astype(int) - w1.astype(int)).mean() > 1


def test_guidance_scale_without_classes_names_the_key():
    from pathlib import Path

    import yaml

    from ouroboros.config import parse

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    raw["datasets"]["digits"]["sample"]["guidance_scale"] = 2.0
    with pytest.raises(OuroborosError, match=r"datasets\.digits\.sample\.guidance_scale"):
        parse(raw)


def _idx(path, magic, array):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes())


def test_mnist_loads_through_torchvision_padded_to_32(tmp_path):
    """A tiny MNIST in torchvision's raw layout: digits come out centred on a 32×32 black canvas."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (5, 28, 28), dtype=np.uint8)
    targets = np.arange(5, dtype=np.uint8)
    for split in ("train", "t10k"):
        _idx(raw / f"{split}-images-idx3-ubyte", 2051, images)
        _idx(raw / f"{split}-labels-idx1-ubyte", 2049, targets)
    got, labels = data.load_source("mnist", str(tmp_path))
    assert got.shape == (5, 32, 32, 1) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[:, 2:30, 2:30, 0], images)
    assert got[:, :2].max() == 0 and got[:, 30:].max() == 0 and got[:, :, :2].max() == 0 and got[:, :, 30:].max() == 0
    assert labels.tolist() == [0, 1, 2, 3, 4]
    # the paper's MNIST UNet takes it: three downsamplings of 32
    torch.manual_seed(0)
    unet = models.build("mnist-paper", 10)
    x = data.to_model(got[:2])
    assert unet(x, torch.tensor([10, 10]), class_labels=torch.tensor([1, 10])).sample.shape == x.shape
