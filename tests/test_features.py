"""Feature extractors through their real loading paths, on models built here."""

import numpy as np
import pytest

from ouroboros import classifier, data, features
from ouroboros.errors import OuroborosError


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", None, 400, seed=0, dataset="digits")


def test_pixels_are_flattened_to_unit_range():
    x = np.array([[[[0], [255]], [[51], [102]]]], dtype=np.uint8)
    np.testing.assert_allclose(features.pixels(x), [[0, 1, 0.2, 0.4]])


def test_classifier_learns_digits_and_embeds(digits, tmp_path):
    images, labels = digits
    info = classifier.train(images, labels, steps=150, seed=0, out_dir=tmp_path / "clf")
    assert info["held_out_accuracy"] > 0.8  # ten classes: chance is 0.1
    f = features.extract("classifier", images[:10], classifier_dir=tmp_path / "clf")
    assert f.shape == (10, classifier.FEATURE_DIM) and f.dtype == np.float32


def test_dinov2_loads_a_local_model_through_transformers(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=28, patch_size=14)
    Dinov2Model(cfg).save_pretrained(tmp_path / "dino")
    BitImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(tmp_path / "dino")
    images = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 1), dtype=np.uint8)
    f = features.extract("dinov2", images, dinov2_model=str(tmp_path / "dino"))
    assert f.shape == (3, 32) and np.isfinite(f).all()
    assert not np.allclose(f[0], f[1])


def test_missing_dinov2_offline_says_what_to_download(tmp_path):
    with pytest.raises(OuroborosError, match=r"download.*set datasets\.cifar\.dinov2 in config"):
        features.dinov2(np.zeros((1, 8, 8, 3), np.uint8), str(tmp_path / "no-such-model"), dataset="cifar")


def test_npz_and_folder_sources_load_uint8_nhwc(tmp_path):
    from PIL import Image

    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images, labels=np.arange(5))
    got, labels = data.load_source("npz", str(tmp_path / "set.npz"))
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(labels, np.arange(5))
    (tmp_path / "faces").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / "faces" / f"{i:03d}.png")
    got, _ = data.load_source("folder", str(tmp_path / "faces"))
    np.testing.assert_array_equal(got, images)


def test_missing_or_bad_sources_name_the_path(tmp_path):
    with pytest.raises(OuroborosError, match="no .npz file"):
        data.load_source("npz", str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "floats.npz", images=np.zeros((2, 4, 4, 3)))
    with pytest.raises(OuroborosError, match="floats.npz: expected uint8"):
        data.load_source("npz", str(tmp_path / "floats.npz"))
    with pytest.raises(OuroborosError, match="no .png or .jpg"):
        data.load_source("folder", str(tmp_path))
    with pytest.raises(OuroborosError, match="cifar10"):
        data.load_source("cifar10", str(tmp_path / "nowhere"))


def test_missing_inception_weights_name_the_file_and_the_config_key(tmp_path):
    from ouroboros.io import save_array

    missing = tmp_path / "no-such-weights.pth"
    images = tmp_path / "results" / "cifar" / "greedy" / "iter02" / "samples.npy"
    save_array(images, np.zeros((1, 8, 8, 3), np.uint8))
    # as the workflow calls it: the dataset is read from the path
    with pytest.raises(OuroborosError, match=r"no-such-weights\.pth.*set datasets\.cifar\.inception_weights in config"):
        features.stage(str(images), "inception", str(images.with_name("features-inception.npy")),
                       inception_weights=str(missing))
    assert not images.with_name("features-inception.npy").exists()
    with pytest.raises(OuroborosError, match=r"datasets\.<dataset>\.inception_weights"):
        features.inception(np.zeros((1, 8, 8, 3), np.uint8), str(missing))
