rule figures:
    """The paper's figures from whatever results/ holds; a figure whose runs are missing is skipped."""
    input:
        TABLE,
        # not drawn from: it puts the findings in every `figures` run, so that the README's
        # `snakemake --report report.html figures` opens on them (report/workflow.rst)
        findings="results/tables/findings.tsv",
    output:
        report(
            directory("results/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/figures.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    params:
        results=lambda w, output: str(Path(output[0]).parent),
        signature=lambda w: results_signature(),
    script:
        "../scripts/figures.py"
