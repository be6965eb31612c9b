rule fid:
    """fid.json: Fréchet distance of G_n to the real subset in the dataset's FID feature space."""
    input:
        unpack(fid_input),
    output:
        "results/{dataset}/{run}/iter{iter}/fid.json",
    params:
        generated=generated_files,
        real=lambda w: paths.fid_reference(CFG, w.dataset),
        extractor=lambda w: dataset_params(w).fid_features,
        eval_count=lambda w: dataset_params(w).size,
        meta=run_meta,
    log:
        "logs/{dataset}/{run}/iter{iter}/fid.log",
    threads: 1
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fid.py"
