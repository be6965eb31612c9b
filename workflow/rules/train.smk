rule train:
    """Iteration n: the dataset's generator fitted on D_n (branch 'real' = the shared iteration 1): a DDPM
    trained, or a closed-form generator (gaussian, kde) fitted in a numpy job with no GPU slot."""
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
        gpu=model_gpu,
    params:
        # the generator and its preset in one value (micro8, kde, flow:micro8): a DDPM's stays its preset's name
        preset=lambda w: dataset_params(w).model_ref,
        options=train_options,
        seed=seed("train"),
        classes=lambda w: dataset_params(w).classes,
        # not an output: Snakemake must not delete it when a killed job is re-run
        checkpoint=lambda w, output: str(Path(output.model).with_name("train-checkpoint")),
    script:
        "../scripts/train.py"
