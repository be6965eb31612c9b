rule figures:
    """Metrics over iterations, one line per dataset × run, from the tidy table."""
    input:
        TABLE,
    output:
        report(FIGURES, caption="../report/figures.rst", category="Figures"),
    log:
        "logs/figures.log",
    threads: 1
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figures.py"
