"""The selection registry: the contract every registered method passes, plug-ins loaded from
config.yaml, parameters checked when config.yaml is read, and the worked-example knn_entropy."""

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from ouroboros import manifest, select, selectors
from ouroboros.config import parse
from ouroboros.errors import OuroborosError
from ouroboros.metrics import KL_EPS

# every method registered: the paper's, config.yaml's selectors: (the shipped knn_entropy), and
# yours while you write it: OUROBOROS_SELECTORS=my_selection.py pytest tests/test_selectors.py -k contract
selectors.builtin()
selectors.load_plugins(yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text()).get("selectors") or [])
selectors.load_plugins([e for e in os.environ.get("OUROBOROS_SELECTORS", "").split(",") if e])
METHODS = sorted(selectors.REGISTRY)


def example_params(selector: selectors.Selector) -> dict:
    """Each parameter's default, else its example (auto: a distance of this test's scale)."""
    out = {k: (p.default if not p.required else p.example) for k, p in selector.params.items()}
    return {k: (0.5 if v == selectors.AUTO else v) for k, v in out.items()}


def run(name: str, features: np.ndarray, n: int, seed: int) -> np.ndarray:
    selector = selectors.get(name)
    return selector(features, n, seed=seed, **example_params(selector))[0]


def test_the_paper_methods_and_the_plugin_are_registered():
    assert {"all", "random", "greedy", "threshold_decay", "knn_entropy"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_contract_exactly_n_distinct_pool_indices_deterministic_for_a_seed(name):
    x = np.random.default_rng(0).normal(size=(60, 5))
    selector = selectors.get(name)
    chosen = run(name, x, 20, seed=3)
    expected = len(x) if selector.keeps_all else 20
    assert len(chosen) == expected and len(set(chosen.tolist())) == expected
    assert chosen.min() >= 0 and chosen.max() < len(x) and chosen.dtype == np.int64
    np.testing.assert_array_equal(chosen, run(name, x, 20, seed=3))


@pytest.mark.parametrize("name", [m for m in METHODS if not selectors.get(m).keeps_all])
def test_contract_a_pool_smaller_than_n_fails_naming_both_sizes(name):
    x = np.random.default_rng(1).normal(size=(5, 3))
    with pytest.raises(OuroborosError, match=r"select 6 points from a pool of 5"):
        run(name, x, 6, seed=0)


@pytest.mark.parametrize("name", METHODS)
def test_contract_no_source_is_favoured_on_exact_ties(name):
    # the pool is real ∪ G with G an exact copy of real: every choice is a tie between the two
    # copies of a point, and the copy taken must not depend on where its source sits in the pool
    x = np.random.default_rng(2).normal(size=(24, 4))
    pool = np.concatenate([x, x])
    first = [np.mean(run(name, pool, 24, seed=s) < 24) for s in range(30)]
    share = float(np.mean(first))
    # 30 seeds × 24 fair coin flips: the share's sd is about 0.02; 0.35–0.65 is beyond 7 sd
    assert 0.35 < share < 0.65, f"{name} takes the first source's copy {share:.2f} of the time"


def test_knn_entropy_equals_brute_force_greedy_on_the_estimate():
    x = np.random.default_rng(5).normal(size=(40, 3))
    x[7] = x[3]  # an exact duplicate: it must not be chosen while distinct points remain
    n, seed = 12, 9

    def total(rows):  # Σ log(r + eps) over the set: the estimate up to terms equal for every candidate
        s = x[rows]
        d = np.sqrt(((s[:, None] - s[None]) ** 2).sum(-1)) + np.diag(np.full(len(s), np.inf))
        return np.log(d.min(axis=1) + KL_EPS).sum()

    order = np.random.default_rng(seed).permutation(len(x))
    chosen = [int(order[0])]
    while len(chosen) < n:  # argmax over candidates in the seeded order: the first maximum wins
        scores = [(total(chosen + [int(c)]), -pos) for pos, c in enumerate(order) if c not in chosen]
        best = max(scores)
        chosen.append(int(order[-best[1]]))
    got, info = selectors.get("knn_entropy")(x, n, seed=seed)
    np.testing.assert_array_equal(got, chosen)
    assert info["sum_log_nn"] == pytest.approx(total(chosen))
    assert not {3, 7} <= set(got.tolist())


def test_knn_entropy_refuses_a_distance_matrix_too_large(monkeypatch):
    from ouroboros import knn_entropy

    monkeypatch.setattr(knn_entropy, "MAX_MATRIX", 100)
    with pytest.raises(OuroborosError, match="use greedy"):
        knn_entropy.knn_entropy(np.zeros((20, 2)), 10, seed=0)


PLUGIN = '''
import numpy as np
from ouroboros.selectors import Param, register

@register("every_other", params={"offset": Param((int,), default=0, check=lambda v: v in (0, 1), rule="0 or 1")})
def every_other(features, n, *, seed, offset=0):
    """Rows offset, offset+2, ... (a deterministic toy: it ignores the seed)."""
    return np.arange(offset, len(features), 2)[:n]
'''


def raw_config(runs: dict, **top) -> dict:
    dataset = {"source": "digits", "size": 32, "model": "micro8", "train": {"steps": 2}, "sample": {},
               "features": "pixels", "fid_features": "pixels", "tau0": 1.5}
    return {"seed": 0, "datasets": {"d": dataset}, "runs": runs, **top}


def test_a_plugin_file_named_in_config_registers_a_method_with_checked_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(PLUGIN)
    cfg = parse(raw_config({"e": {"paradigm": "accumulate", "selection": "every_other", "offset": 1}},
                           selectors=["mine.py"]))
    assert cfg.selection_params("d", "e") == {"offset": 1}
    assert selectors.get("every_other")(np.zeros((9, 2)), 3, seed=0)[0].tolist() == [0, 2, 4]
    for bad, message in (({"offset": 2}, r"runs\.e\.offset = 2: must be 0 or 1"),
                         ({"offset": "1"}, r"runs\.e\.offset = '1': expected int"),
                         ({"ofset": 1}, r"runs\.e\.ofset: unknown key.*parameters of selection 'every_other': offset")):
        with pytest.raises(OuroborosError, match=message):
            parse(raw_config({"e": {"paradigm": "accumulate", "selection": "every_other", **bad}}, selectors=["mine.py"]))
    with pytest.raises(OuroborosError, match=r"selectors\[0\] = 'gone\.py': no such file"):
        parse(raw_config({}, selectors=["gone.py"]))
    with pytest.raises(OuroborosError, match=r"unknown selection 'nope'.*selectors:"):
        parse(raw_config({"e": {"paradigm": "accumulate", "selection": "nope"}}))


def test_a_required_parameter_without_an_example_cannot_be_registered():
    with pytest.raises(OuroborosError, match="needs an example"):
        selectors.register("untestable", params={"k": selectors.Param((int,))})(lambda f, n, *, seed, k: None)


def test_tau0_falls_back_to_the_dataset_and_decay_is_required():
    cfg = parse(raw_config({"t": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8},
                            "u": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8, "tau0": "auto"}}))
    assert cfg.selection_params("d", "t") == {"tau0": 1.5, "decay": 0.8}
    assert cfg.tau0("d", "u") == "auto"
    with pytest.raises(OuroborosError, match=r"runs\.t\.decay is required"):
        parse(raw_config({"t": {"paradigm": "accumulate", "selection": "threshold_decay"}}))


# --- paradigm options -----------------------------------------------------------------------

def test_equal_quotas_take_n_over_m_from_each_source_the_remainder_from_the_earliest():
    assert select.equal_quotas(48, [48] * 4) == [12, 12, 12, 12]
    assert select.equal_quotas(10, [5] * 4) == [3, 3, 2, 2]
    assert sum(select.equal_quotas(97, [97] * 7)) == 97
    with pytest.raises(OuroborosError, match="needs 5 images from source 1"):
        select.equal_quotas(10, [10, 4])


def test_equal_shares_draw_each_quota_uniformly_within_its_source():
    counts = [10, 20, 30]
    chosen = select.equal_shares(counts, 9, seed=1)
    sources = np.searchsorted(np.cumsum(counts), chosen, side="right")
    assert np.bincount(sources).tolist() == [3, 3, 3] and len(set(chosen.tolist())) == 9
    # over seeds, every row of a source is as likely as any other
    hits = np.bincount(np.concatenate([select.equal_shares(counts, 9, seed=s) for s in range(2000)]), minlength=60)
    for lo, hi, q in ((0, 10, 3), (10, 30, 3), (30, 60, 3)):
        assert hits[lo:hi].mean() == pytest.approx(2000 * q / (hi - lo))
        assert hits[lo:hi].min() > 0.8 * 2000 * q / (hi - lo)


def test_run_keys_share_and_fresh_are_checked_across_keys():
    with pytest.raises(OuroborosError, match=r"runs\.g\.share: equal .* needs paradigm accumulate and selection random"):
        parse(raw_config({"g": {"paradigm": "accumulate", "selection": "greedy", "share": "equal"}}))
    with pytest.raises(OuroborosError, match=r"runs\.r\.train sets both steps and epochs"):
        parse(raw_config({"r": {"paradigm": "replace", "selection": "all", "train": {"steps": 1, "epochs": 1}}}))


def test_train_options_take_the_runs_keys_from_iteration_2():
    cfg = parse(raw_config({"f": {"paradigm": "replace", "selection": "all", "init": "previous",
                                  "train": {"epochs": 3, "lr": 1e-5}}}))
    assert cfg.train_options("d", "f", 1)["steps"] == 2  # iteration 1 is shared: the dataset's
    two = cfg.train_options("d", "f", 2)
    assert (two["steps"], two["epochs"], two["lr"]) == (None, 3, 1e-5)


def test_select_features_default_to_the_datasets_features():
    raw = raw_config({"a": {"paradigm": "accumulate", "selection": "greedy"},
                      "p": {"paradigm": "accumulate", "selection": "greedy", "select_features": "classifier"}})
    raw["datasets"]["d"]["features"] = "dinov2"
    cfg = parse(raw)
    assert (cfg.select_features("d", "a"), cfg.select_features("d", "p")) == ("dinov2", "classifier")
    raw["datasets"]["d"]["select_features"] = "pixels"
    assert parse(raw).select_features("d", "a") == "pixels"


def test_fresh_rows_are_consecutive_and_fail_naming_the_key_when_the_source_runs_out():
    from ouroboros import paths

    cfg = parse(raw_config({"f": {"paradigm": "replace", "selection": "all", "fresh": 0.5},
                            "g": {"paradigm": "replace", "selection": "all", "fresh": 0.5, "samples": 2}}))
    rows = [paths.fresh_rows(cfg, "d", "f", n) for n in range(2, 6)]
    assert rows == [(0, 16), (16, 16), (32, 16), (48, 16)]
    assert paths.fresh_rows(cfg, "d", "f", 1) == (0, 0)
    assert paths.fresh_rows(cfg, "d", "g", 3) == (32, 32)  # a keep-all method: λ of the 2N pool
    assert paths.fresh_images("d") in paths.train_files(cfg, "d", "f", 2)
    # digits holds 1,797: 1,765 beyond D_1 = 110 iterations of 16
    with pytest.raises(OuroborosError, match=r"runs\.f\.fresh = 0\.5 needs 1776 real images .* iter112"):
        paths.fresh_rows(cfg, "d", "f", 112)


def test_fresh_images_are_the_source_outside_d1(tmp_path):
    from ouroboros import data
    from ouroboros.io import load_images

    data.fresh_stage("digits", None, 32, seed=0, dataset="d", images_out=str(tmp_path / "f.npy"),
                     labels_out=str(tmp_path / "l.npy"))
    fresh = load_images(tmp_path / "f.npy")
    d1, _ = data.prepare("digits", None, 32, seed=0, dataset="d")
    everything, _ = data.digits()
    assert len(fresh) == 1797 - 32
    key = lambda a: {r.tobytes() for r in a}  # noqa: E731
    assert key(fresh) | key(d1) == key(everything)
    assert len(key(fresh) & key(d1)) <= len(everything) - len(key(everything))  # only the source's own duplicates


def write_pool(root, sources):
    for folder, name, feats in sources:
        (root / folder).mkdir(parents=True, exist_ok=True)
        np.save(root / folder / name, np.zeros((len(feats), 2, 2, 1), dtype=np.uint8))
        np.save(root / folder / "features-pixels.npy", feats.astype(np.float32))


@pytest.mark.parametrize(("share", "method", "fresh"), [("equal", "random", 0), ("uniform", "greedy", 4),
                                                        ("uniform", "all", 5)])
def test_stage_manifests_hold_the_shares_they_promise(tmp_path, share, method, fresh):
    rng = np.random.default_rng(0)
    write_pool(tmp_path, [("real", "images.npy", rng.normal(size=(12, 3))), ("g1", "samples.npy", rng.normal(size=(12, 3))),
                          ("g2", "samples.npy", rng.normal(size=(12, 3))), ("fresh", "images.npy", rng.normal(size=(30, 3)))])
    pool = [("real", str(tmp_path / "real/images.npy")), ("G01", str(tmp_path / "g1/samples.npy"))]
    if method != "all":
        pool.append(("G02", str(tmp_path / "g2/samples.npy")))
    spec = select.Fresh(str(tmp_path / "fresh/images.npy"), 7, fresh) if fresh else None
    select.stage(pool, "pixels", 12, method, seed=1, share=share, fresh=spec, manifest_out=str(tmp_path / "train.tsv"),
                 info_out=str(tmp_path / "selection.json"))
    m = manifest.read(tmp_path / "train.tsv")
    counts = {s: int(np.sum(m.source == s)) for s in np.unique(m.source)}
    if share == "equal":
        assert counts == {"real": 4, "G01": 4, "G02": 4}
    else:
        assert counts["fresh"] == fresh and len(m) == (24 if method == "all" else 12)
        assert m.row[m.source == "fresh"].tolist() == list(range(7, 7 + fresh))
    assert len({(f, r) for f, r in zip(m.file, m.row, strict=True)}) == len(m)
    info = json.loads((tmp_path / "selection.json").read_text())
    assert info["source_shares"] == pytest.approx({s: c / len(m) for s, c in counts.items()})


def test_stage_fails_naming_the_key_when_fresh_images_run_out(tmp_path):
    rng = np.random.default_rng(0)
    write_pool(tmp_path, [("real", "images.npy", rng.normal(size=(12, 3))), ("fresh", "images.npy", rng.normal(size=(5, 3)))])
    with pytest.raises(OuroborosError, match=r"fresh real images run out.*runs\.<run>\.fresh"):
        select.stage([("real", str(tmp_path / "real/images.npy"))], "pixels", 6, "random", seed=0,
                     fresh=select.Fresh(str(tmp_path / "fresh/images.npy"), 3, 3),
                     manifest_out=str(tmp_path / "t.tsv"), info_out=str(tmp_path / "s.json"))
    assert not (tmp_path / "t.tsv").exists()


def test_fine_tuning_starts_from_the_previous_weights(tmp_path):
    import torch

    from ouroboros import data, models, train
    from ouroboros.config import TrainConfig

    images, _ = data.prepare("digits", None, 16, seed=0, dataset="d")
    cfg = TrainConfig(steps=2, batch_size=8, lr=1e-3, warmup_steps=0, weight_decay=0.0)
    train.train(images, "micro8", cfg, seed=1, out_dir=tmp_path / "first", progress=False)
    # a learning rate of 1e-12 moves no weight by more than ~1e-11: the result is the starting point
    still = TrainConfig(steps=1, batch_size=8, lr=1e-12, warmup_steps=0, weight_decay=0.0)
    train.train(images, "micro8", still, seed=2, out_dir=tmp_path / "tuned", progress=False, init_from=tmp_path / "first")
    train.train(images, "micro8", still, seed=2, out_dir=tmp_path / "scratch", progress=False)
    first, tuned, scratch = (models.load(tmp_path / k).state_dict() for k in ("first", "tuned", "scratch"))
    assert all(torch.allclose(first[k], tuned[k], atol=1e-9) for k in first)
    assert not all(torch.allclose(first[k], scratch[k], atol=1e-3) for k in first)
    assert json.loads((tmp_path / "tuned/training.json").read_text())["init_from"] == str(tmp_path / "first")
    with pytest.raises(OuroborosError, match="architecture differs"):
        train.train(images, "tiny8", still, seed=2, out_dir=tmp_path / "x", progress=False, init_from=tmp_path / "first")
    with pytest.raises(OuroborosError, match="no saved model to fine-tune from"):  # and no wait on the hub
        train.train(images, "micro8", still, seed=2, out_dir=tmp_path / "y", progress=False, init_from=tmp_path / "none")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_each_combination_of_run_options_parses():
    for share, fresh, init in itertools.product(("uniform", "equal"), (0, 0.25), ("scratch", "previous")):
        cfg = parse(raw_config({"r": {"paradigm": "accumulate", "selection": "random", "share": share, "fresh": fresh,
                                      "init": init}}))
        r = cfg.run("r")
        assert (r.share, r.fresh, r.init) == (share, fresh, init) and not math.isnan(r.fresh)


def test_a_parameter_may_not_take_a_run_key_or_an_argument_of_the_call():
    for taken in ("samples", "method", "seed", "n"):
        with pytest.raises(OuroborosError, match=f"parameter '{taken}' is a run key or an argument"):
            selectors.register("clash", params={taken: selectors.Param((int,), default=1)})(lambda f, n, *, seed: None)
    assert "clash" not in selectors.REGISTRY


def test_a_name_registered_from_two_places_is_refused_but_rereading_one_file_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "sel.py").write_text(PLUGIN.replace("every_other", "twice"))
    selectors.load_plugins(["a/sel.py"])
    selectors.load_plugins(["a/sel.py"])  # config.yaml read again in the same process
    with pytest.raises(OuroborosError, match="'twice' is registered twice"):
        selectors.load_plugins(["b/sel.py"])
    with pytest.raises(OuroborosError, match="'greedy' is registered twice"):
        selectors.register("greedy")(lambda f, n, *, seed: None)


def test_a_datasets_tau0_serves_only_runs_selecting_in_its_space():
    raw = raw_config({"t": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8},
                      "p": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8,
                            "select_features": "classifier"},
                      "q": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8,
                            "select_features": "classifier", "tau0": 2.0}})
    cfg = parse(raw)
    assert cfg.tau0("d", "t") == 1.5 and cfg.tau0("d", "q") == 2.0
    with pytest.raises(OuroborosError, match=r"runs\.p\.tau0 is required"):
        cfg.tau0("d", "p")  # 1.5 is a pixel distance; p selects in classifier space
    raw["datasets"]["d"]["tau0"] = "auto"  # measured in whichever space the run selects in
    assert parse(raw).tau0("d", "p") == "auto"
    raw["datasets"]["d"]["select_features"] = "classifier"  # now the dataset's own selection space
    raw["datasets"]["d"]["tau0"] = 0.7
    assert parse(raw).tau0("d", "p") == 0.7


def test_an_unknown_selection_names_the_runs_key():
    with pytest.raises(OuroborosError, match=r"runs\.e\.selection: unknown selection 'nope'"):
        parse(raw_config({"e": {"paradigm": "accumulate", "selection": "nope"}}))


def test_a_fresh_share_that_leaves_nothing_to_select_fails_naming_the_key():
    from ouroboros import paths

    cfg = parse(raw_config({"f": {"paradigm": "accumulate", "selection": "greedy", "fresh": 0.99}}))
    with pytest.raises(OuroborosError, match=r"runs\.f\.fresh = 0\.99 makes all 32 images of D_n fresh"):
        paths.fresh_rows(cfg, "d", "f", 2)


def test_knn_entropy_says_before_the_dag_runs_where_it_cannot_fit():
    from ouroboros import knn_entropy

    assert knn_entropy.fits(192, 48) is None
    assert "65536 × 32768 exceeds" in knn_entropy.fits(65536, 32768)
    assert selectors.get("knn_entropy").fits is knn_entropy.fits
