rule tables:
    """One tidy TSV of every metric of the configured targets (one row per dataset × run × iteration × metric)."""
    input:
        default_targets(),
    output:
        report(TABLE, caption="../report/tables.rst", category="Tables"),
    log:
        "logs/tables.log",
    threads: 1
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/tables.py"
