rule select:
    """D_n (n ≥ 2) chosen from the run's pool by its selection method, as a manifest."""
    input:
        unpack(select_input),
    output:
        manifest="results/{dataset}/{run}/iter{iter}/train.tsv",
        info="results/{dataset}/{run}/iter{iter}/selection.json",
    log:
        "logs/{dataset}/{run}/iter{iter}/select.log",
    benchmark:
        "logs/{dataset}/{run}/iter{iter}/select.benchmark.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=lambda w: int(select_device(w) == "cuda"),
    params:
        sources=pool_sources,
        extractor=select_features,
        n=lambda w: dataset_params(w).size,
        selection=select_params,
        seed=seed("select"),
        device=select_device,
    script:
        "../scripts/select.py"
