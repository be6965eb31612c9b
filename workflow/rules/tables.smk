rule tables:
    """The tidy table of every metrics.json and fid.json that results/ holds (never triggers training)."""
    output:
        report(TABLE, caption="../report/tables.rst", category="Tables"),
    log:
        "logs/tables.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    params:
        results=lambda w, output: str(Path(output[0]).parents[1]),
        signature=lambda w: results_signature(),
    script:
        "../scripts/tables.py"
