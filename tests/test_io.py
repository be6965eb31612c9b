"""Loads refuse bad files with a message naming the file; writes are atomic."""

import numpy as np
import pytest

from ouroboros.errors import OuroborosError
from ouroboros.io import load_features, load_images, save_array


def test_truncated_npy_names_the_file(tmp_path):
    p = tmp_path / "samples.npy"
    save_array(p, np.zeros((10, 8, 8, 1), np.uint8))
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(OuroborosError, match="samples.npy"):
        load_images(p)


def test_wrong_shape_and_nan_features(tmp_path):
    p = tmp_path / "images.npy"
    save_array(p, np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(OuroborosError, match="4-d"):
        load_images(p)
    f = tmp_path / "features-pixels.npy"
    x = np.zeros((5, 3), np.float32)
    x[2, 1] = np.nan
    save_array(f, x)
    with pytest.raises(OuroborosError, match="NaN"):
        load_features(f)


def test_pickled_arrays_are_refused(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(OuroborosError, match="obj.npy"):
        load_images(p)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    save_array(tmp_path / "x.npy", np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_the_temporaries_of_a_cut_short_write_are_removed_and_nothing_else(tmp_path):
    from ouroboros.io import atomic_dir, remove_temporaries

    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("1")
    save_array(tmp_path / "samples.npy", np.ones(3))
    strays = [".model.k2j4_9zq", ".model.old", ".samples.npy.ab12cd34.tmp"]
    kept = [".model.abc", ".models.k2j4_9zq", ".model.bak.k2j4_9zq", ".samples.npy.bak.ab12cd34.tmp", "model.k2j4_9zq"]
    for name in strays[:2] + kept[:3]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights").write_text("half")
    for name in strays[2:] + kept[3:]:
        (tmp_path / name).write_text("half")
    assert sorted(p.name for p in remove_temporaries(tmp_path / "model")) == strays[:2]
    assert sorted(p.name for p in remove_temporaries(tmp_path / "samples.npy")) == strays[2:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "samples.npy", *kept])
    assert remove_temporaries(tmp_path / "absent" / "x.npy") == []
