"""The recursion (which files iteration n reads) and manifests (D_n without copies)."""

import numpy as np
import pytest

from ouroboros import manifest, paths
from ouroboros.config import parse
from ouroboros.errors import OuroborosError
from ouroboros.io import save_array

RAW = {
    "seed": 0,
    "datasets": {"d": {"source": "digits", "size": 10, "model": "tiny8", "train": {"steps": 1},
                       "sample": {}, "features": "pixels", "fid_features": "classifier", "tau0": 1.0}},
    "runs": {
        "rep": {"paradigm": "replace", "selection": "all"},
        "rep2": {"paradigm": "replace", "selection": "greedy", "samples": 2},
        "acc": {"paradigm": "accumulate", "selection": "random"},
    },
}


def test_replace_pool_is_previous_generation_and_iteration_1_is_shared():
    cfg = parse(RAW)
    assert paths.pool(cfg, "d", "rep", 2) == [paths.Source("G01", ("results/d/real/iter01/samples.npy",))]
    assert paths.pool(cfg, "d", "rep", 4) == [paths.Source("G03", ("results/d/rep/iter03/samples.npy",))]
    assert paths.model_dir("d", "rep", 1) == "results/d/real/iter01/model"
    assert paths.manifest("d", "acc", 1) == "results/d/real/train.tsv"


def test_2n_runs_extend_the_shared_first_generation():
    cfg = parse(RAW)
    assert paths.sample_files(cfg, "d", "rep2", 1) == [
        "results/d/real/iter01/samples.npy", "results/d/real/iter01/x2/samples.npy"]
    assert paths.sample_range(cfg, "d", "real/iter01") == (0, 10)
    assert paths.sample_range(cfg, "d", "real/iter01/x2") == (10, 10)
    assert paths.sample_range(cfg, "d", "rep2/iter03") == (0, 20)
    assert paths.pool_size(cfg, "d", "rep2", 3) == 20


def test_accumulate_pool_is_real_and_every_generation_so_far():
    cfg = parse(RAW)
    names = [s.name for s in paths.pool(cfg, "d", "acc", 4)]
    assert names == ["real", "G01", "G02", "G03"]
    assert paths.pool_size(cfg, "d", "acc", 4) == 40
    assert paths.features_of("results/d/acc/iter02/samples.npy", "pixels") == "results/d/acc/iter02/features-pixels.npy"


def test_config_errors_name_the_key():
    bad = {**RAW, "runs": {"t": {"paradigm": "accumulate", "selection": "threshold_decay"}}}
    with pytest.raises(OuroborosError, match="runs.t.decay"):
        parse(bad)
    bad = {**RAW, "targets": {"runs": ["nope"]}}
    with pytest.raises(OuroborosError, match="unknown run 'nope'"):
        parse(bad)
    bad = {**RAW, "runs": {"r": {"paradigm": "replace", "selection": "greedy"}}}
    with pytest.raises(OuroborosError, match="runs.r"):
        parse(bad)
    digits = RAW["datasets"]["d"]
    bad = {**RAW, "datasets": {**RAW["datasets"], "d": {**digits, "size": 1798}}}
    with pytest.raises(OuroborosError, match=r"datasets\.d\.size = 1798 .* only 1797"):
        parse(bad)
    parse({**RAW, "datasets": {**RAW["datasets"], "d": {**digits, "size": 1797}}})  # the whole source is fine


def test_manifest_round_trip_and_gather(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    save_array(a, np.arange(6)[:, None] * 10)
    save_array(b, np.arange(4)[:, None] * 100)
    parts = [manifest.PoolPart("real", str(a), 6), manifest.PoolPart("G01", str(b), 4)]
    m = manifest.from_pool(parts, np.array([7, 0, 9, 5]))
    assert list(m.source) == ["G01", "real", "G01", "real"]
    assert list(m.index) == [1, 0, 3, 5]
    manifest.write(tmp_path / "train.tsv", m)
    back = manifest.read(tmp_path / "train.tsv")
    np.testing.assert_array_equal(back.row, m.row)
    got = manifest.gather(back, lambda f: np.load(f))
    np.testing.assert_array_equal(got[:, 0], [100, 0, 300, 50])
    assert back.share("real") == 0.5


def test_index_counts_across_the_files_of_one_source(tmp_path):
    parts = [manifest.PoolPart("G01", "s.npy", 3), manifest.PoolPart("G01", "x2/s.npy", 3)]
    m = manifest.from_pool(parts, np.array([4]))
    assert (m.index[0], m.file[0], m.row[0]) == (4, "x2/s.npy", 1)


def test_bad_manifest_names_the_file(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("nonsense\n")
    with pytest.raises(OuroborosError, match=str(p)):
        manifest.read(p)


def test_a_size_sweep_inherits_its_base_and_shares_its_permutation():
    from ouroboros import data

    raw = {**RAW, "datasets": {**RAW["datasets"],
                               "d-small": {"base": "d", "size": 4, "train": {"steps": 9}},
                               "d-tiny": {"base": "d-small", "size": 2}}}
    cfg = parse(raw)
    small, tiny = cfg.dataset("d-small"), cfg.dataset("d-tiny")
    assert (small.size, small.train.steps, small.model, small.family) == (4, 9, "tiny8", "d")
    assert (tiny.size, tiny.train.steps, tiny.family) == (2, 9, "d")
    big = data.subset(1797, 10, seed=0, dataset="d")
    assert list(data.subset(1797, 4, seed=0, dataset=small.family)) == list(big[:4])  # nested


def test_bad_bases_name_the_key():
    with pytest.raises(OuroborosError, match="datasets.x.base names unknown dataset 'nope'"):
        parse({**RAW, "datasets": {**RAW["datasets"], "x": {"base": "nope"}}})
    with pytest.raises(OuroborosError, match="cycle"):
        parse({**RAW, "datasets": {"a": {"base": "b"}, "b": {"base": "a"}}})


def test_dataset_of_reads_the_folder_below_results():
    assert paths.dataset_of(paths.real_images("cifar")) == "cifar"
    assert paths.dataset_of(f"{paths.producer_dir('mnist-1k', 'greedy', 3)}/samples.npy") == "mnist-1k"
    assert paths.dataset_of("/scratch/results/results/digits/real/images.npy") == "digits"  # the innermost
    assert paths.dataset_of("elsewhere/images.npy") is None and paths.dataset_of("results/images.npy") is None


# --- replicates: replicate 0 keeps every path and seed; r ≥ 1 lives one level down -------------
def test_replicate_references_round_trip_and_replicate_0_is_the_bare_name():
    assert paths.replicate_of("greedy") == ("greedy", 0)
    assert paths.replicate_of("greedy/rep12") == ("greedy", 12)
    assert paths.with_replicate("greedy", 0) == "greedy" and paths.with_replicate("greedy", 3) == "greedy/rep3"
    for bad in ("greedy/rep0", "greedy/rep", "a/b", "greedy/rep01"):
        with pytest.raises(ValueError):
            paths.replicate_of(bad)


def test_a_replicate_has_its_own_iteration_1_and_shares_the_real_subset():
    cfg = parse(RAW)
    assert paths.model_dir("d", "rep2/rep2", 1) == "results/d/real/rep2/iter01/model"
    assert paths.sample_files(cfg, "d", "rep2/rep2", 1) == [
        "results/d/real/rep2/iter01/samples.npy", "results/d/real/rep2/iter01/x2/samples.npy"]
    assert paths.sample_range(cfg, "d", "real/rep2/iter01/x2") == (10, 10)
    assert paths.sample_range(cfg, "d", "rep2/rep2/iter03") == (0, 20)
    assert paths.parse_producer("rep2/rep2/iter03") == ("rep2/rep2", 3, 1)
    acc = paths.pool(cfg, "d", "acc/rep1", 3)
    assert [s.files for s in acc] == [("results/d/real/images.npy",), ("results/d/real/rep1/iter01/samples.npy",),
                                      ("results/d/acc/rep1/iter02/samples.npy",)]
    assert paths.manifest("d", "acc/rep1", 1) == paths.manifest("d", "acc", 1) == "results/d/real/train.tsv"


def test_replicates_add_targets_and_leave_replicate_0_targets_as_they_were():
    one = paths.target_files({"datasets": ["d"], "runs": ["acc"], "iterations": 2})
    three = paths.target_files({"datasets": ["d"], "runs": ["acc"], "iterations": 2, "replicates": 3})
    assert one == ["results/d/acc/iter01/metrics.json", "results/d/acc/iter01/fid.json",
                   "results/d/acc/iter02/metrics.json", "results/d/acc/iter02/fid.json"]
    assert three[:4] == one and len(three) == 12
    assert "results/d/acc/rep2/iter02/fid.json" in three


# --- real_subset: per_replicate: replicate r ≥ 1 is drawR and draws its own D_1 ------------------
def test_a_drawn_replicate_reads_its_own_d1_everywhere_the_shared_one_reads_the_datasets():
    cfg = parse({**RAW, "runs": {**RAW["runs"], "fr": {"paradigm": "replace", "selection": "all", "fresh": 0.5}}})
    assert paths.with_replicate("acc", 2, paths.PER_REPLICATE) == "acc/draw2"
    assert paths.with_replicate("acc", 0, paths.PER_REPLICATE) == "acc"  # replicate 0 is the same in both designs
    assert paths.replicate_of("acc/draw2") == ("acc", 2) and paths.real_subset_of("acc/draw2") == paths.PER_REPLICATE
    assert paths.real_subset_of("acc/rep2") == paths.real_subset_of("acc") == paths.SHARED
    assert paths.real_images("d", "acc/draw2") == "results/d/real/draw2/images.npy"
    assert paths.real_images("d", "acc/rep2") == paths.real_images("d") == "results/d/real/images.npy"
    assert paths.manifest("d", "acc/draw2", 1) == "results/d/real/draw2/train.tsv"
    assert paths.model_dir("d", "acc/draw2", 1) == "results/d/real/draw2/iter01/model"
    assert paths.parse_producer("real/draw2/iter01/x2") == ("real/draw2", 1, 2)
    assert [s.files for s in paths.pool(cfg, "d", "acc/draw2", 3)] == [
        ("results/d/real/draw2/images.npy",), ("results/d/real/draw2/iter01/samples.npy",),
        ("results/d/acc/draw2/iter02/samples.npy",)]
    assert paths.fresh_images("d", "fr/draw3") == "results/d/fresh/draw3/images.npy"
    assert paths.train_files(cfg, "d", "fr/draw3", 2) == ["results/d/real/draw3/iter01/samples.npy",
                                                          "results/d/fresh/draw3/images.npy"]
    assert paths.fid_reference(cfg, "d", "acc/draw2") == "results/d/real/draw2/images.npy"
    for bad in ("acc/draw0", "acc/drawn1", "acc/draw1/rep1"):
        with pytest.raises(ValueError):
            paths.replicate_of(bad)
    with pytest.raises(ValueError, match="real_subset is one of shared, per_replicate"):
        paths.with_replicate("acc", 1, "per-replicate")


def test_per_replicate_targets_share_replicate_0_and_draw_the_rest():
    group = {"datasets": ["d"], "runs": ["acc"], "iterations": 1, "replicates": 3}
    shared = paths.target_files(group)
    drawn = paths.target_files({**group, "real_subset": paths.PER_REPLICATE})
    assert drawn[:2] == shared[:2] == ["results/d/acc/iter01/metrics.json", "results/d/acc/iter01/fid.json"]
    assert drawn[2:] == [f.replace("/rep", "/draw") for f in shared[2:]] and "results/d/acc/draw2/iter01/fid.json" in drawn


def test_each_drawn_replicate_has_its_own_permutation_and_sizes_stay_nested_within_it():
    from ouroboros import data

    zero = data.subset(1797, 40, seed=0, dataset="digits")
    assert list(data.subset(1797, 40, seed=0, dataset="digits", replicate=0)) == list(zero)  # the dataset's own
    drawn = [data.subset(1797, 40, seed=0, dataset="digits", replicate=r) for r in (1, 2)]
    assert all(len(set(d)) == 40 for d in drawn) and len({tuple(d) for d in [zero, *drawn]}) == 3
    # a size sweep within replicate 2: the 20-subset is the front of the 40-subset
    assert list(data.subset(1797, 20, seed=0, dataset="digits", replicate=2)) == list(drawn[1][:20])


def test_by_design_keeps_each_real_subset_design_apart_and_gives_both_replicate_0():
    import pandas as pd

    from ouroboros.tables import PER_REPLICATE_SUFFIX, by_design

    def rows(run, design, reps):
        return [{"dataset": "d", "family": "d", "run": run, "replicate": r, "real_subset": design, "value": r}
                for r in reps]
    frame = pd.DataFrame(rows("a", "shared", [0, 1]) + rows("a", "per_replicate", [1, 2])
                         + rows("b", "shared", [0]) + rows("b", "per_replicate", [1]) + rows("c", "shared", [0]))
    out = by_design(frame)
    got = out.groupby(["dataset", "run"]).replicate.apply(sorted).to_dict()
    drawn = "d" + PER_REPLICATE_SUFFIX
    assert got == {("d", "a"): [0, 1], (drawn, "a"): [0, 1, 2],  # a: both designs, each with replicate 0
                   (drawn, "b"): [0, 1],  # b: no shared replicate ≥ 1, so replicate 0 goes to the drawn design only
                   ("d", "c"): [0]}
    assert set(out[out.dataset == drawn].family) == {drawn}
    assert by_design(frame[frame.real_subset == "shared"]).equals(frame[frame.real_subset == "shared"])


def test_replicate_0_seeds_are_the_seeds_from_before_replicates():
    """The key of replicate 0 is (root, crc32(dataset), iteration, stage), exactly as before; r ≥ 1 appends r."""
    import zlib

    from ouroboros import seeds

    before = np.random.SeedSequence([7, zlib.crc32(b"d"), 3, seeds.STAGES["train"]]).generate_state(2, dtype=np.uint32)
    want = ((int(before[0]) << 31) ^ int(before[1])) & ((1 << 63) - 1)
    assert seeds.derive(7, "d", 3, "train") == seeds.derive(7, "d", 3, "train", 0) == want
    others = {seeds.derive(7, "d", 3, "train", r) for r in range(1, 4)}
    assert want not in others and len(others) == 3


def test_tau0_is_resolved_in_one_place_run_over_dataset_and_auto_passes_through():
    digits = RAW["datasets"]["d"]
    runs = {"t": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8},
            "t3": {"paradigm": "accumulate", "selection": "threshold_decay", "decay": 0.8, "tau0": 3},
            "g": {"paradigm": "accumulate", "selection": "greedy"}}
    cfg = parse({**RAW, "runs": runs})
    assert (cfg.tau0("d", "t"), cfg.tau0("d", "t3"), cfg.tau0("d", "g")) == (1.0, 3.0, None)
    cfg = parse({**RAW, "datasets": {"d": {**digits, "tau0": "auto"}}, "runs": runs})
    assert (cfg.tau0("d", "t"), cfg.tau0("d", "t3")) == ("auto", 3.0)
    cfg = parse({**RAW, "datasets": {"d": {**digits, "tau0": None}}, "runs": runs})
    assert cfg.tau0("d", "g") is None  # greedy needs none
    with pytest.raises(OuroborosError, match=r"runs\.t\.tau0 nor datasets\.d\.tau0"):
        cfg.tau0("d", "t")
