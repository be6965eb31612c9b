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


rule all:
    input:
        default_targets(),
        tables=TABLE,
        figures=FIGURES,
    default_target: True
