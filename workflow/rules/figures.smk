rule figures:
    """The paper's figures from whatever results/ holds; a figure whose runs are missing is skipped."""
    input:
        TABLE,
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
