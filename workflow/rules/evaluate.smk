rule evaluate:
    """metrics.json: generalization score, entropy, MNND, variance, memorization, PRDC, real share."""
    input:
        unpack(evaluate_input),
    output:
        "results/{dataset}/{run}/iter{iter}/metrics.json",
    log:
        "logs/{dataset}/{run}/iter{iter}/evaluate.log",
    benchmark:
        "logs/{dataset}/{run}/iter{iter}/evaluate.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        generated=generated_files,
        real=lambda w: paths.real_images(w.dataset, w.run),
        extractor=lambda w: dataset_params(w).features,
        eval_count=lambda w: dataset_params(w).size,
        meta=run_meta,
    script:
        "../scripts/evaluate.py"
