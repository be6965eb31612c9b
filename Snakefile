# ouroboros: the self-consuming loop of diffusion models (train → sample → embed → select →
# evaluate, again and again) as one DAG. Every path is known up front; see workflow/rules/common.smk
# for the recursion and config.yaml for the datasets and runs.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/fid.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/findings.smk"


# Under a cluster executor these run on the submitting host: they only read results/ and draw.
localrules:
    tables,
    figures,
    findings,


# The configured targets (config.yaml: targets). Tables and figures are drawn from whatever
# results/ holds by the named targets `tables` and `figures`, which never trigger training.
rule all:
    default_target: True
    input:
        default_targets(),


# One target per named experiment (config.yaml, or an experiments/*.yaml passed), e.g. `snakemake -n fig03` plans
# the runs behind Figure 3 and `snakemake --cores 8 fig03` computes them.
for _name in CFG.experiments:

    rule:
        name:
            _name
        input:
            experiment_targets(_name),


# The project's own experiments whose file (experiments/*.yaml) was not passed: the target says which to pass.
for _name in EXPERIMENT_FILES:

    rule:
        name:
            _name
        input:
            experiment_file_needed(_name),
