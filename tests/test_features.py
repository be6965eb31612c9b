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


# --- the registry and the device policy ------------------------------------------------------------

def test_the_schema_wildcards_and_gpu_resources_come_from_the_registry():
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).parents[1]
    schema = yaml.safe_load((root / "workflow/schemas/config.schema.yaml").read_text())
    dataset = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    run = schema["properties"]["runs"]["additionalProperties"]["properties"]
    assert dataset["features"]["enum"] == features.names("features")
    assert dataset["select_features"]["enum"] == features.names("features")
    assert run["select_features"]["enum"] == features.names("features")
    assert dataset["fid_features"]["enum"] == features.names("fid")
    for extractor in features.EXTRACTORS.values():  # each key names a dataset option of the schema
        assert extractor.key is None or extractor.key in dataset, extractor.name
        assert extractor.preprocessing
    common = (root / "workflow/rules/common.smk").read_text()
    assert "features.EXTRACTORS" in common and "features.get(wildcards.extractor).gpu" in common
    assert not re.search(r'extractor=r"pixels', common)  # no second list of the names
    # the warm server of a features job comes from the same definition, not from a list in the script
    assert "features.get(snakemake.wildcards.extractor).torch" in (root / "workflow/scripts/features.py").read_text()


def test_the_extractors_registered_without_torch_run_without_it():
    """`torch=False` sends a features job to the light server, which never imports torch: those
    extractors must embed without it (a fresh Python, since this one has torch), and every extractor
    that asks for a GPU runs a network."""
    import subprocess
    import sys

    numpy_only = [e.name for e in features.EXTRACTORS.values() if not e.torch]
    assert numpy_only == ["pixels", "identity"]
    assert all(e.torch for e in features.EXTRACTORS.values() if e.gpu)
    code = ("import sys, numpy as np; from ouroboros import features\n"
            "items = {'pixels': np.zeros((2, 4, 4, 1), np.uint8), 'identity': np.zeros((2, 3), np.float32)}\n"
            f"for name in {numpy_only!r}: assert features.extract(name, items[name]).shape[0] == 2\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stderr


class Recording:
    """A device policy that notes what the extractor hands it: every network and every input batch
    must pass through place() and inputs(), which put them on the job's device."""

    device = "cpu"

    def __init__(self):
        self.networks, self.batches = [], []

    def place(self, module):
        self.networks.append(module)
        return module.eval()

    def inputs(self, tensor):
        self.batches.append(tensor)
        return tensor


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    import local_models as lm

    folder = tmp_path_factory.mktemp("models")
    return {"dinov2": lm.dinov2_dir(folder / "dinov2"), "dinov2-fd": lm.dinov2_dir(folder / "dinov2-fd"),
            "inception": lm.fidelity_inception_weights(folder / "fidelity.pth"),
            "inception-torchvision": lm.torchvision_inception_weights(folder / "torchvision.pth")}


@pytest.mark.parametrize("name", [e.name for e in features.EXTRACTORS.values() if e.gpu])
def test_every_gpu_extractor_runs_its_network_and_inputs_where_the_policy_says(name, local_models):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    recording = Recording()
    source = {"dinov2_model": local_models[name]} if "dinov2" in name else {"inception_weights": local_models[name]}
    fn = {"dinov2": features.dinov2, "inception": features.inception, "dinov2-fd": features.dinov2_fd,
          "inception-torchvision": features.inception_torchvision}[name]
    f = fn(images, next(iter(source.values())), batch_size=2, policy=recording)
    assert len(recording.networks) == 1 and not recording.networks[0].training
    assert len(recording.batches) == 2  # both batches (2 + 1 images) went through the policy
    assert np.isfinite(f).all() and len(f) == 3
    np.testing.assert_allclose(features.extract(name, images, **source), f, rtol=1e-4, atol=1e-5)
