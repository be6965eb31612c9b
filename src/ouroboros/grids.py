"""Image grids a person reads at a glance: tiles upscaled by nearest-neighbour to a legible
size, a light-grey gutter between them, and a label left of every row (as in the EDM and
diffusers sample grids). Also the files behind the image figures: G_n of a run and its nearest
images of D_n, found in the run's distance feature space as the paper does, not in pixels.

Only replicate 0 is drawn: its files keep the paths of ouroboros.paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ouroboros import paths

Case = tuple[str, str, list[int], str]  # (dataset, run, iterations, distance feature space)

GUTTER = 2  # pixels between tiles, in the upscaled image
GUTTER_COLOUR = (220, 220, 220)  # light grey, uint8 RGB
MIN_TILE = 64  # small images (8×8 digits) are upscaled by an integer factor to at least this


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """(count, h, w, c) → (count, h·factor, w·factor, c), each pixel a factor × factor block."""
    return images.repeat(factor, axis=1).repeat(factor, axis=2)


def factor_for(height: int, minimum: int = MIN_TILE) -> int:
    """The smallest integer upscaling that makes a tile at least ``minimum`` pixels tall."""
    return max(1, -(-minimum // height))


def compose(rows: list[np.ndarray], factor: int = 1, gutter: int = GUTTER,
            colour: tuple[int, int, int] = GUTTER_COLOUR) -> np.ndarray:
    """One RGB uint8 image from rows of (count, h, w, c) uint8 tiles (c = 1 or 3), each upscaled
    by ``factor``, with ``gutter`` pixels of ``colour`` between tiles; short rows end in gutter colour."""
    tiles = [upscale(_rgb(r), factor) for r in rows]
    h, w = tiles[0].shape[1:3]
    cols = max(len(r) for r in tiles)
    out = np.empty((len(tiles) * (h + gutter) - gutter, cols * (w + gutter) - gutter, 3), dtype=np.uint8)
    out[:] = np.asarray(colour, dtype=np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            out[i * (h + gutter): i * (h + gutter) + h, j * (w + gutter): j * (w + gutter) + w] = tile
    return out


def _rgb(images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(f"image grids take uint8 images, not {images.dtype}")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def draw(ax, rows: list[tuple[str, np.ndarray]], title: str = "") -> None:
    """Labelled rows of tiles on ``ax``: each label left of its row."""
    factor = factor_for(rows[0][1].shape[1])
    image = compose([images for _, images in rows], factor)
    ax.imshow(image, interpolation="nearest")  # the upscaling is done; no smoothing on screen
    height = rows[0][1].shape[1] * factor
    for i, (label, _) in enumerate(rows):
        ax.text(-3 * GUTTER, i * (height + GUTTER) + height / 2, label, ha="right", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def inches(rows: list[tuple[str, np.ndarray]], dpi: int = 120) -> tuple[float, float]:
    """A figure size that shows the composed grid at about one screen pixel per image pixel."""
    count, h, w = max(len(r) for _, r in rows), *rows[0][1].shape[1:3]
    f = factor_for(h)
    return (count * (w * f + GUTTER) / dpi + 1.4, len(rows) * (h * f + GUTTER) / dpi + 0.5)


def under(results: Path, path: str) -> Path:
    """A path of ouroboros.paths (relative to the working directory) under this results folder."""
    return results / Path(path).relative_to(paths.RESULTS)


def generation_dir(results: Path, dataset: str, run: str, n: int) -> Path:
    return under(results, paths.producer_dir(dataset, run, n))


def has_pairs(results: Path, dataset: str, run: str, n: int, space: str) -> bool:
    """Whether G_n (images: a grid shows no vectors), its features and D_n's manifest are on disk
    (replicate 0)."""
    folder = generation_dir(results, dataset, run, n)
    return space != paths.IDENTITY and all(f.is_file() for f in (
        folder / "samples.npy", folder / f"features-{space}.npy", under(results, paths.manifest(dataset, run, n))))


def nearest_pairs(results: Path, dataset: str, run: str, n: int, space: str,
                  count: int = 8) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The first ``count`` images of G_n, the image of D_n nearest to each in feature space
    ``space``, and a table of which (manifest row, source, distance)."""
    from ouroboros import manifest
    from ouroboros.io import load_features, load_images
    from ouroboros.neighbors import knn

    folder = generation_dir(results, dataset, run, n)
    generated = load_images(folder / "samples.npy")[:count]
    queries = load_features(folder / f"features-{space}.npy")[:count]
    m = manifest.read(under(results, paths.manifest(dataset, run, n)))
    # manifest paths are relative to the workflow's working directory, the parent of results/
    base = manifest.gather(m, lambda f: load_features(results.parent / f), lambda f: paths.features_of(f, space))
    dist, idx = knn(queries, base, 1)
    rows = idx[:, 0]
    images = {f: load_images(results.parent / f) for f in dict.fromkeys(m.file[rows])}
    nearest = np.stack([images[m.file[r]][m.row[r]] for r in rows])
    table = pd.DataFrame({"dataset": dataset, "run": run, "iteration": n, "feature_extractor": space,
                          "sample": np.arange(len(generated)), "train_row": rows, "train_source": m.source[rows],
                          "train_index": m.index[rows], "distance": dist[:, 0]})
    return generated, nearest, table


def pairs_figure(results: Path, rows_of_cases: list[list[Case]], count: int = 8) -> tuple[object, pd.DataFrame]:
    """One panel per case, laid out as given: for each of its iterations n, a row of G_n and
    below it a row of each image's nearest image of D_n; and the table of which and how far."""
    panels, tables = [], []
    for cases in rows_of_cases:
        panels.append([])
        for dataset, run, iterations, space in cases:
            rows = []
            for n in iterations:
                generated, nearest, table = nearest_pairs(results, dataset, run, n, space, count)
                rows += [(f"G_{n} sample", generated), (f"nearest in D_{n}", nearest)]
                tables.append(table)
            at = f" · n = {iterations[0]}" if len(iterations) == 1 else ""
            panels[-1].append((f"{dataset} · {run}{at}: nearest by {space} distance", rows))
    return _panels_figure(panels), pd.concat(tables, ignore_index=True)


def _panels_figure(rows_of_panels: list[list[tuple[str, list[tuple[str, np.ndarray]]]]]):
    """A figure of labelled grids: rows_of_panels[i][j] = (title, labelled rows of tiles)."""
    width = max(len(r) for r in rows_of_panels)
    w = max(inches(rows)[0] for panels in rows_of_panels for _, rows in panels)
    h = sum(max(inches(rows)[1] for _, rows in panels) + 0.4 for panels in rows_of_panels)
    fig, axes = pyplot().subplots(len(rows_of_panels), width, figsize=(w * width, h), squeeze=False)
    for ax_row, panels in zip(axes, rows_of_panels, strict=True):
        for ax in ax_row:
            ax.axis("off")
        for ax, (title, rows) in zip(ax_row, panels, strict=False):
            draw(ax, rows, title)
    fig.tight_layout()
    return fig


def _sample_files(run_dir: Path) -> list[Path]:
    """G_n of a run on disk, n = 1 (shared by every run of the dataset) first."""
    first = run_dir.parent / paths.REAL / paths.iter_name(1) / "samples.npy"
    return ([first] if first.is_file() else []) + sorted(run_dir.glob("iter*/samples.npy"))


def sample_rows(files: list[Path], count: int = 10) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` images of each G_n file (_sample_files), one labelled row per iteration."""
    from ouroboros.io import load_images

    return [(f"n = {int(f.parent.name.removeprefix('iter'))}", load_images(f)[:count]) for f in files]


def _holds_vectors(path: Path) -> bool:
    return np.load(path, mmap_mode="r", allow_pickle=False).ndim != 4


def sample_grids(results: Path, count: int = 10, log=print) -> dict[str, object]:
    """Figs. 15–20: the first images of G_n of each run, one labelled row per iteration. A run of
    vectors (a dataset of ``source: gaussian``) has no images to show: skipped, with one log line."""
    out = {}
    runs = [p for p in results.glob("*/*") if p.is_dir() and p.name not in (paths.REAL, paths.REFERENCE)
            and p.parent.name not in ("tables", "figures")]
    for run_dir in sorted(runs):
        name = f"samples_{run_dir.parent.name}_{run_dir.name}"
        samples = _sample_files(run_dir)
        if not samples or samples[-1].parent.parent != run_dir:
            continue  # not a run's folder (the fresh rows'), or a run with no G_n of its own yet
        if _holds_vectors(samples[0]):
            log(f"skipped {name}: its samples are vectors, not images")
            continue
        rows = sample_rows(samples, count)
        fig, ax = pyplot().subplots(figsize=inches(rows))
        draw(ax, rows, f"{run_dir.parent.name} · {run_dir.name}: first samples of G_n")
        out[name] = fig
    return out
