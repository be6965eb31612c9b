rule findings:
    """The paper's claims tested on what results/ holds: one row per claim and scope, its 95 % interval, a verdict
    (each experiment's primary rows first, Holm's correction within its declared family)."""
    input:
        TABLE,
    output:
        findings=report("results/tables/findings.tsv", caption="../report/findings.rst", category="Findings"),
        text="results/tables/findings.md",
        rst="results/tables/findings.rst",  # the primary rows, on the report's first screen (report/workflow.rst)
        summary=report("results/tables/summary.tsv", caption="../report/summary.rst", category="Tables"),
    log:
        "logs/findings.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    params:
        # what decides the verdicts, every shipped experiment's included, passed or not: a change to an
        # experiment's targets or primary family reruns this
        findings_config=findings_config(),
    script:
        "../scripts/findings.py"
