# All Python of the workflow: config validation, wildcard constraints and the input functions
# that encode the recursion (iteration n reads what iteration n-1 wrote). The logic itself lives
# in ouroboros.paths, where it is unit-tested; these functions only adapt it to wildcards.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from ouroboros import paths, seeds  # noqa: E402
from ouroboros.config import AUTO  # noqa: E402
from ouroboros.config import check as check_config  # noqa: E402
from ouroboros.errors import OuroborosError  # noqa: E402

try:  # the schema, then the checks across keys: one message naming the key
    CFG = check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except OuroborosError as exc:
    raise WorkflowError(str(exc)) from None

TABLE = "results/tables/metrics.tsv"

# A run killed outright leaves Snakemake's directory lock behind: clear it when its owner is dead,
# so that the same command resumes (ouroboros.locks). Jobs that Snakemake spawns skip this.
if workflow.is_main_process:
    from ouroboros import locks

    locks.clear_stale(log=lambda message: print(message, file=sys.stderr))
    locks.register()


def results_signature():
    from ouroboros.tables import signature

    return signature("results")


# run and branch are run references: a run's name, then /rep{r} for a replicate r ≥ 1 (ouroboros.paths)
wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/rep[1-9]\d*)?",
    branch=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/rep[1-9]\d*)?",
    iter=r"\d\d",
    producer=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/rep[1-9]\d*)?/iter\d\d(/x\d+)?",
    folder=r"[A-Za-z0-9][A-Za-z0-9_.-]*((/rep[1-9]\d*)?/iter\d\d(/x\d+)?)?",
    extractor=r"pixels|classifier|dinov2|inception",


def default_targets():
    """metrics.json and fid.json of every (dataset, run, iteration) in config.yaml's targets."""
    return paths.target_files(CFG.targets)


def experiment_targets(name):
    """The files of one named experiment (config.yaml: experiments), e.g. a figure of the paper."""
    return [f for group in CFG.experiments[name] for f in paths.target_files(group)]


def _n(wildcards):
    return int(wildcards.iter)


def _run_name(ref):
    """The run's name in config.yaml from a run reference ('greedy/rep2' → 'greedy')."""
    return paths.replicate_of(ref)[0]


def _replicate(wildcards):
    ref = getattr(wildcards, "run", None) or getattr(wildcards, "branch", None)
    if ref is None and hasattr(wildcards, "producer"):
        ref = paths.parse_producer(wildcards.producer)[0]
    return paths.replicate_of(ref)[1] if ref else 0


def _check_run(wildcards):
    """Unknown names in a target fail here, naming the config key."""
    CFG.dataset(wildcards.dataset)
    if getattr(wildcards, "run", paths.REAL) != paths.REAL:
        CFG.run(_run_name(wildcards.run))
    if _n(wildcards) < 1:
        raise OuroborosError(f"iterations count from 1: iter{wildcards.iter} does not exist")


def seed(stage):
    """The stream of (dataset, iteration, stage, replicate): never the run (common random numbers)."""
    return lambda wildcards: seeds.derive(
        CFG.seed, wildcards.dataset, int(getattr(wildcards, "iter", 0)), stage, _replicate(wildcards)
    )


def dataset_params(wildcards):
    return CFG.dataset(wildcards.dataset)


# --- train -----------------------------------------------------------------------------
def train_input(wildcards):
    """D_n's manifest and every image file it may name (and their labels, for a conditional model)."""
    _check_run(wildcards)
    n, branch = _n(wildcards), wildcards.branch
    if _run_name(branch) == paths.REAL:
        if n != 1:
            raise OuroborosError(f"results/{wildcards.dataset}/real holds iteration 1 only")
        images = [paths.real_images(wildcards.dataset)]
    else:
        CFG.run(_run_name(branch))
        if n < 2:
            raise OuroborosError(f"iteration 1 is shared: its model is results/{wildcards.dataset}/real/iter01/model")
        images = paths.train_files(CFG, wildcards.dataset, branch, n)
    out = {"manifest": paths.manifest(wildcards.dataset, branch, n), "images": images}
    if CFG.dataset(wildcards.dataset).classes:
        out["labels"] = [paths.labels_of(f) for f in images]
    return out


# --- sample ----------------------------------------------------------------------------
def sample_input(wildcards):
    branch, n, _ = paths.parse_producer(wildcards.producer)
    CFG.dataset(wildcards.dataset)
    if _run_name(branch) != paths.REAL:
        CFG.run(_run_name(branch))
    return {"model": paths.model_dir(wildcards.dataset, branch, n)}


def sample_range(wildcards):
    try:
        return paths.sample_range(CFG, wildcards.dataset, wildcards.producer)
    except ValueError as exc:
        raise OuroborosError(f"results/{wildcards.dataset}/{wildcards.producer}: {exc}") from None


def sample_seed(wildcards):
    _, n, _ = paths.parse_producer(wildcards.producer)
    return seeds.derive(CFG.seed, wildcards.dataset, n, "sample", _replicate(wildcards))


# --- features --------------------------------------------------------------------------
def features_input(wildcards):
    CFG.dataset(wildcards.dataset)
    folder = f"results/{wildcards.dataset}/{wildcards.folder}"
    real = wildcards.folder in (paths.REAL, paths.REFERENCE)
    images = f"{folder}/images.npy" if real else f"{folder}/samples.npy"
    out = {"images": images}
    if wildcards.extractor == "classifier":
        out["classifier"] = paths.classifier_dir(wildcards.dataset)
    return out


def features_gpu(wildcards):
    return 1 if wildcards.extractor in ("dinov2", "inception") else 0


# --- select ----------------------------------------------------------------------------
def pool_sources(wildcards):
    """[(source name, image file)] of the pool D_n is selected from, in pool order."""
    return [(s.name, f) for s in paths.pool(CFG, wildcards.dataset, wildcards.run, _n(wildcards)) for f in s.files]


def run_tau0(wildcards):
    """τ0 of the run's Threshold Decay Filter on this dataset (a number or auto), else None."""
    return CFG.tau0(wildcards.dataset, _run_name(wildcards.run))


def select_input(wildcards):
    """The pool's images and features; with tau0: auto also D_1's (τ0 is measured on them)."""
    _check_run(wildcards)
    if _n(wildcards) < 2:
        raise OuroborosError("D_1 is the real subset: there is no selection at iteration 1")
    extractor = CFG.dataset(wildcards.dataset).features
    files = [f for _, f in pool_sources(wildcards)]
    out = {"images": files, "features": [paths.features_of(f, extractor) for f in files]}
    if run_tau0(wildcards) == AUTO:
        real = paths.real_images(wildcards.dataset)
        out |= {"real_images": real, "real_features": paths.features_of(real, extractor)}
    return out


def select_device(wildcards):
    """Where the selection runs: only Greedy Selection has a GPU path; the rest run on the CPU."""
    return dataset_params(wildcards).select_device if CFG.run(_run_name(wildcards.run)).selection == "greedy" else "cpu"


def select_params(wildcards):
    run = CFG.run(_run_name(wildcards.run))
    real = paths.real_images(wildcards.dataset) if run_tau0(wildcards) == AUTO else None
    return {"method": run.selection, "tau0": run_tau0(wildcards), "decay": run.decay, "real_images": real}


# --- evaluate and fid ------------------------------------------------------------------
def generated_files(wildcards):
    return paths.sample_files(CFG, wildcards.dataset, wildcards.run, _n(wildcards))


def evaluate_input(wildcards):
    _check_run(wildcards)
    d, r, n = wildcards.dataset, wildcards.run, _n(wildcards)
    extractor = CFG.dataset(d).features
    train_images = paths.train_files(CFG, d, r, n)
    images = list(dict.fromkeys(train_images + generated_files(wildcards) + [paths.real_images(d)]))
    return {
        "manifest": paths.manifest(d, r, n),
        "images": images,
        "features": [paths.features_of(f, extractor) for f in images],
    }


def fid_input(wildcards):
    _check_run(wildcards)
    extractor = CFG.dataset(wildcards.dataset).fid_features
    files = generated_files(wildcards) + [paths.fid_reference(CFG, wildcards.dataset)]
    return {"images": files, "features": [paths.features_of(f, extractor) for f in files]}


def run_meta(wildcards):
    name, replicate = paths.replicate_of(wildcards.run)
    run = CFG.run(name)
    return {
        "dataset": wildcards.dataset,
        "family": CFG.dataset(wildcards.dataset).family,
        "run": name,
        "replicate": replicate,
        "paradigm": run.paradigm,
        "selection": run.selection,
        "samples_per_iteration": run.samples,
        "iteration": _n(wildcards),
        "tau0": run_tau0(wildcards),  # "auto" stays "auto" here: the value measured is in selection.json
        "decay": run.decay,
        "dataset_size": CFG.dataset(wildcards.dataset).size,
    }
