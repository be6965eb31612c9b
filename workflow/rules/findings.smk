rule findings:
    """The paper's claims tested on what results/ holds: one row per claim and scope, its 95 % interval, a verdict
    (primary rows with Holm's correction first)."""
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
    script:
        "../scripts/findings.py"
