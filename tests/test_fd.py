"""FD_DINOv2 and the torchvision FID: their networks built here with random weights (no hub),
their preprocessing against known answers, and fid.json's plumbing."""

import copy
import dataclasses

import numpy as np
import pytest
import yaml

from ouroboros import features, fid, metrics, tables
from ouroboros.config import check
from ouroboros.errors import OuroborosError
from ouroboros.io import load_json, save_array

from cli import REPO, setting

SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
RNG = np.random.default_rng(0)


def _torch_batch(images):
    import torch

    return torch.from_numpy(images)


def _per_channel(values) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(1, 3, 1, 1)


# --- FD_DINOv2: dgm-eval's preprocessing and the DINOv2 loading path ----------------------------

def test_dgm_eval_pixels_of_a_constant_grey_image_are_its_normalised_value_at_224():
    x = features.dgm_eval_pixels(_torch_batch(np.full((2, 8, 8, 3), 128, np.uint8))).numpy()
    want = (128 / 255 - _per_channel(features.IMAGENET_MEAN)) / _per_channel(features.IMAGENET_STD)
    assert x.shape == (2, 3, 224, 224)
    np.testing.assert_allclose(x, np.broadcast_to(want, x.shape), atol=1e-6)


def test_dgm_eval_pixels_match_dgm_eval_transform_through_pil():
    """dgm-eval's own transform (DINOv2Encoder.transform: PIL bicubic resize, ToTensor, Normalize)
    against ours, on noise, where the rounding between PIL's two passes matters most."""
    import torchvision.transforms as TF
    from PIL import Image

    images = RNG.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    dgm_eval = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor(),
                           TF.Normalize(features.IMAGENET_MEAN, features.IMAGENET_STD)])
    want = np.stack([dgm_eval(Image.fromarray(im)).numpy() for im in images])
    got = features.dgm_eval_pixels(_torch_batch(images)).numpy()
    levels = np.abs(got - want) * _per_channel(features.IMAGENET_STD) * 255  # back to grey levels
    assert levels.max() < 2.01 and (levels > 0.5).mean() < 0.01


def test_dgm_eval_pixels_repeat_grey_to_rgb():
    grey = RNG.integers(0, 256, size=(1, 8, 8, 1), dtype=np.uint8)
    got = features.dgm_eval_pixels(_torch_batch(grey)).numpy()
    np.testing.assert_array_equal(got, features.dgm_eval_pixels(_torch_batch(np.repeat(grey, 3, axis=-1))).numpy())


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    """A random-weight DINOv2 (patch 14, 224 input: 16 × 16 patches) saved as a local directory,
    without an image processor: FD_DINOv2 preprocesses by itself."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=224, patch_size=14)
    folder = tmp_path_factory.mktemp("fd") / "dinov2"
    Dinov2Model(cfg).save_pretrained(folder)
    return str(folder)


def test_dinov2_fd_loads_a_local_dinov2_and_is_deterministic_across_batch_sizes(tiny_dinov2):
    images = RNG.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    f = features.extract("dinov2-fd", images, dinov2_model=tiny_dinov2)
    assert f.shape == (3, 32) and f.dtype == np.float32 and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])
    np.testing.assert_array_equal(f, features.dinov2_fd(images, tiny_dinov2))
    np.testing.assert_allclose(features.dinov2_fd(images, tiny_dinov2, batch_size=1), f, rtol=1e-5, atol=1e-6)
    grey = features.dinov2_fd(images[..., :1], tiny_dinov2)
    np.testing.assert_array_equal(grey, features.dinov2_fd(np.repeat(images[..., :1], 3, axis=-1), tiny_dinov2))


def test_fd_dinov2_errors_name_its_config_key(tmp_path):
    from transformers import ViTConfig, ViTModel

    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(OuroborosError, match=r"download.*set datasets\.cifar\.fd_dinov2 in config"):
        features.dinov2_fd(images, str(tmp_path / "no-such-model"), dataset="cifar")
    with pytest.raises(OuroborosError, match=r"set datasets\.cifar\.fd_dinov2"):
        features.dinov2_fd(images, None, dataset="cifar")
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=28, patch_size=14)).save_pretrained(tmp_path / "vit")
    with pytest.raises(OuroborosError, match=r"datasets\.cifar\.fd_dinov2: .* vit model, not DINOv2"):
        features.dinov2_fd(images, str(tmp_path / "vit"), dataset="cifar")


# --- the torchvision FID: torchvision's InceptionV3 from a local state_dict -----------------------

def test_torchvision_inception_input_is_two_x_minus_one_after_transform_input():
    """pytorch-fid feeds the network 2x − 1; torchvision's weights take ImageNet-normalised input
    and map it back with transform_input=True, which the loaded network has."""
    from torchvision.models import inception_v3

    x = features.torchvision_inception_pixels(_torch_batch(np.full((1, 8, 8, 1), 51, np.uint8)))
    assert tuple(x.shape) == (1, 3, 299, 299)
    want = (51 / 255 - _per_channel(features.IMAGENET_MEAN)) / _per_channel(features.IMAGENET_STD)
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(want, x.shape), atol=1e-6)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    np.testing.assert_allclose(net._transform_input(x).numpy(), 2 * 51 / 255 - 1, atol=1e-6)


def test_torchvision_inception_resize_is_bilinear_without_corner_alignment():
    import torch.nn.functional as F

    image = RNG.integers(0, 256, size=(1, 5, 7, 3), dtype=np.uint8)
    got = features.torchvision_inception_pixels(_torch_batch(image)).numpy()
    x = _torch_batch(image).permute(0, 3, 1, 2).float() / 255
    resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(got * _per_channel(features.IMAGENET_STD) + _per_channel(features.IMAGENET_MEAN),
                               resized, atol=1e-5)
    assert resized[0, 0, 0, 0] == pytest.approx(image[0, 0, 0, 0] / 255)  # corners keep their pixel


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fid") / "inception_v3_random.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return str(path)


def test_inception_torchvision_gives_2048_pool_features(inception_weights):
    images = RNG.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    f = features.extract("inception-torchvision", images, inception_weights=inception_weights)
    assert f.shape == (3, 2048) and f.dtype == np.float32 and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])
    np.testing.assert_allclose(features.inception_torchvision(images, inception_weights, batch_size=2), f,
                               rtol=1e-4, atol=1e-6)


def test_missing_torchvision_weights_name_the_file_and_the_config_key(tmp_path):
    images = tmp_path / "results" / "cifar" / "greedy" / "iter02" / "samples.npy"
    save_array(images, np.zeros((1, 8, 8, 3), np.uint8))
    out = images.with_name("features-inception-torchvision.npy")
    # as the workflow calls it: the dataset is read from the path
    key = r"inception_v3_google-0cc3c7bd\.pth.*datasets\.cifar\.torchvision_inception_weights in config"
    with pytest.raises(OuroborosError, match=r"no-such\.pth.*" + key):
        features.stage(str(images), "inception-torchvision", str(out), inception_weights=str(tmp_path / "no-such.pth"))
    with pytest.raises(OuroborosError, match=key):
        features.stage(str(images), "inception-torchvision", str(out), inception_weights=None)
    (tmp_path / "garbage.pth").write_text("not a state_dict")
    with pytest.raises(OuroborosError, match=r"cannot load InceptionV3 weights from .*garbage\.pth"):
        features.torchvision_inception_net(str(tmp_path / "garbage.pth"))
    assert not out.exists()


# --- fid.json ------------------------------------------------------------------------------------

def test_extra_spaces_appear_only_where_their_keys_are_set():
    cfg = check(copy.deepcopy(SHIPPED), SCHEMA)
    digits, cifar = cfg.dataset("digits"), cfg.dataset("cifar")
    # unset: the rule parameter and inputs of fid.json stay what they were before the extras existed
    assert fid.spaces(digits) == digits.fid_features and fid.extractors(digits) == [digits.fid_features]
    assert cifar.fd_dinov2 == "facebook/dinov2-large" and cifar.torchvision_inception_weights is None
    assert fid.spaces(cifar) == {"fid": {"extractor": "inception", "model": None},
                                 "fd_dinov2": {"extractor": "dinov2-fd", "model": "facebook/dinov2-large"}}
    both = dataclasses.replace(cifar, torchvision_inception_weights="w.pth")
    assert fid.extractors(both) == ["inception", "dinov2-fd", "inception-torchvision"]


def test_fid_json_holds_fd_dinov2_and_the_torchvision_fid_with_their_labels(tmp_path):
    cifar = dataclasses.replace(check(copy.deepcopy(SHIPPED), SCHEMA).dataset("cifar"),
                                torchvision_inception_weights="resources/inception_v3_google-0cc3c7bd.pth")
    real = tmp_path / "results/cifar/real/iter01/images.npy"
    generated = tmp_path / "results/cifar/replace/iter02/samples.npy"
    widths = {"inception": 6, "dinov2-fd": 5, "inception-torchvision": 6}
    feats = {}
    for images, rows, shift in ((real, 40, 0.0), (generated, 50, 1.0)):  # G_n holds more than N = 40
        save_array(images, np.zeros((rows, 4, 4, 3), np.uint8))
        for extractor, width in widths.items():
            feats[images, extractor] = RNG.normal(shift, 1.0, size=(rows, width)).astype(np.float32)
            save_array(images.with_name(f"features-{extractor}.npy"), feats[images, extractor])
    out = tmp_path / "results/cifar/replace/iter02/fid.json"
    fid.stage([str(generated)], str(real), fid.spaces(cifar), count=40, meta={"dataset": "cifar", "run": "replace",
              "iteration": 2}, out=str(out))
    record = load_json(out)
    for value, extractor in (("fid", "inception"), ("fd_dinov2", "dinov2-fd"), ("fid_torchvision", "inception-torchvision")):
        want = metrics.fid(feats[generated, extractor][:40], feats[real, extractor])  # the first N of G_n
        assert record["values"][value] == pytest.approx(want)
        assert record["metrics"][value]["extractor"] == extractor
    assert record["feature_extractor"] == "inception" and record["standard_fid"] is True
    assert record["metrics"]["fd_dinov2"]["label"] == "FD_DINOv2"
    assert record["metrics"]["fd_dinov2"]["model"] == "facebook/dinov2-large"
    assert "dgm-eval" in record["metrics"]["fd_dinov2"]["preprocessing"] and "Stein" in record["metrics"]["fd_dinov2"]["source"]
    torchvision = record["metrics"]["fid_torchvision"]
    assert torchvision["weights"].endswith("0cc3c7bd.pth") and "transform_input" in torchvision["preprocessing"]
    assert torchvision["config_key"] == "datasets.cifar.torchvision_inception_weights"
    # the tidy table: one row per value, each in its own feature space
    rows = {r["metric"]: r["feature_extractor"] for r in tables.rows(out)}
    assert rows == {"fid": "inception", "fd_dinov2": "dinov2-fd", "fid_torchvision": "inception-torchvision"}


def test_fid_json_without_extras_is_the_standard_fid_alone(tmp_path):
    real, generated = tmp_path / "results/d/real/iter01/images.npy", tmp_path / "results/d/replace/iter02/samples.npy"
    for images in (real, generated):
        save_array(images, np.zeros((12, 4, 4, 3), np.uint8))
        save_array(images.with_name("features-classifier.npy"), RNG.normal(size=(12, 3)).astype(np.float32))
    record = fid.stage([str(generated)], str(real), "classifier", count=12, meta={"dataset": "d"},
                       out=str(tmp_path / "fid.json"))
    assert set(record["values"]) == {"fid"} and record["standard_fid"] is False
    assert record["metrics"]["fid"]["extractor"] == "classifier"


# --- config --------------------------------------------------------------------------------------

def test_the_schema_takes_the_keys_and_refuses_a_wrong_type():
    cfg = copy.deepcopy(SHIPPED)
    setting("datasets.digits.fd_dinov2", "resources/dinov2-large")(cfg)
    setting("datasets.digits.torchvision_inception_weights", "resources/inception_v3_google-0cc3c7bd.pth")(cfg)
    digits = check(cfg, SCHEMA).dataset("digits")
    assert digits.fd_dinov2 == "resources/dinov2-large"
    assert digits.torchvision_inception_weights.endswith("0cc3c7bd.pth")
    for key in ("fd_dinov2", "torchvision_inception_weights"):
        cfg = copy.deepcopy(SHIPPED)
        setting(f"datasets.digits.{key}", 3)(cfg)
        with pytest.raises(Exception, match=rf"\['datasets'\]\['digits'\]\['{key}'\]"):
            check(cfg, SCHEMA)
