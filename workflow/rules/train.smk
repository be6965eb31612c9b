rule train:
    """Iteration n: a DDPM trained on D_n (branch 'real' = the shared iteration 1)."""
    input:
        unpack(train_input),
    output:
        model=directory("results/{dataset}/{branch}/iter{iter}/model"),
        stats="results/{dataset}/{branch}/iter{iter}/train-stats.jsonl",
    log:
        "logs/{dataset}/{branch}/iter{iter}/train.log",
    benchmark:
        "logs/{dataset}/{branch}/iter{iter}/train.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        preset=lambda w: dataset_params(w).model,
        options=train_options,
        seed=seed("train"),
        classes=lambda w: dataset_params(w).classes,
        # not an output: Snakemake must not delete it when a killed job is re-run
        checkpoint=lambda w, output: str(Path(output.model).with_name("train-checkpoint")),
    script:
        "../scripts/train.py"
