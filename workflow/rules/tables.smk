rule tables:
    """The tidy table of every metrics.json and fid.json that results/ holds (never triggers training)."""
    output:
        report(TABLE, caption="../report/tables.rst", category="Tables"),
    params:
        results=lambda w, output: str(Path(output[0]).parents[1]),
        signature=lambda w: results_signature(),
    log:
        "logs/tables.log",
    threads: 1
    conda:
        "../../envs/plot.yaml"
    script:
        "../scripts/tables.py"
