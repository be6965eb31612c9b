"""Config mistakes, checked in-process exactly as the workflow checks them at parse time (schema,
then ouroboros.config.parse): one message naming the key. The CLI tests show that the same
message reaches the user before any job (test_faults.py, test_workflow.py)."""

import copy

import pytest
import yaml

from ouroboros.config import check

from cli import REPO, setting

SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


MISTAKES = {
    "unknown top-level key": (setting("seeds", 1), ["'seeds' was unexpected"]),
    "unknown key in a run": (setting("runs.greedy.selction", "greedy"), ["runs.greedy.selction: unknown key"]),
    "wrong type": (setting("datasets.digits.size", "many"), ["['datasets']['digits']['size']", "'many'"]),
    "wrong type, nested": (setting("datasets.digits.train.lr", "fast"), ["['datasets']['digits']['train']['lr']"]),
    "unknown dataset in targets": (setting("targets.datasets", ["digits", "nope"]),
                                   ["targets.datasets", "unknown dataset 'nope'"]),
    "unknown run in an experiment": (lambda cfg: cfg["experiments"]["fig03"][0]["runs"].append("greedy-typo"),
                                     ["experiments.fig03[0].runs", "greedy-typo"]),
    "a primary family of no experiment": (setting("primary.sciense", [{"claim": "I.gs_falls"}]),
                                           ["primary.sciense names no experiment", "science"]),
    "a primary claim's margin not positive": (lambda cfg: cfg["primary"]["science"][0].update(margin=0),
                                              ["margin", "0"]),
    "pool smaller than N": (setting("datasets.digits.size", 5000), ["datasets.digits.size", "1797"]),
    "steps and epochs": (setting("datasets.digits.train.epochs", 3), ["datasets.digits.train", "exactly one"]),
    "guidance without classes": (setting("datasets.digits.sample.guidance_scale", 2.0),
                                 ["datasets.digits.classes", "guidance_scale"]),
    "base cycle": (lambda cfg: cfg["datasets"]["cifar"].update(base="cifar"), ["datasets.cifar.base", "cycle"]),
    "replace-select without 2N": (setting("runs.replace-greedy.samples", 1), ["runs.replace-greedy.samples"]),
    "unknown model preset": (setting("datasets.digits.model", "resnet-nope"),
                             ["datasets.digits.model = 'resnet-nope'", "cifar-paper"]),
    "unknown mixed precision": (setting("datasets.digits.train.mixed_precision", "fp8"),
                                ["['datasets']['digits']['train']['mixed_precision']", "fp8"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_config_mistakes_name_the_key(mistake):
    mutate, expected = MISTAKES[mistake]
    cfg = copy.deepcopy(SHIPPED)
    mutate(cfg)
    with pytest.raises(Exception) as caught:
        check(cfg, SCHEMA)
    for text in expected:
        assert text in str(caught.value), (text, str(caught.value)[:2000])


def test_the_shipped_config_is_valid_and_defaults_come_from_the_dataclasses():
    cfg = check(copy.deepcopy(SHIPPED), SCHEMA)
    digits = cfg.dataset("digits")
    assert digits.size == 48 and digits.dinov2 == "facebook/dinov2-small" and digits.fid_reference == "subset"
    assert cfg.dataset("cifar").dinov2 == SHIPPED["datasets"]["cifar"]["dinov2"]


def test_threshold_without_tau0_names_both_keys():
    cfg = copy.deepcopy(SHIPPED)
    del cfg["datasets"]["digits"]["tau0"]
    parsed = check(cfg, SCHEMA)
    with pytest.raises(Exception) as caught:
        parsed.tau0("digits", "threshold")
    assert "runs.threshold.tau0" in str(caught.value) and "datasets.digits.tau0" in str(caught.value)
