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
    params:
        results=lambda w, output: str(Path(output[0]).parent),
        signature=lambda w: results_signature(),
    log:
        "logs/figures.log",
    threads: 1
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/figures.py"
