"""The generator registry: the contract every registered generator passes (ddpm, gaussian, kde,
config.yaml's generators:, yours while you write it: OUROBOROS_GENERATORS=my_generator.py pytest
tests/test_generators.py -k contract, and the walk-through of docs/extending.md), the closed-form
generators' known answers, vector data, and the import graph of the registries."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from ouroboros import closed_form, data, generators
from ouroboros.config import parse
from ouroboros.errors import OuroborosError
from ouroboros.io import load_data, save_array

REPO = Path(__file__).resolve().parents[1]
generators.builtin()
generators.load_plugins(yaml.safe_load((REPO / "config.yaml").read_text()).get("generators") or [])
generators.load_plugins([e for e in os.environ.get("OUROBOROS_GENERATORS", "").split(",") if e],
                        where="OUROBOROS_GENERATORS")
NAMES = sorted(generators.REGISTRY)
# the DDPM at the smallest cost that still runs every step of its fit and sampler
DDPM = {"params": {"steps": 3, "batch_size": 8, "warmup_steps": 1}, "preset": "micro8",
        "sample": {"inference_steps": 2, "batch_size": 5}}


def example_params(g: generators.Generator) -> dict:
    out = {k: (p.default if not p.required else p.example) for k, p in g.params.items()}
    return {k: (0.1 if v == generators.AUTO else v) for k, v in out.items()}


def items(kind: str, count: int = 24) -> tuple[np.ndarray, np.ndarray]:
    if kind == "vectors":
        x, labels = data.gaussian_source(3, 1.0, count, 7)
        return x, labels
    images, labels = data.digits()
    return images[:count], labels[:count]


def fitted(name: str, kind: str, folder: Path):
    g = generators.get(name)
    x, labels = items(kind)
    job = {"params": example_params(g)}
    if name == "ddpm" or g.unet:  # a UNet family (ddpm, flow): the DDPM's smallest training on its preset
        job = {"params": DDPM["params"] | example_params(g), "preset": DDPM["preset"]}
    g.fit(x, labels, folder, seed=11, **job)
    return g, x


def draw(g, model, start, count, seed):
    return g.sample(model, start, count, seed=seed, **(DDPM["sample"] if g.name == "ddpm" or g.unet else {}))


CASES = [(n, k) for n in NAMES for k in generators.get(n).kinds]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_contract_seeded_items_a_prefix_and_a_round_trip_through_files(name, kind, tmp_path):
    g, x = fitted(name, kind, tmp_path / "model")
    model = g.load(tmp_path / "model")
    n = 6
    two_n, two_n_labels = draw(g, model, 0, 2 * n, seed=3)
    first, first_labels = draw(g, model, 0, n, seed=3)
    second, _ = draw(g, model, n, n, seed=3)
    # the kind, shape and dtype of what it was fitted on, one int64 label per item
    assert two_n.dtype == x.dtype and two_n.shape == (2 * n, *x.shape[1:])
    assert two_n_labels.dtype == np.int64 and two_n_labels.shape == (2 * n,)
    # per-item seeds: the first N of 2N are the N, and item i does not depend on its batch
    assert np.array_equal(two_n[:n], first) and np.array_equal(two_n[n:], second)
    assert np.array_equal(two_n_labels[:n], first_labels)
    assert np.array_equal(draw(g, model, 0, n, seed=3)[0], first)  # deterministic for a seed
    assert not np.array_equal(draw(g, model, 0, n, seed=4)[0], first)  # another seed, other items
    # save and load again: the same model, the same items
    g.save(model, tmp_path / "again")
    assert np.array_equal(draw(g, g.load(tmp_path / "again"), 0, n, seed=3)[0], first)
    assert generators.of_model_dir(tmp_path / "again").name == name


@pytest.mark.parametrize("name", NAMES)
def test_contract_bad_parameters_fail_when_config_yaml_is_read(name):
    g = generators.get(name)
    kind = "vectors" if "vectors" in g.kinds else "images"
    entry = {"source": "gaussian" if kind == "vectors" else "digits", "size": 16, "model": name,
             "features": "identity" if kind == "vectors" else "pixels", "fid_features": "pixels",
             "train": {"steps": 1}, "sample": {}}
    if kind == "vectors":
        entry["fid_features"] = "identity"
    if name == "ddpm" or g.unet:
        entry["model"] = DDPM["preset"]
    if g.unet:
        entry["generator"] = name
    raw = {"seed": 0, "datasets": {"d": entry}, "runs": {"replace": {"paradigm": "replace", "selection": "all"}}}
    with pytest.raises(OuroborosError, match=r"datasets\.d\.model_params\.no_such_key: generator .* has no such"):
        parse({**raw, "datasets": {"d": {**entry, "model_params": {"no_such_key": 1}}}})
    for key in g.params:
        with pytest.raises(OuroborosError, match=rf"datasets\.d\.model_params\.{key} = \[1, 2\]"):
            parse({**raw, "datasets": {"d": {**entry, "model_params": {**example_params(g), key: [1, 2]}}}})
    for key, spec in g.params.items():
        if spec.required:
            with pytest.raises(OuroborosError, match=rf"datasets\.d\.model_params\.{key} is required"):
                parse({**raw, "datasets": {"d": {**entry, "model_params": {}}}})
    parse({**raw, "datasets": {"d": {**entry, "model_params": example_params(g)}}})  # and the example passes


def docs_generator() -> str:
    """The module of the "Adding a generator" walk-through (docs/extending.md), as written there."""
    text = (REPO / "docs" / "extending.md").read_text()
    section = text[text.index("## Adding a generator"):]
    return textwrap.dedent(re.search(r"```python\n(.*?)```", section, re.S)[1])


@pytest.mark.cli  # a second pytest in a fresh interpreter (6 CPU-s): not the fast tier's in-process kind
def test_the_docs_walk_through_passes_the_contract(tmp_path):
    """The docs' example generator, written to a file and named in OUROBOROS_GENERATORS, passes
    this file's contract tests in a fresh interpreter."""
    plugin = tmp_path / "my_generator.py"
    plugin.write_text(docs_generator())
    env = {**os.environ, "OUROBOROS_GENERATORS": str(plugin)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(Path(__file__)), "-k", "contract and box"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b[3-9] passed", proc.stdout), proc.stdout[-1000:]


# --- the closed forms, in-process (the theory experiment checks them through the workflow) ------


def refit_chain(name: str, x: np.ndarray, labels: np.ndarray, generations: int, seed: int, tmp: Path, **params):
    """D_1 = x, then D_(n+1) = N samples of the model fitted on D_n (replace), through the
    generator's own fit, files and sampler."""
    g = generators.get(name)
    out = [(x, labels)]
    for n in range(1, generations):
        folder = tmp / f"g{n}"
        g.fit(out[-1][0], out[-1][1], folder, params=params, seed=0)
        out.append(g.sample(g.load(folder), 0, len(x), seed=seed * 1000 + n))
    return out


def test_gaussian_refit_loses_variance_by_n_minus_1_over_n_per_generation(tmp_path):
    x, labels = data.gaussian_source(2, 0.0, 8, 0)
    reps, generations, n = 300, 4, len(x)
    traces = np.array([[np.var(d.astype(np.float64), axis=0).sum() for d, _ in
                        refit_chain("gaussian", x, labels, generations, r, tmp_path / str(r))] for r in range(reps)])
    expected = traces[0, 0] * ((n - 1) / n) ** np.arange(generations)
    mean, se = traces.mean(0), traces.std(0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(mean - expected) <= 4 * se + 1e-12), (mean, expected, se)
    assert mean[-1] < 0.8 * mean[0]  # (7/8)^3 = 0.67: the loss is there, not noise


def test_kde_coalesces_as_wright_fisher_and_its_variance_follows_its_recursion(tmp_path):
    x, labels = data.gaussian_source(2, 0.0, 10, 1)
    reps, generations, n, h = 200, 4, len(x), 0.3
    shares, variances = [], []
    for r in range(reps):
        chain = refit_chain("kde", x, labels, generations, r, tmp_path / str(r), bandwidth=h)
        shares.append([np.mean([a == b for i, a in enumerate(lab) for b in lab[i + 1:]]) for _, lab in chain])
        variances.append([np.var(d.astype(np.float64), axis=0).sum() for d, _ in chain])
    shares, variances = np.array(shares), np.array(variances)
    a, k = (n - 1) / n, np.arange(generations)
    coalesced = 1 - a**k
    v1 = variances[0, 0]
    var_expected = a**k * v1 + 2 * (n - 1) * h**2 * (1 - a**k)  # two coordinates
    for measured, expected in ((shares, coalesced), (variances, var_expected)):
        se = measured.std(0, ddof=1) / np.sqrt(reps)
        assert np.all(np.abs(measured.mean(0) - expected) <= 4 * se + 1e-12), (measured.mean(0), expected, se)


def test_kde_auto_bandwidth_is_the_median_spacing_over_root_d(tmp_path):
    x, labels = data.gaussian_source(4, 0.0, 50, 2)
    d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    assert closed_form.auto_bandwidth(x) == pytest.approx(np.median(d.min(1)) / 2.0, rel=1e-5)
    summary = generators.get("kde").fit(x, labels, tmp_path / "m", params={"bandwidth": "auto"}, seed=0, real=x)
    assert summary["bandwidth"] == pytest.approx(closed_form.auto_bandwidth(x))
    with pytest.raises(OuroborosError, match="measured on D_1"):
        generators.get("kde").fit(x, labels, tmp_path / "n", params={"bandwidth": "auto"}, seed=0)


# --- vector data ----------------------------------------------------------------------------


def test_the_gaussian_source_has_its_spectrum_in_a_seeded_rotation():
    x, labels = data.gaussian_source(3, 1.0, 20000, 5)
    cov = data.gaussian_covariance(3, 1.0, seed=5)
    assert np.allclose(np.linalg.eigvalsh(cov), [1 / 3, 1 / 2, 1], atol=1e-12)
    assert np.allclose(np.cov(x.T.astype(np.float64)), cov, atol=0.03)
    assert not np.allclose(cov, np.diag(np.diag(cov)), atol=0.05)  # rotated: no coordinate is special
    assert x.dtype == np.float32 and np.array_equal(labels, np.arange(20000))
    assert np.array_equal(data.gaussian_source(3, 1.0, 20000, 5)[0], x)
    assert not np.array_equal(data.gaussian_source(3, 1.0, 20000, 6)[0], x)


def test_vectors_load_from_npz_and_data_files_refuse_other_kinds(tmp_path):
    np.savez(tmp_path / "v.npz", x=np.ones((5, 2), np.float64))
    x, labels = data.load_source("npz", str(tmp_path / "v.npz"))
    assert x.dtype == np.float32 and x.shape == (5, 2) and labels.tolist() == [0] * 5
    np.savez(tmp_path / "bad.npz", x=np.ones((5, 2, 2), np.float32))
    with pytest.raises(OuroborosError, match=r"bad.npz: expected float vectors N×d in 'x'"):
        data.load_source("npz", str(tmp_path / "bad.npz"))
    save_array(tmp_path / "ints.npy", np.ones((4, 3), np.int64))
    with pytest.raises(OuroborosError, match=r"ints.npy: expected uint8 images N×H×W×C or float32 vectors N×d"):
        load_data(tmp_path / "ints.npy")
    save_array(tmp_path / "nan.npy", np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(OuroborosError, match=r"nan.npy: vectors contain NaN"):
        load_data(tmp_path / "nan.npy")


@pytest.mark.parametrize(("change", "message"), [
    ({"model": "micro8"}, r"datasets\.v\.model = 'micro8': generator ddpm fits images, not the vectors"),
    ({"features": "pixels"}, r"datasets\.v\.features = 'pixels': the gaussian source holds vectors.*identity"),
    ({"classes": 3}, r"datasets\.v\.classes: generator kde is not class-conditional"),
    ({"model": "resnet-nope"}, r"datasets\.v\.model = 'resnet-nope' is not a model preset or a generator"),
])
def test_a_vector_dataset_is_checked_when_config_yaml_is_read(change, message):
    entry = {"source": "gaussian", "gaussian": {"dim": 2}, "size": 16, "model": "kde",
             "model_params": {"bandwidth": 0.1}, "features": "identity", "fid_features": "identity", **change}
    if entry["model"] != "kde":
        entry |= {"train": {"steps": 1}, "sample": {}}
        del entry["model_params"]
    raw = {"seed": 0, "datasets": {"v": entry}, "runs": {"replace": {"paradigm": "replace", "selection": "all"}}}
    with pytest.raises(OuroborosError, match=message):
        parse(raw)


@pytest.mark.parametrize(("source", "space", "message"), [
    ("gaussian", "pixels", r"runs\.g\.select_features = 'pixels' cannot select on datasets\.d, which holds vectors"),
    ("digits", "identity", r"runs\.g\.select_features = 'identity' cannot select on datasets\.d, which holds images"),
])
def test_a_runs_own_selection_space_is_checked_against_each_dataset_it_targets(source, space, message):
    vectors = source == "gaussian"
    entry = {"source": source, "size": 16, "model": "kde", "model_params": {"bandwidth": 0.1},
             "features": "identity" if vectors else "pixels", "fid_features": "identity" if vectors else "pixels"}
    runs = {"g": {"paradigm": "accumulate", "selection": "greedy", "select_features": space}}
    raw = {"seed": 0, "datasets": {"d": entry}, "runs": runs}
    cfg = parse(raw)  # no target names the pair: nothing to refuse yet
    with pytest.raises(OuroborosError, match=message):  # the select job's planning asks for it
        cfg.select_features("d", "g")
    with pytest.raises(OuroborosError, match=message):  # a target group naming both is refused when read
        parse(raw | {"targets": {"datasets": ["d"], "runs": ["g"], "iterations": 2}})


# --- the registries import no algorithm --------------------------------------------------------


def test_reading_config_imports_no_algorithm_module_and_the_registries_import_none():
    code = ("import sys, ouroboros.config, ouroboros.paths; "
            "print(sorted(m for m in sys.modules if m.startswith(('ouroboros.', 'torch', 'diffusers'))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=REPO).stdout.replace("'", '"'))
    for algorithm in ("ouroboros.select", "ouroboros.closed_form", "ouroboros.models", "ouroboros.train", "torch"):
        assert algorithm not in loaded
    for registry in ("selectors", "generators", "features"):
        source = (REPO / "src/ouroboros" / f"{registry}.py").read_text()
        imports = set(re.findall(r"^\s*(?:from|import) (ouroboros\.\w+)", source, re.M))
        assert imports <= {"ouroboros.errors", "ouroboros.selectors", "ouroboros.io", "ouroboros.paths",
                           "ouroboros.policy", "ouroboros.classifier"}, (registry, imports)
