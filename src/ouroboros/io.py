"""Files in and out: atomic writes, and loads that check what they read.

Every write goes to a temporary file in the same directory and is renamed into place, so a
killed job never leaves a half-written file under the final name; the temporary it leaves instead
is removed by the job's next attempt (``remove_temporaries``, called for every output as a job
starts: ouroboros.warm.start). Every load refuses pickles (``allow_pickle=False``) and names the
file in its error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ouroboros.errors import OuroborosError
from ouroboros.runtime import pause_point


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            pause_point("write")  # the kill tests stop a job here, a temporary written beside ``path``
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling directory to fill; when the block ends without error it replaces
    ``path`` whole (a former ``path`` is moved aside first, then removed), else it is removed.
    The directory therefore appears complete or not at all, even to a reader in between."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)  # left by a process killed between the two renames
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# the names of the temporary siblings of ``path`` that _atomic and atomic_dir write (tempfile's 8 random
# characters) and the former directory atomic_dir moves aside: only these, never another file's
_TEMPORARY = r"\.{name}\.(?:[a-z0-9_]{{8}}(?:\.tmp)?|old)"


def remove_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` that an atomic write cut short (a killed or
    pre-empted job) left behind; return them. Call it only where nothing else may be writing
    ``path``: a job, for its own outputs, which Snakemake gives no other job."""
    import re

    path = Path(path)
    pattern = re.compile(_TEMPORARY.format(name=re.escape(path.name)))
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if pattern.fullmatch(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def save_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    return _atomic(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return _atomic(path, lambda f: f.write(text.encode()))


def save_text(path: str | os.PathLike, text: str) -> Path:
    return _atomic(path, lambda f: f.write(text.encode()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def load_array(
    path: str | os.PathLike,
    *,
    dtype: np.dtype | type | None = None,
    ndim: int | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Load a ``.npy`` file, checking dtype, rank and (for features) that no value is NaN/inf."""
    path = Path(path)
    if not path.is_file():
        raise OuroborosError(f"{path}: file not found; re-run the workflow step that writes it")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise OuroborosError(
            f"{path}: not a readable .npy array ({exc}); delete it and re-run the step that writes it"
        ) from exc
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise OuroborosError(f"{path}: expected dtype {np.dtype(dtype)}, found {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise OuroborosError(f"{path}: expected a {ndim}-d array, found shape {array.shape}")
    if finite and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=tuple(range(1, array.ndim))).sum()) if array.ndim > 1 else -1
        raise OuroborosError(f"{path}: contains NaN or infinite values ({bad} rows); re-run the step that writes it")
    return array


def load_images(path: str | os.PathLike) -> np.ndarray:
    """uint8 images, NHWC."""
    images = load_array(path, dtype=np.uint8, ndim=4)
    if images.shape[-1] not in (1, 3):
        raise OuroborosError(f"{path}: expected NHWC images with 1 or 3 channels, found shape {images.shape}")
    return images


def load_data(path: str | os.PathLike) -> np.ndarray:
    """The items of a data file: uint8 NHWC images, or finite float32 vectors N×d."""
    array = load_array(path)
    if array.ndim == 4:
        return load_images(path)
    if array.ndim != 2 or array.dtype != np.float32:
        raise OuroborosError(f"{path}: expected uint8 images N×H×W×C or float32 vectors N×d, found {array.dtype} "
                             f"{array.shape}; delete it and re-run the step that writes it")
    if not np.isfinite(array).all():
        raise OuroborosError(f"{path}: vectors contain NaN or infinite values; delete it and re-run the step that writes it")
    return array


def load_labels(path: str | os.PathLike) -> np.ndarray:
    """int64 class labels, one per image (-1: drawn by an unconditional model)."""
    return load_array(path, dtype=np.int64, ndim=1)


def load_features(path: str | os.PathLike) -> np.ndarray:
    """float32 features, (count, dim), all finite."""
    return load_array(path, dtype=np.float32, ndim=2, finite=True)


def load_features_for(images_path: str | os.PathLike, features_path: str | os.PathLike,
                      width: int | None = None) -> np.ndarray:
    """The features of an image file: one finite row per image, and ``width`` columns when given
    (the width of the other files they are compared with)."""
    feats = load_features(features_path)
    try:
        rows = np.load(images_path, mmap_mode="r", allow_pickle=False).shape[0]
    except (ValueError, OSError, EOFError) as exc:
        raise OuroborosError(
            f"{images_path}: not a readable .npy array ({exc}); delete it and re-run the step that writes it"
        ) from exc
    if rows != len(feats):
        raise OuroborosError(
            f"{features_path}: {len(feats)} feature rows for {rows} images in {images_path}; "
            "delete the features file and re-run"
        )
    if width is not None and feats.shape[1] != width:
        raise OuroborosError(
            f"{features_path}: {feats.shape[1]} features per row where the files it is compared with have "
            f"{width}; delete the features file and re-run"
        )
    return feats


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise OuroborosError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise OuroborosError(f"{path}: not valid JSON ({exc}); delete it and re-run the step that writes it") from exc
