"""Figures and tables from small hand-made results trees: the numbers they plot, and skips."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from ouroboros import figures, stats, tables
from ouroboros.errors import OuroborosError

RNG = np.random.default_rng(0)


def write_run(root, dataset, size, run, paradigm, selection, iterations, shares=None, space="pixels"):
    for n in range(1, iterations + 1):
        folder = root / dataset / run / f"iter{n:02d}"
        folder.mkdir(parents=True)
        meta = {"dataset": dataset, "run": run, "paradigm": paradigm, "selection": selection,
                "samples_per_iteration": 1, "iteration": n, "tau0": None, "decay": None, "dataset_size": size}
        values = {"generalization_score": float(RNG.uniform(0.5, 2)), "train_entropy": float(RNG.uniform(-30, -10)),
                  "train_covariance_trace": float(RNG.uniform(1, 5)), "generated_mnnd": float(RNG.uniform(0.1, 1)),
                  "generated_covariance_trace": float(RNG.uniform(1, 5)), "real_share": 1.0 / n}
        source = {"real": 1.0 / n} | {f"G{j:02d}": (1 - 1.0 / n) / (n - 1) for j in range(1, n)}
        source = source if shares else {"real": 1.0}
        (folder / "metrics.json").write_text(json.dumps(meta | {"feature_extractor": space, "values": values,
                                                                "source_shares": source}))
        (folder / "fid.json").write_text(json.dumps(meta | {"feature_extractor": "classifier",
                                                            "values": {"fid": float(RNG.uniform(10, 90))}}))


def write_runs(root):
    write_run(root, "small", 100, "replace", "replace", "all", 4)
    write_run(root, "large", 400, "replace", "replace", "all", 4)
    write_run(root, "large", 400, "greedy", "accumulate", "greedy", 3, shares=True)
    return root


@pytest.fixture
def results(tmp_path):
    return write_runs(tmp_path / "results")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The figures of one results tree, drawn once for the tests that only read them: (root, log, written)."""
    root = write_runs(tmp_path_factory.mktemp("built") / "results")
    log = []
    return root, log, figures.build(root, log=log.append)


def test_tidy_table_has_one_row_per_value_and_source_shares(results):
    t = tables.tidy(tables.scan(results))
    assert set(t.dataset) == {"small", "large"}
    assert len(t[(t.metric == "fid")]) == 4 + 4 + 3
    shares = t[(t.run == "greedy") & (t.iteration == 3) & t.metric.str.startswith("share_")]
    assert dict(zip(shares.metric, shares.value, strict=True)) == pytest.approx(
        {"share_real": 1 / 3, "share_G01": 1 / 3, "share_G02": 1 / 3})


def test_pearson_r_in_the_figure_table_equals_scipy_on_one_familys_points(built):
    # tables from before size sweeps have no family column: each dataset is its own family
    results, _, _ = built
    wide = pd.read_csv(results / "figures" / "fig02_entropy_vs_generalization.tsv", sep="\t")
    t = tables.tidy(tables.scan(results))
    rep = t[(t.run == "replace") & (t.dataset == "small")].pivot_table(index="iteration", columns="metric",
                                                                       values="value")
    small = wide[wide.family == "small"]
    r, _ = pearsonr(rep.train_entropy, np.log(rep.generalization_score))
    assert small.pearson_r_train_entropy.iloc[0] == pytest.approx(r)
    # one replicate is one chain: no chain-aware interval nor p-value can be formed
    assert np.isnan(small.pearson_p_train_entropy.iloc[0]) and np.isnan(small.pearson_ci_low_train_entropy.iloc[0])
    r_var, _ = pearsonr(rep.train_covariance_trace, rep.generalization_score)
    assert small.pearson_r_train_covariance_trace.iloc[0] == pytest.approx(r_var)
    assert len(small) == 4 and set(wide.family) == {"small", "large"}


def test_missing_runs_skip_their_figures_with_a_reason(built):
    results, log, written = built
    assert any(line.startswith("skipped fig13_replace_2n:") for line in log)
    assert any(line.startswith("skipped fig14_decay_rates:") for line in log)
    names = {p.name for p in written}
    assert {"fig02_entropy_vs_generalization.png", "fig02_entropy_vs_generalization.pdf",
            "fig11_source_shares.png", "fig09_fid.png"} <= names
    assert not (results / "figures" / "fig13_replace_2n.png").exists()


def test_source_share_table_holds_the_plotted_shares(built):
    results, _, _ = built
    wide = pd.read_csv(results / "figures" / "fig11_source_shares.tsv", sep="\t", index_col=0)
    assert wide.loc[3, "large · greedy: share_real"] == pytest.approx(1 / 3)
    assert wide.loc[1, "large · greedy: share_real"] == pytest.approx(1.0)


def test_empty_results_skip_everything(tmp_path):
    log = []
    assert figures.build(tmp_path, log=log.append) == []
    assert all(line.startswith("skipped") for line in log) and log


PROJECTION = np.random.default_rng(2).normal(size=(16, 5)).astype(np.float32)


def embed(images):
    """A distance feature space that is not pixels: a fixed random projection of 4×4 images."""
    return images.reshape(len(images), -1).astype(np.float32) @ PROJECTION


def write_images(workdir, path, images):
    from ouroboros.io import save_array

    save_array(workdir / path, images)
    save_array((workdir / path).with_name("features-proj.npy"), embed(images))


def write_manifest(workdir, path, parts, chosen):
    from ouroboros import manifest

    manifest.write(workdir / path, manifest.from_pool([manifest.PoolPart(*p) for p in parts], np.asarray(chosen)))


def brute_nearest(generated, train):
    d = np.sqrt(((embed(generated)[:, None].astype(float) - embed(train)[None].astype(float)) ** 2).sum(-1))
    return d.min(1), d.argmin(1)


def draw(name, root):
    """One figure from a results tree, as build draws it: (figure, table) or the reason it is skipped."""
    return figures.FIGURES[name](figures.with_defaults(tables.tidy(tables.scan(root))), root)


def test_image_figures_are_skipped_without_files_and_drawn_with_them(tmp_path):
    root = tmp_path / "results"
    write_run(root, "small", 12, "replace", "replace", "all", 2, space="proj")
    assert isinstance(draw("fig01_nearest_neighbours", root), str)  # skipped, with the reason
    assert isinstance(draw("fig06_svd_projection", root), str)

    rng = np.random.default_rng(1)
    real, g1, g2 = (rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8) for _ in range(3))
    files = {"real": "results/small/real/images.npy", "g1": "results/small/real/iter01/samples.npy",
             "g2": "results/small/replace/iter02/samples.npy"}
    for key, array in (("real", real), ("g1", g1), ("g2", g2)):
        write_images(tmp_path, files[key], array)
    write_manifest(tmp_path, "results/small/real/train.tsv", [("real", files["real"], 12)], np.arange(12))
    write_manifest(tmp_path, "results/small/replace/iter02/train.tsv", [("G01", files["g1"], 12)], np.arange(12))
    log = []
    figures.build(root, log=log.append)
    assert "wrote fig01_nearest_neighbours" in log and "wrote fig06_svd_projection" in log
    table = pd.read_csv(root / "figures" / "fig01_nearest_neighbours.tsv", sep="\t")
    for n, generated, train in ((1, g1, real), (2, g2, g1)):
        rows = table[table.iteration == n]
        distance, row = brute_nearest(generated[:8], train)  # in the run's feature space, not pixels
        np.testing.assert_allclose(rows.distance, distance, rtol=1e-5)
        np.testing.assert_array_equal(rows.train_row, row)
        assert set(rows.feature_extractor) == {"proj"}


def test_sample_grids_draw_the_runs_of_images_and_skip_those_of_vectors(tmp_path):
    """results/ of the demo and of `make theory` in one working directory: the image run gets its
    grid, the vector run is skipped with a reason (it once stopped the figures job)."""
    from ouroboros import grids
    from ouroboros.io import save_array

    rng = np.random.default_rng(2)
    root = tmp_path / "results"
    for n in (1, 2):
        folder = "real" if n == 1 else "replace"
        save_array(root / f"digits/{folder}/iter{n:02d}/samples.npy", rng.integers(0, 256, (12, 4, 4, 1), dtype=np.uint8))
        save_array(root / f"theory-gaussian/{folder}/iter{n:02d}/samples.npy", rng.normal(size=(12, 16)).astype(np.float32))
    save_array(root / "digits/fresh/images.npy", rng.integers(0, 256, (12, 4, 4, 1), dtype=np.uint8))  # not a run
    log = []
    drawn = grids.sample_grids(root, log=log.append)
    assert list(drawn) == ["samples_digits_replace"]
    assert log == ["skipped samples_theory-gaussian_replace: its samples are vectors, not images"]
    grids.pyplot().close("all")


def test_fig12_pairs_accumulate_and_greedy_at_the_last_iteration_both_have(tmp_path):
    root = tmp_path / "results"
    write_run(root, "small", 12, "accumulate", "accumulate", "random", 3, shares=True, space="proj")
    write_run(root, "small", 12, "greedy", "accumulate", "greedy", 3, shares=True, space="proj")
    assert "no dataset with a vanilla accumulate run and a greedy run" in draw("fig12_nearest_accumulate_greedy", root)

    rng = np.random.default_rng(3)
    images = {f: rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8) for f in (
        "results/small/real/images.npy", "results/small/real/iter01/samples.npy",
        "results/small/accumulate/iter02/samples.npy", "results/small/accumulate/iter03/samples.npy",
        "results/small/greedy/iter02/samples.npy")}  # greedy's iteration 3 is not on disk
    for f, array in images.items():
        write_images(tmp_path, f, array)
    pool = [("real", "results/small/real/images.npy", 12), ("G01", "results/small/real/iter01/samples.npy", 12)]
    for run, n, chosen in (("accumulate", 2, np.arange(0, 24, 2)), ("greedy", 2, np.arange(12, 24)),
                           ("accumulate", 3, np.arange(1, 24, 2))):
        write_manifest(tmp_path, f"results/small/{run}/iter{n:02d}/train.tsv", pool, chosen)
    log = []
    figures.build(root, log=log.append)
    assert "wrote fig12_nearest_accumulate_greedy" in log
    table = pd.read_csv(root / "figures" / "fig12_nearest_accumulate_greedy.tsv", sep="\t")
    assert set(zip(table.run, table.iteration, strict=True)) == {("accumulate", 2), ("greedy", 2)}
    pooled = np.concatenate([images[p[1]] for p in pool])
    for run, chosen in (("accumulate", np.arange(0, 24, 2)), ("greedy", np.arange(12, 24))):
        rows = table[table.run == run]
        distance, row = brute_nearest(images[f"results/small/{run}/iter02/samples.npy"][:8], pooled[chosen])
        np.testing.assert_allclose(rows.distance, distance, rtol=1e-5)
        np.testing.assert_array_equal(rows.train_row, row)


def test_a_grid_has_gutters_between_exactly_upscaled_tiles():
    from ouroboros import grids

    tiles = np.arange(2 * 2 * 3 * 2 * 1, dtype=np.uint8).reshape(2, 2, 3, 2, 1) * 9  # 2 rows of 2 tiles, 3×2
    k, g, grey = 4, 3, (200, 201, 202)
    image = grids.compose([tiles[0], tiles[1]], factor=k, gutter=g, colour=grey)
    h, w = 3 * k, 2 * k
    assert image.shape == (2 * h + g, 2 * w + g, 3)
    for i in range(2):
        for j in range(2):
            tile = image[i * (h + g): i * (h + g) + h, j * (w + g): j * (w + g) + w]
            expected = np.kron(tiles[i, j, ..., 0], np.ones((k, k), dtype=np.uint8))
            for c in range(3):  # grey tiles become RGB
                np.testing.assert_array_equal(tile[..., c], expected)
    gutter = np.zeros(image.shape[:2], dtype=bool)
    gutter[h: h + g, :] = gutter[:, w: w + g] = True
    assert (image[gutter] == grey).all()
    assert grids.factor_for(8) == 8 and grids.factor_for(32) == 2 and grids.factor_for(64) == 1


def test_short_rows_of_a_grid_end_in_the_gutter_colour():
    from ouroboros import grids

    image = grids.compose([np.zeros((3, 2, 2, 3), np.uint8), np.zeros((1, 2, 2, 3), np.uint8)], gutter=1)
    assert (image[3:, 3:] == grids.GUTTER_COLOUR).all() and (image[3:5, :2] == 0).all()


def point(dataset, run, metric, value, iteration, replicate=0, family=None, size=100, paradigm="replace",
          selection="all", decay=None, space="pixels"):
    """One row of the tidy table as the extended tables.py writes it (family and replicate)."""
    return {"dataset": dataset, "family": family or dataset, "dataset_size": size, "run": run,
            "paradigm": paradigm, "selection": selection, "samples_per_iteration": 1, "tau0": None, "decay": decay,
            "replicate": replicate, "iteration": iteration, "file": "fid.json" if metric == "fid" else "metrics.json",
            "feature_extractor": space, "metric": metric, "value": value}


def test_lines_are_means_over_replicates_with_a_student_t_band_and_one_colour_per_run(tmp_path):
    from scipy import stats

    fid = {"greedy": [[50, 40, 30], [52, 43, 35], [49, 41, 29]], "accumulate": [[50, 60, 70]]}  # [replicate][n - 1]
    t = pd.DataFrame([point("cifar", run, "fid", v, n + 1, replicate=r, paradigm="accumulate", selection=run)
                      for run, reps in fid.items() for r, values in enumerate(reps) for n, v in enumerate(values)]
                     + [point("cifar", run, "generalization_score", 1.0 + n, n + 1, paradigm="accumulate",
                              selection=run) for run in fid for n in range(3)])
    fig, wide = figures.FIGURES["fig09_fid"](t, tmp_path)
    values = np.array(fid["greedy"], dtype=float)[:, 1]
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    row = wide.loc[2]
    assert row["cifar: fid: greedy: mean"] == pytest.approx(values.mean())
    assert (row["cifar: fid: greedy: ci_low"], row["cifar: fid: greedy: ci_high"]) == pytest.approx((low, high))
    assert row["cifar: fid: greedy: n"] == 3 and row["cifar: fid: accumulate: n"] == 1
    assert row["cifar: fid: accumulate: mean"] == 60 and np.isnan(row["cifar: fid: accumulate: ci_low"])
    assert row.ci_level == 0.95 and "Student t" in row.ci_method
    ax = fig.axes[0]
    assert len(ax.collections) == 1  # a band for greedy only: accumulate has one replicate
    colour = {line.get_label(): line.get_color() for line in ax.lines}
    fig3, _ = figures.FIGURES["fig03_generalization_score"](t, tmp_path)
    assert {line.get_label(): line.get_color() for line in fig3.axes[0].lines} == colour
    assert colour["greedy"] != colour["accumulate"]


def family_points(family, datasets, seed, space="pixels"):
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, size in datasets:
        for r in range(2):
            for n in range(1, 5):
                values = {"train_entropy": rng.normal(-20, 5), "generalization_score": rng.uniform(0.5, 2),
                          "train_covariance_trace": rng.uniform(1, 5), "generated_mnnd": rng.uniform(0.1, 1),
                          "generated_covariance_trace": rng.uniform(1, 5)}
                rows += [point(dataset, "replace", m, v, n, replicate=r, family=family, size=size, space=space)
                         for m, v in values.items()]
    return pd.DataFrame(rows)


def test_fig2b_r_pools_one_family_and_a_second_family_leaves_it_unchanged(tmp_path):
    cifar = family_points("cifar", [("cifar-1k", 1024), ("cifar", 32768)], seed=4, space="dinov2")
    digits = family_points("digits", [("digits", 256)], seed=5)
    _, alone = figures.entropy_and_generalization(cifar, tmp_path)
    fig, both = figures.entropy_and_generalization(pd.concat([cifar, digits]), tmp_path)
    first = both[both.family == "cifar"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, alone)
    points = cifar.pivot_table(index=["dataset", "replicate", "iteration"], columns="metric", values="value")
    x, y = points.train_entropy.to_numpy(), np.log(points.generalization_score.to_numpy())
    r, _ = pearsonr(x, y)
    assert first.pearson_r_train_entropy.iloc[0] == pytest.approx(r) and first.pearson_n.iloc[0] == 16
    # the findings' interval: whole replicates resampled, never points
    chains = points.index.get_level_values("replicate").to_numpy()
    ci = stats.chain_bootstrap(chains, lambda w: stats.pooled_r(w, x, y), seed=0, fisher=True)
    assert (first.pearson_ci_low_train_entropy.iloc[0], first.pearson_ci_high_train_entropy.iloc[0]) == \
        pytest.approx((ci.low, ci.high))
    assert first.pearson_p_train_entropy.iloc[0] == pytest.approx(ci.p_value(0.0))
    assert "whole replicate chains" in first.pearson_ci_method.iloc[0] and first.pearson_ci_level.iloc[0] == 0.95
    assert len(both[both.family == "digits"]) == 8
    titles = [ax.get_title() for ax in fig.axes]
    assert any("family cifar (dinov2)" in title for title in titles)
    assert any("family digits (pixels)" in title for title in titles)
    # Figs. 1 (right) and 7 also draw one panel per family
    for name in ("fig01_generalization_by_size", "fig07_mnnd_variance"):
        _, wide = figures.FIGURES[name](pd.concat([cifar, digits]), tmp_path)
        assert {c.split(": ")[0] for c in wide.columns if ": " in c} == {"cifar", "digits"}


def test_fig14_draws_greedy_and_vanilla_accumulate_beside_the_decays(tmp_path):
    runs = [("accumulate", "random", None), ("greedy", "greedy", None), ("threshold-0.60", "threshold_decay", 0.6),
            ("threshold", "threshold_decay", 0.8)]
    t = pd.DataFrame([point("cifar", run, "fid", 80.0 - n, n, paradigm="accumulate", selection=sel, decay=decay)
                      for run, sel, decay in runs for n in (1, 2)])
    _, wide = figures.FIGURES["fig14_decay_rates"](t, tmp_path)
    assert {c.split(": ")[2] for c in wide.columns if c.count(": ") == 3} == {run for run, *_ in runs}


def test_tables_without_family_or_replicate_read_as_replicate_0_of_their_own_family():
    t = pd.DataFrame([point("cifar-1k", "replace", "fid", 1.0, 1, family="cifar")])
    t = t.drop(columns=["family", "replicate"])
    t = figures.with_defaults(t)
    assert t.family.tolist() == ["cifar-1k"] and t.replicate.tolist() == [0]


def test_a_metrics_file_of_an_older_version_is_refused_by_name(results):
    stale = results / "small" / "replace" / "iter01" / "metrics.json"
    record = json.loads(stale.read_text())
    record["feature_space"] = record.pop("feature_extractor")  # the key older versions wrote
    stale.write_text(json.dumps(record))
    with pytest.raises(OuroborosError, match=r"small/replace/iter01/metrics.json: no feature_extractor"):
        tables.tidy(tables.scan(results))


def test_vendi_and_authenticity_draw_one_line_per_run_whatever_its_name(tmp_path):
    from scipy import stats

    runs = {"accumulate-equal": ("accumulate", "random"), "replace-fresh": ("replace", "all"),
            "replace-finetune": ("replace", "all"), "my-own": ("accumulate", "greedy")}
    t = pd.DataFrame([point("cifar", run, metric, scale * (k + 1) + n + r, n, replicate=r, paradigm=p, selection=s)
                      for k, (run, (p, s)) in enumerate(runs.items()) for r in range(3) for n in (1, 2, 3)
                      for metric, scale in (("train_vendi", 10.0), ("generated_vendi", 5.0), ("authenticity", 0.1))])
    fig, wide = figures.FIGURES["extra_vendi"](t, tmp_path)
    assert {c.split(": ")[2] for c in wide.columns if c.count(": ") == 3} == set(runs)
    assert {c.split(": ")[1] for c in wide.columns if c.count(": ") == 3} == {"train_vendi", "generated_vendi"}
    values = np.array([10.0 * 2 + 2 + r for r in range(3)])  # replace-fresh (k = 1) at n = 2
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    row = wide.loc[2]
    assert row["cifar: train_vendi: replace-fresh: mean"] == pytest.approx(values.mean())
    assert (row["cifar: train_vendi: replace-fresh: ci_low"], row["cifar: train_vendi: replace-fresh: ci_high"]) == \
        pytest.approx((low, high))
    assert len(fig.axes) == 2 and all(len(ax.lines) == len(runs) for ax in fig.axes)
    colour = {line.get_label(): line.get_color() for line in fig.axes[0].lines}
    fig_a, wide_a = figures.FIGURES["extra_authenticity"](t, tmp_path)
    assert {line.get_label(): line.get_color() for line in fig_a.axes[0].lines} == colour
    assert wide_a.loc[3, "cifar: authenticity: my-own: mean"] == pytest.approx(0.4 + 3 + 1)


def test_newer_metrics_are_skipped_with_a_reason_on_older_tables(built):
    results, log, written = built
    for name, metrics in (("extra_vendi", "train_vendi or generated_vendi"), ("extra_authenticity", "authenticity"),
                          ("extra_fd_dinov2", "fd_dinov2"), ("extra_fid_torchvision", "fid_torchvision")):
        assert f"skipped {name}: no {metrics} in any run" in log
        assert not (results / "figures" / f"{name}.png").exists()


def test_optional_fids_are_drawn_where_a_dataset_sets_them_and_nulls_are_absent(tmp_path):
    t = pd.DataFrame([point("cifar", "replace", "fd_dinov2", 300.0 - n, n) for n in (1, 2)]
                     + [point("digits", "replace", "fd_dinov2", None, n) for n in (1, 2)]
                     + [point("digits", "replace", "fid_torchvision", None, n) for n in (1, 2)]
                     + [point(d, "replace", "fid", 50.0, n) for d in ("cifar", "digits") for n in (1, 2)])
    fig, wide = figures.FIGURES["extra_fd_dinov2"](t, tmp_path)
    assert [ax.get_title() for ax in fig.axes] == ["cifar"]  # digits' nulls draw no panel
    assert wide["cifar: fd_dinov2: replace: mean"].tolist() == [299.0, 298.0]
    assert figures.FIGURES["extra_fid_torchvision"](t, tmp_path) == "no fid_torchvision in any run"


def test_a_dataset_missing_one_panels_metric_says_so_in_that_panel(tmp_path):
    t = pd.DataFrame([point(d, "replace", "train_vendi", 9.0, n) for d in ("cifar", "digits") for n in (1, 2)]
                     + [point("cifar", "replace", "generated_vendi", 8.0, n) for n in (1, 2)])
    fig, wide = figures.FIGURES["extra_vendi"](t, tmp_path)
    empty = [ax for ax in fig.axes if not ax.axison]
    assert len(fig.axes) == 4 and [ax.texts[0].get_text() for ax in empty] == ["no generated_vendi"]
    assert {c.rsplit(": ", 2)[0] for c in wide.columns if c.count(": ") == 3} == \
        {"cifar: train_vendi", "digits: train_vendi", "cifar: generated_vendi"}


def test_build_writes_the_vendi_figure_from_metrics_files_that_hold_it(tmp_path):
    root = tmp_path / "results"
    write_run(root, "small", 100, "replace", "replace", "all", 3)
    for n in (1, 2, 3):
        f = root / "small" / "replace" / f"iter{n:02d}" / "metrics.json"
        record = json.loads(f.read_text())
        record["values"] |= {"train_vendi": 40.0 / n, "generated_vendi": 30.0 / n, "authenticity": 1.0 / n}
        f.write_text(json.dumps(record))
    log = []
    written = {p.name for p in figures.build(root, log=log.append)}
    assert {"extra_vendi.png", "extra_vendi.pdf", "extra_vendi.tsv", "extra_authenticity.png"} <= written
    wide = pd.read_csv(root / "figures" / "extra_vendi.tsv", sep="\t", index_col=0)
    assert wide["small: train_vendi: replace: mean"].tolist() == pytest.approx([40.0, 20.0, 40.0 / 3])
    assert "skipped extra_fd_dinov2: no fd_dinov2 in any run" in log


def test_the_figures_drawn_from_files_are_figures():
    from ouroboros.figures import FIGURES, FROM_FILES

    assert FROM_FILES and FROM_FILES <= set(FIGURES)
