"""The loss-curve figures: drawn from train-stats.jsonl, their TSV equal to the stats files."""

import json

import numpy as np
import pandas as pd
import pytest

from ouroboros import figures, loss_curves
from ouroboros.errors import OuroborosError

RNG = np.random.default_rng(0)


def write_stats(path, losses, *, cut_short=None):
    """A stats file as ouroboros.train writes it: one JSON line per step; ``cut_short``: a last line
    the writer has not finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": s, "loss": float(v), "lr": 1e-4, "grad_norm": 0.5, "seconds": s / 10}) + "\n"
             for s, v in enumerate(losses)]
    path.write_text("".join(lines) + (cut_short or ""))
    return path


def stats_of(path):
    """(step, loss) as the stats file holds them, read with json (not with the module under test)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records]


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_stats(root / "digits/real/iter01/train-stats.jsonl", RNG.uniform(0.02, 1.0, 120))
    for n, steps in ((2, 120), (3, 75)):
        write_stats(root / f"digits/replace/iter{n:02d}/train-stats.jsonl", RNG.uniform(0.02, 1.0, steps))
    write_stats(root / "digits/greedy/iter02/train-stats.jsonl", RNG.uniform(0.02, 1.0, 60))
    return root


def test_the_tsv_holds_every_steps_loss_as_the_stats_files_hold_it(results, tmp_path):
    written = figures.build(results, tmp_path / "figures", log=lambda line: None)
    assert {f.name for f in written} >= {"loss_digits_replace.png", "loss_digits_replace.pdf", "loss_digits_replace.tsv",
                                         "loss_digits_greedy.png", "loss_digits_greedy.tsv"}
    for run, iterations in (("replace", {1: "real", 2: "replace", 3: "replace"}), ("greedy", {1: "real", 2: "greedy"})):
        tsv = pd.read_csv(tmp_path / "figures" / f"loss_digits_{run}.tsv", sep="\t")
        assert list(tsv.columns) == loss_curves.COLUMNS
        assert set(tsv.dataset) == {"digits"} and set(tsv.run) == {run}
        assert sorted(tsv.iteration.unique()) == sorted(iterations)
        for n, folder in iterations.items():
            part = tsv[tsv.iteration == n]
            expected = stats_of(results / f"digits/{folder}/iter{n:02d}/train-stats.jsonl")
            assert list(zip(part.step, part.loss, strict=True)) == expected  # bit for bit
            assert part.running_mean.to_numpy() == pytest.approx(
                part.loss.rolling(loss_curves.WINDOW, min_periods=1).mean().to_numpy(), rel=1e-12)


def test_the_running_mean_has_known_answers():
    assert loss_curves.running_mean(np.full(7, 0.25), window=3) == pytest.approx(np.full(7, 0.25))
    ramp = np.arange(200, dtype=float)
    lows = np.maximum(ramp - (loss_curves.WINDOW - 1), 0)
    assert loss_curves.running_mean(ramp) == pytest.approx((lows + ramp) / 2)  # mean of lo … s


def test_a_training_under_way_is_drawn_without_its_unfinished_line(tmp_path):
    path = write_stats(tmp_path / "d/real/iter01/train-stats.jsonl", [0.9, 0.5, 0.3], cut_short='{"step": 3, "lo')
    assert loss_curves.read_stats(path).values.tolist() == [[0, 0.9], [1, 0.5], [2, 0.3]]
    # only iteration 1 so far: the dataset's chain is named after the real subset it trains on
    assert list(loss_curves.loss_curves(tmp_path, log=lambda line: None)) == ["loss_d_real"]


def test_a_line_that_is_not_json_mid_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "train-stats.jsonl"
    path.write_text('{"step": 0, "loss": 0.5}\nnot json\n{"step": 2, "loss": 0.4}\n')
    with pytest.raises(OuroborosError, match=r"train-stats\.jsonl:2: not a JSON line"):
        loss_curves.read_stats(path)


def test_a_closed_form_fit_has_no_loss_curve_and_says_so(tmp_path):
    for folder in ("g/real/iter01", "g/replace/iter02"):  # a closed-form fit's one summary line
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "train-stats.jsonl").write_text(json.dumps({"train_size": 32}) + "\n")
    log = []
    assert loss_curves.loss_curves(tmp_path, log=log.append) == {}
    assert log == ["skipped loss_g_replace: its training logs no loss per step (a closed-form generator)"]


def test_replicates_and_non_run_folders_are_not_chains(results):
    write_stats(results / "digits/replace/rep1/iter02/train-stats.jsonl", [0.5])
    (results / "digits/fresh").mkdir()
    (results / "tables").mkdir()
    assert sorted(loss_curves.chains(results)) == [("digits", "greedy"), ("digits", "replace")]
