"""Config mistakes, checked in-process exactly as the workflow checks them at parse time (schema,
then ouroboros.config.parse): one message naming the key. The CLI tests show that the same
message reaches the user before any job (test_faults.py, test_workflow.py)."""

import copy
import dataclasses
import re

import pytest
import yaml

from ouroboros import config, devices, experiments, paths, selectors
from ouroboros.config import check

from cli import REPO, setting

SHIPPED = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
EXPERIMENT_FILES = experiments.files()
WITH_SCIENCE = experiments.load(REPO / "config.yaml", REPO / "experiments/science.yaml")


MISTAKES = {
    "unknown top-level key": (setting("seeds", 1), ["'seeds' was unexpected"]),
    "unknown key in a run": (setting("runs.accumulate-greedy.selction", "greedy"),
                             ["runs.accumulate-greedy.selction: unknown key"]),
    "wrong type": (setting("datasets.digits.size", "many"), ["['datasets']['digits']['size']", "'many'"]),
    "wrong type, nested": (setting("datasets.digits.train.lr", "fast"), ["['datasets']['digits']['train']['lr']"]),
    "unknown dataset in targets": (setting("targets.datasets", ["digits", "nope"]),
                                   ["targets.datasets", "unknown dataset 'nope'"]),
    "unknown run in an experiment": (lambda cfg: cfg["experiments"]["fig03"][0]["runs"].append("greedy-typo"),
                                     ["experiments.fig03[0].runs", "greedy-typo"]),
    "unknown run in an experiment file": (lambda cfg: cfg["experiments"]["science"][1]["runs"].append("greedy-typo"),
                                          ["experiments.science[1].runs", "greedy-typo"]),
    "a primary family of no experiment": (setting("primary.sciense", [{"claim": "I.gs_falls"}]),
                                           ["primary.sciense names no experiment", "science"]),
    "a primary claim's margin not positive": (lambda cfg: cfg["primary"]["science"][0].update(margin=0),
                                              ["margin", "0"]),
    "pool smaller than N": (setting("datasets.digits.size", 5000), ["datasets.digits.size", "1797"]),
    "steps and epochs": (setting("datasets.digits.train.epochs", 3), ["datasets.digits.train", "exactly one"]),
    "guidance without classes": (setting("datasets.digits.sample.guidance_scale", 2.0),
                                 ["datasets.digits.classes", "guidance_scale"]),
    "base cycle": (lambda cfg: cfg["datasets"]["cifar"].update(base="cifar"), ["datasets.cifar.base", "cycle"]),
    "replace-select without 2N": (setting("runs.replace-greedy.samples", "1N"), ["runs.replace-greedy.samples"]),
    "samples not a multiple of N": (setting("runs.replace-greedy.samples", "2n"), ["runs.replace-greedy.samples", "2N"]),
    "two runs in one directory": (setting("runs.replace-greedy.directory", "greedy"),
                                  ["runs.accumulate-greedy and runs.replace-greedy both write", "greedy/"]),
    "a renamed run beside its old self": (setting("runs.greedy", {"paradigm": "accumulate", "selection": "greedy"}),
                                          ["runs.accumulate-greedy.directory = greedy", "remove runs.greedy"]),
    "unknown model preset": (setting("datasets.digits.model", "resnet-nope"),
                             ["datasets.digits.model = 'resnet-nope'", "cifar-paper"]),
    "unknown mixed precision": (setting("datasets.digits.train.mixed_precision", "fp8"),
                                ["['datasets']['digits']['train']['mixed_precision']", "fp8"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_config_mistakes_name_the_key(mistake):
    mutate, expected = MISTAKES[mistake]
    cfg = copy.deepcopy(WITH_SCIENCE)  # config.yaml with experiments/science.yaml passed, as `make science` runs
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
    assert "runs.accumulate-threshold.tau0" in str(caught.value) and "datasets.digits.tau0" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# config.yaml for users, the project's experiments beside it


@pytest.mark.parametrize("extra", [None, *EXPERIMENT_FILES], ids=lambda p: p.name if p else "config.yaml alone")
def test_config_yaml_stands_alone_and_each_experiment_file_adds_to_it(extra):
    """config.yaml holds the user's datasets and runs and the paper's experiments; each experiments/*.yaml
    merges over it (as --configfile does) into a valid config that reads no deprecated name or form."""
    raw = experiments.load(REPO / "config.yaml", *([extra] if extra else []))
    cfg = check(raw, SCHEMA)
    assert cfg.notes == ()
    mine = set(yaml.safe_load(extra.read_text())["experiments"]) if extra else set()
    assert set(cfg.experiments) == {n for n in SHIPPED["experiments"]} | mine
    assert not any(d.startswith(("digits-sci", "theory-", "digits-flow")) for d in SHIPPED["datasets"])


def test_every_shipped_experiment_lives_in_one_file_and_the_paper_ones_in_config_yaml():
    ships = experiments.shipped()
    assert set(ships) == {"science", "beyond-digits", "beyond-flow", "theory", "beyond"}
    assert sorted(SHIPPED["experiments"]) == ["fig01", "fig02", "fig03", "fig04", "fig08-11", "fig13", "fig14"]
    assert set(SHIPPED["primary"]) == {"demo"}


OLD_NAMES = {"greedy": "accumulate-greedy", "threshold": "accumulate-threshold", "greedy-pixels": "accumulate-greedy-pixels",
             "knn-entropy": "accumulate-knn-entropy",
             **{f"threshold-0.{d}": f"accumulate-threshold-0.{d}" for d in ("60", "70", "90", "95")}}


def test_every_shipped_run_is_named_by_its_paradigm_first_and_the_renamed_keep_their_directories():
    runs = check(copy.deepcopy(SHIPPED), SCHEMA).runs
    assert all(name.startswith(run.paradigm) for name, run in runs.items()), sorted(runs)
    assert {run.directory: name for name, run in runs.items() if run.directory != name} == OLD_NAMES


@pytest.mark.parametrize("old", OLD_NAMES)
def test_an_old_run_name_still_names_its_run_and_its_results_directory(old):
    """A config naming a renamed run by its old name plans the same files as with the new name (the old
    results directory: results/cifar/greedy/iter08/fid.json keeps its meaning), with a note naming both."""
    new = OLD_NAMES[old]
    by_name = {}
    for name in (old, new):
        raw = copy.deepcopy(SHIPPED)
        raw["targets"]["runs"] = [name]
        by_name[name] = check(raw, SCHEMA)
    assert paths.target_files(by_name[old].targets) == paths.target_files(by_name[new].targets)
    assert paths.target_files(by_name[new].targets)[-1] == f"results/digits/{old}/iter04/fid.json"
    assert by_name[new].notes == () and len(by_name[old].notes) == 1
    note = by_name[old].notes[0]
    assert f"targets.runs names {old}, the old name of runs.{new} (deprecated)" in note and f"/{old}/" in note
    assert by_name[old].run(old) is by_name[old].run(new)


def test_the_paper_experiments_plan_the_directories_they_planned_before_the_renaming():
    """fig03 and fig14 name the new run names and plan results/cifar/greedy/... and threshold-0.60/... as before."""
    cfg = check(copy.deepcopy(SHIPPED), SCHEMA)
    files = {f.split("/")[2] for name in ("fig03", "fig08-11", "fig14") for g in cfg.experiments[name]
             for f in paths.target_files(g)}
    assert files == {"accumulate", "greedy", "replace", "replace-greedy", "replace-threshold", "threshold",
                     "threshold-0.60", "threshold-0.70", "threshold-0.90", "threshold-0.95"}


def test_samples_as_a_bare_number_still_works_with_a_note():
    raw = copy.deepcopy(SHIPPED)
    raw["runs"]["replace-2n"]["samples"] = 2
    cfg = check(raw, SCHEMA)
    assert cfg.run("replace-2n").samples == 2 == check(copy.deepcopy(SHIPPED), SCHEMA).run("replace-2n").samples
    assert cfg.notes == ("config.yaml: runs.replace-2n.samples: 2 means 2N images per iteration (deprecated): "
                         "write samples: 2N",)


# The defaults a comment quotes: "KEY: value  # ... default: X" (also on a commented-out key or a
# continuation line of the key's comment), or "default `KEY: X`" in prose under a section
_DEFAULT_ON_KEY = re.compile(r"\bdefault: ([^\s,;()]+?)\.?(?=[\s,;()]|$)")
_DEFAULT_IN_PROSE = re.compile(r"\bdefault `([\w.-]+): ([^`]+)`")
_KEY = re.compile(r"^(\s*)(?:#\s*)?([A-Za-z0-9_.-]+):(?:\s|$)")


def quoted_defaults(text: str) -> list[tuple[tuple[str, ...], str, int]]:
    """(key path, quoted default, line number) of every default a YAML file's comments quote, the path by
    indentation (a flow mapping of one key, `sample: {guidance_scale: 2.0}`, extends it by that key)."""
    out, stack, last = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        code, _, comment = line.partition(" #") if not line.lstrip().startswith("#") else ("", "", line.split("#", 1)[1])
        m = _KEY.match(line)
        if m and (code.strip() or _DEFAULT_ON_KEY.search(comment.partition("#")[2] or "")):
            indent, key = len(m[1]), m[2]
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
            last = tuple(k for _, k in stack)
            flow = re.match(r"\s*[\w.-]+:\s*\{([\w.-]+):[^,}]*\}\s*$", code)
            if flow:
                last += (flow[1],)
            if not code.strip():  # a commented-out key: its own comment is the second one
                comment = comment.partition("#")[2]
        elif code.strip() == "" and last is not None and len(line) - len(line.lstrip()) <= (stack[-1][0] if stack else 0):
            last = None  # a comment of its own, not a continuation of the last key's
        for default in _DEFAULT_ON_KEY.findall(comment.replace('"default: X"', "")):  # the header's own words
            assert last is not None, f"line {number}: 'default: {default}' quotes no key"
            out.append((last, default, number))
        for key, default in _DEFAULT_IN_PROSE.findall(comment):
            # under a section's key, or in the comment above it (at column 0): that section
            section = [k for i, k in stack if i == 0][:1] if line[:1] != "#" else \
                [m[1] for m in re.finditer(r"^([A-Za-z][\w.-]*):", "\n".join(text.splitlines()[number:]), re.M)][:1]
            out.append((tuple(section) + ("*", key), default, number))
    return out


def code_default(path: tuple[str, ...], raw: dict):
    """The default the code gives the key at ``path`` when config.yaml leaves it out."""
    fields = lambda cls: {f.name: f.default for f in dataclasses.fields(cls)}  # noqa: E731
    top, *rest = path
    if top == "datasets":
        if rest[1:2] == ["train"]:
            return fields(config.TrainConfig)[rest[2]]
        if rest[1:2] == ["sample"]:
            return fields(config.SampleConfig)[rest[2]]
        return fields(config.Dataset)[rest[1]]
    if top == "runs":
        key = rest[-1]
        if key in fields(config.Run):
            return fields(config.Run)[key]
        return selectors.get(raw["runs"][rest[0]]["selection"]).params[key].default
    if top == "targets":
        return paths.GROUP_DEFAULTS[rest[0]]
    if top == "gpus" and rest == ["count"]:
        return devices.AUTO
    if top == "tracking":
        from ouroboros import train

        return train.TRACKING[0]
    raise AssertionError(f"no known default for {'.'.join(path)}")


def _same(quoted: str, default, key: str) -> bool:
    if key == "samples":
        return config.samples_factor(quoted, "", []) == default
    return quoted == str(default) or yaml.safe_load(quoted) == default


@pytest.mark.parametrize("file", [REPO / "config.yaml", *EXPERIMENT_FILES], ids=lambda p: p.name)
def test_every_default_a_comment_quotes_is_the_codes(file):
    text = file.read_text()
    quoted = quoted_defaults(text)
    if file.name == "config.yaml":  # the file that quotes them: train, sample, dataset, run, targets, tracking and gpus keys
        assert len(quoted) >= 15 and {p[0] for p, _, _ in quoted} == {"tracking", "gpus", "targets", "datasets", "runs"}
    # every "default" of a comment is one of the two quoted forms, so no other can go stale unchecked
    said = sum(line.partition("#")[2].count("default") for line in text.splitlines())
    assert said == len(quoted) + text.count('quoted as "default: X"'), (file, quoted)
    for path, default, number in quoted:
        want = code_default(path, experiments.load(REPO / "config.yaml", file))
        where = f"{file.name}:{number}: {'.'.join(path)}"
        assert _same(default, want, path[-1]), f"{where} quotes default {default}, the code's is {want!r}"


def test_the_schemas_descriptions_quote_the_codes_defaults():
    schema = yaml.safe_load(SCHEMA.read_text())
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for m in re.finditer(r"\(default: ([^)]+)\)|(\w+) \(default\)", str(node.get("description", ""))):
                found.append((path, m[1] or m[2]))
            for key, value in node.items():
                walk(value, path + (key,))

    walk(schema, ())
    expect = {"mixed_precision": config.TrainConfig.mixed_precision, "samples": "1N", "generator": "ddpm",
              "select_features": "features", "directory": "the run's name"}
    assert found and all(path[-1] in expect for path, _ in found), found
    for path, quoted in found:
        want = expect[path[-1]]
        assert quoted in (want, "the dataset's") or quoted.startswith(str(want)), (path, quoted)
    assert config.Run.__dataclass_fields__["samples"].default == config.samples_factor("1N", "", [])
    assert config.Dataset.__dataclass_fields__["select_features"].default is None  # None: the dataset's features
    assert config.Dataset.__dataclass_fields__["generator_choice"].default is None  # None: the family model implies
