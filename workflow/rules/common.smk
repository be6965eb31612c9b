# All Python of the workflow: config validation, wildcard constraints and the input functions
# that encode the recursion (iteration n reads what iteration n-1 wrote). The logic itself lives
# in ouroboros.paths, where it is unit-tested; these functions only adapt it to wildcards.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

import re  # noqa: E402

from ouroboros import experiments, features, generators, paths, seeds, selectors  # noqa: E402
from ouroboros import sigterm  # noqa: E402
from ouroboros.config import AUTO, RUN_OPTION_DEFAULTS  # noqa: E402
from ouroboros.config import check as check_config  # noqa: E402
from ouroboros.errors import OuroborosError  # noqa: E402

# snakemake's SIGTERM handler takes a lock the main thread may hold when the signal lands, and a
# pre-empted run then hangs for ever (ouroboros.sigterm); the scheduler, made after this file is
# read, binds the handler that runs off the main thread instead
sigterm.install()

try:  # the schema, then the checks across keys: one message naming the key
    CFG = check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except OuroborosError as exc:
    raise WorkflowError(str(exc)) from None

TABLE = "results/tables/metrics.tsv"

# A run killed outright leaves Snakemake's directory lock behind: clear it when its owner is dead,
# so that the same command resumes (ouroboros.locks), once the jobs it may have left running are
# over (a new run never writes beside them). Jobs that Snakemake spawns skip this.
if workflow.is_main_process:
    from ouroboros import locks

    for _note in CFG.notes:  # an old name or form, still read: what to write instead
        print(f"Note: {_note}", file=sys.stderr)
    if not workflow.dryrun:
        try:
            locks.wait_for_jobs(log=lambda message: print(message, file=sys.stderr))
        except OuroborosError as exc:
            raise WorkflowError(str(exc)) from None
    locks.clear_stale(log=lambda message: print(message, file=sys.stderr))
    locks.register()


def results_signature():
    from ouroboros.tables import signature

    return signature("results")


# run and branch are run references: a run's name, then /rep{r} for a replicate r ≥ 1 on the shared
# D_1, or /draw{r} for one on a D_1 of its own (real_subset: per_replicate; ouroboros.paths)
wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/(rep|draw)[1-9]\d*)?",
    branch=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/(rep|draw)[1-9]\d*)?",
    iter=r"\d\d",
    r=r"[1-9]\d*",
    producer=r"[A-Za-z0-9][A-Za-z0-9_.-]*(/(rep|draw)[1-9]\d*)?/iter\d\d(/x\d+)?",
    # a producer, or a folder of real images: real, reference, fresh, or a drawn replicate's real/drawR, fresh/drawR
    folder=r"[A-Za-z0-9][A-Za-z0-9_.-]*((/(rep|draw)[1-9]\d*)?/iter\d\d(/x\d+)?|/draw[1-9]\d*)?",
    # the registered extractors (ouroboros.features.register), longest first so none shadows another
    extractor="|".join(re.escape(e) for e in sorted(features.EXTRACTORS, key=len, reverse=True)),


def default_targets():
    """metrics.json and fid.json of every (dataset, run, iteration) in config.yaml's targets."""
    return paths.target_files(CFG.targets)


def experiment_targets(name):
    """The files of one named experiment (config.yaml: experiments), e.g. a figure of the paper."""
    return [f for group in CFG.experiments[name] for f in paths.target_files(group)]


# The project's own experiments (experiments/*.yaml) whose file was not passed: naming one says which
EXPERIMENT_FILES = experiments.missing(CFG.experiments, Path(workflow.basedir) / "experiments")


def experiment_file_needed(name):
    def fail(wildcards):
        file = EXPERIMENT_FILES[name]
        file = file.relative_to(Path.cwd()) if file.is_relative_to(Path.cwd()) else file
        raise OuroborosError(f"{name} is an experiment of {file}; pass it: snakemake --configfile {file} -- {name}")

    return fail


def findings_config():
    """What decides the findings (ouroboros.experiments.for_findings): the same whatever experiment files were passed."""
    return experiments.for_findings(config, Path(workflow.basedir) / "experiments")


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


def _run_at(name):
    """The run whose results directory ``name`` is: a renamed run's new name is no path of its own."""
    run = CFG.run(name)
    if run.directory != name:
        raise OuroborosError(f"config.yaml: runs.{run.name} writes results/{{dataset}}/{run.directory}/; name that path")
    return run


def _check_run(wildcards):
    """Unknown names in a target fail here, naming the config key."""
    CFG.dataset(wildcards.dataset)
    if getattr(wildcards, "run", paths.REAL) != paths.REAL:
        _run_at(_run_name(wildcards.run))
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
        images = [paths.real_images(wildcards.dataset, branch)]
    else:
        _run_at(_run_name(branch))
        if n < 2:
            raise OuroborosError(f"iteration 1 is shared: its model is results/{wildcards.dataset}/real/iter01/model")
        images = paths.train_files(CFG, wildcards.dataset, branch, n)
    out = {"manifest": paths.manifest(wildcards.dataset, branch, n), "images": images}
    if _run_name(branch) != paths.REAL and CFG.run(_run_name(branch)).init == "previous":
        generator = CFG.dataset(wildcards.dataset).generator_spec
        if not generator.fine_tunes:
            raise OuroborosError(
                f"config.yaml: runs.{_run_name(branch)}.init = previous fine-tunes a model, which "
                f"generator {generator.name} of datasets.{wildcards.dataset} cannot; use init: scratch"
            )
        out["init"] = paths.model_dir(wildcards.dataset, branch, n - 1)  # fine-tune iteration n-1's weights
    d = CFG.dataset(wildcards.dataset)
    if d.classes or d.generator_spec.inherits_labels:  # a kde's samples carry their parent's label
        out["labels"] = [paths.labels_of(f) for f in images]
    if generators.measures_auto(d.model_params):  # e.g. bandwidth: auto, measured on D_1
        out["real"] = paths.real_images(wildcards.dataset, branch)
    return out


def model_gpu(wildcards):
    """A GPU slot for the train and sample jobs of a generator that needs one (the DDPM)."""
    return int(CFG.dataset(wildcards.dataset).generator_spec.gpu)


# --- sample ----------------------------------------------------------------------------
def sample_input(wildcards):
    branch, n, _ = paths.parse_producer(wildcards.producer)
    CFG.dataset(wildcards.dataset)
    if _run_name(branch) != paths.REAL:
        _run_at(_run_name(branch))
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
def train_options(wildcards):
    """TrainConfig keys: the dataset's, with the run's own train keys from iteration 2 on."""
    return CFG.train_options(wildcards.dataset, _run_name(wildcards.branch), _n(wildcards))


def features_input(wildcards):
    CFG.dataset(wildcards.dataset)
    folder = f"results/{wildcards.dataset}/{wildcards.folder}"
    real = not re.search(r"(^|/)iter\d\d", wildcards.folder)  # real, reference, fresh, or a drawn real/drawR, fresh/drawR
    images = f"{folder}/images.npy" if real else f"{folder}/samples.npy"
    out = {"images": images}
    if wildcards.extractor == "classifier":
        out["classifier"] = paths.classifier_dir(wildcards.dataset)
    return out


def features_gpu(wildcards):
    return 1 if features.get(wildcards.extractor).gpu else 0


# The features rule's model and weights: FD_DINOv2's and the torchvision FID's extractors read their
# own dataset keys, and every other extractor keeps the values it had before they existed, so that
# Snakemake does not recompute features files whose parameters it recorded.
def features_dinov2(wildcards):
    d = dataset_params(wildcards)
    return d.fd_dinov2 if wildcards.extractor == "dinov2-fd" else d.dinov2


def features_inception_weights(wildcards):
    d = dataset_params(wildcards)
    return d.torchvision_inception_weights if wildcards.extractor == "inception-torchvision" else d.inception_weights


# --- select ----------------------------------------------------------------------------
def pool_sources(wildcards):
    """[(source name, image file)] of the pool D_n is selected from, in pool order."""
    return [(s.name, f) for s in paths.pool(CFG, wildcards.dataset, wildcards.run, _n(wildcards)) for f in s.files]


def selection(wildcards):
    """The run's selection parameters on this dataset (a dataset-level τ0 filled in)."""
    return CFG.selection_params(wildcards.dataset, _run_name(wildcards.run))


def run_tau0(wildcards):
    """τ0 of the run's Threshold Decay Filter on this dataset (a number or auto), else None."""
    return selection(wildcards).get("tau0")


def select_features(wildcards):
    """The space the select job loads: the run's selection space, or, for a method that never
    reads the rows (all, random), the dataset's features as ever, so its job never reruns."""
    name = _run_name(wildcards.run)
    if not selectors.get(CFG.run(name).selection).reads_features:
        return CFG.dataset(wildcards.dataset).features
    return CFG.select_features(wildcards.dataset, name)


def _measures_auto(wildcards):
    """Whether a parameter is auto: measured on D_1 by the select job (tau0: auto)."""
    return any(v == AUTO for v in selection(wildcards).values())


def fresh_rows(wildcards):
    return paths.fresh_rows(CFG, wildcards.dataset, wildcards.run, _n(wildcards))


def select_input(wildcards):
    """The pool's images and features; with tau0: auto also D_1's (τ0 is measured on them)."""
    _check_run(wildcards)
    if _n(wildcards) < 2:
        raise OuroborosError("D_1 is the real subset: there is no selection at iteration 1")
    name = _run_name(wildcards.run)
    method = selectors.get(CFG.run(name).selection)
    if method.fits is not None:  # e.g. knn_entropy's distance matrix: fail now, not after the GPU work before it
        why = method.fits(paths.pool_size(CFG, wildcards.dataset, wildcards.run, _n(wildcards)), dataset_params(wildcards).size)
        if why:
            raise OuroborosError(
                f"config.yaml: runs.{CFG.run(name).name} on datasets.{wildcards.dataset}, iter{wildcards.iter}: {why}"
            )
    extractor = select_features(wildcards)
    files = [f for _, f in pool_sources(wildcards)]
    out = {"images": files, "features": [paths.features_of(f, extractor) for f in files]}
    if _measures_auto(wildcards):
        real = paths.real_images(wildcards.dataset, wildcards.run)
        out |= {"real_images": real, "real_features": paths.features_of(real, extractor)}
    if fresh_rows(wildcards)[1]:
        out["fresh"] = paths.fresh_images(wildcards.dataset, wildcards.run)
    return out


def select_device(wildcards):
    """Where the selection runs: the dataset's select_device for a method with a GPU path
    (Greedy Selection), the CPU for the rest."""
    method = selectors.get(CFG.run(_run_name(wildcards.run)).selection)
    return dataset_params(wildcards).select_device if "cuda" in method.devices else "cpu"


def select_params(wildcards):
    """What the select job is told. tau0 and decay keep their places for every method, and the
    paradigm options appear only when set, so that results computed before the selection
    registry keep their parameters (Snakemake reruns a job whose parameters change)."""
    run = CFG.run(_run_name(wildcards.run))
    params = selection(wildcards)
    real = paths.real_images(wildcards.dataset, wildcards.run) if _measures_auto(wildcards) else None
    out = {"method": run.selection, "tau0": params.get("tau0"), "decay": params.get("decay")}
    out |= {k: v for k, v in params.items() if k not in out} | {"real_images": real}
    if run.share != "uniform":
        out["share"] = run.share
    start, count = fresh_rows(wildcards)
    if count:
        out["fresh"] = [paths.fresh_images(wildcards.dataset, wildcards.run), start, count, f"runs.{run.name}.fresh"]
    return out


# --- evaluate and fid ------------------------------------------------------------------
def generated_files(wildcards):
    return paths.sample_files(CFG, wildcards.dataset, wildcards.run, _n(wildcards))


def evaluate_input(wildcards):
    _check_run(wildcards)
    d, r, n = wildcards.dataset, wildcards.run, _n(wildcards)
    extractor = CFG.dataset(d).features
    train_images = paths.train_files(CFG, d, r, n)
    images = list(dict.fromkeys(train_images + generated_files(wildcards) + [paths.real_images(d, r)]))
    out = {
        "manifest": paths.manifest(d, r, n),
        "images": images,
        "features": [paths.features_of(f, extractor) for f in images],
    }
    if CFG.dataset(d).traces_ancestry:  # labels are D_1 ancestors: metrics.json gains the lineage
        out["labels"] = [paths.labels_of(f) for f in train_images]
    return out


def fid_input(wildcards):
    """G_n and the reference with their features in fid_features' space, and in those of the extra
    distances the dataset sets (fd_dinov2, torchvision_inception_weights): only then, so that
    fid.json of other datasets keeps its inputs."""
    from ouroboros import fid

    _check_run(wildcards)
    files = generated_files(wildcards) + [paths.fid_reference(CFG, wildcards.dataset, wildcards.run)]
    spaces = fid.extractors(CFG.dataset(wildcards.dataset))
    return {"images": files, "features": [paths.features_of(f, e) for e in spaces for f in files]}


def fid_spaces(wildcards):
    """The fid rule's extractor parameter: fid_features alone, or every space with its model (ouroboros.fid.spaces)."""
    from ouroboros import fid

    return fid.spaces(CFG.dataset(wildcards.dataset))


def run_meta(wildcards):
    name, replicate = paths.replicate_of(wildcards.run)
    run = CFG.run(name)
    return (
        {
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
        | real_subset_meta(wildcards.run)
        | run_options(wildcards.dataset, name)
        | generator_meta(wildcards.dataset)
    )


def real_subset_meta(ref):
    """A replicate on a D_1 of its own says so (a shared D_1, the default, keeps the metadata it had)."""
    design = paths.real_subset_of(ref)
    return {} if design == paths.SHARED else {"real_subset": design}


def generator_meta(dataset):
    """A generator other than the DDPM and its parameters (the DDPM's results keep their metadata)."""
    d = CFG.dataset(dataset)
    if d.generator == "ddpm":
        return {}
    return {"generator": d.generator, "model_params": dict(d.model_params), "data_dim": data_dim(d)}


def data_dim(d):
    """The dimension of a vector dataset's items (None for images: their size is in the files)."""
    return int(d.source_spec["dim"]) if d.source == "gaussian" else None


def run_options(dataset, name):
    """The run's options beyond the paper's loop, only where set: older results keep their
    metadata (and Snakemake its parameters), and the tables fill in the defaults."""
    run = CFG.run(name)
    out = {k: getattr(run, k) for k, default in RUN_OPTION_DEFAULTS.items() if getattr(run, k) != default}
    if CFG.select_features(dataset, name) != CFG.dataset_select_features(dataset):
        out["select_features"] = CFG.select_features(dataset, name)  # a run's own space; the dataset's is every run's
    extra = {k: v for k, v in CFG.selection_params(dataset, name).items() if k not in ("tau0", "decay")}
    if extra:
        out["selection_params"] = extra
    return out


# The preflight (ouroboros.preflight, `ouroboros check`) before the first job of a run that plans GPU
# jobs: CUDA where a GPU is present (local execution only: a cluster's jobs check on their nodes), the
# data sources, the networks' weights offline, free disk; every problem at once, in seconds, not hours
# in. Snakemake calls onstart only for a real run (never -n, nor inside spawned jobs; --touch runs
# nothing, so it is not checked), and it adds no input, parameter or code to any rule: finished
# results stay up to date.
onstart:
    if not workflow.touch:
        from ouroboros import preflight

        _report = preflight.at_start(
            workflow.dag.needrun_jobs(),
            CFG,
            local=workflow.local_exec,
            gpus=config.get("gpus"),
            log=lambda m: print(m, file=sys.stderr),
        )
        if _report is not None:
            raise WorkflowError(_report.text())
