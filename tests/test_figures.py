"""Figures and tables from small hand-made results trees: the numbers they plot, and skips."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from ouroboros import figures, tables
from ouroboros.errors import OuroborosError

RNG = np.random.default_rng(0)


def write_run(root, dataset, size, run, paradigm, selection, iterations, shares=None):
    for n in range(1, iterations + 1):
        folder = root / dataset / run / f"iter{n:02d}"
        folder.mkdir(parents=True)
        meta = {"dataset": dataset, "run": run, "paradigm": paradigm, "selection": selection,
                "samples_per_iteration": 1, "iteration": n, "tau0": None, "decay": None, "dataset_size": size}
        values = {"generalization_score": float(RNG.uniform(0.5, 2)), "train_entropy": float(RNG.uniform(-30, -10)),
                  "train_covariance_trace": float(RNG.uniform(1, 5)), "generated_mnnd": float(RNG.uniform(0.1, 1)),
                  "generated_covariance_trace": float(RNG.uniform(1, 5)), "real_share": 1.0 / n}
        source = {"real": 1.0 / n} | {f"G{j:02d}": (1 - 1.0 / n) / (n - 1) for j in range(1, n)} if shares else {"real": 1.0}
        (folder / "metrics.json").write_text(json.dumps(meta | {"feature_extractor": "pixels", "values": values,
                                                                "source_shares": source}))
        (folder / "fid.json").write_text(json.dumps(meta | {"feature_extractor": "classifier",
                                                            "values": {"fid": float(RNG.uniform(10, 90))}}))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_run(root, "small", 100, "replace", "replace", "all", 4)
    write_run(root, "large", 400, "replace", "replace", "all", 4)
    write_run(root, "large", 400, "greedy", "accumulate", "greedy", 3, shares=True)
    return root


def test_tidy_table_has_one_row_per_value_and_source_shares(results):
    t = tables.tidy(tables.scan(results))
    assert set(t.dataset) == {"small", "large"}
    assert len(t[(t.metric == "fid")]) == 4 + 4 + 3
    shares = t[(t.run == "greedy") & (t.iteration == 3) & t.metric.str.startswith("share_")]
    assert dict(zip(shares.metric, shares.value)) == pytest.approx({"share_real": 1 / 3, "share_G01": 1 / 3, "share_G02": 1 / 3})


def test_pearson_r_in_the_figure_table_equals_scipy_on_the_same_points(results):
    log = []
    figures.build(results, log=log.append)
    wide = pd.read_csv(results / "figures" / "fig02_entropy_vs_generalization.tsv", sep="\t")
    t = tables.tidy(tables.scan(results))
    rep = t[t.run == "replace"].pivot_table(index=["dataset", "iteration"], columns="metric", values="value")
    r, p = pearsonr(rep.train_entropy, np.log(rep.generalization_score))
    assert wide.pearson_r_train_entropy.iloc[0] == pytest.approx(r)
    assert wide.pearson_p_train_entropy.iloc[0] == pytest.approx(p)
    r_var, _ = pearsonr(rep.train_covariance_trace, rep.generalization_score)
    assert wide.pearson_r_train_covariance_trace.iloc[0] == pytest.approx(r_var)
    assert len(wide) == 8  # 2 datasets × 4 iterations


def test_missing_runs_skip_their_figures_with_a_reason(results):
    log = []
    written = figures.build(results, log=log.append)
    assert any(line.startswith("skipped fig13_replace_2n:") for line in log)
    assert any(line.startswith("skipped fig14_decay_rates:") for line in log)
    names = {p.name for p in written}
    assert {"fig02_entropy_vs_generalization.png", "fig02_entropy_vs_generalization.pdf",
            "fig11_source_shares.png", "fig09_fid.png"} <= names
    assert not (results / "figures" / "fig13_replace_2n.png").exists()


def test_source_share_table_holds_the_plotted_shares(results):
    figures.build(results, log=lambda _: None)
    wide = pd.read_csv(results / "figures" / "fig11_source_shares.tsv", sep="\t", index_col=0)
    assert wide.loc[3, "large · greedy: share_real"] == pytest.approx(1 / 3)
    assert wide.loc[1, "large · greedy: share_real"] == pytest.approx(1.0)


def test_empty_results_skip_everything(tmp_path):
    log = []
    assert figures.build(tmp_path, log=log.append) == []
    assert all(line.startswith("skipped") for line in log) and log


def test_image_figures_are_skipped_without_files_and_drawn_with_them(tmp_path):
    from ouroboros import manifest
    from ouroboros.io import save_array

    root = tmp_path / "results"
    write_run(root, "small", 12, "replace", "replace", "all", 2)
    log = []
    figures.build(root, log=log.append)
    assert any(line.startswith("skipped fig01_nearest_neighbours:") for line in log)
    assert any(line.startswith("skipped fig06_svd_projection:") for line in log)

    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8)
    g1 = rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8)
    g2 = rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8)
    files = {"real": "results/small/real/images.npy", "g1": "results/small/real/iter01/samples.npy",
             "g2": "results/small/replace/iter02/samples.npy"}
    for key, array in (("real", real), ("g1", g1), ("g2", g2)):
        save_array(tmp_path / files[key], array)
        save_array((tmp_path / files[key]).with_name("features-pixels.npy"), array.reshape(12, -1).astype(np.float32) / 255)
    manifest.write(root / "small/real/train.tsv", manifest.from_pool([manifest.PoolPart("real", files["real"], 12)], np.arange(12)))
    manifest.write(root / "small/replace/iter02/train.tsv",
                   manifest.from_pool([manifest.PoolPart("G01", files["g1"], 12)], np.arange(12)))
    log = []
    figures.build(root, log=log.append)
    assert "wrote fig01_nearest_neighbours" in log and "wrote fig06_svd_projection" in log
    table = pd.read_csv(root / "figures" / "fig01_nearest_neighbours.tsv", sep="\t")
    for n, generated, train in ((1, g1, real), (2, g2, g1)):
        rows = table[table.iteration == n]
        a = generated[:8].reshape(8, -1).astype(float) / 255
        b = train.reshape(12, -1).astype(float) / 255
        brute = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
        np.testing.assert_allclose(rows.distance, brute.min(1), rtol=1e-6)  # float32 pixels
        np.testing.assert_array_equal(rows.train_row, brute.argmin(1))


def test_a_metrics_file_of_an_older_version_is_refused_by_name(results):
    stale = results / "small" / "replace" / "iter01" / "metrics.json"
    record = json.loads(stale.read_text())
    record["feature_space"] = record.pop("feature_extractor")  # the key older versions wrote
    stale.write_text(json.dumps(record))
    with pytest.raises(OuroborosError, match=r"small/replace/iter01/metrics.json: no feature_extractor"):
        tables.tidy(tables.scan(results))
